"""WIDER FACE's annotation format, read from a tiny tree the test writes."""

import numpy as np
import pytest
from PIL import Image

from faceblur.data import factory
from faceblur.data.wider_face import WiderFace, parse_annotations
from faceblur.errors import DataError

ANNOTATIONS = """0--Parade/0_Parade_a.jpg
2
10 20 30 40 2 0 0 0 1 0
50 5 8 9 0 1 1 1 0 1
1--Handshaking/1_Handshaking_b.jpg
0
0 0 0 0 0 0 0 0 0 0
"""


def write_wider_tree(root, annotations: str = ANNOTATIONS, split: str = "val"):
  """root/WIDER_<split>/images/... and root/wider_face_split/wider_face_<split>_bbx_gt.txt."""
  (root / "wider_face_split").mkdir(parents=True)
  (root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt").write_text(annotations)
  rng = np.random.default_rng(0)
  for line in annotations.splitlines():
    if line.endswith(".jpg"):
      path = root / f"WIDER_{split}" / "images" / line
      path.parent.mkdir(parents=True, exist_ok=True)
      Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(path)


def test_reads_boxes_blur_levels_and_images_without_faces(tmp_path):
  write_wider_tree(tmp_path)
  source = factory.make_source(factory.source_spec("wider_face", path=str(tmp_path), split="val"))
  assert isinstance(source, WiderFace) and len(source) == 2
  first = source[0]
  assert first["name"] == "0--Parade/0_Parade_a.jpg" and first["image"].shape == (60, 80, 3)
  heavy, invalid = first["faces"]
  assert heavy.box == (10.0, 20.0, 40.0, 60.0) and heavy.blur == 2 and heavy.height == 40
  assert heavy.occlusion == 1 and not heavy.invalid
  assert invalid.invalid and invalid.blur == 0 and invalid.expression == 1 and invalid.pose == 1
  assert source[1]["faces"] == []


@pytest.mark.parametrize("text,line,message", [
    ("a.jpg\n1\n1 2 3\n", 3, "has 10 numbers"),
    ("a.jpg\nnot a count\n", 2, "number of faces of a.jpg"),
    ("a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n", 4, "face line of a.jpg"),
    ("readme\n", 1, "expected an image path"),
])
def test_a_malformed_annotation_names_file_and_line(tmp_path, text, line, message):
  path = tmp_path / "gt.txt"
  path.write_text(text)
  with pytest.raises(DataError, match=f"gt.txt:{line}: .*{message}"):
    parse_annotations(path)


def test_missing_layout_is_one_line(tmp_path):
  with pytest.raises(DataError, match=r"wider_face_val_bbx_gt\.txt: missing .*README"):
    WiderFace(tmp_path)
  with pytest.raises(DataError, match="splits train, val"):
    WiderFace(tmp_path, split="test")
