"""Two real processes on loopback (CPU collectives over gloo) train like one process.

Each process initialises `jax.distributed`, holds half of a fixed global batch, and runs the
SRN train step over a mesh spanning both; both must end with identical parameters, equal
(within float tolerance) to a single process stepping on the whole batch.
"""

import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import sys
    import conftest
    import jax, numpy as np, optax
    import ml_collections
    from helpers import srn_config
    from faceblur.data import input_pipeline as data_pipeline
    from faceblur.train import partitioning, srn, state as state_lib

    process_id, num_processes, port, out = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                            sys.argv[4])
    config = srn_config()
    if num_processes > 1:
      config.distributed = ml_collections.ConfigDict(dict(
          enabled=True, coordinator_address=f"127.0.0.1:{port}", num_processes=num_processes,
          process_id=process_id, local_device_ids=()))
      partitioning.initialize_distributed(config)
    assert jax.process_count() == num_processes
    rng = np.random.default_rng(0)
    images = rng.random((2, 4, 24, 24, 3), dtype=np.float32)
    share = 4 // num_processes
    local = slice(process_id * share, (process_id + 1) * share)
    batch = {"blurred": images[0][local], "sharp": images[1][local]}
    mesh = partitioning.make_mesh()
    tx = optax.sgd(0.01)
    state = state_lib.create_train_state(srn.init_fn(config, tx), 0, mesh)
    batch = partitioning.shard_batch(batch, mesh)
    step = partitioning.compile_on_every_process(
        jax.jit(srn.make_train_step(config, srn.make_networks(config), tx)), state, batch)
    for _ in range(2):
      state, metrics = step(state, batch)
    leaves = [np.asarray(leaf.addressable_data(0)) for leaf in jax.tree.leaves(state.params)]
    np.savez(out, *leaves, loss=np.asarray(metrics["loss"].addressable_data(0)))
""")


def _free_port() -> int:
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    return probe.getsockname()[1]


def _launch(process_id: int, num_processes: int, port: int, out: pathlib.Path):
  # Output goes to a file, not a pipe: a process blocked on a full pipe that nobody reads yet
  # would stall its peer inside a collective.
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
  # One CPU device per process, whatever the caller's XLA_FLAGS ask for (other flags stay).
  env["XLA_FLAGS"] = " ".join(flag for flag in env.get("XLA_FLAGS", "").split()
                              if not flag.startswith("--xla_force_host_platform_device_count"))
  log = open(out.with_suffix(".log"), "w")  # noqa: SIM115 — closed by _wait
  proc = subprocess.Popen(
      [sys.executable, "-c", SCRIPT, str(process_id), str(num_processes), str(port), str(out)],
      cwd=ROOT / "tests", env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
  proc.log = log
  return proc


def _wait(proc: subprocess.Popen) -> None:
  try:
    proc.wait(timeout=600)
  except subprocess.TimeoutExpired:
    proc.kill()
    raise
  finally:
    proc.log.close()
  assert proc.returncode == 0, pathlib.Path(proc.log.name).read_text()[-3000:]


def test_two_processes_match_one(tmp_path):
  port = _free_port()
  workers = [_launch(i, 2, port, tmp_path / f"p{i}.npz") for i in range(2)]
  try:
    for proc in workers:
      _wait(proc)
  finally:
    for proc in workers:
      proc.kill()
  # The single-process reference runs afterwards, so that the pair has the CPU to itself.
  _wait(_launch(0, 1, port, tmp_path / "single.npz"))
  results = [np.load(tmp_path / name) for name in ("p0.npz", "p1.npz", "single.npz")]
  names = [key for key in results[0].files if key != "loss"]
  for key in names:
    np.testing.assert_array_equal(results[0][key], results[1][key])
    np.testing.assert_allclose(results[0][key], results[2][key], rtol=0, atol=1e-6)
  np.testing.assert_allclose(results[0]["loss"], results[2]["loss"], rtol=1e-5)
