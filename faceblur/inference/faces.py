"""Restoring the faces of a photo in place, at the scale the network was trained at.

A face deblurrer is trained on face crops a few hundred pixels wide; a photo's faces are a
small part of it, at any scale. Running the network over the whole photo spends most of the
time on walls it never learned and sees the faces at the wrong scale. `FaceRestorer` does what
GFPGAN and CodeFormer do instead:

1. Detect the faces (MTCNN, on a copy downscaled so that the smallest face wanted,
   `min_face_size` input pixels, is MTCNN's 20 px and the copy's longer side is at most
   `detect_max_side`), or take the boxes given.
2. Expand each box to a square `1 + 2 * margin` times its longer side, about its centre, and
   resize that crop so the box is `face_size` pixels across: the size of a face at the scale
   the checkpoint was trained at (`trained_face_size`, from its saved config). Every crop goes
   through the network at one side, so it compiles once.
3. Restore the crop, resize it back (adding back the crop's own detail finer than the
   network's scale, which the round trip removes), and paste it with a feathered mask: 1 over
   the face box, falling to 0 at the crop's edge with a raised cosine across the margin, so
   the restored colours blend into the photo's over the whole margin instead of stepping.
   Overlapping faces are averaged with their mask weights, and their masks united
   (`1 - prod(1 - w)`), so no seam appears where two crops meet either.

Every pixel outside the crops is the input's own value, exactly: saved as PNG (or any lossless
format) it is byte-identical to the input as `image_io.load_image` reads it; a lossy format
(JPEG, WebP) re-encodes the whole image, so there it is only as close as the encoder allows.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from collections.abc import Callable, Sequence

import ml_collections
import numpy as np
from PIL import Image, ImageDraw

from faceblur.console import warn
from faceblur.detectors import Detection, FaceDetector, make_detector
from faceblur.errors import ConfigError
from faceblur.images import as_rgb, to_uint8
from faceblur.inference.restorer import SIDE_MULTIPLE

NO_FACE_CHOICES = ("whole", "keep")
MTCNN_NATIVE_MIN_FACE = 20  # MTCNN's default minimum face: its pyramid starts at 12/20
MTCNN_SMALLEST_FACE = 12    # its P-Net window: nothing smaller is found in the copy
CROP_BATCH = 8  # most face crops restored in one network call
# Training sources whose images are not faces: a model trained on them restores whole images.
_NOT_FACES = ("gopro",)


def _round_to_multiple(value: float, multiple: int = SIDE_MULTIPLE) -> int:
  return max(multiple, int(round(value / multiple)) * multiple)


# MTCNN's face box side over the training image's side, per training source. Demo faces:
# the median over held-out demo faces ("Figures behind code choices" in bench/RESULTS.md).
# CelebA's aligned crops (centre square of
# 178 px, as synthesis cuts it): estimated from their mean eye positions, ~39 px apart, and a
# box ~2.4 eye distances wide (no CelebA here to measure); any other face folder: assumed
# framed like the demo faces (tight), overridden by --config.face_size.
FACE_FILL = {"demo": 1.09, "celeb_a": 0.53}
DEFAULT_FACE_FILL = 1.0


def _fill(kind: str) -> float:
  return FACE_FILL["demo"] if kind.startswith("demo_") else FACE_FILL.get(kind, DEFAULT_FACE_FILL)


def _source_image_size(spec) -> tuple[int, float, str] | None:
  """(image side, face fill, where from) of a training source, where its spec or folder says."""
  kind = spec.get("kind", "")
  if kind.startswith("demo_"):
    return int(spec.get("size") or 64), _fill(kind), f"the {kind} faces' size"
  if kind == "paired_folder" and spec.get("path"):
    from faceblur.train.synthesize import DONE_FILE  # noqa: PLC0415 — only paired folders

    summary = pathlib.Path(spec.path) / DONE_FILE
    try:
      written = json.loads(summary.read_text())
      source_kind = (written.get("source") or {}).get("kind", "")
      return int(written["image_size"]), _fill(source_kind), f"{summary}'s image_size"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
      return None
  if spec.get("base") is not None:
    return _source_image_size(spec.base)
  return None


def trained_face_size(config: ml_collections.ConfigDict) -> tuple[int, str]:
  """(pixels, where from): the side of MTCNN's box on a face at the scale a checkpoint was
  trained at, i.e. its training images' side times the source's `FACE_FILL`.

  The image side comes from, in order: `config.data.face_size` (the face box itself, if a
  config sets it); the training source (a demo face source's `size`, or the `synthesis.json`
  of the synthesised pair folder the pipeline's SRN trains on, if it is still there); the
  CycleGAN's `load_size`; else the training crop (`crop_size`), which is part of a face image,
  so a lower bound. `--config.face_size` overrides all of them.
  """
  data = config.get("data", ml_collections.ConfigDict())
  if data.get("face_size"):
    return int(data.face_size), "the checkpoint's data.face_size"
  train = data.get("train") or data.get("sharp")
  found = _source_image_size(train) if train is not None else None
  if found is None and data.get("load_size"):
    found = int(data.load_size), DEFAULT_FACE_FILL, "the checkpoint's data.load_size"
  if found is None and data.get("crop_size"):
    found = (int(data.crop_size), DEFAULT_FACE_FILL,
             "the checkpoint's training crop (data.crop_size)")
  if found is None:
    raise ConfigError("the checkpoint's config records no training image size; "
                      "set --config.face_size")
  side, fill, where = found
  return max(8, round(side * fill)), f"{where} ({side} px) x face fill {fill}"


def is_face_model(config: ml_collections.ConfigDict) -> bool:
  """False for a model trained on a non-face set (GoPro): `regions=auto` restores it whole."""
  data = config.get("data", ml_collections.ConfigDict())
  train = data.get("train") or data.get("sharp")
  text = json.dumps(train.to_dict() if train is not None else {}, default=str).lower()
  return not any(name in text for name in _NOT_FACES)


@dataclasses.dataclass
class Face:
  """One face: its box (x0, y0, x1, y1) in input pixels, the detector's score (None for a
  given box), the square crop that was restored (x0, y0, x1, y1, may reach past the image),
  and what was done: 'restored' or 'skipped: ...'."""
  box: tuple[float, float, float, float]
  score: float | None
  action: str
  crop: tuple[int, int, int, int] | None = None

  def to_json(self) -> dict:
    return {"box": [round(float(v), 2) for v in self.box],
            "score": None if self.score is None else round(float(self.score), 4),
            "crop": None if self.crop is None else [int(v) for v in self.crop],
            "action": self.action}


@dataclasses.dataclass
class FacesResult:
  """The restored image (HxWx3 float32 in [0, 1]) and what was done: `mode` is 'faces' (the
  faces were pasted), 'whole' (no face: the whole image was restored) or 'keep' (no face:
  the image is the input's)."""
  image: np.ndarray
  faces: list[Face]
  mode: str
  boxes_from: str
  face_size: int
  network_side: int
  face_size_from: str = ""

  @property
  def no_face(self) -> bool:
    return not any(face.action == "restored" for face in self.faces)

  def to_json(self) -> dict:
    return {"mode": self.mode, "boxes_from": self.boxes_from, "face_size": self.face_size,
            "face_size_from": self.face_size_from, "network_side": self.network_side,
            "faces": [face.to_json() for face in self.faces]}


def _raised_cosine_window(side: int, ramp: int) -> np.ndarray:
  """1-D weights: 0 -> 1 over `ramp` pixels at each end (never exactly 0 inside), 1 between."""
  window = np.ones(side, np.float32)
  ramp = min(ramp, side // 2)
  if ramp > 0:
    rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
    window[:ramp] = rise
    window[side - ramp:] = rise[::-1]
  return window


def _resize(image: np.ndarray, side: int) -> np.ndarray:
  """HxWx3 float32 -> side x side, bicubic (antialiased when shrinking), per channel in float."""
  return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(image[..., k]), mode="F")
                              .resize((side, side), Image.BICUBIC))
                   for k in range(image.shape[-1])], axis=-1)


