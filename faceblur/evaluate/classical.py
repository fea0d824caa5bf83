"""Non-learned deconvolution baselines: the "sanity rows" of Table 1.

* `richardson_lucy` and `wiener` deblur with a known point-spread function (PSF). With the
  true kernel they bound what a non-blind method reaches; with a guessed one they are the
  classical baseline a learned deblurrer has to beat.
* `estimate_motion_psf` is a deliberately crude, deterministic blind estimate that assumes the
  blur is one straight motion (the cepstral method, after Rom 1977 and Cannon 1976; see its
  docstring). Real camera shake is rarely a straight line, so treat its results as a floor,
  not a competitor.

Borders: a discrete Fourier transform treats the image as periodic, so the jump between
opposite edges rings through the whole deconvolution. Both deconvolutions therefore work on
an edge-padded copy whose padding fades smoothly to the image mean (an "edge taper"), and
crop the result back.

Images are HxWx3 (or HxW) float in [0, 1]; PSFs are 2-D, non-negative, and normalised here.
Angles are degrees counter-clockwise from the x axis, rows pointing down (as
`faceblur.data.blur_kernels`).
"""

from typing import NamedTuple

import numpy as np
import scipy.fft

from faceblur.data import blur_kernels
from faceblur.images import luma

_EPS = 1e-7
# Pixels per plane from which the FFTs run threaded: below, starting the threads costs more
# than it saves (a padded face crop is ~100x100).
THREADED_FFT_PIXELS = 128 * 128


def linear_motion_psf(length: float, angle_deg: float) -> np.ndarray:
  """A straight motion-blur kernel: float64 (k, k), k odd, sum 1, centred on its middle pixel.

  The line is splatted bilinearly (anti-aliased), so non-integer lengths and any angle give
  a smooth family of kernels; `length <= 1` is the identity (a 1x1 delta).
  """
  return blur_kernels.motion_blur_psf(length, angle_deg).astype(np.float64)


def _normalised_psf(psf: np.ndarray) -> np.ndarray:
  psf = np.asarray(psf, np.float64)
  if psf.ndim != 2 or psf.min() < 0 or psf.sum() <= 0:
    raise ValueError(f"psf must be a non-negative 2-D kernel with positive sum, got shape "
                     f"{psf.shape}")
  return psf / psf.sum()


def _as_image(blurred: np.ndarray) -> np.ndarray:
  image = np.asarray(blurred, np.float64)
  if image.ndim not in (2, 3):
    raise ValueError(f"expected an HxW or HxWxC image, got shape {image.shape}")
  return image


def _planes(image: np.ndarray) -> np.ndarray:
  """HxW or HxWxC -> contiguous (C, H, W): FFTs over the last two axes run several times
  faster than over the first two of an interleaved image."""
  return np.ascontiguousarray(image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0))


def _from_planes(planes: np.ndarray, like: np.ndarray) -> np.ndarray:
  """Back to `like`'s layout, clipped to [0, 1], float32."""
  image = planes[0] if like.ndim == 2 else np.moveaxis(planes, 0, -1)
  return np.clip(image, 0.0, 1.0).astype(np.float32)


def _tapered_pad(planes: np.ndarray, psf: np.ndarray) -> tuple[np.ndarray, tuple[slice, ...]]:
  """Edge-pads (C, H, W) planes by ~2 kernel sizes, fading the padding to each plane's mean.

  The first kernel size of padding repeats the border pixels (what the blur most plausibly
  saw outside the frame); beyond it a raised-cosine ramp blends to the plane's mean, which
  both opposite borders share, so the circular wrap has no jump to ring on. The bottom and
  right padding is stretched to sizes the FFT handles fast. Returns the copy and the crop
  that cuts the original back out.
  """
  pad = 2 * max(psf.shape) + 8
  _, height, width = planes.shape
  extra_rows = scipy.fft.next_fast_len(height + 2 * pad, real=True) - height - 2 * pad
  extra_cols = scipy.fft.next_fast_len(width + 2 * pad, real=True) - width - 2 * pad
  padded = np.pad(planes, ((0, 0), (pad, pad + extra_rows), (pad, pad + extra_cols)),
                  mode="edge")
  mean = planes.mean(axis=(1, 2), keepdims=True)
  ramp_width = pad - max(psf.shape)

  def weight(size: int) -> np.ndarray:
    distance = np.minimum(np.arange(size), np.arange(size)[::-1])  # to the nearest outer edge
    ramp = np.clip(distance / ramp_width, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * ramp)

  fade = np.outer(weight(padded.shape[1]), weight(padded.shape[2]))
  padded = fade * padded + (1.0 - fade) * mean
  return padded, (slice(None), slice(pad, pad + height), slice(pad, pad + width))


