"""Table 2's two counting rules: "any face found" and "the ground truth's face found (IoU)".

The paper counts an image as a success when the detector finds a face in it. On face crops
that rule also counts a detection on the wrong spot (a false positive on a smeared cheek) as
a success. Where a test set has no annotated boxes, the second rule takes the face from the
detector on the ground-truth image (its highest-scored detection) and counts a blurred or
restored image as a success only if one of its detections overlaps that box with IoU >= 0.5.
An image whose ground truth has no detection is a failure under that rule for every column,
so both rules divide by the same number of images, and the ground truth's rate is the same
under both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from faceblur.detectors import Box, box_iou

IOU_THRESHOLD = 0.5


def reference_boxes(boxes_truth: Sequence[Sequence[Box]]) -> list[Box | None]:
  """Each ground-truth image's face: its first (highest-scored) detection, or None."""
  return [tuple(boxes[0]) if len(boxes) else None for boxes in boxes_truth]


def found_at(boxes: Sequence[Sequence[Box]], references: Sequence[Box | None], *,
             iou_threshold: float = IOU_THRESHOLD) -> list[bool]:
  """Per image: does a detection overlap the reference box with IoU >= `iou_threshold`?"""
  return [reference is not None and any(box_iou(box, reference) >= iou_threshold
                                        for box in image_boxes)
          for image_boxes, reference in zip(boxes, references, strict=True)]


def rates(boxes: dict[str, Sequence[Sequence[Box]]], *, truth: str = "ground_truth") -> dict:
  """Both rules' success rates per column, from each column's boxes per image.

  `boxes[truth]` holds the ground truth's detections, which give the reference boxes.
  Returns {"any_face": {column: rate}, "iou": {column: rate}, "per_image": {column: (any, iou)
  lists}}.
  """
  references = reference_boxes(boxes[truth])
  any_face = {column: [len(b) > 0 for b in per_image] for column, per_image in boxes.items()}
  iou = {column: found_at(per_image, references) for column, per_image in boxes.items()}
  return {"any_face": {column: float(np.mean(v)) for column, v in any_face.items()},
          "iou": {column: float(np.mean(v)) for column, v in iou.items()},
          "per_image": {column: (any_face[column], iou[column]) for column in boxes}}


def csv_cells(scored: dict, *, suffix: str = "", any_face: bool = True) -> list[dict]:
  """Per-image CSV cells of `rates(...)`: `<column>_detected<suffix>` (any face; left out with
  `any_face=False`) and `<column>_detected_iou<suffix>`; the ground truth's column is `truth`."""
  per_image = scored["per_image"]
  count = len(next(iter(per_image.values()), ([], []))[0])
  cells = [{} for _ in range(count)]
  for column, (found_any, found_iou) in per_image.items():
    name = "truth" if column == "ground_truth" else column
    for index in range(count):
      if any_face:
        cells[index][f"{name}_detected{suffix}"] = found_any[index]
      cells[index][f"{name}_detected_iou{suffix}"] = found_iou[index]
  return cells
