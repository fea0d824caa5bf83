"""The optimisers: the CycleGAN's and the SRN's learning-rate schedules, SRN's LSTM-only clip."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from helpers import cyclegan_config, srn_config

from faceblur.train import cyclegan, srn


def _adam_rates(tx, num_steps: int) -> np.ndarray:
  """The learning rate Adam used at steps 0..num_steps-1: with a constant gradient of ones its
  bias-corrected update is -rate / (1 + eps), up to float32 rounding (~1e-5 relative)."""
  params = {"w": jnp.zeros(())}
  state = tx.init(params)
  rates = []
  for _ in range(num_steps):
    updates, state = tx.update({"w": jnp.ones(())}, state, params)
    rates.append(-float(updates["w"]) * (1 + 1e-8))
  return np.asarray(rates)


def test_cyclegan_rate_is_constant_then_decays_linearly_to_zero():
  config = cyclegan_config()
  config.optimizer.learning_rate = 2e-4
  config.optimizer.constant_fraction = 0.5
  schedule = cyclegan.learning_rate_schedule(config, 100)
  rates = np.asarray([float(schedule(step)) for step in range(101)])
  np.testing.assert_allclose(rates[:51], 2e-4, rtol=1e-6)  # steps 0..50: constant
  # then linear: 2e-4 * (100 - step) / 50, reaching 0 at the last step
  np.testing.assert_allclose(rates[50:], 2e-4 * (100 - np.arange(50, 101)) / 50, rtol=1e-5,
                             atol=1e-12)
  # and it is the rate Adam uses
  np.testing.assert_allclose(_adam_rates(cyclegan.optimizer(config, 100), 101), rates,
                             rtol=1e-4, atol=1e-12)


def test_srn_rate_decays_polynomially_to_the_end_rate():
  config = srn_config(20)
  config.optimizer.learning_rate = 1e-4
  config.optimizer.end_learning_rate = 1e-6
  config.optimizer.decay_power = 0.3
  steps = np.arange(25)  # past the end it stays at the end rate
  expected = (1e-4 - 1e-6) * (1 - np.minimum(steps, 20) / 20) ** 0.3 + 1e-6
  np.testing.assert_allclose(_adam_rates(srn.optimizer(config, 20), 25), expected, rtol=1e-4)


def _first_moments(opt_state):
  """Adam's first moment (mu) of each parameter, from any nesting of optax states."""
  moments = [state.mu for state in jax.tree.leaves(
      opt_state, is_leaf=lambda node: isinstance(node, optax.ScaleByAdamState))
      if isinstance(state, optax.ScaleByAdamState)]
  return moments


def test_only_the_lstm_gradients_are_clipped():
  config = srn_config()
  config.optimizer.lstm_grad_clip_norm = 0.5
  assert config.model.use_lstm
  params = {"lstm": {"gates": {"kernel": jnp.zeros((4,))}}, "enc1": {"kernel": jnp.zeros((4,))}}
  gradients = jax.tree.map(lambda leaf: jnp.full_like(leaf, 10.0), params)  # norm 20 each
  tx = srn.optimizer(config, 10)
  _, state = tx.update(gradients, tx.init(params), params)
  # mu = (1 - b1) * gradient after one step (b1 = 0.9): the LSTM's gradient clipped to norm
  # 0.5, the rest untouched.
  moments = {}
  for mu in _first_moments(state):
    for path, leaf in jax.tree_util.tree_leaves_with_path(mu):
      if not isinstance(leaf, optax.MaskedNode):
        moments[jax.tree_util.keystr(path)] = np.asarray(leaf)
  assert set(moments) == {"['lstm']['gates']['kernel']", "['enc1']['kernel']"}, moments
  np.testing.assert_allclose(np.linalg.norm(moments["['lstm']['gates']['kernel']"]), 0.1 * 0.5,
                             rtol=1e-5)
  np.testing.assert_allclose(moments["['enc1']['kernel']"], 0.1 * 10.0, rtol=1e-5)

  config.optimizer.lstm_grad_clip_norm = 0.0  # off: nothing is clipped
  tx = srn.optimizer(config, 10)
  _, state = tx.update(gradients, tx.init(params), params)
  for mu in _first_moments(state):
    for leaf in jax.tree.leaves(mu):
      np.testing.assert_allclose(leaf, 0.1 * 10.0, rtol=1e-5)


def test_srn_warmup_ramps_linearly_then_decays_over_the_rest():
  config = srn_config(20)
  config.optimizer.learning_rate = 1e-3
  config.optimizer.end_learning_rate = 0.0
  config.optimizer.decay_power = 1.0
  config.optimizer.warmup_steps = 5
  steps = np.arange(20)
  expected = np.where(steps < 5, 1e-3 * steps / 5, 1e-3 * (1 - (steps - 5) / 15))
  np.testing.assert_allclose(_adam_rates(srn.optimizer(config, 20), 20), expected, rtol=1e-4,
                             atol=1e-12)


def test_srn_global_clip_bounds_every_gradient():
  config = srn_config()
  config.optimizer.grad_clip_norm = 1.0
  params = {"lstm": {"kernel": jnp.zeros((4,))}, "enc1": {"kernel": jnp.zeros((4,))}}
  gradients = jax.tree.map(lambda leaf: jnp.full_like(leaf, 10.0), params)  # norm 20 in all
  tx = srn.optimizer(config, 10)
  _, state = tx.update(gradients, tx.init(params), params)
  # mu = 0.1 * the clipped gradient: all of it scaled to global norm 1 (each leaf 10 / 20).
  for mu in _first_moments(state):
    for leaf in jax.tree.leaves(mu):
      np.testing.assert_allclose(leaf, 0.1 * 10.0 / np.sqrt(8 * 100.0), rtol=1e-5)
