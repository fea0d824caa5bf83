"""faceblur's real train steps against golden steps of the PyTorch references.

`tools/make_golden_steps.py` ran one step of each stage in `bench/torch_reference.py` (the
official CycleGAN and SRN layer lists, losses and Adam) from faceblur's initial weights of
small networks and kept the result in `tests/fixtures/golden_*.npz`; torch is not needed
here. Each test builds the stage's state from those weights, runs the step training runs
(`compilation.jit` of `make_train_step`, the state donated, the config's optimiser inside the
non-finite guard, the image pools) on the same batch and compares every loss term, the
gradients of the named kernels (read back from Adam's first moment: after one step from zero
it is (1 - b1) * gradient) and every parameter after the step (but the CycleGAN biases an
instance norm cancels, whose gradient is rounding noise in both frameworks). The CycleGAN
step runs twice: with the reference's empty pool of 50 and with a full pool of 3, whose draws
the torch pool replayed (one image of each pool swapped, the other passed), so the critics
learn from a stored fake.
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import cyclegan as cyclegan_configs
from configs import srn as srn_configs
from faceblur.ops import compilation
from faceblur.train import cyclegan, partitioning, srn
from faceblur.train.image_pool import ImagePool, create_image_pool

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
LOSS_RTOL = 1e-5
# Gradients: per element, within 1e-5 of the kernel's largest gradient.
GRADIENT_RTOL = 1e-5
# Parameters: one Adam step from zero moves p by -lr * g / (|g| + eps). Each update agrees to
# PARAM_RTOL of lr plus what the gradient tolerance allows through Adam's slope,
# lr * eps / (|g| + eps)^2 * GRADIENT_RTOL * max|g| (large only where |g| is near eps).
PARAM_RTOL = 1e-5
ADAM_EPS = 1e-8


def _fixture(name: str) -> dict[str, np.ndarray]:
  with np.load(FIXTURES / name) as data:
    return dict(data)


def _config(configs_module, fixture: dict, **extra):
  config = configs_module.get_config()
  for dotted, value in {**json.loads(str(fixture["overrides"])), **extra}.items():
    *parents, key = dotted.split(".")
    node = config
    for parent in parents:
      node = node[parent]
    node[key] = value
  return config


def _name(network: str, path) -> str:
  return f"{network}/" + jax.tree_util.keystr(path, simple=True, separator="/").removesuffix(
      "/value")


def _flat(params, network: str) -> dict[str, np.ndarray]:
  return {_name(network, path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}


def _params(abstract, network: str, fixture: dict):
  """The network's parameters from the fixture's initial weights, in `abstract`'s tree."""
  def load(path, leaf):
    value = fixture[f"init/{_name(network, path)}"]
    assert value.shape == leaf.shape, (_name(network, path), value.shape, leaf.shape)
    return jnp.asarray(value, leaf.dtype)
  return jax.tree_util.tree_map_with_path(load, abstract)


def _run_step(module, config, state, batch):
  """One step as `Stage.train_and_evaluate` runs it; the new state and metrics."""
  mesh = partitioning.make_mesh(1)
  tx = module.STAGE.make_optimizer(config, config.num_train_steps)
  replicated = partitioning.replicated(mesh)
  step = compilation.jit(module.make_train_step(config, module.make_networks(config), tx),
                         donate_argnums=0, out_shardings=(replicated, replicated))
  return jax.device_get(step(state, partitioning.shard_batch(batch, mesh)))


def _abstract_state(module, config):
  tx = module.STAGE.make_optimizer(config, config.num_train_steps)
  return tx, jax.eval_shape(module.init_fn(config, tx), jax.random.PRNGKey(config.seed))


