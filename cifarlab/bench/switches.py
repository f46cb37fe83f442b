"""Each speed switch's verdict: its speedup from the rounds, a short accuracy check, whether to make it a default.

A switch off by default is measured as switched on / the default; one on by
default as the default / switched off.
"""

from __future__ import annotations

from typing import Any

from cifarlab.bench.measurements import Measurements, finite_median
from cifarlab.bench.plan import (
    ACCURACY_NOTES,
    ACCURACY_TOLERANCE,
    ARITHMETIC_SWITCHES,
    DEFAULT_ON,
    PRECISION_SWITCHES,
    SPEEDUP_THRESHOLD,
    SWITCHES,
    Plan,
)
from cifarlab.bench.progress import Log
from cifarlab.bench.variants import VariantSet, precision_variant, short_accuracy

Switch = dict[str, Any]
UNAFFECTED = "same arithmetic and data: not affected"


def speedup(
    rounds: list[dict[str, float]], best: dict[str, float], faster: str, slower: str, default: bool
) -> Switch:
    """``faster`` / ``slower``: the median of the within-round ratios, and the ratio of the bests."""
    faster, slower = ("pipeline" if v == "default" else v for v in (faster, slower))
    per_round = [row[faster] / row[slower] for row in rounds]
    return {
        "speedup": finite_median(per_round),
        "default": default,
        "ratio_of_bests": best[faster] / best[slower],
        "per_round": per_round,
    }


def precision_switches(
    rounds: list[dict[str, float]], best: dict[str, float], resolved: str
) -> dict[str, Switch]:
    """Each trainer.precision setting against float32; the one precision=auto picks here counts as the default."""
    switches = {}
    for p in PRECISION_SWITCHES:
        s = speedup(
            rounds,
            best,
            precision_variant(p, resolved),
            precision_variant("float32", resolved),
            default=p == resolved,
        )
        s["setting"] = f"trainer.precision={p}, vs float32" + (
            " (what the default precision=auto picks here)" if p == resolved else ""
        )
        switches[p] = s
    return switches


def input_parallelism_switch(
    rounds: list[dict[str, float]], best: dict[str, float], variants: VariantSet
) -> Switch:
    calls = variants.input_calls
    if calls is None:  # autotuning is what runs here: measure one thread against it, like jit_compile
        s = speedup(rounds, best, "other_input_parallelism", "default", default=False)
        s["setting"] = "trainer.input_parallelism=1, vs tf.data autotuning"
    else:  # a fixed count runs here: measure it against autotuning, like the default-on switches
        s = speedup(rounds, best, "default", "other_input_parallelism", default=True)
        s["setting"] = (
            f"trainer.input_parallelism={variants.plan.trainer.input_parallelism} ({calls} "
            f"thread{'s' if calls > 1 else ''}), vs trainer.input_parallelism=autotune"
        )
    return s


def fast_dropout_switch(
    rounds: list[dict[str, float]], best: dict[str, float], variants: VariantSet
) -> Switch:
    """FastDropout on / off in cnn_bn; ``default``: what trainer.fast_dropout=auto chose here, and its calibration."""
    on, off = (
        ("default", "other_fast_dropout") if variants.fast_dropout else ("other_fast_dropout", "default")
    )
    s = speedup(rounds, best, on, off, default=variants.fast_dropout)
    chosen = "on" if variants.fast_dropout else "off"
    s.update(
        setting=f"trainer.fast_dropout=true vs false (auto chose {chosen} here)",
        accuracy_held=None,
        accuracy_note=ACCURACY_NOTES["fast_dropout"],
        calibration=variants.fast_dropout_calibration,
    )
    return s


def switch_speedups(
    rounds: list[dict[str, float]], best: dict[str, float], variants: VariantSet, plan: Plan
) -> dict[str, Switch]:
    """Every switch measured in this process (all but ``threads``), with its setting and accuracy note."""
    switches = {
        name: speedup(rounds, best, name, "default", default=False)
        for name in ("jit_compile", "steps_per_execution", "caching")
    }
    for name in DEFAULT_ON:
        switches[name] = speedup(rounds, best, "default", f"without_{name}", default=True)
        switches[name].update(
            setting=f"trainer.{name}=true (the default)",
            accuracy_held=None,
            accuracy_note=ACCURACY_NOTES[name],
        )
    switches.update(precision_switches(rounds, best, variants.precision))
    switches["jit_compile"]["setting"] = "trainer.jit_compile=true"
    switches["steps_per_execution"]["setting"] = f"trainer.steps_per_execution={plan.steps_per_execution}"
    switches["caching"]["setting"] = "tf.data .cache() after the float cast, before shuffle/augmentation"
    switches["input_parallelism"] = input_parallelism_switch(rounds, best, variants)
    switches["fast_dropout"] = fast_dropout_switch(rounds, best, variants)
    for name in ("steps_per_execution", "caching", "input_parallelism"):
        switches[name].update(accuracy_held=None, accuracy_note=UNAFFECTED)
    return switches


def switches_to_check(plan: Plan, switches: dict[str, Switch]) -> list[str]:
    """The arithmetic switches that get the accuracy check; the others are marked not checked."""
    checked = [
        name
        for name in ARITHMETIC_SWITCHES
        if plan.always_check_accuracy
        or switches[name]["default"]
        or switches[name]["speedup"] >= SPEEDUP_THRESHOLD
    ]
    for name in ARITHMETIC_SWITCHES:
        if name not in checked:
            switches[name].update(accuracy_held=None, accuracy_note="not checked: not measured faster")
    return checked


def check_accuracy(
    plan: Plan, variants: VariantSet, switches: dict[str, Switch], log: Log, m: Measurements
) -> None:
    """A few epochs of each checked switch, on and off, from the same snapshot: does it hold training accuracy?"""
    checked = switches_to_check(plan, switches)
    if not checked:
        return
    log(f"accuracy check ({plan.accuracy_epochs} epochs each): {', '.join(checked)}, each on and off")
    measured = sorted({v for name in checked for v in variants.accuracy_pairs[name]})
    accuracy = {
        v: short_accuracy(variants.snapshots[v], variants.plans[v], variants.data, plan.accuracy_epochs)
        for v in measured
    }
    m.details["accuracy_check"] = {
        "epochs": plan.accuracy_epochs,
        "tolerance": ACCURACY_TOLERANCE,
        **accuracy,
    }
    for name in checked:
        on, off = (accuracy[v] for v in variants.accuracy_pairs[name])
        switches[name]["accuracy"] = on
        switches[name]["default_accuracy"] = off  # the reference: the switch off (float32 for precisions)
        switches[name]["accuracy_held"] = bool(
            on["train_accuracy"] >= off["train_accuracy"] - ACCURACY_TOLERANCE
        )


def recommend(switches: dict[str, Switch], m: Measurements) -> list[str]:
    """Each switch's speedup into ``m``; marks (and lists) the switches worth a default: faster, accuracy held."""
    recommended = []
    for name in SWITCHES:
        s = switches[name]
        m.values[f"speedup_{name}"] = s["speedup"]
        faster = s["speedup"] >= SPEEDUP_THRESHOLD
        s["recommend_default"] = bool(faster and s.get("accuracy_held") is not False)
        if s["recommend_default"]:
            recommended.append(f"{name}: {s['setting']} (x{s['speedup']:.2f})")
    return recommended
