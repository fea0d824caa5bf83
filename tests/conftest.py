"""Test set-up shared by every test module.

JAX's persistent compilation cache keeps the suite fast on a 2-core machine: the same
networks are compiled in many tests and in every CI run.
"""

import os
import pathlib
import sys

# The test folders mirror the package; `helpers.py` beside this file serves them all.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

_DEFAULT_CACHE = pathlib.Path.home() / ".cache" / "faceblur-jax"
_CACHE = pathlib.Path(os.environ.get("FACEBLUR_TEST_CACHE", _DEFAULT_CACHE))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The suite is bound by XLA compiling tiny networks, not by running them: LLVM at -O0
# compiles a tiny train step 30-40 % faster (SRN 25.5 -> 14.5 s, CycleGAN 25.9 -> 18.3 s)
# and runs it ~3x slower (45 -> 146 ms). Only code generation changes (results may differ in
# the last bits, as between two CPUs). Child processes inherit it.
_FAST_COMPILE = "--xla_backend_optimization_level=0"
if _FAST_COMPILE not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}".strip()

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def identity_srn(tmp_path_factory):
  """A residual SRN at its initialisation, i.e. the identity (its output layer is zeroed): one
  step at learning rate 0 writes the checkpoint without moving a parameter."""
  from helpers import srn_config  # noqa: PLC0415

  from faceblur.train import srn  # noqa: PLC0415

  workdir = tmp_path_factory.mktemp("identity_srn")
  config = srn_config(1)
  assert config.model.residual
  config.optimizer.learning_rate = config.optimizer.end_learning_rate = 0.0
  srn.train_and_evaluate(config, workdir)
  return workdir
