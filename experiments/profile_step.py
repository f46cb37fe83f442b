"""Where a training step's time goes: a run's model, built and compiled as cifarlab builds it,
trained on one fixed batch of random images, then traced with TensorFlow's profiler.

    python experiments/profile_step.py experiment=cifar10_fast_cpu
    python experiments/profile_step.py experiment=cifar10_fast_cpu trainer.precision=float32

Prints the best of three 20-step timings and the op time per step by kind of op and, for the
convolutions, by layer (summed over TensorFlow's compute threads: more than the step's wall time
when two ops run at once). PERFORMANCE.md ("Where the fast CPU preset's step goes") has a reading.
"""

from __future__ import annotations

import collections
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from cifarlab.bench.variants import build_compiled
from cifarlab.config.compose import compose_config
from cifarlab.data import DataSplits
from cifarlab.training.plan import assemble

TRACED_STEPS = 5


def compiled_model(overrides: list[str]) -> tuple[keras.Model, tf.data.Dataset]:
    plan = assemble(compose_config(overrides))
    rng = np.random.default_rng(0)
    shape, classes, batch = (32, 32, 3), 10, plan.trainer.batch_size

    def images(n: int) -> np.ndarray:
        return rng.integers(0, 255, (n, *shape), dtype=np.uint8)

    def labels(n: int) -> np.ndarray:
        return rng.integers(0, classes, n).astype(np.int64)

    data = DataSplits(images(512), labels(512), images(64), labels(64), images(64), labels(64),
                      [str(c) for c in range(classes)], "random")  # fmt: skip
    model = build_compiled(plan, data, steps_per_epoch=20, epochs=int(plan.trainer.epochs))
    x = rng.uniform(-1, 1, (batch, *shape)).astype("float32")
    y = np.eye(classes, dtype="float32")[rng.integers(0, classes, batch)]  # soft-label shaped, as mixup's
    return model, tf.data.Dataset.from_tensors((x, y)).repeat()


def best_step_ms(model: keras.Model, batches: tf.data.Dataset) -> float:
    model.fit(batches, steps_per_epoch=10, epochs=1, verbose=0)  # traced and warm
    times = []
    for _ in range(3):
        start = time.perf_counter()
        model.fit(batches, steps_per_epoch=20, epochs=1, verbose=0)
        times.append((time.perf_counter() - start) / 20 * 1000)
    return min(times)


def op_times(model: keras.Model, batches: tf.data.Dataset) -> tuple[collections.Counter, collections.Counter]:
    """Milliseconds a step by kind of op, and by (layer, kind) for the convolutions."""
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        model.fit(batches, steps_per_epoch=TRACED_STEPS, epochs=1, verbose=0)
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(next(Path(logdir).rglob("*.xplane.pb")).read_bytes())
    kinds: collections.Counter = collections.Counter()
    convs: collections.Counter = collections.Counter()
    for plane in space.planes:
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in (line for line in plane.lines if line.name.startswith("tf_Compute")):
            for event in line.events:
                name = names.get(event.metadata_id, "?")
                if name.startswith("ExecutorState"):  # the thread's whole busy time, not an op
                    continue
                kind, ms = name.rsplit(":", 1)[-1], event.duration_ps / 1e9 / TRACED_STEPS
                kinds[kind] += ms
                if "Conv2D" in kind:
                    layer = next(
                        (p for p in name.split("/") if p.startswith(("layer", "prep", "whiten"))), "?"
                    )
                    convs[(layer, kind)] += ms
    return kinds, convs


def main(overrides: list[str]) -> None:
    model, batches = compiled_model(overrides)
    print(f"{' '.join(overrides)}: best {best_step_ms(model, batches):.1f} ms a step")
    kinds, convs = op_times(model, batches)
    for kind, ms in kinds.most_common(10):
        print(f"{ms:8.2f} ms  {kind}")
    for (layer, kind), ms in sorted(convs.items()):
        print(f"{ms:8.2f} ms  {layer} {kind}")


if __name__ == "__main__":
    main(sys.argv[1:])
