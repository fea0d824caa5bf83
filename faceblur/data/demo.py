"""The built-in demo set: real faces that ship inside packages, and kernel-blurred pairs.

No face dataset ships in a package, so the demo (and the tests) use the 102 real faces that
do: two colour portraits, the astronaut (`skimage.data.astronaut`) and Grace Hopper
(matplotlib's sample data), and the 100 face crops of `skimage.data.lfw_subset` (grey,
25x25; its last 100 images are non-faces and are not used). A seeded augmentation (scale,
shift, rotation, flip, colour and brightness jitter, and a plausible skin tint for the grey
faces) makes as many distinct faces as asked for.

The base faces are split into disjoint groups (`BASE_GROUPS`), so that the stage-1 sharp
domain, the stage-1 blurred domain and the test sets show different people: a test then
measures deblurring, not memory of the training faces. Different seeds give different
augmentations *and* a different assignment of base faces to indices, so two sources of one
group are still unpaired.
"""

import functools

import numpy as np
from PIL import Image

from faceblur.data import blur_kernels
from faceblur.errors import ConfigError
from faceblur.images import BT601_LUMA, to_float, to_uint8

# The faces (rows, columns) in the portraits: brows to chin, with a little hair and cheek on
# each side, framed like the LFW crops.
ASTRONAUT_FACE = (slice(55, 195), slice(158, 298))
GRACE_HOPPER_FACE = (slice(118, 358), slice(145, 385))
NUM_LFW_FACES = 100
# Indices into the base faces (0: astronaut, 1: Grace Hopper, 2-101: LFW), fixed before any
# result was seen: one colour portrait for training, one for testing.
BASE_GROUPS = {
    "train": (0, *range(2, 62)),      # the stage-1 sharp domain and the synthesis source
    "blurred": tuple(range(62, 82)),  # the stage-1 "real blurred" domain
    "test": (1, *range(82, 102)),     # every evaluation set
}
BASE_GROUPS["all"] = tuple(range(2 + NUM_LFW_FACES))

# sRGB skin tones from light to dark; a grey face takes a random blend of two neighbours.
SKIN_TONES = np.array([
    [0.98, 0.87, 0.78], [0.94, 0.76, 0.63], [0.87, 0.67, 0.52],
    [0.76, 0.55, 0.40], [0.60, 0.42, 0.30], [0.45, 0.30, 0.22],
], dtype=np.float32)
_LUMA = np.array(BT601_LUMA, dtype=np.float32)


def _grace_hopper() -> np.ndarray:
  import matplotlib.cbook  # noqa: PLC0415 — only the demo needs it

  with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
    return np.asarray(Image.open(handle).convert("RGB"))


@functools.cache
def _base_faces(size: int) -> tuple[np.ndarray, np.ndarray]:
  """The 102 base faces at `size` x `size`, float32 RGB in [0, 1], and which are grey."""
  import skimage.data  # noqa: PLC0415 — imports in ~1 s; only the demo needs it

  astronaut = skimage.data.astronaut()[ASTRONAUT_FACE]
  hopper = _grace_hopper()[GRACE_HOPPER_FACE]
  lfw = (skimage.data.lfw_subset()[:NUM_LFW_FACES] * 255).round().astype(np.uint8)
  faces = [astronaut, hopper] + [np.repeat(face[..., None], 3, axis=-1) for face in lfw]
  # Lanczos keeps the upsampled 25 px LFW crops as crisp as they can be: they are the
  # "sharp" domain.
  resized = [np.asarray(Image.fromarray(face).resize((size, size), Image.LANCZOS))
             for face in faces]
  is_grey = np.array([False, False] + [True] * NUM_LFW_FACES)
  return to_float(np.stack(resized)), is_grey


