"""User-facing errors.

Every problem a user can cause (a bad file, a wrong config key, a missing checkpoint) is
raised as a `FaceblurError` whose message is one line naming the culprit. `main.py` prints
that line and exits non-zero instead of showing a traceback from deep inside JAX.
"""

import os
import re


class FaceblurError(Exception):
  """An error the user can fix; its message is one line naming the file, key or value."""


class DataError(FaceblurError):
  """A data source is missing, empty, unreadable or inconsistent."""


class ImageReadError(DataError):
  """One image file cannot be decoded."""


class ConfigError(FaceblurError):
  """A config key is unknown, missing or has an unusable value."""


class CheckpointError(FaceblurError):
  """A checkpoint is missing or belongs to another network or config."""


class StorageError(FaceblurError):
  """A folder cannot be created or written: full disk, read-only, no permission, not a folder."""


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
