"""Random camera-shake blur after Boracchi & Foi (2012), seeded and reproducible.

A trajectory is the path of the image on the sensor while the shutter is open: N steps of
equal length (total `max_length` pixels), each turning from the last by inertia, Gaussian
jitter, a centripetal pull back toward the start and, rarely, an abrupt shake; `anxiety`
scales how erratic it is. Splatting the first `exposure` fraction of the path onto a pixel
grid gives a point-spread function (PSF). The path is complex: real part = column (x),
imaginary part = row (y, pointing down).

Kernels are centred on their centre of mass, so a blurred image stays aligned with its sharp
original (what paired training needs); real photos also shift, which the alignment-free
CycleGAN stage does not care about.
"""

import math

import numpy as np
import scipy.signal


def random_trajectory(rng: np.random.Generator, *, num_steps: int = 2000,
                      max_length: float = 60.0, anxiety: float | None = None) -> np.ndarray:
  """A random camera-shake path: complex array (num_steps,) starting at 0, arc length max_length.

  Follows Boracchi & Foi's `createTrajectory`. Their default anxiety, uniform in [0, 0.1),
  mostly curls the path into a blob (median extent ~12 % of its length); `anxiety=None`
  instead draws it log-uniformly in [0.001, 0.01], the range DeblurGAN (Kupyn et al. 2018)
  used, so the blur extent follows `max_length` (median ~50 % of it).
  """
  if num_steps < 2:
    raise ValueError(f"num_steps={num_steps} must be at least 2")
  if anxiety is None:
    anxiety = float(np.exp(rng.uniform(np.log(0.001), np.log(0.01))))
  centripetal = 0.7 * rng.uniform()
  gaussian_term = 10.0 * rng.uniform()
  big_shake_rate = 0.2 * rng.uniform()
  direction = complex(np.exp(1j * 2 * np.pi * rng.uniform()))
  step = max_length / (num_steps - 1)
  # All random numbers drawn up front (one generator call each, fast); the walk itself is
  # sequential, so it runs on Python complex numbers, ~10x faster than numpy scalars.
  shake_draws = rng.uniform(size=num_steps - 1).tolist()
  shake_angles = (rng.uniform(size=num_steps - 1) - 0.5).tolist()
  jitter = (rng.standard_normal(num_steps - 1)
            + 1j * rng.standard_normal(num_steps - 1)).tolist()
  velocity = direction * (anxiety if anxiety > 0 else step)
  position = 0j
  path = [0j] * num_steps
  for t in range(num_steps - 1):
    change = anxiety * (gaussian_term * jitter[t] - centripetal * position) * step
    if shake_draws[t] < big_shake_rate * anxiety:
      change += 2 * velocity * complex(np.exp(1j * (np.pi + shake_angles[t])))
    velocity += change
    speed = abs(velocity)
    velocity = velocity / speed * step if speed > 0 else direction * step
    position += velocity
    path[t + 1] = position
  return np.asarray(path, dtype=np.complex128)


def _exposed(trajectory: np.ndarray, exposure: float) -> tuple[np.ndarray, np.ndarray]:
  """The points the shutter saw and their weights (the last point may count fractionally)."""
  if not 0 < exposure <= 1:
    raise ValueError(f"exposure={exposure} must be in (0, 1]")
  exposed_steps = exposure * (len(trajectory) - 1)
  num_points = min(len(trajectory), math.floor(exposed_steps) + 1)
  points = np.asarray(trajectory[:num_points], dtype=np.complex128)
  weights = np.ones(num_points)
  if num_points < len(trajectory) and exposed_steps > num_points - 1:
    points = np.append(points, trajectory[num_points])
    weights = np.append(weights, exposed_steps - (num_points - 1))
  return points, weights


def fitting_kernel_size(trajectory: np.ndarray, exposure: float = 1.0) -> int:
  """The smallest odd kernel side that holds the exposed path centred on its centre of mass."""
  points, weights = _exposed(trajectory, exposure)
  centred = points - np.average(points, weights=weights)
  radius = max(np.abs(centred.real).max(), np.abs(centred.imag).max())
  return 2 * math.ceil(radius) + 3


