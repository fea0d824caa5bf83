"""How precise the label-free realism score is, and where its floor lies in the demo's world.

Stage 1's checkpoint, and the stage-1 variant, are chosen by the lowest MMD^2 between G's
blur and held-out real blurred photos (`faceblur/blur_realism.py`). Two candidates whose
scores differ by less than the score's own noise are tied, whatever the rule says. Per count
of validation photos, this measures, without any model:

* the noise: MMD^2 between the validation photos and other photos from the same process (the
  demo's camera on the blurred domain's people, other draws), whose true value is 0;
* the floor: the camera's own blur of stage 1's *sharp* faces (other people) against the
  validation photos. A G that blurred exactly as the camera does would score this, so scores
  near it cannot tell a G from the camera. This reads the camera, which a user would not
  have: it sizes the score, and chooses nothing.

Each row also gives the k-NN precision and recall (`blur_realism.precision_recall`). Nothing
here reads a test face.

  python tools/realism_noise.py --counts=100,300 --draws=5
"""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from configs import common  # noqa: E402
from configs import demo as demo_config  # noqa: E402
from faceblur import blur_realism  # noqa: E402
from faceblur.data import factory  # noqa: E402
from faceblur.images import to_float  # noqa: E402

FLAGS = flags.FLAGS


def photos(spec, count: int, seed: int) -> np.ndarray:
  spec = spec.copy_and_resolve_references()
  spec.count, spec.seed = count, seed
  source = factory.make_source(spec, image_size=64)
  return np.stack([to_float(source[i]["image"]) for i in range(count)])


def report(counts: list[int], draws: int) -> None:
  """Prints the table: per count, the null and the floor rows."""
  stage1 = demo_config.get_config().cyclegan
  validation = stage1.data.blurred_validation
  # The camera of the validation photos, on the sharp domain's faces (demo_sharp's train split).
  floor = common.source("demo_blurred", split=stage1.data.sharp.split, seed=stage1.data.sharp.seed,
                        max_shake=validation.max_shake)
  print("| validation photos | set | MMD² (mean ± sd over draws) | precision | recall |")
  print("|---|---|---|---|---|")
  for count in counts:
    reference = blur_realism.blur_features(photos(validation, count, validation.seed))
    rows = {"the same process, other draws (true 0)":
            [photos(validation, count, 1000 + draw) for draw in range(draws)],
            "the camera on stage 1's sharp faces (the floor)":
            [photos(floor, count, floor.seed + draw) for draw in range(draws)]}
    for name, sets in rows.items():
      scores = [(blur_realism.mmd_two_sample(features, reference, num_permutations=1).mmd2,
                 *blur_realism.precision_recall(features, reference))
                for features in map(blur_realism.blur_features, sets)]
      mmd2, precision, recall = np.asarray(scores).T
      print(f"| {count} | {name} | {mmd2.mean():+.4f} ± {mmd2.std(ddof=1):.4f} | "
            f"{precision.mean():.2f} | {recall.mean():.2f} |", flush=True)


def main(argv):
  del argv
  report([int(count) for count in FLAGS.counts], FLAGS.draws)


if __name__ == "__main__":
  flags.DEFINE_list("counts", ["100", "300"], "Validation photo counts to measure.")
  flags.DEFINE_integer("draws", 5, "Other same-process sets per count.")
  app.run(main)
