"""How precise the label-free realism score is, as a function of the validation photos' count.

Stage 1's checkpoint, and the stage-1 variant, are chosen by the lowest MMD^2 between G's
blur and held-out real blurred photos (`faceblur/blur_realism.py`). Two candidates whose
scores differ by less than the score's own noise are tied, whatever the rule says. This
measures that noise without any model: MMD^2 between the validation photos and other photos
from the same process (the demo's camera on the blurred domain's people, other draws), whose
true value is 0. Nothing here reads a test face.

  python tools/realism_noise.py --counts=100,300 --draws=5
"""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from configs import demo as demo_config  # noqa: E402
from faceblur import blur_realism  # noqa: E402
from faceblur.data import factory  # noqa: E402
from faceblur.images import to_float  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("counts", ["100", "300"], "Validation photo counts to measure.")
flags.DEFINE_integer("draws", 5, "Other same-process sets per count.")


def photos(spec, count: int, seed: int) -> np.ndarray:
  spec = spec.copy_and_resolve_references()
  spec.count, spec.seed = count, seed
  source = factory.make_source(spec, image_size=64)
  return np.stack([to_float(source[i]["image"]) for i in range(count)])


def main(argv):
  del argv
  spec = demo_config.get_config().cyclegan.data.blurred_validation
  print("| validation photos | null MMD² (same process, true 0): mean ± sd | max |")
  print("|---|---|---|")
  for count in map(int, FLAGS.counts):
    reference = blur_realism.blur_features(photos(spec, count, spec.seed))
    null = [blur_realism.mmd_two_sample(
        blur_realism.blur_features(photos(spec, count, 1000 + draw)), reference,
        num_permutations=1).mmd2 for draw in range(FLAGS.draws)]
    print(f"| {count} | {np.mean(null):+.4f} ± {np.std(null, ddof=1):.4f} | "
          f"{np.max(np.abs(null)):.4f} |", flush=True)


if __name__ == "__main__":
  app.run(main)
