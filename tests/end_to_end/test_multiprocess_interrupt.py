"""A preemption notice to one host of two stops both at the same step: real SIGTERM, real
`main.py` processes joined by `jax.distributed` on loopback.

Only process 1 gets the signal. JAX's preemption service tells process 0, both stop at the
step `reached_preemption_sync_point` agrees on, the shared checkpoint is written once at that
step (orbax's multi-host save would hang or fail if the hosts saved different steps), each
process prints the one line and exits 143, and the same commands resume to the bits of an
uninterrupted two-host run.
"""

import os
import re
import signal

import jax
import numpy as np
import pytest
from helpers import TINY_CYCLEGAN_ARGS, MainJob, free_port, one_device_per_process_env

from faceblur.train.checkpointing import Checkpointer
from faceblur.train.trained import load_trained

STEPS = 30


def _run_two_hosts(workdir, *, sigterm_process_1_after_step: int | None = None):
  """Both processes of one run; their (exit code, stdout, stderr), process 0 first."""
  port = free_port()
  env = one_device_per_process_env(dict(os.environ))
  jobs = [MainJob(f"--workdir={workdir}", *TINY_CYCLEGAN_ARGS,
                  f"--config.num_train_steps={STEPS}", "--config.checkpoint_every_steps=1000",
                  "--config.log_every_steps=1", "--config.distributed.enabled=True",
                  f"--config.distributed.coordinator_address=127.0.0.1:{port}",
                  "--config.distributed.num_processes=2",
                  f"--config.distributed.process_id={process_id}", env=env)
          for process_id in range(2)]
  try:
    if sigterm_process_1_after_step is not None:
      jobs[0].wait_for_step(sigterm_process_1_after_step, timeout=600)  # process 0 logs
      jobs[1].process.send_signal(signal.SIGTERM)
    return [job.finish(timeout=600) for job in jobs]
  finally:
    for job in jobs:
      if job.process.poll() is None:
        job.process.kill()


def _params(workdir) -> list[np.ndarray]:
  return jax.tree.leaves(jax.device_get(load_trained(workdir, "cyclegan").params))


@pytest.mark.slow
def test_sigterm_to_one_host_stops_both_at_one_saved_step_then_resumes_to_the_same_bits(
    tmp_path):
  straight = tmp_path / "straight"
  for returncode, _, stderr in _run_two_hosts(straight):
    assert returncode == 0, stderr[-3000:]

  workdir = tmp_path / "run"
  checkpoints = (workdir / "checkpoints").absolute()
  steps = []
  for returncode, _, stderr in _run_two_hosts(workdir, sigterm_process_1_after_step=3):
    assert returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1, stderr[-3000:]
    match = re.fullmatch(rf"interrupted at step (\d+); checkpoint written to {checkpoints}/(\d+);"
                         r" run the same command to resume", lines[0])
    assert match and match[1] == match[2], lines[0]
    steps.append(int(match[1]))
  step = steps[0]
  assert steps == [step, step]  # one step, agreed by both hosts
  assert 3 <= step < STEPS
  assert Checkpointer(checkpoints).latest_step() == step
  log = (workdir / "log.txt").read_text()
  assert f"step {step}:" in log and f"step {step + 1}:" not in log

  results = _run_two_hosts(workdir)
  for returncode, _, stderr in results:
    assert returncode == 0, stderr[-3000:]
  assert f"Resuming from {checkpoints}/{step}" in results[0][1]
  # Only process 0 writes metrics: the resume said once, one event file per run.
  assert (workdir / "log.txt").read_text().count(f"Resuming from {checkpoints}/{step}") == 1
  assert len(list(workdir.glob("events.out.tfevents.*"))) == 2
  for expected, actual in zip(_params(straight), _params(workdir), strict=True):
    np.testing.assert_array_equal(actual, expected)
