"""PyTorch re-implementations of the two networks and their train steps, for benchmarks only.

The CycleGAN side follows the official code (junyanz/pytorch-CycleGAN-and-pix2pix:
`ResnetGenerator`, `NLayerDiscriminator`, `ImagePool`, `optimize_parameters`); the SRN side
is a layer-for-layer port of SRN-DeblurNet's TensorFlow graph (encoder 32-64-128 with three
5x5 ResBlocks per stage, a 3x3 ConvLSTM, decoder with summed skips, three scales with shared
weights, multi-scale Euclidean loss, ConvLSTM gradients clipped). Both use the layouts and
defaults of their reference code (NCHW, float32, eager mode), so that the ratio printed by
`bench/train_step.py` is faceblur against what a researcher would otherwise run. Parameter
counts match faceblur's networks exactly; `bench/train_step.py` checks this.

torch is an optional extra of the benchmarks (`pip install -e '.[bench]'`), never of the
package.
"""

import random

import torch
import torch.nn.functional as F
from torch import nn

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


def resnet_generator(num_blocks: int = 9, width: int = 64, channels: int = 3) -> nn.Module:
  """The official `ResnetGenerator` with instance norm (no affine), biases, no dropout."""
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
  return nn.Sequential(*layers)


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
  """The official history buffer of 50 fakes."""

  def __init__(self, capacity: int):
    self.capacity, self.images = capacity, []

  def query(self, fakes: torch.Tensor) -> torch.Tensor:
    if self.capacity == 0:
      return fakes
    returned = []
    for image in fakes:
      image = image.unsqueeze(0)
      if len(self.images) < self.capacity:
        self.images.append(image)
        returned.append(image)
      elif random.random() > 0.5:
        index = random.randrange(self.capacity)
        returned.append(self.images[index].clone())
        self.images[index] = image
      else:
        returned.append(image)
    return torch.cat(returned, 0)


class CycleGANStep:
  """`optimize_parameters` of the official CycleGAN model: G and F, then both critics."""

  def __init__(self, num_blocks: int = 9, width: int = 64, cycle_weight: float = 10.0,
               identity_weight: float = 0.5, pool_size: int = 50):
    self.sharp_to_blurred = resnet_generator(num_blocks, width)
    self.blurred_to_sharp = resnet_generator(num_blocks, width)
    self.blurred_critic, self.sharp_critic = patch_discriminator(width), patch_discriminator(width)
    self.cycle_weight, self.identity_weight = cycle_weight, identity_weight * cycle_weight
    self.pools = ImagePool(pool_size), ImagePool(pool_size)
    generators = [*self.sharp_to_blurred.parameters(), *self.blurred_to_sharp.parameters()]
    critics = [*self.blurred_critic.parameters(), *self.sharp_critic.parameters()]
    self.generator_opt = torch.optim.Adam(generators, lr=2e-4, betas=(0.5, 0.999))
    self.critic_opt = torch.optim.Adam(critics, lr=2e-4, betas=(0.5, 0.999))

  def networks(self) -> dict[str, nn.Module]:
    return {"sharp_to_blurred": self.sharp_to_blurred, "blurred_to_sharp": self.blurred_to_sharp,
            "blurred_critic": self.blurred_critic, "sharp_critic": self.sharp_critic}

  def __call__(self, sharp: torch.Tensor, blurred: torch.Tensor) -> float:
    """One update from [-1, 1] NCHW batches; returns the generator loss."""
    sharp_to_blurred, blurred_to_sharp = self.sharp_to_blurred, self.blurred_to_sharp
    for critic in (self.blurred_critic, self.sharp_critic):
      critic.requires_grad_(False)
    self.generator_opt.zero_grad(set_to_none=True)
    fake_blurred, fake_sharp = sharp_to_blurred(sharp), blurred_to_sharp(blurred)
    adversarial = (_lsgan_generator(self.blurred_critic(fake_blurred))
                   + _lsgan_generator(self.sharp_critic(fake_sharp)))
    cycle = (F.l1_loss(blurred_to_sharp(fake_blurred), sharp)
             + F.l1_loss(sharp_to_blurred(fake_sharp), blurred))
    identity = (F.l1_loss(sharp_to_blurred(blurred), blurred)
                + F.l1_loss(blurred_to_sharp(sharp), sharp))
    generator_loss = adversarial + self.cycle_weight * cycle + self.identity_weight * identity
    generator_loss.backward()
    self.generator_opt.step()

    for critic in (self.blurred_critic, self.sharp_critic):
      critic.requires_grad_(True)
    self.critic_opt.zero_grad(set_to_none=True)
    pooled_blurred = self.pools[0].query(fake_blurred.detach())
    pooled_sharp = self.pools[1].query(fake_sharp.detach())
    critic_loss = (_lsgan_critic(self.blurred_critic, blurred, pooled_blurred)
                   + _lsgan_critic(self.sharp_critic, sharp, pooled_sharp))
    critic_loss.backward()
    self.critic_opt.step()
    return float(generator_loss)


