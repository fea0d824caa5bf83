"""PyTorch re-implementations of the two networks and their train steps, for benchmarks only.

The CycleGAN side follows the official code (junyanz/pytorch-CycleGAN-and-pix2pix:
`ResnetGenerator`, `NLayerDiscriminator`, `ImagePool`, `optimize_parameters`); the SRN side
is a layer-for-layer port of SRN-DeblurNet's TensorFlow graph (encoder 32-64-128 with three
5x5 ResBlocks per stage, TF's 'SAME' padding, a 3x3 ConvLSTM, decoder with summed skips, three
scales with shared weights, multi-scale Euclidean loss, no gradient clipping as the official
training runs). Both use the layouts and
defaults of their reference code (NCHW, float32, eager mode), so that the ratio printed by
`bench/train_step.py` is faceblur against what a researcher would otherwise run. Parameter
counts match faceblur's networks exactly; `bench/train_step.py` checks this, and
`tools/make_golden_steps.py` writes the golden steps faceblur's train steps are tested against
from these networks (`tests/train/test_golden_steps.py`).

torch is an optional extra of the benchmarks (`pip install -e '.[bench]'`), never of the
package.
"""

import math
import random

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceblur.models import blur_generator

# ---------------------------------------------------------------------------------------------
# CycleGAN


class ResnetBlock(nn.Module):
  def __init__(self, width: int):
    super().__init__()
    self.body = nn.Sequential(
        nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3), nn.InstanceNorm2d(width), nn.ReLU(True),
        nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3), nn.InstanceNorm2d(width))

  def forward(self, features):
    return features + self.body(features)


class _Residual(nn.Module):
  """faceblur's `residual=True` option (not the reference): clip(input + tanh output, -1, 1)."""

  def __init__(self, body: nn.Module):
    super().__init__()
    self.body = body

  def forward(self, images):
    return torch.clamp(images + self.body(images), -1.0, 1.0)


def resnet_generator(num_blocks: int = 9, width: int = 64, channels: int = 3,
                     residual: bool = False) -> nn.Module:
  """The official `ResnetGenerator` with instance norm (no affine), biases, no dropout; on
  [-1, 1] images. `residual` wraps it as faceblur's option of that name (its head is not zeroed
  here: weights are loaded)."""
  layers = [nn.ReflectionPad2d(3), nn.Conv2d(channels, width, 7), nn.InstanceNorm2d(width),
            nn.ReLU(True)]
  for factor in (1, 2):
    layers += [nn.Conv2d(width * factor, width * factor * 2, 3, stride=2, padding=1),
               nn.InstanceNorm2d(width * factor * 2), nn.ReLU(True)]
  layers += [ResnetBlock(4 * width) for _ in range(num_blocks)]
  for factor in (4, 2):
    layers += [nn.ConvTranspose2d(width * factor, width * factor // 2, 3, stride=2, padding=1,
                                  output_padding=1),
               nn.InstanceNorm2d(width * factor // 2), nn.ReLU(True)]
  layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, channels, 7), nn.Tanh()]
  network = nn.Sequential(*layers)
  return _Residual(network) if residual else network


