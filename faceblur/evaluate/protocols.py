"""How Table 1 scores PSNR/SSIM: faceblur's own protocol and the deblurring benchmarks'.

Papers' figures differ from faceblur's float scores for reasons that have nothing to do with
the method: the outputs were saved as 8-bit PNGs, SSIM was MATLAB's 3-D form on RGB, a border
was cropped, luma was scored, or (RealBlur) the output was aligned to the ground truth first.
`protocol` (evaluate config) picks one of these bundles, and every table header names it:

  faceblur  float outputs clipped to [0, 1]; SSIM as scikit-image computes it (the mean of the
            per-channel SSIMs over the positions where the window fits)
  gopro     outputs rounded to 8 bits; SSIM as MATLAB's `ssim` on RGB (`metrics.ssim_matlab`):
            what the GoPro and HIDE evaluation scripts compute (NAFNet's `ssim3d`)
  realblur  outputs rounded to 8 bits; each restored image is brightness-matched to the ground
            truth and aligned to it with an ECC homography (OpenCV, set up as RealBlur's
            `evaluation_RealBlur_ecc.py` does), and PSNR/SSIM (scikit-image form) are scored over
            the area the warp covers; the blurred input is scored unaligned, as there

`crop_border` (pixels left out at each edge) and `y_channel` (BT.601 luma) apply on top, as
in BasicSR's `calculate_psnr/ssim`; `ssim` overrides the protocol's SSIM form.
"""

import dataclasses

import numpy as np

from faceblur import metrics
from faceblur.errors import ConfigError
from faceblur.images import to_uint8
from faceblur.registry import Registry

# Images per PSNR/SSIM call (one device call and read-back per chunk).
QUALITY_BATCH = 32
SSIM_FORMS = ("skimage", "matlab")


@dataclasses.dataclass(frozen=True)
class Protocol:
  name: str
  quantize: bool   # outputs rounded to 8 bits before scoring (what saving PNGs does)
  ssim: str        # one of SSIM_FORMS
  align: bool      # RealBlur: brightness match + ECC homography, scored on the valid area
  description: str


PROTOCOLS: Registry[Protocol] = Registry("evaluate.protocol={name!r} is not one of {choices}")
PROTOCOLS.add("faceblur", Protocol(
    "faceblur", quantize=False, ssim="skimage", align=False,
    description="float outputs clipped to [0, 1], SSIM as scikit-image (per-channel mean)"))
PROTOCOLS.add("gopro", Protocol(
    "gopro", quantize=True, ssim="matlab", align=False,
    description="outputs rounded to 8 bits, SSIM as MATLAB's on RGB (3-D Gaussian), as the "
                "GoPro/HIDE scripts"))
PROTOCOLS.add("realblur", Protocol(
    "realblur", quantize=True, ssim="skimage", align=True,
    description="outputs rounded to 8 bits, brightness-matched and aligned to the ground truth "
                "by an ECC homography, PSNR/SSIM (scikit-image) over the warped area; the blurred "
                "input unaligned, as RealBlur's script"))


