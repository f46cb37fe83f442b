"""The benchmark's result: the JSON it writes (keys as README and experiments/ read them), targets met, the table."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cifarlab.bench.measurements import Measurements
from cifarlab.bench.plan import REQUIRED_KEYS, SWITCHES, TARGETS, Plan


def met(key: str, value: float | None) -> bool | None:
    """Whether ``value`` meets the target of ``key``; None where it has none or the value is not a number."""
    op, target, _, _ = TARGETS[key]
    if op is None or target is None or value is None or not math.isfinite(value):
        return None
    return {">=": value >= target, "<=": value <= target, "<": value < target, ">": value > target}[op]


def result_json(
    plan: Plan,
    m: Measurements,
    recommended: list[str],
    machine: dict[str, Any],
    data_description: str,
    seconds: float,
) -> dict[str, Any]:
    """Every measurement as it is written to JSON: the headline keys first, then targets, switches and details."""
    result: dict[str, Any] = {key: float(m.values[key]) for key in REQUIRED_KEYS}
    result["targets"] = {
        key: {"op": op, "value": target, "unit": unit, "description": what}
        for key, (op, target, unit, what) in TARGETS.items()
    }
    result["met"] = {key: met(key, result[key]) for key in TARGETS}
    result["switches"] = m.details["switches"]
    result["recommended_defaults"] = recommended
    result["machine"] = machine
    result["plan"] = asdict(plan)
    result["data"] = {"source": data_description, **m.details.pop("data")}
    result["bench_seconds"] = seconds
    result["details"] = m.details
    return result


def write_result(result: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float) + "\n")


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3f}"


def target_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for key, (op, target, unit, _) in TARGETS.items():
        flag = result["met"][key]
        rows.append(
            (
                key,
                _fmt(result[key]) + (f" {unit}" if unit else ""),
                f"{op} {target:g}" if op else "-",
                "-" if flag is None else ("yes" if flag else "NO"),
            )
        )
    return rows


def switch_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for name in SWITCHES:
        s = result["switches"][name]
        held = s.get("accuracy_held")
        note = "n/a" if held is None else ("held" if held else "DROPPED")
        verdict = "recommend" if s["recommend_default"] else "keep off"
        if s.get("default"):
            verdict = "default on" if s["recommend_default"] else "NOT FASTER"
        rows.append((f"speedup_{name}", f"x{result[f'speedup_{name}']:.3f}", f"accuracy {note}", verdict))
    return rows


def switch_notes(result: dict[str, Any]) -> list[str]:
    """One line a switch: its setting, and its short accuracy check or why it had none."""
    lines = []
    for name in SWITCHES:
        s = result["switches"][name]
        extra = ""
        if "accuracy" in s:
            a, d = s["accuracy"], s["default_accuracy"]
            extra = (
                f"; short check: train accuracy {a['train_accuracy']:.3f} vs {d['train_accuracy']:.3f} without"
                f", test {a['test_accuracy']:.3f} vs {d['test_accuracy']:.3f}"
            )
        elif s.get("accuracy_note"):
            extra = f"; accuracy: {s['accuracy_note']}"
        lines.append(f"  {name}: {s['setting']}{extra}")
    return lines


def table(result: dict[str, Any]) -> str:
    """The result for a terminal: each key against its target, each switch's verdict, then notes."""
    rows = [("key", "value", "target", "met?"), *target_rows(result), *switch_rows(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    machine = result["machine"]
    lines.append("")
    features = ", ".join(name for name, has in machine.get("isa_features", {}).items() if has) or "none known"
    lines.append(
        f"machine: {machine.get('cpu_model', '?')} ({features}), {machine['sched_cpus']} usable of "
        f"{machine['cpu_count']} CPUs, TensorFlow {machine['tf_version']}, "
        f"Keras {machine['keras_version']}; data: {result['data']['source']}; "
        f"plan: {result['plan']['name']}, {result['details']['rounds_measured']} rounds, "
        f"{result['bench_seconds']:.0f} s"
    )
    lines += switch_notes(result)
    lines.append("recommended defaults: " + ("; ".join(result["recommended_defaults"]) or "none"))
    return "\n".join(lines)
