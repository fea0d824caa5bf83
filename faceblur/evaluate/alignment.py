"""RealBlur's scoring: match an output's brightness and geometry to the ground truth first.

RealBlur's ground truth comes from a second camera, so a correct deblurring can sit a few
pixels and a little brightness away from it. Its evaluation (`evaluation_RealBlur_ecc.py`,
after Köhler et al.) therefore scales the output by the least-squares gain onto the ground
truth, estimates a homography with OpenCV's ECC (grey images, identity start, 100 iterations,
no epsilon stop, 5-pixel Gaussian prefilter), warps the output by it (cubic, reflected border)
and scores only where the warp has data: PSNR over the valid pixels, and the scikit-image SSIM
map (Gaussian window, population covariance, data range 1) times the valid mask, averaged over
the valid positions where the window fits, channel by channel. This module reproduces that;
`protocols` calls it for `protocol=realblur`.
"""

import dataclasses

import numpy as np
from scipy import ndimage

from faceblur import metrics
from faceblur.errors import ConfigError

ECC_ITERATIONS = 100
ECC_GAUSSIAN_FILTER = 5


@dataclasses.dataclass
class Aligned:
  aligned: np.ndarray     # the output, brightness-matched, warped and masked (HxWxC float64)
  reference: np.ndarray   # the ground truth, masked the same way
  mask: np.ndarray        # 1 where the warp has data, 0 elsewhere (HxWxC)
  warp: np.ndarray        # the 3x3 homography (ECC's, maps reference to output coordinates)
  converged: bool
  reason: str = ""        # why ECC failed, when it did


def _cv2():
  try:
    import cv2  # noqa: PLC0415 — OpenCV is optional; only the realblur protocol needs it
  except ImportError:
    raise ConfigError("protocol 'realblur' needs OpenCV: pip install "
                      "'opencv-python-headless<5'") from None
  return cv2


def align_to_reference(restored: np.ndarray, reference: np.ndarray) -> Aligned:
  """`restored` brightness-matched and ECC-aligned onto `reference` (HxWx3 floats in [0, 1]).

  A failed ECC (it raises on images it cannot correlate) leaves the output unwarped, with the
  whole image valid, and says why in `reason`.
  """
  cv2 = _cv2()
  restored = np.ascontiguousarray(restored, np.float32)
  reference = np.ascontiguousarray(reference, np.float32)
  gain = np.sum(reference * restored, dtype=np.float64) / max(
      np.sum(restored * restored, dtype=np.float64), 1e-12)
  matched = (restored * np.float32(gain)).astype(np.float32)
  warp = np.eye(3, dtype=np.float32)
  criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, 0)
  height, width = reference.shape[:2]
  try:
    _, warp = cv2.findTransformECC(
        cv2.cvtColor(reference, cv2.COLOR_RGB2GRAY), cv2.cvtColor(matched, cv2.COLOR_RGB2GRAY),
        warp, cv2.MOTION_HOMOGRAPHY, criteria, None, ECC_GAUSSIAN_FILTER)
  except cv2.error as error:
    reason = " ".join(str(error).split())[-160:]
    mask = np.ones_like(reference, dtype=np.float64)
    return Aligned(matched.astype(np.float64), reference.astype(np.float64), mask,
                   np.eye(3, dtype=np.float32), converged=False, reason=reason)
  warped = cv2.warpPerspective(matched, warp, (width, height),
                               flags=cv2.INTER_CUBIC + cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REFLECT)
  mask = cv2.warpPerspective(np.ones_like(matched), warp, (width, height),
                             flags=cv2.INTER_NEAREST + cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
  mask = mask.reshape(reference.shape).astype(np.float64)
  warped = warped.reshape(reference.shape).astype(np.float64)
  return Aligned(warped * mask, reference.astype(np.float64) * mask, mask, warp, converged=True)


def masked_psnr(restored: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
  """PSNR (data range 1) over the pixels and channels where `mask` is 1."""
  error = np.sum((reference.astype(np.float64) - restored) ** 2) / np.sum(mask)
  return float(10 * np.log10(1.0 / error)) if error > 0 else float("inf")


def _gaussian_valid(image: np.ndarray) -> np.ndarray:
  """The SSIM window over H and W of an HxWxC float64 image, where it fits."""
  radius = metrics.SSIM_WINDOW // 2
  window = np.exp(-0.5 * (np.arange(-radius, radius + 1) / metrics.SSIM_SIGMA) ** 2)
  window /= window.sum()
  for axis in (0, 1):
    image = ndimage.correlate1d(image, window, axis=axis, mode="nearest")
  return image[radius:-radius, radius:-radius]


def masked_ssim(restored: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
  """scikit-image's SSIM map of the (masked) pair, times the mask, averaged per channel over
  the valid positions where the window fits, then over channels (RealBlur's SSIM)."""
  x, y = reference.astype(np.float64), restored.astype(np.float64)
  ux, uy = _gaussian_valid(x), _gaussian_valid(y)
  vx = _gaussian_valid(x * x) - ux * ux
  vy = _gaussian_valid(y * y) - uy * uy
  vxy = _gaussian_valid(x * y) - ux * uy
  c1, c2 = metrics.SSIM_K1 ** 2, metrics.SSIM_K2 ** 2
  ssim_map = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
  radius = metrics.SSIM_WINDOW // 2
  valid = mask[radius:-radius, radius:-radius]
  per_channel = np.sum(ssim_map * valid, axis=(0, 1)) / np.maximum(np.sum(valid, axis=(0, 1)),
                                                                   1e-12)
  return float(np.mean(per_channel))