@dataclasses.dataclass(frozen=True)
class Scorer:
  """PSNR/SSIM per image under one protocol and its options."""
  protocol: Protocol
  crop_border: int = 0
  y_channel: bool = False
  ssim_form: str = "skimage"

  def describe(self) -> str:
    """The protocol's name and settings, for every table header."""
    extras = [f"SSIM {self.ssim_form}"] if self.ssim_form != self.protocol.ssim else []
    extras += [f"crop_border {self.crop_border}"] if self.crop_border else []
    extras += ["Y channel"] if self.y_channel else ["RGB"]
    return f"protocol: {self.protocol.name}, {', '.join(extras)}"

  def score(self, restored: list[np.ndarray], sharp: list[np.ndarray], *,
            aligned: bool = True) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(PSNR, SSIM) of each restored HxWx3 image against its ground truth, and the indices of
    the images RealBlur's alignment could not align (scored unaligned). `aligned=False` scores
    without alignment (the blurred input under `realblur`)."""
    if self.protocol.quantize:
      restored = [quantize(image) for image in restored]
      sharp = [quantize(image) for image in sharp]
    if self.protocol.align and aligned:
      return self._score_aligned(restored, sharp)
    restored = [crop(image, self.crop_border) for image in restored]
    sharp = [crop(image, self.crop_border) for image in sharp]
    psnr, ssim = np.zeros(len(restored)), np.zeros(len(restored))
    ssim_fn = metrics.ssim_matlab if self.ssim_form == "matlab" else metrics.ssim
    for chunk in same_size_chunks(restored, QUALITY_BATCH):
      images = np.stack([restored[index] for index in chunk])
      references = np.stack([sharp[index] for index in chunk])
      psnr[chunk] = np.asarray(metrics.psnr(images, references, y_channel=self.y_channel))
      ssim[chunk] = np.asarray(ssim_fn(images, references, y_channel=self.y_channel))
    return psnr, ssim, []

  def _score_aligned(self, restored, sharp) -> tuple[np.ndarray, np.ndarray, list[int]]:
    from faceblur.evaluate import alignment  # noqa: PLC0415 — needs OpenCV, only for realblur

    psnr, ssim, failures = np.zeros(len(restored)), np.zeros(len(restored)), []
    for index, (image, reference) in enumerate(zip(restored, sharp, strict=True)):
      result = alignment.align_to_reference(image, reference)
      if not result.converged:
        failures.append(index)
      images = [crop(array, self.crop_border) for array in
                (result.aligned, result.reference, result.mask)]
      if self.y_channel:
        images = [np.asarray(metrics.rgb_to_y(images[0])), np.asarray(metrics.rgb_to_y(images[1])),
                  images[2][..., :1]]
      psnr[index] = alignment.masked_psnr(*images)
      ssim[index] = alignment.masked_ssim(*images)
    return psnr, ssim, failures


def make_scorer(protocol: str = "faceblur", *, crop_border: int = 0, y_channel: bool = False,
                ssim: str = "") -> Scorer:
  """The evaluate config's `protocol`, `crop_border`, `y_channel` and `ssim` ('' = the
  protocol's own form) as a `Scorer`; a bad value is one `ConfigError` line."""
  chosen = PROTOCOLS.get(protocol or "faceblur")
  form = ssim or chosen.ssim
  if form not in SSIM_FORMS:
    raise ConfigError(f"evaluate.ssim={ssim!r} is not one of '', {', '.join(SSIM_FORMS)}")
  if chosen.align and form != "skimage":
    raise ConfigError("evaluate.ssim='matlab' does not apply to protocol 'realblur' (it scores "
                      "the scikit-image SSIM map over the aligned area)")
  if crop_border < 0:
    raise ConfigError(f"evaluate.crop_border={crop_border} must be >= 0")
  return Scorer(chosen, crop_border=int(crop_border), y_channel=bool(y_channel), ssim_form=form)


def quantize(image: np.ndarray) -> np.ndarray:
  """HxWx3 float in [0, 1] -> the same rounded to 8 bits (as a saved PNG), float32."""
  return to_uint8(image).astype(np.float32) / np.float32(255)


def crop(image: np.ndarray, border: int) -> np.ndarray:
  """`border` pixels off each edge, as BasicSR's `crop_border`."""
  return image[border:-border, border:-border] if border > 0 else image


def same_size_chunks(images: list[np.ndarray], size: int) -> list[list[int]]:
  """Indices of `images` in chunks of up to `size` images of one shape."""
  by_shape: dict[tuple, list[int]] = {}
  for index, image in enumerate(images):
    by_shape.setdefault(image.shape, []).append(index)
  return [group[start:start + size] for group in by_shape.values()
          for start in range(0, len(group), size)]
