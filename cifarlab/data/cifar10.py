"""CIFAR-10 from the official python or binary layout, a folder or a tar.gz archive.

Batches may hold any number of images (the shared subset has 1017 per batch).
Python batches go through :mod:`cifarlab.data.safe_pickle`, never plain pickle.
"""

from __future__ import annotations

import io
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Optional

import numpy as np

from cifarlab.data.base import DATASETS, RawData, option
from cifarlab.data.download import download
from cifarlab.data.safe_pickle import safe_load
from cifarlab.errors import DataError

CLASS_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
ARCHIVE = "cifar-10-python.tar.gz"
ORIGIN = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
PIXELS = 32 * 32 * 3

# Where Keras's cifar10.load_data() leaves the archive: Keras 3.15 downloads it as
# cifar-10-batches-py-target_archive and extracts to cifar-10-batches-py-target/
# cifar-10-batches-py/; older Keras 3 used cifar-10-batches-py{_archive,/cifar-10-batches-py/};
# tf.keras 2 used cifar-10-batches-py.tar.gz and cifar-10-batches-py/.
_KERAS_PARENTS = ("cifar-10-batches-py-target", "cifar-10-batches-py")
_ARCHIVES = (
    ARCHIVE,
    "cifar-10-batches-py.tar.gz",
    "cifar-10-batches-py-target_archive",
    "cifar-10-batches-py_archive",
    "cifar-10-binary.tar.gz",
)

Reader = Callable[[str], Optional[bytes]]  # a batch's bytes, or None when it is absent


