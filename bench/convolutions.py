"""Milliseconds of each distinct convolution of the two training steps, faceblur against PyTorch.

  python bench/convolutions.py                      # both networks at 256 px
  python bench/convolutions.py --networks=cyclegan --layers=head,down1
  python bench/convolutions.py --shapes=demo --torch_layout=channels_last

A train step is almost all convolutions (their forward pass, input gradient and kernel
gradient), so this is where a gap to PyTorch shows first and where faceblur's CPU
reformulations (`faceblur.ops.cpu_convolutions`) were found and are checked. Each layer runs
alone at the shapes it has in the step (CycleGAN at batch `--cyclegan_batch`, SRN's finest
scale at `--srn_batch`): faceblur through `cpu_convolutions.conv_general_dilated` /
`cpu_convolutions.transposed_conv` compiled by `faceblur.ops.compilation.jit`, PyTorch through
`torch.nn.functional` in NCHW, as its reference code runs (or `--torch_layout=channels_last`).
The input gradient and kernel gradient of PyTorch are each timed as one backward minus its
forward. jax's profiler cannot time CPU convolutions (they run asynchronously), which is why
they are timed one by one here.

`--shapes=demo` (or `study`) takes widths, crops and batches from that config: SRN at all
three scales (its coarse scales are a larger share of a small crop's step) and the demo's
stage-1 F and critics (its G has no convolution). Its summary weighs each layer by the times
a train step runs it. A single call includes JAX's dispatch (tens of microseconds), which
weighs on the smallest layers.
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
flags.DEFINE_enum("shapes", "reference", ["reference", "demo", "study"], "Whose widths, "
                  "crops and batches: the reference configs' (--size and the batch flags) or "
                  "configs/demo.py's or configs/study.py's.")
flags.DEFINE_enum("torch_layout", "nchw", ["nchw", "channels_last"], "PyTorch's memory layout.")
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
  per_pass: int = 1  # how many layers of this shape one pass of the network has


def cyclegan_layers(size: int, batch: int, width: int = 64, critic_width: int = 64,
                    critic_layers: int = 3, num_blocks: int = 9) -> list[Layer]:
  """ResNet generator (inputs already reflection-padded) and the PatchGAN (70x70 with 3
  layers)."""
  quarter = size // 4
  layers = [
      Layer("stem 7x7", batch, size + 6, 3, width, 7),
      Layer("down1 3x3/2", batch, size, width, 2 * width, 3, 2, 1),
      Layer("down2 3x3/2", batch, size // 2, 2 * width, 4 * width, 3, 2, 1),
      Layer("resblock 3x3", batch, quarter + 2, 4 * width, 4 * width, 3, per_pass=2 * num_blocks),
      Layer("up1 3x3/2 T", batch, quarter, 4 * width, 2 * width, 3, 2, 1, True),
      Layer("up2 3x3/2 T", batch, size // 2, 2 * width, width, 3, 2, 1, True),
      Layer("head 7x7", batch, size + 6, width, 3, 7),
  ]
  widths = [critic_width * min(2 ** i, 8) for i in range(critic_layers + 1)]
  layers.append(Layer("critic1 4x4/2", batch, size, 3, critic_width, 4, 2, 1))
  side = size // 2
  for i in range(1, critic_layers + 1):
    stride = 2 if i < critic_layers else 1
    layers.append(Layer(f"critic{i + 1} 4x4{'/2' if stride == 2 else ''}", batch, side,
                        widths[i - 1], widths[i], 4, stride, 1))
    side = side // 2 if stride == 2 else side - 1
  layers.append(Layer(f"critic{critic_layers + 2} 4x4", batch, side, widths[-1], 1, 4, 1, 1))
  return layers


def srn_layers(size: int, batch: int, width: int = 32) -> list[Layer]:
  """SRN-DeblurNet at one scale (the coarser two are the same layers at 1/2 and 1/4); its
  residual blocks hold 6 convolutions per width in the encoder and 6 in the decoder."""
  half, quarter = size // 2, size // 4
  return [
      Layer("enc1 5x5", batch, size, 6, width, 5, 1, "SAME"),
      Layer(f"block{width} 5x5", batch, size, width, width, 5, 1, "SAME", per_pass=12),
      Layer("enc2 5x5/2", batch, size, width, 2 * width, 5, 2, "SAME"),
      Layer(f"block{2 * width} 5x5", batch, half, 2 * width, 2 * width, 5, 1, "SAME",
            per_pass=12),
      Layer("enc3 5x5/2", batch, half, 2 * width, 4 * width, 5, 2, "SAME"),
      Layer(f"block{4 * width} 5x5", batch, quarter, 4 * width, 4 * width, 5, 1, "SAME",
            per_pass=12),
      Layer("convlstm 3x3", batch, quarter, 8 * width, 16 * width, 3, 1, "SAME"),
      Layer("dec3_up 4x4/2 T", batch, quarter, 4 * width, 2 * width, 4, 2, 1, True),
      Layer("dec2_up 4x4/2 T", batch, half, 2 * width, width, 4, 2, 1, True),
      Layer("out 5x5", batch, size, width, 3, 5, 1, "SAME"),
  ]


def calls_per_step(network: str, layer: Layer) -> dict[str, int]:
  """How many times one train step of the demo's (or the study's) networks runs each part of
  `layer`. SRN: each layer of each scale once. Stage 1 (`kernel_blur_plain`, whose G has no
  convolution): F runs on the blurred photos (trained) and on G's fakes in the watched cycle
  (forward only); the critics score G's and F's fakes for the generators (input gradients)
  and real photos and pooled fakes for themselves (kernel gradients)."""
  if network == "srn":
    return dict.fromkeys(("forward", "input_grad", "kernel_grad"), layer.per_pass)
  if layer.name.startswith("critic"):
    return {"forward": 6, "input_grad": 2, "kernel_grad": 4}
  return {"forward": 2 * layer.per_pass, "input_grad": layer.per_pass,
          "kernel_grad": layer.per_pass}


def configured_layers(shapes: str, networks: list[str]) -> list[tuple[str, Layer]]:
  """The layers of `networks` at the widths, crops and batches of `shapes`' config."""
  from configs import demo, study  # noqa: PLC0415

  config = {"demo": demo, "study": study}[shapes].get_config()
  layers = []
  if "cyclegan" in networks:
    stage1 = config.cyclegan
    model = stage1.model
    if model.get("generator", "resnet") != "kernel_blur":
      raise ValueError("--shapes=demo|study times the blur G's stage 1 (kernel_blur_plain)")
    layers += [("cyclegan", layer) for layer in cyclegan_layers(
        stage1.data.crop_size, stage1.batch_size, model.features, model.disc_features,
        model.disc_layers, model.num_blocks)]
  if "srn" in networks:
    stage2 = config.srn
    for scale in range(stage2.model.get("num_scales", 3)):
      side = round(stage2.data.crop_size * stage2.model.scale_ratio ** scale)
      for layer in srn_layers(side, stage2.batch_size, stage2.model.features):
        name = layer.name if scale == 0 else f"{layer.name} @{side}"
        layers.append(("srn", layer._replace(name=name)))
  return layers


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
  layout = (torch.channels_last if FLAGS.torch_layout == "channels_last"
            else torch.contiguous_format)
  inputs = torch.tensor(inputs.transpose(0, 3, 1, 2).copy()).contiguous(memory_format=layout)
  inputs.requires_grad_(True)
  # OIHW for a convolution; (in, out, kh, kw) for a transposed one: both are kernel.T(3,2,0,1).
  kernel = torch.tensor(kernel.transpose(3, 2, 0, 1).copy()).contiguous(memory_format=layout)
  kernel.requires_grad_(True)
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
  if FLAGS.shapes != "reference":
    all_layers = configured_layers(FLAGS.shapes, FLAGS.networks)
  if FLAGS.shapes == "reference" and "cyclegan" in FLAGS.networks:
    all_layers += [("cyclegan", layer) for layer in cyclegan_layers(FLAGS.size,
                                                                    FLAGS.cyclegan_batch)]
  if FLAGS.shapes == "reference" and "srn" in FLAGS.networks:
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
          row[f"{framework}_{key}"] = round(value, 1 if FLAGS.shapes == "reference" else 3)
    if {"faceblur", "pytorch"} <= set(FLAGS.frameworks):
      parts = ("forward", "input_grad", "kernel_grad")
      row["pytorch_over_faceblur"] = round(
          sum(row[f"pytorch_{part}"] for part in parts)
          / sum(row[f"faceblur_{part}"] for part in parts), 2)
    print_json(row)
    rows.append((network, layer, row))
  columns = {"network": "network", "layer": "layer", "batch": "batch", "features": "features",
             "input": "input px"}
  for framework in FLAGS.frameworks:
    columns |= {f"{framework}_forward": f"{framework} fwd ms",
                f"{framework}_input_grad": f"{framework} input grad ms",
                f"{framework}_kernel_grad": f"{framework} kernel grad ms"}
  if {"faceblur", "pytorch"} <= set(FLAGS.frameworks):
    columns["pytorch_over_faceblur"] = "PyTorch / faceblur time"
  print_table([row for _, _, row in rows], columns)
  if FLAGS.shapes != "reference" and {"faceblur", "pytorch"} <= set(FLAGS.frameworks):
    print_step_totals(rows)


