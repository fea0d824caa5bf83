"""Stage 2: learn to deblur with SRN-DeblurNet (Tao et al. 2018) on (blurred, sharp) pairs.

The network is applied coarse to fine with shared weights and supervised at every scale by
the multi-scale Euclidean loss (eq. 3 of the paper). Adam with polynomial decay as the
official code; `optimizer.lstm_grad_clip_norm > 0` clips the ConvLSTM's gradients to a global
norm (an option of the official code that its training leaves off).
"""

import functools
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from faceblur import losses
from faceblur import metrics as quality
from faceblur.data import factory
from faceblur.data import input_pipeline as data_pipeline
from faceblur.data.sources import SkipBadRecords
from faceblur.models import SRNDeblurNet
from faceblur.ops import compilation
from faceblur.train import loop, partitioning
from faceblur.train import state as state_lib
from faceblur.train.metric_writers import MetricWriter

NETWORK = "deblurrer"


def module_factory(config: ml_collections.ConfigDict):
  model = config.model
  return functools.partial(
      SRNDeblurNet, num_scales=model.num_scales, scale_ratio=model.scale_ratio,
      use_lstm=model.use_lstm, channels=model.channels, features=model.features,
      residual=model.get("residual", False),
      dtype=state_lib.compute_dtype(config))


def make_network(config: ml_collections.ConfigDict) -> state_lib.Network:
  make = module_factory(config)
  return state_lib.network_of(lambda rngs: make(rngs=rngs))


def _is_lstm(path) -> bool:
  return any("lstm" in str(getattr(entry, "key", getattr(entry, "name", entry))).lower()
             for entry in path)


def make_optimizer(config: ml_collections.ConfigDict,
                   num_train_steps: int) -> optax.GradientTransformation:
  opt = config.optimizer
  schedule = optax.polynomial_schedule(
      init_value=opt.learning_rate, end_value=opt.end_learning_rate, power=opt.decay_power,
      transition_steps=num_train_steps)
  adam = optax.adam(schedule)
  if opt.lstm_grad_clip_norm > 0 and config.model.use_lstm:
    labels = lambda params: jax.tree_util.tree_map_with_path(  # noqa: E731
        lambda path, _: "lstm" if _is_lstm(path) else "rest", params)
    tx = optax.multi_transform(
        {"lstm": optax.chain(optax.clip_by_global_norm(opt.lstm_grad_clip_norm), adam),
         "rest": adam}, labels)
  else:
    tx = adam
  return loop.nonfinite_guard(tx, config)


def init_fn(config: ml_collections.ConfigDict, tx: optax.GradientTransformation):
  make = module_factory(config)

  def init(key: jax.Array) -> state_lib.TrainState:
    params = state_lib.init_params(lambda rngs: make(rngs=rngs), key)
    return state_lib.TrainState(
        step=jnp.zeros((), jnp.int32), params={NETWORK: params},
        opt_states={NETWORK: tx.init(params)}, rng=jax.random.fold_in(key, 1))

  return init


def make_train_step(config: ml_collections.ConfigDict, network: state_lib.Network,
                    tx: optax.GradientTransformation):
  weights = tuple(config.loss.scale_weights)

  def loss_fn(params, blurred, sharp):
    estimates = [estimate.astype(jnp.float32) for estimate in network.apply(params, blurred)]
    per_scale = [losses.multiscale_euclidean_loss([estimate], sharp) for estimate in estimates]
    total = losses.multiscale_euclidean_loss(estimates, sharp, weights)
    return total, {"loss": total, **{f"loss/scale{i}": value for i, value in enumerate(per_scale)}}

  def train_step(state: state_lib.TrainState, batch: dict[str, jax.Array]):
    grads, metrics = jax.grad(loss_fn, has_aux=True)(
        state.params[NETWORK], batch["blurred"], batch["sharp"])
    params, opt_state = state_lib.apply_gradients(
        tx, state.params[NETWORK], state.opt_states[NETWORK], grads)
    return state.replace(step=state.step + 1, params={NETWORK: params},
                         opt_states={NETWORK: opt_state}), metrics

  return train_step


def make_restore_fn(network: state_lib.Network):
  """Jitted `(params, blurred) -> restored`: the finest estimate, clipped to [0, 1]."""

  @compilation.jit
  def restore(params, blurred):
    return jnp.clip(network.apply(params, blurred)[-1].astype(jnp.float32), 0.0, 1.0)

  return restore


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path):
  """Trains stage 2 in `workdir` (resuming from its latest checkpoint)."""
  workdir = pathlib.Path(workdir)
  mesh = partitioning.make_mesh(config.num_devices or None)
  local_batch = partitioning.per_process_batch_size(config.batch_size, mesh)
  train_source = SkipBadRecords(factory.make_paired_source(config.data.train),
                                min_size=config.data.crop_size,
                                min_size_reason="data.crop_size")
  num_train_steps = loop.num_steps(config, len(train_source))

  network = make_network(config)
  tx = make_optimizer(config, num_train_steps)
  state = state_lib.create_train_state(init_fn(config, tx), config.seed, mesh)
  writer = MetricWriter(workdir)
  state_lib.write_parameter_overview(writer, state.params)

  train_data = data_pipeline.make_dataset(
      train_source, batch_size=local_batch, seed=config.seed,
      transform=data_pipeline.paired_transform(config.data.crop_size, train=True,
                                               random_flip=config.data.random_flip))

  def batches(start_step: int):
    for batch in data_pipeline.iterate(train_data, start_step=start_step,
                                       num_workers=config.num_workers):
      yield {"blurred": batch["blurred"], "sharp": batch["sharp"]}

  replicated = partitioning.replicated(mesh)
  train_step = compilation.jit(make_train_step(config, network, tx), donate_argnums=0,
                               out_shardings=(replicated, replicated))
  hooks = ()
  if config.data.test.path or config.data.test.kind.startswith("demo"):
    test_source = SkipBadRecords(factory.make_paired_source(config.data.test),
                                 min_size=config.eval_crop_size,
                                 min_size_reason="eval_crop_size")
    hooks = (loop.Periodic(config.eval_every_steps,
                           _evaluator(config, network, test_source, writer)),)
  return loop.train(config=config, workdir=workdir, mesh=mesh, state=state,
                    train_step=train_step, batches=batches, num_train_steps=num_train_steps,
                    writer=writer, hooks=hooks)


def _evaluator(config, network, test_source, writer: MetricWriter):
  """PSNR/SSIM of blurred and restored held-out images, every `eval_every_steps`."""
  count = min(config.eval_num_images, len(test_source))
  transform = data_pipeline.paired_transform(config.eval_crop_size or None, train=False)
  pairs = [transform(test_source[i], np.random.default_rng(i)) for i in range(count)]
  restore = make_restore_fn(network)

  def hook(step: int, state: state_lib.TrainState) -> None:
    scores = {"psnr/blurred": [], "psnr/restored": [], "ssim/blurred": [], "ssim/restored": []}
    for pair in pairs:
      blurred, sharp = pair["blurred"][None], pair["sharp"][None]
      restored = restore(state.params[NETWORK], blurred)
      for name, images in (("blurred", blurred), ("restored", restored)):
        scores[f"psnr/{name}"].append(float(quality.psnr(images, sharp)[0]))
        scores[f"ssim/{name}"].append(float(quality.ssim(images, sharp)[0]))
    writer.write_scalars(step, {f"eval/{name}": np.mean(values)
                                for name, values in scores.items()})

  return hook
