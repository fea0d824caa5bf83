"""Dispatch from a config's `job` to the code that runs it.

Each job is registered in `JOBS` as the 'module:function' that runs it, imported only when it
runs (importing the stages takes seconds; a mistyped job fails at once), and whether it needs
`--workdir`.
"""

import dataclasses
import importlib
import os
import pathlib

import ml_collections

from faceblur.errors import ConfigError
from faceblur.registry import Registry
from faceblur.storage import check_writable


@dataclasses.dataclass(frozen=True)
class Job:
  target: str  # 'module:function', called as function(config, workdir)
  needs_workdir: bool = True

  def run(self, config: ml_collections.ConfigDict, workdir: pathlib.Path | None) -> object:
    module, _, function = self.target.partition(":")
    return getattr(importlib.import_module(module), function)(config, workdir)


JOBS: Registry[Job] = Registry("config.job={name!r} is not one of {choices}")
JOBS.add("cyclegan", Job("faceblur.train.cyclegan:train_and_evaluate"))
JOBS.add("synthesize", Job("faceblur.train.synthesize:synthesize"))
JOBS.add("srn", Job("faceblur.train.srn:train_and_evaluate"))
JOBS.add("evaluate", Job("faceblur.evaluate.evaluation:evaluate"))
JOBS.add("unsharp_outputs", Job("faceblur.evaluate.stand_in:write_unsharp_outputs"))
JOBS.add("evaluate_wider_face", Job("faceblur.evaluate.wider_face:evaluate"))
JOBS.add("deblur", Job("faceblur.inference:deblur_job", needs_workdir=False))
JOBS.add("export", Job("faceblur.inference.export:export_job", needs_workdir=False))
JOBS.add("pipeline", Job("faceblur.pipeline:run_pipeline"))


def enable_compilation_cache() -> None:
  """Re-runs (resumes, the demo, evaluations) skip XLA compilation they already did."""
  import jax  # noqa: PLC0415

  cache = os.environ.get("JAX_COMPILATION_CACHE_DIR",
                         str(pathlib.Path.home() / ".cache" / "faceblur" / "jax"))
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def run(config: ml_collections.ConfigDict, workdir: str | None) -> object:
  job = JOBS.get(config.get("job"))
  if job.needs_workdir and not workdir:
    raise ConfigError(f"the {config.job} job needs --workdir")
  if job.needs_workdir:
    check_writable(pathlib.Path(workdir))
  from faceblur.train import partitioning  # noqa: PLC0415

  partitioning.initialize_distributed(config)
  enable_compilation_cache()
  return job.run(config, pathlib.Path(workdir) if workdir else None)
