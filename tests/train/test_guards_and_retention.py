"""A CycleGAN step with NaN fakes leaves the networks and the image pools as they were (when
`on_nonfinite=skip`), and training keeps only the newest `max_checkpoints_to_keep` checkpoints."""

import jax
import numpy as np
from helpers import cyclegan_config, fresh_cyclegan, random_images, srn_config

from faceblur.train import cyclegan, partitioning, srn
from faceblur.train.checkpointing import Checkpointer


def _leaves(tree) -> list[np.ndarray]:
  return [np.asarray(leaf) for leaf in jax.tree.leaves(jax.device_get(tree))]


def test_nan_fakes_leave_networks_and_pools_untouched_under_skip():
  config = cyclegan_config(4)
  config.on_nonfinite = "skip"
  config.pool_size = 4
  mesh, tx, state = fresh_cyclegan(config)
  step = jax.jit(cyclegan.make_train_step(config, cyclegan.make_networks(config), tx))
  rng = np.random.default_rng(0)
  size = config.data.crop_size

  def batch(value=None):
    images = {key: rng.random((2, size, size, 3), dtype=np.float32)
              for key in ("sharp", "blurred")}
    if value is not None:
      images["sharp"][0, 0, 0, 0] = value  # one NaN pixel makes G(sharp) and F(G(sharp)) NaN
    return partitioning.shard_batch(images, mesh)

  state, _ = step(state, batch())  # the pools now hold one batch of fakes
  before = state
  state, _ = step(state, batch(np.nan))
  assert int(state.step) == int(before.step) + 1
  for name in ("g", "f", "d_blurred", "d_sharp", "fake_blurred_pool", "fake_sharp_pool"):
    for new, old in zip(_leaves(getattr(state, name)), _leaves(getattr(before, name)),
                        strict=True):
      np.testing.assert_array_equal(new, old, err_msg=name)
  assert all(np.isfinite(leaf).all() for leaf in _leaves(state.fake_blurred_pool))

  state, _ = step(state, batch())  # and a finite step afterwards trains again
  assert any(not np.array_equal(new, old) for new, old in
             zip(_leaves(state.g), _leaves(before.g), strict=True))


def test_only_the_newest_checkpoints_are_kept(tmp_path):
  config = srn_config(10)
  config.checkpoint_every_steps = 2
  config.max_checkpoints_to_keep = 2
  srn.train_and_evaluate(config, tmp_path)
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [8, 10]
  assert Checkpointer(tmp_path / "checkpoints").latest_step() == 10


def test_the_configs_real_label_reaches_both_losses():
  """Guards `loss.real_label` (`:paper_code`'s 0.9) against a hard-coded 1.0: one step's
  adversarial and critic losses equal the LSGAN formulas on the same critics' scores."""
  config = cyclegan_config(4)
  config.loss.real_label = 0.9
  config.loss.identity_weight = 0.0
  config.pool_size = 0  # the critics then see this step's fakes themselves
  mesh, tx, state = fresh_cyclegan(config)
  networks = cyclegan.make_networks(config)
  images = random_images(config)

  def run(name, params, x):
    return np.asarray(networks[name].apply(params, x), np.float64)

  fake_blurred = run("g", state.g, images["sharp"]).astype(np.float32)
  fake_sharp = run("f", state.f, images["blurred"]).astype(np.float32)
  adversarial = (np.mean((run("d_blurred", state.d_blurred, fake_blurred) - 0.9) ** 2)
                 + np.mean((run("d_sharp", state.d_sharp, fake_sharp) - 0.9) ** 2))
  _, metrics = jax.jit(cyclegan.make_train_step(config, networks, tx))(
      state, partitioning.shard_batch(images, mesh))
  np.testing.assert_allclose(float(metrics["generator/adversarial"]), adversarial, rtol=1e-4)
  critic_blurred = 0.5 * (np.mean((run("d_blurred", state.d_blurred, images["blurred"]) - 0.9) ** 2)
                          + np.mean(run("d_blurred", state.d_blurred, fake_blurred) ** 2))
  np.testing.assert_allclose(float(metrics["critic/blurred"]), critic_blurred, rtol=1e-4)
