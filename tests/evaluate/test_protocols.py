"""The benchmarks' scoring protocols on hand-made arrays whose answers are known.

MATLAB's RGB SSIM against a direct 3-D Gaussian filtering (scipy, replicated borders); 8-bit
rounding changing PSNR exactly as computed by hand; RealBlur's alignment bringing a shifted and
a scaled copy back onto the ground truth; its masked SSIM with nothing masked equal to
scikit-image's; BasicSR's crop_border as cropping by hand; bad settings in one line.
"""

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import structural_similarity

from faceblur import metrics
from faceblur.errors import ConfigError
from faceblur.evaluate import alignment, protocols


def _ssim_3d_direct(x: np.ndarray, y: np.ndarray) -> float:
  """MATLAB's ssim on an HxWxC volume, written out: an 11x11x11 Gaussian (sigma 1.5) over
  rows, columns and channels with replicated borders, the SSIM map averaged everywhere."""
  taps = np.exp(-0.5 * (np.arange(-5, 6) / 1.5) ** 2)
  taps /= taps.sum()
  kernel = taps[:, None, None] * taps[None, :, None] * taps[None, None, :]

  def blur(volume):
    return ndimage.correlate(volume, kernel, mode="nearest")

  x, y = x.astype(np.float64), y.astype(np.float64)
  ux, uy = blur(x), blur(y)
  vx, vy, vxy = blur(x * x) - ux**2, blur(y * y) - uy**2, blur(x * y) - ux * uy
  c1, c2 = 0.01**2, 0.03**2
  return float(np.mean((2 * ux * uy + c1) * (2 * vxy + c2)
                       / ((ux**2 + uy**2 + c1) * (vx + vy + c2))))


def test_matlab_ssim_is_the_3d_gaussian_of_the_rgb_volume():
  rng = np.random.default_rng(0)
  sharp = rng.random((2, 17, 23, 3)).astype(np.float32)
  restored = np.clip(sharp + 0.1 * rng.standard_normal(sharp.shape), 0, 1).astype(np.float32)
  restored[1, :, :, 0] = sharp[1, :, :, 2]  # channels that differ: the 3-D window mixes them
  got = np.asarray(metrics.ssim_matlab(restored, sharp))
  want = [_ssim_3d_direct(restored[i], sharp[i]) for i in range(2)]
  np.testing.assert_allclose(got, want, atol=2e-6)
  # Not the per-channel (scikit-image) form.
  assert abs(float(metrics.ssim(restored, sharp)[1]) - want[1]) > 1e-3
  # On luma it is the 2-D Gaussian with replicated borders.
  luma = [np.asarray(metrics.rgb_to_y(image)) for image in (restored, sharp)]
  np.testing.assert_allclose(np.asarray(metrics.ssim_matlab(restored, sharp, y_channel=True)),
                             [_ssim_3d_direct(luma[0][i], luma[1][i]) for i in range(2)],
                             atol=2e-6)


def test_8_bit_rounding_changes_psnr_as_computed_by_hand():
  sharp = np.full((16, 16, 3), 100 / 255, np.float32)
  restored = sharp.copy()
  restored[:8] += 0.3 / 255   # rounds back to 100: no error once quantised
  restored[8:] += 0.7 / 255   # rounds to 101: an error of 1/255
  float_psnr = 10 * np.log10(1 / ((0.3**2 + 0.7**2) / 2 / 255**2))   # 54.2 dB
  rounded_psnr = 10 * np.log10(1 / (0.5 / 255**2))                    # 51.1 dB
  psnr, _, _ = protocols.make_scorer("faceblur").score([restored], [sharp])
  assert psnr[0] == pytest.approx(float_psnr, abs=2e-3)
  for name in ("gopro", "realblur"):
    psnr, _, _ = protocols.make_scorer(name).score([restored], [sharp], aligned=False)
    assert psnr[0] == pytest.approx(rounded_psnr, abs=2e-3)


def _texture(height: int, width: int, margin: int = 20) -> np.ndarray:
  """A smooth random colour texture in [0, 1], `margin` px larger on each side."""
  noise = np.random.default_rng(1).random((height + 2 * margin, width + 2 * margin, 3))
  texture = ndimage.gaussian_filter(noise, (2.5, 2.5, 0))
  return ((texture - texture.min()) / (texture.max() - texture.min())).astype(np.float32)


