"""What the caller of ``train`` adds to one run: for a sweep job, its parent run and extras.

Training never imports the sweep code; the CLI builds these hooks (from
``cifarlab.sweeps``) and hands them to ``train``. A plain run uses the defaults.
Each hook is told only what the run knows and its builder does not: the config
hash, the run id; whatever else it needs, it closes over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def _no_finished_run(config_hash: str) -> Any | None:
    return None


def _no_callbacks() -> list:
    return []


def _nothing_on_open(run_id: str | None) -> None:
    return None


@dataclass
class RunHooks:
    """``parent_run_id``: the MLflow run to nest under; ``finished_run``: an earlier FINISHED
    run with this config hash, which the run is then skipped for; ``callbacks``: extra
    Keras callbacks (a sweep's pruning), asked for once per stage inside the open run;
    ``run_name``: the name to give the MLflow run; ``on_run_open``: called with the run id
    once the run is open (new or resumed), e.g. to tie it to the sweep job and Optuna
    trial that runs it now.

    What the launcher knows of the command line, recorded with the run:
    ``overrides`` (as typed) and ``preset_choices`` (tag -> chosen ``experiment`` / ``debug``).
    """

    parent_run_id: str | None = None
    finished_run: Callable[[str], Any | None] = field(default=_no_finished_run)
    callbacks: Callable[[], list] = field(default=_no_callbacks)
    run_name: str | None = None
    on_run_open: Callable[[str | None], None] = field(default=_nothing_on_open)
    overrides: list[str] = field(default_factory=list)
    preset_choices: dict[str, str | None] = field(default_factory=dict)
    search_trial: bool = False  # a trial of a search: its figures wait for the search's end (reports.figures)
