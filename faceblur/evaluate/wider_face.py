"""Table 2 on real blurred faces: detection recall on WIDER FACE by blur level and face size.

Each photo is run through the detector as it is and after each method restored it. A face
counts as found when a detection overlaps its annotated box with IoU >= 0.5, one detection
per face, highest scores first (as WIDER FACE's own evaluation matches). Faces marked invalid
are neither counted nor held against a detector that finds them. A detection that matches no
face is a false detection; their mean per photo is reported next to the recall, because a
method that invents faces would otherwise look like one that restores them.

Writes `wider_face.json` and `wider_face.md` into the output folder.
"""

import json
import math
import pathlib
import time

import ml_collections
import numpy as np
from tqdm import tqdm

from faceblur import detectors
from faceblur.console import warn
from faceblur.data import factory
from faceblur.data.wider_face import BLUR_LEVELS, FaceBox
from faceblur.errors import ConfigError, DataError, FaceblurError, ImageReadError
from faceblur.evaluate import TRAINED_METHOD_KINDS
from faceblur.evaluate.evaluation import build_methods
from faceblur.images import as_rgb

# Face heights in pixels; the first band starts at the detectors' usual minimum face.
SIZE_BANDS = ((10, 32), (32, 64), (64, 128), (128, math.inf))


def match(detections: list[detectors.Detection], faces: list[FaceBox],
          iou_threshold: float = 0.5) -> tuple[list[bool], int]:
  """Which faces are found, and how many detections found no face (false detections)."""
  found = [False] * len(faces)
  false = 0
  for detection in sorted(detections, key=lambda d: -d.score):
    best, best_iou = None, iou_threshold
    for index, face in enumerate(faces):
      if face.invalid or found[index]:
        continue
      iou = detectors.box_iou(detection.box, face.box)
      if iou >= best_iou:
        best, best_iou = index, iou
    if best is not None:
      found[best] = True
    elif not any(face.invalid and detectors.box_iou(detection.box, face.box) >= iou_threshold
                 for face in faces):
      false += 1
  return found, false


def band_name(low: float, high: float) -> str:
  return f"{low:g}+ px" if math.isinf(high) else f"{low:g}-{high:g} px"


def _recall_table(rows: list[dict]) -> dict:
  """Recall by blur level and by size band from per-face rows {blur, height, found}."""
  def recall(selected: list[dict]) -> dict:
    return {"faces": len(selected),
            "recall": float(np.mean([r["found"] for r in selected])) if selected else None}

  valid = [r for r in rows if r["height"] >= SIZE_BANDS[0][0]]
  return {"all": recall(valid),
          "blur": {BLUR_LEVELS[level]: recall([r for r in valid if r["blur"] == level])
                   for level in BLUR_LEVELS},
          "size": {band_name(low, high): recall([r for r in valid if low <= r["height"] < high])
                   for low, high in SIZE_BANDS}}


def evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
  started = time.perf_counter()
  output = pathlib.Path(config.output) if config.output else pathlib.Path(workdir)
  output.mkdir(parents=True, exist_ok=True)
  detector = detectors.make_detector(config.detector, threshold=config.detector_threshold)
  for name, spec in config.methods.items():
    if spec.kind in TRAINED_METHOD_KINDS and not spec.workdir:
      raise ConfigError(f"methods.{name}.workdir is empty: set it to the workdir of a trained "
                        f"{spec.kind} stage")
    if spec.kind == "folder":
      raise ConfigError(f"methods.{name}.kind='folder': the WIDER FACE evaluation restores "
                        "photos itself and does not read other codebases' outputs")
  methods = build_methods(config.methods)
  source = factory.make_source(config.wider_face)
  count = len(source) if config.max_images <= 0 else min(config.max_images, len(source))

  faces_rows = {"original": []} | {m.name: [] for m in methods if m.name != "original"}
  false = {name: 0 for name in faces_rows}
  skipped = []
  for index in tqdm(range(count), desc="wider_face", unit="photo"):
    try:
      record = source[index]
    except ImageReadError as error:
      warn(f"wider_face: skipped {error}")
      skipped.append(str(error))
      continue
    image = as_rgb(record["image"])
    versions = {"original": image} | {m.name: m.restore(image) for m in methods
                                      if m.name != "original"}
    for name, version in versions.items():
      found, num_false = match(detector.detect(version), record["faces"])
      false[name] += num_false
      faces_rows[name] += [{"blur": face.blur, "height": face.height, "found": hit}
                           for face, hit in zip(record["faces"], found, strict=True)
                           if not face.invalid]
  done = count - len(skipped)
  if count and not done:
    raise DataError(f"wider_face: none of its {count} photos could be read (see warnings)")

  report = {
      "detector": detector.describe(), "num_photos": done, "skipped": skipped,
      "labels": {"original": "Original photo"} | {m.name: m.label for m in methods},
      "recall": {name: _recall_table(rows) for name, rows in faces_rows.items()},
      "false_detections_per_photo": {name: value / max(done, 1) for name, value in false.items()},
      "wall_time_s": round(time.perf_counter() - started, 1)}
  (output / "wider_face.json").write_text(json.dumps(report, indent=2))
  text = markdown(report)
  (output / "wider_face.md").write_text(text)
  print("\n" + text, flush=True)
  if skipped:
    raise FaceblurError(f"{len(skipped)} photo(s) could not be read and were left out (see the "
                        f"warnings); the report in {output} covers the rest")
  return report


def markdown(report: dict) -> str:
  def cell(entry: dict) -> str:
    return "-" if entry["recall"] is None else f"{entry['recall']:.2f} ({entry['faces']})"

  names = list(report["recall"])
  columns = ([("all", None)] + [("blur", level) for level in BLUR_LEVELS.values()]
             + [("size", band_name(*band)) for band in SIZE_BANDS])
  header = ["Photos"] + [key if key == "all" else f"{sub}" for key, sub in columns] \
      + ["false detections / photo"]
  lines = ["# Table 2 on WIDER FACE: detection recall (faces found at IoU >= 0.5)", "",
           "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for name in names:
    table = report["recall"][name]
    cells = [cell(table["all"] if key == "all" else table[key][sub]) for key, sub in columns]
    lines.append(f"| {report['labels'][name]} | " + " | ".join(cells)
                 + f" | {report['false_detections_per_photo'][name]:.2f} |")
  lines += ["", f"Recall (faces counted) over {report['num_photos']} photos, by WIDER FACE's "
            "blur label and by face height; invalid faces excluded. Detector: "
            f"{report['detector']}.", ""]
  return "\n".join(lines)