def _skin_tint(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Colours a grey face with a random skin tone, keeping its luminance (its lighting)."""
  low = rng.integers(0, len(SKIN_TONES) - 1)
  tone = SKIN_TONES[low] + rng.uniform() * (SKIN_TONES[low + 1] - SKIN_TONES[low])
  chroma = tone / (tone @ _LUMA)
  strength = rng.uniform(0.6, 1.0)
  luminance = grey[..., :1]
  return luminance * (strength * chroma + (1 - strength))


def _affine(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Random scale (0.9-1.15), shift (+-6 %), rotation (+-10 deg) and flip, reflect-padded."""
  size = face.shape[0]
  pad = size // 2
  padded = np.pad(face, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
  scale = rng.uniform(0.9, 1.15)  # > 1 zooms in
  angle = np.deg2rad(rng.uniform(-10, 10))
  shift = rng.uniform(-0.06, 0.06, size=2) * size
  flip = -1.0 if rng.uniform() < 0.5 else 1.0
  # PIL's affine maps each output pixel (x, y) to an input pixel: centre, flip, rotate,
  # scale, shift, and move into the padded frame.
  cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
  centre_out = (size - 1) / 2
  centre_in = centre_out + pad
  a, b = flip * cos, -sin
  d, e = flip * sin, cos
  c = centre_in + shift[0] - a * centre_out - b * centre_out
  f = centre_in + shift[1] - d * centre_out - e * centre_out
  channels = [Image.fromarray(padded[..., k], mode="F").transform(
      (size, size), Image.AFFINE, (a, b, c, d, e, f), resample=Image.BICUBIC)
      for k in range(3)]
  return np.stack([np.asarray(channel) for channel in channels], axis=-1)


def _colour_jitter(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Brightness x0.75-1.25, contrast x0.8-1.2, saturation x0.8-1.2, white balance +-5 %."""
  face = face * rng.uniform(0.75, 1.25)
  mean = face.mean()
  face = mean + (face - mean) * rng.uniform(0.8, 1.2)
  grey = face @ _LUMA
  face = grey[..., None] + (face - grey[..., None]) * rng.uniform(0.8, 1.2)
  return face * rng.uniform(0.95, 1.05, size=3).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _demo_faces_cached(size: int, count: int, seed: int, group: str) -> np.ndarray:
  bases, is_grey = _base_faces(size)
  group_bases = np.asarray(BASE_GROUPS[group])
  # Every base face of the group is used equally often (one seeded permutation per round),
  # and face i depends only on (seed, i): a larger `count` extends a smaller one.
  rounds = -(-count // len(group_bases))
  order = np.concatenate([group_bases[np.random.default_rng([seed, round_index]).permutation(
      len(group_bases))] for round_index in range(rounds)])[:count]
  faces = np.empty((count, size, size, 3), np.uint8)
  for index, base in enumerate(order):
    rng = np.random.default_rng([seed, index, size])
    face = _skin_tint(bases[base], rng) if is_grey[base] else bases[base]
    faces[index] = to_uint8(_colour_jitter(_affine(face, rng), rng))
  faces.flags.writeable = False
  return faces


def demo_faces(*, size: int = 64, count: int = 400, seed: int = 0,
               group: str = "all") -> np.ndarray:
  """`count` augmented real faces of a `BASE_GROUPS` group, uint8 (count, size, size, 3);
  same arguments, same bytes."""
  if size < 8 or count < 1:
    raise ValueError(f"demo_faces needs size >= 8 and count >= 1 (got {size}, {count})")
  if group not in BASE_GROUPS:
    raise ConfigError(f"unknown demo face group {group!r}; choose one of "
                      f"{', '.join(BASE_GROUPS)}")
  return _demo_faces_cached(int(size), int(count), int(seed), group)


class DemoFaces:
  """grain source over `demo_faces(...)`: records {'image': uint8, 'name':
  'demo/<group>/<seed>/<i>'}."""

  def __init__(self, *, size: int = 64, count: int = 400, seed: int = 0, group: str = "all"):
    self.size, self.count, self.seed, self.group = size, count, seed, group
    self.images = demo_faces(size=size, count=count, seed=seed, group=group)

  def __len__(self) -> int:
    return self.count

  def __getitem__(self, index: int) -> dict:
    return {"image": self.images[index],
            "name": f"demo/{self.group}/{self.seed}/{index % self.count:05d}"}

  def __repr__(self) -> str:
    return (f"DemoFaces(size={self.size}, count={self.count}, seed={self.seed}, "
            f"group={self.group!r})")


def default_max_blur_length(image_size: int) -> float:
  """A fifth of the image side: 13 px blur paths on 64 px faces."""
  return 0.2 * image_size


class KernelBlurredPairs:
  """Pairs made by blurring any unpaired source with random camera-shake kernels.

  Records {'blurred', 'sharp': uint8, 'name'}: the kernel-synthesis baseline of the paper.
  The kernel and the noise of record i depend only on (seed, i), so every epoch, worker and
  host sees the same pair. `max_blur_length=None` uses a fifth of each image's shorter side.
  """

  def __init__(self, base, *, seed: int = 0, max_blur_length: float | None = None,
               noise_std: float = 0.01):
    self.base, self.seed = base, seed
    self.max_blur_length, self.noise_std = max_blur_length, noise_std

  def __len__(self) -> int:
    return len(self.base)

  def blur(self, image: np.ndarray, index: int) -> np.ndarray:
    rng = np.random.default_rng([self.seed, index % len(self)])
    max_length = self.max_blur_length or default_max_blur_length(min(image.shape[:2]))
    psf = blur_kernels.random_psf(rng, max_length=max_length)
    return to_uint8(blur_kernels.blur_image(to_float(image), psf, noise_std=self.noise_std,
                                            rng=rng))

  def __getitem__(self, index: int) -> dict:
    record = self.base[index]
    return {"blurred": self.blur(record["image"], index), "sharp": record["image"],
            "name": record["name"]}

  def __repr__(self) -> str:
    return f"KernelBlurredPairs({self.base!r}, seed={self.seed})"
