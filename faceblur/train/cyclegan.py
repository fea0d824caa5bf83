"""Stage 1: learn real blur with a CycleGAN (Zhu et al. 2017) on unpaired photos.

In the CycleGAN paper's terms the sharp photos are X and the blurred ones Y. The state's
fields and the networks' names follow it:

* `g` is G: X -> Y, sharp -> blurred (the learned blur);
* `f` is F: Y -> X, blurred -> sharp;
* `d_blurred` is D_Y, which tells real blurred photos from G(sharp);
* `d_sharp` is D_X, which tells real sharp photos from F(blurred).

G and F are ResNet generators, the critics 70x70 PatchGANs. One jitted step updates G and F
against frozen critics with the LSGAN (eq. 1 of the paper), cycle (eq. 2) and identity
losses, then both critics on fakes drawn through the image pools, as the official
implementation does. Only G is needed later (synthesis); F is the "CycleGAN as a deblurrer"
baseline.
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
from faceblur.data import factory
from faceblur.data import input_pipeline as data_pipeline
from faceblur.data.sources import SkipBadRecords
from faceblur.image_grid import save_grid
from faceblur.models import PatchDiscriminator, ResnetGenerator
from faceblur.ops import compilation
from faceblur.train import loop, release
from faceblur.train import stage as stage_lib
from faceblur.train import state as state_lib
from faceblur.train.image_pool import ImagePool, create_image_pool, query_image_pool
from faceblur.train.metric_writers import MetricWriter


class CycleGANState(state_lib.TrainState):
  """Stage 1's train state (the names are the module docstring's)."""

  NETWORKS: ClassVar[tuple[str, ...]] = ("g", "f", "d_blurred", "d_sharp")
  EMA_NETWORKS: ClassVar[tuple[str, ...]] = ("g", "f")  # the critics serve training only

  g: nnx.State  # G: sharp -> blurred
  f: nnx.State  # F: blurred -> sharp
  d_blurred: nnx.State  # D_Y: real blurred photos against G(sharp)
  d_sharp: nnx.State  # D_X: real sharp photos against F(blurred)
  generator_opt_state: Any  # of (g, f), updated together
  critic_opt_state: Any  # of (d_blurred, d_sharp)
  fake_blurred_pool: ImagePool  # past G(sharp), shown to d_blurred
  fake_sharp_pool: ImagePool  # past F(blurred), shown to d_sharp


def module_factories(config: ml_collections.ConfigDict) -> dict:
  """Constructors of the four networks, keyed by their fields in `CycleGANState`."""
  model, dtype = config.model, state_lib.compute_dtype(config)
  generator = functools.partial(
      ResnetGenerator, num_blocks=model.num_blocks, features=model.features,
      residual=model.get("residual", False), dtype=dtype)
  critic = functools.partial(
      PatchDiscriminator, features=model.disc_features, num_layers=model.disc_layers, dtype=dtype)
  return {
      "g": lambda rngs: generator(rngs=rngs),
      "f": lambda rngs: generator(rngs=rngs),
      "d_blurred": lambda rngs: critic(rngs=rngs),
      "d_sharp": lambda rngs: critic(rngs=rngs),
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


def optimizer(config: ml_collections.ConfigDict,
              num_train_steps: int) -> optax.GradientTransformation:
  """Adam on that schedule, for the generators and the critics alike."""
  opt = config.optimizer
  return optax.adam(learning_rate_schedule(config, num_train_steps), b1=opt.b1, b2=opt.b2)


def init_fn(config: ml_collections.ConfigDict, tx: optax.GradientTransformation):
  """Returns `key -> CycleGANState` with fresh networks, optimisers and empty pools."""
  factories = module_factories(config)
  crop = config.data.crop_size
  ema_decay = state_lib.ema_decay(config)

  def init(key: jax.Array) -> CycleGANState:
    keys = jax.random.split(key, len(factories) + 1)[1:]
    params = {name: state_lib.init_params(make, name_key)
              for (name, make), name_key in zip(factories.items(), keys, strict=True)}
    return state_lib.start_ema(CycleGANState(
        step=jnp.zeros((), jnp.int32), rng=jax.random.fold_in(key, 1), **params,
        generator_opt_state=tx.init((params["g"], params["f"])),
        critic_opt_state=tx.init((params["d_blurred"], params["d_sharp"])),
        fake_blurred_pool=create_image_pool(config.pool_size, (crop, crop, 3)),
        fake_sharp_pool=create_image_pool(config.pool_size, (crop, crop, 3))), ema_decay)

  return init


def make_train_step(config: ml_collections.ConfigDict, networks: stage_lib.Networks,
                    tx: optax.GradientTransformation) -> loop.TrainStep:
  """The jitted update of G and F, then of both critics."""
  cycle_weight = config.loss.cycle_weight
  identity_weight = config.loss.identity_weight * cycle_weight
  real_label = config.loss.real_label
  ema_decay = state_lib.ema_decay(config)

  def bind(name: str, params: nnx.State):
    """The network `name` with `params`, as a function of images with float32 outputs."""
    return lambda images: networks[name].apply(params, images).astype(jnp.float32)

  def generator_loss(generators, critics, sharp, blurred):
    """Eq. 1 through the frozen critics + lambda * eq. 2 + the identity term, for G and F."""
    (g, f), (d_blurred, d_sharp) = generators, critics
    G, F, D_blurred, D_sharp = (  # the paper's names
        bind("g", g), bind("f", f), bind("d_blurred", d_blurred), bind("d_sharp", d_sharp))
    fake_blurred = G(sharp)
    fake_sharp = F(blurred)
    adversarial = (losses.lsgan_generator_loss(D_blurred(fake_blurred), real_label=real_label)
                   + losses.lsgan_generator_loss(D_sharp(fake_sharp), real_label=real_label))
    cycle = (losses.cycle_consistency_loss(F(fake_blurred), sharp)
             + losses.cycle_consistency_loss(G(fake_sharp), blurred))
    total = adversarial + cycle_weight * cycle
    identity = jnp.zeros((), jnp.float32)
    if identity_weight > 0:
      identity = (losses.identity_loss(G(blurred), blurred)
                  + losses.identity_loss(F(sharp), sharp))
      total = total + identity_weight * identity
    aux = {"fake_blurred": fake_blurred, "fake_sharp": fake_sharp,
           "metrics": {"generator/adversarial": adversarial, "generator/cycle": cycle,
                       "generator/identity": identity, "generator/total": total}}
    return total, aux

  def critic_loss(critics, sharp, blurred, pooled_blurred, pooled_sharp):
    """Eq. 1 for the critics: each domain's real photos against its pooled fakes."""
    D_blurred, D_sharp = bind("d_blurred", critics[0]), bind("d_sharp", critics[1])
    blurred_loss = losses.lsgan_discriminator_loss(D_blurred(blurred), D_blurred(pooled_blurred),
                                                   real_label=real_label)
    sharp_loss = losses.lsgan_discriminator_loss(D_sharp(sharp), D_sharp(pooled_sharp),
                                                 real_label=real_label)
    return blurred_loss + sharp_loss, {"critic/blurred": blurred_loss, "critic/sharp": sharp_loss}

  def train_step(state: CycleGANState, batch: dict[str, jax.Array]):
    sharp, blurred = batch["sharp"], batch["blurred"]
    generators, critics = (state.g, state.f), (state.d_blurred, state.d_sharp)

    grads, aux = jax.grad(generator_loss, has_aux=True)(generators, critics, sharp, blurred)
    (g, f), generator_opt_state = state_lib.apply_gradients(
        tx, generators, state.generator_opt_state, grads)

    step_key = jax.random.fold_in(state.rng, state.step)
    blurred_key, sharp_key = jax.random.split(step_key)
    fake_blurred_pool, pooled_blurred = query_image_pool(
        state.fake_blurred_pool, jax.lax.stop_gradient(aux["fake_blurred"]), blurred_key)
    fake_sharp_pool, pooled_sharp = query_image_pool(
        state.fake_sharp_pool, jax.lax.stop_gradient(aux["fake_sharp"]), sharp_key)

    (_, critic_metrics), critic_grads = jax.value_and_grad(critic_loss, has_aux=True)(
        critics, sharp, blurred, pooled_blurred, pooled_sharp)
    (d_blurred, d_sharp), critic_opt_state = state_lib.apply_gradients(
        tx, critics, state.critic_opt_state, critic_grads)

    # Non-finite fakes (a step that on_nonfinite=skip drops) must not enter the pools, where
    # they would poison the critics' later steps.
    fakes_finite = jnp.isfinite(aux["fake_blurred"]).all() & jnp.isfinite(aux["fake_sharp"]).all()

    def keep_finite(new_pool: ImagePool, old_pool: ImagePool) -> ImagePool:
      return jax.tree.map(lambda new, old: jnp.where(fakes_finite, new, old), new_pool, old_pool)

    new_state = state.replace(
        step=state.step + 1, g=g, f=f, d_blurred=d_blurred, d_sharp=d_sharp,
        generator_opt_state=generator_opt_state, critic_opt_state=critic_opt_state,
        fake_blurred_pool=keep_finite(fake_blurred_pool, state.fake_blurred_pool),
        fake_sharp_pool=keep_finite(fake_sharp_pool, state.fake_sharp_pool))
    return state_lib.update_ema(new_state, ema_decay), {**aux["metrics"], **critic_metrics}

  return train_step


