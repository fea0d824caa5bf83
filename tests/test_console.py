"""Warnings and log lines get a line of their own above a progress bar, never inside its line
(the deblur job's bar over a folder with unreadable files: tests/end_to_end/test_bad_inputs.py)."""

import io
import logging
import re
import sys

from tqdm import tqdm

from faceblur.console import AboveProgressBars, warn

# A warning glued to whatever was on the line before it: the bar's text, say.
INSIDE_A_LINE = re.compile(r"[^\r\n]warning:")


def test_a_warning_is_written_above_the_progress_bar(monkeypatch):
  stderr = io.StringIO()
  monkeypatch.setattr(sys, "stderr", stderr)
  with tqdm(total=3, desc="deblur", file=sys.stderr, mininterval=0) as bar:
    bar.update(1)
    warn("skipped a.png: not an image")
    bar.update(1)
  text = stderr.getvalue()
  assert "warning: skipped a.png: not an image\n" in text
  assert not INSIDE_A_LINE.search(text), repr(text)
  assert "2/3" in text.split("warning:")[1]  # the bar is drawn again below it


def test_a_log_record_is_written_above_the_progress_bar(monkeypatch):
  stderr = io.StringIO()
  monkeypatch.setattr(sys, "stderr", stderr)
  console = logging.StreamHandler(stderr)
  console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
  logger = logging.getLogger("faceblur.test_console")
  logger.propagate = False
  logger.addHandler(AboveProgressBars(console))
  try:
    with tqdm(total=3, desc="synthesis", file=sys.stderr, mininterval=0) as bar:
      bar.update(1)
      logger.warning("skipped b.png: truncated")
      bar.update(1)
  finally:
    logger.handlers.clear()
  text = stderr.getvalue()
  assert "WARNING: skipped b.png: truncated\n" in text
  assert not re.search(r"[^\r\n]WARNING:", text), repr(text)