def _to_images(rows: np.ndarray) -> np.ndarray:
    """(N, 3072) rows of R, G, B planes -> (N, 32, 32, 3)."""
    return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _labels(values: Any, source: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{source}: labels are not integers ({exc})") from exc


def _parse_py_batch(raw: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    batch = safe_load(io.BytesIO(raw), source)
    if not isinstance(batch, dict):
        raise DataError(f"{source}: holds a {type(batch).__name__}; expected a dict with b'data'")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        keys = sorted(map(str, batch))
        raise DataError(f"{source}: has keys {keys}; expected b'data' and b'labels'")
    data, labels = np.asarray(batch["data"]), _labels(batch["labels"], source)
    if data.dtype != np.uint8 or data.size == 0 or data.size % PIXELS:
        raise DataError(
            f"{source}: data is {data.dtype} with {data.size} values; expected uint8 rows "
            f"of {PIXELS} (one 32x32 RGB image each)"
        )
    if len(labels) != data.size // PIXELS:
        raise DataError(f"{source}: {data.size // PIXELS} images but {len(labels)} labels")
    return _to_images(data.reshape(-1, PIXELS)), labels


def _parse_bin_batch(raw: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    records = np.frombuffer(raw, dtype=np.uint8)
    if records.size == 0 or records.size % (PIXELS + 1):
        raise DataError(
            f"{source}: {records.size} bytes is not a whole number of {PIXELS + 1}-byte "
            "records (1 label byte + 32x32x3 pixels); the file is truncated or not CIFAR-10"
        )
    records = records.reshape(-1, PIXELS + 1)
    return _to_images(records[:, 1:]), records[:, 0].astype(np.int64)


def _parse_py_meta(raw: bytes, source: str) -> list[str]:
    meta = safe_load(io.BytesIO(raw), source)
    names = meta.get(b"label_names", meta.get("label_names")) if isinstance(meta, dict) else None
    if not isinstance(names, list) or not names:
        raise DataError(f"{source}: expected a dict with a b'label_names' list")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def _parse_bin_meta(raw: bytes, source: str) -> list[str]:
    names = [line.strip() for line in raw.decode("utf-8", "replace").splitlines() if line.strip()]
    if not names:
        raise DataError(f"{source}: holds no class names; expected one a line")
    return names


@dataclass(frozen=True)
class _Layout:
    folder: str
    train: tuple[str, ...]
    test: str
    meta: str
    parse: Callable[[bytes, str], tuple[np.ndarray, np.ndarray]]
    parse_meta: Callable[[bytes, str], list[str]]

    @property
    def batches(self) -> tuple[str, ...]:
        return (*self.train, self.test)


PY = _Layout(
    "cifar-10-batches-py",
    tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test_batch",
    "batches.meta",
    _parse_py_batch,
    _parse_py_meta,
)
BIN = _Layout(
    "cifar-10-batches-bin",
    tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test_batch.bin",
    "batches.meta.txt",
    _parse_bin_batch,
    _parse_bin_meta,
)


def _read_batches(layout: _Layout, read: Reader, where: str) -> RawData:
    def batch(name: str) -> tuple[np.ndarray, np.ndarray]:
        raw = read(name)
        if raw is None:
            raise DataError(f"{where}/{name} is missing; expected {', '.join(layout.batches)} in {where}")
        return layout.parse(raw, f"{where}/{name}")

    xs, ys = zip(*(batch(name) for name in layout.train))
    x_test, y_test = batch(layout.test)
    meta = read(layout.meta)
    names = CLASS_NAMES if meta is None else layout.parse_meta(meta, f"{where}/{layout.meta}")
    return RawData(np.concatenate(xs), np.concatenate(ys), x_test, y_test, list(names))


def _folder_reader(folder: Path) -> Reader:
    return lambda name: (folder / name).read_bytes() if (folder / name).is_file() else None


def _find_folder(data_dir: Path) -> tuple[_Layout, Path] | None:
    """The first folder holding any batch: python layout first, then binary."""
    for layout in (PY, BIN):
        candidates = [data_dir, data_dir / layout.folder]
        if layout is PY:
            candidates += [data_dir / parent / PY.folder for parent in _KERAS_PARENTS]
        for folder in candidates:
            if any((folder / name).is_file() for name in layout.batches):
                return layout, folder
    return None


def _find_archive(data_dir: Path) -> Path | None:
    if data_dir.is_file():  # data_dir may name the archive itself
        return data_dir
    return next((data_dir / n for n in _ARCHIVES if (data_dir / n).is_file()), None)


def _read_archive(path: Path) -> RawData:
    """Read batches straight from the tarball; nothing is extracted to disk."""
    try:
        with tarfile.open(path, "r:*") as tar:
            members = {PurePosixPath(m.name).name: m for m in tar.getmembers() if m.isfile()}
            layout = next((lo for lo in (PY, BIN) if members.keys() & set(lo.batches)), None)
            if layout is None:
                raise DataError(
                    f"{path}: archive holds no CIFAR-10 batches; expected "
                    f"{PY.folder}/data_batch_1..5 and test_batch inside"
                )

            def read(name: str) -> bytes | None:
                member = members.get(name)
                stream = None if member is None else tar.extractfile(member)
                return None if stream is None else stream.read()

            return _read_batches(layout, read, f"{path}:{layout.folder}")
    except DataError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(
            f"{path}: not a readable tar.gz archive ({reason}); expected {ARCHIVE} from {ORIGIN}"
        ) from exc


def _not_found(data_dir: Path) -> DataError:
    return DataError(
        f"no CIFAR-10 data in {data_dir}: expected {PY.folder}/, {BIN.folder}/ or {ARCHIVE} "
        "there; set dataset.download=true to fetch it or dataset.data_dir=<folder> "
        "that holds one of them"
    )


@DATASETS.register("cifar10")
def load_cifar10(cfg: Any, data_dir: Path) -> RawData:
    """CIFAR-10 from ``data_dir``; downloads the python archive there when allowed."""
    data_dir = Path(data_dir)
    found = _find_folder(data_dir)
    if found is not None:
        layout, folder = found
        return _read_batches(layout, _folder_reader(folder), str(folder))
    archive = _find_archive(data_dir)
    if archive is not None:
        return _read_archive(archive)
    if not option(cfg, "download", False):
        raise _not_found(data_dir)
    return _read_archive(download(ARCHIVE, ORIGIN, data_dir, file_hash=SHA256))