def _transfer_function(psf: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  """The PSF's real DFT on a grid of `shape`'s last two axes, its centre pixel moved to (0, 0)
  so that filtering shifts nothing."""
  kernel = np.zeros(shape[-2:])
  kernel[:psf.shape[0], :psf.shape[1]] = psf
  kernel = np.roll(kernel, (-(psf.shape[0] // 2), -(psf.shape[1] // 2)), axis=(0, 1))
  return scipy.fft.rfft2(kernel)


def _circular_filter(planes: np.ndarray, transfer: np.ndarray) -> np.ndarray:
  """FFT product, threaded only on planes of `THREADED_FFT_PIXELS` or more; the result is
  the same either way."""
  workers = -1 if planes.shape[-2] * planes.shape[-1] >= THREADED_FFT_PIXELS else 1
  spectrum = scipy.fft.rfft2(planes, workers=workers)
  return scipy.fft.irfft2(spectrum * transfer, s=planes.shape[-2:], workers=workers)


def richardson_lucy(blurred: np.ndarray, psf: np.ndarray, *, num_iterations: int = 30
                    ) -> np.ndarray:
  """Richardson-Lucy deconvolution of every channel, clipped to [0, 1], float32.

  The multiplicative update x <- x * (psf^T * (y / (psf * x))) is the maximum-likelihood
  step under Poisson noise; it keeps the estimate non-negative and, stopped after a few tens
  of iterations, regularises by early stopping. Starts from the blurred image itself. The
  convolutions are circular FFT products on the tapered padded copy, with the kernel's
  transform computed once.
  """
  if num_iterations < 0:
    raise ValueError(f"num_iterations={num_iterations} must be non-negative")
  image = _as_image(blurred)
  psf = _normalised_psf(psf)
  padded, crop = _tapered_pad(_planes(image), psf)
  observed = np.maximum(padded, _EPS)
  transfer = _transfer_function(psf, padded.shape)
  flipped_transfer = np.conj(transfer)  # the transform of the psf rotated by 180 degrees
  estimate = observed.copy()
  for _ in range(num_iterations):
    ratio = observed / np.maximum(_circular_filter(estimate, transfer), _EPS)
    estimate *= _circular_filter(ratio, flipped_transfer)
  return _from_planes(estimate[crop], image)


def wiener(blurred: np.ndarray, psf: np.ndarray, *, balance: float = 0.01) -> np.ndarray:
  """Wiener deconvolution X = conj(H) Y / (|H|^2 + balance), clipped to [0, 1], float32.

  `balance` is the noise-to-signal power ratio, taken constant over frequencies: larger
  values suppress more noise and ringing at the price of less sharpening. The mean is taken
  out first and put back after: a normalised PSF keeps it exactly (H(0) = 1), and the
  regulariser would otherwise darken the image by a factor 1 / (1 + balance).
  """
  if balance < 0:
    raise ValueError(f"balance={balance} must be non-negative")
  image = _as_image(blurred)
  psf = _normalised_psf(psf)
  padded, crop = _tapered_pad(_planes(image), psf)
  mean = padded.mean(axis=(1, 2), keepdims=True)
  transfer = _transfer_function(psf, padded.shape)
  restored = _circular_filter(padded - mean, np.conj(transfer) / (np.abs(transfer) ** 2 + balance))
  return _from_planes((restored + mean)[crop], image)


def _log_power_cepstrum(brightness: np.ndarray) -> np.ndarray:
  """Real cepstrum IFFT(log(|FFT(image)|^2 + floor)), zero quefrency moved to (H // 2, W // 2).

  A Hann window first removes the edge jump (it would add a cross of spurious energy). The
  floor, twice the median power of the highest frequencies (|f| > 0.4
  cycles/px, mostly noise in a blurred photo), flattens the noise-dominated part of the log
  spectrum, whose random ripple would otherwise spread over the whole cepstrum.
  """
  height, width = brightness.shape
  window = np.outer(np.hanning(height), np.hanning(width))
  power = np.abs(np.fft.fft2((brightness - brightness.mean()) * window)) ** 2
  frequency = np.hypot(*np.meshgrid(np.fft.fftfreq(height), np.fft.fftfreq(width), indexing="ij"))
  floor = 2.0 * np.median(power[frequency > 0.4]) + 1e-6 * power.mean() + 1e-30
  return np.fft.fftshift(np.real(np.fft.ifft2(np.log(power + floor))))


def _parabolic_offset(before: float, at: float, after: float) -> float:
  """Sub-pixel position of an extremum from three samples around it, in [-0.5, 0.5]."""
  curvature = before - 2 * at + after
  return 0.0 if curvature == 0 else float(np.clip(0.5 * (before - after) / curvature, -.5, .5))


class MotionEstimate(NamedTuple):
  """A straight-motion guess: length (px), angle (degrees in [0, 180)), and how clear it was."""
  length: float
  angle_deg: float
  peak_score: float  # robust standard deviations by which the cepstral peak stands out


def estimate_linear_motion(blurred: np.ndarray, *, max_length: int = 31) -> MotionEstimate:
  """The cepstral estimate of a straight motion blur's length and direction.

  A line blur of length L and direction u multiplies the spectrum by sinc^2(L f.u), whose
  log ripples with period 1/L along u; in the cepstrum (the inverse FFT of the log power
  spectrum) that ripple becomes a sharp negative peak at +-L u, while the content of a
  natural image stays near the origin (Cannon 1976; Rom 1977). So the most negative
  cepstrum value at radius 2.5..max_length+1 px gives both direction and length, refined to
  sub-pixel by a parabola through its neighbours. `peak_score` measures how far it stands out
  of the search ring (in robust standard deviations below its median); images under 10 px a
  side give length 1 and score 0. Deterministic.
  """
  brightness = luma(_as_image(blurred))
  height, width = brightness.shape
  outer_radius = min(max_length + 1, min(height, width) // 2 - 2)
  if outer_radius < 3:
    return MotionEstimate(length=1.0, angle_deg=0.0, peak_score=0.0)
  cepstrum = _log_power_cepstrum(brightness)
  centre_row, centre_col = height // 2, width // 2
  rows, cols = np.indices(cepstrum.shape)
  radius = np.hypot(rows - centre_row, cols - centre_col)
  ring = (radius >= 2.5) & (radius <= outer_radius)
  values = cepstrum[ring]
  median = np.median(values)
  spread = 1.4826 * np.median(np.abs(values - median)) + 1e-12
  peak_row, peak_col = np.unravel_index(np.argmin(np.where(ring, cepstrum, np.inf)),
                                        cepstrum.shape)
  row = peak_row + _parabolic_offset(*cepstrum[peak_row - 1:peak_row + 2, peak_col])
  col = peak_col + _parabolic_offset(*cepstrum[peak_row, peak_col - 1:peak_col + 2])
  d_row, d_col = row - centre_row, col - centre_col
  return MotionEstimate(length=float(np.hypot(d_row, d_col)),
                        angle_deg=float(np.rad2deg(np.arctan2(-d_row, d_col)) % 180.0),
                        peak_score=float((median - cepstrum[peak_row, peak_col]) / spread))


def estimate_motion_psf(blurred: np.ndarray, *, max_length: int = 31,
                        min_peak_score: float = 6.0) -> np.ndarray:
  """A crude blind PSF: the straight motion `estimate_linear_motion` finds, or a 1x1 delta.

  When the cepstral peak stands out by less than `min_peak_score` the image shows no clear
  straight blur (it is sharp, defocused, shaken along a curve, or too small); the delta then
  makes deconvolving with the guess a no-op instead of adding ringing. Measured on a 128 px
  portrait (astronaut): straight blurs of 5-21 px score 8-21 with noise sigma <= 0.01 and 5-8
  with sigma 0.02 (the angle then within 5 degrees for lengths >= 6); the sharp or
  Gaussian-blurred portrait scores 3.4-6.6. A crude baseline: real camera shake is rarely a
  straight line.
  """
  motion = estimate_linear_motion(blurred, max_length=max_length)
  if motion.peak_score < min_peak_score:
    return np.ones((1, 1))
  return linear_motion_psf(motion.length, motion.angle_deg)
