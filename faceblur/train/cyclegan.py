"""Stage 1: learn real blur with a CycleGAN (Zhu et al. 2017) on unpaired photos.

G maps sharp -> blurred and F blurred -> sharp; D_blurred and D_sharp are 70x70 PatchGANs.
One jitted step updates both generators against frozen discriminators (LSGAN + cycle +
identity losses), then both discriminators on fakes drawn through the image pools, as the
official implementation does. Only G is needed later (synthesis); F is the "CycleGAN as a
deblurrer" baseline.
"""

import functools
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from faceblur import losses
from faceblur.data import factory
from faceblur.data import input_pipeline as data_pipeline
from faceblur.data.sources import SkipBadRecords
from faceblur.image_grid import save_grid
from faceblur.models import PatchDiscriminator, ResnetGenerator
from faceblur.ops import compilation
from faceblur.train import loop, partitioning
from faceblur.train import state as state_lib
from faceblur.train.image_pool import create_image_pool, query_image_pool
from faceblur.train.metric_writers import MetricWriter

GENERATORS = ("sharp_to_blurred", "blurred_to_sharp")
CRITICS = ("blurred_critic", "sharp_critic")


def module_factories(config: ml_collections.ConfigDict) -> dict:
  """Constructors of the four networks, keyed by role."""
  model, dtype = config.model, state_lib.compute_dtype(config)
  generator = functools.partial(
      ResnetGenerator, num_blocks=model.num_blocks, features=model.features,
      residual=model.get("residual", False), dtype=dtype)
  critic = functools.partial(
      PatchDiscriminator, features=model.disc_features, num_layers=model.disc_layers, dtype=dtype)
  return {
      "sharp_to_blurred": lambda rngs: generator(rngs=rngs),
      "blurred_to_sharp": lambda rngs: generator(rngs=rngs),
      "blurred_critic": lambda rngs: critic(rngs=rngs),
      "sharp_critic": lambda rngs: critic(rngs=rngs),
  }


def make_networks(config: ml_collections.ConfigDict) -> dict[str, state_lib.Network]:
  return {name: state_lib.network_of(make) for name, make in module_factories(config).items()}


def learning_rate_schedule(config: ml_collections.ConfigDict, num_train_steps: int):
  """Constant, then linear decay to zero (the reference's epoch-wise rule, per step)."""
  opt = config.optimizer
  constant_steps = int(num_train_steps * opt.constant_fraction)
  return optax.join_schedules(
      [optax.constant_schedule(opt.learning_rate),
       optax.linear_schedule(opt.learning_rate, 0.0,
                             max(1, num_train_steps - constant_steps))],
      boundaries=[constant_steps])


def make_optimizer(config: ml_collections.ConfigDict,
                   num_train_steps: int) -> optax.GradientTransformation:
  opt = config.optimizer
  tx = optax.adam(learning_rate_schedule(config, num_train_steps), b1=opt.b1, b2=opt.b2)
  return loop.nonfinite_guard(tx, config)


def init_fn(config: ml_collections.ConfigDict, tx: optax.GradientTransformation):
  """Returns `key -> TrainState` with fresh networks, optimisers and empty pools."""
  factories = module_factories(config)
  crop = config.data.crop_size

  def init(key: jax.Array) -> state_lib.TrainState:
    keys = dict(zip(factories, jax.random.split(key, len(factories) + 1)[1:], strict=True))
    params = {name: state_lib.init_params(make, keys[name]) for name, make in factories.items()}
    generators = {name: params[name] for name in GENERATORS}
    critics = {name: params[name] for name in CRITICS}
    pools = {name: create_image_pool(config.pool_size, (crop, crop, 3)) for name in CRITICS}
    return state_lib.TrainState(
        step=jnp.zeros((), jnp.int32), params=params,
        opt_states={"generators": tx.init(generators), "critics": tx.init(critics)},
        rng=jax.random.fold_in(key, 1), extras={"pools": pools})

  return init


