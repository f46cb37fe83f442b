"""Errors a user can fix: each carries one line naming the key, the value and the fix."""

from __future__ import annotations

import errno


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


class StoreError(CifarlabError):
    """An MLflow store that cannot be used as it is: damaged, or from another MLflow version."""


# SQLite reports a full disk and a read-only file as messages, not errno values.
_SQLITE_FULL = ("database or disk is full",)
_SQLITE_READ_ONLY = ("attempt to write a readonly database", "unable to open database file")


def environment_failure(err: BaseException) -> str | None:
    """One line for a failure of the machine rather than of cifarlab (a full disk, a read-only
    or forbidden folder), found anywhere in ``err``'s chain of causes; None for anything else."""
    for cause in _causes(err):
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return (
                f"no space left on the device holding {_where(cause)}; free some space (or set "
                "paths.mlruns_dir=... to another disk) and rerun the same command: it resumes"
            )
        if isinstance(cause, OSError) and cause.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return (
                f"cannot write {_where(cause)} ({cause.strerror}); make it writable (or run from a "
                "writable folder, or set paths.mlruns_dir=...) and rerun the same command: it resumes"
            )
        text = str(cause).lower()
        if any(marker in text for marker in _SQLITE_FULL):
            return (
                "the MLflow store's disk is full (SQLite: database or disk is full); free some space "
                "and rerun the same command: it resumes"
            )
        if any(marker in text for marker in _SQLITE_READ_ONLY):
            return (
                "the MLflow store cannot be written (SQLite: a read-only database or folder, or one it "
                "cannot open); make mlruns/ writable (or set tracking.uri=...) and rerun the same command: "
                "it resumes"
            )
    return None


def _causes(err: BaseException) -> list[BaseException]:
    """``err`` and what it was raised from or during, outermost first (each once)."""
    chain: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _where(err: OSError) -> str:
    return repr(err.filename) if err.filename else "the run's files (mlruns/ and the working folder)"
