"""Restoring photos with a trained stage: SRN (stage 2) or the CycleGAN's F (blurred -> sharp).

Both are used the same way, by the `deblur` job, by evaluation (the "ours", kernel-baseline
and Zhu et al. rows of Table 1) and by notebooks, so one `Restorer` serves them all. Images
of any size and aspect go through the network padded to a multiple of 4 and are cropped back.
An image of more than `tile_megapixels` goes through overlapping tiles blended without seams
(`faceblur.inference.tiling`), as few and as large as that budget allows, so memory stays
bounded for 12-megapixel photos and a 720p frame goes through in one piece. Each image size
compiles once; `tile_size` > 0 fixes square tiles instead, so that a folder of photos of
many sizes compiles once or twice in all. Grey, RGBA
and uint8 inputs are read as RGB floats (`faceblur.images.as_rgb`).

`restore_images` restores many images: those of one size that the network takes whole go
through it together, in batches of a power of two (a short batch filled with copies) within
the same pixel budget, since one call per small face keeps the CPU's cores less busy and
reads each result back on its own; each result is the one `restorer(image)` gives, up to
float rounding.
"""

import functools
import hashlib
import pathlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from faceblur.errors import ConfigError
from faceblur.images import as_rgb
from faceblur.inference import tiling
from faceblur.ops import compilation
from faceblur.train import srn
from faceblur.train.trained import load_trained

# Both networks halve the image twice (SRN inside each scale's encoder, the CycleGAN
# generator in its two stride-2 convolutions): sides divisible by 4.
SIDE_MULTIPLE = 4
# Most images of one size per network call in `restore_images` (a power of two).
MAX_IMAGE_BATCH = 16


def _generator_restore_fn(network):
  """Jitted `(params, blurred) -> restored` of a CycleGAN generator, clipped to [0, 1]."""
  return compilation.jit(lambda params, blurred: jnp.clip(
      network.apply(params, blurred).astype(jnp.float32), 0.0, 1.0))


# Per stage: the network that maps blurred to sharp, and how to make its jitted restore.
_STAGES = {
    "srn": (srn.NETWORK, srn.make_restore_fn),
    "cyclegan": ("f", _generator_restore_fn),  # F: blurred -> sharp
}


