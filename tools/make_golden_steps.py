"""Writes the golden train steps `tests/train/test_golden_steps.py` checks faceblur against.

Run once, where torch is installed (`pip install -e '.[bench]'`):
`python tools/make_golden_steps.py`. It takes faceblur's own initialisation of small networks
(the reference configs shrunk: few features and blocks, 32 px), converts the weights into the
PyTorch reference networks of `bench/torch_reference.py` (the official CycleGAN and SRN layer
lists), and runs one optimiser step of each stage there on one seeded batch, the losses
computed by the reference code (LSGAN with the critics' 0.5, L1 terms on [-1, 1], the
multi-scale Euclidean loss, torch's Adam). `tests/fixtures/golden_{cyclegan,srn}.npz` keep
the config overrides, the batch, the initial weights, and per step every loss term, the
gradients of a few named kernels and every parameter after the step, in faceblur's names and
layouts (NHWC/HWIO), so that the tests need no torch.

Two CycleGAN steps start from the same weights: one with the reference's pool of 50, empty,
so the critics see the new fakes; one with a full pool of 3, where the images the critics
see are drawn from it. Those draws are faceblur's (`query_image_pool` under the key its step
derives from the state's `rng`); the torch pool replays them, and the state's `rng` is chosen
so that each pool swaps one image and passes the other. faceblur keeps TF2's half-pixel
bilinear resize where the official SRN (TF1) sampled at `i * scale`, a documented choice
(`faceblur.models.layers.resize_images`): the golden SRN uses faceblur's convention.
"""

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from flax import nnx  # noqa: E402

from bench import torch_reference as ref  # noqa: E402
from configs import cyclegan as cyclegan_configs  # noqa: E402
from configs import srn as srn_configs  # noqa: E402
from faceblur.models.layers import ConvTranspose  # noqa: E402
from faceblur.ops import compilation  # noqa: E402
from faceblur.train import cyclegan, partitioning, srn  # noqa: E402
from faceblur.train import state as state_lib  # noqa: E402
from faceblur.train.image_pool import ImagePool, create_image_pool, query_image_pool  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
NUM_TRAIN_STEPS = 100
CROP = 32
BATCH = 2
CYCLEGAN_OVERRIDES = {"model.num_blocks": 2, "model.features": 4, "model.disc_features": 4,
                      "data.load_size": CROP, "data.crop_size": CROP, "batch_size": BATCH,
                      "num_train_steps": NUM_TRAIN_STEPS, "num_devices": 1}
FULL_POOL_SIZE = 3
SRN_OVERRIDES = {"model.features": 4, "data.crop_size": CROP, "batch_size": BATCH,
                 "num_train_steps": NUM_TRAIN_STEPS, "num_devices": 1}
CYCLEGAN_GRADIENTS = ("g/stem/kernel", "g/blocks/1/1/kernel", "g/up/0/kernel", "g/head/kernel",
                      "g/head/bias", "f/down/0/kernel", "f/up/1/kernel", "f/head/kernel",
                      "d_blurred/layers/0/kernel", "d_blurred/layers/4/kernel",
                      "d_blurred/layers/4/bias", "d_sharp/layers/2/kernel",
                      "d_sharp/layers/4/kernel")
SRN_GRADIENTS = ("deblurrer/enc1/kernel", "deblurrer/enc2/kernel",
                 "deblurrer/enc3_blocks/2/conv2/kernel",
                 "deblurrer/lstm/gates/kernel", "deblurrer/lstm/gates/bias",
                 "deblurrer/dec3_up/kernel", "deblurrer/dec2_up/kernel", "deblurrer/out/kernel",
                 "deblurrer/out/bias")


def configure(config: ml_collections.ConfigDict, overrides: dict) -> ml_collections.ConfigDict:
  for dotted, value in overrides.items():
    *parents, key = dotted.split(".")
    node = config
    for parent in parents:
      node = node[parent]
    node[key] = value
  return config


