"""The in-process rounds: every training variant, the pipeline alone and the matmul peak, measured in turn.

Rounds alternate the variants (``plan.round_order``), so that load from other
processes and the machine's drift fall on all of them alike.
"""

from __future__ import annotations

from typing import Any

from cifarlab.bench.flops import compute_dtype, matmul_peak
from cifarlab.bench.measurements import Measurements, finite_median
from cifarlab.bench.plan import Plan, round_order, stall_pair
from cifarlab.bench.progress import Log
from cifarlab.bench.throughput import fit_throughput, pipeline_throughput
from cifarlab.bench.variants import VariantSet


def warm_up(variants: VariantSet, plan: Plan, log: Log) -> None:
    """Trace every train function once, outside the timing (XLA compiles here)."""
    spe = plan.steps_per_execution
    for name, (model, ds) in variants.runs.items():
        log(f"warming up {name}")
        fit_throughput(model, ds, spe, spe, variants.plan.trainer.batch_size)


def measure(variants: VariantSet, plan: Plan, name: str) -> float:
    """Training images per second of one variant (its fastest window of steps)."""
    model, ds = variants.runs[name]
    return fit_throughput(
        model, ds, plan.warm_steps, plan.measure_steps, variants.plan.trainer.batch_size, plan.window_steps
    )


def measure_peaks(plan: Plan, precision: str, row: dict[str, float]) -> None:
    """The float32 matmul peak, and that of the dtype the run computes in, into ``row`` (each the best so far)."""
    peaks = {"matmul_flops": "float32", "matmul_flops_compute": compute_dtype(precision)}
    for key, dtype in peaks.items():
        if key == "matmul_flops_compute" and dtype == "float32":
            row[key] = row["matmul_flops"]
            continue
        row[key] = max(row.get(key, 0.0), matmul_peak(plan.matmul_n, plan.matmul_repeats, dtype))


def measure_round(variants: VariantSet, plan: Plan, r: int) -> tuple[dict[str, float], list[float]]:
    """Round ``r``: one measurement of everything, and its stall ratios (pipeline / memory, back to back)."""
    row: dict[str, float] = {}
    measure_peaks(plan, variants.precision, row)
    pipeline = variants.runs["pipeline"][1]
    row["pipeline_alone"] = pipeline_throughput(pipeline, plan.pipeline_batches)
    for name in round_order(list(variants.runs), r):
        row[name] = measure(variants, plan, name)
    stall_ratios = [row["pipeline"] / row["memory"]]
    # More pairs for the stall ratio alone: a few percent is what it must resolve. Kept out
    # of ``row``, so that every variant still gets one measurement per round.
    for i in range(1, 1 + plan.stall_pairs):
        first, second = stall_pair(r, i)
        pair = {first: measure(variants, plan, first), second: measure(variants, plan, second)}
        stall_ratios.append(pair["pipeline"] / pair["memory"])
    measure_peaks(plan, variants.precision, row)
    return row, stall_ratios


def deadline_passed(plan: Plan, r: int, log: Log) -> bool:
    """Whether round ``r`` should not start: ``plan.min_rounds`` done and the plan's deadline passed."""
    return bool(r >= plan.min_rounds and plan.rounds_deadline_s and log.elapsed() > plan.rounds_deadline_s)


def measure_rounds(variants: VariantSet, plan: Plan, log: Log) -> tuple[list[dict[str, float]], list[float]]:
    """Up to ``plan.rounds`` rounds (fewer once the deadline passes); each round's row, and all stall ratios."""
    rounds: list[dict[str, float]] = []
    stall_ratios: list[float] = []
    for r in range(plan.rounds):
        if deadline_passed(plan, r, log):
            log(
                f"{plan.rounds_deadline_s:g}s deadline for the rounds passed: {r} of {plan.rounds} rounds measured"
            )
            break
        log(f"round {r + 1}/{plan.rounds}: matmul peak, pipeline, {len(variants.runs)} training variants")
        row, ratios = measure_round(variants, plan, r)
        rounds.append(row)
        stall_ratios += ratios
    return rounds, stall_ratios


def summarise_rounds(
    rounds: list[dict[str, float]],
    stall_ratios: list[float],
    flops: dict[str, Any],
    plan: Plan,
    m: Measurements,
    precision: str = "float32",
) -> dict[str, float]:
    """The headline throughputs and ratios of the rounds into ``m``; the best of each measurement."""
    m.details["rounds"] = rounds
    m.details["rounds_measured"] = len(rounds)
    m.details["stall_ratios"] = stall_ratios
    # Throughputs: the best of the rounds, the closest to what this machine does. Ratios: the
    # median of within-round ratios, paired in time so the machine's drift cancels.
    best = {key: max(row[key] for row in rounds) for key in rounds[0]}
    median = {key: finite_median([row[key] for row in rounds]) for key in rounds[0]}
    train_flops = flops["train"]
    m.values["pipeline_images_per_s"] = best["pipeline_alone"]
    m.values["train_images_per_s"] = best["pipeline"]
    m.values["pipeline_stall_ratio"] = finite_median(stall_ratios)
    # Against the peak of the dtype the run computes in (bfloat16 under autocast), and float32's beside it.
    for key, peak in (
        ("flops_utilization", "matmul_flops_compute"),
        ("flops_utilization_float32", "matmul_flops"),
    ):
        m.values[key] = finite_median([row["pipeline"] * train_flops / row[peak] for row in rounds])
    m.details["best"] = best
    m.details["median"] = median
    m.details["ratio_of_bests"] = {
        "pipeline_stall_ratio": best["pipeline"] / best["memory"],
        "flops_utilization": best["pipeline"] * train_flops / best["matmul_flops_compute"],
        "flops_utilization_float32": best["pipeline"] * train_flops / best["matmul_flops"],
    }
    m.details["matmul_peak_gflops"] = {
        "compute_dtype": compute_dtype(precision),
        "precision": precision,
        "n": plan.matmul_n,
        "best": best["matmul_flops_compute"] / 1e9,
        "median": median["matmul_flops_compute"] / 1e9,
        "float32_best": best["matmul_flops"] / 1e9,
        "float32_median": median["matmul_flops"] / 1e9,
    }
    m.details["train_gflops"] = best["pipeline"] * train_flops / 1e9
    return best
