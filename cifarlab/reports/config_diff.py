"""What differs between runs: the config keys, the data and the code, before any statistics.

Runs record their whole config as params (about a hundred keys); a comparison
first shows only the keys whose values differ, as MLflow's "show diff only" and
DVC's ``exp diff`` do, then the data digests and code state when those differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cifarlab.tracking import queries

# Params that say where things are, or that follow from other keys (model/num_params): not settings.
_NOT_SETTINGS = ("paths.", "tracking.", "hydra.", "dataset.data_dir", "dataset.download")
MISSING = "—"


def differences(runs: Sequence[Any]) -> list[tuple[str, list[str]]]:
    """(what, one value per run) for every config key, data digest and code state that is not the same."""
    rows = [(key, values) for key, values in _settings(runs).items() if len(set(values)) > 1]
    for context in ("train", "test"):
        digests = [queries.dataset_digest(run, context) or MISSING for run in runs]
        if len(set(digests)) > 1:
            rows.append((f"{context} data digest", digests))
    for tag in ("git_commit", "git_dirty"):
        values = [run.data.tags.get(tag, MISSING) for run in runs]
        if len(set(values)) > 1:
            rows.append((f"code: {tag}", values))
    return rows


def _settings(runs: Sequence[Any]) -> dict[str, list[str]]:
    keys = sorted({key for run in runs for key in run.data.params})
    return {
        key: [run.data.params.get(key, MISSING) for run in runs]
        for key in keys
        if "/" not in key and not key.startswith(_NOT_SETTINGS)
    }


def differences_markdown(runs: Sequence[Any], rows: list[tuple[str, list[str]]]) -> list[str]:
    """A Markdown section: one row per difference, one column per run (by short id)."""
    header = ["## What differs", ""]
    if not rows:
        return [*header, "Nothing: the runs share every setting, their data and their code.", ""]
    ids = [run.info.run_id[:8] for run in runs]
    lines = [f"| setting | {' | '.join(ids)} |", "|---" * (len(ids) + 1) + "|"]
    lines += [f"| `{key}` | {' | '.join(_cell(v) for v in values)} |" for key, values in rows]
    return [*header, *lines, ""]


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")[:80]
