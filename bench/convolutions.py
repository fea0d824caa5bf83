"""Milliseconds of each distinct convolution of the two training steps, faceblur against PyTorch.

  python bench/convolutions.py                      # both networks at 256 px
  python bench/convolutions.py --networks=cyclegan --layers=head,down1

A train step is almost all convolutions (their forward pass, input gradient and kernel
gradient), so this is where a gap to PyTorch shows first and where faceblur's CPU
reformulations (`faceblur.ops.cpu_convolutions`) were found and are checked. Each layer runs
alone at the shapes it has in the step (CycleGAN at batch `--cyclegan_batch`, SRN's finest
scale at `--srn_batch`): faceblur through `cpu_convolutions.conv_general_dilated` /
`cpu_convolutions.transposed_conv` compiled by `faceblur.ops.compilation.jit`, PyTorch through
`torch.nn.functional` in NCHW, as its reference code runs. The input gradient and kernel
gradient of PyTorch are each timed as one backward minus its forward. jax's profiler cannot
time CPU convolutions (they run asynchronously), which is why they are timed one by one here.
"""

import statistics
import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))

from bench.common import machine, print_json, print_table  # noqa: E402
from faceblur.ops import compilation, cpu_convolutions  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("networks", ["cyclegan", "srn"], "Which networks' layers to time.")
flags.DEFINE_list("layers", [], "Only these layer names (default: all).")
flags.DEFINE_integer("size", 256, "Image size of the step, in pixels.")
flags.DEFINE_integer("cyclegan_batch", 1, "CycleGAN batch size.")
flags.DEFINE_integer("srn_batch", 4, "SRN batch size.")
flags.DEFINE_integer("repeats", 5, "Timed calls per measurement (the median is reported).")
flags.DEFINE_list("frameworks", ["faceblur", "pytorch"], "faceblur and/or pytorch.")

_NHWC = ("NHWC", "HWIO", "NHWC")


class Layer(NamedTuple):
  """One convolution: `size` is its input's side before padding; `padding` applies to both
  sides of both axes (an int) or is 'SAME'; transposed layers double the size."""
  name: str
  batch: int
  size: int
  in_features: int
  out_features: int
  kernel: int
  stride: int = 1
  padding: int | str = 0
  transposed: bool = False


