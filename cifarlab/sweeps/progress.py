"""A sweep's progress, one line per ended job: k of N, the best so far, about how long is left.

N is what the sweeper will run: for a grid sweep the product of the swept values
(parsed as Hydra parses them), for a search its trials times their repeats. The
time left is the mean time of the jobs that ended, spread over the jobs that run
at once.
"""

from __future__ import annotations

import math

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from cifarlab.sweeps.contract import JobReport, SweepTicket, read_reports
from cifarlab.sweeps.job import jobs_dir


def planned_jobs(config: DictConfig) -> int | None:
    """How many jobs the sweep of ``config`` (the sweep's, not a job's) runs; None when it cannot be told."""
    sweeper = config.hydra.sweeper
    if sweeper.get("n_trials") is not None:
        return int(sweeper.n_trials) * int(sweeper.get("repeats", 1) or 1)
    try:
        overrides = OverridesParser.create().parse_overrides([str(o) for o in config.hydra.overrides.task])
    except Exception:  # noqa: BLE001 - progress is a courtesy: without a count it says "k done"
        return None
    return math.prod(len(list(o.sweep_string_iterator())) if o.is_sweep_override() else 1 for o in overrides)


def progress_line(config: DictConfig, ended: JobReport, ticket: SweepTicket) -> str:
    """``job 3 ended (finished, 0.812), 4 of 12 done; best so far 0.845 (job 1); about 4 min left``."""
    done = read_reports(jobs_dir(config.hydra))  # every worker's: a search's trials are counted as one
    planned = ticket.planned_jobs
    count = f"{len(done)} of {planned}" if planned else f"{len(done)}"
    line = f"cifarlab: sweep: job {ended.num} ended ({ended.status}{_value(ended.objective)}), {count} done"
    scored = [r for r in done if r.objective is not None and math.isfinite(r.objective)]
    if scored:
        maximize = str(OmegaConf.select(config, "hydra.sweeper.direction", default="maximize")) != "minimize"
        best = (max if maximize else min)(scored, key=lambda r: float(r.objective or 0.0))
        line += f"; best so far {best.objective:.4f} (job {best.num})"
    timed = [r.seconds for r in done if r.seconds]
    if planned and timed and planned > len(done):
        at_once = int(OmegaConf.select(config, "hydra.launcher.n_jobs", default=1) or 1)
        left = sum(timed) / len(timed) * (planned - len(done)) / max(at_once, 1)
        line += f"; about {_duration(left)} left"
    return line


def _value(objective: float | None) -> str:
    return f", {objective:.4f}" if objective is not None else ""


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
