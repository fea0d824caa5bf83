"""Test set-up shared by every test module.

JAX's persistent compilation cache keeps the suite fast on a 2-core machine: the same
networks are compiled in many tests and in every CI run.
"""

import os
import pathlib

_DEFAULT_CACHE = pathlib.Path.home() / ".cache" / "faceblur-jax"
_CACHE = pathlib.Path(os.environ.get("FACEBLUR_TEST_CACHE", _DEFAULT_CACHE))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
