"""Stage 2: learn to deblur with SRN-DeblurNet (Tao et al. 2018) on (blurred, sharp) pairs.

The network is applied coarse to fine with shared weights and supervised at every scale by
the multi-scale Euclidean loss (eq. 3 of the paper). Adam with polynomial decay as the
official code; `optimizer.lstm_grad_clip_norm > 0` clips the ConvLSTM's gradients to a global
norm (an option of the official code that its training leaves off).
"""

import functools
import pathlib
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from faceblur import losses
from faceblur import metrics as quality
from faceblur.data import factory
from faceblur.data import input_pipeline as data_pipeline
from faceblur.data.sources import SkipBadRecords
from faceblur.models import SRNDeblurNet
from faceblur.ops import compilation
from faceblur.train import loop, release
from faceblur.train import stage as stage_lib
from faceblur.train import state as state_lib
from faceblur.train.metric_writers import MetricWriter

NETWORK = "deblurrer"


class SRNState(state_lib.TrainState):
  """Stage 2's train state: the deblurrer's parameters and its optimiser's state (and their
  EMA with `ema_decay > 0`)."""

  NETWORKS: ClassVar[tuple[str, ...]] = (NETWORK,)

  deblurrer: nnx.State
  opt_state: Any


def module_factory(config: ml_collections.ConfigDict):
  model = config.model
  return functools.partial(
      SRNDeblurNet, num_scales=model.num_scales, scale_ratio=model.scale_ratio,
      use_lstm=model.use_lstm, channels=model.channels, features=model.features,
      residual=model.get("residual", False),
      dtype=state_lib.compute_dtype(config))


def make_networks(config: ml_collections.ConfigDict) -> dict[str, state_lib.Network]:
  make = module_factory(config)
  return {NETWORK: state_lib.network_of(lambda rngs: make(rngs=rngs))}


def _is_lstm(path) -> bool:
  return any("lstm" in str(getattr(entry, "key", getattr(entry, "name", entry))).lower()
             for entry in path)


def optimizer(config: ml_collections.ConfigDict,
              num_train_steps: int) -> optax.GradientTransformation:
  """Adam with polynomial decay, the ConvLSTM's gradients optionally clipped.

  `optimizer.warmup_steps` > 0 ramps the rate linearly from 0 first, and `grad_clip_norm` > 0
  clips every gradient to that global norm: neither is in the official code (both 0 there),
  both are the usual remedies when a short budget calls for a larger rate.
  """
  opt = config.optimizer
  warmup = min(int(opt.get("warmup_steps", 0)), num_train_steps)
  schedule = optax.polynomial_schedule(
      init_value=opt.learning_rate, end_value=opt.end_learning_rate, power=opt.decay_power,
      transition_steps=max(num_train_steps - warmup, 1))
  if warmup > 0:
    schedule = optax.join_schedules(
        [optax.linear_schedule(0.0, opt.learning_rate, warmup), schedule], [warmup])
  adam = optax.adam(schedule)
  if opt.get("grad_clip_norm", 0.0) > 0:
    adam = optax.chain(optax.clip_by_global_norm(opt.grad_clip_norm), adam)
  if opt.lstm_grad_clip_norm > 0 and config.model.use_lstm:
    labels = lambda params: jax.tree_util.tree_map_with_path(  # noqa: E731
        lambda path, _: "lstm" if _is_lstm(path) else "rest", params)
    return optax.multi_transform(
        {"lstm": optax.chain(optax.clip_by_global_norm(opt.lstm_grad_clip_norm), adam),
         "rest": adam}, labels)
  return adam


def init_fn(config: ml_collections.ConfigDict, tx: optax.GradientTransformation):
  """Returns `key -> SRNState` with a fresh deblurrer and optimiser."""
  make = module_factory(config)
  ema_decay = state_lib.ema_decay(config)

  def init(key: jax.Array) -> SRNState:
    params = state_lib.init_params(lambda rngs: make(rngs=rngs), key)
    return state_lib.start_ema(
        SRNState(step=jnp.zeros((), jnp.int32), rng=jax.random.fold_in(key, 1),
                 deblurrer=params, opt_state=tx.init(params)), ema_decay)

  return init


def make_train_step(config: ml_collections.ConfigDict, networks: stage_lib.Networks,
                    tx: optax.GradientTransformation) -> loop.TrainStep:
  network = networks[NETWORK]
  weights = tuple(config.loss.scale_weights)
  ema_decay = state_lib.ema_decay(config)

  def loss_fn(params, blurred, sharp):
    estimates = [estimate.astype(jnp.float32) for estimate in network.apply(params, blurred)]
    per_scale = [losses.multiscale_euclidean_loss([estimate], sharp) for estimate in estimates]
    total = losses.multiscale_euclidean_loss(estimates, sharp, weights)
    return total, {"loss": total, **{f"loss/scale{i}": value for i, value in enumerate(per_scale)}}

  def train_step(state: SRNState, batch: dict[str, jax.Array]):
    grads, metrics = jax.grad(loss_fn, has_aux=True)(
        state.deblurrer, batch["blurred"], batch["sharp"])
    deblurrer, opt_state = state_lib.apply_gradients(tx, state.deblurrer, state.opt_state, grads)
    state = state.replace(step=state.step + 1, deblurrer=deblurrer, opt_state=opt_state)
    return state_lib.update_ema(state, ema_decay), metrics

  return train_step


