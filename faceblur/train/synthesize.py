"""Synthesis: label data with the learned blur.

The stage-1 generator G (sharp -> blurred) runs over a large set of sharp faces; each face
and its G-blurred version make one (blurred, sharp) training pair for stage 2. Pairs are
written as `<output>/<split>/{blurred,sharp}/<index>.png` (the paired-folder layout, which
any folder-reading tool understands), split 80/20 by a seeded permutation as in the paper.

Resumable: each file is written atomically, the sharp image before the blurred one, so a
pair is complete exactly when its blurred file exists; a re-run skips complete pairs and
redoes the rest, never duplicating or losing one. Several hosts split the indices, each
generator on its own first device, and the output is marked complete once all are done. An
unreadable source image gets no pair and one warning (a substitute would put the same face
in both splits). PNGs are encoded by a pool of threads (Pillow's encoder releases the GIL)
while the generator blurs the next batch: on a GPU, writing two PNGs per pair one after the
other (10-15 ms each) would otherwise take far longer than the generator.
"""

import collections
import json
import logging
import pathlib
from concurrent.futures import Future, ThreadPoolExecutor

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from faceblur.data import augment, factory
from faceblur.data.image_io import save_image
from faceblur.data.sources import train_test_split
from faceblur.errors import ConfigError, DataError, ImageReadError, StorageError
from faceblur.images import to_float
from faceblur.ops import compilation
from faceblur.storage import os_reason
from faceblur.train import cyclegan, partitioning
from faceblur.train.loop import interruptible
from faceblur.train.trained import load_trained, release_dir

DONE_FILE = "synthesis.json"


def pair_paths(output: pathlib.Path, split: str, index: int) -> tuple[pathlib.Path, pathlib.Path]:
  name = f"{index:07d}.png"
  return output / split / "blurred" / name, output / split / "sharp" / name


def prepare_sharp(image: np.ndarray, size: int) -> np.ndarray:
  """Centre square crop, resized to `size`: faces keep their aspect, sides divide by 4."""
  side = min(image.shape[:2])
  return to_float(augment.resize(augment.center_crop(image, side), size))


