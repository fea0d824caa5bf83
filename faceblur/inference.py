"""Deblurring photos with a trained SRN: one image or a folder, any size.

Images of any size and aspect go through the network padded to a multiple of 4 and are
cropped back; images larger than `tile_size` go through overlapping tiles blended without
seams, so memory stays bounded for 12-megapixel photos. Grey and RGBA inputs are read as
RGB (see `faceblur.data.image_io`); outputs keep the input's file format.
"""

import pathlib
import sys

import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from faceblur.data import image_io
from faceblur.errors import ConfigError, FaceblurError, ImageReadError, StorageError, os_reason
from faceblur.evaluate import tiling
from faceblur.jobs import check_writable
from faceblur.train import srn
from faceblur.train.trained import load_trained

# SRN halves the image twice per scale inside each scale's encoder: sides divisible by 4.
SIDE_MULTIPLE = 4


class Deblurrer:
  """A trained SRN: `deblurrer(image)` restores an HxWx3 float [0, 1] (or uint8) image."""

  def __init__(self, workdir: str | pathlib.Path, *, tile_size: int = 512,
               tile_overlap: int = 32):
    trained = load_trained(workdir, "srn")
    network = trained.networks["deblurrer"]
    self.config = trained.config
    self.step = trained.step
    self.tile_size = tile_size
    self.tile_overlap = tile_overlap
    self._params = trained.params["deblurrer"]
    self._restore = srn.make_restore_fn(network)

  def restore_batch(self, blurred: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) float [0, 1], sides divisible by 4 -> restored, same shape."""
    return np.asarray(self._restore(self._params, jnp.asarray(blurred, jnp.float32)))

  def __call__(self, image: np.ndarray) -> np.ndarray:
    image = image_io.to_float(image) if image.dtype == np.uint8 else image.astype(np.float32)
    if image.ndim == 2:
      image = np.repeat(image[..., None], 3, axis=-1)
    if image.shape[-1] == 4:
      image = image[..., :3]
    return tiling.tiled_apply(self.restore_batch, image, tile_size=self.tile_size,
                              overlap=self.tile_overlap, multiple=SIDE_MULTIPLE)


def _output_path(input_path: pathlib.Path, input_root: pathlib.Path, output: pathlib.Path,
                 single: bool) -> pathlib.Path:
  if single:
    return output if output.suffix else output / input_path.name
  return output / input_path.relative_to(input_root)


def deblur_job(config: ml_collections.ConfigDict) -> int:
  """Restores `config.input` (a file or folder) into `config.output`; returns the failures."""
  if not config.input:
    raise ConfigError("set --config.input to an image or a folder")
  if not config.output:
    raise ConfigError("set --config.output to a file or a folder")
  source, output = pathlib.Path(config.input), pathlib.Path(config.output)
  if not source.exists():
    raise ConfigError(f"{source}: no such file or folder")
  single = source.is_file()
  paths = [source] if single else image_io.list_images(source)
  deblurrer = Deblurrer(config.checkpoint, tile_size=config.tile_size,
                        tile_overlap=config.tile_overlap)
  check_writable(output.parent if single and output.suffix else output, "output folder")
  failures = 0
  for path in tqdm(paths, desc="deblur", unit="image", disable=single):
    try:
      restored = deblurrer(image_io.load_image(path))
    except ImageReadError as error:
      failures += 1
      print(f"warning: skipped {error}", file=sys.stderr, flush=True)
      continue
    output_path = _output_path(path, source, output, single)
    try:
      image_io.save_image(output_path, restored)
    except OSError as error:  # a full or read-only disk fails every later image too
      raise StorageError(f"{output_path}: cannot write ({os_reason(error)})") from None
  print(f"Restored {len(paths) - failures} of {len(paths)} images into {output}", flush=True)
  if failures:
    raise FaceblurError(f"{failures} of {len(paths)} images could not be read (see warnings)")
  return failures
