"""The parent MLflow run of a sweep: open or reopen it, mark it KILLED if abandoned, close it with its report
(and with no child left RUNNING by a process that died).

Runs in the process that runs the sweeper (``cifarlab.sweeps.sweep_callback.SweepRecord``).
Everything goes through ``MlflowClient`` with an explicit tracking URI, never
the fluent API: with Hydra's basic launcher the jobs run in this same process
and each makes its own run the active one.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from mlflow import MlflowClient
from omegaconf import DictConfig

from cifarlab import tracking
from cifarlab.sweeps import leaderboard, study
from cifarlab.sweeps.job import read_job_records
from cifarlab.sweeps.leaderboard import ConfigGroup, Row, format_number, job_label, param_value, search_all
from cifarlab.training.lease import Lease

PARENT_TAGS = {"sweep_role": "parent"}
CHAMPION = "champion"  # the alias a sweep with tracking.register_as sets on its best model
MODEL_NAME = "model"  # the name training logs the model under (cifarlab.training.recording)
JOB_OUTCOMES = ("skipped", "finished", "failed", "pruned")
ELECTION_WAIT_S = 0.3  # see open_parent: lets a parent created in the same instant be seen


def _client(config: DictConfig) -> MlflowClient:
    return tracking.store_client(tracking.target_from_config(config).uri)


def _sweeper_name(config: DictConfig) -> str:
    return str(config.hydra.sweeper.get("_target_", "")).rsplit(".", 1)[-1]


def is_optuna(config: DictConfig) -> bool:
    return "cifarlab_optuna_sweeper" in str(config.hydra.sweeper.get("_target_", ""))


# --- open, abandon ----------------------------------------------------------------------------


def _parents(client: MlflowClient, experiment_id: str, sweep_hash: str) -> list:
    """The sweep's parent runs (not deleted), first created first (ties: by run id, as every worker sees them)."""
    runs = client.search_runs(
        [experiment_id],
        f"tags.sweep_hash = '{sweep_hash}' and tags.sweep_role = 'parent'",
        order_by=["attributes.start_time ASC"],
        max_results=100,
    )
    return sorted(runs, key=lambda run: (run.info.start_time, run.info.run_id))


def open_parent(config: DictConfig, sweep_hash: str) -> str:
    """Create the store and experiment, then the sweep's parent run, or reopen (or join) the one it has.

    Workers of one search started together may each find no parent and create one:
    then the first created wins, and the others delete theirs (before any job used it).
    """
    experiment_id = tracking.prepare_experiment(
        tracking.target_from_config(config)
    )  # raises CifarlabError for an unreachable server
    client = _client(config)
    earlier = _parents(client, experiment_id, sweep_hash)
    if earlier:
        run_id, was = earlier[0].info.run_id, earlier[0].info.status
        client.update_run(run_id, status="RUNNING")
        # RUNNING: another worker of this search runs it, or its last worker was killed.
        print(
            f"cifarlab: sweep: reopened parent run {run_id} (same sweep as before; it was {was})", flush=True
        )
        return run_id
    mine = _create_parent(client, config, experiment_id, sweep_hash)
    time.sleep(ELECTION_WAIT_S)  # a worker that searched at the same moment has created its own by now
    first = _parents(client, experiment_id, sweep_hash)[0].info.run_id
    if first != mine:
        client.delete_run(mine)
        print(
            f"cifarlab: sweep: joined parent run {first} (another worker of this sweep created it)",
            flush=True,
        )
        return first
    print(f"cifarlab: sweep: parent run {mine} in experiment '{config.tracking.experiment}'", flush=True)
    return mine


def _create_parent(client: MlflowClient, config: DictConfig, experiment_id: str, sweep_hash: str) -> str:
    overrides = " ".join(str(o) for o in config.hydra.overrides.task)
    name = config.hydra.sweeper.get("study_name") or f"sweep-{sweep_hash[:8]}"
    tags = {
        **PARENT_TAGS,
        "sweep_hash": sweep_hash,
        "sweeper": _sweeper_name(config),
        "sweep_overrides": overrides[:5000],
        "git_commit": tracking.git_commit(),
        **dict(config.tracking.get("tags") or {}),
    }
    run = client.create_run(experiment_id, run_name=str(name), tags={k: str(v) for k, v in tags.items() if v})
    return run.info.run_id


