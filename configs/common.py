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
  parse_argument(file, arg, choices)


def parse_argument(file: str, arg: str, *groups: Sequence[str]) -> tuple[str, ...]:
  """The parts of `--config=configs/<file>:<arg>`, which composes comma-separated parts as
  big_vision's `parse_arg` does (`celeb_a,paper_code`): at most one part from each group of
  alternatives, in any order; a group's first entry is its default ('' = the part is absent).
  Returns the chosen part of each group, in the groups' order. An unknown part, or two of one
  group, is refused in one line naming the file, never run as the defaults in silence."""
  parts = arg.split(",") if arg else []
  chosen: list[str | None] = [None] * len(groups)
  for part in parts:
    index = next((index for index, group in enumerate(groups) if part and part in group), None)
    if index is None:
      within = f" (in {arg!r})" if part != arg else ""
      raise ValueError(f"unknown configs/{file} argument {part!r}{within}; choose "
                       f"{_grammar(groups)}")
    if chosen[index] is not None:
      raise ValueError(f"configs/{file} argument {arg!r} names both {chosen[index]!r} and "
                       f"{part!r}; choose one of them")
    chosen[index] = part
  return tuple(group[0] if part is None else part
               for part, group in zip(chosen, groups, strict=True))


def _grammar(groups: Sequence[Sequence[str]]) -> str:
  """What an argument may be: `'a', 'b'` for one group; for several, one part of each."""
  groups = [[choice for choice in group if choice] for group in groups]
  groups = [group for group in groups if group]
  if not groups:
    return "none (the file takes no argument)"
  if len(groups) == 1:
    return ", ".join(repr(choice) for choice in groups[0])
  return ("comma-separated parts, at most one from each of "
          + "; ".join("|".join(repr(choice) for choice in group) for group in groups))


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
