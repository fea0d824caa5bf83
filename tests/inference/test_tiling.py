"""Tiled inference: fixed tile shapes, exact for identity, seamless for local operators."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceblur.errors import ConfigError
from faceblur.inference import tiling


def _image(height, width, seed=0):
  rng = np.random.default_rng(seed)
  # Smooth structure plus texture, like a photo: seams would show in both.
  y, x = np.mgrid[0:height, 0:width]
  base = 0.5 + 0.4 * np.sin(x / 7.0)[..., None] * np.cos(y / 11.0)[..., None] * [1, 0.5, -1]
  return (base + 0.1 * rng.random((height, width, 3))).astype(np.float32)


class ShapeRecorder:
  """Wraps a batch function and records every input shape it sees."""

  def __init__(self, fn):
    self.fn, self.shapes = fn, []

  def __call__(self, batch):
    self.shapes.append(batch.shape)
    return self.fn(batch)


@jax.jit
def _box_blur(batch):
  """5x5 box blur per channel with edge padding: a local operator of receptive radius 2."""
  padded = jnp.pad(batch, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="edge")
  channels = batch.shape[-1]
  kernel = jnp.full((5, 5, 1, channels), 1 / 25, batch.dtype)
  return jax.lax.conv_general_dilated(padded, kernel, (1, 1), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                      feature_group_count=channels,
                                      precision=jax.lax.Precision.HIGHEST)


def test_identity_returns_the_image_exactly_with_one_tile_shape():
  image = _image(300, 200)
  fn = ShapeRecorder(lambda batch: batch)
  out = tiling.tiled_apply(fn, image, tile_size=128, overlap=32, multiple=4, batch_size=2)
  assert out.dtype == np.float32 and out.shape == image.shape
  np.testing.assert_array_equal(out, image)
  assert len(set(fn.shapes)) == 1 and fn.shapes[0] == (2, 128, 128, 3)
  # 300 rows: starts 0, 96, 172; 200 columns: starts 0, 72; 6 tiles in 3 batches of 2.
  assert len(fn.shapes) == 3


def test_local_operator_matches_the_untiled_result_away_from_the_border():
  image = _image(300, 200, seed=1)
  fn = ShapeRecorder(_box_blur)
  tiled = tiling.tiled_apply(fn, image, tile_size=128, overlap=16, multiple=4)
  whole = np.asarray(_box_blur(image[None]))[0]
  assert set(fn.shapes) == {(1, 128, 128, 3)} and len(fn.shapes) == 6  # 3 rows x 2 columns
  # Edge padding at the image border is the same tiled or not; inside, the blend never uses a
  # pixel within overlap / 4 = 4 >= 2 of a tile's inner edge, so the whole image agrees.
  assert np.abs(tiled - whole)[2:-2, 2:-2].max() < 1e-3
  np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_without_the_margin_seams_would_show():
  # Sanity check of the test above: cutting tiles with no overlap leaves visible seams.
  image = _image(300, 200, seed=1)
  tiled = tiling.tiled_apply(_box_blur, image, tile_size=128, overlap=0)
  whole = np.asarray(_box_blur(image[None]))[0]
  assert np.abs(tiled - whole).max() > 1e-3


@pytest.mark.parametrize("height,width", [(101, 77), (77, 101), (129, 3), (1, 1)])
def test_odd_and_small_sizes_come_back_at_their_own_size(height, width):
  image = _image(height, width)
  fn = ShapeRecorder(lambda batch: batch * 2)
  out = tiling.tiled_apply(fn, image, tile_size=128, overlap=32, multiple=4)
  assert out.shape == image.shape
  np.testing.assert_allclose(out, image * 2, rtol=1e-6)
  assert len(set(fn.shapes)) == 1
  tile_h, tile_w = fn.shapes[0][1:3]
  assert tile_h % 4 == 0 and tile_w % 4 == 0 and tile_h <= 128 and tile_w <= 128


def test_small_image_is_one_tile_padded_to_the_multiple():
  image = _image(101, 77)
  fn = ShapeRecorder(_box_blur)
  out = tiling.tiled_apply(fn, image, tile_size=512, overlap=32, multiple=16)
  assert fn.shapes == [(1, 112, 80, 3)]
  # Edge padding to the multiple: the blur near the bottom/right border equals edge padding.
  np.testing.assert_allclose(out, np.asarray(_box_blur(image[None]))[0], atol=1e-5)


def test_function_output_shape_and_bad_settings_are_rejected():
  image = _image(64, 64)
  with pytest.raises(ValueError, match="preserve the shape"):
    tiling.tiled_apply(lambda batch: batch[:, ::2], image, tile_size=32, overlap=8)
  with pytest.raises(ConfigError, match="multiple of 4"):
    tiling.tiled_apply(lambda batch: batch, image, tile_size=30, overlap=8)
  with pytest.raises(ConfigError, match="overlap"):
    tiling.tiled_apply(lambda batch: batch, image, tile_size=32, overlap=20)


def test_blend_weights_are_smooth():
  # Output a constant per tile: the blended image must change gradually across an overlap.
  counter = iter(range(100))
  fn = lambda batch: np.full_like(batch, float(next(counter)))
  out = tiling.tiled_apply(fn, np.zeros((64, 200, 1), np.float32), tile_size=64, overlap=32)
  row = out[10, :, 0]
  assert np.abs(np.diff(row)).max() < 0.25  # tiles differ by 1; the fade spans 16 pixels
  assert row[0] == 0 and row[-1] == row.max()


def _computed_pixels(height, width, tile_h, tile_w, overlap, multiple=4):
  """What tiled_apply feeds the network, counted from the shapes it calls with."""
  fn = ShapeRecorder(lambda batch: batch)
  tiling.tiled_apply(fn, np.zeros((height, width, 1), np.float32), tile_size=(tile_h, tile_w),
                     overlap=overlap, multiple=multiple)
  return sum(int(np.prod(shape[:3])) for shape in fn.shapes)


def test_the_planned_tile_shape_is_the_cheapest_within_the_budget():
  """Against every tile shape tiled_apply accepts (sides multiples of 4, overlap at most half
  a side), counted by running it: the plan fits the budget and computes no more pixels."""
  rng = np.random.default_rng(0)
  for _ in range(12):
    height, width = (int(side) for side in rng.integers(20, 160, 2))
    overlap = int(rng.choice([0, 4, 8]))
    budget = int(rng.integers(400, 12000))
    smallest = max(4, -(-2 * overlap // 4) * 4)
    if budget < smallest * smallest:
      continue
    heights = range(smallest, -(-height // 4) * 4 + 1, 4)
    widths = range(smallest, -(-width // 4) * 4 + 1, 4)
    costs = [_computed_pixels(height, width, h, w, overlap)
             for h in heights for w in widths if h * w <= budget]
    tile_h, tile_w = tiling.plan_tile_shape(height, width, max_pixels=budget, overlap=overlap,
                                            multiple=4)
    assert tile_h * tile_w <= budget
    assert _computed_pixels(height, width, tile_h, tile_w, overlap) == min(costs), (
        height, width, overlap, budget)


def test_a_frame_within_the_budget_goes_through_whole_and_a_12_mp_photo_in_few_tiles():
  assert tiling.plan_tile_shape(720, 1280, max_pixels=2_000_000, overlap=32,
                                multiple=4) == (720, 1280)
  tile_h, tile_w = tiling.plan_tile_shape(3000, 4000, max_pixels=2_000_000, overlap=32,
                                          multiple=4)
  assert tile_h * tile_w <= 2_000_000
  planned = _computed_pixels(3000, 4000, tile_h, tile_w, 32)
  assert planned < 1.05 * 3000 * 4000  # 512 px tiles compute 1.37x the photo
  assert _computed_pixels(3000, 4000, 512, 512, 32) > 1.3 * 3000 * 4000
  with pytest.raises(ConfigError, match="budget"):
    tiling.plan_tile_shape(100, 100, max_pixels=1000, overlap=32, multiple=4)


def test_rectangular_tiles_reproduce_a_local_operator_and_the_identity():
  image = _image(150, 230)
  fn = ShapeRecorder(lambda batch: batch)
  np.testing.assert_array_equal(tiling.tiled_apply(fn, image, tile_size=(64, 96), overlap=16),
                                image)
  assert set(fn.shapes) == {(1, 64, 96, 3)}
  tiled = tiling.tiled_apply(_box_blur, image, tile_size=(64, 96), overlap=16)
  np.testing.assert_allclose(tiled, np.asarray(_box_blur(image[None]))[0], atol=1e-5)
