"""``cifarlab compare`` behind its options: runs' stored test predictions compared, written, printed and recorded.

From each run's ``reports/test_predictions.npz`` (read from the store through
``cifarlab.tracking.queries``): the statistics of ``cifarlab.reports.comparison``,
``comparison.md`` and a heatmap per pair in ``out``, and a new run holding them in
the first run's experiment (``cifarlab.tracking.runs.record_run``), tagged with
the runs it compares. Runs must have been tested on the same images.
"""

from __future__ import annotations

import csv
import itertools
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifarlab.errors import CifarlabError
from cifarlab.inference.labels import run_class_names
from cifarlab.reports.comparison import (
    PairComparison,
    RunResult,
    compare_pair,
    comparison_markdown,
    confusion_difference_figure,
    wilson_interval,
)
from cifarlab.reports.config_diff import differences, differences_markdown
from cifarlab.reports.figures import save_figure
from cifarlab.reports.writer import read_predictions
from cifarlab.tracking import queries, runs
from cifarlab.tracking.store import connect
from cifarlab.tracking.target import resolve_uri

PREDICTIONS = "reports/test_predictions.npz"
RANK_METRIC = "val/best_accuracy"
LEADERBOARD = "leaderboard.csv"  # what a sweep's parent run logs (cifarlab.sweeps.sweep_report)


@dataclass
class LoadedRun:
    run: Any
    result: RunResult
    test_digest: str | None


def leaderboard_run_ids(parent_id: str, scratch: Path) -> list[str]:
    """The run ids in a sweep's ``leaderboard.csv`` (it lists the earlier runs skipped jobs reused, too)."""
    local = queries.download_run_artifact(parent_id, LEADERBOARD, str(scratch / parent_id))
    if local is None or not local.is_file():
        return []
    with local.open(newline="", encoding="utf-8") as handle:
        return [row["run_id"] for row in csv.DictReader(handle) if row.get("run_id")]


def sweep_children(client: Any, parent_id: str, top: int, scratch: Path) -> list[str]:
    """The ``top`` finished jobs of a sweep (its children and the runs it reused), best ``val/best_accuracy`` first."""
    parent = queries.get_run(client, parent_id, key="sweep")
    found = {r.info.run_id: r for r in queries.child_runs(client, parent.info.experiment_id, parent_id)}
    for run_id in leaderboard_run_ids(parent_id, scratch):
        if run_id not in found:
            found[run_id] = queries.get_run(client, run_id, key="sweep")
    ranked = sorted(
        (r for r in found.values() if r.info.status == "FINISHED" and RANK_METRIC in r.data.metrics),
        key=lambda r: -r.data.metrics[RANK_METRIC],
    )
    return [r.info.run_id for r in ranked[:top]]


def run_ids(client: Any, options: Any, scratch: Path) -> list[str]:
    """The runs to compare, from ``runs=`` or ``sweep=``; two or more, each once."""
    if bool(options.runs) == bool(options.sweep):
        raise CifarlabError(
            f"runs={options.runs!r} sweep={options.sweep!r}: give one of them, "
            "e.g. runs=<id>,<id> or sweep=<parent run id>"
        )
    if options.sweep and int(options.top) < 2:
        raise CifarlabError(f"top={options.top!r} is too few to compare; give top=2 or more")
    ids = (
        [i.strip() for i in str(options.runs).split(",") if i.strip()]
        if options.runs
        else sweep_children(client, str(options.sweep), int(options.top), scratch)
    )
    ids = list(dict.fromkeys(ids))
    if len(ids) < 2:
        if options.runs:
            raise CifarlabError(
                f"runs={options.runs!r} names {len(ids)} run; a comparison needs at least 2 "
                "different runs, e.g. runs=<id>,<id>"
            )
        raise CifarlabError(
            f"sweep={options.sweep!r} has {len(ids)} finished child run(s) with {RANK_METRIC}; "
            "give a sweep's parent run id with 2 or more finished jobs, or runs=<id>,<id>"
        )
    return ids


def load_run(client: Any, run_id: str, scratch: Path) -> LoadedRun:
    """A run and its stored test predictions; one line when it has none."""
    run = queries.get_run(client, run_id, key="runs")
    local = queries.download_run_artifact(run_id, PREDICTIONS, str(scratch / run_id))
    if local is None or not local.is_file():
        raise CifarlabError(
            f"runs={run_id!r} has no stored test predictions ({PREDICTIONS}); "
            "compare runs trained by this cifarlab version, or retrain it"
        )
    y_true, probs = read_predictions(local)
    name = run.info.run_name or run_id[:8]
    result = RunResult(run_id, name, y_true, np.argmax(probs, axis=1))
    return LoadedRun(run, result, queries.dataset_digest(run, "test"))


