"""Image grids for training samples and evaluation figures (PIL only, no display needed)."""

import pathlib
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from faceblur.data.image_io import save_image
from faceblur.images import to_uint8

Box = tuple[float, float, float, float]

_TITLE_HEIGHT = 14
_PAD = 2


def make_grid(rows: Sequence[Sequence[np.ndarray]], *, column_titles: Sequence[str] = (),
              boxes: Sequence[Sequence[Sequence[Box]]] | None = None,
              cell_size: int | None = None) -> np.ndarray:
  """Lays out `rows` of HxWx3 images (float [0, 1] or uint8) as one uint8 image.

  `boxes[r][c]` lists (x0, y0, x1, y1) boxes drawn on cell (r, c), e.g. face detections.
  Cells are resized to `cell_size` (default: the largest image side) keeping aspect.
  """
  cells = [[Image.fromarray(to_uint8(image) if image.dtype != np.uint8 else image)
            for image in row] for row in rows]
  size = cell_size or max(max(cell.size) for row in cells for cell in row)
  num_cols = max(len(row) for row in cells)
  top = _TITLE_HEIGHT if column_titles else 0
  canvas = Image.new("RGB", (num_cols * (size + _PAD) + _PAD,
                             top + len(cells) * (size + _PAD) + _PAD), "white")
  draw = ImageDraw.Draw(canvas)
  for col, title in enumerate(column_titles):
    draw.text((_PAD + col * (size + _PAD) + 2, 1), title, fill="black")
  for r, row in enumerate(cells):
    for c, cell in enumerate(row):
      scale = size / max(cell.size)
      shown = cell.resize((max(1, round(cell.width * scale)), max(1, round(cell.height * scale))),
                          Image.Resampling.BILINEAR)
      x0, y0 = _PAD + c * (size + _PAD), top + _PAD + r * (size + _PAD)
      canvas.paste(shown, (x0, y0))
      for box in (boxes[r][c] if boxes is not None else ()):
        bx0, by0, bx1, by1 = (v * scale for v in box)
        draw.rectangle([x0 + bx0, y0 + by0, x0 + bx1, y0 + by1], outline=(0, 255, 0), width=2)
  return np.asarray(canvas)


def save_grid(path: str | pathlib.Path, rows: Sequence[Sequence[np.ndarray]],
              **kwargs) -> np.ndarray:
  grid = make_grid(rows, **kwargs)
  save_image(path, grid)
  return grid
