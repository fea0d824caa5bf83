"""Writing to disk, the low-level part every layer shares: one-line storage errors.

A full, read-only or mistyped folder is found before minutes of compiling (`check_writable`),
and a write that fails later names the OS's reason (`os_reason`) instead of a traceback.
"""

import os
import pathlib
import re
import tempfile

from faceblur.errors import StorageError


def os_reason(error: BaseException) -> str:
  """The OS's words for a failed write, for one-line errors; tensorstore (orbax) reports the
  errno inside a ValueError's text."""
  if isinstance(error, OSError) and error.strerror:
    return error.strerror
  code = re.search(r"os_error_code='?(\d+)", str(error))
  if code:
    return os.strerror(int(code.group(1)))
  text = " ".join(str(error).split())[:200]
  return f"{type(error).__name__}: {text}" if text else type(error).__name__


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
