"""``trainer.fast_dropout=auto``: use FastDropout only where it measures faster here.

FastDropout's cheaper random mask is not faster everywhere: cnn_bn trained at 0.82x
with it on an Intel CPU with AMX and at ~1.01x on an AMD EPYC. So ``auto`` times a training
step of a cnn_bn block (two convs, max-pool, dropout; 64 x 32 x 32 x 32 float32) with
Keras's Dropout against one with FastDropout, alternated, best of several calls each (under
a second), and switches it on only when it is at least ``MARGIN`` faster. The
verdict is cached per machine (CPU model, ISA features, TensorFlow version) in
``cache_dir()``, so a machine calibrates once. ``CIFARLAB_CALIBRATE=0`` skips the
calibration (the test suite sets it): ``auto`` is then Keras's Dropout, the reference.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tensorflow as tf
from keras import layers

from cifarlab.models.layers.fast_dropout import FastDropout
from cifarlab.runtime.hardware import machine_key

# Below this the gain is within the calibration's noise (x1.00-1.04 in four calibrations on the
# 2-core AMD EPYC, where cnn_bn measured x0.99-1.01): keep Keras's layer, the reference.
MARGIN = 1.05
METHOD = "cnn_bn block, float32"  # a cached verdict of another method is measured again
SHAPE = (64, 32, 32, 32)  # cnn_bn's first block output at batch 64
RATE = 0.25
ROUNDS = 4
CALLS = 3
CACHE_FILE = "calibration.json"


def cache_dir() -> Path:
    """``$CIFARLAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/cifarlab``, else ``~/.cache/cifarlab``."""
    if os.environ.get("CIFARLAB_CACHE_DIR"):
        return Path(os.environ["CIFARLAB_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cifarlab"


def calibration_enabled() -> bool:
    return os.environ.get("CIFARLAB_CALIBRATE", "1").strip().lower() not in ("0", "false", "no", "off")


def _step(dropout: layers.Layer, channels: int) -> Callable[[tf.Tensor], tf.Tensor]:
    """One training forward and backward through a cnn_bn block (conv, ELU, conv, ELU, max-pool) and
    ``dropout``, compiled: dropout timed in its share of a model's step, not alone (alone, FastDropout
    measured x1.5 here, in a conv-dropout step x1.15, in cnn_bn x1.00)."""
    convs = [layers.Conv2D(channels, 3, padding="same", activation="elu") for _ in range(2)]

    @tf.function
    def step(x: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.nn.max_pool2d(convs[1](convs[0](x)), 2, 2, "VALID")
            loss = tf.reduce_sum(dropout(y, training=True))
        return tape.gradient(loss, [x, *convs[0].trainable_variables, *convs[1].trainable_variables])[0]

    return step


def _best_call_seconds(step: Callable[[tf.Tensor], tf.Tensor], x: tf.Tensor) -> float:
    best = float("inf")
    for _ in range(CALLS):
        start = time.perf_counter()
        step(x).numpy()
        best = min(best, time.perf_counter() - start)
    return best


def measure_speedup(shape: tuple[int, ...] = SHAPE, rounds: int = ROUNDS) -> float:
    """Best step time with Keras's Dropout / with FastDropout: above 1, FastDropout is faster here."""
    x = tf.random.normal(shape, seed=0)
    steps = {
        "keras": _step(layers.Dropout(RATE, seed=1), shape[-1]),
        "fast": _step(FastDropout(RATE, seed=1), shape[-1]),
    }
    for step in steps.values():
        step(x).numpy()  # trace
    best = {name: float("inf") for name in steps}
    for r in range(rounds):
        for name in sorted(steps, reverse=bool(r % 2)):  # each side first in turn
            best[name] = min(best[name], _best_call_seconds(steps[name], x))
    return best["keras"] / best["fast"]


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def calibrate(directory: Path | None = None) -> dict[str, Any]:
    """This machine's verdict, from the cache or measured now (and cached): ``speedup`` and ``use``."""
    path = (directory or cache_dir()) / CACHE_FILE
    key = machine_key(tf.__version__)
    cache = _read_cache(path)
    entry = cache.get(key, {}).get("fast_dropout")
    if entry is not None and entry.get("method") == METHOD and entry.get("margin") == MARGIN:
        return {**entry, "cached": True}
    speedup = measure_speedup()
    entry = {
        "speedup": speedup,
        "use": speedup >= MARGIN,
        "margin": MARGIN,
        "method": METHOD,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    cache.setdefault(key, {})["fast_dropout"] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=2) + "\n")
        tmp.replace(path)  # atomic: concurrent runs never read half a file
    except OSError:
        pass  # a read-only home: the verdict holds for this run only
    return {**entry, "cached": False}


def resolve_fast_dropout(setting: Any, directory: Path | None = None) -> bool:
    """``trainer.fast_dropout``: true/false as given; ``auto`` by this machine's (cached) calibration."""
    if setting != "auto":
        return bool(setting)
    if not calibration_enabled():
        return False
    verdict = calibrate(directory)
    if not verdict["cached"]:
        choice = "FastDropout" if verdict["use"] else "Keras's Dropout"
        print(
            f"cifarlab: trainer.fast_dropout=auto: FastDropout measured x{verdict['speedup']:.2f} here; "
            f"using {choice} (cached in {(directory or cache_dir()) / CACHE_FILE})",
            flush=True,
        )
    return bool(verdict["use"])
