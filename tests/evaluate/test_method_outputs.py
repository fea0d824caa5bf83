"""Another codebase's outputs as an evaluation method (`kind: folder`), and `save_restored`.

A tiny paired test set (one image in a sub-folder, and two images named 0.png in different
folders) is evaluated once with `save_restored`; the saved folder read back as a method scores
what the method it came from scored. A flat folder the test writes (sharpened outputs, one
missing, one corrupt, one ambiguous by name) gets its rows, with each missing output counted,
listed, replaced by the blurred input and failing the job in one line; an output of another
size stops in one line naming it.
"""

import json

import ml_collections
import numpy as np
import pytest
from helpers import tiny_evaluate_config
from PIL import Image, ImageFilter

from configs import common
from faceblur import metrics
from faceblur.errors import ConfigError, DataError, FaceblurError
from faceblur.evaluate import evaluation, method_outputs

NAMES = ("0.png", "1.png", "2.png", "sub/0.png", "sub/3.png")


def _write_test_set(root) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """root/{sharp,blurred}/<NAMES>: 24 px random smooth images; returns name -> (blurred, sharp)."""
  rng = np.random.default_rng(0)
  pairs = {}
  for name in NAMES:
    sharp = Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).filter(
        ImageFilter.GaussianBlur(1))
    blurred = sharp.filter(ImageFilter.GaussianBlur(1.5))
    for side, image in (("sharp", sharp), ("blurred", blurred)):
      (root / side / name).parent.mkdir(parents=True, exist_ok=True)
      image.save(root / side / name)
    pairs[name] = (np.asarray(blurred), np.asarray(sharp))
  return pairs


def _config(root, output, **overrides) -> ml_collections.ConfigDict:
  config = tiny_evaluate_config(root, output)
  config.detector, config.detector_threshold = "haar", 3  # no face here: the cheapest detector
  config.second_detector, config.identity = "", False
  config.num_grid_images = 0
  config.update(overrides)
  return config


def _psnr(image: np.ndarray, reference: np.ndarray) -> float:
  return float(metrics.psnr(image[None] / 255.0, reference[None] / 255.0)[0])


