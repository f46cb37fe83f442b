"""Where cifarlab's config tree lives, whichever way it was installed.

A checkout or editable install reads the top-level ``conf/`` and ``experiments/``
beside the package; a wheel carries copies inside the package (``_conf``,
``_experiments``; see pyproject.toml). Hydra is given an absolute path, since its
relative ``config_path`` cannot climb out of an installed package.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # cifarlab/, this file being cifarlab/config/locations.py


def _first_existing(*candidates: Path) -> Path:
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"cifarlab's config folder was not found in any of: {', '.join(map(str, candidates))}; "
        "reinstall with `pip install -e .` from a checkout or `pip install cifarlab`"
    )


def conf_dir() -> Path:
    return _first_existing(_PACKAGE_DIR / "_conf", _PACKAGE_DIR.parent / "conf")


def experiments_dir() -> Path:
    return _first_existing(_PACKAGE_DIR / "_experiments", _PACKAGE_DIR.parent / "experiments")


def checkout_dir() -> Path | None:
    """The git checkout cifarlab runs from, if any (for the git-commit tag)."""
    root = _PACKAGE_DIR.parent
    return root if (root / ".git").exists() else None
