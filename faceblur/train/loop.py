"""The training loop every stage shares: resume, step, log, check, checkpoint.

A stage (`stage.Stage`, whose `train_and_evaluate` calls `train`) supplies its initial
state, its jitted train step, its data and its periodic hooks; this loop owns
everything else, so resuming, logging and the non-finite guard behave the same in both
stages. Batch `k` of the input pipeline is a pure function of (seed, k) and the step's RNG is
`fold_in(rng, step)`, so a run resumed from step `k` continues exactly as an uninterrupted
one would.
"""

import contextlib
import dataclasses
import math
import os
import pathlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator

import jax
import ml_collections
import numpy as np
import optax
from clu import metrics as clu_metrics
from jax._src import distributed as jax_distributed
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from faceblur.errors import ConfigError, FaceblurError, Interrupted
from faceblur.train import partitioning
from faceblur.train.checkpointing import Checkpointer, abstract_like
from faceblur.train.metric_writers import MetricWriter, ReportProgress
from faceblur.train.state import TrainState

TrainStep = Callable[[TrainState, dict[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]]
PeriodicHook = Callable[[int, TrainState], None]


class NonFiniteLossError(FaceblurError):
  """A loss became NaN or infinite."""


NONFINITE_POLICIES = ("stop", "skip")


def nonfinite_guard(tx: optax.GradientTransformation,
                    config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """`tx` wrapped so that `on_nonfinite=skip` drops updates with NaN or infinite gradients.

  Both policies use the same wrapper, hence the same optimiser state, so a run stopped by
  a NaN resumes from its last checkpoint with `--config.on_nonfinite=skip` (what the stop
  message suggests). Under 'stop' every update is applied (no consecutive error is
  tolerated) and the loop stops at the next check.
  """
  policy = config.get("on_nonfinite", "stop")
  if policy not in NONFINITE_POLICIES:
    raise ConfigError(f"on_nonfinite={policy!r} is not one of {', '.join(NONFINITE_POLICIES)}")
  return optax.apply_if_finite(tx, max_consecutive_errors=100 if policy == "skip" else 0)


@dataclasses.dataclass
class Periodic:
  """Calls `hook(step, state)` every `every_steps` steps and after the last one."""

  every_steps: int
  hook: PeriodicHook

  def maybe_run(self, step: int, state: TrainState, last_step: int) -> None:
    if (self.every_steps > 0 and step % self.every_steps == 0) or step == last_step:
      self.hook(step, state)


class Interruption:
  """What SIGINT or SIGTERM asked for, read by a loop between two units of work.

  The handler only records the signal: raising from it (Python's KeyboardInterrupt) would
  leave a jitted step, an orbax save or a PNG half done. A second signal aborts at once.
  `synchronized` (a multi-process training loop) stops at the step JAX's preemption service
  makes every process agree on, so that all of them save the same step.
  """

  def __init__(self, synchronized: bool = False):
    self.signum: int | None = None
    self.synchronized = synchronized

  def handle(self, signum: int, frame: object) -> None:
    del frame
    if self.signum is not None:
      print("aborted without saving (second interrupt); the last checkpoint is kept",
            file=sys.stderr, flush=True)
      os._exit(128 + signum)
    self.signum = signum
    if self.synchronized:
      # SIGTERM is the preemption service's notice (its C++ handler); it tells every process.
      os.kill(os.getpid(), signal.SIGTERM)

  @property
  def requested(self) -> bool:
    return self.signum is not None

  def reached(self, step: int) -> bool:
    """Whether to save `step` and stop; every process calls it at every step when synchronized."""
    if self.synchronized:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.requested

  def error(self, message: str) -> Interrupted:
    # A process told by the preemption service (another host's signal) exits as on SIGTERM.
    signum = self.signum if self.signum is not None else signal.SIGTERM
    return Interrupted(message, exit_code=128 + signum)


@contextlib.contextmanager
def interruptible(*, synchronized: bool = False) -> Iterator[Interruption]:
  """SIGINT and SIGTERM recorded in an `Interruption` for the duration of the block only.

  Only the main thread may install handlers (a job run from a thread keeps the defaults); a
  signal ignored by whoever started the process (nohup) stays ignored. With several processes
  (`synchronized`) SIGTERM is left to JAX's preemption service, which needs it to notify the
  others, and SIGINT is handed to it; without that service the defaults stay, as before.
  """
  interruption = Interruption(synchronized)
  signums = [signal.SIGINT, signal.SIGTERM]
  if synchronized or jax.process_count() > 1:
    signums = [signal.SIGINT]
    if synchronized and getattr(jax_distributed.global_state, "preemption_sync_manager",
                                None) is None:
      interruption.synchronized = False
      signums = []
  if threading.current_thread() is not threading.main_thread():
    signums = []
  previous = {}
  for signum in signums:
    if signal.getsignal(signum) is not signal.SIG_IGN:
      previous[signum] = signal.signal(signum, interruption.handle)
  try:
    yield interruption
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def _mean_metrics(history: list[dict[str, jax.Array]]) -> dict[str, float]:
  """Averages the per-step metrics of one logging interval with clu's `Average`.

  clu metric names must be identifiers; ours are TensorBoard tags like `generator/cycle`.
  """
  fields = {name: f"m{index}" for index, name in enumerate(sorted(history[0]))}
  collection = clu_metrics.Collection.create(
      **{field: clu_metrics.Average.from_output(field) for field in fields.values()})
  merged = None
  for step_metrics in jax.device_get(history):
    update = collection.single_from_model_output(
        **{fields[name]: value for name, value in step_metrics.items()})
    merged = update if merged is None else merged.merge(update)
  computed = merged.compute()
  return {name: float(computed[field]) for name, field in fields.items()}


def restore_or_keep(checkpointer: Checkpointer, state: TrainState,
                    config: ml_collections.ConfigDict,
                    writer: MetricWriter | None = None) -> TrainState:
  """The newest checkpoint that restores if there is one, else `state` unchanged; a damaged
  one skipped is also noted in the run's log."""
  if checkpointer.latest_step() is None:
    return state
  log = (lambda line: writer.write_text(line, console=False)) if writer is not None else None
  return checkpointer.restore(abstract_like(state), config, log=log)


def train(
    *,
    config: ml_collections.ConfigDict,
    workdir: pathlib.Path,
    mesh: Mesh,
    state: TrainState,
    train_step: TrainStep,
    batches: Callable[[int], Iterator[dict[str, np.ndarray]]],
    num_train_steps: int,
    writer: MetricWriter,
    hooks: tuple[Periodic, ...] = (),
) -> TrainState:
  """Runs `train_step` from the latest checkpoint in `workdir` up to `num_train_steps`.

  `batches(start_step)` yields this host's batches from `start_step` on. `writer` is closed
  on return, so its log.txt and event files are complete on disk. SIGINT or SIGTERM finish
  the step in flight, save it as `stop_after_steps` does and raise `Interrupted`: a
  preemption or a Ctrl-C costs no step.
  """
  with interruptible(synchronized=jax.process_count() > 1) as interruption:
    return _train(config=config, workdir=workdir, mesh=mesh, state=state,
                  train_step=train_step, batches=batches, num_train_steps=num_train_steps,
                  writer=writer, hooks=hooks, interruption=interruption)


def _train(*, config: ml_collections.ConfigDict, workdir: pathlib.Path, mesh: Mesh,
           state: TrainState, train_step: TrainStep,
           batches: Callable[[int], Iterator[dict[str, np.ndarray]]], num_train_steps: int,
           writer: MetricWriter, hooks: tuple[Periodic, ...],
           interruption: Interruption) -> TrainState:
  checkpointer = Checkpointer(workdir / "checkpoints",
                              max_to_keep=config.max_checkpoints_to_keep,
                              keep_period=config.get("keep_checkpoint_every_steps", 0))
  state = restore_or_keep(checkpointer, state, config, writer)
  start_step = int(jax.device_get(state.step))
  if start_step:
    writer.write_text(f"Resuming from {checkpointer.directory}/{start_step}")
  if start_step >= num_train_steps:
    writer.write_text(f"Already trained for {start_step} >= {num_train_steps} steps.")
    checkpointer.close()
    writer.close()
    return state

  last_step = num_train_steps
  if config.get("stop_after_steps", 0) > 0:
    last_step = min(num_train_steps, config.stop_after_steps)
  progress = ReportProgress(num_train_steps, every_steps=config.log_every_steps)
  history: list[dict[str, jax.Array]] = []
  batch_iterator = batches(start_step)
  progress(start_step)
  interrupted_at = None
  profile = _Profile(config, workdir, start_step, writer)
  try:
    for step in range(start_step + 1, last_step + 1):
      batch = partitioning.shard_batch(next(batch_iterator), mesh)
      if step == start_step + 1 and jax.process_count() > 1:
        train_step = partitioning.compile_on_every_process(train_step, state, batch)
      profile.before(step)
      state, step_metrics = train_step(state, batch)
      history.append(step_metrics)
      profile.after(step, state, last=step == last_step)

      interrupted = interruption.reached(step)
      is_last = step == last_step or interrupted
      save_now = is_last or step % config.checkpoint_every_steps == 0
      if step % config.log_every_steps == 0 or save_now:
        scalars = _mean_metrics(history)
        history.clear()
        _check_finite(scalars, step, checkpointer, config, writer)
        scalars.update(progress(step))
        writer.write_scalars(step, scalars)
      for periodic in hooks:  # not the final evaluation on an interrupt: it is not the end
        periodic.maybe_run(step, state, last_step)
      if save_now:
        # Under 'skip' too: parameters only turn non-finite once skipping gave up.
        if not bool(_all_finite(state.params)):
          _check_finite({"parameters": math.nan}, step, checkpointer, config, writer,
                        force_stop=True)
        checkpointer.save(step, state, config, force=True)
      if interrupted:
        interrupted_at = step
        break
    checkpointer.wait_until_finished()
  finally:
    profile.stop()
    checkpointer.close()  # also on errors: stops orbax's background threads
  writer.close()
  if interrupted_at is not None:
    raise interruption.error(
        f"interrupted at step {interrupted_at}; checkpoint written to "
        f"{checkpointer.directory}/{interrupted_at}; run the same command to resume")
  return state


class _Profile:
  """`config.profile_steps` > 0: a `jax.profiler` trace of that many steps, from the one after
  the first (which compiles) on, in `<workdir>/profile` (TensorBoard's profile plugin and
  Perfetto read it), as flax's examples profile with `clu.periodic_actions.Profile`."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: pathlib.Path, start_step: int,
               writer: MetricWriter):
    self.count = int(config.get("profile_steps", 0) or 0)
    self.first = start_step + 2
    self.folder = workdir / "profile"
    self.writer = writer
    self.active = False

  def before(self, step: int) -> None:
    if self.count > 0 and step == self.first:
      jax.profiler.start_trace(str(self.folder))
      self.active = True

  def after(self, step: int, state: TrainState, *, last: bool) -> None:
    if self.active and (step == self.first + self.count - 1 or last):
      jax.block_until_ready(state)
      self.stop()
      self.writer.write_text(f"Profile of steps {self.first}-{step} written to {self.folder}")
    elif self.count > 0 and last and step < self.first:
      self.writer.write_text("profile_steps: no step after the first (compiling) one to profile")

  def stop(self) -> None:
    if self.active:
      self.active = False
      jax.profiler.stop_trace()


@jax.jit
def _all_finite(tree) -> jax.Array:
  return jax.tree.reduce(lambda ok, leaf: ok & jax.numpy.isfinite(leaf).all(), tree, True)


def _check_finite(scalars: dict[str, float], step: int, checkpointer: Checkpointer,
                  config: ml_collections.ConfigDict, writer: MetricWriter, *,
                  force_stop: bool = False) -> None:
  bad = {name: value for name, value in scalars.items() if not math.isfinite(value)}
  if not bad:
    return
  name, value = next(iter(bad.items()))
  if config.on_nonfinite == "skip" and not force_stop:
    writer.write_text(f"step {step}: {name} was {value} since the last log; the updates with "
                      "non-finite gradients were skipped (on_nonfinite=skip)")
    return
  checkpointer.wait_until_finished()
  last = checkpointer.latest_step()
  where = f"{checkpointer.directory}/{last}" if last is not None else "none yet"
  hint = ("lower the learning rate, or set --config.on_nonfinite=skip"
          if config.on_nonfinite != "skip" else
          "skipping non-finite updates did not keep the parameters finite; lower the "
          "learning rate")
  raise NonFiniteLossError(
      f"{name} became {value} by step {step}; last good checkpoint: {where} ({hint})")


def num_steps(config: ml_collections.ConfigDict, num_examples: int) -> int:
  """`num_train_steps` if set, else `num_epochs` over `num_examples` at the global batch."""
  if config.num_train_steps > 0:
    return int(config.num_train_steps)
  return max(1, int(math.ceil(config.num_epochs * num_examples / config.batch_size)))


