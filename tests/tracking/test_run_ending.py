"""A signal that lands while a run is being ended does not leave it RUNNING.

``mlflow.end_run`` first waits for the system-metrics thread (up to its sampling
interval) and only then writes the status: a SIGTERM in that window (a sweep's
watchdog stopping a job that was just finishing, caught once in CI) used to
leave the run RUNNING for good.
"""

from __future__ import annotations

from helpers import all_runs, run_python

# Opens a run with system metrics on; as the block ends, a thread sends SIGTERM every
# 20 ms until the process exits, so that signals land inside the ending whatever the
# machine's speed.
ENDING_UNDER_SIGTERM = """
import os, signal, sys, threading, time
from cifarlab.runtime.interrupts import stop_on_sigterm
from cifarlab.tracking.recorder import open_run
from cifarlab.tracking.target import TrackingTarget

def keep_terminating():
    while True:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.02)

stop_on_sigterm()
target = TrackingTarget(uri=f"sqlite:///{sys.argv[1]}/mlflow.db", system_metrics=True)
with open_run(target, resume_run_id=None, run_name="ending", tags={}) as recorder:
    recorder.log_metrics({"loss": 1.0}, step=0)
    threading.Thread(target=keep_terminating, daemon=True).start()
    time.sleep(0.05)  # the first signal raises here, inside the run: it ends KILLED
"""


def test_sigterms_during_the_ending_still_end_the_run(tmp_path):
    store = tmp_path / "mlruns"
    store.mkdir()
    proc = run_python(ENDING_UNDER_SIGTERM, str(store), cwd=tmp_path)
    assert proc.returncode != 0 and "Terminated" in proc.stderr  # the first signal stopped it
    (run,) = all_runs(store)
    assert run.info.status == "KILLED"  # later signals, inside the ending, did not leave it RUNNING
    assert run.data.tags["error"].startswith("Terminated")


HELD_THEN_RAISED = """
import os, signal
from cifarlab.runtime.interrupts import Terminated, signals_held, stop_on_sigterm

stop_on_sigterm()
before = signal.getsignal(signal.SIGINT)  # SIG_IGN where the parent (a pytest-xdist worker) ignored it
done = False
try:
    with signals_held():
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        done = True  # neither signal cut the block short
except Terminated:
    print("held", done, signal.getsignal(signal.SIGINT) is before)
"""


def test_signals_held_during_a_block_are_raised_after_it_by_their_own_handlers(tmp_path):
    proc = run_python(HELD_THEN_RAISED, cwd=tmp_path)
    assert proc.stdout.split() == ["held", "True", "True"], proc.stderr
