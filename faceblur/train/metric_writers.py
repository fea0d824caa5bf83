"""Where training tells what it is doing: TensorBoard event files, a text log, the console.

clu's own metric writers and periodic actions import TensorFlow; faceblur keeps TensorFlow
out of its dependencies, so this module provides the same small interface on top of
tensorboardX. Only process 0 writes; the other hosts get a writer that does nothing.
"""

import pathlib
import sys
import time
from collections.abc import Mapping

import jax
import numpy as np


class MetricWriter:
  """Scalars and images to TensorBoard (`<logdir>/events.*`) and scalars to `<logdir>/log.txt`."""

  def __init__(self, logdir: str | pathlib.Path, *, console: bool = True):
    self.logdir = pathlib.Path(logdir)
    self._active = jax.process_index() == 0
    self._console = console
    self._tensorboard = None
    self._text = None
    if self._active:
      from tensorboardX import SummaryWriter  # noqa: PLC0415 — only the writing process needs it

      self.logdir.mkdir(parents=True, exist_ok=True)
      self._tensorboard = SummaryWriter(str(self.logdir), flush_secs=30)
      self._text = open(self.logdir / "log.txt", "a", buffering=1)  # noqa: SIM115

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self._active:
      return
    scalars = {name: float(value) for name, value in scalars.items()}
    for name, value in scalars.items():
      self._tensorboard.add_scalar(name, value, step)
    line = f"step {step}: " + ", ".join(f"{name}={value:.5g}" for name, value in scalars.items())
    self._text.write(line + "\n")
    if self._console:
      print(line, flush=True)

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """Images are HxWx3 (or NxHxWx3) float in [0, 1] or uint8."""
    if not self._active:
      return
    for name, image in images.items():
      image = np.asarray(image)
      if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
      formats = "NHWC" if image.ndim == 4 else "HWC"
      self._tensorboard.add_images(name, image, step, dataformats=formats) if image.ndim == 4 \
          else self._tensorboard.add_image(name, image, step, dataformats=formats)

  def write_text(self, text: str, *, console: bool = True) -> None:
    if not self._active:
      return
    self._text.write(text + "\n")
    if self._console and console:
      print(text, flush=True)

  def flush(self) -> None:
    if self._active:
      self._tensorboard.flush()

  def close(self) -> None:
    if self._active:
      self._tensorboard.close()
      self._text.close()
      self._active = False


class ReportProgress:
  """A progress line every `every_steps`: steps/s and the time left (clu's ReportProgress)."""

  def __init__(self, num_train_steps: int, *, every_steps: int = 50, stream=sys.stdout):
    self.num_train_steps = num_train_steps
    self.every_steps = max(1, every_steps)
    self._stream = stream
    self._last_step: int | None = None
    self._last_time = 0.0

  def __call__(self, step: int) -> dict[str, float]:
    """Returns the figures it printed (empty when it printed nothing)."""
    now = time.perf_counter()
    if self._last_step is None:
      self._last_step, self._last_time = step, now
      return {}
    if step % self.every_steps and step != self.num_train_steps:
      return {}
    steps_per_sec = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    remaining = (self.num_train_steps - step) / max(steps_per_sec, 1e-9)
    if jax.process_index() == 0:
      print(f"[{step}/{self.num_train_steps}] {steps_per_sec:.2f} steps/s, "
            f"ETA {_format_seconds(remaining)}", file=self._stream, flush=True)
    return {"steps_per_sec": steps_per_sec}


def _format_seconds(seconds: float) -> str:
  seconds = int(seconds)
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
