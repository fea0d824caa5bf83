"""faceblur.ops: the XLA:CPU convolution rewrites equal autodiff of the plain convolution, and
one switch chooses between them and the plain forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from faceblur import ops
from faceblur.models import KernelBlurGenerator, PatchDiscriminator, ResnetGenerator, SRNDeblurNet
from faceblur.models.layers import ConvTranspose
from faceblur.ops import compilation, cpu_convolutions
from faceblur.train import partitioning
from faceblur.train import state as state_lib

_FORMER_SWITCH = "FACEBLUR_CPU_COMPILER_OPTIONS"


@pytest.mark.parametrize("kernel_size, flax_padding, size", [
    (3, ((1, 2), (1, 2)), (5, 7)),
    (4, "SAME", (5, 7)),
    (4, "SAME", (3, 4)),  # too short for the tall kernel gradient: XLA's own
])
def test_conv_transpose_gradients_match_autodiff(kernel_size, flax_padding, size):
  """The custom VJP (fast kernel gradient on CPU) equals autodiff of flax's transposed conv."""
  ours = ConvTranspose(6, 4, kernel_size, transposed_conv=cpu_convolutions.transposed_conv,
                       rngs=nnx.Rngs(0))
  reference = nnx.ConvTranspose(6, 4, (kernel_size, kernel_size), strides=(2, 2),
                                padding=flax_padding, transpose_kernel=True, rngs=nnx.Rngs(0))
  reference.kernel[...] = ours.kernel[...]
  ours.bias[...] = reference.bias[...] = jnp.arange(4.0)
  inputs = jax.random.normal(jax.random.key(1), (2, *size, 6))

  def loss(module, inputs):
    return jnp.sum(jnp.sin(module(inputs)))

  (ours_grad, ours_input_grad), (ref_grad, ref_input_grad) = (
      nnx.grad(loss, argnums=(0, 1))(module, inputs) for module in (ours, reference))
  np.testing.assert_allclose(ours(inputs), reference(inputs), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(ours_grad.kernel[...], ref_grad.kernel[...], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(ours_grad.bias[...], ref_grad.bias[...], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(ours_input_grad, ref_input_grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("features, out_features, kernel_size, stride, padding, size", [
    (3, 7, 3, 1, "SAME", (9, 7)),             # narrow input: matrix product input gradient
    (20, 7, 5, 1, "SAME", (16, 12)),          # grouped by 8 input channels, uneven last group
    (6, 7, 5, 1, "SAME", (10, 12)),           # too short for the tall kernel gradient: XLA's own
    (40, 7, 3, 1, ((2, 0), (1, 3)), (8, 5)),  # wide, asymmetric padding, non-square kernel below
    (5, 3, 7, 1, "VALID", (9, 9)),            # narrow output (RGB): matrix product forward
    (6, 1, 4, 1, ((1, 1), (1, 1)), (7, 7)),   # PatchGAN's last layer
    (160, 7, 3, 1, "SAME", (6, 6)),           # wider than the fast kernel gradient takes
    (6, 7, 5, 2, "SAME", (16, 12)),           # strided: gradients split by phase
    (4, 7, 4, 2, ((1, 1), (1, 1)), (8, 10)),
    (3, 7, 3, 3, "SAME", (12, 12)),
    (5, 7, 3, 2, ((1, 1), (1, 1)), (10, 10)),  # one more input row than the kernel reads
    (3, 7, 3, 2, "SAME", (9, 9)),             # odd size: XLA's own input gradient
])
def test_conv_gradients_match_autodiff(features, out_features, kernel_size, stride, padding,
                                       size):
  """`cpu_convolutions.conv_general_dilated` (every model convolution on a CPU) has autodiff's
  value and gradients for every shape it reformulates and every one it hands on."""
  kernel_shape = (kernel_size, kernel_size - (features == 40), features, out_features)
  inputs = jax.random.normal(jax.random.key(0), (2, *size, features))
  kernel = jax.random.normal(jax.random.key(1), kernel_shape)

  def loss(conv, inputs, kernel):
    outputs = conv(inputs, kernel, (stride, stride), padding,
                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.sum(jnp.sin(outputs)), outputs

  grad = jax.jit(jax.grad(loss, argnums=(1, 2), has_aux=True), static_argnums=0)
  (ours_inputs, ours_kernel), ours = grad(cpu_convolutions.conv_general_dilated, inputs, kernel)
  (ref_inputs, ref_kernel), reference = grad(jax.lax.conv_general_dilated, inputs, kernel)
  # Relative to the largest entry: the reformulations sum in another order.
  for ours_value, ref_value in ((ours, reference), (ours_inputs, ref_inputs),
                                (ours_kernel, ref_kernel)):
    scale = np.abs(ref_value).max()
    np.testing.assert_allclose(ours_value / scale, ref_value / scale, rtol=0, atol=1e-5)


@pytest.mark.parametrize("images, size", [((2, 10, 12, 3), 5), ((3, 9, 7, 1), 3),
                                           ((1, 8, 8, 2), 1)])
def test_convolve_each_through_ffts_matches_the_grouped_convolution(images, size):
  """`cpu_convolutions.convolve_each` (the kernel-blur G on a CPU) has the grouped
  convolution's value and gradients, for odd and even sides and a 1-tap kernel."""
  n, height, width, _ = images
  padded = jax.random.uniform(jax.random.key(0), (n, height + size - 1, width + size - 1,
                                                  images[-1]))
  kernels = jax.random.uniform(jax.random.key(1), (n, size, size))

  def loss(convolve_each, padded, kernels):
    outputs = convolve_each(padded, kernels)
    return jnp.sum(jnp.sin(3 * outputs)), outputs

  grad = jax.jit(jax.grad(loss, argnums=(1, 2), has_aux=True), static_argnums=0)
  (ours_padded, ours_kernels), ours = grad(cpu_convolutions.convolve_each, padded, kernels)
  (ref_padded, ref_kernels), reference = grad(ops.plain_convolve_each, padded, kernels)
  assert ours.shape == reference.shape == images
  for ours_value, ref_value in ((ours, reference), (ours_padded, ref_padded),
                                (ours_kernels, ref_kernels)):
    scale = np.abs(ref_value).max()
    np.testing.assert_allclose(ours_value / scale, ref_value / scale, rtol=0, atol=1e-5)


@pytest.fixture
def switch(monkeypatch):
  """`switch(name, value)` sets one of faceblur.ops' switch variables for the test, after
  removing both (the CI environment may set either)."""
  def set_switch(name: str | None = None, value: str = "off") -> None:
    for variable in (ops.SWITCH, _FORMER_SWITCH):
      monkeypatch.delenv(variable, raising=False)
    if name is not None:
      monkeypatch.setenv(name, value)
  return set_switch


def _model_convolutions(monkeypatch) -> tuple[set, set, dict]:
  """The convolution functions of all three networks (plain, then transposed and the kernel-blur
  G's), as they are built now, and the keyword arguments `compilation.jit` hands to `jax.jit`."""
  models = [nnx.eval_shape(lambda: ResnetGenerator(num_blocks=1, features=4, rngs=nnx.Rngs(0))),
            nnx.eval_shape(lambda: PatchDiscriminator(features=4, rngs=nnx.Rngs(0))),
            nnx.eval_shape(lambda: SRNDeblurNet(features=4, num_scales=1, rngs=nnx.Rngs(0)))]
  modules = [module for model in models for _, module in nnx.iter_graph(model)]
  convs = {module.conv_general_dilated for module in modules if isinstance(module, nnx.Conv)}
  transposed = {module.transposed_conv for module in modules
                if isinstance(module, ConvTranspose)}
  blur = nnx.eval_shape(lambda: KernelBlurGenerator(kernel_size=3, code_dim=2, rngs=nnx.Rngs(0)))
  with monkeypatch.context() as patch:
    patch.setattr(jax, "jit", lambda fn, **kwargs: kwargs)
    jit_kwargs = compilation.jit(lambda x: x)
    run_once_kwargs = compilation.jit(lambda x: x, run_once=True)
    assert ("compiler_options" in run_once_kwargs) == ("compiler_options" in jit_kwargs)
    if "compiler_options" in run_once_kwargs:
      assert run_once_kwargs["compiler_options"] == compilation.RUN_ONCE_COMPILER_OPTIONS
  return convs, transposed | {blur.convolve_each}, jit_kwargs


@pytest.mark.parametrize("name", [ops.SWITCH, _FORMER_SWITCH])
def test_switch_off_gives_the_plain_forms(switch, monkeypatch, name):
  switch(name, "off")
  assert not ops.enabled() and not ops.cpu_tricks_apply()
  assert ops.default_conv() is jax.lax.conv_general_dilated
  assert ops.default_transposed_conv() is ops.plain_transposed_conv
  assert ops.default_convolve_each() is ops.plain_convolve_each
  convs, others, jit_kwargs = _model_convolutions(monkeypatch)
  assert convs == {jax.lax.conv_general_dilated}
  assert others == {ops.plain_transposed_conv, ops.plain_convolve_each}
  assert "compiler_options" not in jit_kwargs


@pytest.mark.parametrize("value", [None, "on"])
def test_switch_on_gives_the_rewrites_on_a_cpu_only(switch, monkeypatch, value):
  switch(None if value is None else ops.SWITCH, value)
  assert ops.enabled() and jax.default_backend() == "cpu" and ops.cpu_tricks_apply()
  assert ops.default_conv() is cpu_convolutions.conv_general_dilated
  assert ops.default_transposed_conv() is cpu_convolutions.transposed_conv
  assert ops.default_convolve_each() is cpu_convolutions.convolve_each
  convs, others, jit_kwargs = _model_convolutions(monkeypatch)
  assert convs == {cpu_convolutions.conv_general_dilated}
  assert others == {cpu_convolutions.transposed_conv, cpu_convolutions.convolve_each}
  assert jit_kwargs["compiler_options"] == compilation.CPU_COMPILER_OPTIONS
  with monkeypatch.context() as patch:  # a forward pass: YNNPACK's convolutions on AVX-512
    patch.setattr(jax, "jit", lambda fn, **kwargs: kwargs)
    for avx512, expected in ((True, None), (False, compilation.CPU_COMPILER_OPTIONS)):
      patch.setattr(compilation, "cpu_has_avx512", lambda avx512=avx512: avx512)
      assert compilation.jit(lambda x: x, forward_only=True).get("compiler_options") == expected
    assert compilation.jit(lambda x: x)["compiler_options"] == compilation.CPU_COMPILER_OPTIONS
  # Another backend gets the plain forms and plain jax.jit with the switch on.
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert ops.enabled() and not ops.cpu_tricks_apply()
  convs, others, jit_kwargs = _model_convolutions(monkeypatch)
  assert convs == {jax.lax.conv_general_dilated}
  assert others == {ops.plain_transposed_conv, ops.plain_convolve_each}
  assert "compiler_options" not in jit_kwargs


def test_run_once_compiles_the_same_initial_state(switch):
  """A train state initialised unoptimised (`run_once`, what `create_train_state` does) holds
  the values of an optimised build up to rounding."""
  def init(key):
    make = lambda rngs: SRNDeblurNet(features=4, num_scales=2, rngs=rngs)  # noqa: E731
    return {"params": state_lib.init_params(make, key)}

  switch(ops.SWITCH, "on")
  unoptimised = state_lib.create_train_state(init, 0, partitioning.make_mesh(1))
  optimised = compilation.jit(init)(jax.random.PRNGKey(0))
  for a, b in zip(jax.tree.leaves(unoptimised), jax.tree.leaves(optimised), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_both_switch_positions_compute_the_same_generator(switch):
  """A generator built with the switch off has no custom VJP in its program and the same
  outputs and gradients as one built with it on (every rewrite kind: strided, transposed,
  narrow-output and narrow-input convolutions)."""
  images = jax.random.uniform(jax.random.key(2), (2, 16, 16, 3))
  results = {}
  for position in ("on", "off"):
    switch(ops.SWITCH, position)
    graphdef, params = nnx.split(ResnetGenerator(num_blocks=1, features=4, rngs=nnx.Rngs(0)))

    def loss(params, images, graphdef=graphdef):
      return jnp.sum(jnp.sin(8.0 * nnx.merge(graphdef, params)(images)))

    program = str(jax.make_jaxpr(loss)(params, images))
    assert ("custom_vjp" in program) == (position == "on"), position
    results[position] = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, images)
  on, off = (jax.tree.leaves(results[position]) for position in ("on", "off"))
  assert len(on) == len(off)
  # Relative to each leaf's largest entry, but not below 1 % of the largest gradient: biases
  # followed by instance norm have zero gradients, of which both paths compute only noise.
  floor = 0.01 * max(float(np.abs(leaf).max()) for leaf in off)
  for ours, plain in zip(on, off, strict=True):
    scale = max(float(np.abs(plain).max()), floor)
    np.testing.assert_allclose(np.asarray(ours) / scale, np.asarray(plain) / scale, rtol=0,
                               atol=1e-4)
