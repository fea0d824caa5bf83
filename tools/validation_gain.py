"""Trained deblurrers scored on the validation faces, with paired intervals between them.

Each argument is an SRN workdir, checkpoint folder or release, `@<step>` for one of a run's
checkpoints (`runs/study/srn@1000`). Every one restores `tools/oracle_budget.py`'s validation
faces (camera photos of the stage-1 blurred domain's people, with their ground truth; never a
test face), and the table gives its PSNR gain over the blurred input and its difference from
the first argument, each with a paired 95 % bootstrap interval over the faces. It trains
nothing, so it reads a run's intermediate checkpoints: how each row's gain grows with the
stage-2 budget.

  python tools/validation_gain.py runs/study/srn@1000 runs/study/srn@2000
"""

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import numpy as np  # noqa: E402
import oracle_budget  # noqa: E402
from absl import app  # noqa: E402

from configs import demo as demo_config  # noqa: E402
from faceblur import metrics  # noqa: E402
from faceblur.data import factory  # noqa: E402
from faceblur.errors import ConfigError, FaceblurError  # noqa: E402
from faceblur.evaluate import intervals  # noqa: E402
from faceblur.images import to_float  # noqa: E402
from faceblur.inference.restorer import Restorer  # noqa: E402

BATCH = 16


def validation_spec():
  """oracle_budget's validation faces: the test camera on the stage-1 blurred domain's people."""
  return oracle_budget.validation_spec(demo_config.get_config().evaluate.test_sets.camera_blurred)


def validation_pairs() -> tuple[np.ndarray, np.ndarray]:
  """The validation faces, (blurred, sharp) float32 NHWC in [0, 1]."""
  pairs = factory.make_paired_source(validation_spec(), image_size=64)
  return (np.stack([to_float(pairs[i]["blurred"]) for i in range(len(pairs))]),
          np.stack([to_float(pairs[i]["sharp"]) for i in range(len(pairs))]))


def restore_all(restorer: Restorer, images: np.ndarray) -> np.ndarray:
  """`images` restored in batches of `BATCH`, clipped to [0, 1]."""
  return np.clip(np.concatenate([restorer.restore_batch(images[i:i + BATCH])
                                 for i in range(0, len(images), BATCH)]), 0.0, 1.0)


def gains(restorer: Restorer, blurred: np.ndarray, sharp: np.ndarray) -> np.ndarray:
  """Per-face PSNR gain (dB) of `restorer` over the blurred input."""
  return (np.asarray(metrics.psnr(restore_all(restorer, blurred), sharp))
          - np.asarray(metrics.psnr(blurred, sharp)))


def table(rows: list[tuple[str, int, np.ndarray]]) -> str:
  """Markdown: each run's gain and its difference from the first, paired over the faces."""
  lines = ["| deblurrer | step | validation gain dB [95 % CI] | minus the first [95 % CI] |",
           "|---|---|---|---|"]
  for name, step, row_gains in rows:
    first = "" if row_gains is rows[0][2] else intervals.paired_difference(
        row_gains, rows[0][2]).format()
    lines.append(f"| {name} | {step} | "
                 f"{intervals.paired_difference(row_gains, np.zeros(len(row_gains))).format()} "
                 f"| {first} |")
  return "\n".join(lines)


def parse(argument: str) -> tuple[pathlib.Path, int | None]:
  """'<workdir>[@<step>]' -> (workdir, step or None for its newest checkpoint)."""
  path, at, step = argument.rpartition("@") if "@" in argument else (argument, "", "")
  if at and not step.isdigit():
    raise ConfigError(f"{argument}: the part after '@' must be a step number")
  return pathlib.Path(path), int(step) if at else None


def main(argv):
  paths = argv[1:]
  if not paths:
    raise app.UsageError("give one or more SRN workdirs or checkpoint folders")
  blurred, sharp = validation_pairs()
  rows = []
  for path in paths:
    workdir, step = parse(path)
    try:
      restorer = Restorer(workdir, step=step)
    except FaceblurError as error:
      sys.exit(f"{path}: {error}")
    row_gains = gains(restorer, blurred, sharp)
    rows.append((path, restorer.step, row_gains))
    print(json.dumps({"deblurrer": path, "step": restorer.step,
                      "gain_db": round(float(row_gains.mean()), 3)}), flush=True)
  print(f"\n{len(blurred)} validation faces\n")
  print(table(rows))


if __name__ == "__main__":
  app.run(main)
