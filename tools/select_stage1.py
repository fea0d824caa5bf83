"""Chooses the demo's stage-1 variant without labels: by the blur realism of each variant's G.

Each variant of `configs/cyclegan.py` VARIANTS is trained as the demo's stage 1 (its data,
networks and budget; `configs/demo.py:stage1=<variant>`). At every sample step the stage
scores G's blur against held-out real blurred photos of the training people (MMD^2 of blur
features, `selection.json`), and logs the hidden-channel diagnostic. The variant whose
selected checkpoint has the lowest MMD^2 is the choice. Nothing here reads a test face or a
deblurring result.

  python tools/select_stage1.py --workdir=runs/select_stage1
  # one variant with a switch changed (a row of its own):
  python tools/select_stage1.py --variants=kernel_blur --set=model.disc_layers=2 --workdir=...
"""

import ast
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from absl import app, flags  # noqa: E402

from configs import cyclegan as cyclegan_config  # noqa: E402
from configs import demo as demo_config  # noqa: E402
from faceblur.train import cyclegan  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("variants", list(cyclegan_config.VARIANTS), "Stage-1 variants to compare.")
flags.DEFINE_string("workdir", "runs/select_stage1", "One sub-folder per variant.")
flags.DEFINE_multi_string("set", [], "key=value (a Python literal) on every variant's stage-1 "
                          "config, after the variant's switches, e.g. model.disc_layers=2.")


def override(config, assignment: str) -> None:
  """Sets `a.b.c=value` (a Python literal) on a ConfigDict."""
  key, _, value = assignment.partition("=")
  *groups, field = key.split(".")
  for group in groups:
    config = config[group]
  config[field] = ast.literal_eval(value)


def train_variant(variant: str, workdir: pathlib.Path) -> dict:
  config = demo_config.get_config(f"stage1={variant}").cyclegan
  for assignment in FLAGS.set:
    override(config, assignment)
  started = time.perf_counter()
  cyclegan.train_and_evaluate(config, workdir)
  scores = json.loads((workdir / cyclegan.SELECTION_FILE).read_text())
  selected = scores["selected_step"]
  entry = next(entry for entry in scores["steps"] if entry["step"] == selected)
  name = " ".join([variant, *FLAGS.set])
  return {"variant": name, "train_s": round(time.perf_counter() - started, 1), **entry}


def main(argv):
  del argv
  rows = []
  for variant in FLAGS.variants:
    row = train_variant(variant, pathlib.Path(FLAGS.workdir) / variant)
    print(json.dumps(row), flush=True)
    rows.append(row)
  print("\n| stage-1 variant | selected step | realism MMD² (validation) | classifier accuracy | "
        "G(s) PSNR | F(G(s)) PSNR: clean / noise 3/255 / JPEG 75 |")
  print("|---|---|---|---|---|---|")
  for row in rows:
    print(f"| {row['variant']} | {row['step']} | {row['realism/mmd2']:.4f} | "
          f"{row['realism/classifier_accuracy']:.2f} | {row['hidden/blurred_psnr']:.2f} | "
          f"{row['hidden/cycle_psnr']:.2f} / {row['hidden/cycle_psnr_noise_3']:.2f} / "
          f"{row['hidden/cycle_psnr_jpeg_75']:.2f} |")
  chosen = min(rows, key=lambda row: row["realism/mmd2"])
  print(f"\nrule: lowest realism MMD² on validation: {chosen['variant']}")


if __name__ == "__main__":
  app.run(main)
