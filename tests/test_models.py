"""The networks match the reference implementations' sizes and behave at their boundaries."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from faceblur.models import PatchDiscriminator, ResnetGenerator, SRNDeblurNet
from faceblur.models.layers import ConvLSTMCell, instance_norm, reflect_pad


def count(module) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(nnx.state(module, nnx.Param)))


def abstract_count(make) -> int:
  """Parameter count without allocating or compiling initialisers."""
  state = jax.eval_shape(lambda: nnx.state(make(), nnx.Param))
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(state))


@pytest.mark.parametrize("make, expected", [
    (lambda: ResnetGenerator(num_blocks=9, rngs=nnx.Rngs(0)), 11_378_179),
    (lambda: ResnetGenerator(num_blocks=6, rngs=nnx.Rngs(0)), 7_837_699),
    (lambda: PatchDiscriminator(rngs=nnx.Rngs(0)), 2_764_737),
    (lambda: SRNDeblurNet(rngs=nnx.Rngs(0)), 8_061_411),
    (lambda: SRNDeblurNet(use_lstm=False, rngs=nnx.Rngs(0)), 6_881_251),
    (lambda: SRNDeblurNet(channels=1, rngs=nnx.Rngs(0)), 8_056_609),
])
def test_parameter_counts_match_the_reference(make, expected):
  assert abstract_count(make) == expected


def test_srn_shares_weights_across_scales():
  two = abstract_count(lambda: SRNDeblurNet(num_scales=2, rngs=nnx.Rngs(0)))
  assert two == abstract_count(lambda: SRNDeblurNet(num_scales=3, rngs=nnx.Rngs(0)))


@pytest.fixture(scope="module")
def small_generator():
  return ResnetGenerator(num_blocks=2, features=8, rngs=nnx.Rngs(0))


def test_generator_keeps_shape_and_range(small_generator):
  images = jax.random.uniform(jax.random.PRNGKey(1), (2, 32, 44, 3))
  out = small_generator(images)
  assert out.shape == images.shape
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_generator_upsampling_doubles_exactly(small_generator):
  features = jnp.ones((1, 5, 7, 32))
  assert small_generator.up[0](features).shape == (1, 10, 14, 16)


def test_patchgan_patch_grid():
  critic = PatchDiscriminator(features=8, rngs=nnx.Rngs(0))
  assert critic(jnp.zeros((2, 64, 64, 3))).shape == (2, 6, 6, 1)
  assert critic(jnp.zeros((1, 256, 256, 3))).shape == (1, 30, 30, 1)


@pytest.fixture(scope="module")
def srn():
  return SRNDeblurNet(rngs=nnx.Rngs(0))


@pytest.mark.parametrize("height, width", [(64, 64), (36, 44), (20, 28), (30, 42)])
def test_srn_returns_every_scale_coarse_to_fine(srn, height, width):
  estimates = srn(jnp.zeros((1, height, width, 3)))
  expected = [(round(height / 4), round(width / 4)), (round(height / 2), round(width / 2)),
              (height, width)]
  assert [e.shape[1:3] for e in estimates] == expected
  assert all(e.shape[-1] == 3 and e.dtype == jnp.float32 for e in estimates)


def test_srn_gradients_reach_every_parameter(srn):
  graphdef, params = nnx.split(srn)
  blurred = jax.random.uniform(jax.random.PRNGKey(0), (1, 32, 32, 3))

  def loss(params):
    return sum(jnp.mean(estimate**2) for estimate in nnx.merge(graphdef, params)(blurred))

  grads = jax.tree.leaves(jax.grad(loss)(params))
  assert all(bool(jnp.isfinite(leaf).all()) for leaf in grads)
  assert all(float(jnp.abs(leaf).max()) > 0 for leaf in grads)


def test_srn_bfloat16_is_close_to_float32(srn):
  model = srn
  half = SRNDeblurNet(dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  blurred = jax.random.uniform(jax.random.PRNGKey(2), (1, 32, 32, 3))
  full, reduced = model(blurred)[-1], half(blurred)[-1]
  assert reduced.dtype == jnp.float32
  assert float(jnp.max(jnp.abs(full - reduced))) < 0.05 * float(jnp.max(jnp.abs(full))) + 0.02


def test_instance_norm_matches_numpy():
  features = np.random.default_rng(0).normal(3, 2, (2, 5, 6, 4)).astype(np.float32)
  mean = features.mean(axis=(1, 2), keepdims=True)
  std = np.sqrt(features.var(axis=(1, 2), keepdims=True) + 1e-5)
  np.testing.assert_allclose(instance_norm(jnp.asarray(features)), (features - mean) / std,
                             atol=1e-5)


def test_reflect_pad_matches_numpy():
  images = np.arange(2 * 4 * 5 * 3, dtype=np.float32).reshape(2, 4, 5, 3)
  expected = np.pad(images, ((0, 0), (3, 3), (3, 3), (0, 0)), mode="reflect")
  np.testing.assert_array_equal(reflect_pad(jnp.asarray(images), 3), expected)


def test_conv_lstm_gates_match_a_hand_computation():
  cell = ConvLSTMCell(1, 1, kernel_size=1, rngs=nnx.Rngs(0))
  kernel = np.array([[0.5, -1.0, 0.25, 2.0], [1.0, 0.5, -0.5, 1.0]], np.float32)  # (in+h, 4)
  cell.gates.kernel[...] = kernel.reshape(1, 1, 2, 4)
  cell.gates.bias[...] = np.zeros(4, np.float32)
  inputs = jnp.full((1, 1, 1, 1), 0.8)
  carry = (jnp.full((1, 1, 1, 1), 0.3), jnp.full((1, 1, 1, 1), -0.2))
  (hidden, cell_state), out = cell(inputs, carry)
  sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
  gates = np.array([0.8, 0.3]) @ kernel
  expected_cell = -0.2 * sigmoid(gates[2] + 1.0) + sigmoid(gates[0]) * np.tanh(gates[1])
  expected_hidden = np.tanh(expected_cell) * sigmoid(gates[3])
  np.testing.assert_allclose(float(cell_state[0, 0, 0, 0]), expected_cell, rtol=1e-5)
  np.testing.assert_allclose(float(hidden[0, 0, 0, 0]), expected_hidden, rtol=1e-5)
  assert out is hidden
  assert [s.shape for s in cell.initial_carry((2, 3, 4))] == [(2, 3, 4, 1)] * 2
