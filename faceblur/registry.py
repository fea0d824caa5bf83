"""Choices by name: jobs, evaluation methods, data sources and detectors.

A config names what to run (`config.job`, `methods.<name>.kind`, `data.*.kind`,
`config.detector`); each of those names is looked up in one `Registry`, so adding a choice is
one decorated function next to its siblings, and a mistyped name fails in one line that lists
the choices.
"""

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from faceblur.errors import ConfigError

T = TypeVar("T")
F = TypeVar("F", bound=Callable)


class Registry(Generic[T]):
  """Entries by name, in registration order.

  `unknown` is the one-line error for a name that is not registered, formatted with `name`
  (the name asked for), `choices` (the registered names, comma-separated) and any keyword
  given to `get`, e.g. `"config.job={name!r} is not one of {choices}"`. With `entry`, each
  decorated function is stored as `entry(function, **fields)` (fields given to `register`),
  for choices that carry more than a function, such as whether a job needs a workdir.
  """

  def __init__(self, unknown: str, *, entry: Callable[..., T] | None = None):
    self.unknown = unknown
    self._entry = entry
    self._entries: dict[str, T] = {}

  def register(self, name: str, **fields) -> Callable[[F], F]:
    """Decorator: `@registry.register("srn")` adds the function (or class) under `name`."""
    if fields and self._entry is None:
      raise TypeError(f"fields {sorted(fields)} given for {name!r}, but entries are plain")

    def decorate(function: F) -> F:
      self.add(name, self._entry(function, **fields) if self._entry else function)
      return function

    return decorate

  def add(self, name: str, entry: T) -> None:
    if name in self._entries:
      raise ValueError(f"{name!r} is registered twice")
    self._entries[name] = entry

  def get(self, name: str, **context) -> T:
    """The entry of `name`; a `ConfigError` listing the choices if there is none."""
    if name not in self._entries:
      raise ConfigError(self.unknown.format(name=name, choices=", ".join(self._entries),
                                            **context))
    return self._entries[name]

  def names(self) -> tuple[str, ...]:
    return tuple(self._entries)

  def __contains__(self, name: object) -> bool:
    return name in self._entries

  def __iter__(self) -> Iterator[str]:
    return iter(self._entries)