def check_same_test_data(first: LoadedRun, other: LoadedRun) -> None:
    """Both runs were tested on the same images, or one line saying how they differ."""
    a, b = first.result, other.result
    if first.test_digest and other.test_digest and first.test_digest != other.test_digest:
        why = f"test data digests differ ({first.test_digest} vs {other.test_digest})"
    elif a.y_true.shape != b.y_true.shape or not np.array_equal(a.y_true, b.y_true):
        why = f"their test labels differ ({a.total} vs {b.total} images)"
    else:
        return
    raise CifarlabError(
        f"runs={a.run_id},{b.run_id}: the runs were tested on different data: {why}; "
        "compare runs tested on the same test split (same dataset and settings)"
    )


def class_names_for(loaded: LoadedRun, n_classes: int) -> list[str]:
    """The first run's class names (its reports), else class_0, class_1, ..."""
    names = run_class_names(loaded.result.run_id)
    return names if names and len(names) == n_classes else [f"class_{i}" for i in range(n_classes)]


def n_classes(loaded: Sequence[LoadedRun]) -> int:
    return 1 + max(int(max(r.result.y_true.max(initial=0), r.result.y_pred.max(initial=0))) for r in loaded)


def write_outputs(
    out: Path,
    results: list[RunResult],
    pairs: list[PairComparison],
    names: list[str],
    what_differs: list[str],
) -> list[Path]:
    """comparison.md (what differs, then the statistics) and one heatmap per pair in ``out``; the paths."""
    out.mkdir(parents=True, exist_ok=True)
    figures = [f"confusion_difference_{p.a.short}_{p.b.short}.png" for p in pairs]
    paths = [save_figure(confusion_difference_figure(p, names), out / f) for p, f in zip(pairs, figures)]
    report = out / "comparison.md"
    report.write_text(comparison_markdown(results, pairs, figures, what_differs), encoding="utf-8")
    return [report, *paths]


def comparison_metrics(results: list[RunResult], pairs: list[PairComparison]) -> dict[str, float]:
    """Metrics of the comparison run: the first pair's plainly, every pair and run by short id."""
    metrics: dict[str, float] = {}
    for r in results:
        low, high = wilson_interval(r.correct, r.total)
        metrics.update(
            {
                f"accuracy/{r.short}": r.accuracy,
                f"accuracy_ci_low/{r.short}": low,
                f"accuracy_ci_high/{r.short}": high,
            }
        )
    for i, p in enumerate(pairs):
        values = {
            "mcnemar_p": p.p_value,
            "mcnemar_b": p.discordant_b,
            "mcnemar_c": p.discordant_c,
            "accuracy_delta": p.accuracy_delta,
        }
        prefix = "" if i == 0 else f"{p.a.short}_{p.b.short}/"
        metrics.update({f"{prefix}{k}": float(v) for k, v in values.items()})
    return metrics


def note(loaded: list[LoadedRun]) -> str:
    links = ", ".join(
        f"[{r.result.name} ({r.result.short})](#/experiments/{r.run.info.experiment_id}/runs/"
        f"{r.result.run_id})"
        for r in loaded
    )
    return f"Compares runs {links} on their stored test predictions (cifarlab compare)."


def log_comparison(client: Any, loaded: list[LoadedRun], metrics: dict[str, float], files: list[Path]) -> str:
    """A new run in the first run's experiment holding the comparison; FAILED if logging breaks."""
    ids = [r.result.run_id for r in loaded]
    tags = {
        "compared_runs": ",".join(ids),
        "mlflow.note.content": note(loaded),
        "cifarlab.command": "compare",
    }
    return runs.record_run(
        client,
        loaded[0].run.info.experiment_id,
        name="compare-" + "-".join(i[:8] for i in ids),
        tags=tags,
        metrics=metrics,
        files=files,
    )


def compare(options: Any) -> str | None:
    """Load, check, compare, write, print and log; the comparison run's id (None: configs only)."""
    client = connect(resolve_uri(options.tracking_uri, options.mlruns_dir))
    scratch = Path(tempfile.mkdtemp(prefix="cifarlab-compare-"))
    ids = run_ids(client, options, scratch / "sweep")
    if options.configs_only:
        compared = [queries.get_run(client, run_id, key="runs") for run_id in ids]
        print("\n".join(differences_markdown(compared, differences(compared))))
        return None
    loaded = [load_run(client, run_id, scratch / "downloads") for run_id in ids]
    for other in loaded[1:]:
        check_same_test_data(loaded[0], other)
    names = class_names_for(loaded[0], n_classes(loaded))
    results = [r.result for r in loaded]
    pairs = [
        compare_pair(a, b, names, int(options.top_errors)) for a, b in itertools.combinations(results, 2)
    ]
    out = Path(options.out) if options.out else scratch / "comparison"
    compared = [r.run for r in loaded]
    files = write_outputs(out, results, pairs, names, differences_markdown(compared, differences(compared)))
    print(files[0].read_text(encoding="utf-8"))
    run_id = log_comparison(client, loaded, comparison_metrics(results, pairs), files)
    print(f"cifarlab: wrote {out}")
    experiment = queries.experiment_name(client, loaded[0].run.info.experiment_id)
    print(f"cifarlab: comparison run {run_id} in experiment '{experiment}'")  # as every command names it
    return run_id
