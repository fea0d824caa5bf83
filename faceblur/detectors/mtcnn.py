"""MTCNN face detector in JAX, with the pretrained weights shipped inside the `mtcnn` 1.0.0 package.

The paper measures how often a face detector finds the face before and after deblurring. Its
FaceBoxes weights are in no package; MTCNN's are (`mtcnn` 1.0.0, MIT licence, Zhang et al. 2016
ported by Iván de Paz Centeno) and it reacts steadily to blur, so it is the project's detector.
`import mtcnn` imports TensorFlow, so this module only reads the package's weight files
(`mtcnn/assets/weights/{pnet,rnet,onet}.lz4`: joblib pickles of float32 arrays in Keras
`get_weights()` order) and re-implements everything else, following the package's own code:

* Input: RGB in [0, 255], normalised to (rgb - 127.5) / 128, HWC.
* Pyramid (`build_scale_pyramid`): scales (12 / min_face_size) * 0.709**k for
  k < round(log(min_side / 12) / log(1 / 0.709) - 1); each level is the normalised image resized
  with TensorFlow's AREA method to int(size * scale) (truncated).
* P-Net on every level; a cell with face probability > 0.6 gives the 12x12 window at
  (2x + 1, 2y + 1)..(2x + 12, 2y + 12), moved by the regression times 11 px and divided by the
  scale. NMS per level (IoU 0.5), then across levels (0.7), then the boxes are made square.
* R-Net on 24x24 crops, O-Net on 48x48 crops taken with `tf.image.crop_and_resize` semantics
  (bilinear, box corners at x / W * (W - 1), 0 = normalised mid-grey outside the image). Each
  stage replaces the score, regresses the box by offset * (side + 1), keeps score > threshold and
  runs NMS (R-Net: IoU 0.7 then square; O-Net: 0.7 on intersection over the smaller box).
  Landmarks are w * l + x1 - 1 on the O-Net input box (before its regression).
* The package's NMS keeps a box when no higher-scored box overlaps it above the threshold,
  suppressed or not (not greedy NMS); that is reproduced as is.
* Final boxes are clipped to [0, W - 1] x [0, H - 1]; landmarks are not.

Differences from the package, on purpose: scores and boxes stay floats (the package rounds boxes
to integers in its JSON output); pyramid levels under 12 px are skipped (the package fails on
them and reports no face at all, which only happens for min_face_size above 20); images of
different sizes in one batch are run per size instead of zero-padded to the largest. The
package's default O-Net threshold is 0.8; this module defaults to the paper's (0.6, 0.7, 0.7).

Networks are pure functions of a params pytree, jitted once per input shape: P-Net per pyramid
level (with the whole batch of same-size images in one call), R-Net/O-Net on crop batches padded
to a power of two so that the crop count does not cause recompiles.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import pathlib
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from faceblur.detectors.base import Detection
from faceblur.errors import ConfigError
from faceblur.images import as_rgb
from faceblur.ops import compilation

PACKAGE = "mtcnn"
PACKAGE_VERSION = "1.0.0"
INSTALL_HINT = f"pip install {PACKAGE}=={PACKAGE_VERSION}"

PNET_WINDOW = 12  # P-Net's input window and the pyramid's smallest level
PNET_STRIDE = 2
NMS_PNET_LEVEL = 0.5  # IoU, per pyramid level
NMS_PNET_ALL = 0.7  # IoU, across levels
NMS_RNET = 0.7  # IoU
NMS_ONET = 0.7  # intersection over the smaller box
MIN_CROP_BUCKET = 16
MAX_CROP_BUCKET = 512
MAX_IMAGE_BUCKET = 16

# Layer names and kinds in Keras `get_weights()` order (the attribute order of the package's
# Keras models): a conv or dense layer stores (kernel, bias), a PReLU layer its alphas.
_LAYERS = {
    "pnet": ("conv1", "prelu1", "conv2", "prelu2", "conv3", "prelu3", "conv4_1", "conv4_2"),
    "rnet": ("conv1", "prelu1", "conv2", "prelu2", "conv3", "prelu3", "fc4", "prelu4", "fc5_1",
             "fc5_2"),
    "onet": ("conv1", "prelu1", "conv2", "prelu2", "conv3", "prelu3", "conv4", "prelu4", "fc5",
             "prelu5", "fc6_1", "fc6_2", "fc6_3"),
}
# Kernel shapes the package's networks build with (biases and alphas follow from them).
_KERNEL_SHAPES = {
    "pnet": {"conv1": (3, 3, 3, 10), "conv2": (3, 3, 10, 16), "conv3": (3, 3, 16, 32),
             "conv4_1": (1, 1, 32, 4), "conv4_2": (1, 1, 32, 2)},
    "rnet": {"conv1": (3, 3, 3, 28), "conv2": (3, 3, 28, 48), "conv3": (2, 2, 48, 64),
             "fc4": (576, 128), "fc5_1": (128, 4), "fc5_2": (128, 2)},
    "onet": {"conv1": (3, 3, 3, 32), "conv2": (3, 3, 32, 64), "conv3": (3, 3, 64, 64),
             "conv4": (2, 2, 64, 128), "fc5": (1152, 256), "fc6_1": (256, 4), "fc6_2": (256, 10),
             "fc6_3": (256, 2)},
}


# ----------------------------------------------------------------------------- weights


def weights_dir_of_package() -> pathlib.Path:
  """The package's weight folder, found without importing it (that would import TensorFlow)."""
  spec = importlib.util.find_spec(PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    raise ConfigError(f"MTCNN weights not found: package '{PACKAGE}' is not installed "
                      f"({INSTALL_HINT})")
  return pathlib.Path(spec.submodule_search_locations[0]) / "assets" / "weights"


def weights_version() -> str:
  """Version of the installed `mtcnn` package (the weights' origin), or 'unknown'."""
  try:
    return importlib.metadata.version(PACKAGE)
  except importlib.metadata.PackageNotFoundError:
    return "unknown"


def _network_params(network: str, arrays: Sequence[np.ndarray], path: pathlib.Path) -> dict:
  """Keras weight list -> {layer: {'kernel', 'bias'} | {'alpha'}}, checking every shape."""
  expected = sum(1 if name.startswith("prelu") else 2 for name in _LAYERS[network])
  if len(arrays) != expected:
    raise ConfigError(f"MTCNN weights file {path} holds {len(arrays)} arrays, expected {expected}")
  params, position = {}, 0
  for name in _LAYERS[network]:
    if name.startswith("prelu"):
      params[name] = {"alpha": np.asarray(arrays[position], np.float32)}
      position += 1
      continue
    kernel, bias = (np.asarray(a, np.float32) for a in arrays[position:position + 2])
    position += 2
    shape = _KERNEL_SHAPES[network][name]
    if kernel.shape != shape or bias.shape != shape[-1:]:
      raise ConfigError(f"MTCNN weights file {path}: layer {name} has kernel {kernel.shape}, "
                        f"expected {shape}")
    params[name] = {"kernel": kernel, "bias": bias}
  return params


def load_params(weights_dir: str | pathlib.Path | None = None) -> dict[str, dict]:
  """{'pnet', 'rnet', 'onet'} -> params pytrees of numpy float32 arrays."""
  import joblib  # a dependency of the `mtcnn` package; only needed here

  folder = pathlib.Path(weights_dir) if weights_dir is not None else weights_dir_of_package()
  params = {}
  for network in _LAYERS:
    path = folder / f"{network}.lz4"
    if not path.is_file():
      raise ConfigError(f"MTCNN weights file not found: {path} ({INSTALL_HINT})")
    try:
      arrays = joblib.load(path)
    except Exception as error:  # any unreadable pickle is the same user problem
      raise ConfigError(f"MTCNN weights file {path} is unreadable: "
                        f"{type(error).__name__}") from error
    params[network] = _network_params(network, arrays, path)
  return params


# ----------------------------------------------------------------------------- networks

_HIGHEST = lax.Precision.HIGHEST  # float32 throughout, also on accelerators (no TF32)


def _conv(x: jax.Array, layer: dict) -> jax.Array:
  y = lax.conv_general_dilated(x, layer["kernel"], (1, 1), "VALID",
                               dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=_HIGHEST)
  return y + layer["bias"]


def _dense(x: jax.Array, layer: dict) -> jax.Array:
  return jnp.dot(x, layer["kernel"], precision=_HIGHEST) + layer["bias"]


def _prelu(x: jax.Array, layer: dict) -> jax.Array:
  return jnp.where(x > 0, x, layer["alpha"] * x)


def _max_pool(x: jax.Array, size: int, stride: int, padding: str) -> jax.Array:
  """Keras MaxPooling2D: 'same' pads with -inf, the odd pixel at the bottom/right (ceil mode)."""
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, size, size, 1), (1, stride, stride, 1),
                           padding)


