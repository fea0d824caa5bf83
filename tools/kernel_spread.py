"""How the kernels a stage-1 G draws spread, beside the camera's own point spreads.

A diagnostic for the demo's world only: it reads the camera's process, so it may explain a
result but must never choose a variant, a checkpoint or a setting (the realism score on
validation photos does that). For each stage-1 workdir (a `kernel_blur*` G), the kernels of
`--codes` random codes at the step `selection.json` selected (or each of `--steps`); for the camera,
the point spread of `--codes` draws (`camera_blur.point_spread`), at the frame's centre and at
a random point of the frame's interior (roll and zoom blur the frame's edges more). Per
kernel: the mass within 1.5 px of its centre of mass, its peak and its RMS radius; and the
sensor noise's standard deviation at mid-grey (0.18 in linear light) that each code, or each
camera draw (`camera_blur.noise_sigma`), gives. The table has their 10th, 50th and 90th
percentiles.

  python tools/kernel_spread.py runs/demo/cyclegan runs/select_stage1/kernel_blur
"""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from flax import nnx  # noqa: E402

from configs import demo as demo_config  # noqa: E402
from faceblur.data import camera_blur  # noqa: E402
from faceblur.train import cyclegan  # noqa: E402
from faceblur.train.trained import load_trained  # noqa: E402

FLAGS = flags.FLAGS
MID_GREY = 0.18  # linear light
SIZE, RADIUS = 64, 10  # the demo's frame; point spreads of 21 x 21 px


def spread(kernels: np.ndarray) -> np.ndarray:
  """(N, k, k) kernels -> (N, 3): mass within 1.5 px of the centre of mass, peak, RMS radius."""
  kernels = kernels / kernels.sum(axis=(1, 2), keepdims=True)
  offsets = np.arange(kernels.shape[-1]) - kernels.shape[-1] // 2
  row = np.einsum("nij,i->n", kernels, offsets)
  column = np.einsum("nij,j->n", kernels, offsets)
  radius = np.hypot(offsets[None, :, None] - row[:, None, None],
                    offsets[None, None, :] - column[:, None, None])
  return np.stack([np.sum(kernels * (radius <= 1.5), axis=(1, 2)),
                   kernels.reshape(len(kernels), -1).max(axis=1),
                   np.sqrt(np.sum(kernels * radius ** 2, axis=(1, 2)))], axis=1)


def generator_kernels(workdir: str, count: int, step: int | None,
                      use_ema: bool) -> tuple[int, np.ndarray, np.ndarray]:
  """G's kernels (N, k, k) and noise sigmas at mid-grey (N,) for `count` random codes."""
  trained = load_trained(workdir, "cyclegan", step=step, use_ema=use_ema)
  g = nnx.merge(trained.networks["g"].graphdef, trained.params["g"])
  kernels, noise = g.blur_parameters(jax.random.normal(jax.random.key(0), (count, g.code_dim)))
  noise = np.asarray(noise)  # variance a * y + b in linear light
  return trained.step, np.asarray(kernels), np.sqrt(noise[:, 0] * MID_GREY + noise[:, 1])


def row(name: str, kernels: np.ndarray, noise_sigmas: np.ndarray) -> str:
  figures = np.concatenate([spread(kernels), np.asarray(noise_sigmas)[:, None] * 100], axis=1)
  low, median, high = np.percentile(figures, [10, 50, 90], axis=0)
  return f"| {name} | " + " | ".join(
      f"{a:.2f} / {b:.2f} / {c:.2f}" for a, b, c in zip(low, median, high, strict=True)) + " |"


def main(argv):
  shake = demo_config.CAMERA_SHAKE
  model = camera_blur.CameraModel(max_shake=shake)
  camera = np.stack([camera_blur.point_spread(np.random.default_rng([99, index]), model,
                                              size=SIZE, radius=RADIUS)
                     for index in range(FLAGS.codes)])
  camera_noise = [camera_blur.noise_sigma(np.random.default_rng([99, index]), model,
                                          linear=MID_GREY) for index in range(FLAGS.codes)]
  positions = np.random.default_rng(98).integers(RADIUS, SIZE - RADIUS, size=(FLAGS.codes, 2))
  across = np.stack([camera_blur.point_spread(np.random.default_rng([99, index]), model,
                                              size=SIZE, radius=RADIUS, position=tuple(position))
                     for index, position in enumerate(positions)])
  print("| kernels (10th / 50th / 90th percentile) | mass within 1.5 px of the centre | peak | "
        "RMS radius px | noise sigma at mid-grey, % of white (linear) |")
  print("| --- | --- | --- | --- | --- |")
  print(row(f"the camera (shake {shake}), at the frame's centre", camera, camera_noise),
        flush=True)
  print(row(f"the camera (shake {shake}), anywhere in the frame's interior", across,
            camera_noise), flush=True)
  for workdir in argv[1:]:
    steps = [int(step) for step in FLAGS.steps] or [cyclegan.read_selected_step(workdir)]
    weights = FLAGS.weights if FLAGS.weights != "selected" else \
        cyclegan.read_selected_weights(workdir)
    for wanted in steps:
      step, kernels, noise_sigmas = generator_kernels(workdir, FLAGS.codes, wanted,
                                                      use_ema=weights == "ema")
      print(row(f"{workdir}, step {step}{', EMA' if weights == 'ema' else ''}", kernels,
                noise_sigmas), flush=True)


if __name__ == "__main__":
  flags.DEFINE_integer("codes", 1000, "Kernels drawn per G, and camera point spreads.")
  flags.DEFINE_list("steps", [], "The checkpoint steps (default: each run's selected step).")
  flags.DEFINE_enum("weights", "selected", ["selected", "params", "ema"], "G's trained or EMA "
                    "weights (selected: those the run's selection scored).")
  app.run(main)
