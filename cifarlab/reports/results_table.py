"""The results table of the experiment presets (``experiments/RESULTS.md``), rebuilt from the store.

For each preset in ``experiments/`` it takes the newest FINISHED run tagged with
that preset (debug=fast runs excluded): the published claim beside the measured
accuracy, epochs, data, hardware, training time and the run's ``note`` tag.
Whatever was written by hand under the table is kept as it is. Runs are read
through ``cifarlab.tracking.queries``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from omegaconf import OmegaConf

from cifarlab.config.locations import experiments_dir
from cifarlab.tracking import queries
from cifarlab.tracking.store import store_client
from cifarlab.tracking.target import resolve_uri

NEWEST_RUNS = 20  # runs of a preset looked at for one that is not a debug run
KEPT_DEBUG = (None, "", "None", "limit")  # debug tags of runs that count (debug=limit trains the full recipe)


@dataclass
class PresetResult:
    preset: str
    dataset: str
    model: str
    claim_accuracy: float | None
    claim_metric: str
    claim_epochs: object
    measured: float | None
    measured_metric: str
    epochs_run: int | None
    recipe_epochs: object
    data: str
    hardware: str
    train_seconds: float | None
    run_id: str | None
    note: str


def _preset_claims() -> dict[str, dict]:
    claims = {}
    for path in sorted(experiments_dir().glob("*.yaml")):
        node = cast(dict[str, Any], OmegaConf.to_container(OmegaConf.load(path)))
        defaults = {k: v for d in node.get("defaults", []) if isinstance(d, dict) for k, v in d.items()}
        claims[path.stem] = {
            "claim": node.get("claim", {}),
            "dataset": defaults.get("override /dataset", "?"),
            "model": defaults.get("override /model", "?"),
            "epochs": (node.get("trainer") or {}).get("epochs"),
        }
    return claims


def _data_label(params: dict[str, str]) -> str:
    data_dir = params.get("dataset.data_dir") or ""
    limit = float(params.get("dataset.limit_fraction", "1.0") or 1.0)
    label = (
        "real 5k CIFAR-10 subset"
        if "cifar10-subset" in data_dir
        else f"full {params.get('dataset.name', '?')}"
    )
    return label if limit >= 1.0 else f"{label} x {limit:g}"


def _train_seconds(client: Any, run: Any) -> float | None:
    history = queries.metric_history(client, run.info.run_id, "epoch_seconds")
    if history:
        return sum(value for _, value in history)
    if run.info.end_time and run.info.start_time:
        return (run.info.end_time - run.info.start_time) / 1000
    return None


def newest_preset_run(client: Any, experiment_id: str | None, preset: str) -> Any | None:
    """The newest FINISHED run tagged with ``preset`` (debug runs other than debug=limit left out), or None."""
    if experiment_id is None:
        return None
    found = queries.runs_with_tag(client, experiment_id, "preset", preset, max_results=NEWEST_RUNS)
    found = [r for r in found if r.data.tags.get("debug") in KEPT_DEBUG]
    return found[0] if found else None


def preset_result(client: Any, preset: str, info: dict, run: Any | None) -> PresetResult:
    """One table row: the preset's claim beside what ``run`` measured (``run`` may be None)."""
    claim = info["claim"] or {}
    metric = claim.get("metric") or "test/accuracy"
    params = run.data.params if run else {}
    metrics = run.data.metrics if run else {}
    measured_metric = "val/best_accuracy" if metric == "val/accuracy" else metric
    return PresetResult(
        preset=preset,
        dataset=info["dataset"],
        model=info["model"],
        claim_accuracy=claim.get("accuracy"),
        claim_metric=metric,
        claim_epochs=claim.get("epochs"),
        measured=metrics.get(measured_metric, metrics.get(metric)),
        measured_metric=metric,
        epochs_run=int(metrics["epochs_run"]) if "epochs_run" in metrics else None,
        recipe_epochs=info["epochs"],
        data=_data_label(params) if run else "",
        hardware=run.data.tags.get("hardware", "") if run else "",
        train_seconds=_train_seconds(client, run) if run else None,
        run_id=run.info.run_id if run else None,
        note=_note(run) if run else "not run yet",
    )


def collect(uri: str, experiment: str) -> list[PresetResult]:
    """One row per preset in ``experiments/``, from the store at ``uri``."""
    client = store_client(uri)
    experiment_id = queries.experiment_id(client, experiment)
    return [
        preset_result(client, preset, info, newest_preset_run(client, experiment_id, preset))
        for preset, info in _preset_claims().items()
    ]


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _note(run: Any) -> str:
    """The run's note, and whether a time budget cut it short (its result then depends on the machine)."""
    parts = [run.data.tags.get("note", ""), run.data.tags.get("time_budget", "")]
    return "; ".join(part for part in parts if part)


def hand_written_notes(previous: str) -> str:
    """What a previous RESULTS.md holds after its generated table (blank lines around it dropped)."""
    lines = previous.splitlines(keepends=True)
    rows = [i for i, line in enumerate(lines) if line.startswith("|")]
    if not rows:
        return ""
    end = rows[0]
    while end < len(lines) and lines[end].startswith("|"):  # the generated table: the first block of rows
        end += 1
    after = "".join(lines[end:])
    return after.strip("\n") + "\n" if after.strip() else ""


def render(results: list[PresetResult], notes: str = "") -> str:
    lines = [
        "# Results of the experiment presets",
        "",
        "Written by `python -m cifarlab results output=experiments/RESULTS.md` from the MLflow store;",
        "each row is the newest finished run of the preset. Accuracy is on the test split unless",
        "the metric says otherwise. Epochs: run / recipe.",
        "",
        "| preset | model | published | measured | metric | epochs | data | hardware | train time | note | run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        epochs = f"{r.epochs_run if r.epochs_run is not None else '—'} / {r.recipe_epochs or '—'}"
        seconds = "—" if r.train_seconds is None else f"{r.train_seconds:.0f} s"
        lines.append(
            f"| `{r.preset}` | {r.model} | {_pct(r.claim_accuracy)} | {_pct(r.measured)} | {r.claim_metric} "
            f"| {epochs} | {r.data} | {r.hardware} | {seconds} | {r.note} | {(r.run_id or '—')[:8]} |"
        )
    table = "\n".join(lines) + "\n"
    return f"{table}\n{notes}" if notes else table


def write_results(options: Any) -> Path | None:
    """Print the table; rebuild it in ``options.output`` (keeping the notes under it) only when given.

    Reading runs never rewrites a tracked file on its own: the published table changes
    only when the user names it as ``output``.
    """
    results = collect(resolve_uri(options.tracking_uri, options.mlruns_dir), options.experiment)
    print(render(results))
    if not options.output:
        return None
    output = Path(options.output)
    notes = hand_written_notes(output.read_text(encoding="utf-8")) if output.exists() else ""
    output.write_text(render(results, notes), encoding="utf-8")
    print(f"cifarlab: wrote {output}")
    return output
