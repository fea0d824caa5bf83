"""faceblur's one entry point: parses flags, runs the job the config names.

  python main.py --config=configs/<job>.py --workdir=DIR [--config.key=value ...]
"""

import logging as python_logging
import os
import pathlib
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "A config file from configs/.", lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, logs, samples and reports go.")
flags.mark_flags_as_required(["config"])


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with a bad `--config.key=value` reported in one line, not a traceback."""
  for arg in argv[1:]:
    if arg.startswith("--config="):
      path = pathlib.Path(arg.split("=", 1)[1].split(":", 1)[0])
      if not path.is_file():
        print(f"error: --config: no such config file {path}", file=sys.stderr, flush=True)
        sys.exit(2)
  try:
    return FLAGS(argv)
  except flags.Error as error:
    message = str(error)
    if "Traceback (most recent call last)" in message:  # the config file's get_config raised
      reason = message.strip().splitlines()[-1].split(": ", 1)[-1]
      print(f"error: --config: {reason}", file=sys.stderr, flush=True)
      sys.exit(2)
  except (AttributeError, KeyError, TypeError, ValueError) as error:
    message = str(error.args[0] if error.args else error)
  message = " ".join(re.sub(r"\\n|\\|'", " ", message).split())
  print(f"error: bad flag or config override: {message}", file=sys.stderr, flush=True)
  sys.exit(2)


def _from_orbax(record: python_logging.LogRecord) -> bool:
  return "/orbax/" in record.pathname.replace("\\", "/")


def _without_orbax_traceback(record: python_logging.LogRecord) -> bool:
  """orbax logs a full traceback for each stage of a failed background save (a full disk
  gives three); the one-line error main prints names the step and the reason already."""
  if _from_orbax(record):
    record.exc_info, record.exc_text = None, None
  return True


_FACEBLUR_SOURCES = os.path.join(os.path.dirname(os.path.realpath(__file__)), "faceblur", "")


class _LogFile(python_logging.Handler):
  """Appends records to `<workdir>/log.txt`, next to a training stage's own lines. Opened per
  record (they are few) and never an error: a workdir that cannot be written is reported by
  the job in one line."""

  def __init__(self, path: pathlib.Path):
    super().__init__()
    self.path = path
    self.setFormatter(logging.PythonFormatter())

  def emit(self, record: python_logging.LogRecord) -> None:
    try:
      line = self.format(record)
      self.path.parent.mkdir(parents=True, exist_ok=True)
      with open(self.path, "a") as log:
        log.write(line + "\n")
    except (OSError, ValueError):
      pass


class _ConsoleFormatter(python_logging.Formatter):
  """faceblur's own warnings (a skipped file) as one 'warning: ...' line, as the ones it
  prints; anything else in absl's format."""

  def __init__(self, fallback: python_logging.Formatter | None):
    super().__init__()
    self.fallback = fallback or logging.PythonFormatter()

  def format(self, record: python_logging.LogRecord) -> str:
    if os.path.realpath(record.pathname).startswith(_FACEBLUR_SOURCES) and not record.exc_info:
      return f"{record.levelname.lower()}: {record.getMessage()}"
    return self.fallback.format(record)


def _for_the_console(record: python_logging.LogRecord) -> bool:
  """faceblur's own records and other libraries' errors, except orbax's and asyncio's at any
  level: faceblur reports every checkpoint failure itself, in one line (a damaged checkpoint's
  `Failed to json parse` record from orbax even quotes the whole file)."""
  if record.name == "asyncio" or _from_orbax(record):
    return False
  return record.name != "absl" or record.levelno >= python_logging.ERROR


def _quiet_console(workdir: str | None) -> None:
  """The console gets faceblur's lines and real errors, not the libraries' chatter: orbax
  (through absl) warns about routine things ('Given directory is read only', 'read_only=True,
  setting save_interval_steps=0') on every inference load. What the console does not show goes
  to `<workdir>/log.txt` when there is a workdir; `--verbosity` shows everything as before."""
  absl_logger = python_logging.getLogger("absl")
  absl_logger.addFilter(_without_orbax_traceback)
  console = logging.get_absl_handler()
  console.addFilter(_for_the_console)
  console.setFormatter(_ConsoleFormatter(console.python_handler.formatter))
  if workdir:
    log_file = _LogFile(pathlib.Path(workdir) / "log.txt")
    absl_logger.addHandler(log_file)
    python_logging.getLogger("asyncio").addHandler(log_file)


def _console_above_progress_bars() -> None:
  """Log records reach the console through `AboveProgressBars`: a warning logged while a
  progress bar is drawn gets a line of its own instead of landing inside the bar's."""
  from faceblur.console import AboveProgressBars  # noqa: PLC0415

  root, console = python_logging.getLogger(), logging.get_absl_handler()
  if console in root.handlers:
    root.removeHandler(console)
    root.addHandler(AboveProgressBars(console))


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    _quiet_console(FLAGS.workdir)
  _console_above_progress_bars()
  from faceblur import jobs  # noqa: PLC0415 — flag parsing and --help stay fast
  from faceblur.errors import FaceblurError, Interrupted, StorageError  # noqa: PLC0415

  try:
    jobs.run(FLAGS.config, FLAGS.workdir)
  except Interrupted as error:  # SIGINT/SIGTERM: the work so far is saved; says how to resume
    print(error, file=sys.stderr, flush=True)
    sys.exit(error.exit_code)
  except KeyboardInterrupt:  # Ctrl-C outside a training loop or synthesis: no step to save
    print("interrupted; nothing in progress was saved, run the same command to redo it",
          file=sys.stderr, flush=True)
    sys.exit(130)
  except FaceblurError as error:
    print(f"error: {error}", file=sys.stderr, flush=True)
    if isinstance(error, StorageError):
      # A checkpoint folder that could not be created leaves orbax's other writer threads
      # waiting for it for 5 minutes before the interpreter may exit: do not wait for them.
      sys.stdout.flush()
      os._exit(1)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