def abandon_parent(config: DictConfig, run_id: str) -> None:
    """The sweep ended without its end (it raised, or was interrupted): a RUNNING parent ends KILLED,
    and so do children left RUNNING by workers that were killed.

    A parent shared with other live workers of a search (a child still RUNNING under a
    live lease) is left RUNNING: the last worker to end closes it.
    """
    client = _client(config)
    # joblib kills its workers with SIGKILL when the sweep is interrupted: their runs could not end.
    end_stale_children(config, client, run_id)
    if client.get_run(run_id).info.status != "RUNNING":
        return
    if _others_running(config, client, run_id):
        print(
            f"cifarlab: sweep: stopped; parent run {run_id} stays RUNNING for the other workers", flush=True
        )
        return
    client.set_terminated(run_id, status="KILLED")
    print(
        f"cifarlab: sweep: interrupted; parent run {run_id} marked KILLED "
        "(run the same command again to finish it: FINISHED jobs are skipped)",
        flush=True,
    )


def _others_running(config: DictConfig, client: MlflowClient, parent_run_id: str) -> bool:
    """Whether a child is still trained by a live process that is not this sweep or its own worker."""
    for run in _running_children(config, client, parent_run_id):
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


def _running_children(config: DictConfig, client: MlflowClient, parent_run_id: str) -> list:
    experiment_id = client.get_experiment_by_name(config.tracking.experiment).experiment_id
    return search_all(
        client,
        [experiment_id],
        f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'RUNNING'",
    )


def end_stale_children(config: DictConfig, client: MlflowClient, parent_run_id: str) -> list[str]:
    """Children still RUNNING, that no live process trains, end KILLED (at the sweep's end or interruption).

    A rerun job resumes its own killed run; what is left RUNNING at the end is a run no
    job came back for (its process killed before the run could be resumed, an Optuna
    trial drawn anew), or one whose worker joblib killed. A run whose config's state
    lease (``cifarlab.training.lease``) has a live owner is left alone.
    """
    ended = []
    for run in _running_children(config, client, parent_run_id):
        if _lease_holder(config, run) is not None:
            continue
        client.set_tag(
            run.info.run_id,
            "error",
            "its process died before it could end the run; marked KILLED by its sweep",
        )
        client.set_terminated(run.info.run_id, status="KILLED")
        ended.append(run.info.run_id)
    if ended:
        print(
            f"cifarlab: sweep: {len(ended)} child run(s) left RUNNING by a dead process marked KILLED",
            flush=True,
        )
    return ended


# --- close ------------------------------------------------------------------------------------


@dataclass
class SweepOutcome:
    """What the sweep's jobs came to: ranked rows, their val accuracy curves, the swept keys, the counts."""

    rows: list[Row]
    histories: dict[str, list[tuple[int, float]]]
    keys: list[str]
    counts: dict[str, int]
    jobs: int

    @property
    def best(self) -> Row | None:
        finished = [r for r in self.rows if r.status == "FINISHED" and r.objective is not None]
        return finished[0] if finished else None

    @property
    def configs(self) -> list[ConfigGroup]:
        """The jobs grouped by config (differing only in their seed), best mean first."""
        return leaderboard.config_groups(self.rows, self.keys)

    @property
    def best_config(self) -> ConfigGroup | None:
        """The config with the best mean, when some config ran more than once (seeds); else None."""
        configs = self.configs
        repeated = any(len(g.rows) > 1 for g in configs)
        return configs[0] if repeated and configs[0].n else None


LEADERBOARD_FILES = (
    "leaderboard.csv",
    "leaderboard.md",
    "leaderboard_by_config.csv",
    "leaderboard_by_config.md",
)


