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

Stage-1 variants are config switches, the paper's CycleGAN being all of them off (see
`configs/cyclegan.py`): G by name (`model.generator`: the ResNet, or `kernel_blur`, a G
that can only blur), a random code z for G (`model.code_dim`), resize-convolution
upsampling, the weight of the sharp -> blurred -> sharp cycle, noise on G(sharp) before F
in that cycle, whether the cycles' gradients reach G, and a mode-seeking term
(Mao et al., CVPR 2019) that keeps G from ignoring z. Every sample step also logs the
hidden-channel diagnostic (how well F recovers the sharp face from G's output, clean, with
noise of 3/255 and after JPEG at quality 75: steganography survives only the first) and, with
`data.blurred_validation`, the blur realism of G's blur against held-out real blurred photos
of the training people, the label-free score that selects the checkpoint (`selection.json`).
"""

import functools
import json
import pathlib
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from faceblur import blur_realism, losses, metrics
from faceblur.data import factory
from faceblur.data import input_pipeline as data_pipeline
from faceblur.data.sources import SkipBadRecords
from faceblur.errors import ConfigError
from faceblur.image_grid import save_grid
from faceblur.models import GENERATORS, PatchDiscriminator, ResnetGenerator, blur_generator
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
  make_g = GENERATORS.get(model.get("generator", "resnet"))
  deblurrer = functools.partial(  # F takes no code
      ResnetGenerator, num_blocks=model.num_blocks, features=model.features,
      residual=model.get("residual", False), upsample=model.get("upsample", "transposed"),
      dtype=dtype)
  critic = functools.partial(
      PatchDiscriminator, features=model.disc_features, num_layers=model.disc_layers, dtype=dtype)
  return {
      "g": lambda rngs: make_g(model, dtype, rngs=rngs),
      "f": lambda rngs: deblurrer(rngs=rngs),
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


# Mean absolute difference of two blurs of one face per unit of code distance beyond which
# the mode-seeking term stops pushing (two camera blurs of a 64 px face differ by ~0.03).
DIVERSITY_CAP = 0.03


def code_dim(config: ml_collections.ConfigDict) -> int:
  """The size of G's random code z (0: G is deterministic, as the paper's)."""
  if config.model.get("generator", "resnet") == "kernel_blur":
    return config.model.get("code_dim", 8) or 8
  return config.model.get("code_dim", 0)


def generator_randomness(config: ml_collections.ConfigDict, key: jax.Array,
                         count: int) -> tuple[jax.Array | None, jax.Array]:
  """z ~ N(0, I) for `count` images (None when G takes no code) and one noise key each."""
  code_key, noise_key = jax.random.split(key)
  dim = code_dim(config)
  codes = jax.random.normal(code_key, (count, dim)) if dim else None
  return codes, jax.random.split(noise_key, count)


def make_train_step(config: ml_collections.ConfigDict, networks: stage_lib.Networks,
                    tx: optax.GradientTransformation) -> loop.TrainStep:
  """The jitted update of G and F, then of both critics."""
  loss = config.loss
  cycle_weight = loss.cycle_weight
  identity_weight = loss.identity_weight * cycle_weight
  real_label = loss.real_label
  forward_cycle_weight = loss.get("forward_cycle_weight", 1.0)  # sharp -> blurred -> sharp
  cycle_noise_std = loss.get("cycle_noise_std", 0.0)
  cycle_updates_g = loss.get("cycle_updates_g", True)
  diversity_weight = loss.get("diversity_weight", 0.0)
  random_g = code_dim(config) > 0 or cycle_noise_std > 0
  ema_decay = state_lib.ema_decay(config)

  def bind(name: str, params: nnx.State):
    """The network `name` with `params`, as a function of images with float32 outputs."""
    return lambda images, *args: networks[name].apply(params, images, *args).astype(jnp.float32)

  def generator_loss(generators, critics, sharp, blurred, key):
    """Eq. 1 through the frozen critics + lambda * eq. 2 + the identity term, for G and F."""
    (g, f), (d_blurred, d_sharp) = generators, critics
    G, F, D_blurred, D_sharp = (  # the paper's names
        bind("g", g), bind("f", f), bind("d_blurred", d_blurred), bind("d_sharp", d_sharp))
    # The cycles' G: the same network, through which only F learns when cycle_updates_g=False.
    G_cycle = G if cycle_updates_g else bind("g", jax.lax.stop_gradient(g))
    metrics = {}
    if random_g:
      keys = jax.random.split(key, 4)
      z, noise = generator_randomness(config, keys[0], sharp.shape[0])
      z_cycle, noise_cycle = generator_randomness(config, keys[1], blurred.shape[0])
      fake_blurred = G(sharp, z, noise)
    else:
      fake_blurred = G(sharp)
    fake_sharp = F(blurred)
    adversarial = (losses.lsgan_generator_loss(D_blurred(fake_blurred), real_label=real_label)
                   + losses.lsgan_generator_loss(D_sharp(fake_sharp), real_label=real_label))
    # A forward cycle of weight 0 (the blur generators') is only watched, as the hidden-channel
    # diagnostic: without a gradient it costs F's forward pass and not its backward.
    if forward_cycle_weight:
      F_forward, to_f = F, fake_blurred
    else:
      F_forward = bind("f", jax.lax.stop_gradient(f))
      to_f = jax.lax.stop_gradient(fake_blurred)
    if random_g:
      # Noise on G(sharp) before F breaks a hidden low-amplitude channel (Chu et al. 2017).
      seen_by_f = to_f + cycle_noise_std * jax.random.normal(keys[2], sharp.shape)
      forward = losses.cycle_consistency_loss(F_forward(seen_by_f), sharp)
      backward = losses.cycle_consistency_loss(G_cycle(fake_sharp, z_cycle, noise_cycle),
                                               blurred)
    else:
      forward = losses.cycle_consistency_loss(F_forward(to_f), sharp)
      backward = losses.cycle_consistency_loss(G_cycle(fake_sharp), blurred)
    if forward_cycle_weight == 1.0:  # the paper's sum, as it was computed
      cycle = forward + backward
    else:
      cycle = (forward_cycle_weight * forward + backward) if forward_cycle_weight else backward
      metrics["generator/cycle_forward"] = forward
    total = adversarial + cycle_weight * cycle
    identity = jnp.zeros((), jnp.float32)
    if identity_weight > 0:
      identity = (losses.identity_loss(G(blurred), blurred)
                  + losses.identity_loss(F(sharp), sharp))
      total = total + identity_weight * identity
    if diversity_weight > 0 and code_dim(config) > 0:
      # Mode seeking (Mao et al. 2019): two codes, outputs that differ. Its ratio is capped
      # (as DSGAN's, Yang et al. 2019) so that it asks for diversity without outweighing the
      # critic once G has some, and its gradient stays bounded at no spread. It compares the
      # outputs without noise (and JPEG): a spread of noise levels would buy it cheaply, and
      # push G's noisiest codes far beyond anything the critic asked for.
      # (The CNN G takes no noise: its output is already noiseless.)
      noisy_g = config.model.get("generator", "resnet") == "kernel_blur"
      noiseless = G(sharp, z) if noisy_g else fake_blurred
      z_other, _ = generator_randomness(config, keys[3], sharp.shape[0])
      spread = (jnp.mean(jnp.abs(G(sharp, z_other) - noiseless))
                / jnp.mean(jnp.abs(z_other - z)))
      diversity = -jnp.minimum(spread, DIVERSITY_CAP)
      total = total + diversity_weight * diversity
      metrics["generator/diversity"] = diversity
    aux = {"fake_blurred": fake_blurred, "fake_sharp": fake_sharp,
           "metrics": {"generator/adversarial": adversarial, "generator/cycle": cycle,
                       "generator/identity": identity, "generator/total": total, **metrics}}
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

    step_key = jax.random.fold_in(state.rng, state.step)
    # G's own randomness comes from a key folded off the step's, so that the pools draw what
    # they drew before G took any.
    grads, aux = jax.grad(generator_loss, has_aux=True)(
        generators, critics, sharp, blurred, jax.random.fold_in(step_key, 1))
    (g, f), generator_opt_state = state_lib.apply_gradients(
        tx, generators, state.generator_opt_state, grads)

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
  check_selection_checkpoints(config)
  state = STAGE.train_and_evaluate(config, workdir)
  release.write_after_training(config, workdir, state)
  return state


SELECTION_FILE = "selection.json"
HIDDEN_NOISE_STD = 3 / 255  # Chu et al.'s perturbation that breaks a hidden channel
HIDDEN_JPEG_QUALITY = 75


def _transformed(source, transform, count: int) -> np.ndarray:
  return np.stack([transform(source[i], np.random.default_rng(i))["image"]
                   for i in range(min(count, len(source)))])


def _sampler(config, networks, sharp_source, workdir: pathlib.Path, writer: MetricWriter):
  """Every sample step: a grid of (sharp, G(sharp), F(G(sharp))) on fixed faces, the
  hidden-channel diagnostic, and G's blur realism against held-out real blurred photos.

  The diagnostic is the PSNR of F(G(sharp)) against sharp, as is, after Gaussian noise of
  3/255 on G(sharp) and after JPEG at quality 75. A G that hides the face in a low-amplitude
  signal gets it back nearly whole as is and loses most of it under the perturbations; a G
  that blurs loses the same either way. It scores the first `hidden_count` faces. The realism
  (`blur_realism`, MMD^2 of blur features) needs no paired ground truth, and its validation
  photos are of the training people, never a test face: it is what selects the checkpoint
  synthesis uses (`selection.json`).
  """
  transform = data_pipeline.cyclegan_transform(config.data.load_size, config.data.crop_size,
                                               train=False)
  validation_spec = config.data.get("blurred_validation")
  validation_count = config.data.get("validation_count", 100)
  count = max(config.num_samples, validation_count if validation_spec else 0)
  sharp = _transformed(sharp_source, transform, count)
  real_features = None  # the validation photos' blur features, computed once
  if validation_spec is not None and validation_spec.kind:
    validation = SkipBadRecords(factory.make_source(validation_spec,
                                                    image_size=config.data.load_size))
    real_photos = _transformed(validation, transform, validation_count)
    real_features = blur_realism.blur_features(real_photos)
    real_falloff = blur_realism.falloff_profile(real_photos)
    real_falloffs = blur_realism.per_image_falloff(real_photos)
  codes, noise_keys = generator_randomness(config, jax.random.key(config.seed), len(sharp))
  hidden = min(len(sharp), max(config.get("hidden_count", 100), config.num_samples))
  noise = HIDDEN_NOISE_STD * np.asarray(jax.random.normal(jax.random.key(config.seed + 1),
                                                          (hidden, *sharp.shape[1:])))
  # Two small programs, F's compiled once for its three batches of `hidden` faces: one program
  # for all of it took longer to compile ("The demo's wall time" in bench/RESULTS.md).
  blur = compilation.jit(lambda g, images: networks["g"].apply(
      g, images, codes, noise_keys).astype(jnp.float32), forward_only=True)
  deblur = compilation.jit(lambda f, images: networks["f"].apply(f, images).astype(jnp.float32),
                           forward_only=True)

  def psnr(images: np.ndarray) -> float:
    return float(np.mean(np.asarray(metrics.psnr(np.clip(images, 0, 1), sharp[:len(images)]))))

  def hook(step: int, state: CycleGANState) -> None:
    weights = sampled_weights(state)
    fake_blurred = np.asarray(blur(weights["g"], sharp))
    scored = fake_blurred[:hidden]
    cycled, cycled_noisy, cycled_jpeg = (np.asarray(deblur(weights["f"], images)) for images in (
        scored, scored + noise, blur_generator.jpeg_round_trip(
            scored, np.full(hidden, HIDDEN_JPEG_QUALITY))))
    scores = {"hidden/cycle_psnr": psnr(cycled),
              f"hidden/cycle_psnr_noise_{round(HIDDEN_NOISE_STD * 255)}": psnr(cycled_noisy),
              f"hidden/cycle_psnr_jpeg_{HIDDEN_JPEG_QUALITY}": psnr(cycled_jpeg),
              "hidden/blurred_psnr": psnr(fake_blurred)}
    if real_features is not None:
      realism = blur_realism.score_against(real_features, fake_blurred, num_permutations=50)
      fake_falloff = blur_realism.falloff_profile(fake_blurred)
      scores |= {"realism/mmd2": realism.mmd2,
                 "realism/classifier_accuracy": realism.classifier_accuracy,
                 "realism/falloff": blur_realism.falloff_distance(real_falloff, fake_falloff),
                 "realism/falloff_shift": blur_realism.falloff_shift(real_falloff, fake_falloff),
                 "realism/falloff_w1": blur_realism.falloff_wasserstein(
                     real_falloffs, blur_realism.per_image_falloff(fake_blurred))}
      if realism.precision is not None:  # logged, not part of the selection rule
        scores |= {"realism/precision": realism.precision, "realism/recall": realism.recall}
    if jax.process_index() != 0:
      return
    writer.write_scalars(step, scalars=scores)
    record_selection(workdir, step, scores, weights=sampled_weights_name(state),
                     score=selection_score(config))
    shown = config.num_samples
    rows = [list(images) for images in zip(sharp[:shown], fake_blurred[:shown],
                                           cycled[:shown], strict=True)]
    grid = save_grid(workdir / "samples" / f"step_{step:07d}.png", rows,
                     column_titles=["sharp", "G(sharp)", "F(G(sharp))"])
    writer.write_images(step, {"samples": grid})

  return hook


def sampled_weights_name(state: CycleGANState) -> str:
  """'ema' when the run keeps an EMA (`ema_decay > 0`), else 'params': the weights the sampler
  scores and synthesis uses. Scoring the weights that will make the labels keeps the
  selection about them."""
  return "ema" if state.ema is not None else "params"


def sampled_weights(state: CycleGANState) -> dict:
  """G's and F's weights named by `sampled_weights_name`."""
  return state.ema_params if sampled_weights_name(state) == "ema" else state.params


def check_selection_checkpoints(config: ml_collections.ConfigDict) -> None:
  """The checkpoint selection picks among sample steps: each must be saved and kept."""
  validation = config.data.get("blurred_validation")
  if validation is None or not validation.kind:
    return
  selection_score(config)
  sample, save = config.sample_every_steps, config.checkpoint_every_steps
  keep = config.get("keep_checkpoint_every_steps", 0)
  if sample % save or not keep or sample % keep:
    raise ConfigError(
        f"stage 1 selects a checkpoint among its sample steps (data.blurred_validation is "
        f"set), so sample_every_steps={sample} must be a multiple of checkpoint_every_steps="
        f"{save} and of keep_checkpoint_every_steps={keep} (> 0)")


def record_selection(workdir: pathlib.Path, step: int, scores: dict[str, float],
                     weights: str = "params", score: str = "realism/mmd2") -> None:
  """Adds a sample step's scores to `selection.json` (a resumed run rewrites its own steps).
  `weights` ('params' or 'ema') names the weights scored, which synthesis then uses; `score`
  is the one of `SELECTION_SCORES` whose lowest value selects."""
  path = workdir / SELECTION_FILE
  entries = json.loads(path.read_text())["steps"] if path.exists() else []
  entries = [entry for entry in entries if entry["step"] != step]
  entries.append({"step": step, **{k: float(v) for k, v in scores.items()}})
  entries.sort(key=lambda entry: entry["step"])
  selected = selected_step(entries, score)
  path.write_text(json.dumps({"selected_step": selected,
                              "rule": SELECTION_SCORES[score].description, "score": score,
                              "weights": weights, "steps": entries}, indent=2))


class SelectionRule(NamedTuple):
  """A label-free rule for stage 1's checkpoint: what it does, and the scores it reads."""
  description: str
  keys: tuple[str, ...]