def _adam_gradients(opt_state, b1: float):
  """The gradient of the one step taken, from Adam's first moment (1 - b1) * g."""
  adam = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(
      s, optax.ScaleByAdamState)) if isinstance(s, optax.ScaleByAdamState)]
  assert len(adam) == 1, adam
  assert int(adam[0].count) == 1
  return jax.tree.map(lambda mu: np.asarray(mu) / (1 - b1), adam[0].mu)


def _assert_gradients(ours: dict, fixture: dict, prefix: str) -> list[str]:
  names = [key.removeprefix(f"{prefix}/grad/") for key in fixture
           if key.startswith(f"{prefix}/grad/")]
  assert names
  for name in names:
    expected = fixture[f"{prefix}/grad/{name}"]
    np.testing.assert_allclose(ours[name], expected, rtol=GRADIENT_RTOL,
                               atol=GRADIENT_RTOL * np.abs(expected).max(), err_msg=name)
  return names


def _feeds_instance_norm(name: str) -> bool:
  """A CycleGAN bias an instance norm subtracts again: its true gradient is zero and the
  computed one rounding noise, which Adam turns into arbitrary updates up to lr."""
  network, *_, layer, field = name.split("/")
  if field != "bias":
    return False
  if network in ("g", "f"):
    return layer != "head"
  return network.startswith("d_") and layer not in ("0", "4")  # not the first or the score


def _assert_params(ours: dict, gradients: dict, fixture: dict, prefix: str,
                   learning_rate: float) -> None:
  after = {key.removeprefix(f"{prefix}/after/"): value for key, value in fixture.items()
           if key.startswith(f"{prefix}/after/")}
  assert after.keys() == ours.keys() == gradients.keys(), set(after) ^ set(ours)
  for name, expected in after.items():
    initial = fixture[f"init/{name}"].astype(np.float64)
    update = ours[name] - initial
    assert np.abs(update).max() <= learning_rate * (1 + 1e-4), name
    if _feeds_instance_norm(name):
      continue
    magnitude = np.abs(gradients[name]).astype(np.float64)
    slope = ADAM_EPS / (magnitude + ADAM_EPS) ** 2
    allowed = (learning_rate * (PARAM_RTOL + slope * GRADIENT_RTOL * magnitude.max())
               + 2 * np.spacing(np.abs(initial).astype(np.float32)))
    error = np.abs(update - (expected - initial))
    assert (error <= allowed).all(), (name, error.max(), float((error / allowed).max()))


def _cyclegan_step(fixture: dict, case: str):
  full = case == "full_pool"
  pool_size = int(fixture["full_pool_size"]) if full else None
  config = _config(cyclegan_configs, fixture, **({"pool_size": pool_size} if full else {}))
  tx, abstract = _abstract_state(cyclegan, config)
  params = {name: _params(getattr(abstract, name), name, fixture)
            for name in cyclegan.CycleGANState.NETWORKS}
  image_shape = abstract.fake_blurred_pool.images.shape[1:]
  if full:
    pools = {field: ImagePool(images=jnp.asarray(fixture[f"full_pool/{field}"]),
                              num_stored=jnp.asarray(pool_size, jnp.int32))
             for field in ("fake_blurred_pool", "fake_sharp_pool")}
  else:
    pools = {field: create_image_pool(config.pool_size, image_shape)
             for field in ("fake_blurred_pool", "fake_sharp_pool")}
  state = abstract.replace(
      step=jnp.zeros((), jnp.int32), rng=jnp.asarray(fixture["rng"]), **params,
      generator_opt_state=tx.init((params["g"], params["f"])),
      critic_opt_state=tx.init((params["d_blurred"], params["d_sharp"])), **pools)
  assert not [leaf for leaf in jax.tree.leaves(state) if isinstance(leaf, jax.ShapeDtypeStruct)]
  batch = {"sharp": fixture["batch/sharp"], "blurred": fixture["batch/blurred"]}
  return config, *_run_step(cyclegan, config, state, batch)


