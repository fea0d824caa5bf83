"""Identity preservation (Table 3): is a blurred or restored face still the same person?

The paper claims its restorations "foster facial detection and identity preservation". This
measures the second part with dlib's face-recognition ResNet (`face-recognition-models`
0.3.0: 128-d descriptors, 99.38 % on LFW, two faces are one person below a distance of 0.6):
for each test image, the distance between the descriptor of the blurred or restored face and
that of its ground truth, and how often it stays under 0.6.

The face box comes from the ground-truth image (dlib's HOG detector, whose boxes the landmark
model was trained on, falling back to a box the caller gives), so a face is scored even where
detection fails on the blurred or restored image. The 5 landmarks that align the face are
found on each image itself inside that box, as a recogniser would align a restored photo.

Faces smaller than `min_face_size` (the demo's are 64 px) are upsampled first by doubling the
image, as dlib's examples do for small faces (`detector(image, 1)`); the aligned chip is
resampled to 150 px either way, so this barely changes distances.

The descriptor stays meaningful at the demo's 64 px scale: distances grow steadily with blur
and distinct demo faces lie farther apart than blurred copies of one face (the measurements:
"Figures behind code choices" in `bench/RESULTS.md`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence

import numpy as np

from faceblur.detectors import Box, DlibHOG, dlib_detectors
from faceblur.errors import FaceblurError

SAME_PERSON_DISTANCE = 0.6  # dlib's threshold for its ResNet model (LFW)
MAX_DOUBLINGS = 3


class FaceDescriptor:
  """dlib's 128-d face descriptor of the face inside a given box.

  `min_face_size`: a face box smaller than this is doubled (up to 3 times) before alignment.
  """

  def __init__(self, *, min_face_size: int = 80, detector_upsample: int = 1):
    dlib = dlib_detectors.import_dlib()
    self._dlib = dlib
    self._landmarks = dlib.shape_predictor(
        str(dlib_detectors.model_path("shape_predictor_5_face_landmarks.dat")))
    self._network = dlib.face_recognition_model_v1(
        str(dlib_detectors.model_path("dlib_face_recognition_resnet_model_v1.dat")))
    self._detector = DlibHOG(upsample=detector_upsample)
    self.min_face_size = int(min_face_size)
    self.detector_upsample = int(detector_upsample)

  def describe(self) -> str:
    dlib_version = dlib_detectors.package_version("dlib-bin")
    models = dlib_detectors.package_version("face-recognition-models")
    return (f"dlib {dlib_version} face-recognition ResNet (face-recognition-models {models}), "
            f"5-point alignment, faces under {self.min_face_size} px upsampled; same person "
            f"below {SAME_PERSON_DISTANCE}")

  def face_box(self, image: np.ndarray) -> Box | None:
    """The highest-scored HOG face on (ground-truth) `image`, or None."""
    found = self._detector.detect(image)
    return found[0].box if found else None

  def __call__(self, image: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The (128,) float32 descriptor of the face in `box` (x0, y0, x1, y1) of HxWx3 `image`."""
    pixels = dlib_detectors.to_dlib_image(image)
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(1.0, min(x1 - x0, y1 - y0))
    doublings = min(MAX_DOUBLINGS, max(0, math.ceil(math.log2(self.min_face_size / side))))
    scale = 2 ** doublings
    if scale > 1:
      pixels = self._dlib.resize_image(pixels, pixels.shape[0] * scale, pixels.shape[1] * scale)
    rectangle = self._dlib.rectangle(round(x0 * scale), round(y0 * scale),
                                     round(x1 * scale) - 1, round(y1 * scale) - 1)
    shape = self._landmarks(pixels, rectangle)
    return np.asarray(self._network.compute_face_descriptor(pixels, shape), np.float32)


def report_header(descriptor: FaceDescriptor) -> dict:
  """report.json's `identity` entry before any test set is scored."""
  return {"descriptor": descriptor.describe(), "same_person_distance": SAME_PERSON_DISTANCE,
          "test_sets": {}}


def distance(descriptor_a: np.ndarray, descriptor_b: np.ndarray) -> float:
  """Euclidean distance of two descriptors, as dlib's 0.6 threshold is defined on."""
  return float(np.linalg.norm(np.asarray(descriptor_a) - np.asarray(descriptor_b)))


