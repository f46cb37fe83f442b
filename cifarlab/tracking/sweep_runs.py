"""A sweep's runs in the store: its parent run found by the sweep's identity, its jobs' runs and their tags.

Reads and writes go through a client on the store (``cifarlab.tracking.store``),
by run id (see ``cifarlab.tracking.runs``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cifarlab.tracking import queries, runs

PARENT_ROLE = "parent"  # the sweep_role tag of a sweep's parent run
STALE_ERROR = "its process died before it could end the run; marked KILLED by its sweep"


def parents(client: Any, experiment_id: str, sweep_hash: str) -> list:
    """The sweep's parent runs (not deleted), first created first (ties: by run id, as every worker sees them)."""
    found = client.search_runs(
        [experiment_id],
        f"tags.sweep_hash = '{sweep_hash}' and tags.sweep_role = '{PARENT_ROLE}'",
        order_by=["attributes.start_time ASC"],
        max_results=100,
    )
    return sorted(found, key=lambda run: (run.info.start_time, run.info.run_id))


def create_parent(client: Any, experiment_id: str, name: str, tags: Mapping[str, Any]) -> str:
    """A new parent run tagged ``sweep_role=parent`` and ``tags`` (empty values left out); its id."""
    tags = {"sweep_role": PARENT_ROLE, **tags}
    return runs.create_run(client, experiment_id, name, {k: str(v) for k, v in tags.items() if v})


def running_children(client: Any, experiment: str, parent_run_id: str) -> list:
    """The parent's child runs still RUNNING."""
    experiment_id = queries.known_experiment_id(client, experiment)
    return queries.child_runs(client, experiment_id, parent_run_id, status="RUNNING")


def mark_killed(client: Any, run_id: str) -> None:
    """A run left RUNNING by a process that died: ended KILLED, with the reason as its error tag."""
    client.set_tag(run_id, "error", STALE_ERROR)
    runs.end(client, run_id, "KILLED")


def finished_run(client: Any, experiment: str, config_hash: str) -> Any | None:
    """The newest FINISHED run of experiment ``experiment`` with this config hash that was not pruned."""
    experiment_id = queries.experiment_id(client, experiment)
    if experiment_id is None:
        return None
    found = queries.runs_with_tag(client, experiment_id, "config_hash", config_hash, max_results=50)
    found = [run for run in found if run.data.tags.get("pruned") != "true"]  # pruned: ended early, not done
    return found[0] if found else None


def tag_job_run(client: Any, run_id: str, tags: Mapping[str, str]) -> None:
    """Tie a job's run to its sweep (job number, worker, Optuna trial); a resumed run is no longer pruned."""
    runs.set_tags(client, run_id, tags)
    if "optuna_trial" in tags:
        runs.delete_tag_if_set(client, run_id, "pruned")


def tag_pruned(client: Any, run_id: str, epoch: int) -> None:
    """The job's run was pruned after ``epoch`` (counted from 0): it ends FINISHED, marked as pruned."""
    runs.set_tags(client, run_id, {"pruned": "true", "pruned_at_epoch": str(epoch + 1)})
