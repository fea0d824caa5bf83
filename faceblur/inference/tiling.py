"""Bounded-memory inference on images of any size: overlapping tiles of one shape per image.

`tiled_apply(fn, image)` cuts an (H, W, C) image into overlapping tiles, runs `fn` on batches
of them and blends the results back into an (H, W, C) image:

* Every call of `fn` gets the same shape (batch_size, tile_h, tile_w, C), so a jitted `fn`
  compiles once per image size. Along an axis longer than its tile side the tile starts every
  `tile - overlap` pixels and the last one is shifted inward to end at the border. Along an
  axis no longer than its tile side a single tile covers it, padded (`edge` by default) to the
  next multiple of `multiple`. A short last batch is filled up with copies of its last tile.
* `plan_tile_shape` chooses the tile shape from a pixel budget: the whole image in one piece
  when it fits, else the shape of at most that many pixels that computes the fewest pixels in
  all (every extra one is overlap or padding).
* Where two tiles overlap, the outer quarter of the overlap next to each tile's inner edge is
  ignored (that is where a convolutional network sees padding instead of the neighbouring
  pixels) and the middle half is cross-faded with a raised-cosine ramp; tile sides on the
  image border are weighted fully. Outputs of a local operator whose receptive radius is at most
  overlap / 4 are reproduced up to float rounding; for deep networks the fade hides the seams.
* Memory beyond the output buffers (float64 sums of weighted outputs and weights, so that an
  identity `fn` gives back the image bit for bit) is O(batch_size x tile).
"""

from collections.abc import Callable

import numpy as np

from faceblur.errors import ConfigError

PAD_MODES = ("edge", "reflect")


def _round_up(value: int, multiple: int) -> int:
  return -(-value // multiple) * multiple


def _starts(length: int, tile: int, stride: int) -> list[int]:
  """Tile offsets along an axis of `length` >= `tile`: every `stride`, the last one at the end."""
  starts = list(range(0, length - tile, stride))
  starts.append(length - tile)
  return starts


def _ramp_window(tile: int, overlap: int, fade_start: bool, fade_end: bool) -> np.ndarray:
  """1-D weights of a tile: 0 over the first overlap/4 pixels of a faded side, then a
  raised-cosine rise over the next overlap/2 (rounded so the two parts fill the overlap)."""
  window = np.ones(tile, np.float64)
  if overlap == 0:
    return window
  margin = overlap // 4
  ramp_length = overlap - 2 * margin
  ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp_length) + 0.5) / ramp_length)
  rise = np.concatenate([np.zeros(margin), ramp])
  if fade_start:
    window[:len(rise)] = rise
  if fade_end:
    window[tile - len(rise):] = rise[::-1]
  return window


def _axis_plan(length: int, tile_size: int, overlap: int,
               multiple: int) -> tuple[int, list[int], list[np.ndarray]]:
  """(tile length, tile offsets, per-tile 1-D window) along one axis."""
  if length <= tile_size:
    return _round_up(length, multiple), [0], [np.ones(_round_up(length, multiple))]
  starts = _starts(length, tile_size, tile_size - overlap)
  windows = [_ramp_window(tile_size, overlap, i > 0, i < len(starts) - 1)
             for i in range(len(starts))]
  return tile_size, starts, windows


