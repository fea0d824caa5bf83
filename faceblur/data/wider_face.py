"""WIDER FACE in its official layout: photos with annotated face boxes and a blur level each.

    <root>/WIDER_<split>/images/<event>/<file>.jpg
    <root>/wider_face_split/wider_face_<split>_bbx_gt.txt

The annotation file repeats: a line with the image's path under `images/`, a line with the
box count N, then N lines `x1 y1 w h blur expression illumination invalid occlusion pose`. An
image with N = 0 still has one line of zeros. blur is 0 clear, 1 normal, 2 heavy: the split
the paper's Table 2 is about, on real blurred faces. The set is licensed CC BY-NC-ND and does
not ship; the README says where to download it.
"""

import dataclasses
import os
import pathlib

from faceblur.data import image_io
from faceblur.errors import DataError

SPLITS = ("train", "val")
BLUR_LEVELS = {0: "clear", 1: "normal", 2: "heavy"}


@dataclasses.dataclass(frozen=True)
class FaceBox:
  """One annotated face; `box` is (x0, y0, x1, y1) in pixels, like `Detection.box`."""

  box: tuple[float, float, float, float]
  blur: int
  expression: int
  illumination: int
  invalid: bool
  occlusion: int
  pose: int

  @property
  def height(self) -> float:
    return self.box[3] - self.box[1]


def parse_annotations(path: pathlib.Path) -> list[tuple[str, list[FaceBox]]]:
  """(relative image path, its faces) for every image in a `wider_face_*_bbx_gt.txt`."""
  try:
    lines = path.read_text().splitlines()
  except OSError as error:
    raise DataError(f"{path}: cannot read ({os.strerror(error.errno or 0) or error})") from None
  images, position = [], 0

  def fail(message: str) -> DataError:
    return DataError(f"{path}:{position + 1}: {message}")

  while position < len(lines):
    name = lines[position].strip()
    if not name:  # a trailing blank line
      position += 1
      continue
    if not name.lower().endswith(image_io.IMAGE_EXTENSIONS):
      raise fail(f"expected an image path, got {name!r}")
    position += 1
    try:
      count = int(lines[position])
    except (IndexError, ValueError):
      raise fail(f"expected the number of faces of {name}") from None
    position += 1
    faces = []
    for _ in range(max(count, 1)):  # an image without faces has one line of zeros
      try:
        values = [int(float(v)) for v in lines[position].split()]
      except (IndexError, ValueError):
        raise fail(f"expected a face line of {name}") from None
      if len(values) != 10:
        raise fail(f"a face line has 10 numbers (x1 y1 w h blur expression illumination "
                   f"invalid occlusion pose), got {len(values)}")
      position += 1
      if count == 0:
        continue
      x, y, w, h, blur, expression, illumination, invalid, occlusion, pose = values
      faces.append(FaceBox(box=(float(x), float(y), float(x + w), float(y + h)), blur=blur,
                           expression=expression, illumination=illumination,
                           invalid=bool(invalid), occlusion=occlusion, pose=pose))
    images.append((name, faces))
  return images


class WiderFace:
  """A WIDER FACE split: records {'image': uint8 HxWx3, 'name': str, 'faces': [FaceBox]}."""

  def __init__(self, root: str | os.PathLike, split: str = "val"):
    if split not in SPLITS:
      raise DataError(f"WIDER FACE has the splits {', '.join(SPLITS)}; got {split!r}")
    self.root = pathlib.Path(root).expanduser()
    annotations = self.root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"
    self.images_dir = self.root / f"WIDER_{split}" / "images"
    for needed in (annotations, self.images_dir):
      if not needed.exists():
        raise DataError(f"{needed}: missing (WIDER FACE's layout: WIDER_{split}/images/ and "
                        f"wider_face_split/; see the README)")
    self.entries = parse_annotations(annotations)
    if not self.entries:
      raise DataError(f"{annotations}: lists no images")

  def __len__(self) -> int:
    return len(self.entries)

  def __getitem__(self, index: int) -> dict:
    name, faces = self.entries[index]
    return {"image": image_io.load_image(self.images_dir / name), "name": name, "faces": faces}

  def __repr__(self) -> str:
    return f"WiderFace({str(self.root)!r}, {len(self)} images)"
