"""Fetching a dataset file into a chosen folder with Keras's own downloader."""

from __future__ import annotations

from pathlib import Path

from cifarlab.errors import DataError


def download(fname: str, origin: str, folder: Path, file_hash: str | None = None) -> Path:
    """Download ``origin`` to ``folder/fname`` (kept as a cache) and return its path."""
    from keras.utils import get_file  # imported here: Keras pulls in TensorFlow

    folder = Path(folder).expanduser().resolve()
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
    except Exception as exc:  # network, permission or hash failures all read the same to a user
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(
            f"could not download {origin} to {folder / fname}: {reason}; "
            f"copy {fname} into {folder} by hand or set dataset.data_dir=<folder that has it>"
        ) from exc
    return Path(path)
