"""Dispatch from a config's `job` to the code that runs it."""

import os
import pathlib
import tempfile

import ml_collections

from faceblur.errors import ConfigError, StorageError, os_reason

JOBS = ("cyclegan", "synthesize", "srn", "evaluate", "deblur", "pipeline")
NEEDS_WORKDIR = ("cyclegan", "synthesize", "srn", "evaluate", "pipeline")


def enable_compilation_cache() -> None:
  """Re-runs (resumes, the demo, evaluations) skip XLA compilation they already did."""
  import jax  # noqa: PLC0415

  cache = os.environ.get("JAX_COMPILATION_CACHE_DIR",
                         str(pathlib.Path.home() / ".cache" / "faceblur" / "jax"))
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def check_writable(folder: pathlib.Path, what: str = "workdir") -> None:
  """Creates `folder` and writes a file in it, so a full, read-only or mistyped folder fails
  in one line at start-up, not after minutes of compiling and training."""
  if folder.exists() and not folder.is_dir():
    raise StorageError(f"{folder}: the {what} is a file, not a folder")
  try:
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".faceblur-write-test-") as probe:
      probe.write(b"ok")
      probe.flush()
  except OSError as error:
    raise StorageError(
        f"{folder}: cannot write the {what} ({os_reason(error)})") from None


def run(config: ml_collections.ConfigDict, workdir: str | None) -> object:
  job = config.get("job")
  if job not in JOBS:
    raise ConfigError(f"config.job={job!r} is not one of {', '.join(JOBS)}")
  if job in NEEDS_WORKDIR and not workdir:
    raise ConfigError(f"the {job} job needs --workdir")
  if job in NEEDS_WORKDIR:
    check_writable(pathlib.Path(workdir))
  from faceblur.train import partitioning  # noqa: PLC0415

  partitioning.initialize_distributed(config)
  enable_compilation_cache()
  workdir = pathlib.Path(workdir) if workdir else None
  if job == "cyclegan":
    from faceblur.train import cyclegan  # noqa: PLC0415

    return cyclegan.train_and_evaluate(config, workdir)
  if job == "srn":
    from faceblur.train import srn  # noqa: PLC0415

    return srn.train_and_evaluate(config, workdir)
  if job == "synthesize":
    from faceblur.train import synthesize  # noqa: PLC0415

    return synthesize.synthesize(config, workdir)
  if job == "evaluate":
    from faceblur.evaluate import evaluation  # noqa: PLC0415

    return evaluation.evaluate(config, workdir)
  if job == "deblur":
    from faceblur import inference  # noqa: PLC0415

    return inference.deblur_job(config)
  from faceblur import pipeline  # noqa: PLC0415

  return pipeline.run_pipeline(config, workdir)
