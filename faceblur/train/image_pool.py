"""The history of past fakes each CycleGAN discriminator sees (Shrivastava et al. 2017).

A pure, jittable version of the official CycleGAN `ImagePool`, so that it runs inside the jitted
train step and is saved with the train state. For each image of the batch, in order:

* while the pool holds fewer than `capacity` images, the new image is stored and returned;
* once full, with probability 0.5 a uniformly chosen stored image is returned and the new
  image takes its slot; otherwise the new image itself is returned and the pool is unchanged.

A pool of capacity 0 returns the fakes unchanged.
"""

import jax
import jax.numpy as jnp
from flax import struct


class ImagePool(struct.PyTreeNode):
  """`images[:num_stored]` are the stored fakes; the remaining slots are zeros."""

  images: jax.Array  # (capacity, H, W, C)
  num_stored: jax.Array  # int32 scalar

  @property
  def capacity(self) -> int:
    return self.images.shape[0]


def create_image_pool(capacity: int, image_shape: tuple[int, int, int],
                      dtype=jnp.float32) -> ImagePool:
  """An empty pool for `capacity` images of shape `image_shape` (H, W, C)."""
  if capacity < 0:
    raise ValueError(f"image pool capacity must be >= 0, got {capacity}")
  return ImagePool(images=jnp.zeros((capacity, *image_shape), dtype),
                   num_stored=jnp.zeros((), jnp.int32))


def query_image_pool(pool: ImagePool, fakes: jax.Array,
                     key: jax.Array) -> tuple[ImagePool, jax.Array]:
  """Offers a batch of fakes (N, H, W, C) to the pool; returns the new pool and N images.

  The returned images have the dtype of `fakes`; they are stored in the pool's dtype.
  """
  capacity = pool.capacity
  if capacity == 0:
    return pool, fakes
  if fakes.shape[1:] != pool.images.shape[1:]:
    raise ValueError(f"fakes of shape {fakes.shape} do not fit a pool of images "
                     f"{pool.images.shape[1:]}")

  def offer(carry, inputs):
    images, num_stored = carry
    image, image_key = inputs
    image = image.astype(images.dtype)
    coin_key, slot_key = jax.random.split(image_key)
    full = num_stored >= capacity
    swap = full & (jax.random.uniform(coin_key) > 0.5)
    slot = jnp.where(full, jax.random.randint(slot_key, (), 0, capacity), num_stored)
    stored = jax.lax.dynamic_index_in_dim(images, slot, keepdims=False)
    returned = jnp.where(swap, stored, image)
    # Filling: write the image into the next free slot; full: write it only when swapping.
    written = jnp.where(full & ~swap, stored, image)
    images = jax.lax.dynamic_update_index_in_dim(images, written, slot, axis=0)
    return (images, num_stored + (~full).astype(jnp.int32)), returned

  keys = jax.random.split(key, fakes.shape[0])
  (images, num_stored), returned = jax.lax.scan(offer, (pool.images, pool.num_stored),
                                                (fakes, keys))
  return pool.replace(images=images, num_stored=num_stored), returned.astype(fakes.dtype)
