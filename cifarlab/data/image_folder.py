"""Your own images: one sub-folder per class, optionally split into train/ and test/.

Layouts: ``cat/ dog/`` (a stratified fifth is held out for test); ``train/cat/
train/dog/ test/cat/ ...``; class folders beside ``test/`` (``cat/ dog/ test/``);
or ``test/`` alone, which has no training images and is all test (for evaluate).
``train`` and ``test`` are never class names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cifarlab.data.base import DATASETS, RawData, option, stratified_split
from cifarlab.errors import ConfigError, DataError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
MODES = {1: "L", 3: "RGB"}
TEST_FRACTION = 0.2  # held out when there is no test/ folder
SPLIT_FOLDERS = ("train", "test")


def _class_folders(root: Path, skip: tuple[str, ...] = ()) -> list[Path]:
    return sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in skip
    )


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in EXTENSIONS and not p.name.startswith(".")
    )  # fmt: skip


def _load_image(path: Path, size: int, mode: str) -> np.ndarray:
    from PIL import Image  # only this loader needs Pillow

    try:
        with Image.open(path) as opened:
            img = opened.convert(mode)  # a GIF gives its first frame
            if img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{path}: not a readable image ({reason})") from exc


def _read_tree(
    root: Path, size: int, mode: str, known: list[str] | None = None, skip: tuple[str, ...] = ()
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images and labels under ``root`` (but not its ``skip`` folders); labels index ``known``
    (or the sorted folder names)."""
    folders = _class_folders(root, skip)
    if not folders:
        raise DataError(
            f"{root} has no class folders; expected one sub-folder of images per class, "
            f"e.g. {root / 'cat' / '0001.png'}"
        )
    names = known if known is not None else [f.name for f in folders]
    unknown = [f.name for f in folders if f.name not in names]
    if unknown:
        raise DataError(f"{root}: classes {unknown} are not among the training classes {names}")
    images, labels = [], []
    for folder in folders:
        files = _image_files(folder)
        if not files:
            raise DataError(
                f"{folder} holds no images; expected {'/'.join(EXTENSIONS)} files for class {folder.name!r}"
            )
        images += [_load_image(f, size, mode) for f in files]  # PIL decodes one file at a time
        labels += [names.index(folder.name)] * len(files)
    x = np.stack(images)
    return (x[..., None] if x.ndim == 3 else x), np.asarray(labels, dtype=np.int64), names


def _no_images(size: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """An empty training split, shaped like the test images."""
    return np.empty((0, size, size, len(mode)), dtype=np.uint8), np.empty((0,), dtype=np.int64)


@DATASETS.register("image_folder")
def load_image_folder(cfg: Any, data_dir: Path) -> RawData:
    """Class folders in ``data_dir`` (or under ``train/`` and ``test/``), resized to ``image_size``."""
    data_dir = Path(data_dir)
    size, channels = int(option(cfg, "image_size", 32)), option(cfg, "channels", 3)
    if channels not in MODES:
        raise ConfigError("dataset.channels", channels, "use 1 (grayscale) or 3 (RGB)")
    if not data_dir.is_dir():
        raise DataError(
            f"{data_dir} is not a folder; set dataset.data_dir=<folder with one "
            "sub-folder of images per class>"
        )
    mode = MODES[channels]
    test_dir = data_dir / "test"
    if (data_dir / "train").is_dir():
        x, y, names = _read_tree(data_dir / "train", size, mode)
    elif test_dir.is_dir() and not _class_folders(data_dir, SPLIT_FOLDERS):
        x_test, y_test, names = _read_tree(test_dir, size, mode)  # test/ alone: nothing to train on
        return RawData(*_no_images(size, mode), x_test, y_test, names)
    else:
        x, y, names = _read_tree(data_dir, size, mode, skip=SPLIT_FOLDERS)
    if test_dir.is_dir():
        x_test, y_test, _ = _read_tree(test_dir, size, mode, known=names)
        return RawData(x, y, x_test, y_test, names)
    seed = int(option(cfg, "split_seed", 0))
    x_train, y_train, x_test, y_test = stratified_split(x, y, TEST_FRACTION, seed)
    return RawData(x_train, y_train, x_test, y_test, names)
