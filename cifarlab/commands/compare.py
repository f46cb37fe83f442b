"""``python -m cifarlab compare``: is one run's test result really better than another's?

    python -m cifarlab compare runs=<run id>,<run id>[,...]
    python -m cifarlab compare sweep=<parent run id> top=3     # the sweep's best jobs by val/best_accuracy
    python -m cifarlab compare runs=<id>,<id> configs_only=true  # only what differs: settings, data, code

First, the config keys whose values differ between the runs (and the data digests
and code state when they differ); then, from each run's stored test predictions
(``reports/test_predictions.npz``): test accuracy with a 95% Wilson interval; for each pair, McNemar's exact test with
the discordant counts it rests on, per-class precision and recall deltas, the
errors that changed most and a heatmap of the confusion-matrix difference.
Printed, written to ``out=`` (comparison.md and PNGs) and logged as a new MLflow
run in the first run's experiment, tagged with the runs it compares. Runs must
have been tested on the same images (same test dataset digest and labels).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from cifarlab.config.arguments import run_command
from cifarlab.reports.compare_runs import compare

PROG = "cifarlab compare"
EXAMPLE = "runs=<id>,<id>"


@dataclass
class CompareOptions:
    runs: Optional[str] = None  # run ids, comma-separated (two or more)
    sweep: Optional[str] = None  # a sweep's parent run id: compare its best children instead
    top: int = 2  # with sweep=: how many of the best children
    out: Optional[str] = None  # folder for comparison.md and the PNGs; None: a new temporary folder
    top_errors: int = 5  # how many changed errors to put in words
    tracking_uri: Optional[str] = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<mlruns_dir>/mlflow.db
    mlruns_dir: str = "mlruns"
    configs_only: bool = False  # only the table of what differs: no predictions read, nothing logged


def main(argv: Sequence[str] | None = None) -> None:
    run_command(
        CompareOptions, __doc__, argv, prog=PROG, example=EXAMPLE, run=lambda options, _: compare(options)
    )


if __name__ == "__main__":
    main()