def _tile_count(length: int, tile: int, overlap: int) -> int:
  """len(_starts(length, tile, tile - overlap)), or 1 where one tile spans the axis."""
  return 1 if length <= tile else -(-(length - tile) // (tile - overlap)) + 1


def _tiles_along(length: int, tiles: int, overlap: int, multiple: int) -> int | None:
  """The tile side that covers `length` in `tiles` overlapping tiles, or None if there is
  none (the tiles would be shorter than `tiled_apply` allows, or one tile would do)."""
  if tiles == 1:
    return _round_up(length, multiple)
  side = _round_up(-(-(length + (tiles - 1) * overlap) // tiles), multiple)
  if side >= length or side < max(multiple, 2 * overlap):
    return None
  return side


def plan_tile_shape(height: int, width: int, *, max_pixels: int, overlap: int,
                    multiple: int) -> tuple[int, int]:
  """(tile_h, tile_w) of at most `max_pixels` pixels with which `tiled_apply` computes the
  fewest pixels for an `height` x `width` image: the whole image (padded to `multiple`) when
  it fits. A budget smaller than one tile of `max(multiple, 2 * overlap)` is a ConfigError."""
  smallest = _round_up(max(multiple, 2 * overlap), multiple)
  if max_pixels < smallest * smallest:
    raise ConfigError(f"a tile budget of {max_pixels} pixels is below the smallest tile "
                      f"({smallest}x{smallest} for overlap {overlap})")
  best: tuple[int, int, int] | None = None  # (computed pixels, tile_h, tile_w)
  for rows in range(1, height // max(1, smallest - overlap) + 2):
    tile_h = _tiles_along(height, rows, overlap, multiple)
    if tile_h is None:
      continue
    widest = max_pixels // tile_h
    if widest < smallest:
      continue
    # The fewest columns that can fit `widest`, and a few more (rounding to `multiple` can
    # make the next count cheaper); beyond those, more columns only add overlap.
    fewest = 1 if _round_up(width, multiple) <= widest else max(
        2, -(-(width - overlap) // max(1, widest - overlap)))
    for cols in range(fewest, fewest + 4):
      tile_w = _tiles_along(width, cols, overlap, multiple)
      if tile_w is None or tile_h * tile_w > max_pixels:
        continue
      computed = (_tile_count(height, tile_h, overlap) * tile_h
                  * _tile_count(width, tile_w, overlap) * tile_w)
      if best is None or computed < best[0]:
        best = (computed, tile_h, tile_w)
  if best is None:  # a long thin image: square tiles of the smallest side do
    return smallest, smallest
  return best[1], best[2]


def tiled_apply(fn: Callable[[np.ndarray], np.ndarray], image, *,
                tile_size: int | tuple[int, int] = 512, overlap: int = 32, multiple: int = 4,
                batch_size: int = 1, pad_mode: str = "edge") -> np.ndarray:
  """Applies a shape-preserving `fn` (N, th, tw, C) -> (N, th, tw, C) to an (H, W, C) image
  tile by tile; returns the (H, W, C) float32 result. `tile_size` is a square side or
  (tile_h, tile_w). See the module docstring."""
  image = np.asarray(image, np.float32)
  if image.ndim != 3:
    raise ValueError(f"tiled_apply expects one HWC image, got shape {image.shape}")
  if multiple < 1:
    raise ConfigError(f"the side multiple must be >= 1, got {multiple}")
  sides = (tile_size, tile_size) if isinstance(tile_size, int) else tuple(tile_size)
  for side, length in zip(sides, image.shape[:2], strict=True):
    if side < multiple or side % multiple:
      raise ConfigError(f"tile_size {side} must be a positive multiple of {multiple}")
    # (An axis that one tile spans has no overlap to fit.)
    if overlap < 0 or (length > side and 2 * overlap > side):
      raise ConfigError(f"tile overlap {overlap} must be between 0 and half the tile size "
                        f"({side // 2})")
  if batch_size < 1:
    raise ConfigError(f"tile batch_size must be >= 1, got {batch_size}")
  if pad_mode not in PAD_MODES:
    raise ConfigError(f"padding mode must be one of {PAD_MODES}, got {pad_mode!r}")

  height, width, channels = image.shape
  tile_h, rows, row_windows = _axis_plan(height, sides[0], overlap, multiple)
  tile_w, cols, col_windows = _axis_plan(width, sides[1], overlap, multiple)
  tiles = [(top, left, row_windows[i], col_windows[j])
           for i, top in enumerate(rows) for j, left in enumerate(cols)]

  def cut(top: int, left: int) -> np.ndarray:
    tile = image[top:top + tile_h, left:left + tile_w]
    pad_h, pad_w = tile_h - tile.shape[0], tile_w - tile.shape[1]
    if pad_h or pad_w:  # only along an axis shorter than one tile, which it then spans
      tile = np.pad(tile, ((0, pad_h), (0, pad_w), (0, 0)), mode=pad_mode)
    return tile

  def run(batch: list[np.ndarray]) -> np.ndarray:
    batch += [batch[-1]] * (batch_size - len(batch))
    outputs = np.asarray(fn(np.stack(batch)))
    if outputs.shape != (batch_size, tile_h, tile_w, channels):
      raise ValueError(f"the tiled function returned shape {outputs.shape} for tiles of shape "
                       f"{(batch_size, tile_h, tile_w, channels)}; it must preserve the shape")
    return outputs

  if len(tiles) == 1:  # the whole image in one piece: nothing to blend
    return np.array(run([cut(0, 0)])[0, :height, :width], np.float32)

  weighted_sum = np.zeros((height, width, channels), np.float64)
  weight_sum = np.zeros((height, width, 1), np.float64)
  for begin in range(0, len(tiles), batch_size):
    group = tiles[begin:begin + batch_size]
    outputs = run([cut(top, left) for top, left, _, _ in group])
    for output, (top, left, row_window, col_window) in zip(outputs, group, strict=False):
      h, w = min(tile_h, height - top), min(tile_w, width - left)
      weights = np.outer(row_window[:h], col_window[:w])[..., None]
      weighted_sum[top:top + h, left:left + w] += weights * output[:h, :w]
      weight_sum[top:top + h, left:left + w] += weights
  return (weighted_sum / weight_sum).astype(np.float32)
