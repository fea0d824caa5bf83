"""The deblurring benchmarks' loaders on tiny folders written in their official layouts.

GoPro reads `blur/`, never `blur_gamma/`; HIDE pairs both test folders with GT/ by file name;
RealBlur reads the pairs its list file names; a folder with another pair count than the
benchmark's says so once; a wrong layout is one line; the evaluate config's benchmark
arguments pick the source and the protocol.
"""

import logging

import numpy as np
import pytest
from PIL import Image

from configs import evaluate as evaluate_config
from faceblur.data import factory
from faceblur.errors import ConfigError, DataError
from faceblur.evaluate import evaluation


def _save(path, value: int, size=(6, 8)) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)


def _source(kind: str, root, split: str = "test"):
  return factory.make_paired_source(factory.source_spec(kind, path=str(root), split=split))


def test_gopro_reads_blur_not_blur_gamma_at_full_size(tmp_path, caplog):
  root = tmp_path / "GOPRO_Large"
  for sequence in ("GOPR0384_11_00", "GOPR0385_11_01"):
    for index in (1, 2):
      _save(root / "test" / sequence / "blur" / f"{index:06d}.png", 10)
      _save(root / "test" / sequence / "blur_gamma" / f"{index:06d}.png", 20)
      _save(root / "test" / sequence / "sharp" / f"{index:06d}.png", 30)
  _save(root / "train" / "GOPR0372_07_00" / "blur" / "000001.png", 40)
  _save(root / "train" / "GOPR0372_07_00" / "sharp" / "000001.png", 50)
  with caplog.at_level(logging.WARNING):
    source = _source("gopro", root)
  assert [name for name, _, _ in source.pairs] == [
      "GOPR0384_11_00/000001.png", "GOPR0384_11_00/000002.png",
      "GOPR0385_11_01/000001.png", "GOPR0385_11_01/000002.png"]
  record = source[0]
  assert record["blurred"].shape == (6, 8, 3) and (record["blurred"] == 10).all()
  assert (record["sharp"] == 30).all()
  assert "4 pairs, but GoPro's test set has 1,111" in caplog.text
  assert len(_source("gopro", root / "test")) == 4  # the split folder itself
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    assert len(_source("gopro", root, split="train")) == 1
  assert "1,111" not in caplog.text  # only a test split is the benchmark's

  only_gamma = tmp_path / "gamma" / "test" / "GOPR0384_11_00"
  _save(only_gamma / "blur_gamma" / "000001.png", 20)
  _save(only_gamma / "sharp" / "000001.png", 30)
  with pytest.raises(DataError, match=r"no <sequence>/blur/ folders .*blur_gamma is not the "
                     "benchmark's input") as error:
    _source("gopro", tmp_path / "gamma")
  assert "\n" not in str(error.value)


def test_hide_pairs_both_test_folders_with_gt_by_file_name(tmp_path):
  root = tmp_path / "HIDE_dataset"
  for name, value in (("10fromGOPR1044.MP4.png", 10), ("1fromGOPR0950.MP4.png", 20),
                      ("3fromGOPR1036.MP4.png", 30)):
    _save(root / "GT" / name, value + 100)
  _save(root / "test" / "test-close-ups" / "10fromGOPR1044.MP4.png", 10)
  _save(root / "test" / "test-long-shot" / "1fromGOPR0950.MP4.png", 20)
  _save(root / "train" / "3fromGOPR1036.MP4.png", 30)
  source = _source("hide", root)
  assert [name for name, _, _ in source.pairs] == ["test-close-ups/10fromGOPR1044.MP4.png",
                                                   "test-long-shot/1fromGOPR0950.MP4.png"]
  assert (source[1]["blurred"] == 20).all() and (source[1]["sharp"] == 120).all()
  assert len(_source("hide", root, split="test-long-shot")) == 1
  assert [name for name, _, _ in _source("hide", root, split="train").pairs] == [
      "train/3fromGOPR1036.MP4.png"]
  _save(root / "test" / "test-long-shot" / "orphan.png", 0)
  with pytest.raises(DataError, match=r"orphan.png: no ground truth .*GT/orphan.png"):
    _source("hide", root)
  with pytest.raises(DataError, match="no GT/ folder"):
    _source("hide", tmp_path)


def test_realblur_reads_the_pairs_its_list_names(tmp_path):
  root = tmp_path / "RealBlur"
  lines = {}
  for variant, folder in (("J", "RealBlur-J_ECC_IMCORR_centroid_itensity_ref"),
                          ("R", "RealBlur-R_BM3D_ECC_IMCORR_centroid_itensity_ref")):
    lines[variant] = []
    for scene, index in (("scene003", 1), ("scene003", 2), ("scene020", 1)):
      _save(root / folder / scene / "gt" / f"gt_{index}.png", 200)
      _save(root / folder / scene / "blur" / f"blur_{index}.png", 100 if variant == "J" else 50)
      lines[variant].append(f"{folder}/{scene}/gt/gt_{index}.png "
                            f"{folder}/{scene}/blur/blur_{index}.png")
    (root / f"RealBlur_{variant}_test_list.txt").write_text("\n".join(lines[variant][:2]) + "\n")
  j_source, r_source = _source("realblur_j", root), _source("realblur_r", root)
  assert [name for name, _, _ in j_source.pairs] == ["scene003/blur_1.png",
                                                     "scene003/blur_2.png"]
  assert (j_source[0]["blurred"] == 100).all() and (j_source[0]["sharp"] == 200).all()
  assert (r_source[0]["blurred"] == 50).all()
  with pytest.raises(DataError, match=r"RealBlur_J_train_list.txt: no such list file"):
    _source("realblur_j", root, split="train")
  (root / "RealBlur_J_test_list.txt").write_text("only-one-field.png\n")
  with pytest.raises(DataError, match=r"RealBlur_J_test_list.txt:1: expected '<gt path> "
                     "<blur path>'"):
    _source("realblur_j", root)


@pytest.mark.parametrize("arg, kind, protocol", [
    ("gopro", "gopro", "gopro"), ("hide", "hide", "gopro"),
    ("realblur_j", "realblur_j", "realblur"), ("realblur_r", "realblur_r", "realblur")])
def test_benchmark_configs_pick_the_source_and_its_protocol(arg, kind, protocol):
  config = evaluate_config.get_config(arg)
  assert config.test_sets[arg].kind == kind and config.test_sets[arg].split == "test"
  assert config.protocol == protocol and config.image_size == 0
  with pytest.raises(ConfigError, match="methods.srn.workdir is empty: name a stage-2 workdir"):
    evaluation.build_methods(evaluation.method_specs(config))
  config.methods.srn.kind = ""
  assert [m.name for m in evaluation.build_methods(evaluation.method_specs(config))] == [
      "blurred"]
