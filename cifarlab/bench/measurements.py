"""What the stages of the benchmark gather: headline values (the JSON's top-level keys) and details."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Measurements:
    details: dict[str, Any] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)


def finite_median(values: Sequence[float | None]) -> float:
    """The median of the finite values; NaN when there are none."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(statistics.median(finite)) if finite else float("nan")
