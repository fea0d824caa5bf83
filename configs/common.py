"""Pieces every config shares: run settings, data-source specs, the multi-host block."""

from collections.abc import Sequence

import ml_collections

from faceblur.data import factory


def run_settings(config: ml_collections.ConfigDict, *, job: str) -> ml_collections.ConfigDict:
  config.job = job
  config.seed = 0
  # 0 = every visible device; the global batch is split over them.
  config.num_devices = 0
  # bfloat16 activations with float32 parameters, optimiser state and losses.
  config.mixed_precision = False
  config.distributed = ml_collections.ConfigDict(dict(
      enabled=False,            # call jax.distributed.initialize before anything else
      coordinator_address="",   # "host:port" of process 0; empty = detected (Slurm, TPU)
      num_processes=0,
      process_id=-1,
      local_device_ids=(),
  ))
  return config


source = factory.source_spec  # a data source spec, built by faceblur.data.factory


def check_argument(file: str, arg: str, choices: Sequence[str]) -> None:
  """`--config=configs/<file>:<arg>` with an `arg` the file does not know: one line naming
  the file, never the defaults in silence."""
  if arg not in choices:
    raise ValueError(f"unknown configs/{file} argument {arg!r}; choose "
                     f"{', '.join(repr(choice) for choice in choices)}")


def train_loop_settings(config: ml_collections.ConfigDict, *, num_epochs: float,
                        batch_size: int) -> ml_collections.ConfigDict:
  config.batch_size = batch_size
  config.num_epochs = num_epochs
  # > 0 overrides num_epochs (handy for smoke tests and benchmarks).
  config.num_train_steps = 0
  config.log_every_steps = 100
  config.checkpoint_every_steps = 1000
  config.max_checkpoints_to_keep = 3
  # > 0: checkpoints at multiples of this step are never deleted (stage 1 keeps those its
  # label-free selection may choose).
  config.keep_checkpoint_every_steps = 0
  config.num_workers = 2
  # What to do if a loss turns NaN/inf: 'stop' (name the step and last good checkpoint) or 'skip'.
  config.on_nonfinite = "stop"
  # > 0: checkpoint and stop once this step is reached; a later run resumes from there
  # (for time-limited sessions such as Colab; the schedule still spans the whole run).
  config.stop_after_steps = 0
  # > 0: also keep an exponential moving average of the weights with this decay (e.g. 0.999),
  # in the checkpoints and releases; inference uses it with use_ema. 0 = off (the references).
  config.ema_decay = 0.0
  # True: a run that ends without error also writes a params-only release to <workdir>/release.
  config.write_release = False
  # A release or stage workdir of the same stage and model config whose weights start this run
  # (fine-tuning: a fresh optimiser, step 0; a resumed run continues from its own checkpoint).
  config.init_from = ""
  # > 0: a jax.profiler trace of this many steps after the first (compiling) one, written to
  # <workdir>/profile (TensorBoard's profile plugin or Perfetto read it).
  config.profile_steps = 0
  return config