def test_saved_outputs_and_a_flat_folder_score_as_methods(tmp_path):
  pairs = _write_test_set(tmp_path / "set")
  first = evaluation.evaluate(_config(tmp_path / "set", tmp_path / "first", save_restored=True),
                              tmp_path)
  saved = tmp_path / "first" / "restored" / "again"
  assert sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*.png")) == \
      sorted(f"tiny/{name}" for name in NAMES)

  flat = tmp_path / "flat"  # flat names: 0.png is the top-level test image's (its relative
  # path), not sub/0.png's (a flat name that two test images share); 3.png is sub/3.png's.
  flat.mkdir()
  sharpened = {name: np.asarray(Image.fromarray(blurred).filter(ImageFilter.SHARPEN))
               for name, (blurred, _) in pairs.items()}
  for name in ("0", "1", "3"):
    Image.fromarray(sharpened[f"{name}.png" if name != "3" else "sub/3.png"]).save(
        flat / f"{name}.png")
  (flat / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")  # unreadable

  config = _config(tmp_path / "set", tmp_path / "second",
                   output_folders=f"theirs={saved}, flat={flat}", protocol="gopro")
  with pytest.raises(FaceblurError, match=r"^2 output\(s\) of folder methods were missing") \
      as error:
    evaluation.evaluate(config, tmp_path)
  assert "\n" not in str(error.value)

  report = json.loads((tmp_path / "second" / "report.json").read_text())
  quality = report["test_sets"]["tiny"]["quality"]
  # The saved outputs read back score what their method scored (under either protocol's PSNR:
  # the outputs are 8-bit already).
  assert quality["theirs"]["psnr"] == pytest.approx(first["test_sets"]["tiny"]["quality"]
                                                    ["again"]["psnr"], abs=1e-5)
  # The flat folder: 0.png, 1.png and sub/3.png sharpened; sub/0.png (ambiguous) and 2.png
  # (unreadable) are the blurred input.
  expected = [_psnr(sharpened[name] if name not in ("2.png", "sub/0.png") else pairs[name][0],
                    pairs[name][1]) for name in sorted(NAMES)]
  assert quality["flat"]["psnr"] == pytest.approx(float(np.mean(expected)), abs=1e-4)
  assert report["test_sets"]["tiny"]["missing_outputs"] == {"theirs": 0, "flat": 2}
  missing = report["missing_outputs"]
  assert len(missing) == 2 and all(line.startswith("methods.flat: tiny/") for line in missing)
  assert any("sub/0.png" in line and "mirror the test set's folders" in line
             for line in missing)
  assert any(line.startswith("methods.flat: tiny/2.png: ") and "not an image" in line
             for line in missing)
  text = (tmp_path / "second" / "report.md").read_text()
  assert "| flat |" in text and "| theirs |" in text
  assert "`flat` on tiny: 2 of 5 outputs missing" in text
  assert "## Table 1: restoration quality (PSNR dB / SSIM, RGB in [0, 1]) [protocol: gopro, " \
         "RGB]" in text
  assert "## Table 2: face-detection success rate [protocol: gopro, RGB]" in text


def test_an_output_of_another_size_is_one_line_naming_it(tmp_path):
  pairs = _write_test_set(tmp_path / "set")
  mirrored = tmp_path / "mirrored"
  for name, (blurred, _) in pairs.items():
    (mirrored / name).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(blurred).save(mirrored / name)
  Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(mirrored / "sub" / "3.png")
  specs = evaluation.method_specs(_config(tmp_path / "set", tmp_path / "out",
                                          output_folders=f"gfpgan={mirrored}"))
  (method,) = [m for m in evaluation.build_methods(specs) if m.name == "gfpgan"]
  inputs = [pairs[name][0] / 255.0 for name in NAMES]
  with pytest.raises(DataError, match=r"sub/3.png: 48x48, but test image tiny/sub/3.png is "
                     r"24x24 as evaluated \(methods.gfpgan must keep the input's size: e.g. "
                     "GFPGAN's --upscale 1") as error:
    method.outputs.read("tiny", list(NAMES), inputs)
  assert "\n" not in str(error.value)


def test_folder_methods_config_mistakes_are_one_line(tmp_path):
  config = _config(tmp_path, tmp_path / "out", output_folders="nofolder")
  with pytest.raises(ConfigError, match="output_folders entry 'nofolder' is not name=folder"):
    evaluation.method_specs(config)
  config = _config(tmp_path, tmp_path / "out", output_folders=f"again={tmp_path}")
  with pytest.raises(ConfigError, match="output_folders names 'again', already a method"):
    evaluation.method_specs(config)
  config = _config(tmp_path, tmp_path / "out", output_folders=f"x={tmp_path / 'absent'}")
  with pytest.raises(ConfigError, match=r"methods.x.path='.*absent': no such folder"):
    evaluation.build_methods(evaluation.method_specs(config))
  config.methods.again.kind = ""  # an emptied slot is left out
  config.output_folders = ""
  assert list(evaluation.method_specs(config)) == ["blurred"]


def test_restored_path_mirrors_the_test_names(tmp_path):
  assert method_outputs.restored_path(tmp_path, "ours", "gopro", "GOPR0384/000001.jpg") == \
      tmp_path / "restored" / "ours" / "gopro" / "GOPR0384" / "000001.png"


def test_the_unsharp_stand_in_writes_what_a_folder_method_reads_back(tmp_path):
  """The demo's stand-in for another codebase (`unsharp_outputs`): one output per blurred
  test image, named as the evaluation names them, sharper than its input and equal to
  `unsharp_mask` up to 8-bit rounding; a re-run rewrites nothing (the folder's fingerprint,
  which the evaluation's resume keys on, stays)."""
  from faceblur.evaluate import stand_in  # noqa: PLC0415

  flat = np.full((16, 16, 3), 0.4)
  np.testing.assert_allclose(stand_in.unsharp_mask(flat, 1.0, 1.0), flat)
  edge = np.zeros((16, 16, 3))
  edge[:, 8:] = 0.5
  sharpened = stand_in.unsharp_mask(edge, 1.0, 1.0)
  assert sharpened[:, 8].min() > 0.5 and sharpened[:, 7].max() == 0.0  # overshoot, clipped

  spec = common.source("kernel_blurred", base=dict(kind="demo_sharp", split="test", count=3,
                                                    seed=1), seed=2, max_blur_length=5.0)
  config = ml_collections.ConfigDict(dict(
      test_sets={"kernel": spec}, real_blurred=common.source("", split="test"), image_size=0,
      sigma=1.0, amount=1.0))
  assert stand_in.write_unsharp_outputs(config, tmp_path) == 3
  folder = method_outputs.OutputFolder(tmp_path, method="unsharp")
  source = evaluation.factory.make_paired_source(spec)
  names = [source[index]["name"] for index in range(3)]
  blurred = [evaluation.prepare_image(source[index]["blurred"], 0) for index in range(3)]
  outputs, problems = folder.read("kernel", names, blurred)
  assert problems == []
  for output, image in zip(outputs, blurred, strict=True):
    np.testing.assert_allclose(output, stand_in.unsharp_mask(image, 1.0, 1.0), atol=0.5 / 255)
  assert stand_in.write_unsharp_outputs(config, tmp_path) == 0
  assert method_outputs.OutputFolder(tmp_path, method="unsharp").fingerprint == \
      folder.fingerprint
