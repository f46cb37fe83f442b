"""A waiting process passes the first Ctrl-C or SIGTERM on to its child, once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import process_alive

from cifarlab.runtime.child_signals import children_deaf_to_ctrl_c, forwarding

# Counts the SIGTERMs it gets for a second after saying it is ready.
COUNTER = """
import signal, sys, time
got = []
signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
print("ready", flush=True)
time.sleep(1.0)
print(len(got), signal.getsignal(signal.SIGINT) is signal.default_int_handler, flush=True)
"""


def _start_counter() -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", COUNTER], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return child


def test_the_first_signal_goes_to_the_child_once_even_when_it_came_before_the_child():
    with forwarding((signal.SIGINT, signal.SIGTERM)) as forwarder:
        os.kill(os.getpid(), signal.SIGTERM)  # before there is a child: kept
        child = _start_counter()
        forwarder.to(child)
        os.kill(os.getpid(), signal.SIGTERM)  # a second: dropped (it would stop the child at once)
        out, _ = child.communicate(timeout=30)
    assert out.split() == ["1", "True"]  # one SIGTERM; Ctrl-C heard, whatever this worker ignores
    assert signal.getsignal(signal.SIGTERM) is not forwarder.receive  # handlers restored


def _child_hears_ctrl_c() -> bool:
    """Whether a process started now would get a Ctrl-C: SIGINT neither blocked nor ignored."""
    code = (
        "import signal; print(signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, []) "
        "and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN)"
    )
    return (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "True"
    )


def test_a_ctrl_c_in_the_block_acts_after_it_and_children_started_there_never_hear_it():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal's command
    heard: list[bool] = []
    try:
        with pytest.raises(KeyboardInterrupt), children_deaf_to_ctrl_c():
            os.kill(os.getpid(), signal.SIGINT)  # the Ctrl-C lands while workers are submitted
            heard.append(_child_hears_ctrl_c())  # the block goes on: what it starts exists
        heard.append(_child_hears_ctrl_c())
    finally:
        signal.signal(signal.SIGINT, previous)
    assert heard == [False, True]
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # unblocked again


def test_a_process_started_deaf_to_ctrl_c_hears_the_one_sent_to_it_once_it_asks():
    code = (
        "import os, signal\n"
        "from cifarlab.runtime.child_signals import hear_ctrl_c\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "print('still here', flush=True)\n"
        "hear_ctrl_c()\n"
        "print('not reached', flush=True)\n"
    )
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with children_deaf_to_ctrl_c():
            child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert child.stdout.split("\n")[0] == "still here"
    assert "not reached" not in child.stdout and "KeyboardInterrupt" in child.stderr


SLEEPER = """
import signal, sys, time
if sys.argv[1] == "deaf":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""


def test_a_wait_cut_short_ends_the_child_with_sigterm_and_kills_one_that_will_not_end():
    for kind, expected in (("hears", -signal.SIGTERM), ("deaf", -signal.SIGKILL)):
        child = subprocess.Popen([sys.executable, "-c", SLEEPER, kind], stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        with forwarding((signal.SIGTERM,)) as forwarder:
            forwarder.to(child)
            forwarder.end_child(grace_s=1.0)
        assert child.returncode == expected, kind


# A parent that starts a sleeper which must end with it and ignore SIGUSR2, sends it SIGUSR2,
# prints the sleeper's pid and whether it still runs, and waits.
PARENT = f"""
import os, signal, subprocess, sys, time
from cifarlab.runtime.child_signals import ends_with_parent
child = subprocess.Popen([sys.executable, "-c", {SLEEPER!r}, "hears"], stdout=subprocess.PIPE, text=True,
                         preexec_fn=ends_with_parent(ignored=(signal.SIGUSR2,)))
assert child.stdout.readline().strip() == "ready"
os.kill(child.pid, signal.SIGUSR2)  # would end it, were it not ignored
time.sleep(0.5)
print(child.pid, child.poll(), flush=True)
child.wait()
"""


def test_a_child_started_to_end_with_its_parent_gets_sigterm_when_the_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pid, state = parent.stdout.readline().split()
    assert state == "None"  # SIGUSR2 ignored
    child_pid = int(pid)
    parent.kill()  # SIGKILL: no handler of its own can pass anything on
    parent.wait()
    deadline = time.monotonic() + 30
    while process_alive(child_pid):
        assert time.monotonic() < deadline, "the child outlived its killed parent"
        time.sleep(0.1)
