"""Errors a user can fix: each carries one line naming the key, the value and the fix."""

from __future__ import annotations


class CifarlabError(Exception):
    """A problem with the user's config, data or environment, reported as one line."""


class ConfigError(CifarlabError, ValueError):
    """A config value that is out of range or names something that does not exist."""

    def __init__(self, key: str, value: object, fix: str, problem: str = "is not valid") -> None:
        self.key, self.value, self.fix = key, value, fix
        super().__init__(f"{key}={value!r} {problem}; {fix}")


class DataError(CifarlabError, FileNotFoundError):
    """Data that is missing, truncated or in an unexpected format."""


class UnsafePickleError(DataError):
    """A pickled batch tried to load something a CIFAR batch never contains."""


def first_line(err: BaseException) -> str:
    """An exception's first line, for one-line error messages."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