def _square_crop(box: Sequence[float], margin: float) -> tuple[int, int, int, int]:
  """The box's square with `margin` of its longer side on each side, about its centre."""
  x0, y0, x1, y1 = box
  side = max(8, math.ceil(max(x1 - x0, y1 - y0) * (1 + 2 * margin)))
  left = int(round((x0 + x1) / 2 - side / 2))
  top = int(round((y0 + y1) / 2 - side / 2))
  return left, top, left + side, top + side


def _cut(image: np.ndarray, crop: tuple[int, int, int, int]) -> np.ndarray:
  """The crop, edge-padded where it reaches past the image."""
  height, width = image.shape[:2]
  left, top, right, bottom = crop
  inside = image[max(top, 0):min(bottom, height), max(left, 0):min(right, width)]
  pads = ((max(0, -top), max(0, bottom - height)), (max(0, -left), max(0, right - width)),
          (0, 0))
  return np.pad(inside, pads, mode="edge")


def parse_boxes(value, where: str) -> list[tuple[float, float, float, float]]:
  """A list of [x0, y0, x1, y1] (or of {"box": [...]}, as the sidecars write them)."""
  if not isinstance(value, list):
    raise ConfigError(f"{where}: expected a list of [x0, y0, x1, y1] boxes, got {value!r:.60}")
  boxes = []
  for index, item in enumerate(value):
    box = item.get("box") if isinstance(item, dict) else item
    try:
      x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
      raise ConfigError(f"{where}[{index}]: expected [x0, y0, x1, y1], got {item!r:.60}") \
          from None
    if not (x1 > x0 and y1 > y0):
      raise ConfigError(f"{where}[{index}]: box {[x0, y0, x1, y1]} needs x1 > x0 and y1 > y0")
    boxes.append((x0, y0, x1, y1))
  return boxes


