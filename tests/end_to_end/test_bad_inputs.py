"""A folder with every kind of bad file goes through real stages; hopeless data fails in one line.

A demanding user's folder of photos holds a truncated download, files that only look like
images, notes, thumbnails, and images in every mode. Training uses what it can convert,
skips the rest with one warning each and finishes; the deblur job restores what it can read.
"""

import io
import itertools
import logging
import pickle
import re

import numpy as np
import pytest
import skimage.data
from helpers import assert_one_line_error, run_main, srn_config, write_pairs
from PIL import Image

from faceblur.data import input_pipeline, sources
from faceblur.train import srn
from faceblur.train.checkpointing import Checkpointer

GOOD = ["good0.jpg", "good1.jpg", "good2.jpg", "good3.jpg"]
CONVERTIBLE = ["sixteen.png", "cmyk.jpg", "grey.png", "rgba.png"]
UNREADABLE = ["truncated.jpg", "random.png", "text.jpg"]
TOO_SMALL = "small.png"  # 12 px: below the crop, and below half of a 32 px crop
TINY_CYCLEGAN = [
    "--config=configs/cyclegan.py", "--config.data.load_size=36", "--config.data.crop_size=32",
    "--config.model.num_blocks=2", "--config.model.features=8", "--config.model.disc_features=8",
    "--config.batch_size=2", "--config.num_workers=0", "--config.pool_size=4",
    "--config.num_train_steps=6", "--config.checkpoint_every_steps=3",
    "--config.log_every_steps=3", "--config.sample_every_steps=1000",
]


