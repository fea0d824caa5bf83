"""A simulated phone camera in dim light: the demo's "real blurred" domain.

The kernel baseline (`blur_kernels.blur_image`) blurs in sRGB with one shift-invariant
random-trajectory kernel and adds Gaussian noise. The learned-blur method has to be judged
against blur that is *not* made that way, so this module renders what a camera does, in the
order light meets it. Its design and defaults were fixed before any result was seen.

1. sRGB -> linear light (the exact sRGB EOTF): blur and noise are physical in photons, not
   in gamma-encoded values; a blurred highlight stays bright instead of turning grey.
2. Camera shake that varies across the frame (Whyte et al., IJCV 2012): the image is the
   average of the scene seen from a sequence of camera poses over the exposure. Pitch and
   yaw move the image on the sensor (an in-plane translation: a Boracchi & Foi path from
   `blur_kernels.random_trajectory`, `max_shake` of the shorter side long, its first
   50-100 % exposed); roll rotates it about the principal point (a random centre near the
   image centre) by up to `max_roll_deg` peak to peak, and moving toward or away from the
   subject zooms it by up to `max_zoom`. Roll and zoom follow smooth random curves (cubic
   Legendre series): over a 1/15-1/30 s exposure hand tremor (a few Hz) gives a drift with
   at most a turn or two. Poses are rendered by bilinear warps, with as many poses (24 to
   48) as keep every pixel's step between poses within 1 px (48 suffice up to ~256 px
   frames; larger ones get slightly dotted streaks). The time-averaged pose is the
   identity (mean translation, roll and log-zoom removed), so every pixel's local PSF has
   its centre of mass on the pixel: the blurred image stays aligned with the sharp one, as
   paired training needs.
3. Defocus: a disc (pillbox) PSF of radius uniform in [0, `max_defocus`] of the shorter
   side, the geometric-optics image of an out-of-focus point through a round aperture. The
   lens acts on the scene, so it is applied before the shake (the two nearly commute).
4. Poisson-Gaussian sensor noise: photon shot noise with a photon count at white drawn
   log-uniformly in `photons_at_white` (per output pixel: a phone sensor at high ISO collects
   roughly 50-200 e- at white per raw pixel, and a face crop scaled down from a larger photo
   averages several of them), plus Gaussian read noise. The variance grows linearly with the signal,
   unlike the baseline's constant sigma.
5. The camera's tone curve: the sRGB OETF and a global S-curve of random strength up to
   `max_contrast` (phones render contrastier than plain sRGB), clipped to [0, 1].
6. JPEG encode/decode at a random quality in `jpeg_quality` (4:2:0 chroma, PIL's libjpeg).

Not modelled: the Bayer mosaic and demosaicking, lens aberrations, rolling shutter, motion
in the scene, and phone denoising or multi-frame merging.

Each stage draws from its own generator seeded from the caller's, so switching a stage off in
the model leaves the other stages' draws unchanged (the tests isolate stages that way), and
the same generator state gives the same bytes.
"""

import dataclasses
import io
import math

import numpy as np
from PIL import Image

from faceblur.data import blur_kernels
from faceblur.images import to_float, to_uint8

_NUM_STAGES = 5  # shake, defocus, noise, tone, jpeg: one generator each
_MAX_POSE_STEP_PX = 1.0