def flatten(params: nnx.State, network: str) -> dict[str, np.ndarray]:
  """{'network/path/kernel': array} in faceblur's layout."""
  flat = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = jax.tree_util.keystr(path, simple=True, separator="/").removesuffix("/value")
    flat[f"{network}/{name}"] = np.asarray(leaf, np.float32)
  return flat


def generator_layers(num_blocks: int) -> list[str]:
  blocks = [f"blocks/{i}/{j}" for i in range(num_blocks) for j in (0, 1)]
  return ["stem", "down/0", "down/1", *blocks, "up/0", "up/1", "head"]


def critic_layers(num_layers: int) -> list[str]:
  return [f"layers/{i}" for i in range(num_layers + 2)]


def srn_layers(use_lstm: bool) -> list[str]:
  def blocks(name):
    return [f"{name}/{i}/conv{j}" for i in range(3) for j in (1, 2)]
  return ["enc1", *blocks("enc1_blocks"), "enc2", *blocks("enc2_blocks"), "enc3",
          *blocks("enc3_blocks"), *(["lstm/gates"] if use_lstm else []), *blocks("dec3_blocks"),
          "dec3_up", *blocks("dec2_blocks"), "dec2_up", *blocks("dec1_blocks"), "out"]


def to_torch_kernel(kernel: np.ndarray, transposed: bool) -> np.ndarray:
  """HWIO -> OIHW; a transposed conv's (kh, kw, out, in) -> torch's (in, out, kh, kw): the same
  axis order and no spatial flip (checked by `check_transposed_layout`)."""
  del transposed  # one rule for both, verified below
  return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))


def from_torch_kernel(kernel: np.ndarray) -> np.ndarray:
  return np.ascontiguousarray(kernel.transpose(2, 3, 1, 0))


def torch_convolutions(module: torch.nn.Module) -> list[torch.nn.Module]:
  return [m for m in module.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]


def load_into_torch(flat: dict, network: str, layers: list[str], module: torch.nn.Module) -> dict:
  """Copies faceblur's weights into `module`; returns {faceblur name: torch parameter}."""
  convolutions = torch_convolutions(module)
  assert len(convolutions) == len(layers), (network, len(convolutions), len(layers))
  names = {}
  for layer, conv in zip(layers, convolutions, strict=True):
    kernel = flat[f"{network}/{layer}/kernel"]
    converted = to_torch_kernel(kernel, isinstance(conv, torch.nn.ConvTranspose2d))
    assert tuple(conv.weight.shape) == converted.shape, (layer, conv.weight.shape, kernel.shape)
    with torch.no_grad():
      conv.weight.copy_(torch.from_numpy(converted))
      conv.bias.copy_(torch.from_numpy(flat[f"{network}/{layer}/bias"].copy()))
    names[f"{network}/{layer}/kernel"], names[f"{network}/{layer}/bias"] = conv.weight, conv.bias
  assert len(names) == sum(1 for key in flat if key.startswith(f"{network}/")), network
  return names


def torch_state(names: dict, attribute: str) -> dict[str, np.ndarray]:
  """Each parameter (`attribute='data'`) or gradient ('grad') back in faceblur's layout."""
  out = {}
  for name, parameter in names.items():
    value = getattr(parameter, attribute).detach().numpy().astype(np.float32)
    out[name] = from_torch_kernel(value) if value.ndim == 4 else value
  return out