@pytest.fixture(scope="module")
def cyclegan_steps():
  fixture = _fixture("golden_cyclegan.npz")
  return fixture, {case: _cyclegan_step(fixture, case) for case in ("empty_pool", "full_pool")}


@pytest.mark.parametrize("case", ["empty_pool", "full_pool"])
def test_cyclegan_step_equals_the_reference_step(cyclegan_steps, case):
  fixture, steps = cyclegan_steps
  config, state, metrics = steps[case]
  names = [key.removeprefix(f"{case}/loss/") for key in fixture
           if key.startswith(f"{case}/loss/")]
  assert sorted(names) == sorted(metrics), (names, sorted(metrics))
  for name in names:
    np.testing.assert_allclose(metrics[name], fixture[f"{case}/loss/{name}"], rtol=LOSS_RTOL,
                               err_msg=name)
  b1, learning_rate = config.optimizer.b1, config.optimizer.learning_rate
  generators = _adam_gradients(state.generator_opt_state, b1)
  critics = _adam_gradients(state.critic_opt_state, b1)
  gradients = {**_flat(generators[0], "g"), **_flat(generators[1], "f"),
               **_flat(critics[0], "d_blurred"), **_flat(critics[1], "d_sharp")}
  _assert_gradients(gradients, fixture, case)
  params = {}
  for network, network_params in state.params.items():
    params.update(_flat(network_params, network))
  _assert_params(params, gradients, fixture, case, learning_rate)
  if case == "full_pool":
    for field in ("fake_blurred_pool", "fake_sharp_pool"):
      np.testing.assert_allclose(getattr(state, field).images,
                                 fixture[f"full_pool/pool_after/{field}"], atol=2e-6,
                                 err_msg=field)


def test_the_full_pool_step_shows_the_critics_a_stored_fake(cyclegan_steps):
  """Each full pool swapped one fake for a stored image, which changed the critics' losses
  (same weights and batch as the empty-pool step, same generator losses)."""
  fixture, steps = cyclegan_steps
  draws = fixture["full_pool/draws"]
  assert [int(pool[:, 0].sum()) for pool in draws] == [1, 1], draws
  empty, full = steps["empty_pool"][2], steps["full_pool"][2]
  assert float(empty["generator/total"]) == pytest.approx(float(full["generator/total"]),
                                                          rel=1e-6)
  for name in ("critic/blurred", "critic/sharp"):
    assert abs(float(empty[name]) - float(full[name])) > 1e-3 * float(empty[name]), name


def test_srn_step_with_the_convlstm_equals_the_reference_step():
  fixture = _fixture("golden_srn.npz")
  config = _config(srn_configs, fixture)
  assert config.model.use_lstm
  tx, abstract = _abstract_state(srn, config)
  params = _params(abstract.deblurrer, srn.NETWORK, fixture)
  state = abstract.replace(step=jnp.zeros((), jnp.int32),
                           rng=jnp.asarray(jax.random.PRNGKey(0)), deblurrer=params,
                           opt_state=tx.init(params))
  assert not [leaf for leaf in jax.tree.leaves(state) if isinstance(leaf, jax.ShapeDtypeStruct)]
  batch = {"sharp": fixture["batch/sharp"], "blurred": fixture["batch/blurred"]}
  state, metrics = _run_step(srn, config, state, batch)
  names = [key.removeprefix("step/loss/") for key in fixture if key.startswith("step/loss/")]
  assert sorted(names) == sorted(metrics), (names, sorted(metrics))
  for name in names:
    np.testing.assert_allclose(metrics[name], fixture[f"step/loss/{name}"], rtol=LOSS_RTOL,
                               err_msg=name)
  gradients = _flat(_adam_gradients(state.opt_state, 0.9), srn.NETWORK)
  assert any("lstm" in name for name in _assert_gradients(gradients, fixture, "step"))
  _assert_params(_flat(state.deblurrer, srn.NETWORK), gradients, fixture, "step",
                 config.optimizer.learning_rate)