@dataclasses.dataclass(frozen=True)
class CameraModel:
  """Parameters of the simulated camera; fractions are of the image's shorter side.

  max_shake: arc length of the translational shake path (0.18: with roll and defocus the
    total extent is about the kernel baseline's fifth of the side).
  max_roll_deg: largest peak-to-peak in-plane rotation over the exposure (uniform in
    [0, max]); 3 deg moves the corners of a 128 px frame up to ~4 px.
  max_zoom: largest peak-to-peak relative scale change (1 cm toward a face 50 cm away: 2 %).
  centre_jitter: the roll/zoom centre (principal point) lies uniformly within +-this fraction
    of each side from the image centre.
  num_poses: (fewest, most) poses averaged per image.
  max_defocus: largest disc radius (uniform in [0, max]).
  photons_at_white: (low, high) photon count per pixel at white, log-uniform; None: no noise.
  read_noise: (low, high) read-noise sigma as a fraction of white, log-uniform; (0, 0): none.
  max_contrast: largest S-curve strength k in y = x - k sin(2 pi x) / (2 pi) (uniform in
    [0, max]); slope 1 + k at mid-grey.
  jpeg_quality: (low, high) JPEG quality, uniform integer, inclusive; None: no JPEG.
  """
  max_shake: float = 0.18
  max_roll_deg: float = 3.0
  max_zoom: float = 0.02
  centre_jitter: float = 0.2
  num_poses: tuple[int, int] = (24, 48)
  max_defocus: float = 0.02
  photons_at_white: tuple[float, float] | None = (200.0, 2000.0)
  read_noise: tuple[float, float] = (0.0005, 0.003)
  max_contrast: float = 0.2
  jpeg_quality: tuple[int, int] | None = (60, 95)

  def __post_init__(self):
    for name in ("max_shake", "max_roll_deg", "max_zoom", "centre_jitter", "max_defocus",
                 "max_contrast"):
      if not getattr(self, name) >= 0:
        raise ValueError(f"CameraModel.{name}={getattr(self, name)} must be >= 0")
    if self.max_contrast >= 1:
      raise ValueError(f"CameraModel.max_contrast={self.max_contrast} must be < 1 (a "
                       f"monotone tone curve)")
    ranges = {"num_poses": (self.num_poses, 1)}
    if self.read_noise != (0, 0):  # (0, 0): no read noise
      ranges["read_noise"] = (self.read_noise, 1e-12)
    if self.photons_at_white is not None:
      ranges["photons_at_white"] = (self.photons_at_white, 1e-9)
    if self.jpeg_quality is not None:
      ranges["jpeg_quality"] = (self.jpeg_quality, 1)
    for name, ((low, high), least) in ranges.items():
      if not least <= low <= high:
        raise ValueError(f"CameraModel.{name}=({low}, {high}) needs {least} <= low <= high")
    if self.jpeg_quality is not None and self.jpeg_quality[1] > 100:
      raise ValueError(f"CameraModel.jpeg_quality={self.jpeg_quality} must be at most 100")


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
  """The exact sRGB EOTF (IEC 61966-2-1): encoded values in [0, 1] -> linear light."""
  srgb = np.asarray(srgb, np.float32)
  return np.where(srgb <= 0.04045, srgb / 12.92,
                  ((np.maximum(srgb, 0.04045) + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
  """The exact sRGB OETF, the inverse of `srgb_to_linear`; input clipped to [0, 1]."""
  linear = np.clip(np.asarray(linear, np.float32), 0.0, 1.0)
  return np.where(linear <= 0.0031308, linear * 12.92,
                  1.055 * np.maximum(linear, 0.0031308) ** (1 / 2.4) - 0.055).astype(np.float32)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
  return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _smooth_curve(rng: np.random.Generator, peak_to_peak: float):
  """A random smooth curve on [0, 1] (cubic Legendre series) with the given range."""
  coefficients = np.concatenate([[0.0], rng.standard_normal(3) / np.arange(1, 4)])
  grid = np.polynomial.legendre.legval(np.linspace(-1, 1, 257), coefficients)
  scale = peak_to_peak / max(np.ptp(grid), 1e-12)
  return lambda times: scale * np.polynomial.legendre.legval(2 * times - 1, coefficients)


def _shake_poses(rng: np.random.Generator, height: int, width: int,
                 model: CameraModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The exposure's poses: matrices (K, 2, 2), translations (K, 2) and the centre (2,).

  Pose k maps an output pixel p = (column, row) to the scene point
  matrices[k] @ (p - centre) + centre + translations[k]; the poses average to the identity.
  """
  side = min(height, width)
  trajectory = blur_kernels.random_trajectory(rng, max_length=max(model.max_shake * side, 1e-6))
  exposed_steps = rng.uniform(0.5, 1.0) * (len(trajectory) - 1)
  roll = _smooth_curve(rng, np.deg2rad(model.max_roll_deg) * rng.uniform())
  log_zoom = _smooth_curve(rng, np.log1p(model.max_zoom) * rng.uniform())
  jitter = model.centre_jitter * rng.uniform(-1, 1, size=2) * np.array([width, height])
  centre = np.array([(width - 1) / 2, (height - 1) / 2]) + jitter
  if model.max_shake == 0:
    trajectory = np.zeros_like(trajectory)

  def poses(count):
    times = (np.arange(count) + 0.5) / count  # the middle of each 1/count of the exposure
    steps = times * exposed_steps
    path = (np.interp(steps, np.arange(len(trajectory)), trajectory.real)
            + 1j * np.interp(steps, np.arange(len(trajectory)), trajectory.imag))
    translations = np.stack([path.real, path.imag], axis=1)
    angles, scales = roll(times), log_zoom(times)
    translations -= translations.mean(axis=0)
    angles, scales = angles - angles.mean(), np.exp(scales - scales.mean())
    cos, sin = scales * np.cos(angles), scales * np.sin(angles)
    matrices = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    return matrices, translations

  fewest, most = model.num_poses
  matrices, translations = poses(most)
  # Enough poses that no pixel (the frame's corners travel furthest) jumps more than 1 px.
  corners = np.array([[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]])
  scene = np.einsum("kij,cj->kci", matrices, corners - centre) + translations[:, None]
  travel = np.linalg.norm(np.diff(scene, axis=0), axis=-1).sum(axis=0).max()
  count = int(np.clip(math.ceil(travel / _MAX_POSE_STEP_PX) + 1, fewest, most))
  if count != most:
    matrices, translations = poses(count)
  return matrices, translations, centre


def _render_shake(linear: np.ndarray, matrices: np.ndarray, translations: np.ndarray,
                  centre: np.ndarray) -> np.ndarray:
  """The mean of the bilinearly warped image over the poses (HxWxC float32).

  It warps with PIL's affine transform of 32-bit float images, several times faster than
  scipy.ndimage.map_coordinates ("Figures behind code choices" in bench/RESULTS.md). That
  fills outside the input with 0, so the image is first padded by half-sample reflection
  (scipy's mode 'reflect') beyond the largest displacement.
  """
  height, width, channels = linear.shape
  corners = np.array([[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]])
  offsets = (np.einsum("kij,cj->kci", matrices, corners - centre) + translations[:, None]
             + centre - corners)
  pad = math.ceil(np.abs(offsets).max()) + 2
  padded = np.pad(linear, ((pad, pad), (pad, pad), (0, 0)), mode="symmetric")
  planes = [Image.fromarray(np.ascontiguousarray(padded[..., c]), mode="F")
            for c in range(channels)]
  # PIL maps output pixel centres (x + 0.5, y + 0.5) to input coordinates of the same kind.
  centre_pil = centre + 0.5
  total = np.zeros((channels, height, width), np.float64)
  for matrix, translation in zip(matrices, translations, strict=True):
    constant = centre_pil + translation + pad - matrix @ centre_pil
    coefficients = (matrix[0, 0], matrix[0, 1], constant[0],
                    matrix[1, 0], matrix[1, 1], constant[1])
    for c, plane in enumerate(planes):
      total[c] += np.asarray(plane.transform((width, height), Image.AFFINE, coefficients,
                                             resample=Image.BILINEAR))
  return (np.moveaxis(total, 0, -1) / len(matrices)).astype(np.float32)


def disc_psf(radius: float) -> np.ndarray:
  """A pillbox PSF of `radius` px: float32 (k, k), sum 1, centred.

  Each pixel holds the fraction of its area inside the disc (16x16 samples per pixel), so a
  disc of a fraction of a pixel more or less blurs a fraction more or less.
  """
  half = math.ceil(radius + 0.5)
  samples = (np.arange(16) + 0.5) / 16 - 0.5
  offsets = np.arange(-half, half + 1)[:, None] + samples[None, :]  # (k, 16) per axis
  inside = np.hypot(offsets[:, None, :, None], offsets[None, :, None, :]) <= radius
  psf = inside.mean(axis=(2, 3))
  return (psf / psf.sum()).astype(np.float32)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
  buffer = io.BytesIO()
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
      buffer, format="JPEG", quality=int(quality))
  buffer.seek(0)
  with Image.open(buffer) as decoded:
    return np.asarray(decoded).reshape(image.shape)


def camera_blur(image: np.ndarray, rng: np.random.Generator,
                model: CameraModel | None = None) -> np.ndarray:
  """Renders `image` (uint8, or float in [0, 1]; HxWx3 or HxW) through the simulated camera.

  Returns uint8 of the input's shape. `model=None` is `CameraModel()`. The steps and their
  physics are in the module docstring; every random choice comes from `rng`.
  """
  model = model if model is not None else CameraModel()
  image = np.asarray(image)
  grey = image.ndim == 2
  if grey:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3) or min(image.shape[:2]) < 1:
    raise ValueError(f"camera_blur needs an HxWx3 or HxW image, got shape {image.shape}")
  height, width = image.shape[:2]
  side = min(height, width)
  shake_rng, defocus_rng, noise_rng, tone_rng, jpeg_rng = (
      np.random.default_rng(seed) for seed in rng.integers(0, 2 ** 63, size=_NUM_STAGES))

  linear = srgb_to_linear(np.clip(to_float(image), 0.0, 1.0))
  radius = defocus_rng.uniform(0.0, model.max_defocus * side)
  if radius >= 0.5:  # a disc of radius < 0.5 px covers a single pixel
    linear = blur_kernels.blur_image(linear, disc_psf(radius), noise_std=0.0)
  matrices, translations, centre = _shake_poses(shake_rng, height, width, model)
  if model.max_shake > 0 or model.max_roll_deg > 0 or model.max_zoom > 0:
    linear = _render_shake(linear, matrices, translations, centre)

  if model.photons_at_white is not None:
    photons = _log_uniform(noise_rng, *model.photons_at_white)
    read_noise = _log_uniform(noise_rng, *model.read_noise) if model.read_noise[0] > 0 else 0.0
    electrons = noise_rng.poisson(np.clip(linear, 0.0, 1.0).astype(np.float64) * photons)
    linear = electrons / photons + noise_rng.normal(0.0, read_noise, linear.shape)

  srgb = linear_to_srgb(linear)
  contrast = tone_rng.uniform(0.0, model.max_contrast)
  srgb = srgb - contrast * np.sin(2 * np.pi * srgb) / (2 * np.pi)
  output = to_uint8(srgb)
  if model.jpeg_quality is not None:
    output = _jpeg(output, jpeg_rng.integers(model.jpeg_quality[0], model.jpeg_quality[1] + 1))
  return output[..., 0] if grey else output


def point_spread(rng: np.random.Generator, model: CameraModel | None = None, *,
                 size: int = 64, radius: int = 10,
                 position: tuple[int, int] | None = None) -> np.ndarray:
  """The optics' point spread at `position` (row, column; None: the centre) of a `size` px
  frame: float32 (2 radius + 1,) * 2, sum 1, in linear light. The same draws as `camera_blur`'s
  defocus and shake stages with this `rng`; no noise, tone curve or JPEG. For comparing
  learned kernels with the camera's. Roll and zoom blur a point more the further it lies from
  their centre, so away from the frame's centre the spread is wider."""
  model = model if model is not None else CameraModel()
  row, column = (size // 2, size // 2) if position is None else position
  if not (radius <= row < size - radius and radius <= column < size - radius):
    raise ValueError(f"position {position} leaves no {radius} px margin in a {size} px frame")
  shake_rng, defocus_rng, *_ = (
      np.random.default_rng(seed) for seed in rng.integers(0, 2 ** 63, size=_NUM_STAGES))
  point = np.zeros((size, size, 1), np.float32)
  point[row, column] = 1.0
  defocus = defocus_rng.uniform(0.0, model.max_defocus * size)
  if defocus >= 0.5:
    point = blur_kernels.blur_image(point, disc_psf(defocus), noise_std=0.0)
  if model.max_shake > 0 or model.max_roll_deg > 0 or model.max_zoom > 0:
    point = _render_shake(point, *_shake_poses(shake_rng, size, size, model))
  window = point[row - radius:row + radius + 1, column - radius:column + radius + 1, 0]
  return (window / window.sum()).astype(np.float32)


def noise_sigma(rng: np.random.Generator, model: CameraModel | None = None, *,
                linear: float = 0.18) -> float:
  """The sensor noise's standard deviation at `linear` light (0.18: mid-grey), in linear light:
  the photon count and read noise that `camera_blur` draws with this `rng`. For comparing a
  learned noise model with the camera's."""
  model = model if model is not None else CameraModel()
  noise_rng = np.random.default_rng(rng.integers(0, 2 ** 63, size=_NUM_STAGES)[2])
  if model.photons_at_white is None:
    return 0.0
  photons = _log_uniform(noise_rng, *model.photons_at_white)
  read_noise = _log_uniform(noise_rng, *model.read_noise) if model.read_noise[0] > 0 else 0.0
  return float(np.sqrt(linear / photons + read_noise ** 2))


class CameraBlurredPairs:
  """Pairs made by passing any unpaired source through the simulated camera.

  Records {'blurred', 'sharp': uint8, 'name'}. Record i's randomness depends only on
  (seed, i % len), so every epoch, worker and host sees the same pair.
  """

  def __init__(self, base, *, seed: int = 0, model: CameraModel | None = None):
    self.base, self.seed = base, seed
    self.model = model if model is not None else CameraModel()

  def __len__(self) -> int:
    return len(self.base)

  def blur(self, image: np.ndarray, index: int) -> np.ndarray:
    return camera_blur(image, np.random.default_rng([self.seed, index % len(self)]), self.model)

  def __getitem__(self, index: int) -> dict:
    record = self.base[index]
    return {"blurred": self.blur(record["image"], index), "sharp": record["image"],
            "name": record["name"]}

  def __repr__(self) -> str:
    return f"CameraBlurredPairs({self.base!r}, seed={self.seed}, model={self.model!r})"


class CameraBlurredImages:
  """The unpaired view: records {'image': camera-blurred uint8, 'name'}.

  The stage-1 "real blurred" domain; give it a base (or seed) other than the sharp domain's.
  """

  def __init__(self, base, *, seed: int = 0, model: CameraModel | None = None):
    self.pairs = CameraBlurredPairs(base, seed=seed, model=model)

  def __len__(self) -> int:
    return len(self.pairs)

  def __getitem__(self, index: int) -> dict:
    record = self.pairs.base[index]
    return {"image": self.pairs.blur(record["image"], index), "name": record["name"]}

  def __repr__(self) -> str:
    return (f"CameraBlurredImages({self.pairs.base!r}, seed={self.pairs.seed}, "
            f"model={self.pairs.model!r})")