def check_transposed_layout() -> None:
  """faceblur's ConvTranspose and torch's ConvTranspose2d agree under `to_torch_kernel`, and
  would not with the kernel flipped: the conversion is verified, not assumed."""
  rng = np.random.default_rng(1)
  for kernel_size, output_padding in ((3, 1), (4, 0)):
    layer = ConvTranspose(5, 3, kernel_size, rngs=nnx.Rngs(0))
    kernel = rng.normal(size=(kernel_size, kernel_size, 3, 5)).astype(np.float32)
    layer.kernel[...] = jnp.asarray(kernel)
    inputs = rng.normal(size=(1, 6, 6, 5)).astype(np.float32)
    expected = np.asarray(layer(jnp.asarray(inputs)))
    torch_layer = torch.nn.ConvTranspose2d(5, 3, kernel_size, stride=2, padding=1,
                                           output_padding=output_padding)
    for flip, should_match in ((False, True), (True, False)):
      weights = to_torch_kernel(kernel[::-1, ::-1] if flip else kernel, True)
      with torch.no_grad():
        torch_layer.weight.copy_(torch.from_numpy(weights))
        torch_layer.bias.zero_()
        got = torch_layer(torch.from_numpy(inputs.transpose(0, 3, 1, 2))).numpy()
      matches = np.allclose(got.transpose(0, 2, 3, 1), expected, atol=1e-5)
      assert matches == should_match, (kernel_size, flip)


def nchw(images: np.ndarray) -> torch.Tensor:
  return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


class Replay:
  """An `rng` for `ref.ImagePool` that replays recorded (swap, slot) draws."""

  def __init__(self, draws):
    self.draws, self.slot = list(draws), None

  def random(self) -> float:
    swap, self.slot = self.draws.pop(0)
    return 0.75 if swap else 0.25

  def randrange(self, capacity: int) -> int:
    assert 0 <= self.slot < capacity
    return self.slot


def pool_draws(pool: ImagePool, key: jax.Array, batch: int) -> list[tuple[bool, int]]:
  """faceblur's own choices for a full pool: marker images reveal which slot each returned
  image came from (value = slot + 100) or that the fake itself passed (value = its index)."""
  markers = ImagePool(images=jnp.broadcast_to(
      jnp.arange(pool.capacity, dtype=jnp.float32)[:, None, None, None] + 100,
      pool.images.shape), num_stored=pool.num_stored)
  fakes = jnp.broadcast_to(jnp.arange(batch, dtype=jnp.float32)[:, None, None, None],
                           (batch, *pool.images.shape[1:]))
  _, returned = query_image_pool(markers, fakes, key)
  values = np.asarray(returned[:, 0, 0, 0]).round().astype(int)
  return [(bool(v >= 100), int(v - 100) if v >= 100 else 0) for v in values]


def pool_keys(rng: jax.Array, step: int = 0):
  """The keys `cyclegan.make_train_step` gives the two pools (blurred, sharp)."""
  return jax.random.split(jax.random.fold_in(rng, step))


def faceblur_step(module, config, state, batch):
  mesh = partitioning.make_mesh(1)
  tx = module.STAGE.make_optimizer(config, NUM_TRAIN_STEPS)
  replicated = partitioning.replicated(mesh)
  step = compilation.jit(module.make_train_step(config, module.make_networks(config), tx),
                         donate_argnums=0, out_shardings=(replicated, replicated))
  state = jax.tree.map(jnp.copy, state)  # donated: keep the caller's
  return step(state, partitioning.shard_batch(batch, mesh))


def report(name: str, metrics: dict, losses: dict, state, after: dict) -> None:
  """How faceblur's own step agrees with the golden one (for the record)."""
  ours = {}
  for network, params in state.params.items():
    ours.update(flatten(params, network))
  differences = {k: float(np.abs(ours[k] - after[k]).max()) for k in after}
  print(name, {k: (float(metrics[k]), v) for k, v in losses.items()})
  print("  largest parameter differences:",
        sorted(differences.items(), key=lambda item: -item[1])[:12])


