"""The floating-point work of a network, counted from its own convolution layers.

Why not XLA's cost analysis: on a CPU, `faceblur.ops` computes convolutions and their
gradients in other forms (phase splits, matrix products over padded or zero-interleaved
operands), so the compiled graph's count includes work the network does not need, and it
differs between backends. Counting the layers gives one figure per network and input shape,
the same on every backend and in every framework.

Convention: 2 FLOPs (a multiply and an add) per multiply-add of each convolution and
transposed convolution, i.e. `2 * kh * kw * (Cin / groups) * Cout * N * Hout * Wout` for a
convolution and `2 * kh * kw * Cin * Cout * N * Hin * Win` for a transposed one (each input
pixel meets the whole kernel). Biases, activations, normalisation, resizes and the loss are
not counted (well under 1 % of these networks' work). Nothing is computed: the layers are run
under `jax.eval_shape`, which only propagates shapes.
"""

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import nnx

from faceblur.models.layers import ConvTranspose


def _counting(original: Callable, records: list[int], *, transposed: bool) -> Callable:
  """`original`, recording the FLOPs of each call in `records`."""

  def conv(inputs, kernel, *args, **kwargs):
    outputs = original(inputs, kernel, *args, **kwargs)
    # A convolution's work follows its output pixels, a transposed one's its input pixels.
    pixels = inputs.shape[:-1] if transposed else outputs.shape[:-1]
    records.append(2 * int(np.prod(pixels)) * int(np.prod(kernel.shape)))
    return outputs

  return conv


def conv_flops(module: nnx.Module, *inputs: Any,
               call: Callable[..., Any] | None = None) -> int:
  """FLOPs of the convolutions in one forward pass of `module` on `inputs` (see the module
  docstring for the convention).

  `inputs` may be arrays or `jax.ShapeDtypeStruct`s, `module` an abstract one
  (`nnx.eval_shape`); `call(module, *inputs)` runs the pass (default: `module(*inputs)`). A
  layer called several times (SRN's shared weights over its scales) counts each call.
  """
  records: list[int] = []
  patched = []
  for _, node in nnx.iter_graph(module):
    if isinstance(node, nnx.Conv):
      patched.append((node, "conv_general_dilated", node.conv_general_dilated, False))
    elif isinstance(node, ConvTranspose):
      patched.append((node, "transposed_conv", node.transposed_conv, True))
  call = call or (lambda model, *args: model(*args))
  try:
    for node, name, original, transposed in patched:
      setattr(node, name, _counting(original, records, transposed=transposed))
    graphdef, state = nnx.split(module)
    jax.eval_shape(lambda state, *args: call(nnx.merge(graphdef, state), *args), state, *inputs)
  finally:
    for node, name, original, _ in patched:
      setattr(node, name, original)
  return sum(records)