# The label-free rules a run may select its checkpoint by (`selection_score` in the config);
# the sampler logs every score they read. Each compares G's blur of the sampled sharp faces
# with the validation photos of the blurred domain's people, never a test face.
SELECTION_SCORES = {
    "realism/mmd2": SelectionRule(
        "the sample step with the lowest realism/mmd2 (MMD^2 of per-image blur features "
        "against the validation photos)", ("realism/mmd2",)),
    "realism/falloff": SelectionRule(
        "the sample step with the lowest realism/falloff (the pooled spectrum's mid-band "
        "attenuation against the validation photos')", ("realism/falloff",)),
    "realism/mmd2_no_wider": SelectionRule(
        "the sample step with the lowest realism/mmd2 among those whose realism/falloff_shift "
        "is at least 0 (G blurs no wider than the validation photos by the spectrum's "
        "falloff); if none, the one with the largest shift",
        ("realism/mmd2", "realism/falloff_shift")),
    "realism/falloff_w1": SelectionRule(
        "the sample step with the lowest realism/falloff_w1 (the Wasserstein distance between "
        "the per-image mid-band attenuations of G's blur and of the validation photos)",
        ("realism/falloff_w1",)),
}


def selection_score(config: ml_collections.ConfigDict) -> str:
  """The score that selects stage 1's checkpoint (`selection_score`; MMD^2 by default)."""
  score = config.get("selection_score", "realism/mmd2")
  if score not in SELECTION_SCORES:
    raise ConfigError(f"cyclegan.selection_score={score!r}: expected one of "
                      f"{sorted(SELECTION_SCORES)}")
  return score


