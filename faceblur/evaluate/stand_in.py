"""A stand-in for another codebase's outputs: the `unsharp_outputs` job.

The evaluation scores any method's restored images read from a folder (`kind: folder`,
`method_outputs`). So that the demo exercises that path end to end, with no other codebase
installed, this job writes what one would: an unsharp-masked copy of every test set's blurred
images, 8-bit PNGs in the layout `save_restored` uses (`<workdir>/<test set>/<name>.png`). A
`folder` method pointed at the workdir then gets every table, as GFPGAN's or Restormer's
outputs would. Unsharp masking is the oldest sharpening there is: a floor for any deblurrer.
"""

import pathlib

import ml_collections
import numpy as np
import scipy.ndimage
from tqdm import tqdm

from faceblur.data import factory, image_io
from faceblur.errors import ImageReadError
from faceblur.evaluate.evaluation import prepare_image
from faceblur.evaluate.method_outputs import output_key
from faceblur.images import to_uint8


def unsharp_mask(image: np.ndarray, sigma: float, amount: float) -> np.ndarray:
  """image + amount * (image - Gaussian(image, sigma)), per channel, clipped to [0, 1]."""
  smooth = scipy.ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0), mode="reflect")
  return np.clip(image + amount * (image - smooth), 0.0, 1.0)


def _sets(config: ml_collections.ConfigDict):
  """(name, source, key of its blurred images) for every set the evaluation restores."""
  for set_name, spec in config.test_sets.items():
    yield set_name, factory.make_paired_source(spec), "blurred"
  real = config.get("real_blurred")
  if real is not None and real.kind:
    yield "real_blurred", factory.make_source(real), "image"


def write_unsharp_outputs(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> int:
  """Writes the unsharp-masked blurred image of every record of `config.test_sets` and
  `config.real_blurred` (the evaluation's own specs and `image_size`); returns how many files
  it wrote. A re-run leaves files whose pixels are already right untouched, so the
  evaluation's resume (which keys on the folder's files) goes on where it was."""
  written = 0
  for set_name, source, key in _sets(config):
    for index in tqdm(range(len(source)), desc=f"{set_name}/unsharp", unit="image",
                      leave=False):
      try:
        record = source[index]
      except ImageReadError:
        continue  # the evaluation warns about it and skips it too
      blurred = prepare_image(record[key], config.image_size)
      sharpened = to_uint8(unsharp_mask(blurred, config.sigma, config.amount))
      path = workdir / set_name / f"{output_key(record['name'])}.png"
      if path.exists():
        try:
          if np.array_equal(image_io.load_image(path), sharpened):
            continue
        except ImageReadError:
          pass  # a damaged file from an interrupted run: written anew
      image_io.save_image(path, sharpened)
      written += 1
  return written
