"""EMA of the weights and params-only releases: kept in checkpoints bit for bit, loaded by
inference and synthesis in place of a checkpoint, refused in one line when missing or damaged."""

import ast
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import assert_one_line_error, cyclegan_config, run_main, srn_config
from PIL import Image

from configs import synthesize as synthesize_config
from faceblur.data import factory
from faceblur.data.image_io import load_image
from faceblur.errors import CheckpointError, ConfigError
from faceblur.train import cyclegan, release, srn
from faceblur.train import state as state_lib
from faceblur.train import synthesize as synthesize_lib
from faceblur.train.trained import load_trained

DECAY = 0.5  # large steps of the average, so that 4 steps move it far from the weights


def _leaves(tree):
  return jax.tree.leaves(jax.device_get(tree))


def _assert_same(actual, expected):
  actual, expected = _leaves(actual), _leaves(expected)
  assert len(actual) == len(expected) > 0
  for a, b in zip(actual, expected, strict=True):
    np.testing.assert_array_equal(a, b)


def _ema_config(num_train_steps):
  config = srn_config(num_train_steps)
  config.ema_decay = DECAY
  config.write_release = True
  return config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """An SRN trained 4 steps with EMA (and its release), the same stopped at 2 and resumed,
  and one trained without EMA."""
  root = tmp_path_factory.mktemp("ema")
  straight = srn.train_and_evaluate(_ema_config(4), root / "straight")
  stopped = _ema_config(4)
  stopped.stop_after_steps = 2
  srn.train_and_evaluate(stopped, root / "resumed")
  resumed = srn.train_and_evaluate(_ema_config(4), root / "resumed")
  plain = srn.train_and_evaluate(srn_config(2), root / "plain")
  return {"root": root, "straight": straight, "resumed": resumed, "plain": plain}


class _TinyState(state_lib.TrainState):
  NETWORKS = ("net",)
  net: dict


def test_ema_follows_optax_ema_from_the_initial_weights():
  state = _TinyState(step=jnp.zeros((), jnp.int32), rng=jax.random.PRNGKey(0),
                     net={"w": jnp.array([1.0, 2.0])})
  assert state_lib.start_ema(state, 0.0).ema is None  # off: the state as before
  state = state_lib.start_ema(state, DECAY)
  for weights in ([3.0, 2.0], [5.0, -2.0]):
    previous = np.asarray(state.ema.ema["net"]["w"])
    state = state_lib.update_ema(state.replace(net={"w": jnp.array(weights)}), DECAY)
    np.testing.assert_allclose(state.ema.ema["net"]["w"],
                               DECAY * previous + (1 - DECAY) * np.array(weights))
  np.testing.assert_allclose(state.ema.ema["net"]["w"], [3.5, 0.0])  # (1,2)->(2,2)->(3.5,0)
  assert int(state.ema.count) == 2
  for decay in (-0.1, 1.0):
    config = srn_config()
    config.ema_decay = decay
    with pytest.raises(ConfigError, match=r"ema_decay=.* must be in \[0, 1\)"):
      state_lib.ema_decay(config)


def test_ema_is_checkpointed_and_resumes_to_the_same_bits(runs):
  straight, resumed = runs["straight"], runs["resumed"]
  assert isinstance(straight.ema, optax.EmaState) and int(straight.ema.count) == 4
  _assert_same(resumed.ema, straight.ema)
  _assert_same(resumed.params, straight.params)
  # The average is not the weights: 4 steps of decay 0.5 leave it between them and the start.
  assert not all(np.array_equal(a, b) for a, b in zip(
      _leaves(straight.ema.ema), _leaves(straight.params), strict=True))
  assert runs["plain"].ema is None


def test_inference_loads_the_ema_weights_from_checkpoint_and_release(runs):
  workdir, straight = runs["root"] / "straight", runs["straight"]
  trained = load_trained(workdir, "srn")
  assert trained.weights == "params"
  _assert_same(trained.params, straight.params)
  with_ema = load_trained(workdir, "srn", use_ema=True)
  assert with_ema.weights == "ema"
  _assert_same(with_ema.params, straight.ema.ema)
  _assert_same(with_ema.trained_params, straight.params)

  released = workdir / "release"
  metadata = release.read_metadata(released)
  assert (metadata["job"], metadata["step"], metadata["ema_networks"]) == ("srn", 4, ["deblurrer"])
  assert metadata["image_size"] == 24 and metadata["default_weights"] == "params"
  # Params only: no optimiser state, RNG or step among the arrays.
  saved = json.loads((released / "params" / "_METADATA").read_text())
  top_level = {ast.literal_eval(key)[0] for key in saved["tree_metadata"]}
  assert top_level == {"params", "ema"}
  _assert_same(load_trained(released, "srn").params, straight.params)
  _assert_same(load_trained(released, "srn", use_ema=True).params, straight.ema.ema)
  # A workdir holding only its release loads it too.
  moved = runs["root"] / "moved"
  shutil.copytree(released, moved / "release")
  _assert_same(load_trained(moved, "srn", use_ema=True).params, straight.ema.ema)