def _outcome(
    config: DictConfig, client: MlflowClient, parent_run_id: str, jobs_dir: Path, worker: str | None
) -> SweepOutcome:
    records = read_job_records(jobs_dir, worker)
    experiment_id = client.get_experiment_by_name(config.tracking.experiment).experiment_id
    rows = leaderboard.sweep_rows(client, experiment_id, parent_run_id, records)
    histories = leaderboard.val_accuracy_histories(client, rows)
    rows = leaderboard.ranked(rows)
    counts = {s: sum(1 for r in records if r["status"] == s) for s in JOB_OUTCOMES}
    return SweepOutcome(rows, histories, leaderboard.swept_keys(config, rows), counts, len(records))


def _write_report(config: DictConfig, outcome: SweepOutcome, folder: Path) -> dict[str, Any]:
    """Leaderboard, figures, the Optuna report and sweep_summary.json in ``folder``; the summary."""
    best = outcome.best
    summary: dict[str, Any] = {
        "jobs": outcome.jobs,
        **outcome.counts,
        "best_run_id": best.run_id if best else None,
    }
    csv_text, md_text = leaderboard.leaderboard(outcome.rows, outcome.keys)
    (folder / "leaderboard.csv").write_text(csv_text)
    (folder / "leaderboard.md").write_text(md_text)
    csv_text, md_text = leaderboard.config_leaderboard(outcome.configs, outcome.keys)
    (folder / "leaderboard_by_config.csv").write_text(csv_text)
    (folder / "leaderboard_by_config.md").write_text(md_text)
    if outcome.best_config is not None:
        summary["best_config"] = _config_summary(outcome.best_config)
    figure = leaderboard.val_accuracy_figure(outcome.rows, outcome.histories, outcome.keys)
    figure.savefig(folder / "val_accuracy_per_epoch.png", dpi=110)
    leaderboard.objective_figure(outcome.rows, outcome.keys).savefig(
        folder / "objective_vs_params.png", dpi=110
    )
    if is_optuna(config):
        summary["optuna"] = study.study_report(config, folder)
    (folder / "sweep_summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _config_summary(group: ConfigGroup) -> dict[str, Any]:
    val, test = group.stats("best_val_accuracy"), group.stats("test_accuracy")
    return {
        "params": group.params,
        "n": group.n,
        "val_accuracy_mean": val[0],
        "val_accuracy_std": val[1],
        "test_accuracy_mean": test[0],
        "test_accuracy_std": test[1],
        "run_ids": [r.run_id for r in group.finished],
    }


def _tag_best_config(client: MlflowClient, parent_run_id: str, group: ConfigGroup | None) -> None:
    """The config with the best mean over its seeds: its params and n as tags, its means and stds as metrics."""
    if group is None:
        return
    summary = _config_summary(group)
    client.set_tag(parent_run_id, "best_config", group.label[:5000])
    client.set_tag(parent_run_id, "best_config.n", str(group.n))
    for key in ("val_accuracy_mean", "val_accuracy_std", "test_accuracy_mean", "test_accuracy_std"):
        if summary[key] is not None:
            client.log_metric(parent_run_id, f"best_config/{key}", float(summary[key]))


def _tag_best(
    client: MlflowClient, parent_run_id: str, outcome: SweepOutcome, summary: dict[str, Any]
) -> None:
    """Job counts, the best run and its parameters as tags of the parent; its accuracies as metrics."""
    rows, best = outcome.rows, outcome.best
    tags = {
        "jobs": str(len(rows)),
        "jobs_failed": str(sum(1 for r in rows if r.status == "FAILED")),
        "jobs_pruned": str(sum(1 for r in rows if r.note == "pruned")),
    }
    if best is not None:
        tags.update(best_run_id=best.run_id, best_val_accuracy=format_number(best.objective))
        tags.update({f"best.{k}": str(param_value(best, k)) for k in outcome.keys})
        client.log_metric(parent_run_id, "best/val_accuracy", float(best.objective))
        if best.test_accuracy is not None:
            client.log_metric(parent_run_id, "best/test_accuracy", float(best.test_accuracy))
    _tag_best_config(client, parent_run_id, outcome.best_config)
    optuna_best = (summary.get("optuna") or {}).get("best_params") or {}
    tags.update({f"best.{k}": str(v) for k, v in optuna_best.items()})
    for key, value in tags.items():
        client.set_tag(parent_run_id, key, value[:5000])


def _print_outcome(outcome: SweepOutcome, parent_run_id: str) -> None:
    counts, best = outcome.counts, outcome.best
    pruned = f", {counts['pruned']} pruned" if counts["pruned"] else ""
    jobs = "job" if counts["skipped"] == 1 else "jobs"
    print(
        f"cifarlab: sweep: {counts['skipped']} {jobs} skipped (already FINISHED), {counts['finished']} ran, "
        f"{counts['failed']} failed{pruned}",
        flush=True,
    )
    if best is not None:
        label = job_label(best, outcome.keys)
        print(
            f"cifarlab: sweep: best job run {best.run_id} (val accuracy {best.objective:.4f}): {label}",
            flush=True,
        )
    group = outcome.best_config
    mean, std = group.stats("best_val_accuracy") if group is not None else (None, None)
    if group is not None and mean is not None:
        spread = f" ± {std:.4f}" if std is not None else ""
        print(
            f"cifarlab: sweep: best config by mean over n={group.n} (val accuracy {mean:.4f}{spread}): {group.label}",
            flush=True,
        )
    print(f"cifarlab: sweep: leaderboard and figures in parent run {parent_run_id}", flush=True)


def close_parent(
    config: DictConfig, parent_run_id: str, jobs_dir: Path, worker: str | None = None
) -> dict[str, Any]:
    """Leaderboard, figures, best run on the parent; end it FINISHED; print this worker's job counts.

    The leaderboard covers every child of the parent, whichever worker ran it; each
    worker of a shared search writes it again as it ends, the last one with every trial.
    """
    client = _client(config)
    end_stale_children(config, client, parent_run_id)
    outcome = _outcome(config, client, parent_run_id, jobs_dir, worker)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        summary = _write_report(config, outcome, folder)
        for path in sorted(folder.iterdir()):
            client.log_artifact(parent_run_id, str(path))
        # A copy beside Hydra's outputs, for a look without MLflow.
        for name in LEADERBOARD_FILES:
            (jobs_dir.parent / name).write_text((folder / name).read_text())
    _tag_best(client, parent_run_id, outcome, summary)
    if config.tracking.get("register_as"):
        _register_champion(client, config, parent_run_id, outcome)
    client.set_terminated(parent_run_id, status="FINISHED")
    _print_outcome(outcome, parent_run_id)
    return summary


# --- the registered champion ----------------------------------------------------------------


def _champion_row(outcome: SweepOutcome) -> Row | None:
    """The best run of the best config by mean over its seeds, else the best job."""
    group = outcome.best_config
    if group is not None:
        ranked = [r for r in group.finished if r.objective is not None]
        if ranked:
            return ranked[0]
    return outcome.best


def _model_version(client: MlflowClient, config: DictConfig, name: str, run_id: str) -> str | None:
    """The version of ``name`` that holds the run's model: the one its job registered, else a new one."""
    versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if versions:
        return str(max(int(v.version) for v in versions))
    experiment_id = client.get_experiment_by_name(config.tracking.experiment).experiment_id
    logged = client.search_logged_models(
        [experiment_id], filter_string=f"source_run_id = '{run_id}' and name = '{MODEL_NAME}'"
    )
    if not logged:
        return None
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    model = logged[0]
    return str(
        client.create_model_version(
            name, f"models:/{model.model_id}", run_id, model_id=model.model_id
        ).version
    )


def _register_champion(
    client: MlflowClient, config: DictConfig, parent_run_id: str, outcome: SweepOutcome
) -> None:
    """The sweep's best model as a version of ``tracking.register_as``, with the alias ``champion``."""
    name, best = str(config.tracking.register_as), _champion_row(outcome)
    version = _model_version(client, config, name, best.run_id) if best is not None else None
    if version is None:
        print(f"cifarlab: sweep: no logged model of a finished job to register as {name}", flush=True)
        return
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_tag(parent_run_id, "registered_model", f"models:/{name}@{CHAMPION} (version {version})")
    print(f"cifarlab: registered model {name} version {version} as models:/{name}@{CHAMPION}", flush=True)
