"""The `export` job: a trained stage as a params-only release and a StableHLO deblurrer.

  python main.py --config=configs/export.py --config.checkpoint=runs/demo/srn \
    --config.output=releases/srn

writes the release (`faceblur.train.release`: weights and config, no optimiser state) and,
unless `stablehlo=False`, `deblurrer.stablehlo`: the restoring network (SRN, or the
CycleGAN's F) serialised with `jax.export`, its weights inside. That file runs with jax alone,
no faceblur and no model code, on images of any batch, height and width:

  exported = jax.export.deserialize(open("deblurrer.stablehlo", "rb").read())
  restored = exported.call(blurred)   # (N, H, W, 3) float32 in [0, 1] -> the same shape

As the `Restorer` does for an image within its tile size, the function edge-pads the sides to
a multiple of 4, restores and crops back; it has no tiling, so memory grows with the image.
Its outputs equal the `Restorer`'s up to float rounding (about 5e-5: under symbolic shapes
`jax.image.resize` computes its weights at run time, one ulp apart).
"""

import pathlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections

from faceblur.errors import ConfigError
from faceblur.inference.restorer import _STAGES, SIDE_MULTIPLE
from faceblur.train import release
from faceblur.train.trained import TrainedModel, load_trained

STABLEHLO_FILE = "deblurrer.stablehlo"
DEFAULT_PLATFORMS = ("cpu", "cuda")


def _check_exportable(trained: TrainedModel) -> None:
  """SRN's pyramid of a symbolic side is exact only when each scale divides a multiple of 4."""
  if trained.job != "srn":
    return
  model = trained.config.model
  divisor = (1 / model.scale_ratio) ** (model.num_scales - 1)
  if abs(divisor - round(divisor)) > 1e-9 or SIDE_MULTIPLE % round(divisor):
    raise ConfigError(
        f"cannot export an SRN with num_scales={model.num_scales} and scale_ratio="
        f"{model.scale_ratio} to StableHLO: its coarsest scale must divide sides that are "
        f"multiples of {SIDE_MULTIPLE} (3 scales of ratio 0.5 do)")


def export_restorer(trained: TrainedModel,
                    platforms: Sequence[str] = DEFAULT_PLATFORMS) -> jax.export.Exported:
  """The trained stage's restoring network with its weights (`trained.params`, the ones in
  use) as a `jax.export.Exported` of `(N, H, W, 3) float32 -> (N, H, W, 3)`, symbolic N, H, W."""
  _check_exportable(trained)
  network_name, make_restore_fn = _STAGES[trained.job]
  # The Restorer's own function, unjitted: its XLA:CPU compiler options are for a top-level jit.
  restore = make_restore_fn(trained.networks[network_name]).__wrapped__
  params = trained.params[network_name]
  channels = trained.config.model.get("channels", 3)

  def restore_any_size(blurred: jax.Array) -> jax.Array:
    _, height, width, _ = blurred.shape
    padded_height = -(-height // SIDE_MULTIPLE) * SIDE_MULTIPLE
    padded_width = -(-width // SIDE_MULTIPLE) * SIDE_MULTIPLE
    padded = jnp.pad(blurred, ((0, 0), (0, padded_height - height),
                               (0, padded_width - width), (0, 0)), mode="edge")
    return restore(params, padded)[:, :height, :width, :]

  batch, height, width = jax.export.symbolic_shape("n, h, w")
  return jax.export.export(jax.jit(restore_any_size), platforms=tuple(platforms))(
      jax.ShapeDtypeStruct((batch, height, width, channels), jnp.float32))


def export_job(config: ml_collections.ConfigDict,
               workdir: pathlib.Path | None = None) -> pathlib.Path:
  """Writes the release of `config.checkpoint` (a workdir, checkpoint folder or release) to
  `config.output`; returns that folder."""
  del workdir
  if not config.output:
    raise ConfigError("set --config.output to the folder of the release")
  trained = load_trained(config.checkpoint, None, step=config.step or None,
                         use_ema=config.use_ema or None)
  files = {}
  if config.stablehlo:
    platforms = tuple(config.platforms)
    files[STABLEHLO_FILE] = export_restorer(trained, platforms).serialize()
  output = release.write_release(
      config.output, job=trained.job, step=trained.step, config=trained.config,
      params=trained.trained_params, ema=trained.ema_params, default_weights=trained.weights,
      files=files)
  weights = "EMA weights" if trained.weights == "ema" else "weights"
  hlo = f", {STABLEHLO_FILE} for {', '.join(config.platforms)}" if files else ""
  print(f"Released the {trained.job} stage at step {trained.step} ({weights}{hlo}) in {output}",
        flush=True)
  return output
