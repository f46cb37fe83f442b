"""Why SLURM will not run a search's workers or a sweep's jobs, said in one line with the override to change.

SLURM refuses some requests at submission (a GPU where no node has one, an
unknown partition, more memory than any node) and leaves others pending for
ever: more CPUs per task or a longer time limit than the partition allows pend
with a reason (``PartitionConfig``, ``PartitionTimeLimit``...) that no waiting
clears. ``refusal`` turns sbatch's error into the fix; ``stuck`` reads
``squeue`` for such reasons so that the command cancels the jobs and says so
instead of waiting in silence. ``cifarlab.workers`` asks ``stuck`` between its
own polls; the ``hydra/launcher=slurm`` launcher, which waits inside submitit,
runs a ``cifarlab.sweeps.launch_watch.LaunchWatch`` beside it.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cifarlab.errors import CifarlabError

# Pending reasons no waiting clears (SLURM's squeue(1) "JOB REASON CODES").
NEVER_CLEARS = {
    "PartitionConfig": "cpus",
    "PartitionNodeLimit": "cpus",
    "BadConstraints": "cpus",
    "PartitionTimeLimit": "time",
    "InvalidAccount": "account",
    "InvalidQOS": "account",
    "PartitionDown": "partition",
    "PartitionInactive": "partition",
}
# What sbatch's refusal names -> what to change; anything else is a node configuration not available.
REFUSALS = (("gres", "gpu"), ("partition", "partition"), ("account", "account"), ("qos", "account"),
            ("time limit", "time"))  # fmt: skip
# sacct's complaint on clusters without accounting, each time submitit asks it for the jobs' states.
NO_ACCOUNTING = re.compile(r"^Slurm accounting storage is disabled")
# ... and sbatch's refusal, which submitit echoes before raising it: the refusal is said once, by us.
SCHEDULER_NOISE = re.compile(rf"{NO_ACCOUNTING.pattern}|^sbatch: error:")


@dataclass(frozen=True)
class SlurmRequest:
    """What was asked of SLURM, and the override that asks each part of it."""

    prefix: str  # "slurm." (cifarlab.workers) or "hydra.launcher." (the launcher)
    timeout_key: str
    partition: str | None
    cpus_per_task: int
    gpus_per_node: int
    mem_gb: int | None
    account: str | None
    timeout_min: int

    @classmethod
    def of_workers(cls, options: Any) -> SlurmRequest:
        """From ``cifarlab.workers``' options (``slurm.*``, ``timeout_min``)."""
        slurm = options.slurm
        return cls("slurm.", "timeout_min", slurm.partition, slurm.cpus_per_task, slurm.gpus_per_node,
                   slurm.mem_gb, slurm.account, options.timeout_min)  # fmt: skip

    @classmethod
    def of_launcher(cls, params: Mapping[str, Any]) -> SlurmRequest:
        """From the submitit launcher's parameters (``hydra.launcher.*``)."""
        return cls("hydra.launcher.", "hydra.launcher.timeout_min", params.get("partition"),
                   params.get("cpus_per_task") or 1, params.get("gpus_per_node") or 0, params.get("mem_gb"),
                   params.get("account"), params.get("timeout_min") or 0)  # fmt: skip

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"


def _partition_line(partition: str | None) -> str:
    """CPUs, memory (MB), GPUs and time limit of the partition's largest node, as sinfo says."""
    args = ["sinfo", "-h", "-o", "%P %c %m %G %l"] + (["-p", partition] if partition else [])
    try:
        lines = subprocess.run(args, capture_output=True, text=True, timeout=30).stdout.split("\n")
    except (OSError, subprocess.TimeoutExpired):
        return "sinfo did not answer"
    fields = [line.split() for line in lines if line.strip()]
    default = [f for f in fields if f[0].endswith("*")] or fields
    if not default:
        return f"no partition {partition!r}" if partition else "sinfo lists no partition"
    name, cpus, memory, gres, limit = (default[0] + [""] * 5)[:5]
    gpus = "no GPU" if gres in ("(null)", "") else gres
    return f"partition {name.rstrip('*')}: {cpus} CPUs, {memory} MB, {gpus}, time limit {limit}"


def _fix(kind: str, request: SlurmRequest) -> str:
    key = request.key
    return {
        "cpus": f"lower {key('cpus_per_task')}={request.cpus_per_task} (or {key('mem_gb')}, {key('gpus_per_node')})",
        "time": f"lower {request.timeout_key}={request.timeout_min}",
        "account": f"check {key('account')}={request.account}",
        "partition": f"choose another {key('partition')} (now {request.partition or 'the default'})",
        "gpu": f"use {key('gpus_per_node')}=0 (now {request.gpus_per_node}) or a partition with GPUs",
        "memory": f"lower {key('mem_gb')}={request.mem_gb} or {key('cpus_per_task')}={request.cpus_per_task}",
    }[kind]


def refusal(message: str, request: SlurmRequest) -> CifarlabError:
    """sbatch's error, with the override that caused it."""
    error = next((line for line in reversed(message.splitlines()) if "error" in line), message.strip())
    lowered = message.lower()
    kind = next((kind for needle, kind in REFUSALS if needle in lowered), "memory")
    where = _partition_line(request.partition)
    return CifarlabError(f"SLURM refused the jobs ({error.strip()}; {where}): {_fix(kind, request)}")


def stuck(job_id: str, request: SlurmRequest) -> CifarlabError | None:
    """An error when the array's tasks pend for a reason no waiting clears; None otherwise."""
    try:
        out = subprocess.run(
            ["squeue", "-h", "-j", array_id(job_id), "-o", "%T %r"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None  # squeue did not answer: keep waiting, ask again later
    reasons = {parts[1] for parts in (line.split() for line in out.splitlines()) if parts[:1] == ["PENDING"]}
    never = sorted(r for r in reasons if r in NEVER_CLEARS)
    if not never:
        return None
    where = _partition_line(request.partition)
    return CifarlabError(
        f"SLURM job {array_id(job_id)} would pend for ever ({never[0]}; {where}), so it was cancelled: "
        f"{_fix(NEVER_CLEARS[never[0]], request)}"
    )


def in_queue(job_id: str) -> bool:
    """Whether squeue still lists a task of the array (COMPLETING too: its processes are ending).
    An squeue that does not answer, or no longer knows the id, counts as gone."""
    try:
        proc = subprocess.run(
            ["squeue", "-h", "-j", array_id(job_id), "-o", "%T"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and bool(proc.stdout.strip())


def array_id(job_id: str) -> str:
    """The array's own id, from a task's (``1234_0``)."""
    return str(job_id).split("_")[0]


def cancel(job_id: str) -> bool:
    """Cancel every task of the array; False if scancel did not answer in time.

    scancel runs in its own session: a second Ctrl-C in the terminal must not kill it midway."""
    try:
        subprocess.run(
            ["scancel", array_id(job_id)],
            capture_output=True,
            timeout=30,
            check=False,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired:
        return False
    return True
