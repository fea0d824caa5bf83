"""The simulated phone camera blurs, aligns, varies across the frame, adds signal-dependent
noise, is reproducible, and is told apart from the kernel baseline by the realism features.

Stages are isolated by switching the others off in `CameraModel`: each stage has its own
generator, so the remaining stages draw the same numbers either way.
"""

import numpy as np
import pytest

from faceblur import blur_realism
from faceblur.data import camera_blur, demo
from faceblur.evaluate import classical

CameraModel = camera_blur.CameraModel
# No noise, no tone S-curve, no JPEG: only the optics (shake and defocus) and the sRGB curves.
CLEAN = {"photons_at_white": None, "max_contrast": 0.0, "jpeg_quality": None}
NO_BLUR = {"max_shake": 0.0, "max_roll_deg": 0.0, "max_zoom": 0.0, "max_defocus": 0.0}


def _faces(count: int = 8, size: int = 96) -> np.ndarray:
  return demo.demo_faces(size=size, count=count)


def _dots(size: int, spacing: int) -> tuple[np.ndarray, np.ndarray]:
  """Single white pixels on black every `spacing` px: each one's blur is the local PSF."""
  image = np.zeros((size, size, 3), np.uint8)
  positions = np.arange(spacing // 2, size, spacing)
  image[np.ix_(positions, positions)] = 255
  return image, positions


def _linear_green(image: np.ndarray) -> np.ndarray:
  return camera_blur.srgb_to_linear(image[..., 1] / np.float32(255))


def _band_power(image: np.ndarray, low: float, high: float) -> float:
  """Hann-windowed luma power between `low` and `high` cycles/px."""
  brightness = classical.luma(image.astype(np.float64) / 255)
  height, width = brightness.shape
  window = np.outer(np.hanning(height), np.hanning(width))
  power = np.abs(np.fft.fft2((brightness - brightness.mean()) * window)) ** 2
  rows, cols = np.meshgrid(np.fft.fftfreq(height), np.fft.fftfreq(width), indexing="ij")
  radius = np.hypot(rows, cols)
  return float(power[(radius > low) & (radius <= high)].sum())


def test_same_seed_same_bytes_other_seed_differs():
  face = _faces(1)[0]
  first = camera_blur.camera_blur(face, np.random.default_rng([3, 1]))
  assert first.dtype == np.uint8 and first.shape == face.shape
  np.testing.assert_array_equal(first, camera_blur.camera_blur(face, np.random.default_rng([3, 1])))
  # Float input in [0, 1] is the same picture as its uint8 original (bit-identical floats:
  # noise and JPEG turn a 1-ulp difference into a different draw).
  as_float = face.astype(np.float32) * np.float32(1 / 255)
  np.testing.assert_array_equal(first,
                                camera_blur.camera_blur(as_float, np.random.default_rng([3, 1])))
  other = camera_blur.camera_blur(face, np.random.default_rng([3, 2]))
  assert np.abs(other.astype(int) - first).mean() > 2  # measured 6.6 grey levels
  grey = camera_blur.camera_blur(face[..., 0], np.random.default_rng(0))
  assert grey.shape == face.shape[:2] and grey.dtype == np.uint8


@pytest.mark.parametrize(("stages", "low", "high", "median_at_most", "max_at_most"), [
    # Shake alone and shake + defocus, noise-free: the 0.25-0.5 cycles/px band keeps a
    # median of 0.20 and 0.16 of its power (at most 0.42 on these 8 faces).
    ({"max_defocus": 0.0, **CLEAN}, 0.25, 0.5, 0.3, 0.6),
    (CLEAN, 0.25, 0.5, 0.3, 0.6),
    # Defaults: noise dominates the top band of these upsampled 25 px faces (x29), so the
    # band below it, 0.1-0.25 cycles/px, where faces still have content: median 0.34, max 0.52.
    ({}, 0.1, 0.25, 0.5, 0.7),
    # Defocus alone (discs up to 3.8 px radius): median 0.20, max 0.46.
    ({**NO_BLUR, **CLEAN, "max_defocus": 0.04}, 0.25, 0.5, 0.35, 0.6),
])
def test_it_removes_high_frequencies(stages, low, high, median_at_most, max_at_most):
  model = CameraModel(**stages)
  ratios = [_band_power(camera_blur.camera_blur(face, np.random.default_rng([0, index]), model),
                        low, high) / _band_power(face, low, high)
            for index, face in enumerate(_faces())]
  assert np.median(ratios) < median_at_most and max(ratios) < max_at_most


def test_noise_variance_grows_linearly_with_the_signal_in_linear_light():
  """Poisson-Gaussian: var = signal / photons + read^2. In sRGB the OETF's compression nearly
  cancels the growth (measured std 0.031 at level 0.1 falling to 0.020 at 0.9), so this
  compares in linear light, where the std rises 0.005 -> 0.039."""
  photons, read = 500.0, 0.001
  noisy_model = CameraModel(**{**NO_BLUR, **CLEAN, "photons_at_white": (photons, photons),
                               "read_noise": (read, read)})
  clean_model = CameraModel(**NO_BLUR, **CLEAN)
  signal, variance = [], []
  for index, level in enumerate((0.1, 0.3, 0.5, 0.7, 0.9)):
    patch = np.full((64, 64, 3), level, np.float32)
    noisy = _linear_green(camera_blur.camera_blur(patch, np.random.default_rng(index),
                                                  noisy_model))
    clean = _linear_green(camera_blur.camera_blur(patch, np.random.default_rng(index),
                                                  clean_model))
    signal.append(clean.mean())
    variance.append((noisy - clean).var())
  assert np.all(np.diff(variance) > 0)
  slope, intercept = np.polyfit(signal, variance, 1)
  assert slope == pytest.approx(1 / photons, rel=0.15)  # measured 1.97e-3
  assert 0 < intercept < 2e-5  # read^2 = 1e-6 plus 8-bit rounding; measured 7e-6


def _psf_distance(model: CameraModel, seed: int) -> float:
  """L1 distance (0 to 2) of the normalised blurs of the dots at (24, 24) and (24, 72)."""
  dots, _ = _dots(96, 16)
  blurred = _linear_green(camera_blur.camera_blur(dots, np.random.default_rng(seed), model))
  first, second = blurred[17:32, 17:32], blurred[17:32, 65:80]
  return float(np.abs(first / first.sum() - second / second.sum()).sum())


@pytest.mark.parametrize(("stages", "median_at_least"), [
    ({}, 0.15),  # the default shake: translation, roll and zoom; measured 0.26-0.62, median 0.43
    ({"max_shake": 0.0, "max_zoom": 0.0}, 0.15),  # roll alone: 0.19-0.48, median 0.33
    ({"max_shake": 0.0, "max_roll_deg": 0.0, "max_zoom": 0.1}, 0.15),  # zoom: median 0.85
])
def test_shake_varies_across_the_frame(stages, median_at_least):
  """Translation alone gives the same PSF everywhere (measured distance 0); roll and zoom
  turn and stretch it with the position in the frame."""
  shift_only = CameraModel(max_roll_deg=0.0, max_zoom=0.0, max_defocus=0.0, **CLEAN)
  model = CameraModel(**{"max_defocus": 0.0, **CLEAN, **stages})
  seeds = range(4)
  assert max(_psf_distance(shift_only, seed) for seed in seeds) < 0.02
  assert np.median([_psf_distance(model, seed) for seed in seeds]) > median_at_least


def test_blur_averages_light_not_srgb_values():
  """Alternating black and white columns, shaken: their mix is half the light, which is
  sRGB 0.735 (measured 185-187.5 of 255), not the sRGB midpoint 127.5."""
  stripes = np.zeros((64, 64, 3), np.uint8)
  stripes[:, ::2] = 255
  model = CameraModel(max_roll_deg=0.0, max_zoom=0.0, max_defocus=0.0, **CLEAN)
  for seed in range(4):
    blurred = camera_blur.camera_blur(stripes, np.random.default_rng(seed), model)
    assert 178 < blurred[16:48, 16:48].mean() < 195


def test_stages_off_is_the_identity_and_each_isp_stage_acts():
  ramp = np.tile(np.arange(256, dtype=np.uint8)[None, :, None], (8, 1, 3))
  identity = CameraModel(**NO_BLUR, **CLEAN)
  np.testing.assert_array_equal(camera_blur.camera_blur(ramp, np.random.default_rng(0),
                                                        identity), ramp)
  np.testing.assert_allclose(camera_blur.linear_to_srgb(camera_blur.srgb_to_linear(ramp / 255)),
                             ramp / 255, atol=1e-5)
  assert camera_blur.srgb_to_linear(np.float32(0.5)) == pytest.approx(0.21404, abs=1e-5)
  # The S-curve darkens shadows and brightens highlights, keeps mid-grey and stays monotone.
  s_curve = CameraModel(**{**NO_BLUR, **CLEAN, "max_contrast": 0.2})
  darkest_shadow = 64
  for seed in range(4):
    toned = camera_blur.camera_blur(ramp, np.random.default_rng(seed), s_curve)[0, :, 0]
    toned = toned.astype(int)
    assert np.all(np.diff(toned) >= 0) and abs(toned[128] - 128) <= 1
    assert toned[64] <= 64 and toned[192] >= 192 and toned[64] + toned[192] in (255, 256, 257)
    darkest_shadow = min(darkest_shadow, toned[64])
  assert darkest_shadow < 64 - 2  # measured 59-62 over the 4 seeds
  face = _faces(1)[0]
  jpeg_only = CameraModel(**{**NO_BLUR, **CLEAN, "jpeg_quality": (60, 95)})
  compressed = camera_blur.camera_blur(face, np.random.default_rng(0), jpeg_only)
  assert 0.3 < np.abs(compressed.astype(int) - face).mean() < 3  # measured 1.08


def test_disc_psf_is_a_centred_normalised_pillbox():
  for radius in (0.7, 2.0, 4.5):
    psf = camera_blur.disc_psf(radius)
    assert psf.dtype == np.float32 and psf.shape[0] == psf.shape[1] and psf.shape[0] % 2 == 1
    assert psf.sum() == pytest.approx(1, abs=1e-6)
    np.testing.assert_allclose(psf, psf[::-1, ::-1], atol=1e-7)
    np.testing.assert_allclose(psf, psf.T, atol=1e-7)
    assert 1 / psf.max() == pytest.approx(np.pi * radius ** 2, rel=0.02)  # flat: 1 / area


@pytest.mark.parametrize("roll_deg", [3.0, 8.0])
def test_every_local_psf_is_centred_on_its_pixel(roll_deg):
  """The time-averaged pose is the identity: each dot's blur has its centre of mass on the
  dot, anywhere in the frame (measured at most 0.10 px, and 0.12 px with an 8 degree roll;
  without the re-centring it is several px)."""
  dots, positions = _dots(128, 32)
  model = CameraModel(max_roll_deg=roll_deg, **CLEAN)
  half = 15
  for seed in range(4):
    blurred = _linear_green(camera_blur.camera_blur(dots, np.random.default_rng(seed), model))
    for row in positions:
      for col in positions:
        window = (slice(max(row - half, 0), row + half + 1),
                  slice(max(col - half, 0), col + half + 1))
        rows, cols = np.mgrid[window]
        mass = blurred[window]
        assert abs((mass * rows).sum() / mass.sum() - row) < 0.3
        assert abs((mass * cols).sum() / mass.sum() - col) < 0.3


def test_point_spread_is_what_the_camera_does_to_a_point_with_the_same_draws():
  """`point_spread` (tools/kernel_spread.py's camera rows) is the optics of `camera_blur` with
  the same generator: a white point through the camera without noise, tone curve or JPEG,
  back in linear light, gives the same kernel (up to 8-bit rounding), and other draws differ."""
  model = CameraModel(max_shake=0.1, max_defocus=0.05, **CLEAN)
  point = np.zeros((64, 64, 3), np.uint8)
  point[32, 32] = 255
  kernels = []
  for seed in range(3):
    psf = camera_blur.point_spread(np.random.default_rng(seed), model, radius=10)
    rendered = _linear_green(camera_blur.camera_blur(point, np.random.default_rng(seed), model))
    window = rendered[22:43, 22:43]
    assert psf.shape == (21, 21) and psf.dtype == np.float32 and psf.min() >= 0
    assert psf.sum() == pytest.approx(1, abs=1e-5)
    np.testing.assert_allclose(psf, window / window.sum(), atol=2e-3)
    kernels.append(psf)
  assert not np.allclose(kernels[0], kernels[1], atol=1e-3)


def test_point_spread_away_from_the_centre():
  """Without roll or zoom a shake blurs every point alike, so the spread is the same anywhere
  in the frame; roll and zoom blur a point more the further it lies from their centre."""
  def rms_radius(psf):
    offsets = np.arange(psf.shape[0]) - psf.shape[0] // 2
    rows, cols = np.meshgrid(offsets, offsets, indexing="ij")
    row, col = (psf * rows).sum(), (psf * cols).sum()
    return float(np.sqrt((psf * ((rows - row) ** 2 + (cols - col) ** 2)).sum()))

  uniform = CameraModel(max_shake=0.1, max_roll_deg=0.0, max_zoom=0.0, **CLEAN)
  for seed in range(3):
    centre = camera_blur.point_spread(np.random.default_rng(seed), uniform)
    np.testing.assert_array_equal(
        centre, camera_blur.point_spread(np.random.default_rng(seed), uniform,
                                         position=(32, 32)))
    np.testing.assert_allclose(
        camera_blur.point_spread(np.random.default_rng(seed), uniform, position=(12, 50)),
        centre, atol=1e-6)
  turning = CameraModel(max_shake=0.0, max_roll_deg=6.0, max_zoom=0.0, centre_jitter=0.0,
                        **CLEAN)
  centre, corner = ([rms_radius(camera_blur.point_spread(np.random.default_rng(seed), turning,
                                                         position=position))
                     for seed in range(8)] for position in ((32, 32), (10, 10)))
  assert np.mean(corner) > 2 * np.mean(centre)
  with pytest.raises(ValueError, match="margin"):
    camera_blur.point_spread(np.random.default_rng(0), uniform, position=(5, 32))


def test_noise_sigma_is_the_noise_the_camera_adds_with_the_same_draws():
  """`noise_sigma` (tools/kernel_spread.py's noise column) is the standard deviation that
  `camera_blur`, with the same generator, leaves on a flat grey frame in linear light."""
  model = CameraModel(**NO_BLUR, max_contrast=0.0, jpeg_quality=None)
  grey = np.full((96, 96, 3), 117, np.uint8)
  level = float(camera_blur.srgb_to_linear(np.float32(117 / 255)))
  sigmas = []
  for seed in range(3):
    rendered = camera_blur.camera_blur(grey, np.random.default_rng(seed), model)
    measured = float(np.std(camera_blur.srgb_to_linear(rendered / np.float32(255))))
    sigma = camera_blur.noise_sigma(np.random.default_rng(seed), model, linear=level)
    assert measured == pytest.approx(sigma, rel=0.05)
    sigmas.append(sigma)
  assert len(set(sigmas)) == 3  # other draws, other levels


def test_blurred_faces_stay_aligned_with_the_sharp_ones():
  """Cross-correlation peak of sharp and default-camera faces: measured at 0 px for all 12
  (sub-pixel phase correlation: 0-0.6 px); without the re-centring it moves by several px."""
  faces = _faces(12)
  for index, face in enumerate(faces):
    blurred = camera_blur.camera_blur(face, np.random.default_rng([0, index]))
    sharp_luma = classical.luma(face / 255.0)
    blurred_luma = classical.luma(blurred / 255.0)
    cross = np.fft.ifft2(np.fft.fft2(blurred_luma - blurred_luma.mean())
                         * np.conj(np.fft.fft2(sharp_luma - sharp_luma.mean()))).real
    peak = np.unravel_index(np.argmax(cross), cross.shape)
    shift = [(p + n // 2) % n - n // 2 for p, n in zip(peak, cross.shape, strict=True)]
    assert max(abs(s) for s in shift) <= 1, (index, shift)


def test_the_realism_features_tell_camera_blur_from_kernel_blur():
  """40 faces at 96 px through the camera (defaults) against the same faces kernel-blurred
  by the baseline at its default extent (paths a fifth of the side, the camera's are 0.18 of
  it). Measured: MMD^2 0.089, p = 0.005 (the smallest 200 permutations give), held-out
  classifier accuracy 0.86; two halves of the camera set: p = 0.94. With the camera's noise,
  tone curve and JPEG off (and the baseline's noise off), the blur alone is not told apart at
  this sample size (p = 0.61): the difference these features see is the sensor and ISP."""
  base = demo.DemoFaces(size=96, count=40, seed=0)
  camera = camera_blur.CameraBlurredPairs(base, seed=1)
  kernel = demo.KernelBlurredPairs(base, seed=1)
  camera_features = blur_realism.blur_features(
      np.stack([camera[index]["blurred"] for index in range(len(base))]) / 255.0)
  kernel_features = blur_realism.blur_features(
      np.stack([kernel[index]["blurred"] for index in range(len(base))]) / 255.0)
  result = blur_realism.mmd_two_sample(camera_features, kernel_features, seed=0)
  assert result.p_value < 0.05 and result.mmd2 > 0.03
  halves = blur_realism.mmd_two_sample(camera_features[:20], camera_features[20:], seed=0)
  assert halves.p_value > 0.05


def test_pairs_and_unpaired_view():
  base = demo.DemoFaces(size=48, count=5, seed=0)
  pairs = camera_blur.CameraBlurredPairs(base, seed=4)
  assert len(pairs) == 5 and "CameraBlurredPairs(DemoFaces(" in repr(pairs)
  record = pairs[2]
  assert set(record) == {"blurred", "sharp", "name"} and record["name"] == base[2]["name"]
  assert record["blurred"].dtype == np.uint8 and record["blurred"].shape == (48, 48, 3)
  np.testing.assert_array_equal(record["sharp"], base[2]["image"])
  np.testing.assert_array_equal(record["blurred"], pairs[2]["blurred"])
  np.testing.assert_array_equal(  # only (seed, index) matters: a new wrapper, the same pair
      record["blurred"], camera_blur.CameraBlurredPairs(base, seed=4)[2]["blurred"])
  assert not np.array_equal(record["blurred"],
                            camera_blur.CameraBlurredPairs(base, seed=5)[2]["blurred"])
  # Two indices holding the same face draw different cameras.
  same_face = camera_blur.CameraBlurredPairs([base[2], base[2]], seed=4)
  assert not np.array_equal(same_face[0]["blurred"], same_face[1]["blurred"])

  images = camera_blur.CameraBlurredImages(base, seed=4)
  assert len(images) == 5 and repr(images).startswith("CameraBlurredImages(DemoFaces(")
  assert set(images[2]) == {"image", "name"} and images[2]["name"] == base[2]["name"]
  np.testing.assert_array_equal(images[2]["image"], record["blurred"])


def test_model_rejects_impossible_parameters():
  for bad in ({"max_shake": -0.1}, {"max_contrast": 1.0}, {"jpeg_quality": (90, 60)},
              {"jpeg_quality": (60, 101)}, {"photons_at_white": (0.0, 10.0)},
              {"num_poses": (0, 4)}, {"read_noise": (0.0, 0.01)}):
    with pytest.raises(ValueError, match=next(iter(bad))):
      CameraModel(**bad)
  with pytest.raises(ValueError, match="HxWx3"):
    camera_blur.camera_blur(np.zeros((8, 8, 4)), np.random.default_rng(0))


def test_a_source_switches_camera_stages_off_by_name():
  """`camera=` on a source spec sets `CameraModel` fields (tools/oracle_budget.py's ablation:
  labels without a stage of the camera), and a misspelt field is one line naming it."""
  from configs import common  # noqa: PLC0415
  from faceblur.data import factory  # noqa: PLC0415
  from faceblur.errors import ConfigError  # noqa: PLC0415

  base = dict(kind="demo_sharp", split="test", count=2, seed=0)
  clean = factory.make_paired_source(common.source(
      "camera_blurred", base=base, seed=3, max_shake=0.1, camera={**CLEAN, **NO_BLUR}),
      image_size=32)
  for index in range(2):  # no blur, noise, tone or JPEG: sRGB to linear and back, 8-bit
    np.testing.assert_allclose(clean[index]["blurred"].astype(float),
                               clean[index]["sharp"].astype(float), atol=1)
  noisy = factory.make_paired_source(common.source(
      "camera_blurred", base=base, seed=3, max_shake=0.1), image_size=32)
  assert np.abs(noisy[0]["blurred"].astype(float) - noisy[0]["sharp"]).mean() > 1
  with pytest.raises(ConfigError, match="unknown camera field 'max_shak'"):
    factory.make_paired_source(common.source("camera_blurred", base=base,
                                             camera={"max_shak": 0.1}), image_size=32)
  with pytest.raises(ConfigError, match="max_contrast"):
    factory.make_paired_source(common.source("camera_blurred", base=base,
                                             camera={"max_contrast": 2.0}), image_size=32)


@pytest.mark.parametrize("max_shake", [0.1, 0.3])
def test_shake_path_length_is_max_shake_of_the_shorter_side(max_shake):
  """Guards the camera's scale (issue 26, break 9), as the kernel baseline's path is tied to
  its `max_blur_length`: the exposed translation path is at most `max_shake` x the shorter
  side long, and its first 50-100 % is exposed, so the longest paths come near that bound."""
  model = camera_blur.CameraModel(max_shake=max_shake, max_roll_deg=0.0, max_zoom=0.0)
  height, width = 64, 128
  lengths = []
  for seed in range(24):
    _, translations, _ = camera_blur._shake_poses(np.random.default_rng(seed), height, width,
                                                  model)
    lengths.append(np.linalg.norm(np.diff(translations, axis=0), axis=1).sum())
  bound = max_shake * min(height, width)
  assert max(lengths) <= bound * 1.001
  assert max(lengths) >= 0.8 * bound and min(lengths) >= 0.3 * bound