@dataclasses.dataclass
class IdentityScores:
  """Per-image descriptor distances to the ground truth, per column (blurred, each method);
  None where the ground truth has no face box."""
  distances: dict[str, list[float | None]]

  def summary(self) -> dict:
    """{"num_images", "num_scored", "columns": {column: {"distance", "same_person_rate"}}}."""
    columns = {}
    num_images = num_scored = 0
    for column, values in self.distances.items():
      scored = np.asarray([v for v in values if v is not None], np.float64)
      num_images, num_scored = len(values), len(scored)
      columns[column] = {
          "distance": float(scored.mean()) if scored.size else None,
          "same_person_rate": (float(np.mean(scored < SAME_PERSON_DISTANCE))
                               if scored.size else None)}
    return {"num_images": num_images, "num_scored": num_scored, "columns": columns}

  def rows(self) -> list[dict]:
    """Per-image CSV cells: `<column>_identity_distance` (empty where not scored)."""
    count = len(next(iter(self.distances.values()), []))
    return [{f"{column}_identity_distance": "" if values[index] is None
             else round(values[index], 4) for column, values in self.distances.items()}
            for index in range(count)]


def score_set(descriptor: FaceDescriptor, sharp: Sequence[np.ndarray],
              columns: dict[str, Sequence[np.ndarray]], *, padding: float = 0.0,
              fallback_boxes: Sequence[Box | None] | None = None, max_images: int = 0,
              check: Callable[[str], None] | None = None) -> IdentityScores:
  """Descriptor distances of each column's images to their ground truth `sharp[i]`, for the
  first `max_images` images (0 = all; a descriptor costs ~0.1-0.3 s on the 2-core CPU).

  Images are the same size as their ground truth. Face crops are edge-padded by `padding` of
  their side first, as for detection: the landmark model and the face chip need context.
  `fallback_boxes` (image coordinates) are used where HOG finds no face on the ground truth;
  `check(column)` runs before each column (to stop on an interruption).
  """
  if max_images > 0:
    sharp = sharp[:max_images]
    columns = {column: images[:max_images] for column, images in columns.items()}
  pad_of = [int(round(padding * max(image.shape[:2]))) for image in sharp]
  truths, boxes = [], []
  for index, image in enumerate(sharp):
    pad = pad_of[index]
    padded = _pad(image, pad)
    box = descriptor.face_box(padded)
    if box is None and fallback_boxes is not None and fallback_boxes[index] is not None:
      box = tuple(v + pad for v in fallback_boxes[index])
    boxes.append(box)
    truths.append(None if box is None else descriptor(padded, box))
  distances = {}
  for column, images in columns.items():
    if check is not None:
      check(column)
    distances[column] = [
        None if box is None else distance(descriptor(_pad(image, pad), box), truth)
        for image, pad, box, truth in zip(images, pad_of, boxes, truths, strict=True)]
  return IdentityScores(distances)


