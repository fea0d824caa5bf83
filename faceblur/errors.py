"""User-facing errors.

Every problem a user can cause (a bad file, a wrong config key, a missing checkpoint) is
raised as a `FaceblurError` whose message is one line naming the culprit. `main.py` prints
that line and exits non-zero instead of showing a traceback from deep inside JAX.
"""


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



class Interrupted(FaceblurError):
  """SIGINT or SIGTERM stopped a job after saving what it had; `main.py` prints the message
  without the 'error:' prefix and exits 128 + the signal number, as a shell does."""

  def __init__(self, message: str, exit_code: int):
    super().__init__(message)
    self.exit_code = exit_code