def trajectory_to_psf(trajectory: np.ndarray, *, kernel_size: int | None = None,
                      exposure: float = 1.0) -> np.ndarray:
  """Bilinear splat of the first `exposure` of the path: float32 (k, k), sum 1, centred.

  The centre of mass lands on pixel (k // 2, k // 2), the centre `blur_image` convolves
  around. `kernel_size=None` picks the smallest odd size that holds the path; a path larger
  than the kernel is clamped to its border (as Boracchi & Foi do).
  """
  points, weights = _exposed(trajectory, exposure)
  if kernel_size is None:
    kernel_size = fitting_kernel_size(trajectory, exposure)
  centre = kernel_size // 2
  points = points - np.average(points, weights=weights) + complex(centre, centre)
  x = np.clip(points.real, 0, kernel_size - 1)
  y = np.clip(points.imag, 0, kernel_size - 1)
  x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
  fx, fy = x - x0, y - y0
  psf = np.zeros((kernel_size + 1, kernel_size + 1))  # the extra row/column only gets 0s
  for dy, wy in ((0, 1 - fy), (1, fy)):
    for dx, wx in ((0, 1 - fx), (1, fx)):
      np.add.at(psf, (y0 + dy, x0 + dx), weights * wy * wx)
  psf = psf[:kernel_size, :kernel_size]
  return (psf / psf.sum()).astype(np.float32)


def random_psf(rng: np.random.Generator, *, kernel_size: int | None = None,
               max_length: float, exposure: float | None = None) -> np.ndarray:
  """A random camera-shake PSF whose path is `max_length` px long (before the exposure cut).

  `exposure=None` draws the exposed fraction uniformly in [0.5, 1], so blur extents spread
  between half and all of `max_length`.
  """
  trajectory = random_trajectory(rng, max_length=max_length)
  if exposure is None:
    exposure = rng.uniform(0.5, 1.0)
  return trajectory_to_psf(trajectory, kernel_size=kernel_size, exposure=exposure)


def motion_blur_psf(length: float, angle_deg: float) -> np.ndarray:
  """A linear motion kernel `length` px long, `angle_deg` counter-clockwise from the x axis."""
  if length <= 1:
    return np.ones((1, 1), np.float32)
  direction = np.exp(-1j * np.deg2rad(angle_deg))  # rows point down: negate the angle
  num_points = max(2, int(math.ceil(4 * length)))
  trajectory = np.linspace(-length / 2, length / 2, num_points) * direction
  return trajectory_to_psf(trajectory)


def blur_image(image: np.ndarray, psf: np.ndarray, *, noise_std: float = 0.01,
               rng: np.random.Generator | None = None) -> np.ndarray:
  """Convolves an HxWx3 (or HxW) float image in [0, 1] with `psf`, adds noise, clips to [0, 1].

  Borders are reflect-padded so the output keeps the input's size without dark edges. Noise
  is Gaussian with `noise_std`; pass `rng` for reproducible noise (None draws fresh entropy).
  """
  image = np.asarray(image, dtype=np.float32)
  psf = np.asarray(psf, dtype=np.float32)
  kernel_h, kernel_w = psf.shape
  pad_h = ((kernel_h - 1) // 2, kernel_h // 2)
  pad_w = ((kernel_w - 1) // 2, kernel_w // 2)
  padding = (pad_h, pad_w) + ((0, 0),) * (image.ndim - 2)
  padded = np.pad(image, padding, mode="reflect" if min(image.shape[:2]) > 1 else "edge")
  kernel = psf.reshape(psf.shape + (1,) * (image.ndim - 2))
  blurred = scipy.signal.fftconvolve(padded, kernel, mode="valid", axes=(0, 1))
  if noise_std > 0:
    rng = rng if rng is not None else np.random.default_rng()
    blurred = blurred + rng.normal(0.0, noise_std, blurred.shape)
  return np.clip(blurred, 0.0, 1.0).astype(np.float32)


def psf_extent(psf: np.ndarray) -> float:
  """The diagonal of the box holding the PSF's mass (px): a blur length comparable across PSFs."""
  rows, cols = np.nonzero(psf > 1e-3 * psf.max())
  return float(math.hypot(rows.max() - rows.min(), cols.max() - cols.min()))