def print_step_totals(rows) -> None:
  """Each network's convolutions summed as a train step runs them (`calls_per_step`)."""
  totals = []
  for network in dict.fromkeys(network for network, _, _ in rows):
    total = {"network": network}
    for framework in ("faceblur", "pytorch"):
      for part in ("forward", "input_grad", "kernel_grad"):
        total[f"{framework}_{part}"] = round(sum(
            calls_per_step(name, layer)[part] * row[f"{framework}_{part}"]
            for name, layer, row in rows if name == network), 2)
      total[f"{framework}_all"] = round(sum(
          total[f"{framework}_{part}"] for part in ("forward", "input_grad", "kernel_grad")), 2)
    total["pytorch_over_faceblur"] = round(total["pytorch_all"] / total["faceblur_all"], 2)
    print_json({"step_totals": total})
    totals.append(total)
  columns = {"network": "network"}
  for framework in ("faceblur", "pytorch"):
    columns |= {f"{framework}_{part}": f"{framework} {part.replace('_', ' ')} ms"
                for part in ("forward", "input_grad", "kernel_grad", "all")}
  columns["pytorch_over_faceblur"] = "PyTorch / faceblur time"
  print("\nPer train step (each layer times the calls a step makes):")
  print_table(totals, columns)


if __name__ == "__main__":
  app.run(main)
