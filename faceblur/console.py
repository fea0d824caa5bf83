"""faceblur's lines for the person at the terminal, written above any progress bar.

A tqdm bar redraws its line in place without a newline; anything else written to the terminal
meanwhile lands in the middle of that line. Every warning faceblur prints, and every log record
main.py shows, goes through `write_above_progress_bars`, which clears the bars, writes the line
and redraws them below it.
"""

import logging
import sys
from typing import TextIO

from tqdm import tqdm


def write_above_progress_bars(text: str, file: TextIO | None = None) -> None:
  """Writes `text` (ending in a newline) to `file` (default: the current stderr)."""
  file = sys.stderr if file is None else file
  with tqdm.external_write_mode(file=file):
    file.write(text)
    file.flush()


def warn(message: str) -> None:
  """One 'warning: <message>' line on stderr, above any progress bar."""
  write_above_progress_bars(f"warning: {message}\n")


class AboveProgressBars(logging.Handler):
  """Hands each record to `inner` (a console handler) with the progress bars cleared, so a log
  line never lands inside a bar's line."""

  def __init__(self, inner: logging.Handler):
    super().__init__()
    self.inner = inner

  def emit(self, record: logging.LogRecord) -> None:
    with tqdm.external_write_mode(file=sys.stderr):
      self.inner.handle(record)

  def flush(self) -> None:
    self.inner.flush()
