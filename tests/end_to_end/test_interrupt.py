"""Ctrl-C and SIGTERM (a preemption) cost no step: real signals to a real `main.py`.

The interrupted run saves the step it was on, prints one line and exits 128 + the signal; the
same command then resumes and ends with the bits of an uninterrupted run. A second Ctrl-C
aborts at once. Synthesis finishes the pairs in flight and a re-run completes the rest.
"""

import os
import pathlib
import re
import signal
import time

import jax
import numpy as np
import pytest
from helpers import TINY_CYCLEGAN_ARGS as TINY_CYCLEGAN
from helpers import MainJob

from faceblur.errors import Interrupted
from faceblur.train import synthesize
from faceblur.train.checkpointing import Checkpointer
from faceblur.train.trained import load_trained

ROOT = pathlib.Path(__file__).resolve().parents[2]
STEPS = 30
# One step logged at a time (a line to wait for) and no checkpoint but the last: an
# interruption mid-way can only be saved by the interruption itself.
CYCLEGAN = [*TINY_CYCLEGAN, f"--config.num_train_steps={STEPS}",
            "--config.checkpoint_every_steps=1000", "--config.log_every_steps=1"]


def _run(workdir: pathlib.Path) -> tuple[int, str, str]:
  return MainJob(f"--workdir={workdir}", *CYCLEGAN).finish()


def _params(workdir: pathlib.Path) -> list[np.ndarray]:
  return jax.tree.leaves(jax.device_get(load_trained(workdir, "cyclegan").params))


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> pathlib.Path:
  workdir = tmp_path_factory.mktemp("straight")
  returncode, _, stderr = _run(workdir)
  assert returncode == 0, stderr[-3000:]
  return workdir


@pytest.mark.slow
@pytest.mark.parametrize("signum, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_the_step_reached_then_resumes_to_the_same_bits(straight, tmp_path,
                                                                     signum, exit_code):
  workdir = tmp_path / "run"
  job = MainJob(f"--workdir={workdir}", *CYCLEGAN)
  job.wait_for_step(3)
  job.process.send_signal(signum)
  returncode, stdout, stderr = job.finish()

  assert returncode == exit_code, stderr[-3000:]
  assert "Traceback" not in stderr, stderr[-3000:]
  checkpoints = (workdir / "checkpoints").absolute()
  lines = [line for line in stderr.splitlines() if line.startswith("interrupted")]
  assert len(lines) == 1, stderr[-3000:]
  match = re.fullmatch(rf"interrupted at step (\d+); checkpoint written to {checkpoints}/(\d+); "
                       r"run the same command to resume", lines[0])
  assert match and match[1] == match[2], lines[0]
  step = int(match[1])
  assert 3 <= step < STEPS
  assert Checkpointer(checkpoints).latest_step() == step
  assert f"step {step}:" in stdout  # the step in flight was finished (and logged)
  assert f"step {step + 1}:" not in stdout

  returncode, stdout, stderr = _run(workdir)
  assert returncode == 0, stderr[-3000:]
  assert f"Resuming from {checkpoints}/{step}" in stdout
  for expected, actual in zip(_params(straight), _params(workdir), strict=True):
    np.testing.assert_array_equal(actual, expected)


@pytest.mark.slow
def test_second_ctrl_c_aborts_at_once_without_saving(tmp_path):
  workdir = tmp_path / "run"
  job = MainJob(f"--workdir={workdir}", *CYCLEGAN)
  job.wait_for_step(2)
  job.process.send_signal(signal.SIGINT)
  time.sleep(0.3)  # two signals before Python runs its handler count as one
  job.process.send_signal(signal.SIGINT)
  returncode, _, stderr = job.finish()
  assert returncode == 130
  assert "Traceback" not in stderr, stderr[-3000:]
  lines = [line for line in stderr.splitlines() if line.startswith(("aborted", "interrupted"))]
  assert len(lines) == 1 and lines[0].startswith("aborted without saving"), stderr[-3000:]


def test_synthesis_finishes_the_pairs_in_flight_then_a_rerun_completes_them(straight, tmp_path,
                                                                            monkeypatch):
  from configs import demo

  config = demo.get_config("tiny").synthesize
  config.cyclegan_workdir = str(straight)
  config.source.count = 40
  config.batch_size = 4
  real_save, saved = synthesize.save_image, []

  def save_then_sigterm(path, image):  # SIGTERM arrives while the 2nd batch is being written
    saved.append(path)
    if len(saved) == 10:
      os.kill(os.getpid(), signal.SIGTERM)
    return real_save(path, image)

  monkeypatch.setattr(synthesize, "save_image", save_then_sigterm)
  before = signal.getsignal(signal.SIGTERM)
  with pytest.raises(Interrupted) as raised:
    synthesize.synthesize(config, tmp_path)
  assert signal.getsignal(signal.SIGTERM) is before  # the handler lived for the run only
  assert raised.value.exit_code == 143
  output = tmp_path / "pairs"
  blurred = sorted(output.rglob("blurred/*.png"))
  done = len(blurred)
  assert 8 <= done < 40 and done % 4 == 0  # whole batches: none left half-written
  assert str(raised.value) == (f"synthesis interrupted with {done} of 40 pairs done in "
                               f"{output}; run the same command to finish")
  assert len(list(output.rglob("sharp/*.png"))) == done and not synthesize.is_complete(output)

  written = {path: path.stat().st_mtime_ns for path in blurred}
  saved.clear()
  monkeypatch.setattr(synthesize, "save_image", lambda path, image: (saved.append(path),
                                                                     real_save(path, image)))
  synthesize.synthesize(config, tmp_path)
  assert len(saved) == 2 * (40 - done)  # each missing pair written once, the rest untouched
  assert all(path.stat().st_mtime_ns == mtime for path, mtime in written.items())
  assert len(list(output.rglob("blurred/*.png"))) == 40 and synthesize.is_complete(output)
  assert not list(output.rglob("*.tmp"))