def make_cyclegan() -> None:
  config = configure(cyclegan_configs.get_config(), CYCLEGAN_OVERRIDES)
  tx = cyclegan.STAGE.make_optimizer(config, NUM_TRAIN_STEPS)
  mesh = partitioning.make_mesh(1)
  init = state_lib.create_train_state(cyclegan.init_fn(config, tx), config.seed, mesh)
  flat = {}
  for network, params in init.params.items():
    flat.update(flatten(params, network))
  rng = np.random.default_rng(0)
  batch = {"sharp": rng.uniform(size=(BATCH, CROP, CROP, 3)).astype(np.float32),
           "blurred": rng.uniform(size=(BATCH, CROP, CROP, 3)).astype(np.float32)}
  pools = {"fake_blurred_pool": rng.uniform(size=(FULL_POOL_SIZE, CROP, CROP, 3)),
           "fake_sharp_pool": rng.uniform(size=(FULL_POOL_SIZE, CROP, CROP, 3))}
  pools = {k: v.astype(np.float32) for k, v in pools.items()}
  full = ImagePool(images=jnp.asarray(pools["fake_blurred_pool"]),
                   num_stored=jnp.asarray(FULL_POOL_SIZE, jnp.int32))
  # A state rng under which each pool swaps exactly one of the two fakes.
  for seed in range(1000):
    state_rng = jax.random.PRNGKey(seed)
    draws = [pool_draws(full, key, BATCH) for key in pool_keys(state_rng)]
    if all(sum(swap for swap, _ in pool) == 1 for pool in draws):
      break
  fixture = {"overrides": np.array(json.dumps(CYCLEGAN_OVERRIDES)),
             "full_pool_size": np.array(FULL_POOL_SIZE), "rng": np.asarray(state_rng),
             **{f"batch/{k}": v for k, v in batch.items()},
             **{f"init/{k}": v for k, v in flat.items()},
             **{f"full_pool/{k}": v for k, v in pools.items()},
             "full_pool/draws": np.array(draws, np.int32)}
  model = config.model
  for case, pool_size in (("empty_pool", config.pool_size), ("full_pool", FULL_POOL_SIZE)):
    step = ref.CycleGANStep(model.num_blocks, model.features, config.loss.cycle_weight,
                            config.loss.identity_weight, pool_size,
                            critic_width=model.disc_features, critic_layers=model.disc_layers,
                            real_label=config.loss.real_label, residual=model.residual)
    assert config.optimizer.learning_rate == 2e-4 and config.optimizer.b1 == 0.5
    names = {}
    for network, module, layers in (
        ("g", step.sharp_to_blurred, generator_layers(model.num_blocks)),
        ("f", step.blurred_to_sharp, generator_layers(model.num_blocks)),
        ("d_blurred", step.blurred_critic, critic_layers(model.disc_layers)),
        ("d_sharp", step.sharp_critic, critic_layers(model.disc_layers))):
      names.update(load_into_torch(flat, network, layers, module))
    if case == "empty_pool":  # the converted networks compute what faceblur's do
      networks = cyclegan.make_networks(config)
      for network, module in (("g", step.sharp_to_blurred), ("d_sharp", step.sharp_critic)):
        ours = np.asarray(networks[network].apply(init.params[network], batch["sharp"]))
        theirs = module(nchw(batch["sharp"] * 2 - 1)).detach().numpy().transpose(0, 2, 3, 1)
        theirs = (theirs + 1) / 2 if network == "g" else theirs
        np.testing.assert_allclose(ours, theirs, atol=2e-5)
    else:
      for pool, blurred_or_sharp, pool_draw in zip(step.pools, pools.values(), draws, strict=True):
        pool.images = [nchw(image[None] * 2 - 1) for image in blurred_or_sharp]
        assert len(pool.images) == pool.capacity
        pool.rng = Replay(pool_draw)
    step(nchw(batch["sharp"] * 2 - 1), nchw(batch["blurred"] * 2 - 1))
    after = torch_state(names, "data")
    gradients = torch_state(names, "grad")
    fixture.update({f"{case}/loss/{k}": np.float32(v) for k, v in step.losses.items()})
    fixture.update({f"{case}/after/{k}": v for k, v in after.items()})
    fixture.update({f"{case}/grad/{k}": gradients[k] for k in CYCLEGAN_GRADIENTS})
    if case == "full_pool":
      for field, pool in zip(pools, step.pools, strict=True):
        fixture[f"{case}/pool_after/{field}"] = np.concatenate(
            [(image.numpy().transpose(0, 2, 3, 1) + 1) / 2 for image in pool.images])
    np.savez_compressed(FIXTURES / "golden_cyclegan.npz", **fixture)
    # faceblur's own step, for the record
    config.pool_size = pool_size
    state = init.replace(
        rng=jnp.asarray(state_rng),
        fake_blurred_pool=(create_image_pool(pool_size, (CROP, CROP, 3)) if case == "empty_pool"
                           else full),
        fake_sharp_pool=(create_image_pool(pool_size, (CROP, CROP, 3)) if case == "empty_pool"
                         else full.replace(images=jnp.asarray(pools["fake_sharp_pool"]))))
    state, metrics = faceblur_step(cyclegan, config, state, batch)
    report(case, metrics, step.losses, state, after)
  np.savez_compressed(FIXTURES / "golden_cyclegan.npz", **fixture)


