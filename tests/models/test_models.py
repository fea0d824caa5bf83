"""The networks match the reference implementations' sizes and behave at their boundaries."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from faceblur.models import PatchDiscriminator, ResnetGenerator, SRNDeblurNet, layers
from faceblur.models import srn as srn_lib
from faceblur.models.layers import ConvLSTMCell, instance_norm, reflect_pad


def count(module) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(nnx.state(module, nnx.Param)))


def abstract_count(make) -> int:
  """Parameter count without allocating or compiling initialisers."""
  state = jax.eval_shape(lambda: nnx.state(make(), nnx.Param))
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(state))


def transposed_conv_reference(inputs, kernel, stride: int, padding: int, out_size):
  """torch ConvTranspose2d / TF conv2d_transpose, written as the scatter they define: input
  pixel i adds kernel[k] * x[i] to output pixel stride * i + k - padding. kernel: (kh, kw,
  out, in)."""
  batch, height, width, _ = inputs.shape
  kernel_h, kernel_w, out_features, _ = kernel.shape
  outputs = np.zeros((batch, *out_size, out_features))
  for y in range(height):
    for x in range(width):
      for ky in range(kernel_h):
        for kx in range(kernel_w):
          oy, ox = stride * y + ky - padding, stride * x + kx - padding
          if 0 <= oy < out_size[0] and 0 <= ox < out_size[1]:
            outputs[:, oy, ox] += inputs[:, y, x] @ kernel[ky, kx].T
  return outputs


# One jitted forward for every module (nnx.jit takes the module as an argument). SRN forwards
# run at 64 px or more where they can: XLA on CPU compiles convolutions over tiny (2x2) maps
# several times slower, and a cold test run is dominated by compilation.
forward = nnx.jit(lambda model, images: model(images))


def convolution_dtypes(model, images) -> list[tuple[str, str]]:
  """(input, kernel) element types of every convolution in the lowered forward of `model`."""
  graphdef, state = nnx.split(model)
  text = jax.jit(lambda state, images: nnx.merge(graphdef, state)(images)).lower(
      state, images).as_text()
  return [re.search(r": \(tensor<[^>]*x(\w+)>, tensor<[^>]*x(\w+)>\)", line).groups()
          for line in text.splitlines() if "stablehlo.convolution" in line]


@pytest.fixture(scope="module")
def small_generator():
  return ResnetGenerator(num_blocks=2, features=8, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def tiny_srn():
  return SRNDeblurNet(features=8, num_scales=2, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def tiny_srn_without_lstm():
  return SRNDeblurNet(features=8, num_scales=2, use_lstm=False, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def srn():
  return SRNDeblurNet(rngs=nnx.Rngs(0))


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


def test_srn_full_size_model_has_the_reference_count(srn):
  assert count(srn) == 8_061_411


def test_srn_shares_weights_across_scales():
  counts = {abstract_count(lambda n=n: SRNDeblurNet(num_scales=n, rngs=nnx.Rngs(0)))
            for n in (1, 2, 3, 4)}
  assert counts == {8_061_411}


def test_parameters_are_float32_under_bfloat16():
  generator = jax.eval_shape(
      lambda: nnx.state(ResnetGenerator(num_blocks=1, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))))
  assert {leaf.dtype for leaf in jax.tree.leaves(generator)} == {np.dtype(np.float32)}


def test_initialisers_are_the_references(small_generator, tiny_srn):
  kernel = small_generator.blocks[0][0].kernel[...]  # normal(0, 0.02), zero biases
  assert abs(float(jnp.std(kernel)) - 0.02) < 0.002
  assert float(jnp.abs(small_generator.blocks[0][0].bias[...]).max()) == 0.0
  kernel = tiny_srn.enc2_blocks[0].conv1.kernel[...]  # xavier: U(+-sqrt(6 / (fan_in + fan_out)))
  limit = np.sqrt(6 / (2 * 25 * 16))
  assert limit * 0.9 < float(jnp.abs(kernel).max()) <= limit
  assert float(jnp.abs(tiny_srn.enc2_blocks[0].conv1.bias[...]).max()) == 0.0


def test_srn_conv_lstm_starts_truncated_normal_with_sigma_1e_3(tiny_srn):
  # SRN-Deblur's BasicConvLSTMCell: truncated_normal_initializer(stddev=1e-3), bias 0.
  kernel = np.asarray(tiny_srn.lstm.gates.kernel[...])
  assert kernel.shape == (3, 3, 2 * 32, 4 * 32)
  assert np.abs(kernel).max() <= 2e-3  # cut at two sigma
  # The std of a normal truncated at +-2 sigma is 0.880 sigma; Xavier here would be ~0.025.
  np.testing.assert_allclose(kernel.std(), 0.880e-3, rtol=0.05)
  assert float(np.abs(np.asarray(tiny_srn.lstm.gates.bias[...])).max()) == 0.0


def test_generator_keeps_shape_and_range(small_generator):
  images = jax.random.uniform(jax.random.PRNGKey(1), (2, 32, 44, 3))
  out = forward(small_generator, images)
  assert out.shape == images.shape and out.dtype == jnp.float32
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
  with pytest.raises(ValueError, match="divisible by 4"):
    small_generator(jnp.zeros((1, 30, 32, 3)))


def test_conv_module_keeps_flax_parameters_and_initialisation():
  """`layers.Conv` is `nnx.Conv` (same names, shapes and draws): checkpoints stay valid."""
  ours, reference = (make(6, 4, (5, 5), rngs=nnx.Rngs(3)) for make in (layers.Conv, nnx.Conv))
  assert isinstance(ours, nnx.Conv)
  for name in ("kernel", "bias"):
    np.testing.assert_array_equal(getattr(ours, name)[...], getattr(reference, name)[...])
  inputs = jax.random.normal(jax.random.key(2), (1, 8, 8, 6))
  np.testing.assert_allclose(ours(inputs), reference(inputs), rtol=1e-6, atol=1e-6)


def test_generator_upsampling_is_torch_conv_transpose(small_generator):
  """ConvTranspose2d(3, stride=2, padding=1, output_padding=1): same values, size doubled."""
  up = nnx.clone(small_generator.up[1])  # 16 -> 8 features; the fixture stays untouched
  inputs = np.random.default_rng(0).normal(size=(1, 5, 7, 16)).astype(np.float32)
  kernel = np.random.default_rng(1).normal(size=up.kernel.shape).astype(np.float32)
  up.kernel[...] = kernel
  outputs = up(jnp.asarray(inputs))
  assert outputs.shape == (1, 10, 14, 8)
  expected = transposed_conv_reference(inputs, kernel, 2, 1, (10, 14))
  np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-4)
  # A constant upsamples to a uniform image (per stride phase) away from the last row/column.
  flat = np.asarray(up(jnp.ones((1, 6, 6, 16))))
  for row in (0, 1):
    for column in (0, 1):
      phase = flat[:, row:10:2, column:10:2]
      np.testing.assert_allclose(phase, np.broadcast_to(phase[:, :1, :1], phase.shape),
                                 rtol=1e-5, atol=1e-5)


def test_patchgan_patch_grid():
  critic = PatchDiscriminator(features=8, rngs=nnx.Rngs(0))
  scores = forward(critic, jax.random.uniform(jax.random.PRNGKey(0), (2, 64, 64, 3)))
  assert scores.shape == (2, 6, 6, 1) and scores.dtype == jnp.float32
  assert bool(jnp.isfinite(scores).all()) and float(jnp.std(scores)) > 0
  assert nnx.eval_shape(critic, jnp.zeros((1, 256, 256, 3))).shape == (1, 30, 30, 1)


def test_bfloat16_generator_and_critic_are_close_to_float32():
  images = jax.random.uniform(jax.random.PRNGKey(3), (1, 32, 32, 3))
  for make in (lambda dtype: ResnetGenerator(num_blocks=2, features=8, dtype=dtype,
                                             rngs=nnx.Rngs(0)),
               lambda dtype: PatchDiscriminator(features=8, dtype=dtype, rngs=nnx.Rngs(0))):
    full, half = forward(make(jnp.float32), images), forward(make(jnp.bfloat16), images)
    assert half.dtype == jnp.float32
    # The convolutions do run in bfloat16 (inputs and kernels), not float32 cast at the end.
    assert set(convolution_dtypes(make(jnp.bfloat16), images)) == {("bf16", "bf16")}
    assert set(convolution_dtypes(make(jnp.float32), images)) == {("f32", "f32")}
    assert float(jnp.max(jnp.abs(full - half))) < 0.05 * float(jnp.max(jnp.abs(full))) + 0.02


@pytest.mark.parametrize("height, width", [(64, 64), (36, 44), (20, 28), (30, 42)])
def test_srn_returns_every_scale_coarse_to_fine(srn, height, width):
  estimates = forward(srn, jnp.full((1, height, width, 3), 0.5))
  expected = [(round(height / 4), round(width / 4)), (round(height / 2), round(width / 2)),
              (height, width)]
  assert [e.shape[1:3] for e in estimates] == expected
  assert all(e.shape[-1] == 3 and e.dtype == jnp.float32 for e in estimates)
  assert all(bool(jnp.isfinite(e).all()) for e in estimates)


def test_srn_runs_under_split_merge_and_jax_jit(tiny_srn):
  graphdef, state = nnx.split(tiny_srn)
  merged_forward = jax.jit(lambda state, blurred: nnx.merge(graphdef, state)(blurred))
  blurred = jax.random.uniform(jax.random.PRNGKey(4), (1, 64, 64, 3))
  for jitted, via_nnx in zip(merged_forward(state, blurred), forward(tiny_srn, blurred),
                             strict=True):
    np.testing.assert_allclose(jitted, via_nnx, rtol=1e-5, atol=1e-5)


def test_srn_narrow_grey_variant():
  model = SRNDeblurNet(channels=1, features=8, num_scales=2, rngs=nnx.Rngs(0))
  estimates = forward(model, jnp.zeros((2, 72, 60, 1)))
  assert [e.shape for e in estimates] == [(2, 36, 30, 1), (2, 72, 60, 1)]


def test_srn_upsampling_is_tf_conv2d_transpose_same(tiny_srn):
  """conv2d_transpose(4x4, stride 2, SAME) scatters to 2 * i + k - 1 and doubles the size."""
  up = tiny_srn.dec2_up  # 16 -> 8 features
  inputs = np.random.default_rng(0).normal(size=(2, 3, 5, 16)).astype(np.float32)
  outputs = up(jnp.asarray(inputs))
  expected = transposed_conv_reference(inputs, np.asarray(up.kernel[...]), 2, 1, (6, 10))
  np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-5)


def test_srn_gradients_reach_every_parameter(srn):
  graphdef, params = nnx.split(srn)
  blurred = jax.random.uniform(jax.random.PRNGKey(0), (1, 64, 64, 3))

  @jax.jit
  def grad(params):
    loss = lambda p: sum(jnp.mean(e**2) for e in nnx.merge(graphdef, p)(blurred))  # noqa: E731
    return jax.grad(loss)(params)

  grads = jax.tree.leaves(grad(params))
  assert all(bool(jnp.isfinite(leaf).all()) for leaf in grads)
  assert all(float(jnp.abs(leaf).max()) > 0 for leaf in grads)


def test_srn_does_not_backpropagate_through_the_upsampled_estimate(tiny_srn_without_lstm,
                                                                   monkeypatch):
  """Without the ConvLSTM the finest loss reaches the coarse pass only through the upsampled
  estimate, which must be detached: its gradient is that of one pass with a constant input."""
  model = tiny_srn_without_lstm
  graphdef, params = nnx.split(model)
  blurred = jax.random.uniform(jax.random.PRNGKey(5), (1, 64, 64, 3))
  coarse = forward(model, blurred)[0]
  finest_input = jnp.concatenate([blurred, srn_lib.resize_images(coarse, 64, 64)], axis=-1)

  def finest_loss(params):
    return jnp.mean(nnx.merge(graphdef, params)(blurred)[-1] ** 2)

  def detached_loss(params):
    return jnp.mean(nnx.merge(graphdef, params)._one_scale(finest_input, None)[0] ** 2)

  expected = jax.jit(jax.grad(detached_loss))(params)
  close = lambda a, b: all(np.allclose(x, y, rtol=1e-4, atol=1e-7)  # noqa: E731
                           for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
  assert close(jax.jit(jax.grad(finest_loss))(params), expected)
  monkeypatch.setattr(jax.lax, "stop_gradient", lambda x: x)  # the check can fail
  assert not close(jax.jit(jax.grad(finest_loss))(params), expected)


def test_srn_lstm_state_is_aligned_across_paddings(tiny_srn):
  """A state that is constant in content is carried as a constant (no stretched padding)."""
  model = tiny_srn
  state = jnp.ones((1, 3, 3, 32))  # 9 px of content padded to 12: 2.25 state px of content
  resized = model._carry_to_scale((state, state), (9, 9), (18, 18), (20, 20), 1)
  assert resized[0].shape == (1, 5, 5, 32)
  np.testing.assert_allclose(resized[0], 1.0)
  ramp = jnp.arange(3.0)[None, :, None, None] * jnp.ones((1, 3, 3, 32))
  moved = model._carry_to_scale((ramp, ramp), (9, 9), (18, 18), (20, 20), 1)[0]
  # Content edge maps to content edge: state row r (centre r + 0.5) samples (r + 0.5) / 2 - 0.5.
  np.testing.assert_allclose(moved[0, :, 0, 0], [0.0, 0.25, 0.75, 1.25, 1.75], atol=1e-6)


def test_srn_bfloat16_is_close_to_float32(tiny_srn):
  half = SRNDeblurNet(features=8, num_scales=2, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  blurred = jax.random.uniform(jax.random.PRNGKey(4), (1, 64, 64, 3))
  full, reduced = forward(tiny_srn, blurred)[-1], forward(half, blurred)[-1]
  assert reduced.dtype == jnp.float32
  # Every convolution, the ConvLSTM's included, runs in bfloat16 (measured: 96 of 96).
  dtypes = convolution_dtypes(half, blurred)
  assert len(dtypes) == len(convolution_dtypes(tiny_srn, blurred)) > 0
  assert set(dtypes) == {("bf16", "bf16")}
  assert float(jnp.max(jnp.abs(full - reduced))) < 0.05 * float(jnp.max(jnp.abs(full))) + 0.02


def test_instance_norm_matches_numpy():
  features = np.random.default_rng(0).normal(3, 2, (2, 5, 6, 4)).astype(np.float32)
  mean = features.mean(axis=(1, 2), keepdims=True)
  std = np.sqrt(features.var(axis=(1, 2), keepdims=True) + 1e-5)
  np.testing.assert_allclose(instance_norm(jnp.asarray(features)), (features - mean) / std,
                             atol=1e-5)
  half = instance_norm(jnp.asarray(features, jnp.bfloat16))
  assert half.dtype == jnp.bfloat16
  np.testing.assert_allclose(half.astype(jnp.float32), (features - mean) / std, atol=0.05)


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
  gates = np.array([0.8, 0.3]) @ kernel  # i, j (candidate), f (+ forget bias 1), o: as TF
  expected_cell = -0.2 * sigmoid(gates[2] + 1.0) + sigmoid(gates[0]) * np.tanh(gates[1])
  expected_hidden = np.tanh(expected_cell) * sigmoid(gates[3])
  np.testing.assert_allclose(float(cell_state[0, 0, 0, 0]), expected_cell, rtol=1e-5)
  np.testing.assert_allclose(float(hidden[0, 0, 0, 0]), expected_hidden, rtol=1e-5)
  assert out is hidden


def test_conv_lstm_carry_shapes_and_3x3_gates():
  cell = ConvLSTMCell(128, 128, rngs=nnx.Rngs(0))
  assert cell.gates.kernel.shape == (3, 3, 256, 512)
  carry = cell.initial_carry((2, 3, 4))
  assert [s.shape for s in carry] == [(2, 3, 4, 128)] * 2
  assert all(float(jnp.abs(s).max()) == 0 for s in carry)
  (hidden, state), out = cell(jnp.ones((2, 3, 4, 128)), carry)
  assert hidden.shape == state.shape == out.shape == (2, 3, 4, 128)


def test_residual_srn_starts_as_the_identity():
  model = SRNDeblurNet(features=8, num_scales=2, residual=True, rngs=nnx.Rngs(0))
  blurred = jax.random.uniform(jax.random.PRNGKey(6), (1, 64, 64, 3))
  coarse, finest = forward(model, blurred)
  np.testing.assert_allclose(finest, blurred, atol=1e-6)
  np.testing.assert_allclose(coarse, srn_lib.resize_images(blurred, 32, 32), atol=1e-6)


def test_residual_generator_starts_as_the_identity_and_stays_in_range():
  model = ResnetGenerator(num_blocks=1, features=8, residual=True, rngs=nnx.Rngs(0))
  images = jax.random.uniform(jax.random.PRNGKey(7), (2, 32, 32, 3))
  np.testing.assert_allclose(forward(model, images), images, atol=1e-6)
  # A non-zero correction is added on the [-1, 1] scale and clipped there.
  model.head.bias[...] = jnp.full_like(model.head.bias[...], 3.0)  # tanh(3) = 0.995
  shifted = np.asarray(forward(model, images))
  expected = (np.clip(2 * np.asarray(images) - 1 + np.tanh(3.0), -1, 1) + 1) / 2
  np.testing.assert_allclose(shifted, expected, atol=1e-6)
  assert shifted.max() == 1.0
