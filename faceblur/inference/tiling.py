"""Bounded-memory inference on images of any size: overlapping tiles of one fixed shape.

`tiled_apply(fn, image)` cuts an (H, W, C) image into overlapping tiles, runs `fn` on batches
of them and blends the results back into an (H, W, C) image:

* Every call of `fn` gets the same shape (batch_size, tile_h, tile_w, C), so a jitted `fn`
  compiles once per image size. Along an axis longer than `tile_size` the tile is `tile_size`
  long, tiles start every `tile_size - overlap` pixels and the last one is shifted inward to end
  at the border. Along an axis no longer than `tile_size` a single tile covers it, padded
  (`edge` by default) to the next multiple of `multiple`. A short last batch is filled up with
  copies of its last tile.
* Where two tiles overlap, the outer quarter of the overlap next to each tile's inner edge is
  ignored (that is where a convolutional network sees padding instead of the neighbouring
  pixels) and the middle half is cross-faded with a raised-cosine ramp; tile sides on the
  image border are weighted fully. Outputs of a local operator whose receptive radius is at most
  overlap / 4 are reproduced up to float rounding; for deep networks the fade hides the seams.
* Memory beyond the output buffers (float64 sums of weighted outputs and weights, so that an
  identity `fn` gives back the image bit for bit) is O(batch_size x tile).
"""

from collections.abc import Callable, Iterator

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


def tiled_apply(fn: Callable[[np.ndarray], np.ndarray], image, *, tile_size: int = 512,
                overlap: int = 32, multiple: int = 4, batch_size: int = 1,
                pad_mode: str = "edge") -> np.ndarray:
  """Applies a shape-preserving `fn` (N, th, tw, C) -> (N, th, tw, C) to an (H, W, C) image
  tile by tile; returns the (H, W, C) float32 result. See the module docstring."""
  image = np.asarray(image, np.float32)
  if image.ndim != 3:
    raise ValueError(f"tiled_apply expects one HWC image, got shape {image.shape}")
  if multiple < 1:
    raise ConfigError(f"the side multiple must be >= 1, got {multiple}")
  if tile_size < multiple or tile_size % multiple:
    raise ConfigError(f"tile_size {tile_size} must be a positive multiple of {multiple}")
  if overlap < 0 or 2 * overlap > tile_size:
    raise ConfigError(f"tile overlap {overlap} must be between 0 and half the tile size "
                      f"({tile_size // 2})")
  if batch_size < 1:
    raise ConfigError(f"tile batch_size must be >= 1, got {batch_size}")
  if pad_mode not in PAD_MODES:
    raise ConfigError(f"padding mode must be one of {PAD_MODES}, got {pad_mode!r}")

  height, width, channels = image.shape
  tile_h, rows, row_windows = _axis_plan(height, tile_size, overlap, multiple)
  tile_w, cols, col_windows = _axis_plan(width, tile_size, overlap, multiple)
  tiles = [(top, left, row_windows[i], col_windows[j])
           for i, top in enumerate(rows) for j, left in enumerate(cols)]

  weighted_sum = np.zeros((height, width, channels), np.float64)
  weight_sum = np.zeros((height, width, 1), np.float64)

  def cut(top: int, left: int) -> np.ndarray:
    tile = image[top:top + tile_h, left:left + tile_w]
    pad_h, pad_w = tile_h - tile.shape[0], tile_w - tile.shape[1]
    if pad_h or pad_w:  # only along an axis shorter than one tile, which it then spans
      tile = np.pad(tile, ((0, pad_h), (0, pad_w), (0, 0)), mode=pad_mode)
    return tile

  def batches() -> Iterator[list]:
    for begin in range(0, len(tiles), batch_size):
      yield tiles[begin:begin + batch_size]

  for group in batches():
    batch = [cut(top, left) for top, left, _, _ in group]
    batch += [batch[-1]] * (batch_size - len(batch))
    outputs = np.asarray(fn(np.stack(batch)))
    if outputs.shape != (batch_size, tile_h, tile_w, channels):
      raise ValueError(f"the tiled function returned shape {outputs.shape} for tiles of shape "
                       f"{(batch_size, tile_h, tile_w, channels)}; it must preserve the shape")
    for output, (top, left, row_window, col_window) in zip(outputs, group, strict=False):
      h, w = min(tile_h, height - top), min(tile_w, width - left)
      weights = np.outer(row_window[:h], col_window[:w])[..., None]
      weighted_sum[top:top + h, left:left + w] += weights * output[:h, :w]
      weight_sum[top:top + h, left:left + w] += weights
  return (weighted_sum / weight_sum).astype(np.float32)
