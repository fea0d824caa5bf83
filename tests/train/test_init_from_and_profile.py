"""`init_from` starts a stage from a workdir's or a release's weights with a fresh optimiser
at step 0, and refuses another model config in one line; `profile_steps` writes a trace."""

import jax
import numpy as np
import pytest
from helpers import srn_config

from faceblur.errors import CheckpointError
from faceblur.train import release, srn
from faceblur.train.trained import load_trained


def _fine_tune_config(source, num_train_steps: int = 2):
  """Another seed (so a fresh initialisation differs from the source's weights) and a learning
  rate of 0 (so the weights it ends with are the ones it started from)."""
  config = srn_config(num_train_steps)
  config.seed = 1
  config.optimizer.learning_rate = config.optimizer.end_learning_rate = 0.0
  config.init_from = str(source)
  return config


def _leaves(params):
  return jax.tree.leaves(jax.device_get(params))


def test_init_from_a_workdir_starts_from_its_weights_at_step_0_and_profiles(identity_srn,
                                                                            tmp_path):
  config = _fine_tune_config(identity_srn)
  config.profile_steps = 1
  state = srn.train_and_evaluate(config, tmp_path / "tuned")
  source = load_trained(identity_srn, "srn")
  assert int(jax.device_get(state.step)) == 2  # its own 2 steps, not the source's 1 + 2
  for tuned, original in zip(_leaves(state.deblurrer), _leaves(source.params["deblurrer"]),
                             strict=True):
    np.testing.assert_array_equal(tuned, original)
  assert "Initialised deblurrer from" in (tmp_path / "tuned" / "log.txt").read_text()
  traces = list((tmp_path / "tuned" / "profile").rglob("*.xplane.pb"))
  assert len(traces) == 1 and traces[0].stat().st_size > 0


def test_init_from_a_release_of_another_model_config_is_one_line(identity_srn, tmp_path):
  source = load_trained(identity_srn, "srn")
  released = release.write_release(tmp_path / "release", job="srn", step=source.step,
                                   config=source.config, params=source.trained_params)
  config = _fine_tune_config(released)
  config.model.features = 16
  with pytest.raises(CheckpointError, match=r"^init_from=.*release: has model.features=8 but "
                     "the config asks for 16$"):
    srn.train_and_evaluate(config, tmp_path / "tuned")
  config = _fine_tune_config(tmp_path / "nothing_here")
  (tmp_path / "nothing_here").mkdir()
  with pytest.raises(CheckpointError, match="neither a release nor a stage workdir"):
    srn.train_and_evaluate(config, tmp_path / "tuned")
