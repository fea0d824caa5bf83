"""Helpers shared by the test modules: tiny stage configs and running `main.py` as a user does.

Importable from every test folder because `tests/conftest.py` puts `tests/` on `sys.path`.
"""

import functools
import importlib.util
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time

import ml_collections
import numpy as np
from PIL import Image

from configs import common, demo
from configs import cyclegan as cyclegan_variants

ROOT = pathlib.Path(__file__).resolve().parents[1]


@functools.cache
def load_tool(name: str):
  """`tools/<name>.py` as a module, loaded once per process (a tool may define absl flags at
  import, which a second load would define twice)."""
  spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module

# A CycleGAN small enough to train for tens of steps in a subprocess, on the demo faces.
TINY_CYCLEGAN_ARGS = [
    "--config=configs/cyclegan.py:demo", "--config.data.load_size=36",
    "--config.data.crop_size=32", "--config.model.num_blocks=2", "--config.model.features=8",
    "--config.model.disc_features=8", "--config.batch_size=2", "--config.num_workers=0",
    "--config.pool_size=4", "--config.num_train_steps=40", "--config.checkpoint_every_steps=2",
    "--config.log_every_steps=2", "--config.sample_every_steps=1000",
    "--config.data.sharp.count=16", "--config.data.blurred.count=16",
]


def cyclegan_config(num_train_steps: int = 4) -> ml_collections.ConfigDict:
  """The demo's tiny CycleGAN (32 px) on 16 faces per domain, the paper's variant (its G is
  deterministic, as the tests of steps, resumes and synthesis across devices expect), without
  the validation photos' realism score."""
  config = demo.get_config("tiny").cyclegan
  cyclegan_variants.apply_variant(config, "paper")
  config.data.blurred_validation.kind = ""
  config.data.sharp.count = 16
  config.data.blurred.count = 16
  config.num_train_steps = num_train_steps
  config.log_every_steps = 1
  config.checkpoint_every_steps = 2
  config.sample_every_steps = 1000
  return config


def fresh_cyclegan(config: ml_collections.ConfigDict):
  """Stage 1's optimiser and a fresh train state for `config`, on one device: (mesh, tx, state)."""
  from faceblur.train import cyclegan, partitioning  # noqa: PLC0415
  from faceblur.train import state as state_lib  # noqa: PLC0415

  mesh = partitioning.make_mesh(1)
  tx = cyclegan.STAGE.make_optimizer(config, config.num_train_steps)
  return mesh, tx, state_lib.create_train_state(cyclegan.init_fn(config, tx), 0, mesh)


def random_images(config: ml_collections.ConfigDict, seed: int = 0) -> dict[str, np.ndarray]:
  """A batch of uniform random 'sharp' and 'blurred' crops of `config`'s size."""
  rng = np.random.default_rng(seed)
  size = config.data.crop_size
  return {key: rng.random((config.batch_size, size, size, 3), dtype=np.float32)
          for key in ("sharp", "blurred")}


def srn_config(num_train_steps: int = 4) -> ml_collections.ConfigDict:
  """The demo's tiny SRN on kernel-blurred pairs of 16 demo faces, 24 px crops."""
  config = demo.get_config("tiny").srn
  config.data.train = common.source(
      "kernel_blurred", base=dict(kind="demo_sharp", count=16, seed=0), max_blur_length=9.0)
  config.data.test = common.source(
      "kernel_blurred", base=dict(kind="demo_sharp", count=4, seed=5), max_blur_length=9.0)
  config.data.crop_size = 24
  config.num_train_steps = num_train_steps
  config.log_every_steps = 1
  config.checkpoint_every_steps = 2
  config.eval_every_steps = 1000
  config.eval_num_images = 2
  return config


def tiny_evaluate_config(root, output) -> ml_collections.ConfigDict:
  """The evaluation of one paired folder (`root`, no split) by two identity methods (the
  blurred input twice), written to `output`."""
  from configs import evaluate as evaluate_config  # noqa: PLC0415

  config = evaluate_config.get_config()
  config.test_sets = ml_collections.ConfigDict(dict(
      tiny=common.source("paired_folder", path=str(root), split="")))
  config.methods = ml_collections.ConfigDict(dict(
      blurred=evaluate_config.method("identity", label="Blurred input"),
      again=evaluate_config.method("identity", label="Blurred again")))
  config.output = str(output)
  return config


def run_main(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
  """`python main.py ARGS` from the repository root, as a user runs it."""
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
  """The run failed with exactly one error line, no traceback, naming every needle."""
  assert result.returncode != 0
  assert "Traceback" not in result.stderr, result.stderr[-2000:]
  error_lines = [line for line in result.stderr.splitlines()
                 if line.startswith(("error:", "FATAL"))]
  assert len(error_lines) == 1, result.stderr[-2000:]
  for needle in needles:
    assert needle in error_lines[0], error_lines[0]


def write_pairs(root: pathlib.Path, blurred_names, sharp_names) -> None:
  """A paired folder of random 32 px images: root/blurred/<names>, root/sharp/<names>."""
  rng = np.random.default_rng(0)
  for side, names in (("blurred", blurred_names), ("sharp", sharp_names)):
    (root / side).mkdir(parents=True)
    for name in names:
      Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / side / name)


def free_port() -> int:
  """A loopback port nobody listens on: a coordinator address for `jax.distributed`."""
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    return probe.getsockname()[1]


def one_device_per_process_env(base: dict[str, str]) -> dict[str, str]:
  """`base` with one CPU device per process, whatever its XLA_FLAGS ask for (other flags
  stay): what each process of a multi-process test needs."""
  env = dict(base)
  env["XLA_FLAGS"] = " ".join(flag for flag in env.get("XLA_FLAGS", "").split()
                              if not flag.startswith("--xla_force_host_platform_device_count"))
  return env


class MainJob:
  """`main.py` in a subprocess whose stdout is read as it comes (to know when a step ran)."""

  def __init__(self, *args: str, env: dict[str, str] | None = None):
    env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
    # A background shell (or CI runner) starts its children with SIGINT ignored, which exec
    # keeps and main.py respects; a terminal does not. A handler (even Python's) resets to the
    # default in the child, and no preexec_fn means no fork of this multithreaded process.
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if ignored:
      signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
      self.process = subprocess.Popen(
          [sys.executable, "main.py", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
          stderr=subprocess.PIPE, text=True)
    finally:
      if ignored:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Both pipes read as they come: a child blocked on a full pipe would stall (and, with
    # several processes, stall its peers inside a collective).
    self.stdout: list[str] = []
    self.stderr: list[str] = []
    self._readers = [threading.Thread(target=self._read, args=(pipe, lines), daemon=True)
                     for pipe, lines in ((self.process.stdout, self.stdout),
                                         (self.process.stderr, self.stderr))]
    for reader in self._readers:
      reader.start()

  @staticmethod
  def _read(pipe, lines: list[str]) -> None:
    for line in pipe:
      lines.append(line)

  def wait_for_step(self, step: int, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not any(line.startswith(f"step {step}:") for line in self.stdout):
      assert self.process.poll() is None, "".join(self.stderr)[-3000:]
      assert time.time() < deadline, "".join(self.stdout)[-3000:]
      time.sleep(0.05)

  def finish(self, timeout: float = 240) -> tuple[int, str, str]:
    returncode = self.process.wait(timeout)
    for reader in self._readers:
      reader.join(timeout)
    return returncode, "".join(self.stdout), "".join(self.stderr)
