"""Per-class precision, recall and F1 as a markdown table and as MLflow metrics."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from sklearn.metrics import accuracy_score, classification_report

from cifarlab.reports.inputs import label_pair

_METRIC_NAME_BAD = re.compile(r"[^A-Za-z0-9_\-. ]")
_HEADER = ["| class | precision | recall | f1-score | support |", "|---|---:|---:|---:|---:|"]


def metric_safe_name(name: str) -> str:
    """Make a class name usable as one segment of an MLflow metric key.

    Keeps ASCII letters, digits, underscore, dash, period and space; everything else
    (slashes included, since they separate key segments) becomes "_".
    Names that would collapse as a path segment ("", ".", "..") are replaced too.
    """
    safe = _METRIC_NAME_BAD.sub("_", str(name)).strip()
    if not safe.strip("."):
        safe = "_" * max(len(safe), 1)
    return safe


def _safe_names(class_names: Sequence[str]) -> list[str]:
    safe = [metric_safe_name(n) for n in class_names]
    seen: dict[str, str] = {}
    for original, key in zip(class_names, safe):
        if key in seen:
            raise ValueError(
                f"class names {seen[key]!r} and {original!r} both become metric name {key!r}; "
                "rename one of them"
            )
        seen[key] = str(original)
    return safe


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _md_row(name: str, scores: Mapping[str, float] | None, support: float) -> str:
    if scores is None:
        cells = ["", "", ""]
    else:
        cells = [f"{scores[k]:.3f}" for k in ("precision", "recall", "f1-score")]
    return f"| {name} | " + " | ".join(cells) + f" | {int(support)} |"


def classification_table(y_true, y_pred, class_names: Sequence[str]) -> tuple[str, dict[str, float]]:
    """Per-class precision/recall/F1/support as markdown, plus flat MLflow metrics.

    Metrics: ``test/precision/<class>``, ``test/recall/<class>``, ``test/f1/<class>``
    (class names made metric-safe) and ``test/macro_f1``.
    """
    k = len(class_names)
    safe = _safe_names(class_names)
    t, p = label_pair(y_true, y_pred, k)
    report = classification_report(t, p, labels=list(range(k)), output_dict=True, zero_division=0)
    lines = list(_HEADER)
    metrics: dict[str, float] = {}
    for index, (name, key) in enumerate(zip(class_names, safe)):
        scores = report[str(index)]
        lines.append(_md_row(_md_cell(name), scores, scores["support"]))
        metrics[f"test/precision/{key}"] = float(scores["precision"])
        metrics[f"test/recall/{key}"] = float(scores["recall"])
        metrics[f"test/f1/{key}"] = float(scores["f1-score"])
    total = report["macro avg"]["support"]
    lines.append(_md_row("**macro avg**", report["macro avg"], total))
    lines.append(_md_row("**weighted avg**", report["weighted avg"], total))
    accuracy = float(accuracy_score(t, p)) if t.size else 0.0
    lines.append(f"| **accuracy** | | | {accuracy:.3f} | {int(total)} |")
    metrics["test/macro_f1"] = float(report["macro avg"]["f1-score"])
    return "\n".join(lines) + "\n", metrics
