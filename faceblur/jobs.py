"""Dispatch from a config's `job` to the code that runs it."""

import os
import pathlib

import ml_collections

from faceblur.errors import ConfigError

JOBS = ("cyclegan", "synthesize", "srn", "evaluate", "deblur", "pipeline")
NEEDS_WORKDIR = ("cyclegan", "synthesize", "srn", "evaluate", "pipeline")


def enable_compilation_cache() -> None:
  """Re-runs (resumes, the demo, evaluations) skip XLA compilation they already did."""
  import jax  # noqa: PLC0415

  cache = os.environ.get("JAX_COMPILATION_CACHE_DIR",
                         str(pathlib.Path.home() / ".cache" / "faceblur" / "jax"))
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def run(config: ml_collections.ConfigDict, workdir: str | None) -> object:
  job = config.get("job")
  if job not in JOBS:
    raise ConfigError(f"config.job={job!r} is not one of {', '.join(JOBS)}")
  if job in NEEDS_WORKDIR and not workdir:
    raise ConfigError(f"the {job} job needs --workdir")
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
