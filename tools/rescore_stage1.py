"""Re-runs stage 1's label-free selection on a finished run, with the weights asked for.

A run trained with an EMA (`ema_decay > 0`) scores its EMA weights at each sample step; this
scores each kept checkpoint again with the sampler's own code (`cyclegan._sampler`: hidden
channel, blur realism on the validation photos of the training people, never a test face),
for the trained or the EMA weights, and writes `<out>/selection.json` as the run would have.
So the two selections of one run compare without training it twice (their labels then through
`tools/stage1_validation_gain.py --weights`).

  python tools/rescore_stage1.py runs/ema/seed0/cyclegan --weights=params --out=runs/ema/raw0
  python tools/rescore_stage1.py runs/ema/seed0/cyclegan --weights=ema --score=realism/falloff \
    --out=runs/ema/falloff0
"""

import json
import pathlib
import sys
import types
from unittest import mock

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from absl import app, flags  # noqa: E402

from faceblur.data import factory  # noqa: E402
from faceblur.train import cyclegan  # noqa: E402
from faceblur.train.trained import load_trained  # noqa: E402

FLAGS = flags.FLAGS


def rescore(workdir: pathlib.Path, weights: str, out: pathlib.Path,
            score: str | None = None) -> dict:
  """Scores each sample step's checkpoint of `workdir` with `weights` ('params' or 'ema');
  writes and returns `<out>/selection.json`, selected by `score` (default: the run's own
  `selection_score`)."""
  out.mkdir(parents=True, exist_ok=True)
  (out / cyclegan.SELECTION_FILE).unlink(missing_ok=True)
  steps = sorted(int(path.name) for path in (workdir / "checkpoints").iterdir()
                 if path.name.isdigit())
  hook = None
  for step in steps:
    trained = load_trained(workdir, "cyclegan", step=step, use_ema=weights == "ema")
    if step % trained.config.sample_every_steps:
      continue
    if hook is None:
      config = trained.config
      if score is not None:
        with config.unlocked():
          config.selection_score = score
      sharp = factory.make_source(config.data.sharp, image_size=config.data.load_size)
      writer = mock.Mock()
      hook = cyclegan._sampler(config, trained.networks, sharp, out, writer)
    hook(step, types.SimpleNamespace(params=trained.params, ema=None))
    scores = writer.write_scalars.call_args.kwargs["scalars"]
    print(json.dumps({"step": step, "mmd2": scores.get("realism/mmd2"),
                      "falloff": scores.get("realism/falloff")}), flush=True)
  selection = json.loads((out / cyclegan.SELECTION_FILE).read_text())
  selection["weights"] = weights
  (out / cyclegan.SELECTION_FILE).write_text(json.dumps(selection, indent=2))
  return selection


def main(argv):
  if len(argv) != 2:
    raise app.UsageError("name one stage-1 workdir")
  selection = rescore(pathlib.Path(argv[1]), FLAGS.weights, pathlib.Path(FLAGS.out), FLAGS.score)
  print(f"selected step {selection['selected_step']} ({FLAGS.weights} weights, "
        f"{selection['score']})")


if __name__ == "__main__":
  flags.DEFINE_enum("weights", "params", ["params", "ema"], "The weights to score.")
  flags.DEFINE_enum("score", None, list(cyclegan.SELECTION_SCORES),
                    "The score that selects (default: the run's own selection_score).")
  flags.DEFINE_string("out", None, "Where selection.json and the sample grids go.",
                      required=True)
  app.run(main)
