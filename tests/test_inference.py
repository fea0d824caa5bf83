"""Deblurring user photos: any size, grey/RGBA, folders with bad files, tiles without seams."""

import numpy as np
import pytest
from PIL import Image
from stage_configs import cyclegan_config, srn_config

from faceblur import inference
from faceblur.errors import CheckpointError, ConfigError, FaceblurError
from faceblur.train import cyclegan, srn


@pytest.fixture(scope="module")
def trained_srn(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("srn")
  config = srn_config(2)
  srn.train_and_evaluate(config, workdir)
  return workdir


@pytest.fixture(scope="module")
def trained_cyclegan(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("cyclegan")
  cyclegan.train_and_evaluate(cyclegan_config(2), workdir)
  return workdir


def test_deblurrer_restores_any_size_and_mode(trained_srn):
  deblurrer = inference.Deblurrer(trained_srn)
  rng = np.random.default_rng(0)
  for shape in [(37, 53, 3), (64, 40, 3), (21, 22)]:
    image = rng.random(shape).astype(np.float32)
    restored = deblurrer(image)
    assert restored.shape[:2] == shape[:2] and restored.shape[-1] == 3
    assert restored.dtype == np.float32 and restored.min() >= 0 and restored.max() <= 1
  rgba = rng.random((32, 32, 4)).astype(np.float32)
  assert deblurrer(rgba).shape == (32, 32, 3)


def test_tiled_and_whole_image_outputs_agree(trained_srn):
  whole = inference.Deblurrer(trained_srn, tile_size=256)
  tiled = inference.Deblurrer(trained_srn, tile_size=64, tile_overlap=32)
  image = np.asarray(Image.open(__import__("skimage").data.__path__[0] + "/astronaut.png")
                     .resize((160, 120)), np.float32) / 255
  difference = np.abs(whole(image) - tiled(image))
  assert np.median(difference) < 2e-3 and np.percentile(difference, 99) < 0.05


def test_deblur_job_skips_bad_files_and_fails_at_the_end(trained_srn, tmp_path, capsys):
  inputs = tmp_path / "in"
  (inputs / "nested").mkdir(parents=True)
  rng = np.random.default_rng(1)
  Image.fromarray((rng.random((30, 41, 3)) * 255).astype(np.uint8)).save(inputs / "a.jpg")
  Image.fromarray((rng.random((28, 28)) * 255).astype(np.uint8), "L").save(
      inputs / "nested" / "grey.png")
  Image.fromarray((rng.random((24, 36, 4)) * 255).astype(np.uint8), "RGBA").save(
      inputs / "alpha.png")
  (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
  config = __import__("configs.deblur", fromlist=["get_config"]).get_config()
  config.checkpoint = str(trained_srn)
  config.input = str(inputs)
  config.output = str(tmp_path / "out")
  with pytest.raises(FaceblurError, match="1 of 4"):
    inference.deblur_job(config)
  assert "broken.png" in capsys.readouterr().err
  assert Image.open(tmp_path / "out" / "a.jpg").size == (41, 30)
  assert Image.open(tmp_path / "out" / "nested" / "grey.png").size == (28, 28)
  assert Image.open(tmp_path / "out" / "alpha.png").size == (36, 24)


def test_missing_or_wrong_checkpoint_is_one_line(tmp_path, trained_srn):
  with pytest.raises(CheckpointError, match="no such checkpoint"):
    inference.Deblurrer(tmp_path / "missing")
  with pytest.raises(CheckpointError) as raised:
    from faceblur.train.trained import load_trained

    load_trained(trained_srn, "cyclegan")
  assert "\n" not in str(raised.value) and "srn" in str(raised.value)


def test_restorer_runs_the_cyclegans_f_like_the_srn(trained_cyclegan):
  """Zhu et al.'s row of Table 1: F (blurred -> sharp) through the same tiling as the SRN."""
  whole = inference.Restorer(trained_cyclegan, stage="cyclegan")
  tiled = inference.Restorer(trained_cyclegan, stage="cyclegan", tile_size=32, tile_overlap=16)
  rng = np.random.default_rng(0)
  for shape in [(37, 53, 3), (21, 22)]:
    image = rng.random(shape).astype(np.float32)
    for restorer in (whole, tiled):
      restored = restorer(image)
      assert restored.shape == (*shape[:2], 3) and restored.dtype == np.float32
      assert restored.min() >= 0 and restored.max() <= 1
  with pytest.raises(ConfigError, match="cannot restore with stage 'synthesize'"):
    inference.Restorer(trained_cyclegan, stage="synthesize")
