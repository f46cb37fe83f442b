"""Class names saved beside a ``.keras`` checkpoint, so a checkpoint alone can name its predictions.

``best.keras`` gets ``best.classes.json`` next to it: a JSON list, index = class id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path


def class_names_path(checkpoint: Path) -> Path:
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".classes.json")


def save_class_names(checkpoint: Path, names: Sequence[str]) -> Path:
    path = class_names_path(checkpoint)
    path.write_text(json.dumps([str(n) for n in names]) + "\n", encoding="utf-8")
    return path


def load_class_names(checkpoint: Path) -> list[str] | None:
    """The names saved beside ``checkpoint``, or None when there are none (or they are unreadable)."""
    path = class_names_path(checkpoint)
    try:
        names = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return [str(n) for n in names] if isinstance(names, list) else None