class Restorer:
  """A trained stage: `restorer(image)` restores one image of any size (see `as_rgb`) into
  an HxWx3 float32 image in [0, 1].

  `stage` is 'srn' (the paper's deblurrer) or 'cyclegan' (its blurred -> sharp generator F,
  the CycleGAN used as a deblurrer); `workdir` is that stage's workdir, checkpoint folder or
  release. `use_ema=True` restores with the EMA weights (None: a release's default, for a
  checkpoint the trained weights). `step` picks one of a run's checkpoints (None: its newest that
  restores). Tiles: see the module docstring (`tile_megapixels` bounds
  the network's activations: about 0.5 GiB per megapixel for the reference SRN).
  """

  def __init__(self, workdir: str | pathlib.Path, *, stage: str = "srn", tile_size: int = 0,
               tile_megapixels: float = 2.0, tile_overlap: int = 32,
               use_ema: bool | None = None, step: int | None = None):
    if stage not in _STAGES:
      raise ConfigError(f"cannot restore with stage {stage!r}; use one of {', '.join(_STAGES)}")
    network_name, make_restore_fn = _STAGES[stage]
    trained = load_trained(workdir, stage, step=step, use_ema=use_ema)
    self.stage = stage
    self.config = trained.config
    self.step = trained.step
    self.weights = trained.weights  # 'params' or 'ema'
    if tile_size < 0 or (tile_size == 0 and tile_megapixels <= 0):
      raise ConfigError(f"tile_size must be >= 0 (0: tiles from tile_megapixels, which must then "
                        f"be > 0), got tile_size={tile_size}, tile_megapixels={tile_megapixels}")
    self.tile_size = tile_size
    self.tile_megapixels = tile_megapixels
    self.tile_overlap = tile_overlap
    self._params = trained.params[network_name]
    self._restore = make_restore_fn(trained.networks[network_name])

  @functools.cached_property
  def fingerprint(self) -> str:
    """A digest of the weights this restorer runs: a run retrained in the same folder, to the
    same step, has another (the evaluation's resume cache keys on it)."""
    digest = hashlib.sha256(f"{self.stage}:{self.step}:{self.weights}".encode())
    for leaf in jax.tree.leaves(jax.device_get(self._params)):
      digest.update(np.ascontiguousarray(leaf).tobytes())
    return digest.hexdigest()

  def restore_batch(self, blurred: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) float [0, 1], sides divisible by 4 -> restored, same shape."""
    return np.asarray(self._restore(self._params, jnp.asarray(blurred, jnp.float32)))

  def tile_shape(self, height: int, width: int) -> tuple[int, int]:
    """(tile_h, tile_w) of the network's calls for an image of this size (an axis that one
    tile spans: the image's side, padded to a multiple of 4)."""
    if self.tile_size:
      padded = (-(-side // SIDE_MULTIPLE) * SIDE_MULTIPLE for side in (height, width))
      return tuple(min(self.tile_size, side) for side in padded)
    return tiling.plan_tile_shape(height, width, max_pixels=int(self.tile_megapixels * 1e6),
                                  overlap=self.tile_overlap, multiple=SIDE_MULTIPLE)

  def __call__(self, image) -> np.ndarray:
    image = as_rgb(image)
    return tiling.tiled_apply(self.restore_batch, image, tile_size=self.tile_shape(
        *image.shape[:2]), overlap=self.tile_overlap, multiple=SIDE_MULTIPLE)

  def restore_images(self, images: Sequence[np.ndarray],
                     batch_size: int = MAX_IMAGE_BATCH) -> list[np.ndarray]:
    """Each image restored as `restorer(image)` restores it, those of one size that one tile
    spans together in batches of up to `batch_size` (and the tile budget's pixels)."""
    images = [as_rgb(image) for image in images]
    restored: list[np.ndarray | None] = [None] * len(images)
    for shape, positions in _positions_by_shape(images).items():
      tile = self.tile_shape(*shape[:2])
      if shape[0] > tile[0] or shape[1] > tile[1]:  # tiled: one image at a time
        for position in positions:
          restored[position] = self(images[position])
        continue
      budget = max(tile[0] * tile[1], int(self.tile_megapixels * 1e6))
      most = max(1, min(batch_size, budget // (tile[0] * tile[1])))
      for begin in range(0, len(positions), most):
        group = positions[begin:begin + most]
        outputs = self._restore_whole([images[position] for position in group], tile)
        for position, output in zip(group, outputs, strict=True):
          restored[position] = output
    return restored

  def _restore_whole(self, images: list[np.ndarray], tile: tuple[int, int]) -> list[np.ndarray]:
    """Same-size images, each padded to `tile` as `tiling.tiled_apply` pads a single tile,
    through the network in one call."""
    height, width = images[0].shape[:2]
    padding = ((0, tile[0] - height), (0, tile[1] - width), (0, 0))
    padded = [np.pad(image, padding, mode="edge") for image in images]
    batch_size = 1 << (len(padded) - 1).bit_length()
    outputs = self.restore_batch(np.stack(padded + [padded[-1]] * (batch_size - len(padded))))
    return [np.array(output[:height, :width], np.float32) for output in outputs[:len(images)]]


def _positions_by_shape(images: Sequence[np.ndarray]) -> dict[tuple, list[int]]:
  """Image positions grouped by shape, in order."""
  groups: dict[tuple, list[int]] = {}
  for position, image in enumerate(images):
    groups.setdefault(image.shape, []).append(position)
  return groups


class Deblurrer(Restorer):
  """The trained SRN of a stage-2 workdir (what `faceblur.load_deblurrer` returns)."""

  def __init__(self, workdir: str | pathlib.Path, *, tile_size: int = 0,
               tile_megapixels: float = 2.0, tile_overlap: int = 32,
               use_ema: bool | None = None):
    super().__init__(workdir, stage="srn", tile_size=tile_size,
                     tile_megapixels=tile_megapixels, tile_overlap=tile_overlap,
                     use_ema=use_ema)
