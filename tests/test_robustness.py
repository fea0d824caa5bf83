"""A training job killed with SIGKILL mid-run resumes from its last complete checkpoint."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from faceblur.train.checkpointing import Checkpointer

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY_CYCLEGAN = [
    "--config=configs/cyclegan.py:demo", "--config.data.load_size=36",
    "--config.data.crop_size=32", "--config.model.num_blocks=2", "--config.model.features=8",
    "--config.model.disc_features=8", "--config.batch_size=2", "--config.num_workers=0",
    "--config.pool_size=4", "--config.num_train_steps=40", "--config.checkpoint_every_steps=2",
    "--config.log_every_steps=2", "--config.sample_every_steps=1000",
    "--config.data.sharp.count=16", "--config.data.blurred.count=16",
]


def _start(workdir: pathlib.Path) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, "main.py", f"--workdir={workdir}", *TINY_CYCLEGAN],
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

  resumed = subprocess.run([sys.executable, "main.py", f"--workdir={workdir}", *TINY_CYCLEGAN],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"Resuming from {checkpoints.absolute()}/" in resumed.stdout
  assert Checkpointer(checkpoints).latest_step() == 40
  assert not list(checkpoints.glob("*tmp*")), "a half-written checkpoint was left behind"