class DescriptorProcesses:
  """`score_set` with the faces shared among worker processes.

  dlib's descriptor network holds the GIL and keeps one core busy for about 0.1 s a face, so
  threads cannot share the work; processes can. Each worker is a fresh interpreter that imports
  this module only (not the caller's script, as multiprocessing's spawn would), in its own
  session, so that a Ctrl-C reaches the caller alone, which decides what an interruption stops.
  `close()` terminates the workers; each also exits by itself when its parent's pipe closes.
  """

  def __init__(self, descriptor: FaceDescriptor, processes: int):
    self.processes = [_Worker(descriptor) for _ in range(max(1, int(processes)))]

  def score_set(self, sharp: Sequence[np.ndarray], columns: dict[str, Sequence[np.ndarray]], *,
                max_images: int = 0, fallback_boxes: Sequence[Box | None] | None = None,
                check: Callable[[str], None] | None = None, **options) -> IdentityScores:
    """`score_set(descriptor, sharp, columns, ...)`, each worker scoring a contiguous share of
    the faces; `check("descriptors")` runs about twice a second while they work (to stop on an
    interruption)."""
    count = min(len(sharp), max_images) if max_images > 0 else len(sharp)
    bounds = [count * part // len(self.processes) for part in range(len(self.processes) + 1)]
    shares = [(worker, low, high) for worker, low, high
              in zip(self.processes, bounds, bounds[1:], strict=False) if high > low]
    for worker, low, high in shares:
      worker.send((list(sharp[low:high]),
                   {column: list(images[low:high]) for column, images in columns.items()},
                   options | {"fallback_boxes": None if fallback_boxes is None
                              else list(fallback_boxes[low:high])}))
    try:
      parts = [worker.receive(check) for worker, _, _ in shares]
    except BaseException:
      self.close()  # answers may still be in flight: no later call may read them as its own
      raise
    for part in parts:  # every worker has answered, so each queue is empty again
      if isinstance(part, BaseException):
        raise part
    return IdentityScores({column: [distance for part in parts
                                    for distance in part.distances[column]]
                           for column in columns})

  def close(self) -> None:
    """Stops the workers, whatever they are doing."""
    for worker in self.processes:
      worker.close()

  def __enter__(self) -> DescriptorProcesses:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


class _Worker:
  """One `_serve` process; threads move the messages, so neither side waits on a full pipe."""

  def __init__(self, descriptor: FaceDescriptor):
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    self._process = subprocess.Popen(
        [sys.executable, "-c", f"from faceblur.evaluate import identity; "
         f"identity._serve({descriptor.min_face_size}, {descriptor.detector_upsample})"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment,
        start_new_session=True)
    self._tasks: queue.Queue = queue.Queue()
    self._results: queue.Queue = queue.Queue()
    threading.Thread(target=_write_tasks, args=(self._tasks, self._process.stdin),
                     daemon=True).start()
    threading.Thread(target=_read_results, args=(self._process.stdout, self._results),
                     daemon=True).start()

  def send(self, task: tuple) -> None:
    self._tasks.put(task)

  def receive(self, check: Callable[[str], None] | None) -> IdentityScores | Exception:
    """The worker's answer to the task sent last: its scores, or the error it raised."""
    while True:
      if check is not None:
        check("descriptors")
      try:
        outcome = self._results.get(timeout=0.5)
      except queue.Empty:
        continue
      if outcome is None:  # the worker's end of the pipe closed
        raise FaceblurError(f"an identity worker process stopped (exit code "
                            f"{self._process.wait()}) before it scored its faces")
      return outcome

  def close(self) -> None:
    self._tasks.put(None)
    if self._process.poll() is None:
      self._process.terminate()
    self._process.wait()


def _write_message(stream, message) -> None:
  data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
  stream.write(struct.pack("<Q", len(data)) + data)
  stream.flush()


def _read_message(stream):
  """The next message on `stream`, or None once it is closed."""
  header = stream.read(8)
  if len(header) < 8:
    return None
  return pickle.loads(stream.read(struct.unpack("<Q", header)[0]))  # noqa: S301 (our worker)


def _write_tasks(tasks: queue.Queue, stream) -> None:
  try:
    while (task := tasks.get()) is not None:
      _write_message(stream, task)
  except OSError:  # the worker was stopped
    pass
  finally:
    with contextlib.suppress(OSError):
      stream.close()


def _read_results(stream, results: queue.Queue) -> None:
  while True:
    message = _read_message(stream)
    results.put(message)
    if message is None:
      return


def _serve(min_face_size: int, detector_upsample: int) -> None:
  """A worker of `DescriptorProcesses`: scores each share its parent sends on stdin, answering
  on the original stdout (anything else printed goes to stderr), until stdin closes."""
  answers = os.fdopen(os.dup(1), "wb")
  os.dup2(2, 1)
  tasks = sys.stdin.buffer
  descriptor = FaceDescriptor(min_face_size=min_face_size, detector_upsample=detector_upsample)
  while (task := _read_message(tasks)) is not None:
    sharp, columns, options = task
    try:
      outcome = score_set(descriptor, sharp, columns, **options)
    except Exception as error:  # noqa: BLE001 (handed to the caller, which raises it)
      outcome = error
    _write_message(answers, outcome)


def _pad(image: np.ndarray, pad: int) -> np.ndarray:
  image = np.clip(np.asarray(image, np.float32), 0, 1)
  return np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge") if pad else image
