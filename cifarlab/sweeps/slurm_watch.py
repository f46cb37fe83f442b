"""Why SLURM will not run the workers, said in one line with the override to change.

SLURM refuses some requests at submission (a GPU where no node has one, an
unknown partition, more memory than any node) and leaves others pending for
ever: more CPUs per task or a longer time limit than the partition allows pend
with a reason (``PartitionConfig``, ``PartitionTimeLimit``...) that no waiting
clears. ``refusal`` turns sbatch's error into the fix; ``stuck`` reads
``squeue`` for such reasons so that the command cancels the array and says so
instead of waiting in silence.
"""

from __future__ import annotations

import subprocess
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


def _fix(kind: str, options: Any) -> str:
    slurm = options.slurm
    return {
        "cpus": f"lower slurm.cpus_per_task={slurm.cpus_per_task} (or slurm.mem_gb, slurm.gpus_per_node)",
        "time": f"lower timeout_min={options.timeout_min}",
        "account": f"check slurm.account={slurm.account}",
        "partition": f"choose another slurm.partition (now {slurm.partition or 'the default'})",
        "gpu": f"use slurm.gpus_per_node=0 (now {slurm.gpus_per_node}) or a partition with GPUs",
        "memory": f"lower slurm.mem_gb={slurm.mem_gb} or slurm.cpus_per_task={slurm.cpus_per_task}",
    }[kind]


def refusal(message: str, options: Any) -> CifarlabError:
    """sbatch's error, with the override that caused it."""
    error = next((line for line in reversed(message.splitlines()) if "error" in line), message.strip())
    lowered = message.lower()
    kind = next((kind for needle, kind in REFUSALS if needle in lowered), "memory")
    where = _partition_line(options.slurm.partition)
    return CifarlabError(f"SLURM refused the workers ({error.strip()}; {where}): {_fix(kind, options)}")


def stuck(job_id: str, options: Any) -> CifarlabError | None:
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
    where = _partition_line(options.slurm.partition)
    return CifarlabError(
        f"SLURM job {job_id} would pend for ever ({never[0]}; {where}), so it was cancelled: "
        f"{_fix(NEVER_CLEARS[never[0]], options)}"
    )


def array_id(job_id: str) -> str:
    """The array's own id, from a task's (``1234_0``)."""
    return str(job_id).split("_")[0]


def cancel(job_id: str) -> None:
    """Cancel every task of the array."""
    subprocess.run(["scancel", array_id(job_id)], capture_output=True, timeout=30, check=False)
