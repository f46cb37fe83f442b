"""The whole benchmark: the subprocess stages and the in-process one, then the result as written to JSON."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from cifarlab.bench.in_process import in_process_stage
from cifarlab.bench.measurements import Measurements
from cifarlab.bench.plan import Plan, bench_overrides, data_overrides
from cifarlab.bench.progress import Log
from cifarlab.bench.report import result_json
from cifarlab.bench.search_overhead import search_overhead_stage
from cifarlab.bench.subprocess_stages import cfg_job_stage, overhead_stage, threads_stage
from cifarlab.bench.switches import recommend
from cifarlab.runtime.hardware import cpu_model, isa_features, library_versions, usable_cores

Stage = Callable[[], None]


def machine_info() -> dict[str, Any]:
    """What tells two machines' results apart: CPU model and ISA features, cores, library versions."""
    return {
        "cpu_model": cpu_model(),
        "isa_features": isa_features(),
        "cpu_count": os.cpu_count(),
        "sched_cpus": usable_cores(),
        "gpus": [gpu.name for gpu in tf.config.list_physical_devices("GPU")],
        "tf_version": tf.__version__,
        "tf_enable_onednn_opts": os.environ.get(
            "TF_ENABLE_ONEDNN_OPTS"
        ),  # cifarlab sets 1 on x86 (runtime/onednn.py)
        "keras_version": keras.__version__,
        "python": platform.python_version(),
        "libraries": library_versions(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def run_stages(in_process: Stage, subprocess_stages: list[Stage], concurrent: bool) -> None:
    """Run every stage: the subprocess ones beside the in-process one (``concurrent``), or the
    start-up one first, then the in-process one, then the rest, so that none slows another down."""
    if concurrent:
        with ThreadPoolExecutor(len(subprocess_stages)) as pool:
            futures = [pool.submit(stage) for stage in subprocess_stages]
            in_process()
            for future in futures:
                future.result()
        return
    subprocess_stages[0]()
    in_process()
    for stage in subprocess_stages[1:]:
        stage()


def record_mlflow_overhead(m: Measurements) -> None:
    """``mlflow_overhead_ratio``: the logger's seconds / the real run's epoch (the estimate if none ran)."""
    epoch_s = m.details.get("cifarlab_epoch_seconds") or m.details["estimated_epoch_seconds"]
    m.values["mlflow_overhead_ratio"] = m.details["mlflow_log_seconds"]["median"] / epoch_s
    m.details["mlflow_overhead_epoch_seconds"] = epoch_s


def run_bench(plan: Plan, data_dir: Path | None, workdir: Path, log: Log | None = None) -> dict[str, Any]:
    """Every measurement of ``plan``; the result as it is written to JSON."""
    log = log or Log()
    started = time.perf_counter()
    overrides, data_description = bench_overrides(plan, data_dir)
    search_data = data_overrides(data_dir, plan.synthetic_per_class)[0]
    m = Measurements()
    run_stages(
        lambda: in_process_stage(plan, overrides, workdir, log, m),
        [
            lambda: cfg_job_stage(plan, workdir, log, m),
            lambda: threads_stage(plan, overrides, workdir, log, m),
            lambda: overhead_stage(plan, overrides, workdir, log, m),
            lambda: search_overhead_stage(plan, search_data, workdir, log, m),
        ],
        plan.concurrent,
    )
    record_mlflow_overhead(m)
    recommended = recommend(m.details["switches"], m)
    return result_json(plan, m, recommended, machine_info(), data_description, time.perf_counter() - started)
