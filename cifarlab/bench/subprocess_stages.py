"""Measurements that need processes of their own: the CLI's start-up, thread settings, and the framework's overhead.

Thread pools are fixed when TensorFlow starts, and a real ``python -m cifarlab``
run is a process of its own, so each of these runs as a subprocess.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cifarlab import tracking
from cifarlab.bench.measurements import Measurements, finite_median
from cifarlab.bench.plan import Plan
from cifarlab.bench.processes import cfg_job_seconds, run_command, run_worker
from cifarlab.bench.progress import Log


def cfg_job_stage(plan: Plan, workdir: Path, log: Log, m: Measurements) -> None:
    log(f"python -m cifarlab --cfg job x{plan.cfg_job_runs}")
    seconds = cfg_job_seconds(plan.cfg_job_runs, workdir, plan.subprocess_timeout_s)
    m.values["cfg_job_seconds"] = finite_median(seconds)
    m.details["cfg_job_seconds"] = seconds


def thread_round(plan: Plan, overrides: list[str], workdir: Path, log: Log, r: int) -> dict[str, float]:
    """Round ``r``: training throughput under each thread setting (TensorFlow's default first, rotating)."""
    settings = [(0, 0), *plan.thread_settings]
    order = settings[r % len(settings) :] + settings[: r % len(settings)]
    row = {}
    for intra, inter in order:
        log(f"threads round {r + 1}/{plan.thread_rounds}: intra_op={intra} inter_op={inter} (subprocess)")
        out = run_worker(
            "threads",
            {
                "threads": [intra, inter],
                "overrides": overrides,
                "warm_steps": plan.warm_steps,
                "measure_steps": plan.measure_steps,
                "window_steps": plan.window_steps,
                "repeats": 3,
            },
            workdir,
            plan.subprocess_timeout_s,
        )
        row[f"intra{intra}_inter{inter}"] = max(out["images_per_s"])
    return row


def threads_stage(plan: Plan, overrides: list[str], workdir: Path, log: Log, m: Measurements) -> None:
    """The ``threads`` switch: the best thread setting / TensorFlow's default (one thread per core)."""
    per_round = [thread_round(plan, overrides, workdir, log, r) for r in range(plan.thread_rounds)]
    best = {key: max(row[key] for row in per_round) for key in per_round[0]}
    speedups = {}
    for intra, inter in plan.thread_settings:
        key = f"intra{intra}_inter{inter}"
        speedups[key] = best[key] / best["intra0_inter0"]
    chosen = max(speedups, key=lambda name: speedups[name])
    m.details.setdefault("switches", {})["threads"] = {
        "speedup": speedups[chosen],
        "setting": f"tf.config.threading {chosen.replace('_', ' ')} (default: 0 0, one thread per core)",
        "images_per_s": best,
        "per_setting": speedups,
        "rounds": per_round,
        "accuracy_held": None,
        "accuracy_note": "same arithmetic: not affected",
    }


def cifarlab_epochs(overrides: list[str], epochs: int, workdir: Path, timeout: float) -> dict[str, Any]:
    """A real ``python -m cifarlab`` run; its per-epoch timing as MLflow recorded it."""
    store = workdir / "mlruns"
    args = [*overrides, f"trainer.epochs={epochs}", f"paths.mlruns_dir={store}", "tracking.experiment=bench"]
    start = time.perf_counter()
    run_command([sys.executable, "-m", "cifarlab", *args], workdir, timeout)
    wall = time.perf_counter() - start
    client = tracking.store_client(f"sqlite:///{store / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bench")
    (run,) = client.search_runs([exp.experiment_id])
    history = sorted(
        client.get_metric_history(run.info.run_id, "epoch_seconds"), key=lambda metric: metric.step
    )
    stamps = [metric.timestamp / 1000.0 for metric in history]
    return {
        "epoch_seconds": [metric.value for metric in history],
        # epoch-end to epoch-end: everything of an epoch, callbacks after the logger included
        "periods": [b - a for a, b in zip(stamps, stamps[1:])],
        "wall_s": wall,
        "run_id": run.info.run_id,
    }


def overhead_pair(plan: Plan, overrides: list[str], workdir: Path, log: Log, r: int) -> dict[str, dict]:
    """Pair ``r``: a real cifarlab run and a bare ``model.fit`` of the same training, in alternating order (ABBA)."""
    order = ("cifarlab", "bare") if r % 2 == 0 else ("bare", "cifarlab")
    pair = {}
    for who in order:
        log(
            f"overhead pair {r + 1}/{plan.overhead_pairs}: {who} run of {plan.overhead_epochs} epochs (subprocess)"
        )
        folder = Path(tempfile.mkdtemp(prefix=f"{who}-", dir=workdir))
        if who == "cifarlab":
            run_overrides = [*overrides, *([] if plan.overhead_log_model else ["tracking.log_model=false"])]
            pair[who] = cifarlab_epochs(
                run_overrides, plan.overhead_epochs, folder, plan.subprocess_timeout_s
            )
        else:
            pair[who] = run_worker(
                "bare_fit",
                {"overrides": overrides, "epochs": plan.overhead_epochs},
                folder,
                plan.subprocess_timeout_s,
            )
    return pair


def steady(values: list[float], drop_first: bool) -> float:
    """The fastest epoch, the first (tracing) left out when asked: load from other processes only adds time."""
    kept = values[1:] if drop_first and len(values) > 1 else values
    return min(kept)


def overhead_stage(plan: Plan, overrides: list[str], workdir: Path, log: Log, m: Measurements) -> None:
    """``framework_overhead_ratio``: a cifarlab epoch / a bare ``model.fit`` epoch, the fastest steady ones."""
    pairs = [overhead_pair(plan, overrides, workdir, log, r) for r in range(plan.overhead_pairs)]

    # Periods (epoch end to epoch end) already start after the first epoch.
    def best(who: str, key: str, drop_first: bool) -> float:
        return min(steady(p[who][key], drop_first) for p in pairs)

    by_period = best("cifarlab", "periods", False) / best("bare", "periods", False)
    by_logged = best("cifarlab", "epoch_seconds", True) / best("bare", "epoch_seconds", True)
    m.values["framework_overhead_ratio"] = by_period
    m.details["framework_overhead"] = {
        "ratio_epoch_end_to_epoch_end": by_period,
        "ratio_logged_epoch_seconds": by_logged,
        "per_pair_ratio_epoch_end_to_epoch_end": [
            steady(p["cifarlab"]["periods"], False) / steady(p["bare"]["periods"], False) for p in pairs
        ],
        "method": "fastest steady epoch of each side over all runs (runs alternate cifarlab/bare, ABBA)",
        "note": "main value: epoch-end to epoch-end (MLflow metric timestamps vs. a bare callback), so every "
        "callback counts; epoch_seconds as logged misses the callbacks after the MLflow logger",
        "pairs": pairs,
    }
    m.details["cifarlab_epoch_seconds"] = best("cifarlab", "epoch_seconds", True)