def _flatten_transposed(x: jax.Array) -> jax.Array:
  """Keras Permute((2, 1, 3)) + Flatten: the dense weights come from a column-major layout."""
  return jnp.transpose(x, (0, 2, 1, 3)).reshape(x.shape[0], -1)


def pnet(params: dict, images: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(B, H, W, 3) normalised -> box offsets (B, h, w, 4), face/non-face softmax (B, h, w, 2)."""
  x = _max_pool(_prelu(_conv(images, params["conv1"]), params["prelu1"]), 2, 2, "SAME")
  x = _prelu(_conv(x, params["conv2"]), params["prelu2"])
  x = _prelu(_conv(x, params["conv3"]), params["prelu3"])
  return _conv(x, params["conv4_1"]), jax.nn.softmax(_conv(x, params["conv4_2"]), axis=-1)


def rnet(params: dict, crops: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(N, 24, 24, 3) normalised -> box offsets (N, 4), softmax (N, 2)."""
  x = _max_pool(_prelu(_conv(crops, params["conv1"]), params["prelu1"]), 3, 2, "SAME")
  x = _max_pool(_prelu(_conv(x, params["conv2"]), params["prelu2"]), 3, 2, "VALID")
  x = _prelu(_conv(x, params["conv3"]), params["prelu3"])
  x = _prelu(_dense(_flatten_transposed(x), params["fc4"]), params["prelu4"])
  return _dense(x, params["fc5_1"]), jax.nn.softmax(_dense(x, params["fc5_2"]), axis=-1)


def onet(params: dict, crops: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(N, 48, 48, 3) normalised -> box offsets (N, 4), landmarks (N, 10: 5 x then 5 y in [0, 1]
  of the box), softmax (N, 2)."""
  x = _max_pool(_prelu(_conv(crops, params["conv1"]), params["prelu1"]), 3, 2, "SAME")
  x = _max_pool(_prelu(_conv(x, params["conv2"]), params["prelu2"]), 3, 2, "VALID")
  x = _max_pool(_prelu(_conv(x, params["conv3"]), params["prelu3"]), 2, 2, "SAME")
  x = _prelu(_conv(x, params["conv4"]), params["prelu4"])
  x = _prelu(_dense(_flatten_transposed(x), params["fc5"]), params["prelu5"])
  return (_dense(x, params["fc6_1"]), _dense(x, params["fc6_2"]),
          jax.nn.softmax(_dense(x, params["fc6_3"]), axis=-1))


def _resize_then_pnet(params: dict, images: jax.Array, rows: jax.Array, cols: jax.Array):
  """One pyramid level: area resize as two matrix products, then P-Net."""
  level = jnp.einsum("yh,bhwc->bywc", rows, images, precision=_HIGHEST)
  level = jnp.einsum("xw,bywc->byxc", cols, level, precision=_HIGHEST)
  return pnet(params, level)


@functools.cache
def jitted(network: Callable) -> Callable:
  """`network` (`pnet`, `rnet`, `onet`, `_resize_then_pnet`) jitted once per process, so every
  MTCNN instance shares its compiled code, keyed by input shapes. A forward pass
  (`compilation.jit`'s CPU choice), made on first use rather than at import, when the backend
  it asks about may not be up yet (`jax.distributed` starts it later)."""
  return compilation.jit(network, forward_only=True)


# ----------------------------------------------------------------------------- image ops


@functools.lru_cache(maxsize=256)
def area_resize_matrix(in_size: int, out_size: int) -> np.ndarray:
  """(out, in) weights of TensorFlow's AREA resize (align_corners=False) along one axis.

  Output pixel y averages input [y * s, (y + 1) * s), s = in / out (float32 as in TF), each input
  pixel weighted by its overlap; indices past the edge are clamped as TF's BoundIfNeeded does.
  """
  scale = np.float32(in_size) / np.float32(out_size)
  matrix = np.zeros((out_size, in_size), np.float64)
  for y in range(out_size):
    start, end = np.float32(y) * scale, np.float32(y + 1) * scale
    for i in range(int(np.floor(start)), int(np.ceil(end))):
      matrix[y, min(i, in_size - 1)] += min(i + 1, end) - max(i, start)
  return (matrix / scale).astype(np.float32)


def pyramid_scales(height: int, width: int, min_face_size: float, scale_factor: float,
                   min_size: int = PNET_WINDOW) -> np.ndarray:
  """The package's `build_scale_pyramid` (its level count ignores min_face_size)."""
  count = round(-((np.log(min(height, width) / min_size) / np.log(scale_factor)) + 1))
  return (min_size / min_face_size) * scale_factor ** np.arange(max(count, 0))


def crop_and_resize(images: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
  """`tf.image.crop_and_resize` of pixel boxes [image, x1, y1, x2, y2, ...] (package convention).

  The package divides pixel coordinates by W (not W - 1) and TF maps the normalised value back
  with (W - 1); samples outside the image are 0. Bilinear, in float32 as TF computes it.
  """
  _, height, width, _ = images.shape
  index = boxes[:, 0].astype(np.int64)
  steps = np.arange(size, dtype=np.float32)

  def sample_positions(low, high, extent):
    low = (low / extent).astype(np.float32)
    high = (high / extent).astype(np.float32)
    step = (high - low) * np.float32(extent - 1) / np.float32(size - 1)
    position = low[:, None] * np.float32(extent - 1) + steps[None, :] * step[:, None]
    inside = (position >= 0) & (position <= extent - 1)
    first = np.floor(position)
    lerp = (position - first).astype(np.float32)
    first = np.clip(first, 0, extent - 1).astype(np.int64)
    second = np.clip(np.ceil(position), 0, extent - 1).astype(np.int64)
    return first, second, lerp, inside

  top, bottom, y_lerp, y_inside = sample_positions(boxes[:, 2], boxes[:, 4], height)
  left, right, x_lerp, x_inside = sample_positions(boxes[:, 1], boxes[:, 3], width)
  batch = index[:, None, None]

  def row(y):
    a = images[batch, y[:, :, None], left[:, None, :]]
    b = images[batch, y[:, :, None], right[:, None, :]]
    return a + (b - a) * x_lerp[:, None, :, None]

  upper, lower = row(top), row(bottom)
  crops = upper + (lower - upper) * y_lerp[:, :, None, None]
  inside = y_inside[:, :, None] & x_inside[:, None, :]
  return np.where(inside[..., None], crops, 0).astype(np.float32)


# ----------------------------------------------------------------------------- boxes


def _sort_by_score(boxes: np.ndarray) -> np.ndarray:
  return boxes[np.argsort(boxes[:, 5])[::-1]]  # as the package's sort_by_scores


def _overlaps(boxes: np.ndarray, others: np.ndarray, method: str) -> np.ndarray:
  """(n, m) IoU ('union') or intersection over the smaller area ('min'); areas without +1."""
  area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  area_others = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
  width = np.maximum(0, np.minimum(boxes[:, None, 2], others[None, :, 2])
                     - np.maximum(boxes[:, None, 0], others[None, :, 0]))
  height = np.maximum(0, np.minimum(boxes[:, None, 3], others[None, :, 3])
                      - np.maximum(boxes[:, None, 1], others[None, :, 1]))
  intersection = width * height
  if method == "union":
    denominator = area[:, None] + area_others[None, :] - intersection
  else:
    denominator = np.minimum(area[:, None], area_others[None, :])
  with np.errstate(divide="ignore", invalid="ignore"):
    return intersection / denominator


def nms(boxes: np.ndarray, threshold: float, method: str = "union", sort: bool = True,
        block: int = 1024) -> np.ndarray:
  """The package's `smart_nms_from_bboxes`: per image, drop a box when any box ranked above it
  overlaps it by more than `threshold` (suppressed boxes still suppress). Rows stay in order."""
  if sort:
    boxes = _sort_by_score(boxes)
  kept = []
  for image_id in np.unique(boxes[:, 0]):
    group = boxes[boxes[:, 0] == image_id]
    coords = group[:, 1:5]
    suppressed = np.zeros(len(group), bool)
    for start in range(0, len(group), block):  # row blocks keep the n x n matrix small
      overlap = _overlaps(coords[start:start + block], coords, method) > threshold
      later = np.arange(len(group))[None, :] > np.arange(start, start + len(overlap))[:, None]
      suppressed |= (overlap & later).any(axis=0)
    kept.append(group[~suppressed])
  return np.concatenate(kept) if kept else boxes[:0]


def square(boxes: np.ndarray) -> np.ndarray:
  """The package's `resize_to_square`: grow the short side about the centre."""
  boxes = boxes.copy()
  width, height = boxes[:, 3] - boxes[:, 1], boxes[:, 4] - boxes[:, 2]
  side = np.maximum(width, height)
  boxes[:, 1] += width * 0.5 - side * 0.5
  boxes[:, 2] += height * 0.5 - side * 0.5
  boxes[:, 3] = boxes[:, 1] + side
  boxes[:, 4] = boxes[:, 2] + side
  return boxes


def regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
  """The package's `adjust_bboxes`: corners move by offset * (side + 1)."""
  boxes = boxes.copy()
  width = boxes[:, 3] - boxes[:, 1] + 1
  height = boxes[:, 4] - boxes[:, 2] + 1
  boxes[:, 1:5] += offsets * np.stack([width, height, width, height], axis=-1)
  return boxes


def pnet_boxes(offsets: np.ndarray, probabilities: np.ndarray, threshold: float,
               scale: float) -> np.ndarray:
  """The package's `generate_bounding_box` + `upscale_bboxes`: rows [image, x1, y1, x2, y2, score]
  in the original image, sorted by score."""
  score = probabilities[..., 1]
  image, y, x = np.where(score > threshold)
  reg = offsets[image, y, x].T
  cell = PNET_WINDOW - 1
  x1, y1 = PNET_STRIDE * x + 1, PNET_STRIDE * y + 1
  x2, y2 = PNET_STRIDE * x + PNET_WINDOW, PNET_STRIDE * y + PNET_WINDOW
  boxes = np.stack([image, x1 + reg[0] * cell, y1 + reg[1] * cell, x2 + reg[2] * cell,
                    y2 + reg[3] * cell, score[image, y, x]], axis=0).T.astype(np.float64)
  boxes = _sort_by_score(boxes)
  boxes[:, 1:5] /= scale
  return boxes


def _bucket(count: int, smallest: int, largest: int) -> int:
  return min(max(smallest, 1 << max(count - 1, 0).bit_length()), largest)


def _run_padded(network, params: dict, crops: np.ndarray) -> list[np.ndarray]:
  """Runs a jitted network on crops in power-of-two buckets (few shapes, few compiles)."""
  outputs = []
  for start in range(0, len(crops), MAX_CROP_BUCKET):
    chunk = crops[start:start + MAX_CROP_BUCKET]
    size = _bucket(len(chunk), MIN_CROP_BUCKET, MAX_CROP_BUCKET)
    padded = np.zeros((size, *chunk.shape[1:]), np.float32)
    padded[:len(chunk)] = chunk
    outputs.append([np.asarray(o)[:len(chunk)] for o in network(params, padded)])
  return [np.concatenate(parts) for parts in zip(*outputs, strict=True)]


# ----------------------------------------------------------------------------- detector


class MTCNN:
  """Three-stage cascade (P-Net proposals, R-Net refinement, O-Net boxes + 5 landmarks).

  `detect` takes one HxWx3 float image in [0, 1] and returns `Detection`s sorted by O-Net score,
  boxes (x0, y0, x1, y1) in pixels clipped to the image, landmarks (5, 2) as (x, y) in the
  package's order: left eye, right eye, nose, mouth left, mouth right (left/right as seen).
  """

  name = "mtcnn"

  def __init__(self, *, min_face_size: float = 20, thresholds: Sequence[float] = (0.6, 0.7, 0.7),
               scale_factor: float = 0.709, weights_dir: str | pathlib.Path | None = None):
    thresholds = tuple(float(t) for t in thresholds)
    if len(thresholds) != 3 or not all(0 <= t < 1 for t in thresholds):
      raise ConfigError(f"MTCNN thresholds must be three scores in [0, 1), got {thresholds}")
    if not 0 < scale_factor < 1:
      raise ConfigError(f"MTCNN scale_factor must be in (0, 1), got {scale_factor}")
    if min_face_size <= 0:
      raise ConfigError(f"MTCNN min_face_size must be positive, got {min_face_size}")
    self.min_face_size = min_face_size
    self.thresholds = thresholds
    self.scale_factor = scale_factor
    self.threshold = thresholds[2]
    self.version = weights_version() if weights_dir is None else "custom"
    self._origin = (f"the mtcnn {self.version} package (MIT)" if weights_dir is None
                    else f"{weights_dir}")
    self._params = jax.tree.map(jnp.asarray, load_params(weights_dir))

  def describe(self) -> str:
    p, r, o = self.thresholds
    return (f"MTCNN in JAX with the weights of {self._origin}; "
            f"thresholds P/R/O-Net {p}/{r}/{o}, min face {self.min_face_size} px, "
            f"pyramid factor {self.scale_factor}")

  def detect(self, image: np.ndarray) -> list[Detection]:
    return self.detect_batch([image])[0]

  def detect_batch(self, images: np.ndarray | Sequence[np.ndarray]) -> list[list[Detection]]:
    """Images of the same size run together through every stage, in chunks of up to 16."""
    batch = [as_rgb(image) for image in images]
    results: list[list[Detection]] = [[] for _ in batch]
    by_shape: dict[tuple, list[int]] = {}
    for position, image in enumerate(batch):
      by_shape.setdefault(image.shape, []).append(position)
    for positions in by_shape.values():
      for start in range(0, len(positions), MAX_IMAGE_BUCKET):
        chunk = positions[start:start + MAX_IMAGE_BUCKET]
        normalised = (np.stack([batch[i] for i in chunk]) * np.float32(255) - np.float32(127.5)) \
            / np.float32(128)
        for image_id, detections in self._detect_same_size(normalised).items():
          results[chunk[image_id]] = detections
    return results

  def _detect_same_size(self, images: np.ndarray) -> dict[int, list[Detection]]:
    count, height, width, _ = images.shape
    boxes = self._propose(images)
    boxes = boxes[boxes[:, 0] < count]  # drop the batch padding's proposals
    if len(boxes):
      boxes = self._refine(images, boxes)
    if len(boxes):
      boxes = self._output(images, boxes)
    detections: dict[int, list[Detection]] = {}
    for row in boxes:
      x0, x1 = np.clip(row[[1, 3]], 0, width - 1)
      y0, y1 = np.clip(row[[2, 4]], 0, height - 1)
      landmarks = np.stack([row[6:11], row[11:16]], axis=-1).astype(np.float32)
      detections.setdefault(int(row[0]), []).append(
          Detection(box=(float(x0), float(y0), float(x1), float(y1)), score=float(row[5]),
                    landmarks=landmarks))
    return detections

  def _propose(self, images: np.ndarray) -> np.ndarray:
    """P-Net stage on a batch of same-size images (batch padded to a power of two). Every
    level is dispatched before the first is read back, so the network runs while the host
    turns the levels before into boxes."""
    count, height, width, _ = images.shape
    padded = np.zeros((_bucket(count, 1, MAX_IMAGE_BUCKET), height, width, 3), np.float32)
    padded[:count] = images
    device_images = jnp.asarray(padded)
    levels = []
    for scale in pyramid_scales(height, width, self.min_face_size, self.scale_factor):
      level_height, level_width = (np.asarray([height, width]) * scale).astype(np.int64)
      if min(level_height, level_width) < PNET_WINDOW:
        continue
      levels.append((scale, jitted(_resize_then_pnet)(
          self._params["pnet"], device_images, area_resize_matrix(height, int(level_height)),
          area_resize_matrix(width, int(level_width)))))
    per_level = []
    for scale, (offsets, probabilities) in levels:
      boxes = pnet_boxes(np.asarray(offsets), np.asarray(probabilities), self.thresholds[0],
                         scale)
      per_level.append(nms(boxes, NMS_PNET_LEVEL, "union", sort=False))
    if not per_level:
      return np.zeros((0, 6))
    return square(nms(np.concatenate(per_level), NMS_PNET_ALL, "union", sort=True))

  def _refine(self, images: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    offsets, probabilities = _run_padded(jitted(rnet), self._params["rnet"],
                                         crop_and_resize(images, boxes, 24))
    boxes = boxes.copy()
    boxes[:, 5] = probabilities[:, 1]
    boxes = regress(boxes, offsets)
    boxes = boxes[boxes[:, 5] > self.thresholds[1]]
    return square(nms(boxes, NMS_RNET, "union", sort=True))

  def _output(self, images: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    offsets, landmarks, probabilities = _run_padded(jitted(onet), self._params["onet"],
                                                    crop_and_resize(images, boxes, 48))
    width = boxes[:, 3:4] - boxes[:, 1:2] + 1
    height = boxes[:, 4:5] - boxes[:, 2:3] + 1
    landmarks = np.concatenate([width * landmarks[:, :5] + boxes[:, 1:2] - 1,
                                height * landmarks[:, 5:] + boxes[:, 2:3] - 1], axis=-1)
    boxes = boxes.copy()
    boxes[:, 5] = probabilities[:, 1]
    boxes = np.concatenate([regress(boxes, offsets), landmarks], axis=-1)
    boxes = boxes[boxes[:, 5] > self.thresholds[2]]
    return nms(boxes, NMS_ONET, "min", sort=True)