def test_realblur_aligns_a_shifted_darker_copy_back():
  texture = _texture(64, 80)
  sharp = texture[20:84, 20:100]
  # The output sits 3 px lower and 2 px to the left, 20 % darker: aligned[y, x] = sharp[y, x]
  # needs the warp to read the output at (x - 2, y + 3).
  restored = protocols.quantize(texture[17:81, 22:102] * 0.8)
  result = alignment.align_to_reference(restored, sharp)
  assert result.converged
  np.testing.assert_allclose(result.warp[:2, 2], [-2, 3], atol=0.15)
  np.testing.assert_allclose(result.warp[:2, :2], np.eye(2), atol=0.01)
  assert 0.85 < result.mask.mean() < 0.97  # the border the shift uncovers is left out
  aligned_psnr, aligned_ssim, failed = protocols.make_scorer("realblur").score([restored],
                                                                               [sharp])
  plain_psnr, plain_ssim, _ = protocols.make_scorer("realblur").score([restored], [sharp],
                                                                      aligned=False)
  assert failed == []
  assert aligned_psnr[0] > 35 and plain_psnr[0] < 20
  assert aligned_ssim[0] > 0.99 and plain_ssim[0] < 0.5


def test_realblur_aligns_a_scaled_copy_back():
  import cv2  # noqa: PLC0415 — the realblur protocol's optional dependency

  sharp = _texture(64, 80)[20:84, 20:100]
  zoom = cv2.getRotationMatrix2D((40, 32), 0, 1.04)
  restored = cv2.warpAffine(sharp, zoom, (80, 64), flags=cv2.INTER_CUBIC,
                            borderMode=cv2.BORDER_REFLECT)
  result = alignment.align_to_reference(restored, sharp)
  np.testing.assert_allclose(np.diag(result.warp)[:2], [1.04, 1.04], atol=0.01)
  ones = np.ones_like(sharp, dtype=np.float64)
  assert alignment.masked_psnr(result.aligned, result.reference, result.mask) > \
      alignment.masked_psnr(restored, sharp, ones) + 15


def test_masked_ssim_with_nothing_masked_is_scikit_image_ssim():
  rng = np.random.default_rng(2)
  sharp = rng.random((20, 26, 3))
  restored = np.clip(sharp + 0.2 * rng.standard_normal(sharp.shape), 0, 1)
  expected = structural_similarity(sharp, restored, channel_axis=-1, gaussian_weights=True,
                                   use_sample_covariance=False, data_range=1.0)
  assert alignment.masked_ssim(restored, sharp, np.ones_like(sharp)) == pytest.approx(expected,
                                                                                       abs=1e-9)


def test_crop_border_scores_the_cropped_images_and_headers_name_the_protocol():
  rng = np.random.default_rng(3)
  sharp = rng.random((30, 30, 3)).astype(np.float32)
  restored = np.clip(sharp + 0.05 * rng.standard_normal(sharp.shape), 0, 1).astype(np.float32)
  scorer = protocols.make_scorer("gopro", crop_border=4, y_channel=True)
  psnr, ssim, _ = scorer.score([restored], [sharp])
  inner = [protocols.quantize(image)[None, 4:-4, 4:-4] for image in (restored, sharp)]
  assert psnr[0] == pytest.approx(float(metrics.psnr(*inner, y_channel=True)[0]), abs=1e-4)
  assert ssim[0] == pytest.approx(float(metrics.ssim_matlab(*inner, y_channel=True)[0]),
                                  abs=1e-6)
  assert scorer.describe() == "protocol: gopro, crop_border 4, Y channel"
  assert protocols.make_scorer("faceblur", ssim="matlab").describe() == \
      "protocol: faceblur, SSIM matlab, RGB"


@pytest.mark.parametrize("kwargs, message", [
    ({"protocol": "matlab"}, "evaluate.protocol='matlab' is not one of faceblur, gopro, "
                             "realblur"),
    ({"protocol": "gopro", "ssim": "ms"}, "evaluate.ssim='ms' is not one of"),
    ({"protocol": "realblur", "ssim": "matlab"}, "does not apply to protocol 'realblur'"),
    ({"protocol": "gopro", "crop_border": -1}, "evaluate.crop_border=-1 must be >= 0"),
])
def test_bad_settings_are_one_line(kwargs, message):
  with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as error:
    protocols.make_scorer(**kwargs)
  assert "\n" not in str(error.value)
