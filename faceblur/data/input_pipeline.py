"""The grain input pipeline: deterministic, sharded per process, resumable by step.

    source -> this process's shard -> shuffle (seeded, reshuffled every epoch) -> repeat
           -> random_map(transform) -> batch

Everything up to the batch is a `grain.MapDataset`, i.e. random access: batch k is a pure
function of (seed, k, process), so resuming at step s is `iterate(dataset, start_step=s)`,
with no iterator state to checkpoint. The transform gets a `np.random.Generator` that grain
derives from (seed, element index), so augmentation is reproducible and differs per epoch.
"""

import dataclasses
import os
from collections.abc import Callable, Iterator
from typing import Any

import grain
import jax
import numpy as np
from absl import flags

from faceblur.data import augment
from faceblur.errors import ConfigError, DataError
from faceblur.images import to_float

Record = dict[str, Any]
Transform = Callable[[Record, np.random.Generator], Record]


def _map_seed(seed: int, process_index: int) -> int:
  """Each process augments its shard with its own stream (else host 0 and host 1 would crop
  their i-th images identically)."""
  return int(np.random.SeedSequence([seed, process_index]).generate_state(1)[0])


def make_dataset(source, *, batch_size: int, transform: Transform, seed: int,
                 shuffle: bool = True, drop_remainder: bool = True,
                 num_epochs: int | None = None, process_index: int | None = None,
                 process_count: int | None = None) -> grain.MapDataset:
  """This process's batches of `transform`ed records (`num_epochs=None` repeats forever).

  `batch_size` is the per-process batch. With `num_epochs=None` batches run across epoch
  boundaries, so no example is dropped and every batch is full.
  """
  if batch_size < 1:
    raise ConfigError(f"batch_size={batch_size} must be positive")
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  dataset = grain.MapDataset.source(source)
  if process_count > 1:
    dataset = dataset[process_index::process_count]
  if len(dataset) == 0:
    raise DataError(f"{source!r}: no records for process {process_index} of {process_count}")
  if num_epochs is not None and drop_remainder and len(dataset) * num_epochs < batch_size:
    raise DataError(f"{source!r}: {len(dataset)} records x {num_epochs} epochs do not fill one "
                    f"batch of {batch_size}")
  if shuffle:
    dataset = dataset.shuffle(seed=seed)
  dataset = dataset.repeat(num_epochs)
  dataset = dataset.random_map(transform, seed=_map_seed(seed, process_index))
  return dataset.batch(batch_size, drop_remainder=drop_remainder)


def iterate(dataset: grain.MapDataset, *, start_step: int = 0, num_workers: int = 0,
            prefetch: int = 2) -> Iterator[Record]:
  """Batches `start_step`, `start_step + 1`, ... of `dataset`, prepared ahead of use.

  `num_workers=0` prepares up to max(`prefetch`, threads) batches ahead in background
  threads (one per core, at most 8: image decoding and numpy release the GIL);
  `num_workers>0` uses that many processes instead, for pipelines whose Python work would
  starve the train step. `prefetch=0` with no workers runs inline (for debugging). Either way
  the order, hence the result, is the same.
  """
  dataset = dataset[start_step:]
  if num_workers > 0:
    if not flags.FLAGS.is_parsed():  # grain's workers read absl flags; outside main.py
      flags.FLAGS.mark_as_parsed()   # (tests, notebooks) take their defaults
    iter_dataset = dataset.to_iter_dataset(grain.ReadOptions(num_threads=0,
                                                             prefetch_buffer_size=0))
    iter_dataset = iter_dataset.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=num_workers, per_worker_buffer_size=max(1, prefetch)))
  else:
    num_threads = min(8, os.cpu_count() or 1) if prefetch > 0 else 0
    iter_dataset = dataset.to_iter_dataset(grain.ReadOptions(
        num_threads=num_threads, prefetch_buffer_size=max(prefetch, num_threads)))
  return _closing(iter(iter_dataset), copy=num_workers > 0)


def _closing(iterator, *, copy: bool) -> Iterator[Record]:
  """Stops grain's threads/processes as soon as the consumer drops the iterator.

  Worker batches arrive in shared memory; `copy` turns them into ordinary arrays, which the
  consumer may keep for as long as it likes (a copy costs far less than a train step).
  """
  try:
    for batch in iterator:
      yield {key: np.array(value) for key, value in batch.items()} if copy else batch
  finally:
    iterator.close()


def _check_size(image: np.ndarray, crop_size: int, name: str) -> None:
  if min(image.shape[:2]) < crop_size:
    raise DataError(f"{name}: image {image.shape[0]}x{image.shape[1]} is smaller than "
                    f"crop_size={crop_size}")


# Transforms are dataclasses, not closures, so grain can pickle them into worker processes.


@dataclasses.dataclass(frozen=True)
class CycleGANTransform:
  """CycleGAN's `resize_and_crop`: a square bicubic resize to `load_size` (the aspect is not
  kept), a random `crop_size` crop and, with `random_flip`, a random horizontal flip (eval:
  centre crop, no flip). Bicubic, as torchvision's default there, keeps the sharp domain
  of a blur task as sharp as the resize allows. Record {'image'} -> float32 [0, 1]."""

  load_size: int
  crop_size: int
  train: bool = True
  random_flip: bool = True

  def __call__(self, record: Record, rng: np.random.Generator) -> Record:
    if self.crop_size > self.load_size:
      raise ConfigError(f"crop_size={self.crop_size} exceeds load_size={self.load_size}")
    image = augment.resize(record["image"], self.load_size, method="bicubic")
    if self.train:
      image = augment.random_crop(image, self.crop_size, rng)
      if self.random_flip:
        image = augment.random_flip(image, rng)
    else:
      image = augment.center_crop(image, self.crop_size)
    return {"image": to_float(image), "name": record["name"]}


@dataclasses.dataclass(frozen=True)
class PairedTransform:
  """SRN's preprocessing: the same random `crop_size` crop of both images (and, with
  `random_flip`, not the official code's default, the same random flip).

  Eval: a centre crop, or the whole pair when `crop_size` is None/0 (batch those one by one
  or at equal sizes). Record {'blurred', 'sharp'} -> float32 [0, 1].
  """

  crop_size: int | None
  train: bool = True
  random_flip: bool = False

  def __call__(self, record: Record, rng: np.random.Generator) -> Record:
    blurred, sharp = record["blurred"], record["sharp"]
    if self.crop_size:
      _check_size(blurred, self.crop_size, record.get("name", "pair"))
      if self.train:
        blurred, sharp = augment.random_crop_pair(blurred, sharp, self.crop_size, rng)
      else:
        blurred = augment.center_crop(blurred, self.crop_size)
        sharp = augment.center_crop(sharp, self.crop_size)
    if self.train and self.random_flip:
      blurred, sharp = augment.random_flip_pair(blurred, sharp, rng)
    return {"blurred": to_float(blurred), "sharp": to_float(sharp), "name": record["name"]}


def cyclegan_transform(load_size: int, crop_size: int, train: bool = True,
                       random_flip: bool = True) -> CycleGANTransform:
  return CycleGANTransform(load_size, crop_size, train, random_flip)


def paired_transform(crop_size: int | None, train: bool = True,
                     random_flip: bool = False) -> PairedTransform:
  return PairedTransform(crop_size, train, random_flip)
