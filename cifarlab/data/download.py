"""Fetching a dataset file into a chosen folder with Keras's own downloader.

A failed download leaves the disk as it found it: no partial or corrupt file, and
none of the folders it had to create (a mistyped ``dataset.data_dir`` stays absent).
"""

from __future__ import annotations

from pathlib import Path

from cifarlab.errors import DataError


def download(fname: str, origin: str, folder: Path, file_hash: str | None = None) -> Path:
    """Download ``origin`` to ``folder/fname`` (kept as a cache) and return its path."""
    from keras.utils import get_file  # imported here: Keras pulls in TensorFlow

    folder = Path(folder).expanduser().resolve()
    target = folder / fname
    created = _missing_folders(folder)
    had_file = target.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # An absolute cache_subdir makes get_file store the file exactly there.
        path = get_file(
            fname=fname,
            origin=origin,
            file_hash=file_hash,
            cache_dir=str(folder),
            cache_subdir=str(folder),
        )
    except BaseException as exc:  # an interrupt too leaves nothing behind
        _undo(target if not had_file else None, created)
        if not isinstance(exc, Exception):
            raise
        # Network, permission or hash failures all read the same to a user.
        raise DataError(
            f"could not download {origin} to {target}: {_reason(exc, origin)}; "
            f"copy {fname} into {folder} by hand or set dataset.data_dir=<folder that has it>"
        ) from exc
    return Path(path)


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _undo(new_file: Path | None, created: list[Path]) -> None:
    """Remove what a failed download left: a file it wrote (e.g. one failing its hash) and its new, empty folders."""
    if new_file is not None:
        new_file.unlink(missing_ok=True)
    for folder in created:
        try:
            folder.rmdir()
        except OSError:  # not empty: something else put a file there meanwhile
            return


def _reason(exc: Exception, origin: str) -> str:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return reason.replace(f"URL fetch failure on {origin}: None -- ", "").replace(
        f"URL fetch failure on {origin}: ", ""
    )
