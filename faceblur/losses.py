"""The training losses of both stages (equations 1-3 of the paper), as pure JAX functions.

Stage 1 (CycleGAN) uses the least-squares form of the adversarial loss (eq. 1), as the official
CycleGAN code and the paper's own code do: the discriminator pushes real scores to `real_label`
(1, or 0.9 in the paper's code) and fake scores to 0, and its loss is halved; the generator
pushes fake scores to `real_label`. Cycle consistency (eq. 2) and identity are L1; their
weights (lambda = 10 and 0.5 * lambda) are applied by the caller from the config. Both take
images in [0, 1] but measure the distance on the [-1, 1] scale, where the official CycleGAN
(inputs normalised with mean 0.5, std 0.5) and the paper's own code compute them: on [0, 1]
every L1 term is halved, which silently halves lambda against the LSGAN term.

Stage 2 (SRN) uses the multi-scale Euclidean loss (eq. 3): sum_i kappa_i / N_i ||I_i - I*_i||^2,
the mean squared error at each scale against the sharp image resized to that scale.

Every loss returns a float32 scalar, whatever the dtype of its inputs (bfloat16 activations
are upcast before squaring and averaging).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from faceblur.errors import ConfigError
from faceblur.models.layers import resize_images


def _f32(x) -> jax.Array:
  return jnp.asarray(x).astype(jnp.float32)


def lsgan_discriminator_loss(real_scores, fake_scores, *, real_label: float = 1.0) -> jax.Array:
  """0.5 * (mean((D(real) - real_label)^2) + mean(D(fake)^2)): the halved LSGAN critic loss."""
  real = jnp.mean(jnp.square(_f32(real_scores) - real_label))
  fake = jnp.mean(jnp.square(_f32(fake_scores)))
  return 0.5 * (real + fake)


def lsgan_generator_loss(fake_scores, *, real_label: float = 1.0) -> jax.Array:
  """mean((D(G(x)) - real_label)^2): the generator wants its fakes scored as real."""
  return jnp.mean(jnp.square(_f32(fake_scores) - real_label))


def l1_loss(predicted, target) -> jax.Array:
  """Mean absolute difference over every element."""
  return jnp.mean(jnp.abs(_f32(predicted) - _f32(target)))


def to_signed(images) -> jax.Array:
  """[0, 1] images on the [-1, 1] scale the CycleGAN references compute their L1 terms on."""
  return 2.0 * _f32(images) - 1.0


def cycle_consistency_loss(reconstructed, original) -> jax.Array:
  """Eq. 2 for one direction: mean |F(G(x)) - x| on the [-1, 1] scale (inputs in [0, 1]);
  the caller adds both directions and weighs."""
  return l1_loss(to_signed(reconstructed), to_signed(original))


def identity_loss(mapped, original) -> jax.Array:
  """Mean |G(y) - y| on the [-1, 1] scale, for y already in G's target domain (inputs in
  [0, 1]): CycleGAN's identity term."""
  return l1_loss(to_signed(mapped), to_signed(original))


def multiscale_euclidean_loss(estimates: Sequence[jax.Array], sharp: jax.Array,
                              weights: Sequence[float] | None = None) -> jax.Array:
  """Eq. 3: sum_i w_i * mean((estimate_i - resize(sharp, size of estimate_i))^2).

  `estimates` are the network's outputs at each scale (any order, NHWC), `sharp` the
  full-resolution ground truth; each target is `sharp` bilinearly resized (`resize_images`)
  to the estimate's height and width. `weights` (kappa_i) default to 1 for every scale, as in
  the official SRN code, and must have one entry per estimate.
  """
  estimates = list(estimates)
  if not estimates:
    raise ValueError("multiscale_euclidean_loss needs at least one estimate")
  if weights is None:
    weights = [1.0] * len(estimates)
  weights = list(weights)
  if len(weights) != len(estimates):
    raise ConfigError(f"loss.scale_weights has {len(weights)} entries but the network returns "
                      f"{len(estimates)} scales; give one weight per scale")
  sharp = _f32(sharp)
  total = jnp.zeros((), jnp.float32)
  for weight, estimate in zip(weights, estimates, strict=True):
    estimate = _f32(estimate)
    if estimate.ndim != 4 or estimate.shape[0] != sharp.shape[0] or (
        estimate.shape[-1] != sharp.shape[-1]):
      raise ValueError(f"estimate of shape {estimate.shape} does not match sharp images of shape "
                       f"{sharp.shape} in batch size and channels")
    target = resize_images(sharp, estimate.shape[1], estimate.shape[2])
    total = total + weight * jnp.mean(jnp.square(estimate - target))
  return total