def make_train_step(config: ml_collections.ConfigDict, networks: dict[str, state_lib.Network],
                    tx: optax.GradientTransformation):
  """The jitted update of both generators, then both discriminators."""
  cycle_weight = config.loss.cycle_weight
  identity_weight = config.loss.identity_weight * cycle_weight
  real_label = config.loss.real_label

  def run(name, params, images):
    return networks[name].apply(params[name], images).astype(jnp.float32)

  def generator_loss(generators, critics, sharp, blurred):
    fake_blurred = run("sharp_to_blurred", generators, sharp)
    fake_sharp = run("blurred_to_sharp", generators, blurred)
    adversarial = (
        losses.lsgan_generator_loss(run("blurred_critic", critics, fake_blurred),
                                    real_label=real_label)
        + losses.lsgan_generator_loss(run("sharp_critic", critics, fake_sharp),
                                      real_label=real_label))
    cycle = (losses.cycle_consistency_loss(run("blurred_to_sharp", generators, fake_blurred), sharp)
             + losses.cycle_consistency_loss(run("sharp_to_blurred", generators, fake_sharp),
                                             blurred))
    total = adversarial + cycle_weight * cycle
    identity = jnp.zeros((), jnp.float32)
    if identity_weight > 0:
      identity = (losses.identity_loss(run("sharp_to_blurred", generators, blurred), blurred)
                  + losses.identity_loss(run("blurred_to_sharp", generators, sharp), sharp))
      total = total + identity_weight * identity
    aux = {"fake_blurred": fake_blurred, "fake_sharp": fake_sharp,
           "metrics": {"generator/adversarial": adversarial, "generator/cycle": cycle,
                       "generator/identity": identity, "generator/total": total}}
    return total, aux

  def critic_loss(critics, sharp, blurred, pooled_blurred, pooled_sharp):
    blurred_loss = losses.lsgan_discriminator_loss(
        run("blurred_critic", critics, blurred), run("blurred_critic", critics, pooled_blurred),
        real_label=real_label)
    sharp_loss = losses.lsgan_discriminator_loss(
        run("sharp_critic", critics, sharp), run("sharp_critic", critics, pooled_sharp),
        real_label=real_label)
    return blurred_loss + sharp_loss, {"critic/blurred": blurred_loss, "critic/sharp": sharp_loss}

  def train_step(state: state_lib.TrainState, batch: dict[str, jax.Array]):
    sharp, blurred = batch["sharp"], batch["blurred"]
    generators = {name: state.params[name] for name in GENERATORS}
    critics = {name: state.params[name] for name in CRITICS}

    grads, aux = jax.grad(generator_loss, has_aux=True)(generators, critics, sharp, blurred)
    generators, generator_opt = state_lib.apply_gradients(
        tx, generators, state.opt_states["generators"], grads)

    step_key = jax.random.fold_in(state.rng, state.step)
    blurred_key, sharp_key = jax.random.split(step_key)
    pools = state.extras["pools"]
    blurred_pool, pooled_blurred = query_image_pool(
        pools["blurred_critic"], jax.lax.stop_gradient(aux["fake_blurred"]), blurred_key)
    sharp_pool, pooled_sharp = query_image_pool(
        pools["sharp_critic"], jax.lax.stop_gradient(aux["fake_sharp"]), sharp_key)

    (_, critic_metrics), critic_grads = jax.value_and_grad(critic_loss, has_aux=True)(
        critics, sharp, blurred, pooled_blurred, pooled_sharp)
    critics, critic_opt = state_lib.apply_gradients(
        tx, critics, state.opt_states["critics"], critic_grads)

    # Non-finite fakes (a step that on_nonfinite=skip drops) must not enter the pools, where
    # they would poison the discriminators' later steps.
    fakes_finite = jnp.isfinite(aux["fake_blurred"]).all() & jnp.isfinite(aux["fake_sharp"]).all()
    new_pools = jax.tree.map(
        lambda new, old: jnp.where(fakes_finite, new, old),
        {"blurred_critic": blurred_pool, "sharp_critic": sharp_pool}, pools)
    new_state = state.replace(
        step=state.step + 1, params={**generators, **critics},
        opt_states={"generators": generator_opt, "critics": critic_opt},
        extras={"pools": new_pools})
    return new_state, {**aux["metrics"], **critic_metrics}

  return train_step


