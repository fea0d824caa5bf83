"""Table 2's IoU rule on hand-made boxes: a detection elsewhere does not count, the reference
is the ground truth's highest-scored box, and both rules divide by the same images."""

import pytest

from faceblur.evaluate import detection_protocol

FACE = (10.0, 10.0, 50.0, 50.0)
NEAR = (14.0, 12.0, 54.0, 52.0)     # IoU with FACE ~0.74
ELSEWHERE = (60.0, 60.0, 100.0, 100.0)
HALF_OVER = (30.0, 10.0, 70.0, 50.0)  # IoU 1/3


def test_a_detection_elsewhere_does_not_count():
  references = [FACE, FACE, FACE, FACE, None]
  boxes = [[NEAR], [ELSEWHERE], [ELSEWHERE, NEAR], [HALF_OVER], [FACE]]
  assert detection_protocol.found_at(boxes, references) == [True, False, True, False, False]
  assert detection_protocol.found_at([[HALF_OVER]], [FACE], iou_threshold=0.3) == [True]


def test_the_reference_is_the_ground_truths_first_box_and_rates_follow_both_rules():
  boxes = {
      "ground_truth": [[FACE, ELSEWHERE], [FACE], [], [FACE]],
      "blurred": [[ELSEWHERE], [NEAR], [FACE], []],
      "ours": [[NEAR], [NEAR], [], [HALF_OVER]],
  }
  assert detection_protocol.reference_boxes(boxes["ground_truth"]) == [FACE, FACE, None, FACE]
  scored = detection_protocol.rates(boxes)
  # Any face: 3/4, 3/4, 3/4. IoU: ground truth 3/4 (image 2 has no face), blurred only
  # image 1 (its ELSEWHERE is the ground truth's second box, not its face), ours 0 and 1.
  assert scored["any_face"] == pytest.approx({"ground_truth": 0.75, "blurred": 0.75,
                                              "ours": 0.75})
  assert scored["iou"] == pytest.approx({"ground_truth": 0.75, "blurred": 0.25, "ours": 0.5})
  cells = detection_protocol.csv_cells(scored, suffix="_hog")
  assert cells[0] == {"truth_detected_hog": True, "truth_detected_iou_hog": True,
                      "blurred_detected_hog": True, "blurred_detected_iou_hog": False,
                      "ours_detected_hog": True, "ours_detected_iou_hog": True}
  assert set(detection_protocol.csv_cells(scored, any_face=False)[3]) == {
      "truth_detected_iou", "blurred_detected_iou", "ours_detected_iou"}
