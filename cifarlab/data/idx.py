"""MNIST and Fashion-MNIST from IDX files (gzipped or not) or Keras's ``mnist.npz``.

Folder layouts follow Keras's own downloads: ``<datasets>/fashion-mnist/*.gz`` and
``<datasets>/mnist.npz``; an ``mnist/`` folder of IDX files works too.
"""

from __future__ import annotations

import gzip
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from cifarlab.data.base import DATASETS, RawData, option
from cifarlab.data.download import download
from cifarlab.errors import DataError

KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
MNIST_NPZ_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_GZ_NAMES = ", ".join(f"{name}.gz" for name in IDX_FILES)
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
MNIST_CLASSES = [str(d) for d in range(10)]
_UBYTE = 0x08  # IDX type code for unsigned bytes


def parse_idx(raw: bytes, source: str, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with ``ndim`` dimensions, sizes checked against its header."""
    header = 4 + 4 * ndim
    if len(raw) < header or raw[:2] != b"\0\0" or raw[2] != _UBYTE or raw[3] != ndim:
        found = raw[:4].hex() if len(raw) >= 4 else f"{len(raw)} bytes"
        raise DataError(
            f"{source}: IDX magic number is {found}; expected 0000080{ndim} "
            f"(unsigned bytes, {ndim} dimension(s))"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(
            f"{source}: {len(raw)} bytes but its header promises shape {shape} "
            f"({expected} bytes); the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{path}: not a readable gzip file ({reason})") from exc


def _idx_path(folder: Path, name: str) -> Path | None:
    return next((p for p in (folder / f"{name}.gz", folder / name) if p.is_file()), None)


def _find_idx_folder(candidates: list[Path]) -> Path | None:
    return next((f for f in candidates if any(_idx_path(f, n) for n in IDX_FILES)), None)


def read_idx_folder(folder: Path, class_names: list[str]) -> RawData:
    """The four standard IDX files in ``folder``."""
    arrays = []
    for name, ndim in zip(IDX_FILES, (3, 1, 3, 1)):
        path = _idx_path(folder, name)
        if path is None:
            raise DataError(f"{folder / name}.gz is missing; expected {_GZ_NAMES} in {folder}")
        arrays.append(parse_idx(_read_maybe_gzip(path), str(path), ndim))
    x_train, y_train, x_test, y_test = arrays
    for x, y, part in ((x_train, y_train, "train"), (x_test, y_test, "t10k")):
        if len(x) != len(y):
            raise DataError(f"{folder}: {part} has {len(x)} images but {len(y)} labels")
    return RawData(x_train[..., None], y_train, x_test[..., None], y_test, class_names)


def read_npz(path: Path, class_names: list[str]) -> RawData:
    """Keras's ``mnist.npz``: x_train, y_train, x_test, y_test; pickles refused."""
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise DataError(f"{path}: has no {', '.join(missing)}; expected arrays {', '.join(keys)}")
            x_train, y_train, x_test, y_test = (npz[k] for k in keys)
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{path}: not a readable .npz of plain arrays ({reason})") from exc
    # Keras stores (N, 28, 28); give it a channel axis
    x_train, x_test = (x[..., None] if x.ndim == 3 else x for x in (x_train, x_test))
    return RawData(x_train, y_train, x_test, y_test, class_names)


def _not_found(name: str, data_dir: Path, expected: str) -> DataError:
    return DataError(
        f"no {name} data in {data_dir}: expected {expected}; set dataset.download=true "
        "to fetch it or dataset.data_dir=<folder> that holds it"
    )


@DATASETS.register("fashion_mnist")
def load_fashion_mnist(cfg: Any, data_dir: Path) -> RawData:
    """Fashion-MNIST from ``<data_dir>/fashion-mnist/`` (or ``data_dir`` itself)."""
    data_dir = Path(data_dir)
    folder = _find_idx_folder([data_dir / "fashion-mnist", data_dir])
    if folder is None:
        if not option(cfg, "download", False):
            raise _not_found("Fashion-MNIST", data_dir, f"fashion-mnist/ with {_GZ_NAMES}")
        folder = data_dir / "fashion-mnist"
        for name in IDX_FILES:
            download(f"{name}.gz", f"{KERAS_ORIGIN}{name}.gz", folder)
    return read_idx_folder(folder, FASHION_CLASSES)


@DATASETS.register("mnist")
def load_mnist(cfg: Any, data_dir: Path) -> RawData:
    """MNIST from ``mnist.npz`` (Keras's download) or IDX files in ``mnist/`` or ``data_dir``."""
    data_dir = Path(data_dir)
    npz = data_dir if data_dir.is_file() else data_dir / "mnist.npz"
    if npz.is_file():
        return read_npz(npz, MNIST_CLASSES)
    folder = _find_idx_folder([data_dir / "mnist", data_dir])
    if folder is not None:
        return read_idx_folder(folder, MNIST_CLASSES)
    if not option(cfg, "download", False):
        raise _not_found("MNIST", data_dir, "mnist.npz or mnist/ with the four IDX .gz files")
    path = download("mnist.npz", f"{KERAS_ORIGIN}mnist.npz", data_dir, file_hash=MNIST_NPZ_SHA256)
    return read_npz(path, MNIST_CLASSES)
