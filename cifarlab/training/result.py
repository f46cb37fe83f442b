"""What one training run returns to its caller (the CLI, a sweep)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainResult:
    run_id: str | None
    test_accuracy: float
    test_loss: float
    best_val_accuracy: float | None
    epochs_run: int
    history: dict[str, list[float]] = field(default_factory=dict)
    skipped: bool = False

    @classmethod
    def from_run(cls, run: Any) -> TrainResult:
        """The result an earlier FINISHED MLflow run recorded (for skipped sweep jobs)."""
        m = run.data.metrics
        return cls(
            run_id=run.info.run_id,
            test_accuracy=m.get("test/accuracy", float("nan")),
            test_loss=m.get("test/loss", float("nan")),
            best_val_accuracy=m.get("val/best_accuracy"),
            epochs_run=int(m.get("epochs_run", 0)),
            skipped=True,
        )

    @property
    def objective(self) -> float:
        """What sweeps maximise: the best validation accuracy."""
        return self.best_val_accuracy if self.best_val_accuracy is not None else self.test_accuracy
