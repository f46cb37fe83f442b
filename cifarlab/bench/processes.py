"""Commands the benchmark runs in processes of their own, and the protocol of its workers.

A worker is ``python -m cifarlab bench --worker KIND --worker-args JSON``; it prints
one line, ``RESULT_PREFIX`` and its result as JSON, among whatever else it logs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

RESULT_PREFIX = "CIFARLAB_BENCH_RESULT "


def subprocess_env() -> dict[str, str]:
    """This environment, without settings that would send a measured run elsewhere or change its output."""
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("HYDRA_FULL_ERROR", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_command(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run ``cmd``; a failure raises with the tail of its output."""
    proc = subprocess.run(cmd, cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n"
            f"--- stderr\n{proc.stderr[-3000:]}"
        )
    return proc


def run_worker(kind: str, args: dict, cwd: Path, timeout: float) -> dict:
    """Run ``python -m cifarlab bench --worker kind`` and return the JSON it reports."""
    proc = run_command(
        [sys.executable, "-m", "cifarlab", "bench", "--worker", kind, "--worker-args", json.dumps(args)],
        cwd,
        timeout,
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    raise RuntimeError(f"worker {kind} reported nothing\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def report_worker_result(result: dict) -> None:
    """A worker's side of the protocol: the one line ``run_worker`` reads back."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def cfg_job_seconds(runs: int, workdir: Path, timeout: float) -> list[float]:
    """Wall seconds of each of ``runs`` runs of ``python -m cifarlab --cfg job``."""
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        run_command([sys.executable, "-m", "cifarlab", "--cfg", "job"], workdir, timeout)
        seconds.append(time.perf_counter() - start)
    return seconds