def write_bad_folder(root):
  """Good faces, convertible modes, unreadable files, a thumbnail and a non-image file."""
  root.mkdir(parents=True)
  astronaut = skimage.data.astronaut()
  face = astronaut[60:200, 160:300]
  for index, name in enumerate(GOOD):
    Image.fromarray(np.roll(face, 9 * index, axis=1)).resize((40, 40)).save(root / name)
  rgb = Image.fromarray(face).resize((40, 40))
  Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257).save(root / "sixteen.png")
  rgb.convert("CMYK").save(root / "cmyk.jpg")
  rgb.convert("L").save(root / "grey.png")
  rgb.convert("RGBA").save(root / "rgba.png")
  encoded = io.BytesIO()
  Image.fromarray(astronaut[:64, :64]).save(encoded, format="JPEG")
  (root / "truncated.jpg").write_bytes(encoded.getvalue()[:len(encoded.getvalue()) // 2])
  (root / "random.png").write_bytes(np.random.default_rng(0).bytes(500))
  (root / "text.jpg").write_text("a text file with an image name\n")
  (root / "notes.txt").write_text("not an image at all\n")
  Image.fromarray(astronaut[:12, :12]).save(root / TOO_SMALL)
  assert Image.open(root / "sixteen.png").mode.startswith("I;16")
  assert Image.open(root / "cmyk.jpg").mode == "CMYK"
  return root


def _skip_lines(stderr: str, name: str) -> list[str]:
  return [line for line in stderr.splitlines() if "skipped" in line and f"/{name}" in line]


def test_bad_records_are_replaced_deterministically_with_one_warning_each(tmp_path, caplog):
  folder = write_bad_folder(tmp_path / "faces")
  with caplog.at_level(logging.WARNING):
    usable = sources.SkipBadRecords(sources.ImageFolder(folder), min_size=16)
    records = [usable[i] for i in range(len(usable))] + [usable[i] for i in range(len(usable))]
  assert {record["name"] for record in records} == set(GOOD + CONVERTIBLE)
  for record in records:
    assert record["image"].dtype == np.uint8 and record["image"].shape == (40, 40, 3)
  for name in [*UNREADABLE, TOO_SMALL]:
    assert sum(f"/{name}" in message for message in caplog.messages) == 1, caplog.messages

  def batches(source, start_step, count):
    dataset = input_pipeline.make_dataset(source, batch_size=2, seed=0,
                                          transform=input_pipeline.cyclegan_transform(36, 32))
    return [batch["image"] for batch in
            itertools.islice(input_pipeline.iterate(dataset, start_step=start_step), count)]

  straight = batches(usable, 0, 8)
  # A fresh process (here: a pickled copy, as grain workers get) and a resumed run see the
  # same batches: the replacement depends only on the files.
  fresh = pickle.loads(pickle.dumps(sources.SkipBadRecords(sources.ImageFolder(folder),
                                                           min_size=16)))
  for expected, actual in zip(straight, batches(fresh, 0, 8), strict=True):
    np.testing.assert_array_equal(actual, expected)
  for expected, actual in zip(straight[5:], batches(usable, 5, 3), strict=True):
    np.testing.assert_array_equal(actual, expected)


def test_cyclegan_then_synthesis_go_through_a_folder_of_every_bad_kind(tmp_path):
  folder = write_bad_folder(tmp_path / "faces")
  workdir = tmp_path / "run"
  result = run_main(*TINY_CYCLEGAN, f"--workdir={workdir}", f"--config.data.sharp.path={folder}",
                    f"--config.data.blurred.path={folder}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  for name in [*UNREADABLE, TOO_SMALL]:  # both domains read the folder: still one line each
    assert len(_skip_lines(result.stderr, name)) == 1, (name, result.stderr[-3000:])
  for name in [*GOOD, *CONVERTIBLE, "notes.txt"]:
    assert name not in result.stderr, result.stderr[-3000:]
  assert Checkpointer(workdir / "checkpoints").latest_step() == 6

  # Synthesis resizes every face, so the thumbnail makes a pair; unreadable files make none.
  synthesis = run_main("--config=configs/synthesize.py", f"--workdir={tmp_path / 'synth'}",
                       f"--config.cyclegan_workdir={workdir}", f"--config.source.path={folder}",
                       "--config.image_size=32", "--config.batch_size=4")
  assert synthesis.returncode == 0, synthesis.stderr[-3000:]
  assert "Traceback" not in synthesis.stderr, synthesis.stderr[-3000:]
  for name in UNREADABLE:
    assert len(_skip_lines(synthesis.stderr, name)) == 1, synthesis.stderr[-3000:]
  blurred = list((tmp_path / "synth" / "pairs").glob("*/blurred/*.png"))
  assert len(blurred) == len(GOOD) + len(CONVERTIBLE) + 1


@pytest.fixture(scope="module")
def trained_srn(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("srn")
  srn.train_and_evaluate(srn_config(2), workdir)
  return workdir


def test_deblur_job_restores_what_it_can_read_and_names_the_rest(trained_srn, tmp_path):
  folder = write_bad_folder(tmp_path / "photos")
  output = tmp_path / "restored"
  result = run_main("--config=configs/deblur.py", f"--config.checkpoint={trained_srn}",
                    f"--config.input={folder}", f"--config.output={output}")
  # README: unreadable files are skipped with a warning, and the job exits non-zero at the end.
  assert_one_line_error(result, f"{len(UNREADABLE)} of 12 images could not be read")
  for name in UNREADABLE:
    assert len(_skip_lines(result.stderr, name)) == 1, result.stderr[-3000:]
  # Each warning on a line of its own above the progress bar, never glued into the bar's line.
  assert not re.search(r"[^\r\n]warning:", result.stderr), repr(result.stderr[-3000:])
  for name in [*GOOD, *CONVERTIBLE, TOO_SMALL]:
    source_size = Image.open(folder / name).size
    assert Image.open(output / name).size == source_size, name
  assert not (output / "notes.txt").exists()
  assert not any((output / name).exists() for name in UNREADABLE)


@pytest.mark.parametrize("case", ["every_file_bad", "empty", "unpaired_names"])
def test_hopeless_data_fails_at_start_up_in_one_line(tmp_path, case):
  if case == "every_file_bad":
    folder = write_bad_folder(tmp_path / "faces")
    for name in [*GOOD, *CONVERTIBLE]:
      (folder / name).unlink()
    args, needles = TINY_CYCLEGAN, [f"{folder}: none of its 4 images is usable"]
  elif case == "empty":
    folder = tmp_path / "faces"
    folder.mkdir()
    (folder / "notes.txt").write_text("no images here")
    args, needles = TINY_CYCLEGAN, [f"{folder}: no images"]
  else:
    folder = tmp_path / "pairs"
    write_pairs(folder, ["a.png", "b.png"], ["a.png", "c.png"])
    args = ["--config=configs/srn.py", f"--config.data.train.path={folder}"]
    needles = [f"{folder / 'blurred' / 'b.png'}: no partner", "2 unmatched"]
  data_flags = ([f"--config.data.sharp.path={folder}", f"--config.data.blurred.path={folder}"]
                if args is TINY_CYCLEGAN else [])
  result = run_main(*args, *data_flags, f"--workdir={tmp_path / 'run'}")
  assert_one_line_error(result, *needles)
  assert "Parameters:" not in result.stdout  # failed before building (compiling) any network


def test_a_mistyped_config_argument_is_one_line_naming_the_file(tmp_path):
  result = run_main("--config=configs/synthesize.py:celeba", f"--workdir={tmp_path}",
                    timeout=120)
  assert_one_line_error(result, "configs/synthesize.py", "'celeba'", "'celeb_a'")
