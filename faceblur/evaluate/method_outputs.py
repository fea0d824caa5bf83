"""Another method's restored images as an evaluation method (`kind: folder`), and faceblur's
own restored images written out (`save_restored`) for other codebases to score.

Any tool that writes one output per input (GFPGAN's `restored_imgs/`, a Restormer or NAFNet
`--result_dir`, faceblur's own `save_restored`) gets every table faceblur has. An output is
matched to a test image by name, extension aside, trying in turn:

  <folder>/<test set>/<relative path>     one folder for several test sets (`save_restored`)
  <folder>/<relative path>                a folder mirroring the test set's sub-folders
  <folder>/<relative path, '/' -> '_'>    flattened paths (RealBlur's own script's names)
  <folder>/<file name>                    a flat folder, when no other test image shares it

A test image with no output, or an unreadable one, is counted and listed: the blurred input
stands in for it (a method that did nothing there), the report names each one, and the job
exits non-zero once the report is written. An output of another size than its test image
stops the evaluation in one line naming the file (e.g. GFPGAN's default `--upscale 2`).
"""

import collections
import hashlib
import os
import pathlib

import numpy as np

from faceblur.console import warn
from faceblur.data import image_io
from faceblur.errors import ConfigError, DataError, ImageReadError
from faceblur.images import as_rgb

RESTORED_FOLDER = "restored"


def output_key(name: str) -> str:
  """A relative path without its extension: x/y.png and x/y.jpg are the same image."""
  path = pathlib.PurePosixPath(name)
  return str(path.with_suffix("")) if path.suffix else str(path)


class OutputFolder:
  """The restored images another method wrote into `root`, matched by name (see the module)."""

  def __init__(self, root: str | os.PathLike, *, method: str):
    self.method = method
    self.root = pathlib.Path(root).expanduser()
    if not str(root):
      raise ConfigError(f"methods.{method}.path is empty: name the folder of its outputs")
    if not self.root.is_dir():
      raise ConfigError(f"methods.{method}.path={str(root)!r}: no such folder")
    try:
      paths = image_io.list_images(self.root)
    except DataError as error:
      raise ConfigError(f"methods.{method}.path: {error}") from None
    self.by_key: dict[str, pathlib.Path] = {}
    for path in paths:
      self.by_key.setdefault(output_key(path.relative_to(self.root).as_posix()), path)
    # What the folder holds, so a resumed or repeated evaluation notices changed outputs.
    self.fingerprint = hashlib.sha256("\n".join(
        f"{path.relative_to(self.root).as_posix()} {path.stat().st_size} "
        f"{path.stat().st_mtime_ns}" for path in paths).encode()).hexdigest()

  def find(self, set_name: str, name: str,
           shared_names: collections.Counter) -> pathlib.Path | None:
    """The output of test image `name` of `set_name`, or None. `shared_names` counts the test
    set's file names (without extension): a flat-folder match needs a unique one."""
    key = output_key(name)
    for candidate in (f"{set_name}/{key}", key, key.replace("/", "_")):
      if candidate in self.by_key:
        return self.by_key[candidate]
    file_name = pathlib.PurePosixPath(key).name
    if shared_names[file_name] == 1 and file_name in self.by_key:
      return self.by_key[file_name]
    return None

  def read(self, set_name: str, names: list[str],
           inputs: list[np.ndarray]) -> tuple[list[np.ndarray], list[str]]:
    """The outputs for a test set's images, in order, and one line per image without a usable
    output (its input stands in). `inputs` are the images as the methods take them."""
    shared = collections.Counter(pathlib.PurePosixPath(output_key(name)).name for name in names)
    outputs, problems = [], []
    for name, image in zip(names, inputs, strict=True):
      path = self.find(set_name, name, shared)
      if path is None:
        reason = (f"{set_name}/{name}: no output in {self.root} (several test images are named "
                  f"{pathlib.PurePosixPath(output_key(name)).name}: mirror the test set's folders)"
                  if shared[pathlib.PurePosixPath(output_key(name)).name] > 1 else
                  f"{set_name}/{name}: no output in {self.root}")
        problems.append(reason)
        outputs.append(image)
        continue
      try:
        output = as_rgb(image_io.load_image(path))
      except ImageReadError as error:
        problems.append(f"{set_name}/{name}: {error}")
        outputs.append(image)
        continue
      if output.shape != image.shape:
        raise DataError(
            f"{path}: {output.shape[0]}x{output.shape[1]}, but test image {set_name}/{name} is "
            f"{image.shape[0]}x{image.shape[1]} as evaluated (methods.{self.method} must keep "
            "the input's size: e.g. GFPGAN's --upscale 1; with image_size > 0, outputs of the "
            "resized test images)")
      outputs.append(output)
    for problem in problems:
      warn(f"methods.{self.method}: {problem}; the blurred input stands in")
    return outputs, problems


def restored_path(output: pathlib.Path, method: str, set_name: str, name: str) -> pathlib.Path:
  """Where `save_restored` writes a method's restored image: PNG (lossless, so scoring the
  file scores what faceblur scored, rounded to 8 bits), mirroring the test set's names, so an
  `OutputFolder` on <output>/restored/<method> reads every test set back."""
  return output / RESTORED_FOLDER / method / set_name / f"{output_key(name)}.png"


def save_restored(output: pathlib.Path, method: str, set_name: str, names: list[str],
                  images: list[np.ndarray]) -> None:
  for name, image in zip(names, images, strict=True):
    image_io.save_image(restored_path(output, method, set_name, name), image)
