"""A command's process ends with its status once exiting's real work is done, without Python's teardown."""

from __future__ import annotations

import textwrap

import pytest
from helpers import cli_env, run_python

PROBE = textwrap.dedent(
    """
    import atexit, sys, threading, time
    from pathlib import Path
    from cifarlab.runtime import teardown

    out = Path(sys.argv[1])
    teardown.arm()

    class FreedInTeardown:
        def __del__(self, write=(out / "teardown").write_text):
            write("ran")

    kept = FreedInTeardown()  # a global: only Python's teardown frees it
    atexit.register((out / "atexit").write_text, "ran")
    teardown.before_exit(lambda: (out / "cleanup").write_text("ran"))

    def late(write=(out / "thread").write_text):
        time.sleep(0.5)
        write("ran")

    threading.Thread(target=late).start()  # not a daemon: exiting waits for it
    print("last words", end="")  # held in the pipe's buffer until something flushes it
    if sys.argv[2] == "status":
        teardown.record_status(3)
        sys.exit(3)
    raise RuntimeError("escaped")
    """
)


def _probe(folder, mode: str, code: str = "3"):
    # Buffered as a user's pipe is (the CLI's tests otherwise run unbuffered), to see the flush.
    env = {key: value for key, value in cli_env().items() if key != "PYTHONUNBUFFERED"}
    script = PROBE.replace("record_status(3)", f"record_status({code})").replace(
        "sys.exit(3)", f"sys.exit({code})"
    )
    return run_python(script, str(folder), mode, cwd=folder, env=env)


def _ran(folder) -> set[str]:
    return {path.name for path in folder.iterdir()}


def test_a_recorded_status_ends_the_process_after_its_threads_and_exit_handlers_but_before_teardown(tmp_path):
    proc = _probe(tmp_path, "status")
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "last words"
    assert _ran(tmp_path) == {"thread", "atexit", "cleanup"}  # no "teardown"


def test_an_exception_that_escapes_leaves_python_to_exit_its_own_way(tmp_path):
    proc = _probe(tmp_path, "exception")
    assert proc.returncode == 1 and "RuntimeError: escaped" in proc.stderr
    assert proc.stdout == "last words"
    assert _ran(tmp_path) == {"thread", "atexit", "teardown"}  # the cleanups are for the fast exit


@pytest.mark.parametrize(("code", "status"), [("None", 0), ("0", 0), ("2", 2), ("143", 143)])
def test_the_status_is_sys_exits_argument(tmp_path, code, status):
    proc = _probe(tmp_path, "status", code)
    assert proc.returncode == status and "teardown" not in _ran(tmp_path)
