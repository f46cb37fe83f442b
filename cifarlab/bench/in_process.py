"""The in-process stage: cnn_bn and its variants trained in this process, round after round.

Gives the pipeline and training throughputs, the stall ratio, FLOP utilisation,
every speed switch but ``threads``, and what the per-epoch callbacks cost.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras

from cifarlab.bench.callback_cost import callback_epoch_seconds
from cifarlab.bench.flops import count_flops, profiler_flops
from cifarlab.bench.measurements import Measurements, finite_median
from cifarlab.bench.plan import Plan
from cifarlab.bench.progress import Log
from cifarlab.bench.rounds import measure_rounds, summarise_rounds, warm_up
from cifarlab.bench.switches import check_accuracy, switch_speedups
from cifarlab.bench.variants import VariantSet, build_variants
from cifarlab.config.compose import compose_config
from cifarlab.data import DataSplits
from cifarlab.training.plan import assemble


def record_data(data: DataSplits, batch_size: int, m: Measurements) -> None:
    m.details["data"] = {
        "train": len(data.x_train),
        "val": len(data.x_val),
        "test": len(data.x_test),
        "shape": list(data.input_shape),
        "batch_size": batch_size,
    }


def record_flops(model: keras.Model, m: Measurements) -> dict[str, Any]:
    """cnn_bn's FLOPs per image into ``m`` (the analytic count, and the profiler's as a cross-check)."""
    flops = count_flops(model)
    m.details["flops"] = {
        "forward_per_image": flops["forward"],
        "train_per_image": flops["train"],
        "forward_per_image_tf_profiler": profiler_flops(model),
        "per_layer_macs": flops["per_layer_macs"],
        "convention": "2 x MACs of Conv/Dense forward; x3 for forward + backward",
    }
    return flops


def record_callback_cost(plan: Plan, variants: VariantSet, workdir: Path, log: Log, m: Measurements) -> None:
    """Seconds of each default callback per epoch into ``m``, the MLflow logger's as ``mlflow_log_seconds``."""
    log(f"callbacks and MLflow logger: {plan.mlflow_epochs} epochs into SQLite")
    images = len(variants.data.x_train)
    per_callback = callback_epoch_seconds(
        variants.plan.callbacks, variants.default_model, images, plan.mlflow_epochs, workdir
    )
    seconds = per_callback["mlflow"]
    m.details["mlflow_log_seconds"] = {"median": finite_median(seconds), "max": max(seconds), "all": seconds}
    m.details["callback_seconds_per_epoch"] = {name: finite_median(v) for name, v in per_callback.items()}
    # Until the real run's epoch time is known: a full epoch at the measured throughput.
    m.details["estimated_epoch_seconds"] = images / m.values["train_images_per_s"]


def in_process_stage(plan: Plan, overrides: list[str], workdir: Path, log: Log, m: Measurements) -> None:
    """Every in-process measurement of ``plan`` into ``m``."""
    cfg = compose_config(overrides)
    run_plan = assemble(cfg)
    data = run_plan.data.load()
    record_data(data, run_plan.trainer.batch_size, m)
    log("building cnn_bn and its variants")
    variants = build_variants(cfg, data, plan)
    flops = record_flops(variants.default_model, m)
    warm_up(variants, plan, log)
    rounds, stall_ratios = measure_rounds(variants, plan, log)
    best = summarise_rounds(rounds, stall_ratios, flops, plan, m, variants.precision)
    switches = m.details.setdefault(
        "switches", {}
    )  # shared with the threads stage, which may run beside this one
    switches.update(switch_speedups(rounds, best, variants, plan))
    check_accuracy(plan, variants, switches, log, m)
    record_callback_cost(plan, variants, workdir, log, m)