def selected_step(entries: list[dict], score: str = "realism/mmd2") -> int | None:
  """The step that rule `score` of `SELECTION_SCORES` picks (None: none scored).

  'realism/mmd2_no_wider' is MMD^2 with a one-sided guard: stage 2 forgives labels blurred
  more narrowly than the real photos and is hurt by wider ones (README, "A score that sees
  the width"), so steps whose blur is wider by the falloff are passed over.
  """
  scored = [entry for entry in entries
            if all(key in entry for key in SELECTION_SCORES[score].keys)]
  if not scored:
    return None
  if score == "realism/mmd2_no_wider":
    not_wider = [entry for entry in scored if entry["realism/falloff_shift"] >= 0]
    if not not_wider:
      return max(scored, key=lambda entry: entry["realism/falloff_shift"])["step"]
    return min(not_wider, key=lambda entry: entry["realism/mmd2"])["step"]
  return min(scored, key=lambda entry: entry[score])["step"]


def read_selected_step(workdir: str | pathlib.Path) -> int | None:
  """The step `selection.json` in a stage-1 workdir selects, or None."""
  path = pathlib.Path(workdir) / SELECTION_FILE
  return json.loads(path.read_text()).get("selected_step") if path.exists() else None


def read_selected_weights(workdir: str | pathlib.Path) -> str:
  """The weights ('params' or 'ema') the selection in a stage-1 workdir scored."""
  path = pathlib.Path(workdir) / SELECTION_FILE
  return json.loads(path.read_text()).get("weights", "params") if path.exists() else "params"


STAGE = stage_lib.Stage(
    job="cyclegan", make_networks=make_networks, optimizer=optimizer, init_fn=init_fn,
    make_train_step=make_train_step, sources=sources, make_batches=make_batches,
    make_hooks=make_hooks)