def synthesize(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> pathlib.Path:
  """Writes the pairs; returns the output folder."""
  workdir = pathlib.Path(workdir)
  output = pathlib.Path(config.output) if config.output else workdir / "pairs"
  if config.image_size % 4:
    raise ConfigError(f"image_size={config.image_size} must be a multiple of 4")
  step = None
  use_ema = config.get("use_ema", False) or None  # None: a release's default weights
  if config.get("select_checkpoint", True) and release_dir(config.cyclegan_workdir) is None:
    step = cyclegan.read_selected_step(config.cyclegan_workdir)
    if step is not None:
      use_ema = use_ema or cyclegan.read_selected_weights(config.cyclegan_workdir) == "ema"
      print(f"Synthesis with stage 1's step {step}{' (EMA weights)' if use_ema else ''}, "
            f"selected by blur realism on validation photos "
            f"({config.cyclegan_workdir}/{cyclegan.SELECTION_FILE})", flush=True)
  trained = load_trained(config.cyclegan_workdir, "cyclegan", step=step, use_ema=use_ema)
  generator, params = trained.networks["g"], trained.params["g"]  # G: sharp -> blurred
  random_g = cyclegan.code_dim(trained.config) > 0 or \
      trained.config.model.get("generator", "resnet") != "resnet"
  pair_key = jax.random.key(config.seed)

  @compilation.jit
  def blur(p, sharp, indices):
    if not random_g:
      return generator.apply(p, sharp).astype(jnp.float32)
    # Each pair's z and noise depend only on its index: a resumed synthesis writes the same.
    keys = jax.vmap(lambda index: jax.random.fold_in(pair_key, index))(indices)
    codes, _ = jax.vmap(lambda key: cyclegan.generator_randomness(trained.config, key, 1))(keys)
    noise_keys = jax.vmap(lambda key: jax.random.fold_in(key, 1))(keys)
    return generator.apply(p, sharp, None if codes is None else codes[:, 0],
                           noise_keys).astype(jnp.float32)

  source = factory.make_source(config.source)
  count = len(source) if config.max_images <= 0 else min(config.max_images, len(source))
  train_indices, test_indices = train_test_split(
      count, test_fraction=config.test_fraction, seed=config.seed)
  split_of = {int(i): "train" for i in train_indices} | {int(i): "test" for i in test_indices}

  mine = [i for i in range(count) if i % jax.process_count() == jax.process_index()]
  todo = [i for i in mine if not pair_paths(output, split_of[i], i)[0].exists()]
  batch_size = config.batch_size
  unreadable = 0
  # SIGINT/SIGTERM: the pairs of the batches in flight are finished, then it stops (resumable).
  with (interruptible() as interruption,
        tqdm(total=len(mine), initial=len(mine) - len(todo), desc="synthesis", unit="pair",
             disable=jax.process_index() != 0) as progress,
        ThreadPoolExecutor(max(1, config.write_workers)) as writers):
    pending: collections.deque[Future] = collections.deque()

    def finish_writes(keep: int) -> None:
      # Oldest first, so a failed write surfaces (as StorageError) before more are queued.
      while len(pending) > keep:
        pending.popleft().result()
        progress.update(1)

    for start in range(0, len(todo), batch_size):
      if interruption.requested:
        break
      indices, sharp = [], []
      for index in todo[start:start + batch_size]:
        try:
          sharp.append(prepare_sharp(source[index]["image"], config.image_size))
          indices.append(index)
        except ImageReadError as error:  # one bad file among thousands: no pair for it
          unreadable += 1
          logging.warning("skipped %s", error)
      progress.update(len(todo[start:start + batch_size]) - len(indices))
      if not indices:
        continue
      sharp = np.stack(sharp)
      padded = np.concatenate([sharp, np.repeat(sharp[-1:], batch_size - len(indices), 0)])
      padded_indices = np.asarray(indices + [indices[-1]] * (batch_size - len(indices)))
      blurred = np.asarray(blur(params, padded, padded_indices))[:len(indices)]
      for index, sharp_image, blurred_image in zip(indices, sharp, blurred, strict=True):
        pending.append(writers.submit(_write_pair, *pair_paths(output, split_of[index], index),
                                      sharp_image, blurred_image))
      finish_writes(keep=2 * batch_size)  # at most two batches of images held in memory
    finish_writes(keep=0)
  # Process 0 marks the output complete (and packs it) only once every host wrote its share.
  if not partitioning.every_process(not interruption.requested):
    done = sum(pair_paths(output, split_of[i], i)[0].exists() for i in mine)
    raise interruption.error(f"synthesis interrupted with {done} of {len(mine)} pairs done in "
                             f"{output}; run the same command to finish")
  if mine and unreadable == len(mine):
    raise DataError(f"{getattr(source, 'root', config.source.kind)}: none of its "
                    f"{len(mine)} images could be read (see the warnings)")

  if jax.process_index() == 0:
    summary = {"pairs": count, "train": len(train_indices), "test": len(test_indices),
               "image_size": config.image_size, "cyclegan_step": trained.step,
               "source": config.source.to_dict()}
    (output / DONE_FILE).write_text(json.dumps(summary, indent=2, default=str))
    if config.pack_tfds:
      from faceblur.data.tfds_pairs import build_pairs_dataset  # noqa: PLC0415

      build_pairs_dataset(output, output / "tfds")
  skipped = f"; {unreadable} unreadable image(s) skipped" if unreadable else ""
  print(f"Synthesised {count - unreadable} pairs in {output} ({len(train_indices)} train, "
        f"{len(test_indices)} test{skipped})", flush=True)
  return output


def _write_pair(blurred_path: pathlib.Path, sharp_path: pathlib.Path, sharp: np.ndarray,
                blurred: np.ndarray) -> None:
  """The sharp image first: a pair is complete exactly when its blurred file exists."""
  try:
    save_image(sharp_path, sharp)
    save_image(blurred_path, blurred)
  except OSError as error:
    raise StorageError(f"{blurred_path.parent}: cannot write pairs ({os_reason(error)}); "
                       "a re-run resumes") from None


def is_complete(output: pathlib.Path) -> bool:
  return (output / DONE_FILE).exists()
