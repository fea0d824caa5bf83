"""The jittable image pool behaves as the official CycleGAN ImagePool."""

import jax
import jax.numpy as jnp
import numpy as np

from faceblur.train.image_pool import ImagePool, create_image_pool, query_image_pool

SHAPE = (2, 2, 1)


def _images(ids):
  """Images whose every pixel is their id, so a returned image tells where it came from."""
  return jnp.broadcast_to(jnp.asarray(ids, jnp.float32)[:, None, None, None], (len(ids), *SHAPE))


def _ids(images):
  images = np.asarray(images)
  ids = images[:, 0, 0, 0]
  assert (images == ids[:, None, None, None]).all()
  return ids.astype(int).tolist()


def test_create_gives_an_empty_pool_pytree():
  pool = create_image_pool(5, SHAPE)
  assert isinstance(pool, ImagePool)
  assert pool.images.shape == (5, *SHAPE) and pool.images.dtype == jnp.float32
  assert int(pool.num_stored) == 0 and pool.num_stored.dtype == jnp.int32
  assert len(jax.tree.leaves(pool)) == 2


def test_filling_phase_stores_and_returns_the_inputs():
  pool = create_image_pool(5, SHAPE)
  pool, returned = query_image_pool(pool, _images([1, 2, 3]), jax.random.key(0))
  assert _ids(returned) == [1, 2, 3] and int(pool.num_stored) == 3
  assert _ids(pool.images) == [1, 2, 3, 0, 0]
  # The batch that fills the pool: the first two images are stored, then the pool is full
  # and the third is handled by the coin (returned itself, or swapped for a stored one).
  pool, returned = query_image_pool(pool, _images([4, 5, 6]), jax.random.key(1))
  assert _ids(returned)[:2] == [4, 5] and int(pool.num_stored) == 5
  stored = _ids(pool.images)
  if _ids(returned)[2] == 6:
    assert stored == [1, 2, 3, 4, 5]
  else:
    assert _ids(returned)[2] in [1, 2, 3, 4, 5] and sorted(stored + _ids(returned)[2:]) == [
        1, 2, 3, 4, 5, 6]


def test_full_pool_swaps_about_half_and_returns_only_new_or_stored_images():
  capacity, batch, steps = 10, 4, 250
  query = jax.jit(query_image_pool)
  # Fill the pool with ids 1..10 (two batches of five).
  pool = create_image_pool(capacity, SHAPE)
  pool, _ = query(pool, _images(list(range(1, 6))), jax.random.key(0))
  pool, _ = query(pool, _images(list(range(6, 11))), jax.random.key(1))
  assert int(pool.num_stored) == capacity and _ids(pool.images) == list(range(1, 11))

  next_id, swapped, slots_hit = 11, 0, set()
  for step in range(steps):
    before = _ids(pool.images)
    new = list(range(next_id, next_id + batch))
    next_id += batch
    pool, returned = query(pool, _images(new), jax.random.key(100 + step))
    after = _ids(pool.images)
    assert int(pool.num_stored) == capacity
    # Replay the official sequential semantics from what came back.
    contents = list(before)
    for image, out in zip(new, _ids(returned), strict=True):
      if out == image:
        continue
      assert out in contents, "a returned image is neither the new one nor a stored one"
      slot = contents.index(out)
      contents[slot] = image
      slots_hit.add(slot)
      swapped += 1
    assert contents == after
  fraction = swapped / (steps * batch)
  assert 0.44 < fraction < 0.56, fraction  # 1000 fair coins: sd 0.016
  assert slots_hit == set(range(capacity))  # swaps land on random slots


def test_a_swapped_in_image_can_come_back_within_the_same_batch():
  # Sequential semantics: the pool the second image sees already holds the first one.
  pool = create_image_pool(1, SHAPE)
  pool, _ = query_image_pool(pool, _images([1]), jax.random.key(0))
  query = jax.jit(query_image_pool)
  seen_chain = False
  for seed in range(40):
    _, returned = query(pool, _images([2, 3]), jax.random.key(seed))
    ids = _ids(returned)
    assert ids[0] in (1, 2) and ids[1] in (3, 1 if ids[0] == 2 else 2)
    seen_chain |= ids == [1, 2]
  assert seen_chain


def test_query_is_jittable_and_keeps_the_fakes_dtype():
  pool = create_image_pool(3, SHAPE)
  fakes = _images([1, 2]).astype(jnp.bfloat16)
  new_pool, returned = jax.jit(query_image_pool)(pool, fakes, jax.random.key(0))
  assert returned.dtype == jnp.bfloat16 and new_pool.images.dtype == jnp.float32
  assert _ids(new_pool.images) == [1, 2, 0]
  # Shapes and dtypes of the pool are unchanged, so it can live in a checkpointed train state.
  assert jax.tree.map(lambda a: (a.shape, a.dtype), new_pool) == jax.tree.map(
      lambda a: (a.shape, a.dtype), pool)


def test_capacity_zero_returns_the_fakes_unchanged():
  pool = create_image_pool(0, SHAPE)
  fakes = _images([7, 8])
  for query in (query_image_pool, jax.jit(query_image_pool)):
    new_pool, returned = query(pool, fakes, jax.random.key(0))
    np.testing.assert_array_equal(returned, fakes)
    assert new_pool.images.shape == (0, *SHAPE) and int(new_pool.num_stored) == 0
