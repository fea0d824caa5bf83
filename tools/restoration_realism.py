"""A label-free check of a trained deblurrer: do its restorations of real blurred photos look
sharp? Set against what the validation faces' ground truth says.

The blur-realism score compares stage 1's synthesised blur with real blurred photos; it cannot
see how an SRN trained on that blur behaves. This scores the other end, with no ground truth
either: each deblurrer restores the stage-1 blurred domain's validation photos (the 300 that
stage 1's selection reads) and the blur features of its restorations are compared with the
stage-1 sharp domain's photos (MMD², `blur_realism`; lower: restorations whose spectra,
gradients and noise look more like sharp photos'). A user with unpaired photos can compute it.

To see whether it would choose well, each deblurrer is also scored on the validation faces
with their ground truth (`tools/validation_gain.py`), and the rank correlation of the two over
the deblurrers is printed. That column checks the score in the demo's world; it selects
nothing.

  python tools/restoration_realism.py runs/demo/srn runs/demo/srn_kernel runs/study/srn@2000
"""

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import numpy as np  # noqa: E402
import scipy.stats  # noqa: E402
import validation_gain  # noqa: E402
from absl import app, flags  # noqa: E402
from realism_noise import photos  # noqa: E402

from configs import demo as demo_config  # noqa: E402
from faceblur import blur_realism  # noqa: E402
from faceblur.errors import FaceblurError  # noqa: E402
from faceblur.inference.restorer import Restorer  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_integer("count", 300, "Real blurred validation photos restored, and sharp photos "
                       "compared with.")


def reference_specs():
  """What the score reads: the stage-1 blurred domain's validation photos (restored) and its
  sharp domain's photos (the reference), both from the demo's stage-1 config; no test face."""
  stage1 = demo_config.get_config().cyclegan.data
  return stage1.blurred_validation, stage1.sharp


def rank_agreement(scores: list[float], gains: list[float]) -> float:
  """Spearman's rho between -score and the gain: 1 when the lowest score is the best deblurrer."""
  return float(scipy.stats.spearmanr(-np.asarray(scores), np.asarray(gains)).statistic)


def main(argv):
  paths = argv[1:]
  if not paths:
    raise app.UsageError("give one or more SRN workdirs or checkpoint folders (workdir@step)")
  blurred_spec, sharp_spec = reference_specs()
  real_blurred = photos(blurred_spec, FLAGS.count, blurred_spec.seed)
  sharp_features = blur_realism.blur_features(photos(sharp_spec, FLAGS.count, sharp_spec.seed))
  blurred, sharp = validation_gain.validation_pairs()
  rows = [("the blurred photos, not restored",
           blur_realism.score_against(sharp_features, real_blurred, num_permutations=20), None)]
  for path in paths:
    workdir, step = validation_gain.parse(path)
    try:
      restorer = Restorer(workdir, step=step)
    except FaceblurError as error:
      sys.exit(f"{path}: {error}")
    result = blur_realism.score_against(sharp_features,
                                        validation_gain.restore_all(restorer, real_blurred),
                                        num_permutations=20)
    gains = validation_gain.gains(restorer, blurred, sharp)
    rows.append((f"{path} (step {restorer.step})", result, gains))
    print(json.dumps({"deblurrer": path, "step": restorer.step,
                      "restoration_mmd2": round(result.mmd2, 4),
                      "validation_gain_db": round(float(gains.mean()), 3)}), flush=True)
  print(f"\n{len(real_blurred)} real blurred photos restored, against {len(sharp_features)} "
        f"sharp photos; {len(blurred)} validation faces with ground truth\n")
  print("| deblurrer | restorations vs sharp photos: MMD² (label-free) | precision | "
        "validation gain dB (ground truth) |")
  print("|---|---|---|---|")
  for name, result, gains in rows:
    gain = "" if gains is None else f"{gains.mean():+.2f}"
    print(f"| {name} | {result.mmd2:.4f} | {result.precision:.2f} | {gain} |")
  scored = [(result.mmd2, gains.mean()) for _, result, gains in rows if gains is not None]
  if len(scored) > 2:
    print(f"\nSpearman rank correlation of -MMD² with the validation gain over the "
          f"{len(scored)} deblurrers: {rank_agreement(*zip(*scored, strict=True)):+.2f}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
