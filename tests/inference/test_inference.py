"""Deblurring user photos: any size, grey/RGBA, folders with bad files, tiles without seams."""

import io

import numpy as np
import pytest
from helpers import cyclegan_config, srn_config
from PIL import Image, ImageOps

from faceblur import inference
from faceblur.errors import CheckpointError, ConfigError, FaceblurError
from faceblur.train import cyclegan, srn
from faceblur.train.trained import load_trained


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


def test_deblurrer_restores_any_size_and_mode(identity_srn):
  """The identity SRN gives back every image exactly, whole or in tiles: any size, grey (as
  RGB) and RGBA (alpha dropped), float or uint8."""
  whole = inference.Deblurrer(identity_srn)
  tiled = inference.Deblurrer(identity_srn, tile_size=32, tile_overlap=8)
  # The shapes the network is called with: the whole image within the budget, fixed tiles
  # (an axis one tile spans: padded to a multiple of 4).
  assert whole.tile_shape(37, 53) == (40, 56) and whole.tile_shape(720, 1280) == (720, 1280)
  assert tiled.tile_shape(21, 53) == (24, 32)
  rng = np.random.default_rng(0)
  for shape in [(37, 53, 3), (64, 40, 3), (21, 22), (70, 45, 4)]:
    image = rng.random(shape).astype(np.float32)
    rgb = np.broadcast_to(image[..., None] if image.ndim == 2 else image[..., :3],
                          (*shape[:2], 3))
    for deblurrer in (whole, tiled):
      restored = deblurrer(image)
      assert restored.dtype == np.float32 and restored.shape == (*shape[:2], 3)
      np.testing.assert_array_equal(restored, rgb)
  image8 = (rng.random((33, 19, 3)) * 255).astype(np.uint8)
  np.testing.assert_array_equal(np.round(whole(image8) * 255), image8)


def _write_mixed_inputs(inputs, *, seed: int, rgb_name: str, grey_width: int):
  """An RGB image, a grey one in a sub-folder and an RGBA one; returns the generator."""
  (inputs / "nested").mkdir(parents=True)
  rng = np.random.default_rng(seed)
  Image.fromarray((rng.random((30, 41, 3)) * 255).astype(np.uint8)).save(inputs / rgb_name)
  Image.fromarray((rng.random((28, grey_width)) * 255).astype(np.uint8), "L").save(
      inputs / "nested" / "grey.png")
  Image.fromarray((rng.random((24, 36, 4)) * 255).astype(np.uint8), "RGBA").save(
      inputs / "alpha.png")
  return rng


def test_deblur_job_gives_back_each_file_in_its_format_through_the_identity(identity_srn,
                                                                            tmp_path):
  inputs = tmp_path / "in"
  rng = _write_mixed_inputs(inputs, seed=3, rgb_name="rgb.png", grey_width=27)
  Image.fromarray((rng.random((70, 90, 3)) * 255).astype(np.uint8)).save(inputs / "large.png")
  exif = Image.Exif()
  exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
  Image.fromarray((rng.random((20, 34, 3)) * 255).astype(np.uint8)).save(
      inputs / "rotated.jpg", quality=95, exif=exif)
  config = __import__("configs.deblur", fromlist=["get_config"]).get_config()
  config.checkpoint = str(identity_srn)
  config.input = str(inputs)
  config.output = str(tmp_path / "out")
  config.tile_size, config.tile_overlap = 32, 8  # large.png goes through 3 x 4 tiles
  assert inference.deblur_job(config) == 0
  for name in ["rgb.png", "nested/grey.png", "alpha.png", "large.png", "rotated.jpg"]:
    with Image.open(inputs / name) as source, Image.open(tmp_path / "out" / name) as output:
      assert output.format == source.format
      upright = ImageOps.exif_transpose(source)
      if upright.mode == "RGBA":  # transparency is composited onto white
        upright = Image.alpha_composite(Image.new("RGBA", upright.size, (255,) * 4), upright)
      expected = np.asarray(upright.convert("RGB"))
      restored = np.asarray(output.convert("RGB"))
    if name.endswith(".jpg"):  # upright, then re-encoded: what PIL makes of the same pixels
      assert expected.shape == (34, 20, 3)
      encoded = io.BytesIO()
      Image.fromarray(expected).save(encoded, format="JPEG", quality=95)
      expected = np.asarray(Image.open(encoded).convert("RGB"))
    np.testing.assert_array_equal(restored, expected, err_msg=name)


def test_tiled_and_whole_image_outputs_agree(trained_srn):
  whole = inference.Deblurrer(trained_srn, tile_size=256)
  tiled = inference.Deblurrer(trained_srn, tile_size=64, tile_overlap=32)
  image = np.asarray(Image.open(__import__("skimage").data.__path__[0] + "/astronaut.png")
                     .resize((160, 120)), np.float32) / 255
  difference = np.abs(whole(image) - tiled(image)).max(axis=-1)
  # 120 x 160 in 64-px tiles every 32 px: tiles start at rows 0, 32, 56 and columns 0, 32, 64,
  # 96, so tile edges (the seams, where a tile's content starts or ends) are at rows 32, 56,
  # 64, 96 and columns 32, 64, 96, 128. The bands of 4 px around them, and the whole image,
  # keep the maximum error small. Measured: max 9.7e-4 on the seam rows, 5.5e-4 on the seam
  # columns, median 4.2e-5; without the fade-in of a tile's first side the seam rows reach
  # 7.8e-3, and without the ignored margin (margin 0) the median is 1.0e-4.
  seam_rows = [edge + k for edge in (32, 56, 64, 96) for k in range(-2, 2)]
  seam_cols = [edge + k for edge in (32, 64, 96, 128) for k in range(-2, 2)]
  assert difference[seam_rows].max() < 1.5e-3
  assert difference[:, seam_cols].max() < 1.5e-3
  assert difference.max() < 1.5e-3 and np.median(difference) < 8e-5


def test_deblur_job_skips_bad_files_and_fails_at_the_end(trained_srn, tmp_path, capsys):
  inputs = tmp_path / "in"
  _write_mixed_inputs(inputs, seed=1, rgb_name="a.jpg", grey_width=28)
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
  with pytest.raises(CheckpointError) as raised:
    inference.Deblurrer(tmp_path / "missing")
  assert str(raised.value) == f"{tmp_path / 'missing'}: no such checkpoint folder"
  with pytest.raises(CheckpointError) as raised:
    load_trained(trained_srn, "cyclegan")
  assert str(raised.value) == (
      f"{trained_srn / 'checkpoints'}: is a 'srn' checkpoint, expected a 'cyclegan' one")


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


def test_the_cyclegan_row_restores_with_f_not_g(trained_cyclegan):
  """Guards the baseline's wiring: Zhu et al.'s deblurrer is F (blurred -> sharp); G, the
  blurring generator, run in its place would still give images of the right shape."""
  trained = load_trained(trained_cyclegan, "cyclegan")
  image = np.random.default_rng(1).random((32, 48, 3)).astype(np.float32)
  restored = inference.Restorer(trained_cyclegan, stage="cyclegan")(image)

  def through(name):
    output = trained.networks[name].apply(trained.params[name], image[None])
    return np.clip(np.asarray(output, np.float32)[0], 0, 1)

  np.testing.assert_allclose(restored, through("f"), atol=1e-5)
  assert np.abs(restored - through("g")).max() > 1e-3  # 100x the tolerance above
