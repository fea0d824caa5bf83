"""Per-example numpy augmentation, deterministic given an `np.random.Generator`.

Images are HxWxC arrays, uint8 or float32; every function keeps the dtype. Pair functions
apply the *same* crop and flip to both images of a (blurred, sharp) pair so they stay aligned.
"""

import numpy as np
from PIL import Image

Size = int | tuple[int, int]


def _hw(size: Size) -> tuple[int, int]:
  height, width = (size, size) if isinstance(size, int | np.integer) else size
  return int(height), int(width)


def _crop_origin(image_hw: tuple[int, int], size: Size, rng: np.random.Generator | None):
  (height, width), (crop_h, crop_w) = image_hw, _hw(size)
  if crop_h > height or crop_w > width:
    raise ValueError(f"crop {crop_h}x{crop_w} is larger than the {height}x{width} image")
  if rng is None:
    return (height - crop_h) // 2, (width - crop_w) // 2
  return int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1))


def _crop(image: np.ndarray, top: int, left: int, size: Size) -> np.ndarray:
  crop_h, crop_w = _hw(size)
  return image[top:top + crop_h, left:left + crop_w]


def random_crop(image: np.ndarray, size: Size, rng: np.random.Generator) -> np.ndarray:
  return _crop(image, *_crop_origin(image.shape[:2], size, rng), size)


def center_crop(image: np.ndarray, size: Size) -> np.ndarray:
  return _crop(image, *_crop_origin(image.shape[:2], size, None), size)


def random_flip(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Mirrors left-right with probability 1/2 (faces are near-symmetric; up-down is not)."""
  return image[:, ::-1] if rng.uniform() < 0.5 else image


def random_crop_pair(blurred: np.ndarray, sharp: np.ndarray, size: Size,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  if blurred.shape[:2] != sharp.shape[:2]:
    raise ValueError(f"pair sizes differ: {blurred.shape[:2]} vs {sharp.shape[:2]}")
  top, left = _crop_origin(blurred.shape[:2], size, rng)
  return _crop(blurred, top, left, size), _crop(sharp, top, left, size)


def random_flip_pair(blurred: np.ndarray, sharp: np.ndarray,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  if rng.uniform() < 0.5:
    return blurred[:, ::-1], sharp[:, ::-1]
  return blurred, sharp


_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def resize(image: np.ndarray, size: Size, method: str = "bilinear") -> np.ndarray:
  """Resizes to `size` (an int = square) with PIL's bilinear or bicubic filter.

  PIL widens the filter when shrinking, so downscaling averages like an area filter instead
  of aliasing. uint8 in, uint8 out; float in, float32 out.
  """
  height, width = _hw(size)
  if image.shape[:2] == (height, width):
    return image
  resample = _RESAMPLE[method]
  if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
    return np.asarray(Image.fromarray(image).resize((width, height), resample))
  channels = image[..., None] if image.ndim == 2 else image
  resized = np.stack([
      np.asarray(Image.fromarray(channels[..., c].astype(np.float32), mode="F")
                 .resize((width, height), resample))
      for c in range(channels.shape[-1])], axis=-1)
  resized = resized[..., 0] if image.ndim == 2 else resized
  if image.dtype == np.uint8:
    return np.clip(np.round(resized), 0, 255).astype(np.uint8)
  return resized.astype(np.float32)