def cyclegan_layers(size: int, batch: int) -> list[Layer]:
  """ResNet generator (inputs already reflection-padded) and 70x70 PatchGAN."""
  quarter = size // 4
  return [
      Layer("stem 7x7", batch, size + 6, 3, 64, 7),
      Layer("down1 3x3/2", batch, size, 64, 128, 3, 2, 1),
      Layer("down2 3x3/2", batch, size // 2, 128, 256, 3, 2, 1),
      Layer("resblock 3x3", batch, quarter + 2, 256, 256, 3),
      Layer("up1 3x3/2 T", batch, quarter, 256, 128, 3, 2, 1, True),
      Layer("up2 3x3/2 T", batch, size // 2, 128, 64, 3, 2, 1, True),
      Layer("head 7x7", batch, size + 6, 64, 3, 7),
      Layer("critic1 4x4/2", batch, size, 3, 64, 4, 2, 1),
      Layer("critic2 4x4/2", batch, size // 2, 64, 128, 4, 2, 1),
      Layer("critic3 4x4/2", batch, size // 4, 128, 256, 4, 2, 1),
      Layer("critic4 4x4", batch, size // 8, 256, 512, 4, 1, 1),
      Layer("critic5 4x4", batch, size // 8 - 1, 512, 1, 4, 1, 1),
  ]


def srn_layers(size: int, batch: int) -> list[Layer]:
  """SRN-DeblurNet at its finest scale (the coarser two are the same layers at 1/2 and 1/4)."""
  half, quarter = size // 2, size // 4
  return [
      Layer("enc1 5x5", batch, size, 6, 32, 5, 1, "SAME"),
      Layer("block32 5x5", batch, size, 32, 32, 5, 1, "SAME"),
      Layer("enc2 5x5/2", batch, size, 32, 64, 5, 2, "SAME"),
      Layer("block64 5x5", batch, half, 64, 64, 5, 1, "SAME"),
      Layer("enc3 5x5/2", batch, half, 64, 128, 5, 2, "SAME"),
      Layer("block128 5x5", batch, quarter, 128, 128, 5, 1, "SAME"),
      Layer("convlstm 3x3", batch, quarter, 256, 512, 3, 1, "SAME"),
      Layer("dec3_up 4x4/2 T", batch, quarter, 128, 64, 4, 2, 1, True),
      Layer("dec2_up 4x4/2 T", batch, half, 64, 32, 4, 2, 1, True),
      Layer("out 5x5", batch, size, 32, 3, 5, 1, "SAME"),
  ]


def _padding(layer: Layer):
  return layer.padding if isinstance(layer.padding, str) else ((layer.padding,) * 2,) * 2


def _median_ms(fn, repeats: int) -> float:
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return 1e3 * statistics.median(times)


def _arrays(layer: Layer, rng):
  inputs = rng.standard_normal((layer.batch, layer.size, layer.size, layer.in_features),
                               np.float32)
  kernel_shape = ((layer.kernel, layer.kernel, layer.out_features, layer.in_features)
                  if layer.transposed
                  else (layer.kernel, layer.kernel, layer.in_features, layer.out_features))
  kernel = 0.05 * rng.standard_normal(kernel_shape, np.float32)
  return inputs, kernel


def time_faceblur(layer: Layer, repeats: int) -> dict[str, float]:
  inputs, kernel = _arrays(layer, np.random.default_rng(0))
  strides = (layer.stride, layer.stride)
  if layer.transposed:
    out_size = (2 * layer.size, 2 * layer.size)

    def conv(inputs, kernel):
      return cpu_convolutions.transposed_conv(inputs, kernel, strides, _padding(layer), out_size)
  else:
    def conv(inputs, kernel):
      return cpu_convolutions.conv_general_dilated(inputs, kernel, strides, _padding(layer),
                                                   dimension_numbers=_NHWC)
  upstream = np.random.default_rng(1).standard_normal(
      jax.eval_shape(conv, inputs, kernel).shape, np.float32)
  forward = compilation.jit(conv)
  input_grad = compilation.jit(
      lambda inputs, kernel, upstream: jax.vjp(lambda x: conv(x, kernel), inputs)[1](upstream))
  kernel_grad = compilation.jit(
      lambda inputs, kernel, upstream: jax.vjp(lambda k: conv(inputs, k), kernel)[1](upstream))
  args = [jnp.asarray(array) for array in (inputs, kernel, upstream)]
  return {
      "forward": _median_ms(lambda: jax.block_until_ready(forward(*args[:2])), repeats),
      "input_grad": _median_ms(lambda: jax.block_until_ready(input_grad(*args)), repeats),
      "kernel_grad": _median_ms(lambda: jax.block_until_ready(kernel_grad(*args)), repeats),
  }


def time_pytorch(layer: Layer, repeats: int) -> dict[str, float]:
  import torch  # noqa: PLC0415 — optional: pip install -e '.[bench]'
  import torch.nn.functional as functional  # noqa: PLC0415

  torch.set_num_threads(len(__import__("os").sched_getaffinity(0)))
  inputs, kernel = _arrays(layer, np.random.default_rng(0))
  inputs = torch.tensor(inputs.transpose(0, 3, 1, 2).copy(), requires_grad=True)
  # OIHW for a convolution; (in, out, kh, kw) for a transposed one: both are kernel.T(3,2,0,1).
  kernel = torch.tensor(kernel.transpose(3, 2, 0, 1).copy(), requires_grad=True)
  # SAME as torch can pad it (symmetrically; TF pads a strided 5x5 by 1 and 2): same FLOPs.
  padding = layer.padding if isinstance(layer.padding, int) else layer.kernel // 2
  if layer.transposed:
    output_padding = 1 if layer.kernel % 2 else 0

    def conv():
      return functional.conv_transpose2d(inputs, kernel, stride=layer.stride,
                                         padding=padding, output_padding=output_padding)
  else:
    def conv():
      return functional.conv2d(inputs, kernel, stride=layer.stride, padding=padding)
  with torch.no_grad():
    upstream = torch.randn_like(conv())
    forward = _median_ms(conv, repeats)
  return {
      "forward": forward,
      "input_grad": _median_ms(lambda: torch.autograd.grad(conv(), inputs, upstream),
                               repeats) - forward,
      "kernel_grad": _median_ms(lambda: torch.autograd.grad(conv(), kernel, upstream),
                                repeats) - forward,
  }


def main(argv):
  del argv
  print_json({"machine": machine()})
  all_layers = []
  if "cyclegan" in FLAGS.networks:
    all_layers += [("cyclegan", layer) for layer in cyclegan_layers(FLAGS.size,
                                                                    FLAGS.cyclegan_batch)]
  if "srn" in FLAGS.networks:
    all_layers += [("srn", layer) for layer in srn_layers(FLAGS.size, FLAGS.srn_batch)]
  rows = []
  for network, layer in all_layers:
    if FLAGS.layers and not any(name in layer.name for name in FLAGS.layers):
      continue
    row = {"network": network, "layer": layer.name, "batch": layer.batch,
           "features": f"{layer.in_features}->{layer.out_features}",
           "input": f"{layer.size}"}
    for framework, timer in (("faceblur", time_faceblur), ("pytorch", time_pytorch)):
      if framework in FLAGS.frameworks:
        for key, value in timer(layer, FLAGS.repeats).items():
          row[f"{framework}_{key}"] = round(value, 1)
    if {"faceblur", "pytorch"} <= set(FLAGS.frameworks):
      parts = ("forward", "input_grad", "kernel_grad")
      row["pytorch_over_faceblur"] = round(
          sum(row[f"pytorch_{part}"] for part in parts)
          / sum(row[f"faceblur_{part}"] for part in parts), 2)
    print_json(row)
    rows.append(row)
  columns = {"network": "network", "layer": "layer", "batch": "batch", "features": "features",
             "input": "input px"}
  for framework in FLAGS.frameworks:
    columns |= {f"{framework}_forward": f"{framework} fwd ms",
                f"{framework}_input_grad": f"{framework} input grad ms",
                f"{framework}_kernel_grad": f"{framework} kernel grad ms"}
  if {"faceblur", "pytorch"} <= set(FLAGS.frameworks):
    columns["pytorch_over_faceblur"] = "PyTorch / faceblur time"
  print_table(rows, columns)


if __name__ == "__main__":
  app.run(main)