def make_srn() -> None:
  config = configure(srn_configs.get_config(), SRN_OVERRIDES)
  tx = srn.STAGE.make_optimizer(config, NUM_TRAIN_STEPS)
  mesh = partitioning.make_mesh(1)
  init = state_lib.create_train_state(srn.init_fn(config, tx), config.seed, mesh)
  flat = flatten(init.deblurrer, srn.NETWORK)
  rng = np.random.default_rng(1)
  sharp = rng.uniform(size=(BATCH, CROP, CROP, 3)).astype(np.float32)
  blurred = np.clip(sharp + rng.normal(0, 0.1, sharp.shape), 0, 1).astype(np.float32)
  batch = {"sharp": sharp, "blurred": blurred}
  model, opt = config.model, config.optimizer
  assert model.use_lstm and opt.lstm_grad_clip_norm == 0 and opt.learning_rate == 1e-4
  step = ref.SRNStep(model.features, use_lstm=model.use_lstm, resize="half_pixel",
                     residual=model.residual, scale_weights=config.loss.scale_weights,
                     learning_rate=opt.learning_rate)
  names = load_into_torch(flat, srn.NETWORK, srn_layers(model.use_lstm), step.network)
  ours = srn.make_networks(config)[srn.NETWORK].apply(init.deblurrer, blurred)
  theirs = step.network(nchw(blurred))
  for estimate, reference in zip(ours, theirs, strict=True):
    np.testing.assert_allclose(np.asarray(estimate),
                               reference.detach().numpy().transpose(0, 2, 3, 1), atol=2e-5)
  step(nchw(sharp), nchw(blurred))
  after, gradients = torch_state(names, "data"), torch_state(names, "grad")
  fixture = {"overrides": np.array(json.dumps(SRN_OVERRIDES)),
             **{f"batch/{k}": v for k, v in batch.items()},
             **{f"init/{k}": v for k, v in flat.items()},
             **{f"step/loss/{k}": np.float32(v) for k, v in step.losses.items()},
             **{f"step/after/{k}": v for k, v in after.items()},
             **{f"step/grad/{k}": gradients[k] for k in SRN_GRADIENTS}}
  np.savez_compressed(FIXTURES / "golden_srn.npz", **fixture)
  state, metrics = faceblur_step(srn, config, init, batch)
  report("srn", metrics, step.losses, state, after)


def main() -> None:
  torch.manual_seed(0)
  check_transposed_layout()
  FIXTURES.mkdir(parents=True, exist_ok=True)
  which = sys.argv[1:] or ["cyclegan", "srn"]
  if "cyclegan" in which:
    make_cyclegan()
  if "srn" in which:
    make_srn()


if __name__ == "__main__":
  main()