def patch_discriminator(width: int = 64, num_layers: int = 3, channels: int = 3) -> nn.Module:
  """The official 70x70 `NLayerDiscriminator` with instance norm."""
  layers = [nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
  widths = [width * min(2**i, 8) for i in range(num_layers + 1)]
  for i in range(1, num_layers + 1):
    layers += [nn.Conv2d(widths[i - 1], widths[i], 4, stride=2 if i < num_layers else 1,
                         padding=1),
               nn.InstanceNorm2d(widths[i]), nn.LeakyReLU(0.2, True)]
  layers += [nn.Conv2d(widths[-1], 1, 4, stride=1, padding=1)]
  return nn.Sequential(*layers)


class ImagePool:
  """The official history buffer of 50 fakes. `rng` draws its coins and slots (`random()`,
  `randrange(n)`, by default Python's `random`), so that a test can replay another
  implementation's draws."""

  def __init__(self, capacity: int, rng=random):
    self.capacity, self.images, self.rng = capacity, [], rng

  def query(self, fakes: torch.Tensor) -> torch.Tensor:
    if self.capacity == 0:
      return fakes
    returned = []
    for image in fakes:
      image = image.unsqueeze(0)
      if len(self.images) < self.capacity:
        self.images.append(image)
        returned.append(image)
      elif self.rng.random() > 0.5:
        index = self.rng.randrange(self.capacity)
        returned.append(self.images[index].clone())
        self.images[index] = image
      else:
        returned.append(image)
    return torch.cat(returned, 0)


class _StageOneStep:
  """What both stage-1 steps share: G and F, the two critics, their optimisers, pools and real
  label (set by the subclass), and the critics' half of the update."""

  def networks(self) -> dict[str, nn.Module]:
    return {"sharp_to_blurred": self.sharp_to_blurred, "blurred_to_sharp": self.blurred_to_sharp,
            "blurred_critic": self.blurred_critic, "sharp_critic": self.sharp_critic}

  def _start_generator_update(self) -> None:
    """The critics frozen (the official `set_requires_grad(..., False)`), G's and F's
    gradients cleared."""
    for critic in (self.blurred_critic, self.sharp_critic):
      critic.requires_grad_(False)
    self.generator_opt.zero_grad(set_to_none=True)

  def _update_critics(self, sharp: torch.Tensor, blurred: torch.Tensor,
                      fake_blurred: torch.Tensor, fake_sharp: torch.Tensor):
    """The official `backward_D_A/B` on pooled fakes and the critics' Adam step; returns both
    critics' losses."""
    for critic in (self.blurred_critic, self.sharp_critic):
      critic.requires_grad_(True)
    self.critic_opt.zero_grad(set_to_none=True)
    pooled_blurred = self.pools[0].query(fake_blurred.detach())
    pooled_sharp = self.pools[1].query(fake_sharp.detach())
    blurred_critic_loss = _lsgan_critic(self.blurred_critic, blurred, pooled_blurred,
                                        self.real_label)
    sharp_critic_loss = _lsgan_critic(self.sharp_critic, sharp, pooled_sharp, self.real_label)
    (blurred_critic_loss + sharp_critic_loss).backward()
    self.critic_opt.step()
    return blurred_critic_loss, sharp_critic_loss


class CycleGANStep(_StageOneStep):
  """`optimize_parameters` of the official CycleGAN model: G and F, then both critics."""

  def __init__(self, num_blocks: int = 9, width: int = 64, cycle_weight: float = 10.0,
               identity_weight: float = 0.5, pool_size: int = 50, *,
               critic_width: int | None = None, critic_layers: int = 3, real_label: float = 1.0,
               residual: bool = False):
    self.sharp_to_blurred = resnet_generator(num_blocks, width, residual=residual)
    self.blurred_to_sharp = resnet_generator(num_blocks, width, residual=residual)
    critic_width = critic_width or width
    self.blurred_critic = patch_discriminator(critic_width, critic_layers)
    self.sharp_critic = patch_discriminator(critic_width, critic_layers)
    self.cycle_weight, self.identity_weight = cycle_weight, identity_weight * cycle_weight
    self.real_label = real_label
    self.losses: dict[str, float] = {}  # the last step's terms, named as faceblur's metrics
    self.pools = ImagePool(pool_size), ImagePool(pool_size)
    generators = [*self.sharp_to_blurred.parameters(), *self.blurred_to_sharp.parameters()]
    critics = [*self.blurred_critic.parameters(), *self.sharp_critic.parameters()]
    self.generator_opt = torch.optim.Adam(generators, lr=2e-4, betas=(0.5, 0.999))
    self.critic_opt = torch.optim.Adam(critics, lr=2e-4, betas=(0.5, 0.999))

  def __call__(self, sharp: torch.Tensor, blurred: torch.Tensor) -> float:
    """One update from [-1, 1] NCHW batches; returns the generator loss."""
    sharp_to_blurred, blurred_to_sharp = self.sharp_to_blurred, self.blurred_to_sharp
    self._start_generator_update()
    fake_blurred, fake_sharp = sharp_to_blurred(sharp), blurred_to_sharp(blurred)
    adversarial = (_lsgan_generator(self.blurred_critic(fake_blurred), self.real_label)
                   + _lsgan_generator(self.sharp_critic(fake_sharp), self.real_label))
    cycle = (F.l1_loss(blurred_to_sharp(fake_blurred), sharp)
             + F.l1_loss(sharp_to_blurred(fake_sharp), blurred))
    identity = sharp.new_zeros(())
    if self.identity_weight > 0:  # the official code skips the term at lambda_identity 0
      identity = (F.l1_loss(sharp_to_blurred(blurred), blurred)
                  + F.l1_loss(blurred_to_sharp(sharp), sharp))
    generator_loss = adversarial + self.cycle_weight * cycle + self.identity_weight * identity
    generator_loss.backward()
    self.generator_opt.step()

    blurred_critic_loss, sharp_critic_loss = self._update_critics(sharp, blurred, fake_blurred,
                                                                  fake_sharp)
    terms = {"generator/adversarial": adversarial, "generator/cycle": cycle,
             "generator/identity": identity, "generator/total": generator_loss,
             "critic/blurred": blurred_critic_loss, "critic/sharp": sharp_critic_loss}
    self.losses = {name: float(term.detach()) for name, term in terms.items()}
    return self.losses["generator/total"]


def _srgb_to_linear(srgb: torch.Tensor) -> torch.Tensor:
  srgb = srgb.clamp(0.0, 1.0)
  curve = ((srgb.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4
  return torch.where(srgb <= 0.04045, srgb / 12.92, curve)


def _linear_to_srgb(linear: torch.Tensor) -> torch.Tensor:
  linear = linear.clamp(0.0, 1.0)
  curve = 1.055 * linear.clamp(min=0.0031308) ** (1 / 2.4) - 0.055
  return torch.where(linear <= 0.0031308, linear * 12.92, curve)


def _jpeg_round_trip(images: torch.Tensor, qualities: list[int]) -> torch.Tensor:
  """Each [0, 1] NCHW image through PIL's JPEG at its quality, on the host (faceblur's own
  codec function: both frameworks pay the same host round trip)."""
  coded = blur_generator.jpeg_round_trip(images.detach().permute(0, 2, 3, 1).cpu().numpy(),
                                         np.asarray(qualities))
  coded = torch.from_numpy(coded).permute(0, 3, 1, 2)
  return coded.to(images.device).contiguous(memory_format=_memory_format_of(images))


def _memory_format_of(images: torch.Tensor) -> torch.memory_format:
  return (torch.channels_last if images.is_contiguous(memory_format=torch.channels_last)
          and not images.is_contiguous() else torch.contiguous_format)


class KernelBlurGenerator(nn.Module):
  """faceblur's `kernel_blur` G (`faceblur.models.blur_generator`), as a PyTorch user would
  write it: from a random code, a kernel (softmax, re-centred on its centre of mass) and two
  noise parameters; the kernel applied to each image in linear light (a grouped convolution,
  edges mirrored), signal-dependent Gaussian noise, sRGB, then PIL's JPEG with a
  straight-through gradient. On [0, 1] images."""

  def __init__(self, kernel_size: int = 21, code_dim: int = 8, hidden: int = 64,
               head_scale: float = 20.0, jpeg_quality: tuple[int, int] | None = None):
    super().__init__()
    self.kernel_size, self.code_dim, self.head_scale = kernel_size, code_dim, head_scale
    self.jpeg_quality = jpeg_quality
    self.hidden = nn.Linear(code_dim, hidden)
    self.kernel_head = nn.Linear(hidden, kernel_size * kernel_size)
    self.noise_head = nn.Linear(hidden, 2)
    # faceblur's start: a Gaussian kernel of 1 px, 1000 photons at white, read noise 0.002.
    with torch.no_grad():
      for head in (self.kernel_head, self.noise_head):
        head.weight.normal_(0.0, 1e-3)
      offsets = torch.arange(kernel_size, dtype=torch.float32) - kernel_size // 2
      radius2 = (offsets[:, None] ** 2 + offsets[None, :] ** 2).reshape(-1)
      self.kernel_head.bias.copy_(-radius2 / 2 / head_scale)
      self.noise_head.bias.copy_(torch.tensor([-math.log(1000.0), 2 * math.log(0.002)])
                                 / head_scale)

  def _centred(self, kernels: torch.Tensor) -> torch.Tensor:
    """Kernels (N, k, k) shifted bilinearly so that their centre of mass is the middle tap."""
    size = kernels.shape[-1]
    offsets = torch.arange(size, dtype=kernels.dtype, device=kernels.device) - size // 2
    rows, cols = torch.meshgrid(offsets, offsets, indexing="ij")
    for _ in range(2):
      centre_row = torch.einsum("nij,i->n", kernels, offsets)
      centre_col = torch.einsum("nij,j->n", kernels, offsets)
      # Sample each kernel at (row + centre_row, col + centre_col), zero outside the grid.
      grid = torch.stack([cols[None] + centre_col[:, None, None],
                          rows[None] + centre_row[:, None, None]], dim=-1) / (size // 2)
      kernels = F.grid_sample(kernels[:, None], grid, mode="bilinear", padding_mode="zeros",
                              align_corners=True)[:, 0].clamp(min=0.0)
      kernels = kernels / kernels.sum(dim=(1, 2), keepdim=True)
    return kernels

  def forward(self, images: torch.Tensor, codes: torch.Tensor,
              noisy: bool = True) -> torch.Tensor:
    hidden = F.relu(self.hidden(codes))
    logits = self.head_scale * self.kernel_head(hidden)
    kernels = self._centred(torch.softmax(logits, dim=-1).view(
        -1, self.kernel_size, self.kernel_size))
    noise = torch.exp(self.head_scale * self.noise_head(hidden))
    n, channels, height, width = images.shape
    pad = self.kernel_size // 2
    linear = _srgb_to_linear(images)
    # Symmetric padding (the edge pixel repeated), as faceblur's blur_each.
    padded = torch.cat([linear[:, :, :pad].flip(2), linear, linear[:, :, -pad:].flip(2)], 2)
    padded = torch.cat([padded[..., :pad].flip(3), padded, padded[..., -pad:].flip(3)], 3)
    # A convolution: torch's conv2d correlates, so with the kernel flipped.
    blurred = F.conv2d(padded.reshape(1, n * channels, *padded.shape[2:]),
                       kernels.flip(1, 2).repeat_interleave(channels, 0)[:, None],
                       groups=n * channels).view(n, channels, height, width)
    if noisy:
      variance = noise[:, 0, None, None, None] * blurred.clamp(0.0, 1.0) \
          + noise[:, 1, None, None, None]
      blurred = blurred + variance.sqrt() * torch.randn_like(blurred)
    output = _linear_to_srgb(blurred)
    if noisy and self.jpeg_quality:
      low, high = self.jpeg_quality
      coded = _jpeg_round_trip(output, [random.randint(low, high) for _ in range(n)])
      output = output + (coded - output).detach()
    return output


class KernelBlurStep(_StageOneStep):
  """faceblur's `kernel_blur` variants' step (`faceblur.train.cyclegan`), as written for
  PyTorch: G and F against their critics, the blurred -> sharp -> blurred cycle (through which
  only F learns), the sharp -> blurred -> sharp cycle watched without a gradient (weight 0),
  no identity term; then both critics on pooled fakes; an EMA of G and F. On [0, 1] images."""

  def __init__(self, model, loss, pool_size: int, learning_rate: float, betas, ema_decay: float):
    if loss.get("diversity_weight", 0.0) or loss.get("forward_cycle_weight", 1.0) \
        or loss.get("identity_weight", 0.0) or loss.get("cycle_updates_g", True) \
        or model.get("tone_curve", False):
      raise ValueError("the PyTorch reference ports kernel_blur_plain's losses only")
    self.sharp_to_blurred = KernelBlurGenerator(
        model.kernel_size, model.get("code_dim", 8) or 8,
        jpeg_quality=tuple(model.jpeg_quality) or None)
    self.blurred_to_sharp = resnet_generator(model.num_blocks, model.features,
                                             residual=model.get("residual", False))
    self.blurred_critic = patch_discriminator(model.disc_features, model.disc_layers)
    self.sharp_critic = patch_discriminator(model.disc_features, model.disc_layers)
    self.cycle_weight, self.real_label = loss.cycle_weight, loss.real_label
    self.ema_decay = ema_decay
    self.pools = ImagePool(pool_size), ImagePool(pool_size)
    self.generator_params = [*self.sharp_to_blurred.parameters(),
                             *self.blurred_to_sharp.parameters()]
    self.ema = [p.detach().clone() for p in self.generator_params]
    critics = [*self.blurred_critic.parameters(), *self.sharp_critic.parameters()]
    self.generator_opt = torch.optim.Adam(self.generator_params, lr=learning_rate, betas=betas)
    self.critic_opt = torch.optim.Adam(critics, lr=learning_rate, betas=betas)
    self.losses: dict[str, float] = {}

  def __call__(self, sharp: torch.Tensor, blurred: torch.Tensor) -> float:
    """One update from [0, 1] NCHW batches; returns the generator loss."""
    sharp_to_blurred, blurred_to_sharp = self.sharp_to_blurred, self.blurred_to_sharp
    self._start_generator_update()
    code_dim = sharp_to_blurred.code_dim
    z = torch.randn(sharp.shape[0], code_dim, device=sharp.device)
    z_cycle = torch.randn(blurred.shape[0], code_dim, device=sharp.device)
    fake_blurred, fake_sharp = sharp_to_blurred(sharp, z), blurred_to_sharp(blurred)
    adversarial = (_lsgan_generator(self.blurred_critic(fake_blurred), self.real_label)
                   + _lsgan_generator(self.sharp_critic(fake_sharp), self.real_label))
    with torch.no_grad():  # the hidden-channel diagnostic
      forward = F.l1_loss(blurred_to_sharp(fake_blurred), sharp)
    sharp_to_blurred.requires_grad_(False)  # the cycle trains F only
    backward = F.l1_loss(sharp_to_blurred(fake_sharp, z_cycle), blurred)
    sharp_to_blurred.requires_grad_(True)
    generator_loss = adversarial + self.cycle_weight * backward
    generator_loss.backward()
    self.generator_opt.step()
    with torch.no_grad():
      torch._foreach_lerp_(self.ema, [p.detach() for p in self.generator_params],
                           1.0 - self.ema_decay)

    blurred_critic_loss, sharp_critic_loss = self._update_critics(sharp, blurred, fake_blurred,
                                                                  fake_sharp)
    terms = {"generator/adversarial": adversarial, "generator/cycle": backward,
             "generator/cycle_forward": forward, "generator/total": generator_loss,
             "critic/blurred": blurred_critic_loss, "critic/sharp": sharp_critic_loss}
    self.losses = {name: float(term.detach()) for name, term in terms.items()}
    return self.losses["generator/total"]


def _lsgan_generator(scores: torch.Tensor, real_label: float = 1.0) -> torch.Tensor:
  return torch.mean((scores - real_label) ** 2)


def _lsgan_critic(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                  real_label: float = 1.0) -> torch.Tensor:
  """The official `backward_D_basic`: the halved sum of the real and fake MSE terms."""
  return 0.5 * (torch.mean((critic(real) - real_label) ** 2) + torch.mean(critic(fake) ** 2))


# ---------------------------------------------------------------------------------------------
# SRN-DeblurNet


class SameConv2d(nn.Conv2d):
  """A convolution with TF's 'SAME' padding (slim's default): at stride 2 on an even side the
  extra row and column go after, (1, 2) for a 5x5 kernel, where torch's `padding=2` would pad
  (2, 2) and shift every output by one input pixel."""

  def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
    super().__init__(in_channels, out_channels, kernel_size, stride=stride)

  def forward(self, features):
    pads = []
    for side, kernel, stride in zip(reversed(features.shape[2:]), reversed(self.kernel_size),
                                    reversed(self.stride), strict=True):
      total = max(kernel - stride if side % stride == 0 else kernel - side % stride, 0)
      pads += [total // 2, total - total // 2]
    return super().forward(F.pad(features, pads))


def resize(images: torch.Tensor, size: tuple[int, int], mode: str = "tf1") -> torch.Tensor:
  """Bilinear resize. 'tf1' is the official code's TF1 `tf.image.resize_images` (samples at
  `i * in / out`, no half-pixel centres: halving a side keeps the even pixels); 'half_pixel' is
  TF2's and torch's `align_corners=False` without antialiasing, the convention faceblur keeps
  (`faceblur.models.layers.resize_images`)."""
  if tuple(images.shape[2:]) == tuple(size):
    return images
  if mode == "half_pixel":
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)
  if mode != "tf1":
    raise ValueError(f"unknown resize mode {mode!r}")
  for axis, (side, new_side) in enumerate(zip(images.shape[2:], size, strict=True)):
    position = torch.arange(new_side, dtype=images.dtype, device=images.device) * (side / new_side)
    low = position.floor().long().clamp(max=side - 1)
    high = (low + 1).clamp(max=side - 1)
    shape = [1, 1, 1, 1]
    shape[2 + axis] = new_side
    weight = (position - low.to(images.dtype)).reshape(shape)
    images = (images.index_select(2 + axis, low) * (1 - weight)
              + images.index_select(2 + axis, high) * weight)
  return images


class ResBlock(nn.Module):
  def __init__(self, width: int):
    super().__init__()
    self.conv1 = SameConv2d(width, width, 5)
    self.conv2 = SameConv2d(width, width, 5)

  def forward(self, features):
    return features + self.conv2(F.relu(self.conv1(features)))


class ConvLSTMCell(nn.Module):
  """`BasicConvLSTMCell`: gates i, j, f, o from one conv of [input, hidden], forget bias 1."""

  def __init__(self, width: int):
    super().__init__()
    self.gates = SameConv2d(2 * width, 4 * width, 3)

  def forward(self, inputs, carry):
    hidden, cell = carry
    input_gate, candidate, forget_gate, output_gate = torch.chunk(
        self.gates(torch.cat([inputs, hidden], 1)), 4, 1)
    cell = (cell * torch.sigmoid(forget_gate + 1.0)
            + torch.sigmoid(input_gate) * torch.tanh(candidate))
    hidden = torch.tanh(cell) * torch.sigmoid(output_gate)
    return hidden, (hidden, cell)


class SRNDeblurNet(nn.Module):
  """Three scales (ratio 0.5) coarse to fine with one set of weights; sides divisible by 16.

  `resize` is the pyramid's, the upsampled estimate's and the ConvLSTM state's resize ('tf1',
  the official code's, or 'half_pixel', faceblur's); `residual` adds each scale's blurred input
  to its estimate (faceblur's option, not the reference).
  """

  def __init__(self, width: int = 32, channels: int = 3, num_scales: int = 3,
               use_lstm: bool = True, resize: str = "tf1", residual: bool = False):
    super().__init__()
    self.num_scales, self.resize, self.residual = num_scales, resize, residual
    blocks = lambda w: nn.Sequential(*[ResBlock(w) for _ in range(3)])  # noqa: E731
    self.enc1 = nn.Sequential(SameConv2d(2 * channels, width, 5), nn.ReLU(), blocks(width))
    self.enc2 = nn.Sequential(SameConv2d(width, 2 * width, 5, stride=2), nn.ReLU(),
                              blocks(2 * width))
    self.enc3 = nn.Sequential(SameConv2d(2 * width, 4 * width, 5, stride=2), nn.ReLU(),
                              blocks(4 * width))
    self.lstm = ConvLSTMCell(4 * width) if use_lstm else None
    # slim.conv2d_transpose(4x4, stride 2, 'SAME'): exactly twice the size, torch's padding 1.
    self.dec3 = nn.Sequential(blocks(4 * width),
                              nn.ConvTranspose2d(4 * width, 2 * width, 4, stride=2, padding=1),
                              nn.ReLU())
    self.dec2 = nn.Sequential(blocks(2 * width),
                              nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1),
                              nn.ReLU())
    self.dec1 = nn.Sequential(blocks(width), SameConv2d(width, channels, 5))

  def forward(self, blurred: torch.Tensor) -> list[torch.Tensor]:
    n, _, height, width = blurred.shape
    estimate, carry, estimates = None, None, []
    for k in reversed(range(self.num_scales)):
      size = (round(height * 0.5**k), round(width * 0.5**k))
      scaled = resize(blurred, size, self.resize)
      previous = scaled if estimate is None else resize(estimate.detach(), size, self.resize)
      encoded1 = self.enc1(torch.cat([scaled, previous], 1))
      encoded2 = self.enc2(encoded1)
      hidden = encoded3 = self.enc3(encoded2)
      if self.lstm is not None:
        state_size = (size[0] // 4, size[1] // 4)
        if carry is None:
          zeros = blurred.new_zeros(n, self.lstm.gates.out_channels // 4, *state_size)
          carry = (zeros, zeros)
        else:
          carry = tuple(resize(state, state_size, self.resize) for state in carry)
        hidden, carry = self.lstm(encoded3, carry)
      hidden = self.dec3(hidden) + encoded2
      hidden = self.dec2(hidden) + encoded1
      estimate = self.dec1(hidden)
      if self.residual:
        estimate = estimate + scaled
      estimates.append(estimate)
    return estimates


class SRNStep:
  """Adam (lr 1e-4) on the multi-scale Euclidean loss of the official code (the mean squared
  error at each scale against the sharp image resized likewise, equal weights). The official
  training leaves gradient clipping off; `lstm_clip_norm > 0` clips the ConvLSTM's."""

  def __init__(self, width: int = 32, *, use_lstm: bool = True, resize: str = "tf1",
               residual: bool = False, scale_weights=(1.0, 1.0, 1.0), lstm_clip_norm: float = 0.0,
               learning_rate: float = 1e-4):
    self.network = SRNDeblurNet(width, use_lstm=use_lstm, resize=resize, residual=residual,
                                num_scales=len(scale_weights))
    self.scale_weights, self.lstm_clip_norm = tuple(scale_weights), lstm_clip_norm
    self.optimizer = torch.optim.Adam(self.network.parameters(), lr=learning_rate)
    self.losses: dict[str, float] = {}  # the last step's terms

  def networks(self) -> dict[str, nn.Module]:
    return {"deblurrer": self.network}

  def __call__(self, sharp: torch.Tensor, blurred: torch.Tensor) -> float:
    self.optimizer.zero_grad(set_to_none=True)
    terms = [F.mse_loss(estimate, resize(sharp, tuple(estimate.shape[2:]), self.network.resize))
             for estimate in self.network(blurred)]
    loss = sum(weight * term for weight, term in zip(self.scale_weights, terms, strict=True))
    loss.backward()
    if self.lstm_clip_norm > 0 and self.network.lstm is not None:
      torch.nn.utils.clip_grad_norm_(self.network.lstm.parameters(), self.lstm_clip_norm)
    self.optimizer.step()
    self.losses = {"loss": float(loss.detach()),
                   **{f"loss/scale{i}": float(t.detach()) for i, t in enumerate(terms)}}
    return self.losses["loss"]


def step_from_config(stage: str, config, *, resize: str = "tf1"):
  """The step of `stage` ("cyclegan" or "srn") with the networks, losses and pool a faceblur
  stage config builds (its `model`, `loss`, `pool_size` and learning rate), so that the
  benchmarks time the same networks at any config's widths and depths (`configs/demo.py`'s as
  well as the reference's). `resize` is SRN's pyramid resize: the official code's 'tf1' by
  default, or faceblur's 'half_pixel' (the parameters are the same either way)."""
  model = config.model
  if stage == "cyclegan" and model.get("generator", "resnet") == "kernel_blur":
    opt = config.optimizer
    return KernelBlurStep(model, config.loss, config.pool_size, opt.learning_rate,
                          (opt.b1, opt.b2), config.get("ema_decay", 0.0))
  if stage == "cyclegan":
    loss = config.loss
    return CycleGANStep(model.num_blocks, model.features, loss.cycle_weight, loss.identity_weight,
                        config.pool_size, critic_width=model.disc_features,
                        critic_layers=model.disc_layers, real_label=loss.real_label,
                        residual=model.get("residual", False))
  if stage != "srn":
    raise ValueError(f"unknown stage {stage!r}; choose cyclegan or srn")
  if model.channels != 3 or model.scale_ratio != 0.5:
    raise ValueError("the PyTorch SRN is colour with a scale ratio of 0.5")
  return SRNStep(model.features, use_lstm=model.use_lstm, resize=resize,
                 residual=model.get("residual", False),
                 scale_weights=tuple(config.loss.scale_weights),
                 lstm_clip_norm=config.optimizer.lstm_grad_clip_norm,
                 learning_rate=config.optimizer.learning_rate)


def parameter_count(step) -> int:
  return sum(p.numel() for network in step.networks().values() for p in network.parameters())
