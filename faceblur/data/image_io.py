"""Image files in and out: the only place faceblur decodes or encodes an image.

Every file becomes an HxWx3 uint8 RGB array, whatever its mode: grey is replicated, palette
images are expanded, 16-bit images are scaled to 8 bits, CMYK is converted, EXIF rotation is
applied, and transparency is composited onto white (a transparent background then looks like
a plain studio backdrop instead of whatever colour the invisible pixels happen to hold).
Anything that goes wrong raises `ImageReadError` with one line naming the file, so a bad file
deep inside a dataset is found by its path instead of by a PIL traceback.
"""

import os
import pathlib
import tempfile

import numpy as np
from PIL import Image, ImageOps

from faceblur.errors import DataError, ImageReadError
from faceblur.images import to_uint8

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")

_WHITE = (255, 255, 255)


def _current_umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


_UMASK = _current_umask()


def _one_line(error: BaseException) -> str:
  text = " ".join(str(error).split())
  return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _scale_16_bit(image: Image.Image) -> Image.Image:
  """16-bit (and 32-bit integer) grey images: map 0..65535 to 0..255."""
  values = np.asarray(image, dtype=np.float64)
  full_scale = 65535.0 if values.max(initial=0) > 255 or image.mode.startswith("I;16") else 255.0
  return Image.fromarray(np.round(np.clip(values, 0, full_scale) * (255.0 / full_scale))
                         .astype(np.uint8), mode="L")


def _to_rgb(image: Image.Image) -> Image.Image:
  if image.mode == "P":
    image = image.convert("RGBA" if "transparency" in image.info else "RGB")
  elif image.mode == "PA":
    image = image.convert("RGBA")
  if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
    image = _scale_16_bit(image)
  if image.mode in ("RGBA", "LA", "RGBa", "La"):
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, _WHITE + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")
  return image.convert("RGB") if image.mode != "RGB" else image


def load_image(path: str | os.PathLike) -> np.ndarray:
  """Decodes an image file to HxWx3 uint8 RGB (see the module docstring for the conversions)."""
  try:
    with Image.open(path) as image:
      image.load()
      image = ImageOps.exif_transpose(image)
      array = np.asarray(_to_rgb(image), dtype=np.uint8)
  except FileNotFoundError:
    raise ImageReadError(f"{path}: no such file") from None
  except IsADirectoryError:
    raise ImageReadError(f"{path}: is a folder, not an image") from None
  except Image.UnidentifiedImageError:
    raise ImageReadError(f"{path}: not an image, or a format PIL cannot read") from None
  except Exception as error:  # noqa: BLE001 — any decoder failure is this file's problem
    raise ImageReadError(f"{path}: cannot decode ({_one_line(error)})") from error
  if array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) == 0:
    raise ImageReadError(f"{path}: decoded to an unusable shape {array.shape}")
  return array


def _pil_format(path: pathlib.Path) -> str:
  image_format = Image.registered_extensions().get(path.suffix.lower())
  if image_format is None:
    raise DataError(f"{path}: cannot tell the image format from the suffix "
                    f"(use one of {', '.join(IMAGE_EXTENSIONS)})")
  return image_format


def save_image(path: str | os.PathLike, image: np.ndarray) -> None:
  """Writes an HxWx3 (or HxW) image, float in [0, 1] (clipped) or uint8.

  The format follows the suffix. The file is written to a temporary name in the same folder
  and renamed into place, so a crash never leaves a half-written image under the final name.
  """
  path = pathlib.Path(path)
  image_format = _pil_format(path)
  array = to_uint8(image)
  if array.ndim == 3 and array.shape[2] == 1:
    array = array[..., 0]
  if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
    raise ValueError(f"{path}: expected an HxWx3 or HxW image, got shape {array.shape}")
  path.parent.mkdir(parents=True, exist_ok=True)
  options = {"quality": 95} if image_format in ("JPEG", "WEBP") else {}
  handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(handle, "wb") as file:
      Image.fromarray(array).save(file, format=image_format, **options)
    os.chmod(temp_name, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs are the user's
    os.replace(temp_name, path)
  except BaseException:
    pathlib.Path(temp_name).unlink(missing_ok=True)
    raise


def is_image_file(path: pathlib.Path) -> bool:
  """By extension (case-insensitive); hidden files such as macOS `._x.jpg` are not images."""
  return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_images(root: str | os.PathLike) -> list[pathlib.Path]:
  """Every image file under `root` (recursive, following links, hidden entries skipped), sorted."""
  root = pathlib.Path(root).expanduser()
  if not root.exists():
    raise DataError(f"{root}: no such folder")
  if not root.is_dir():
    raise DataError(f"{root}: not a folder")
  found = []
  for folder, subfolders, files in os.walk(root, followlinks=True):
    subfolders[:] = [name for name in subfolders if not name.startswith(".")]
    found.extend(pathlib.Path(folder) / name for name in files
                 if is_image_file(pathlib.Path(name)))
  if not found:
    raise DataError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) found")
  return sorted(found, key=lambda path: path.relative_to(root).as_posix())