def _lsgan_generator(scores: torch.Tensor) -> torch.Tensor:
  return torch.mean((scores - 1.0) ** 2)


def _lsgan_critic(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
  return 0.5 * (torch.mean((critic(real) - 1.0) ** 2) + torch.mean(critic(fake) ** 2))


# ---------------------------------------------------------------------------------------------
# SRN-DeblurNet


class ResBlock(nn.Module):
  def __init__(self, width: int):
    super().__init__()
    self.conv1 = nn.Conv2d(width, width, 5, padding=2)
    self.conv2 = nn.Conv2d(width, width, 5, padding=2)

  def forward(self, features):
    return features + self.conv2(F.relu(self.conv1(features)))


class ConvLSTMCell(nn.Module):
  def __init__(self, width: int):
    super().__init__()
    self.gates = nn.Conv2d(2 * width, 4 * width, 3, padding=1)

  def forward(self, inputs, carry):
    hidden, cell = carry
    input_gate, candidate, forget_gate, output_gate = torch.chunk(
        self.gates(torch.cat([inputs, hidden], 1)), 4, 1)
    cell = (cell * torch.sigmoid(forget_gate + 1.0)
            + torch.sigmoid(input_gate) * torch.tanh(candidate))
    hidden = torch.tanh(cell) * torch.sigmoid(output_gate)
    return hidden, (hidden, cell)


class SRNDeblurNet(nn.Module):
  """Three scales (ratio 0.5) coarse to fine with one set of weights; sides divisible by 16."""

  def __init__(self, width: int = 32, channels: int = 3, num_scales: int = 3):
    super().__init__()
    self.num_scales = num_scales
    blocks = lambda w: nn.Sequential(*[ResBlock(w) for _ in range(3)])  # noqa: E731
    self.enc1 = nn.Sequential(nn.Conv2d(2 * channels, width, 5, padding=2), nn.ReLU(),
                              blocks(width))
    self.enc2 = nn.Sequential(nn.Conv2d(width, 2 * width, 5, stride=2, padding=2), nn.ReLU(),
                              blocks(2 * width))
    self.enc3 = nn.Sequential(nn.Conv2d(2 * width, 4 * width, 5, stride=2, padding=2), nn.ReLU(),
                              blocks(4 * width))
    self.lstm = ConvLSTMCell(4 * width)
    self.dec3 = nn.Sequential(blocks(4 * width),
                              nn.ConvTranspose2d(4 * width, 2 * width, 4, stride=2, padding=1),
                              nn.ReLU())
    self.dec2 = nn.Sequential(blocks(2 * width),
                              nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1),
                              nn.ReLU())
    self.dec1 = nn.Sequential(blocks(width), nn.Conv2d(width, channels, 5, padding=2))

  def forward(self, blurred: torch.Tensor) -> list[torch.Tensor]:
    n, _, height, width = blurred.shape
    estimate, carry, estimates = None, None, []
    for k in reversed(range(self.num_scales)):
      size = (height >> k, width >> k)
      scaled = F.interpolate(blurred, size=size, mode="bilinear", align_corners=False)
      previous = scaled if estimate is None else F.interpolate(
          estimate.detach(), size=size, mode="bilinear", align_corners=False)
      state_size = (size[0] // 4, size[1] // 4)
      if carry is None:
        zeros = blurred.new_zeros(n, self.lstm.gates.out_channels // 4, *state_size)
        carry = (zeros, zeros)
      else:
        carry = tuple(F.interpolate(state, size=state_size, mode="bilinear", align_corners=False)
                      for state in carry)
      encoded1 = self.enc1(torch.cat([scaled, previous], 1))
      encoded2 = self.enc2(encoded1)
      encoded3 = self.enc3(encoded2)
      hidden, carry = self.lstm(encoded3, carry)
      hidden = self.dec3(hidden) + encoded2
      hidden = self.dec2(hidden) + encoded1
      estimate = self.dec1(hidden)
      estimates.append(estimate)
    return estimates


class SRNStep:
  """Adam (lr 1e-4) on the multi-scale Euclidean loss; ConvLSTM gradients clipped to norm 3."""

  def __init__(self, width: int = 32):
    self.network = SRNDeblurNet(width)
    self.optimizer = torch.optim.Adam(self.network.parameters(), lr=1e-4)

  def networks(self) -> dict[str, nn.Module]:
    return {"deblurrer": self.network}

  def __call__(self, sharp: torch.Tensor, blurred: torch.Tensor) -> float:
    self.optimizer.zero_grad(set_to_none=True)
    loss = sum(F.mse_loss(estimate, F.interpolate(sharp, size=estimate.shape[2:], mode="bilinear",
                                                  align_corners=False))
               for estimate in self.network(blurred))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(self.network.lstm.parameters(), 3.0)
    self.optimizer.step()
    return float(loss)


def parameter_count(step) -> int:
  return sum(p.numel() for network in step.networks().values() for p in network.parameters())
