"""Your images for a model: finding the files, then reading them into the model's shape.

Images are converted to the model's channels (RGB or grayscale; transparent
pixels become white) and resized to its height and width; each kind of change
is reported as one warning line naming the files.
"""

from __future__ import annotations

import glob
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cifarlab.errors import CifarlabError, ConfigError, DataError, first_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def find_images(spec: str, key: str = "images") -> list[Path]:
    """An image file, every image under a folder (sorted, subfolders too), or a glob's matches."""
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise ConfigError(
                key,
                spec,
                "point it at PNG or JPEG files",
                problem="is a folder with no images (subfolders searched too)",
            )
        return found
    if any(ch in spec for ch in "*?["):
        found = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if found:
            return found
        raise ConfigError(
            key, spec, "check the pattern, e.g. images='photos/*.png'", problem="matches no files"
        )
    raise ConfigError(
        key, spec, "give an image file or a folder of PNG/JPEG images", problem="does not exist"
    )


def open_image(path: Path) -> Image.Image:
    """The decoded image, turned upright by its EXIF orientation; unreadable files fail in one line."""
    try:
        with Image.open(path) as img:
            img.load()
            return ImageOps.exif_transpose(img)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(
            f"images: {path} cannot be read as an image ({first_line(err)}); remove it or give PNG/JPEG files"
        ) from None


def to_mode(img: Image.Image, channels: int) -> Image.Image:
    """PIL image in the model's mode: ``L`` for 1 channel, ``RGB`` for 3; transparency becomes white."""
    mode = "L" if channels == 1 else "RGB"
    if img.mode == mode:
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        background.alpha_composite(img.convert("RGBA"))
        img = background
    return img.convert(mode)


def is_gray(img: Image.Image) -> bool:
    return img.mode in GRAY_MODES or (img.mode == "P" and img.palette is not None and img.palette.mode == "L")


def summarise(kind: str, groups: Mapping[str, list[str]]) -> list[str]:
    """One line per kind of change: ``resized 2 images from 20x20 to 16x16: a.png, b.png``."""
    lines = []
    for what, files in groups.items():
        shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        lines.append(f"{kind} {len(files)} image{'s' if len(files) != 1 else ''} {what}: {shown}")
    return lines


def fit_image(
    img: Image.Image, name: str, shape: tuple[int, int, int], changes: dict[str, dict[str, list[str]]]
) -> np.ndarray:
    """One image in the model's (height, width, channels); what was changed is noted under ``name``."""
    height, width, channels = shape
    if is_gray(img) != (channels == 1):
        change = "from grayscale to RGB" if channels == 3 else "from colour to grayscale"
        changes["converted"].setdefault(change, []).append(name)
    img = to_mode(img, channels)
    if img.size != (width, height):
        note = "" if img.width * height == img.height * width else " (aspect ratio not kept)"
        changes["resized"].setdefault(f"from {img.width}x{img.height} to {width}x{height}{note}", []).append(
            name
        )
        img = img.resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.uint8).reshape(height, width, channels)


def prepare_images(paths: Sequence[str | Path], input_shape: Sequence[int]) -> tuple[np.ndarray, list[str]]:
    """Read images into a uint8 array shaped ``(N, *input_shape)``, and warnings about what was changed."""
    height, width, channels = (int(d) for d in input_shape)
    if channels not in (1, 3):
        raise CifarlabError(
            f"the model takes {channels}-channel images; only 1 (grayscale) and 3 (RGB) are supported"
        )
    out = np.empty((len(paths), height, width, channels), dtype=np.uint8)
    changes: dict[str, dict[str, list[str]]] = {"resized": {}, "converted": {}}
    for i, path in enumerate(paths):
        out[i] = fit_image(open_image(Path(path)), Path(path).name, (height, width, channels), changes)
    return out, summarise("resized", changes["resized"]) + summarise("converted", changes["converted"])