def test_missing_ema_and_switching_it_are_one_line(runs):
  plain = runs["root"] / "plain"
  with pytest.raises(CheckpointError, match=r"has no EMA weights \(trained with ema_decay=0\)"):
    load_trained(plain, "srn", use_ema=True)
  trained = load_trained(plain, "srn")
  no_ema = release.write_release(runs["root"] / "plain_release", job="srn", step=trained.step,
                                 config=trained.config, params=trained.trained_params)
  with pytest.raises(CheckpointError, match="has no EMA weights"):
    load_trained(no_ema, "srn", use_ema=True)
  with pytest.raises(CheckpointError, match="is a 'srn' release, expected a 'cyclegan' one"):
    load_trained(no_ema, "cyclegan")
  switched = srn_config(4)
  switched.ema_decay = DECAY
  with pytest.raises(CheckpointError, match="checkpoint has ema_decay=0.0 but the config asks "
                                            "for 0.5; a run cannot switch its EMA on or off"):
    srn.train_and_evaluate(switched, plain)


def test_damaged_release_is_one_line(runs):
  damaged = runs["root"] / "damaged"
  shutil.copytree(runs["root"] / "straight" / "release", damaged)
  data_files = [path for path in (damaged / "params").rglob("*") if path.is_file()
                and path.stat().st_size > 1000 and "METADATA" not in path.name]
  assert data_files
  for path in data_files:
    path.write_bytes(path.read_bytes()[:100])
  with pytest.raises(CheckpointError, match=r"damaged/params: cannot be restored \(.*\); the "
                                            "release is damaged, export it again"):
    load_trained(damaged, "srn")
  (damaged / "release.json").write_text("{not json")
  with pytest.raises(CheckpointError, match=r"damaged/release.json: cannot be read"):
    load_trained(damaged, "srn")
  inputs = runs["root"] / "inputs"
  inputs.mkdir()
  Image.new("RGB", (8, 8)).save(inputs / "photo.png")
  result = run_main("--config=configs/deblur.py", f"--config.checkpoint={damaged}",
                    f"--config.input={inputs}", f"--config.output={runs['root'] / 'out'}")
  assert_one_line_error(result, "damaged/release.json: cannot be read")


def test_synthesis_uses_a_cyclegan_release_and_its_ema(tmp_path):
  config = cyclegan_config(2)
  config.optimizer.learning_rate = 0.02
  config.ema_decay = DECAY
  config.write_release = True
  state = cyclegan.train_and_evaluate(config, tmp_path / "cyclegan")
  assert sorted(state.ema.ema) == ["f", "g"]  # the critics serve training only
  released = tmp_path / "cyclegan" / "release"
  assert release.read_metadata(released)["ema_networks"] == ["f", "g"]

  synth = synthesize_config.get_config()
  synth.cyclegan_workdir = str(released)
  synth.use_ema = True
  synth.source = factory.source_spec("demo_sharp", split="train", count=4)
  synth.image_size = 32
  synth.batch_size = 2
  synth.test_fraction = 0.5
  output = synthesize_lib.synthesize(synth, tmp_path / "synth")

  trained = load_trained(released, "cyclegan", use_ema=True)
  generator = trained.networks["g"]
  source = factory.make_source(synth.source)
  blurred_files = sorted(output.glob("*/blurred/*.png"))
  assert len(blurred_files) == 4
  for path in blurred_files:
    sharp = synthesize_lib.prepare_sharp(source[int(path.stem)]["image"], 32)
    expected = {weights: np.asarray(generator.apply(params["g"], sharp[None]))[0]
                for weights, params in (("ema", trained.params),
                                        ("trained", trained.trained_params))}
    written = load_image(path) / 255.0
    assert np.abs(written - np.clip(expected["ema"], 0, 1)).max() <= 1 / 255 + 1e-6
    # Not the trained G's blur (the learning rate makes the two far apart after 2 steps).
    assert np.abs(written - np.clip(expected["trained"], 0, 1)).max() > 4 / 255
