"""The parent MLflow run of a sweep: open or reopen it, mark it KILLED if abandoned, close it with its report
(and with no child left RUNNING by a process that died).

Runs in the process that runs the sweeper (``cifarlab.sweeps.sweep_callback.SweepRecord``).
The parent is written by its id through ``cifarlab.tracking`` (``runs``, ``sweep_runs``),
never as the active run: with Hydra's basic launcher the jobs run in this same
process and each makes its own run the active one.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from omegaconf import DictConfig

from cifarlab import tracking
from cifarlab.reports.leaderboard import Row
from cifarlab.runtime.lease import Lease
from cifarlab.sweeps import champion, outcome, study, sweep_report, top_trials
from cifarlab.sweeps.storage import storage_lock
from cifarlab.tracking import runs, sweep_runs

ELECTION_WAIT_S = 0.3  # see open_parent: lets a parent created in the same instant be seen


def _client(config: DictConfig) -> Any:
    return tracking.store_client(tracking.target_from_config(config).uri)


def _sweeper_name(config: DictConfig) -> str:
    return str(config.hydra.sweeper.get("_target_", "")).rsplit(".", 1)[-1]


# --- open, abandon ----------------------------------------------------------------------------


def open_parent(config: DictConfig, sweep_hash: str) -> str:
    """Create the store and experiment, then the sweep's parent run, or reopen (or join) the one it has.

    Workers of one search share its study's storage: under that storage's lock the first
    finds no parent and creates it, the others find it. Without a shared storage, processes
    started together may each find none and create one: the first created wins, and the
    others delete theirs (before any job used it).
    """
    # Raises CifarlabError for an unreachable server.
    experiment_id = tracking.prepare_experiment(tracking.target_from_config(config))
    client = _client(config)
    shared = study.study_ticket(config)
    with storage_lock(shared.storage if shared else None, "parent"):
        earlier = sweep_runs.parents(client, experiment_id, sweep_hash)
        if earlier:
            return _reopen(client, earlier[0])
        mine = _create_parent(client, config, experiment_id, sweep_hash)
    if shared is None:
        time.sleep(ELECTION_WAIT_S)  # a process that searched at the same moment has created its own by now
        first = sweep_runs.parents(client, experiment_id, sweep_hash)[0].info.run_id
        if first != mine:
            runs.delete(client, mine)
            print(
                f"cifarlab: sweep: joined parent run {first} (another process of this sweep created it)",
                flush=True,
            )
            return first
    print(f"cifarlab: sweep: parent run {mine} in experiment '{config.tracking.experiment}'", flush=True)
    return mine


def _reopen(client: Any, run: Any) -> str:
    run_id, was = run.info.run_id, run.info.status
    runs.reopen(client, run_id)
    # RUNNING: another worker of this search runs it, or its last worker was killed.
    print(f"cifarlab: sweep: reopened parent run {run_id} (same sweep as before; it was {was})", flush=True)
    return str(run_id)


def _create_parent(client: Any, config: DictConfig, experiment_id: str, sweep_hash: str) -> str:
    overrides = " ".join(str(o) for o in config.hydra.overrides.task)
    name = config.hydra.sweeper.get("study_name") or f"sweep-{sweep_hash[:8]}"
    tags = {
        "sweep_hash": sweep_hash,
        "sweeper": _sweeper_name(config),
        "sweep_overrides": overrides[:5000],
        "git_commit": tracking.git_commit(),
        **dict(config.tracking.get("tags") or {}),
    }
    return sweep_runs.create_parent(client, experiment_id, str(name), tags)


def abandon_parent(config: DictConfig, run_id: str) -> None:
    """The sweep ended without its end (it raised, or was interrupted): a RUNNING parent ends KILLED,
    and so do children left RUNNING by workers that were killed.

    A parent shared with other live workers of a search (a child still RUNNING under a
    live lease) is left RUNNING: the last worker to end closes it.
    """
    client = _client(config)
    # joblib kills its workers with SIGKILL when the sweep is interrupted: their runs could not end.
    end_stale_children(config, client, run_id)
    if runs.status(client, run_id) != "RUNNING":
        return
    if _others_running(config, client, run_id):
        print(
            f"cifarlab: sweep: stopped; parent run {run_id} stays RUNNING for the other workers", flush=True
        )
        return
    runs.end(client, run_id, "KILLED")
    print(
        f"cifarlab: sweep: interrupted; parent run {run_id} marked KILLED "
        "(run the same command again to finish it: FINISHED jobs are skipped)",
        flush=True,
    )


def _others_running(config: DictConfig, client: Any, parent_run_id: str) -> bool:
    """Whether a child is still trained by a live process that is not this sweep or its own worker."""
    for run in sweep_runs.running_children(client, config.tracking.experiment, parent_run_id):
        owner = _lease_holder(config, run)
        if owner is not None and not _ours(owner.host, owner.pid):
            return True
    return False


def _ours(host: str, pid: int) -> bool:
    """This process, or one it started (a joblib worker about to be killed with it)."""
    if host != socket.gethostname():
        return False
    try:
        return pid == os.getpid() or psutil.Process(pid).ppid() == os.getpid()
    except psutil.Error:
        return True  # gone already


def _lease_holder(config: DictConfig, run: Any) -> Any:
    key = run.data.tags.get("config_hash")
    # The lease file where cifarlab.training.state.claimed_state keeps it.
    return Lease(Path(str(config.paths.state_dir)) / key / "lease.json").holder() if key else None


def end_stale_children(config: DictConfig, client: Any, parent_run_id: str) -> list[str]:
    """Children still RUNNING, that no live process trains, end KILLED (at the sweep's end or interruption).

    A rerun job resumes its own killed run; what is left RUNNING at the end is a run no
    job came back for (its process killed before the run could be resumed, an Optuna
    trial drawn anew), or one whose worker joblib killed. A run whose config's state
    lease (``cifarlab.runtime.lease``) has a live owner is left alone.
    """
    ended = []
    for run in sweep_runs.running_children(client, config.tracking.experiment, parent_run_id):
        if _lease_holder(config, run) is not None:
            continue
        sweep_runs.mark_killed(client, run.info.run_id)
        ended.append(run.info.run_id)
    if ended:
        print(
            f"cifarlab: sweep: {len(ended)} child run(s) left RUNNING by a dead process marked KILLED",
            flush=True,
        )
    return ended


# --- close ------------------------------------------------------------------------------------


def _complete_top_trials(config: DictConfig, client: Any, rows: list[Row]) -> None:
    """The figures and MLflow models of a search's best trials (``cifarlab.sweeps.top_trials``);
    with ``tracking.register_as`` the best trial's model at least, to register as champion."""
    top_trials.draw_top_figures(client, rows, int(config.reports.search_top), str(config.reports.orientation))
    models = config.tracking.get("search_models")
    if models is None or not config.tracking.log_model:
        return  # every trial logged its own (or none)
    if config.tracking.get("register_as"):
        models = max(int(models), 1)
    top_trials.log_top_models(client, tracking.target_from_config(config).uri, rows, int(models))


def close_parent(
    config: DictConfig, parent_run_id: str, jobs_dir: Path, worker: str | None = None
) -> dict[str, int]:
    """Leaderboard, figures, best run on the parent; end it FINISHED; print and return this
    worker's job counts (skipped, finished, failed, pruned).

    The leaderboard covers every child of the parent, whichever worker ran it; each
    worker of a shared search writes it again as it ends, the last one with every trial.
    They do so one at a time, under their study storage's lock: two writing the parent's
    tags at once collide in MLflow's SQLite store (a UNIQUE constraint), and each logs the
    best trials' models only when no other worker has.
    """
    shared = study.study_ticket(config)
    with storage_lock(shared.storage if shared else None, "parent"):
        return _close(config, parent_run_id, jobs_dir, worker)


def _close(config: DictConfig, parent_run_id: str, jobs_dir: Path, worker: str | None) -> dict[str, int]:
    client = _client(config)
    end_stale_children(config, client, parent_run_id)
    result = outcome.gather(config, client, parent_run_id, jobs_dir, worker)
    if study.is_optuna(config):  # its trials were recorded without figures and MLflow models
        _complete_top_trials(config, client, result.rows)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        summary = sweep_report.write_report(config, result, folder)
        runs.log_files(client, parent_run_id, sorted(folder.iterdir()))
        # A copy beside Hydra's outputs, for a look without MLflow (no job may have run here).
        jobs_dir.mkdir(parents=True, exist_ok=True)
        for name in sweep_report.LEADERBOARD_FILES:
            (jobs_dir.parent / name).write_text((folder / name).read_text())
    tags, metrics = sweep_report.parent_record(result, summary)
    runs.log_metrics(client, parent_run_id, metrics)
    runs.set_tags(client, parent_run_id, tags)
    if config.tracking.get("register_as"):
        champion.register_champion(client, config, parent_run_id, result)
    runs.end(client, parent_run_id, "FINISHED")
    sweep_report.print_outcome(result, parent_run_id)
    return dict(result.counts)
