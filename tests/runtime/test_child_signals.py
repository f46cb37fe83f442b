"""A waiting process passes the first Ctrl-C or SIGTERM on to its child, once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from cifarlab.runtime.child_signals import children_ignore_ctrl_c, forwarding

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


def _child_ignores_ctrl_c() -> bool:
    code = "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"
    return (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "True"
    )


def test_children_started_in_the_block_ignore_ctrl_c_and_later_ones_hear_it():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal's command
    try:
        with children_ignore_ctrl_c():
            inside = _child_ignores_ctrl_c()
        after = _child_ignores_ctrl_c()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (inside, after) == (True, False)
