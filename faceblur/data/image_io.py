"""Image files in and out: the only place faceblur decodes or encodes an image.

Every file becomes an HxWx3 uint8 RGB array, whatever its mode: grey is replicated, palette
images are expanded, 16-bit images are scaled to 8 bits, CMYK is converted, EXIF rotation is
applied, and transparency is composited onto white (a transparent background then looks like
a plain studio backdrop instead of whatever colour the invisible pixels happen to hold). A GIF
gives its first frame. TIFFs come in 8 or 16 bits, grey or RGB; a floating-point one has no
agreed white, so it is scaled (values in [0, 1] as 0..255, any other range stretched to it)
with one warning naming the file.
Anything that goes wrong raises `ImageReadError` with one line naming the file, so a bad file
deep inside a dataset is found by its path instead of by a PIL traceback.

A folder's files in image formats faceblur does not read (HEIC, camera raw, ...) are named in
one warning line when the folder is listed, never left out in silence; files that are no
images at all (notes, sidecars) are not.
"""

import logging
import os
import pathlib
import tempfile
import threading

import numpy as np
from PIL import Image, ImageOps

from faceblur.errors import DataError, ImageReadError
from faceblur.images import to_uint8

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
# Image formats a photo folder may hold that faceblur does not read; PIL's other formats too.
_OTHER_IMAGE_EXTENSIONS = frozenset((
    ".heic", ".heif", ".avif", ".jxl", ".svg", ".exr", ".hdr", ".dng", ".raw", ".cr2", ".cr3",
    ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".orf", ".rw2", ".raf", ".pef", ".srw",
    ".x3f", ".3fr", ".iiq", ".kdc", ".mrw", ".erf"))
_TIFF_EXTENSIONS = (".tif", ".tiff")
_WARNED: set[str] = set()  # each warning once per process: a dataset is read every epoch
_WARNED_LOCK = threading.Lock()

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


def _warn_once(message: str) -> None:
  with _WARNED_LOCK:
    if message in _WARNED:
      return
    _WARNED.add(message)
  logging.warning("%s", message)


def _float_to_uint8(path: str | os.PathLike, values: np.ndarray) -> np.ndarray:
  """Floating-point samples to 0..255, with one warning saying how (module docstring)."""
  values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
  low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
  if 0.0 <= low and high <= 1.0:
    low, high, how = 0.0, 1.0, "read [0, 1] as 0..255"
  else:
    how = f"stretched its range [{low:.4g}, {high:.4g}] to 0..255"
  _warn_once(f"{path}: floating-point samples; {how}")
  scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
  return np.round(np.clip(scaled, 0, 255)).astype(np.uint8)


def _tiff_without_pil(path: str | os.PathLike) -> Image.Image:
  """The first page of a TIFF PIL cannot decode (floating-point RGB, say), through tifffile
  (scikit-image's TIFF reader)."""
  import tifffile  # noqa: PLC0415 — only for the TIFFs PIL cannot read

  array = np.asarray(tifffile.imread(path, key=0))
  if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (3, 4):
    array = np.moveaxis(array, 0, -1)  # planar: one plane per channel
  if array.ndim == 3 and array.shape[-1] == 1:
    array = array[..., 0]
  if np.issubdtype(array.dtype, np.floating):
    array = _float_to_uint8(path, array)
  elif array.dtype == np.uint16:
    array = np.round(array / 257.0).astype(np.uint8)
  if array.dtype != np.uint8 or array.ndim not in (2, 3) or (
      array.ndim == 3 and array.shape[-1] not in (3, 4)):
    raise ValueError(f"{array.dtype} samples of shape {array.shape}")
  return Image.fromarray(array)


def _to_rgb(image: Image.Image, path: str | os.PathLike) -> Image.Image:
  if image.mode == "F":  # floating-point grey (a TIFF)
    image = Image.fromarray(_float_to_uint8(path, np.asarray(image)))
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
    try:
      with Image.open(path) as image:  # a GIF opens on its first frame
        image.load()
        image = ImageOps.exif_transpose(image)
        array = np.asarray(_to_rgb(image, path), dtype=np.uint8)
    except Image.UnidentifiedImageError:
      if not str(path).lower().endswith(_TIFF_EXTENSIONS):
        raise
      array = np.asarray(_to_rgb(_tiff_without_pil(path), path), dtype=np.uint8)
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


def _is_unread_image_format(path: pathlib.Path) -> bool:
  """An image by its suffix (PIL's formats, HEIC, camera raw, ...) that faceblur does not
  read; hidden files are no images."""
  suffix = path.suffix.lower()
  if path.name.startswith(".") or suffix in IMAGE_EXTENSIONS:
    return False
  return suffix in _OTHER_IMAGE_EXTENSIONS or suffix in Image.registered_extensions()


def _warn_about_unread_formats(root: pathlib.Path, paths: list[pathlib.Path],
                               limit: int = 5) -> None:
  if not paths:
    return
  names = sorted(path.relative_to(root).as_posix() for path in paths)
  more = f" and {len(names) - limit} more" if len(names) > limit else ""
  _warn_once(f"{root}: left out {len(names)} file{'s' if len(names) > 1 else ''} in image "
             f"formats faceblur does not read ({', '.join(names[:limit])}{more}); convert them "
             f"to one of {', '.join(IMAGE_EXTENSIONS)}")


def list_images(root: str | os.PathLike) -> list[pathlib.Path]:
  """Every image file under `root` (recursive, following links, hidden entries skipped), sorted."""
  root = pathlib.Path(root).expanduser()
  if not root.exists():
    raise DataError(f"{root}: no such folder")
  if not root.is_dir():
    raise DataError(f"{root}: not a folder")
  found, unread = [], []
  for folder, subfolders, files in os.walk(root, followlinks=True):
    subfolders[:] = [name for name in subfolders if not name.startswith(".")]
    for name in files:
      path = pathlib.Path(folder) / name
      if is_image_file(path):
        found.append(path)
      elif _is_unread_image_format(path):
        unread.append(path)
  _warn_about_unread_formats(root, unread)
  if not found:
    raise DataError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) found")
  return sorted(found, key=lambda path: path.relative_to(root).as_posix())
