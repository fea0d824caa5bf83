"""Robustness: SIGKILL mid-run, checkpoints of another network, full or read-only disks and
non-finite losses (bit-identical resumes: tests/test_train.py)."""

import errno
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from helpers import (
  ROOT,
  TINY_CYCLEGAN_ARGS,
  assert_one_line_error,
  cyclegan_config,
  run_main,
  srn_config,
  write_pairs,
)

from faceblur import storage
from faceblur.data import input_pipeline as data_pipeline
from faceblur.errors import CheckpointError, StorageError
from faceblur.train import cyclegan, loop, srn
from faceblur.train.checkpointing import Checkpointer
from faceblur.train.trained import load_trained


def _start(workdir: pathlib.Path) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, "main.py", f"--workdir={workdir}", *TINY_CYCLEGAN_ARGS],
                          cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(tmp_path):
  workdir = tmp_path / "run"
  job = _start(workdir)
  checkpoints = workdir / "checkpoints"
  deadline = time.time() + 240
  while time.time() < deadline:
    steps = [p for p in checkpoints.glob("*") if p.name.isdigit()] if checkpoints.exists() else []
    if len(steps) >= 2:
      break
    assert job.poll() is None, job.communicate()[1][-2000:]
    time.sleep(0.2)
  job.send_signal(signal.SIGKILL)
  job.wait()
  killed_at = Checkpointer(checkpoints).latest_step()
  assert killed_at is not None and killed_at < 40

  resumed = subprocess.run([sys.executable, "main.py", f"--workdir={workdir}", *TINY_CYCLEGAN_ARGS],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"Resuming from {checkpoints.absolute()}/" in resumed.stdout
  assert Checkpointer(checkpoints).latest_step() == 40
  assert not list(checkpoints.glob("*tmp*")), "a half-written checkpoint was left behind"


# --- a checkpoint of another network, job or config -----------------------------------------


@pytest.fixture(scope="module")
def trained_stages(tmp_path_factory):
  """A tiny finished SRN and CycleGAN workdir."""
  root = tmp_path_factory.mktemp("stages")
  srn.train_and_evaluate(srn_config(2), root / "srn")
  cyclegan.train_and_evaluate(cyclegan_config(2), root / "cyclegan")
  return root


def _one_line(error: BaseException) -> str:
  message = str(error)
  assert "\n" not in message, message
  return message


def test_each_job_refuses_the_other_stages_checkpoint(trained_stages, tmp_path):
  from configs import demo
  from faceblur.train import synthesize

  write_pairs(tmp_path / "photos", ["a.png"], ["a.png"])
  photos = tmp_path / "photos" / "blurred"
  deblur = run_main("--config=configs/deblur.py",
                    f"--config.checkpoint={trained_stages / 'cyclegan'}",
                    f"--config.input={photos}", f"--config.output={tmp_path / 'out'}")
  assert_one_line_error(deblur, "'cyclegan' checkpoint", "'srn'")

  config = demo.get_config("tiny").synthesize
  config.cyclegan_workdir = str(trained_stages / "srn")
  with pytest.raises(CheckpointError) as raised:
    synthesize.synthesize(config, tmp_path)
  assert "'srn' checkpoint" in _one_line(raised.value)

  with pytest.raises(CheckpointError) as raised:  # training stage 1 in stage 2's workdir
    cyclegan.train_and_evaluate(cyclegan_config(4), trained_stages / "srn")
  assert "holds a 'srn' checkpoint" in _one_line(raised.value)


def test_resume_with_another_width_names_the_key(trained_stages):
  config = srn_config(4)
  config.model.features = 16
  with pytest.raises(CheckpointError) as raised:
    srn.train_and_evaluate(config, trained_stages / "srn")
  message = _one_line(raised.value)
  assert "model.features=8 but the config asks for 16" in message
  assert str(trained_stages / "srn") in message


def test_resume_with_a_changed_optimiser_names_the_key(trained_stages):
  config = srn_config(4)
  config.optimizer.lstm_grad_clip_norm = 3.0  # clipped LSTM: another optimiser state
  with pytest.raises(CheckpointError) as raised:
    srn.train_and_evaluate(config, trained_stages / "srn")
  assert "optimizer.lstm_grad_clip_norm=0.0 (now 3.0)" in _one_line(raised.value)


# --- a full or read-only disk ---------------------------------------------------------------


def _tensorstore_error(error_number, path):
  """What tensorstore (orbax's array writer) raises on a full disk: a ValueError whose text
  carries the errno, not the OS's words."""
  return ValueError(f'UNKNOWN: Error writing local file "{path}" [source locations=\'tensorstore/'
                    f'kvstore/file/file_key_value_store.cc:355\'] [os_error_code={error_number}]')


@pytest.mark.parametrize("error_number, make_error", [
    (errno.ENOSPC, lambda number, path: OSError(number, os.strerror(number), path)),
    (errno.EROFS, lambda number, path: OSError(number, os.strerror(number), path)),
    (errno.ENOSPC, _tensorstore_error),
], ids=["ENOSPC", "EROFS", "tensorstore-ENOSPC"])
def test_failed_checkpoint_write_is_one_line_and_keeps_the_last_one(tmp_path, monkeypatch,
                                                                    error_number, make_error):
  from etils import epath

  write_text = epath.Path.write_text

  def failing_write_text(path, *args, **kwargs):
    # The disk fills up (or turns read-only) while step 3's data is being committed.
    if "/3.orbax-checkpoint-tmp/" in str(path) and path.name == "_METADATA":
      raise make_error(error_number, str(path))
    return write_text(path, *args, **kwargs)

  monkeypatch.setattr(epath.Path, "write_text", failing_write_text)
  config = srn_config(4)
  config.checkpoint_every_steps = 1
  with pytest.raises(StorageError) as raised:
    srn.train_and_evaluate(config, tmp_path)
  message = _one_line(raised.value)
  checkpoints = tmp_path / "checkpoints"
  assert message.startswith(f"{checkpoints}: writing checkpoint 3 failed")
  assert message == (f"{checkpoints}: writing checkpoint 3 failed ({os.strerror(error_number)});"
                     f" last complete checkpoint: {checkpoints}/2")

  monkeypatch.undo()
  assert load_trained(tmp_path, "srn").step == 2  # the last complete one, restorable
  resumed = srn.train_and_evaluate(srn_config(4), tmp_path)  # and no work beyond it lost
  assert int(resumed.step) == 4


def test_unwritable_workdir_fails_before_anything_is_built(tmp_path):
  a_file = tmp_path / "a_file"
  a_file.write_text("not a folder")
  result = run_main("--config=configs/demo.py:tiny", f"--workdir={a_file / 'run'}")
  assert_one_line_error(result, str(a_file / "run"), "cannot write the workdir",
                        "Not a directory")
  assert "Parameters:" not in result.stdout
  with pytest.raises(StorageError, match="is a file, not a folder"):
    storage.check_writable(a_file)


# --- on_nonfinite ---------------------------------------------------------------------------


def _poison_batch(monkeypatch, nan_step: int) -> None:
  """The batch of `nan_step` (counted from 1) gets NaN blurred images."""
  iterate = data_pipeline.iterate

  def poisoned(dataset, *, start_step=0, **kwargs):
    for step, batch in enumerate(iterate(dataset, start_step=start_step, **kwargs),
                                 start=start_step + 1):
      yield dict(batch, blurred=np.full_like(batch["blurred"], np.nan)) \
          if step == nan_step else batch

  monkeypatch.setattr(data_pipeline, "iterate", poisoned)


def test_nonfinite_step_stops_then_resumes_with_skip_leaving_params_untouched(tmp_path,
                                                                               monkeypatch):
  _poison_batch(monkeypatch, nan_step=3)
  config = srn_config(5)
  config.checkpoint_every_steps = 1
  config.max_checkpoints_to_keep = 10
  with pytest.raises(loop.NonFiniteLossError) as raised:
    srn.train_and_evaluate(config, tmp_path)
  assert "by step 3" in _one_line(raised.value)
  assert f"{tmp_path / 'checkpoints'}/2" in str(raised.value)

  config.on_nonfinite = "skip"  # what the message suggests: same optimiser state, resumable
  final = srn.train_and_evaluate(config, tmp_path)
  assert int(final.step) == 5
  params = {step: jax.tree.leaves(load_trained(tmp_path, "srn", step=step).params)
            for step in (2, 3, 4)}
  for before, skipped in zip(params[2], params[3], strict=True):
    np.testing.assert_array_equal(skipped, before)
  assert any(not np.array_equal(a, b) for a, b in zip(params[3], params[4], strict=True))
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(jax.device_get(final.params)))
  assert "skipped (on_nonfinite=skip)" in (tmp_path / "log.txt").read_text()