def sources(config: ml_collections.ConfigDict):
  """The sharp and blurred domains, unreadable and thumbnail-sized files skipped.

  Every image is resized to `load_size` squared as in the reference, but one whose shorter side is
  below half the crop would be upscaled by more than ~2x: interpolation blur in the sharp
  domain, which is what stage 1 must learn to tell apart. Those are skipped with a warning.
  """
  min_size = config.data.crop_size // 2
  return tuple(
      SkipBadRecords(factory.make_source(spec, image_size=config.data.load_size),
                     min_size=min_size, min_size_reason="half of data.crop_size")
      for spec in (config.data.sharp, config.data.blurred))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path):
  """Trains stage 1 in `workdir` (resuming from its latest checkpoint)."""
  workdir = pathlib.Path(workdir)
  mesh = partitioning.make_mesh(config.num_devices or None)
  local_batch = partitioning.per_process_batch_size(config.batch_size, mesh)
  sharp_source, blurred_source = sources(config)
  num_train_steps = loop.num_steps(config, max(len(sharp_source), len(blurred_source)))

  networks = make_networks(config)
  tx = make_optimizer(config, num_train_steps)
  state = state_lib.create_train_state(init_fn(config, tx), config.seed, mesh)
  writer = MetricWriter(workdir)
  state_lib.write_parameter_overview(writer, state.params)

  transform = data_pipeline.cyclegan_transform(config.data.load_size, config.data.crop_size,
                                               random_flip=config.data.random_flip)
  sharp_data = data_pipeline.make_dataset(
      sharp_source, batch_size=local_batch, transform=transform, seed=config.seed)
  blurred_data = data_pipeline.make_dataset(
      blurred_source, batch_size=local_batch, transform=transform, seed=config.seed + 1)

  def batches(start_step: int):
    sharp_iter = data_pipeline.iterate(sharp_data, start_step=start_step,
                                       num_workers=config.num_workers)
    blurred_iter = data_pipeline.iterate(blurred_data, start_step=start_step,
                                         num_workers=config.num_workers)
    for sharp, blurred in zip(sharp_iter, blurred_iter, strict=True):
      yield {"sharp": sharp["image"], "blurred": blurred["image"]}

  replicated = partitioning.replicated(mesh)
  train_step = compilation.jit(make_train_step(config, networks, tx), donate_argnums=0,
                               out_shardings=(replicated, replicated))
  sample_hook = loop.Periodic(config.sample_every_steps,
                              _sampler(config, networks, sharp_source, workdir, writer))
  return loop.train(config=config, workdir=workdir, mesh=mesh, state=state,
                    train_step=train_step, batches=batches, num_train_steps=num_train_steps,
                    writer=writer, hooks=(sample_hook,))


def _sampler(config, networks, sharp_source, workdir: pathlib.Path, writer: MetricWriter):
  """Writes a grid of (sharp, G(sharp), F(G(sharp))) on fixed faces."""
  transform = data_pipeline.cyclegan_transform(config.data.load_size, config.data.crop_size,
                                               train=False)
  count = min(config.num_samples, len(sharp_source))
  sharp = np.stack([transform(sharp_source[i], np.random.default_rng(i))["image"]
                    for i in range(count)])

  @compilation.jit
  def translate(params, images):
    fake_blurred = networks["sharp_to_blurred"].apply(params["sharp_to_blurred"], images)
    cycled = networks["blurred_to_sharp"].apply(params["blurred_to_sharp"], fake_blurred)
    return fake_blurred.astype(jnp.float32), cycled.astype(jnp.float32)

  def hook(step: int, state: state_lib.TrainState) -> None:
    fake_blurred, cycled = jax.device_get(translate(state.params, sharp))
    if jax.process_index() == 0:
      rows = [list(images) for images in zip(sharp, fake_blurred, cycled, strict=True)]
      grid = save_grid(workdir / "samples" / f"step_{step:07d}.png", rows,
                       column_titles=["sharp", "G(sharp)", "F(G(sharp))"])
      writer.write_images(step, {"samples": grid})

  return hook