def sources(config: ml_collections.ConfigDict) -> tuple:
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


def make_batches(config: ml_collections.ConfigDict, train_sources: tuple,
                 local_batch: int) -> stage_lib.Batches:
  """`start_step -> {'sharp', 'blurred'} batches`, the two domains shuffled independently."""
  sharp_source, blurred_source = train_sources
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

  return batches


def make_hooks(config: ml_collections.ConfigDict, networks: stage_lib.Networks,
               train_sources: tuple, workdir: pathlib.Path,
               writer: MetricWriter) -> tuple[loop.Periodic, ...]:
  return (loop.Periodic(config.sample_every_steps,
                        _sampler(config, networks, train_sources[0], workdir, writer)),)


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str | pathlib.Path) -> CycleGANState:
  """Trains stage 1 in `workdir` (resuming from its latest checkpoint)."""
  state = STAGE.train_and_evaluate(config, workdir)
  release.write_after_training(config, workdir, state)
  return state


def _sampler(config, networks, sharp_source, workdir: pathlib.Path, writer: MetricWriter):
  """Writes a grid of (sharp, G(sharp), F(G(sharp))) on fixed faces."""
  transform = data_pipeline.cyclegan_transform(config.data.load_size, config.data.crop_size,
                                               train=False)
  count = min(config.num_samples, len(sharp_source))
  sharp = np.stack([transform(sharp_source[i], np.random.default_rng(i))["image"]
                    for i in range(count)])

  @compilation.jit
  def translate(g, f, images):
    fake_blurred = networks["g"].apply(g, images)
    cycled = networks["f"].apply(f, fake_blurred)
    return fake_blurred.astype(jnp.float32), cycled.astype(jnp.float32)

  def hook(step: int, state: CycleGANState) -> None:
    fake_blurred, cycled = jax.device_get(translate(state.g, state.f, sharp))
    if jax.process_index() == 0:
      rows = [list(images) for images in zip(sharp, fake_blurred, cycled, strict=True)]
      grid = save_grid(workdir / "samples" / f"step_{step:07d}.png", rows,
                       column_titles=["sharp", "G(sharp)", "F(G(sharp))"])
      writer.write_images(step, {"samples": grid})

  return hook


STAGE = stage_lib.Stage(
    job="cyclegan", make_networks=make_networks, optimizer=optimizer, init_fn=init_fn,
    make_train_step=make_train_step, sources=sources, make_batches=make_batches,
    make_hooks=make_hooks)
