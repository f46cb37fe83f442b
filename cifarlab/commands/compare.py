"""``python -m cifarlab compare``: is one run's test result really better than another's?

    python -m cifarlab compare runs=<run id>,<run id>[,...]
    python -m cifarlab compare sweep=<parent run id> top=3     # the sweep's best jobs by val/best_accuracy

From each run's stored test predictions (``reports/test_predictions.npz``): test
accuracy with a 95% Wilson interval; for each pair, McNemar's exact test with
the discordant counts it rests on, per-class precision and recall deltas, the
errors that changed most and a heatmap of the confusion-matrix difference.
Printed, written to ``out=`` (comparison.md and PNGs) and logged as a new MLflow
run in the first run's experiment, tagged with the runs it compares. Runs must
have been tested on the same images (same test dataset digest and labels).
"""

from __future__ import annotations

import csv
import itertools
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from cifarlab.config.arguments import exit_with_error, parse_options, usage, wants_help
from cifarlab.errors import CifarlabError
from cifarlab.inference.labels import run_class_names
from cifarlab.inference.model_store import connect, download_run_artifact, get_run, resolve_tracking_uri
from cifarlab.reports import read_predictions, save_figure
from cifarlab.reports.comparison import (
    PairComparison,
    RunResult,
    compare_pair,
    comparison_markdown,
    confusion_difference_figure,
    wilson_interval,
)
from cifarlab.sweeps.leaderboard import search_all

PROG = "cifarlab compare"
PREDICTIONS = "reports/test_predictions.npz"
RANK_METRIC = "val/best_accuracy"
LEADERBOARD = "leaderboard.csv"  # what a sweep's parent run logs (cifarlab.sweeps.parent)


@dataclass
class CompareOptions:
    runs: Optional[str] = None  # run ids, comma-separated (two or more)
    sweep: Optional[str] = None  # a sweep's parent run id: compare its best children instead
    top: int = 2  # with sweep=: how many of the best children
    out: Optional[str] = None  # folder for comparison.md and the PNGs; None: a new temporary folder
    top_errors: int = 5  # how many changed errors to put in words
    tracking_uri: Optional[str] = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<mlruns_dir>/mlflow.db
    mlruns_dir: str = "mlruns"


@dataclass
class LoadedRun:
    run: Any
    result: RunResult
    test_digest: str | None


def test_digest(run: Any) -> str | None:
    """The digest of the dataset a run logged with context ``test``, or None when it logged none."""
    for item in run.inputs.dataset_inputs if run.inputs else []:
        if any(t.key == "mlflow.data.context" and t.value == "test" for t in item.tags):
            return item.dataset.digest
    return None


def leaderboard_run_ids(parent_id: str, scratch: Path) -> list[str]:
    """The run ids in a sweep's ``leaderboard.csv`` (it lists the earlier runs skipped jobs reused, too)."""
    local = download_run_artifact(parent_id, LEADERBOARD, str(scratch / parent_id))
    if local is None or not local.is_file():
        return []
    with local.open(newline="", encoding="utf-8") as handle:
        return [row["run_id"] for row in csv.DictReader(handle) if row.get("run_id")]


def sweep_children(client: Any, parent_id: str, top: int, scratch: Path) -> list[str]:
    """The ``top`` finished jobs of a sweep (its children and the runs it reused), best ``val/best_accuracy`` first."""
    parent = get_run(client, parent_id, key="sweep")
    runs = {
        r.info.run_id: r
        for r in search_all(client, [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    }
    for run_id in leaderboard_run_ids(parent_id, scratch):
        runs.setdefault(run_id, client.get_run(run_id))
    ranked = sorted(
        (r for r in runs.values() if r.info.status == "FINISHED" and RANK_METRIC in r.data.metrics),
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
    run = get_run(client, run_id, key="runs")
    local = download_run_artifact(run_id, PREDICTIONS, str(scratch / run_id))
    if local is None or not local.is_file():
        raise CifarlabError(
            f"runs={run_id!r} has no stored test predictions ({PREDICTIONS}); "
            "compare runs trained by this cifarlab version, or retrain it"
        )
    y_true, probs = read_predictions(local)
    name = run.info.run_name or run_id[:8]
    return LoadedRun(run, RunResult(run_id, name, y_true, np.argmax(probs, axis=1)), test_digest(run))


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
    out: Path, results: list[RunResult], pairs: list[PairComparison], names: list[str]
) -> list[Path]:
    """comparison.md and one heatmap per pair in ``out``; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    figures = [f"confusion_difference_{p.a.short}_{p.b.short}.png" for p in pairs]
    paths = [save_figure(confusion_difference_figure(p, names), out / f) for p, f in zip(pairs, figures)]
    report = out / "comparison.md"
    report.write_text(comparison_markdown(results, pairs, figures), encoding="utf-8")
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
    name = "compare-" + "-".join(i[:8] for i in ids)
    run = client.create_run(loaded[0].run.info.experiment_id, run_name=name, tags=tags)
    run_id = run.info.run_id
    try:
        for key, value in metrics.items():
            client.log_metric(run_id, key, value)
        for path in files:
            client.log_artifact(run_id, str(path))
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def compare(options: Any) -> str:
    """Load, check, compare, write, print and log; the comparison run's id."""
    uri = (
        str(options.tracking_uri) if options.tracking_uri else resolve_tracking_uri(None, options.mlruns_dir)
    )
    client = connect(uri)
    scratch = Path(tempfile.mkdtemp(prefix="cifarlab-compare-"))
    loaded = [
        load_run(client, run_id, scratch / "downloads")
        for run_id in run_ids(client, options, scratch / "sweep")
    ]
    for other in loaded[1:]:
        check_same_test_data(loaded[0], other)
    names = class_names_for(loaded[0], n_classes(loaded))
    results = [r.result for r in loaded]
    pairs = [
        compare_pair(a, b, names, int(options.top_errors)) for a, b in itertools.combinations(results, 2)
    ]
    out = Path(options.out) if options.out else scratch / "comparison"
    files = write_outputs(out, results, pairs, names)
    print(files[0].read_text(encoding="utf-8"))
    run_id = log_comparison(client, loaded, comparison_metrics(results, pairs), files)
    print(f"cifarlab: wrote {out}")
    print(f"cifarlab: comparison run {run_id} in experiment {loaded[0].run.info.experiment_id}")
    return run_id


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if wants_help(argv):
        print(usage(CompareOptions, __doc__))
        return
    try:
        options, _ = parse_options(CompareOptions, argv, prog=PROG, example="runs=<id>,<id>")
        compare(options)
    except CifarlabError as err:
        exit_with_error("cifarlab", err)


if __name__ == "__main__":
    main()
