"""Ctrl-C and SIGTERM during training act between batches, never inside TensorFlow.

Raised where it landed, a SIGTERM once vanished inside an eager op (TensorFlow's C++
called back into Python, took the exception for a failed fast path and ran the op
another way: the run trained on to its end) and once crashed the process. Real
signals, sent by the process to itself, in a process of its own.
"""

from __future__ import annotations

from helpers import run_python

KEPT_UNTIL_A_SAFE_POINT = """
import os, signal
from cifarlab.runtime.interrupts import Terminated, signals_deferred, stop_if_signalled, stop_on_sigterm

stop_on_sigterm()
ours = signal.getsignal(signal.SIGTERM)
reached = []
try:
    with signals_deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        reached.append("after the signal")  # the block goes on
        stop_if_signalled()
        reached.append("after the safe point")
except Terminated:
    print(*reached, "|", signal.getsignal(signal.SIGTERM) is ours, sep=",")
"""


def test_a_signal_waits_for_the_safe_point_and_raises_there_through_its_own_handler(tmp_path):
    proc = run_python(KEPT_UNTIL_A_SAFE_POINT, cwd=tmp_path)
    assert proc.stdout.strip() == "after the signal,|,True", proc.stderr
    assert "cifarlab: SIGTERM: stopping after this batch; SIGTERM again stops at once" in proc.stderr


SECOND_SIGNAL_AND_BLOCK_END = """
import os, signal
from cifarlab.runtime.interrupts import Terminated, signals_deferred, stop_on_sigterm

stop_on_sigterm()
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a shell (pytest's worker ignores it)
reached = []
try:
    with signals_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        reached.append("first")
        os.kill(os.getpid(), signal.SIGTERM)  # a second signal acts at once
        reached.append("second")
except Terminated:
    print("second at once", reached)
try:
    with signals_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        reached.append("kept")
except KeyboardInterrupt as err:  # raised as the block ended
    print("at the end", type(err).__name__, reached)
"""


def test_a_second_signal_acts_at_once_and_a_kept_one_is_raised_when_the_block_ends(tmp_path):
    proc = run_python(SECOND_SIGNAL_AND_BLOCK_END, cwd=tmp_path)
    assert proc.stdout.splitlines() == [
        "second at once ['first']",
        "at the end KeyboardInterrupt ['first', 'kept']",
    ], proc.stderr


SIGTERM_FROM_TWO_SENDERS = """
import os, signal, sys, time
from cifarlab.runtime.interrupts import SAME_SIGTERM_S, Terminated, signals_deferred, stop_if_signalled, stop_on_sigterm

stop_on_sigterm()
reached = []
try:
    with signals_deferred():
        os.kill(os.getpid(), signal.SIGTERM)  # SLURM's, to every process of the step
        os.kill(os.getpid(), signal.SIGTERM)  # the worker's task passing the same request on
        reached.append("kept")
        stop_if_signalled()
except Terminated:
    print("at the safe point", reached)
try:
    with signals_deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(SAME_SIGTERM_S + 0.5)
        os.kill(os.getpid(), signal.SIGTERM)  # later: someone asks again, so it acts at once
        reached.append("not reached")
except Terminated:
    print("later at once", reached)
"""


def test_a_sigterm_repeated_at_once_is_one_request_and_a_later_one_acts_at_once(tmp_path):
    proc = run_python(SIGTERM_FROM_TWO_SENDERS, cwd=tmp_path)
    assert proc.stdout.splitlines() == ["at the safe point ['kept']", "later at once ['kept']"], proc.stderr


AN_ERROR_WHILE_A_SIGNAL_IS_KEPT = """
import os, signal
from cifarlab.runtime.interrupts import signals_deferred, stop_on_sigterm

stop_on_sigterm()
try:
    with signals_deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        raise OSError("No space left on device")  # e.g. the output could not be written
except BaseException as err:
    print(type(err).__name__, err)
"""


def test_an_error_in_the_block_while_a_signal_is_kept_is_the_error_that_surfaces(tmp_path):
    proc = run_python(AN_ERROR_WHILE_A_SIGNAL_IS_KEPT, cwd=tmp_path)
    assert proc.stdout.strip() == "OSError No space left on device", proc.stderr


# A SIGTERM sent at the start of batch 2 of 6: training stops once that batch has ended.
FIT_STOPPED_BETWEEN_BATCHES = """
import os, signal
import keras, numpy as np
from cifarlab.runtime.interrupts import Terminated, signals_deferred, stop_on_sigterm
from cifarlab.runtime.batch_signals import StopOnSignal

class Batches(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.ended = []
    def on_train_batch_begin(self, batch, logs=None):
        if batch == 2:
            os.kill(os.getpid(), signal.SIGTERM)
    def on_train_batch_end(self, batch, logs=None):
        self.ended.append(batch)

stop_on_sigterm()
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
model.compile("sgd", "sparse_categorical_crossentropy")
x, y = np.zeros((48, 4), "float32"), np.zeros(48, "int64")
batches = Batches()
try:
    with signals_deferred():
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[batches, StopOnSignal()])
except Terminated:
    print("stopped after batches", batches.ended)
"""


def test_fit_stops_at_the_end_of_the_batch_the_signal_came_in(tmp_path):
    proc = run_python(FIT_STOPPED_BETWEEN_BATCHES, cwd=tmp_path)
    assert proc.stdout.strip() == "stopped after batches [0, 1, 2]", proc.stderr