def load_boxes_file(path: str | pathlib.Path) -> dict[str, list]:
  """A boxes file: {"<image path relative to the input folder>": [[x0, y0, x1, y1], ...]}
  (for a single input image its file name), in pixels of the upright image (after its EXIF
  rotation, as it is restored); checked here, one line naming the key if bad."""
  path = pathlib.Path(path)
  try:
    content = json.loads(path.read_text())
  except OSError as error:
    raise ConfigError(f"{path}: cannot read the boxes file ({error.strerror})") from None
  except ValueError as error:
    raise ConfigError(f"{path}: not JSON ({error})") from None
  if not isinstance(content, dict):
    raise ConfigError(f"{path}: expected an object mapping image paths to lists of boxes")
  return {str(key): parse_boxes(value, f"{path}: {key!r}") for key, value in content.items()}


def draw_boxes(image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
  """uint8 copy of `image` with each face box drawn: green restored, red skipped; the crop
  that was pasted in thin yellow."""
  canvas = Image.fromarray(to_uint8(as_rgb(image)))
  draw = ImageDraw.Draw(canvas)
  width = max(1, round(max(canvas.size) / 400))
  for face in faces:
    if face.crop is not None:
      draw.rectangle(face.crop, outline=(255, 220, 0), width=1)
    colour = (0, 220, 0) if face.action == "restored" else (230, 30, 30)
    draw.rectangle(face.box, outline=colour, width=width)
  return np.asarray(canvas)


class FaceRestorer:
  """`face_restorer(image, boxes=None)` -> `FacesResult`: restores each face of `image` in
  place (see the module docstring). `restorer` is a `Restorer` (or anything with its
  `restore_batch`, `__call__` and `config`); `detector` defaults to MTCNN."""

  def __init__(self, restorer, *, detector: FaceDetector | None = None,
               face_size: int = 0, margin: float = 0.25, min_face_size: float = 40,
               detect_max_side: int = 1600, no_face: str = "whole"):
    if no_face not in NO_FACE_CHOICES:
      raise ConfigError(f"no_face must be one of {', '.join(NO_FACE_CHOICES)}, got {no_face!r}")
    if not 0 < margin <= 2:
      raise ConfigError(f"the face margin must be in (0, 2] (a fraction of the box), got "
                        f"{margin}")
    if min_face_size < 1 or detect_max_side < MTCNN_SMALLEST_FACE:
      raise ConfigError(f"min_face_size ({min_face_size}) must be >= 1 px and detect_max_side "
                        f"({detect_max_side}) >= {MTCNN_SMALLEST_FACE} px")
    self.restorer = restorer
    if face_size:
      self.face_size, self.face_size_from = int(face_size), "face_size"
    else:
      self.face_size, self.face_size_from = trained_face_size(restorer.config)
    self.margin, self.min_face_size = margin, float(min_face_size)
    # Every crop goes through the network at this one side (one compile): the face box at
    # `face_size`, with its margin.
    self.network_side = _round_to_multiple((1 + 2 * margin) * self.face_size)
    self.detect_max_side, self.no_face = int(detect_max_side), no_face
    self._detector = detector

  @property
  def detector(self) -> FaceDetector:
    if self._detector is None:
      self._detector = make_detector("mtcnn")
    return self._detector

  def detect(self, image: np.ndarray) -> list[Detection]:
    """Detections in input pixels, found on a downscaled copy (see the module docstring)."""
    image = as_rgb(image)
    height, width = image.shape[:2]
    scale = min(1.0, MTCNN_NATIVE_MIN_FACE / self.min_face_size,
                self.detect_max_side / max(height, width))
    copy = image
    if scale < 1:
      size = (max(1, round(width * scale)), max(1, round(height * scale)))
      copy = np.asarray(Image.fromarray(to_uint8(image)).resize(size, Image.BOX), np.float32)
      copy = copy / np.float32(255)
      scale = size[0] / width  # the scale actually applied (x; y differs by < 1 px)
    detector = self.detector
    if hasattr(detector, "min_face_size"):
      detector.min_face_size = max(MTCNN_SMALLEST_FACE, self.min_face_size * scale)
    return [Detection(box=tuple(float(v) / scale for v in found.box), score=found.score,
                      landmarks=None if found.landmarks is None else found.landmarks / scale)
            for found in detector.detect(copy)]

  def __call__(self, image, boxes: Sequence[Sequence[float]] | None = None) -> FacesResult:
    image = as_rgb(image)
    height, width = image.shape[:2]
    if boxes is None:
      faces = [Face(box=found.box, score=found.score, action="restored")
               for found in self.detect(image)]
      boxes_from = f"detector: {self.detector.describe()}"
      for face in faces:
        x0, y0, x1, y1 = face.box
        if max(x1 - x0, y1 - y0) < self.min_face_size:
          face.action = f"skipped: smaller than min_face_size {self.min_face_size:g} px"
    else:
      faces = [Face(box=tuple(float(v) for v in box), score=None, action="restored")
               for box in parse_boxes(list(boxes), "boxes")]
      boxes_from = "given"
      for face in faces:
        x0, y0, x1, y1 = face.box
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
          face.action = "skipped: outside the image"
    restored = [face for face in faces if face.action == "restored"]
    if not restored:
      mode = self.no_face
      output = self.restorer(image) if mode == "whole" else image.copy()
      return FacesResult(output, faces, mode, boxes_from, self.face_size, self.network_side,
                         self.face_size_from)
    for face in restored:
      face.crop = _square_crop(face.box, self.margin)
    return FacesResult(self._paste(image, restored), faces, "faces", boxes_from,
                       self.face_size, self.network_side, self.face_size_from)

  def _restore_crops(self, image: np.ndarray,
                     crops: Sequence[tuple[int, int, int, int]]) -> list[np.ndarray]:
    """Each crop restored at `network_side` (its face at `face_size`) and resized back, plus
    the crop's own detail that the round trip through `network_side` loses (what a face larger
    than the network's scale has beyond it): an identity network gives the crop back.

    The crops go through the network together, in batches of a power of two up to
    `CROP_BATCH` (a short batch filled with copies), so that a photo's faces cost a few calls
    and a folder's photos compile at most a handful of batch shapes.
    """
    cuts = [_cut(image, crop) for crop in crops]
    at_network_side = [np.clip(_resize(cut, self.network_side), 0, 1) for cut in cuts]
    restored = []
    for begin in range(0, len(cuts), CROP_BATCH):
      group = at_network_side[begin:begin + CROP_BATCH]
      batch_size = 1 << (len(group) - 1).bit_length()
      batch = np.stack(group + [group[-1]] * (batch_size - len(group)))
      restored.extend(np.asarray(self.restorer.restore_batch(batch), np.float32)[:len(group)])
    return [_resize(output, cut.shape[0]) + (cut - _resize(small, cut.shape[0]))
            for output, cut, small in zip(restored, cuts, at_network_side, strict=True)]

  def _paste(self, image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
    """Feathered paste of every face; pixels outside all crops are copied unchanged. Faces
    whose crops overlap are blended together over their group's bounding rectangle only, so
    the cost follows the faces' area, not the photo's."""
    output = image.copy()
    restored = dict(zip((id(face) for face in faces),
                        self._restore_crops(image, [face.crop for face in faces]),
                        strict=True))
    for group in _overlapping_groups(faces):
      self._paste_group(output, image, group, [restored[id(face)] for face in group])
    return output

  @staticmethod
  def _paste_group(output: np.ndarray, image: np.ndarray, faces: Sequence[Face],
                   restored_crops: Sequence[np.ndarray]) -> None:
    height, width = image.shape[:2]
    left = max(0, min(face.crop[0] for face in faces))
    top = max(0, min(face.crop[1] for face in faces))
    right = min(width, max(face.crop[2] for face in faces))
    bottom = min(height, max(face.crop[3] for face in faces))
    region = image[top:bottom, left:right]
    weighted = np.zeros(region.shape, np.float32)
    weights = np.zeros(region.shape[:2], np.float32)
    uncovered = np.ones(region.shape[:2], np.float32)  # prod(1 - w): the masks' union is 1 - it
    for face, restored in zip(faces, restored_crops, strict=True):
      x0, y0, x1, y1 = face.crop
      box_side = max(face.box[2] - face.box[0], face.box[3] - face.box[1])
      ramp = max(1, int((x1 - x0 - box_side) / 2))
      window = _raised_cosine_window(x1 - x0, ramp)
      mask = np.outer(window, window)
      # The part of the crop inside the image, in crop and in region coordinates.
      cy0, cx0 = max(0, -y0), max(0, -x0)
      cy1, cx1 = (y1 - y0) - max(0, y1 - height), (x1 - x0) - max(0, x1 - width)
      ry0, rx0 = y0 + cy0 - top, x0 + cx0 - left
      rows = slice(ry0, ry0 + cy1 - cy0)
      cols = slice(rx0, rx0 + cx1 - cx0)
      face_mask = mask[cy0:cy1, cx0:cx1]
      weighted[rows, cols] += face_mask[..., None] * restored[cy0:cy1, cx0:cx1]
      weights[rows, cols] += face_mask
      uncovered[rows, cols] *= 1 - face_mask
    covered = weights > 0
    mixed = np.where(covered[..., None], weighted / np.maximum(weights, 1e-12)[..., None], region)
    alpha = (1 - uncovered)[..., None]
    pasted = np.clip(region + alpha * (mixed - region), 0, 1)
    output[top:bottom, left:right] = np.where(covered[..., None], pasted, region)


def _overlapping_groups(faces: Sequence[Face]) -> list[list[Face]]:
  """The faces in groups whose crops overlap (transitively), each group in input order."""
  parent = list(range(len(faces)))

  def root(index: int) -> int:
    while parent[index] != index:
      parent[index] = parent[parent[index]]
      index = parent[index]
    return index

  for i, a in enumerate(faces):
    for j in range(i):
      b = faces[j]
      if (a.crop[0] < b.crop[2] and b.crop[0] < a.crop[2]
          and a.crop[1] < b.crop[3] and b.crop[1] < a.crop[3]):
        parent[root(i)] = root(j)
  groups: dict[int, list[Face]] = {}
  for index, face in enumerate(faces):
    groups.setdefault(root(index), []).append(face)
  return list(groups.values())


def make_face_restorer(restorer, config: ml_collections.ConfigDict | None = None,
                       **overrides) -> FaceRestorer:
  """A `FaceRestorer` with the deblur config's face settings (configs/deblur.py)."""
  settings = dict(face_size=0, margin=0.25, min_face_size=40, detect_max_side=1600,
                  no_face="whole")
  if config is not None:
    settings.update(face_size=config.face_size, margin=config.face_margin,
                    min_face_size=config.min_face_size, detect_max_side=config.detect_max_side,
                    no_face=config.no_face)
  settings.update(overrides)
  return FaceRestorer(restorer, **settings)



def _boxes_path(output_path: pathlib.Path) -> pathlib.Path:
  return output_path.with_name(f"{output_path.stem}.boxes{output_path.suffix}")


def sidecar_path(output_path: pathlib.Path) -> pathlib.Path:
  """`restored.png` -> `restored.png.json` (the suffix kept: `a.jpg` and `a.png` differ)."""
  return output_path.with_name(output_path.name + ".json")


class JobFaces:
  """The deblur job's faces mode: which restore each image gets, its warning and its files."""

  def __init__(self, config: ml_collections.ConfigDict, restorer, source: pathlib.Path,
               single: bool):
    if config.regions not in ("auto", "faces", "whole"):
      raise ConfigError(f"--config.regions must be faces, whole or auto, got {config.regions!r}")
    self.enabled = config.regions == "faces" or (
        config.regions == "auto" and is_face_model(restorer.config))
    self.restorer, self.source, self.single = restorer, source, single
    self.draw = bool(config.draw_boxes)
    self.boxes = load_boxes_file(config.boxes) if config.boxes else {}
    self.face_restorer = make_face_restorer(restorer, config) if self.enabled else None
    self.faces_restored = 0

  def _given_boxes(self, path: pathlib.Path) -> list | None:
    key = path.name if self.single else path.relative_to(self.source).as_posix()
    return self.boxes.get(key)

  def restore(self, path: pathlib.Path, image: np.ndarray) -> tuple[np.ndarray, FacesResult | None]:
    """The restored image, and in faces mode what was done (one warning if no face)."""
    if not self.enabled:
      return self.restorer(image), None
    result = self.face_restorer(image, self._given_boxes(path))
    if result.mode != "faces":
      done = ("restored the whole image" if result.mode == "whole"
              else "left it unchanged")
      warn(f"{path}: no face found; {done} (--config.no_face={result.mode})")
    self.faces_restored += sum(face.action == "restored" for face in result.faces)
    return result.image, result

  def write(self, path: pathlib.Path, output_path: pathlib.Path, result: FacesResult | None,
            save: Callable[[pathlib.Path, np.ndarray], None]) -> None:
    """The sidecar `<output>.json`, and with draw_boxes `<stem>.boxes<suffix>`."""
    if result is None:
      return
    report = {"input": str(path), "output": str(output_path), **result.to_json()}
    sidecar_path(output_path).write_text(json.dumps(report, indent=2) + "\n")
    if self.draw:
      save(_boxes_path(output_path), draw_boxes(result.image, result.faces))

  def summary(self) -> str:
    return f" ({self.faces_restored} faces restored in place)" if self.enabled else ""
