"""The package's one image form, HxWx3 float32 RGB in [0, 1], and the conversions into it.

Every layer takes and returns images in this form (batches NHWC); `as_rgb` is the one place
that turns whatever a user hands in (PIL images, uint8 arrays, grey, RGBA) into it, and
`faceblur.data.image_io` the one place that reads and writes files.
"""

import numpy as np

# ITU-R BT.601 luma weights of R, G and B: brightness for blur analysis and the Y channel
# that deblurring papers score on (there scaled to the studio range, see `metrics.rgb_to_y`).
BT601_LUMA = (0.299, 0.587, 0.114)


def to_float(image) -> np.ndarray:
  """Integers [0, 255] -> float32 [0, 1] (float input is returned as float32 unchanged)."""
  image = np.asarray(image)
  if np.issubdtype(image.dtype, np.integer):
    return image.astype(np.float32) * np.float32(1 / 255)
  return image.astype(np.float32, copy=False)


def to_uint8(image) -> np.ndarray:
  """float [0, 1] -> uint8, clipped and rounded (uint8 input is returned unchanged)."""
  image = np.asarray(image)
  if image.dtype == np.uint8:
    return image
  return np.round(np.clip(image.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def as_rgb(image) -> np.ndarray:
  """Any one image -> HxWx3 float32: a PIL image, or an HxW, HxWx1, HxWx3 or HxWx4 array
  (NumPy or JAX). Integers are read as [0, 255], floats as [0, 1]; grey is replicated and an
  alpha channel dropped, so a network or detector sees the colour image it was trained on."""
  if hasattr(image, "convert"):  # PIL
    image = image.convert("RGB")
  image = to_float(image)
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
    raise ValueError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {image.shape}")
  return np.ascontiguousarray(np.broadcast_to(image[..., :3], (*image.shape[:2], 3)))


def luma(image: np.ndarray) -> np.ndarray:
  """Brightness (H, W) of an HxW or HxWx3 image (BT.601 weights); other channel counts are
  averaged. Blur analysis needs no colour."""
  if image.ndim == 2:
    return image
  if image.shape[-1] == 3:
    return image @ np.asarray(BT601_LUMA, image.dtype)
  return image.mean(axis=-1)