def make_restore_fn(network: state_lib.Network):
  """Jitted `(params, blurred) -> restored`: the finest estimate, clipped to [0, 1]."""

  @functools.partial(compilation.jit, forward_only=True)
  def restore(params, blurred):
    return jnp.clip(network.apply(params, blurred)[-1].astype(jnp.float32), 0.0, 1.0)

  return restore


def sources(config: ml_collections.ConfigDict) -> tuple:
  """The (blurred, sharp) training pairs, those smaller than the crop skipped."""
  return (SkipBadRecords(factory.make_paired_source(config.data.train),
                         min_size=config.data.crop_size, min_size_reason="data.crop_size"),)


def make_batches(config: ml_collections.ConfigDict, train_sources: tuple,
                 local_batch: int) -> stage_lib.Batches:
  """`start_step -> {'blurred', 'sharp'} batches` of random crops."""
  (train_source,) = train_sources
  train_data = data_pipeline.make_dataset(
      train_source, batch_size=local_batch, seed=config.seed,
      transform=data_pipeline.paired_transform(config.data.crop_size, train=True,
                                               random_flip=config.data.random_flip))

  def batches(start_step: int):
    for batch in data_pipeline.iterate(train_data, start_step=start_step,
                                       num_workers=config.num_workers):
      yield {"blurred": batch["blurred"], "sharp": batch["sharp"]}

  return batches


def make_hooks(config: ml_collections.ConfigDict, networks: stage_lib.Networks,
               train_sources: tuple, workdir: pathlib.Path,
               writer: MetricWriter) -> tuple[loop.Periodic, ...]:
  """The held-out evaluation, when there is a test set."""
  if not factory.is_set(config.data.test):
    return ()
  test_source = SkipBadRecords(factory.make_paired_source(config.data.test),
                               min_size=config.eval_crop_size, min_size_reason="eval_crop_size")
  return (loop.Periodic(config.eval_every_steps,
                        _evaluator(config, networks[NETWORK], test_source, writer)),)


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str | pathlib.Path) -> SRNState:
  """Trains stage 2 in `workdir` (resuming from its latest checkpoint)."""
  state = STAGE.train_and_evaluate(config, workdir)
  release.write_after_training(config, workdir, state)
  return state


EVAL_BATCH = 16


def _evaluator(config, network, test_source, writer: MetricWriter):
  """PSNR/SSIM of blurred and restored held-out images, every `eval_every_steps`.

  Images of one shape go through the network and the metrics together, in batches of at most
  `EVAL_BATCH` (one call per batch, not per image: at small sizes a call's dispatch costs more
  than its arithmetic).
  """
  count = min(config.eval_num_images, len(test_source))
  transform = data_pipeline.paired_transform(config.eval_crop_size or None, train=False)
  pairs = [transform(test_source[i], np.random.default_rng(i)) for i in range(count)]
  batches = []
  for shape in dict.fromkeys(pair["blurred"].shape for pair in pairs):
    same = [pair for pair in pairs if pair["blurred"].shape == shape]
    for start in range(0, len(same), EVAL_BATCH):
      chunk = same[start:start + EVAL_BATCH]
      batches.append((np.stack([pair["blurred"] for pair in chunk]),
                      np.stack([pair["sharp"] for pair in chunk])))
  restore = make_restore_fn(network)

  def hook(step: int, state: SRNState) -> None:
    scores = {"psnr/blurred": [], "psnr/restored": [], "ssim/blurred": [], "ssim/restored": []}
    for blurred, sharp in batches:
      restored = restore(state.deblurrer, blurred)
      for name, images in (("blurred", blurred), ("restored", restored)):
        scores[f"psnr/{name}"].extend(np.asarray(quality.psnr(images, sharp)).tolist())
        scores[f"ssim/{name}"].extend(np.asarray(quality.ssim(images, sharp)).tolist())
    writer.write_scalars(step, {f"eval/{name}": np.mean(values)
                                for name, values in scores.items()})

  return hook


STAGE = stage_lib.Stage(
    job="srn", make_networks=make_networks, optimizer=optimizer, init_fn=init_fn,
    make_train_step=make_train_step, sources=sources, make_batches=make_batches,
    make_hooks=make_hooks)
