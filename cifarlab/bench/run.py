"""Performance benchmark of cifarlab on this machine.

    python -m cifarlab.bench [--quick] [--out bench.json] [--data-dir DIR] [--synthetic]

Measures, on CIFAR-shaped data (the real 5k subset in ``../shared/data/cifar10-subset``
beside the checkout when present, or ``--data-dir``; generated 32x32x3 images otherwise):

- ``pipeline_images_per_s``: the tf.data training pipeline alone (cnn_bn's
  ``shift_flip_rotate`` augmentation, batch 64), nothing consuming it but a loop;
- ``train_images_per_s``: cnn_bn training (cifarlab's compile: Nadam, batch 64) fed by it;
- ``pipeline_stall_ratio``: throughput fed by the pipeline / throughput fed the same
  augmented batches prepared in memory in advance (1.0: the pipeline never stalls training);
- ``framework_overhead_ratio``: steady per-epoch time of a real ``python -m cifarlab``
  run (default callbacks, MLflow on; epoch timing read back from MLflow) / that of a
  bare ``keras.Model.fit`` of the same model, split, batch size, augmentation and
  validation data, each in its own subprocess, run alternately; the first epoch
  (tracing) is dropped;
- ``cfg_job_seconds``: median wall time of ``python -m cifarlab --cfg job``;
- ``flops_utilization``: cnn_bn's training FLOP/s (analytic count: 2 x MACs of every
  Conv/Dense forward, x3 for forward + backward) / a measured fp32 matmul peak;
- ``mlflow_overhead_ratio``: one call of cifarlab's per-epoch MLflow logger into a real
  SQLite store / the steady epoch time;
- ``speedup_<switch>``: cnn_bn training throughput with one speed switch / the default
  (XLA, mixed_bfloat16, thread settings, steps_per_execution, caching), with a short
  accuracy check for the switches that change the arithmetic; for switches on by default
  (fused BatchNorm, frozen cancelled biases, fast dropout, and bfloat16 where
  ``trainer.precision=auto`` picks it): the default / the switch off.

Load from other processes only ever slows a measurement down, and this machine's
speed drifts by ~15% over minutes. So every variant is measured in several rounds,
alternated (rotating order) with the others. Within a measurement, a training
throughput is that of its fastest run of consecutive steps (``Plan.window_steps``),
as the matmul peak is the fastest of its repeats: the same best-of estimate on
both sides of a ratio. Throughputs are the best round (the closest to what this
machine does); ratios (FLOP utilisation, speedups) are the median over rounds of
the ratio measured within each round, so both sides of a ratio are taken seconds
apart and drift cancels. The stall ratio, which must resolve a few percent, is the
median over ``1 + Plan.stall_pairs`` pairs a round, each pair's two sides measured
back to back, each side first in turn. Ratios of the bests are kept in ``details``.
Nothing here asserts on time: the targets are reported, met or not.
"""

from __future__ import annotations

import os

import argparse
import json
import math
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "CIFARLAB_BENCH_RESULT "

# key -> (comparison, target, unit, what it is)
TARGETS: dict[str, tuple[str | None, float | None, str, str]] = {
    "pipeline_images_per_s": (None, None, "img/s", "tf.data pipeline alone, shift_flip_rotate, batch 64"),
    "train_images_per_s": (None, None, "img/s", "cnn_bn training fed by the pipeline"),
    "pipeline_stall_ratio": (">=", 0.95, "", "pipeline-fed / pre-materialised training throughput"),
    "framework_overhead_ratio": ("<=", 1.05, "", "python -m cifarlab epoch / bare model.fit epoch"),
    "cfg_job_seconds": ("<=", 1.5, "s", "python -m cifarlab --cfg job, median"),
    "flops_utilization": (">=", 0.6, "", "cnn_bn training FLOP/s / fp32 matmul peak"),
    "mlflow_overhead_ratio": ("<", 0.01, "", "per-epoch MLflow logging / epoch time"),
}
SWITCHES = ("jit_compile", "mixed_bfloat16", "autocast_bfloat16", "threads", "steps_per_execution", "caching",
            "input_parallelism",
            "fused_batchnorm", "freeze_cancelled_bias", "fast_dropout")
# Switches already on by default (tests/test_fast_training.py pins what each keeps): measured as default / switched off.
DEFAULT_ON = ("fused_batchnorm", "freeze_cancelled_bias", "fast_dropout")
ACCURACY_NOTES = {
    "fused_batchnorm": "same results as plain Keras (tests/test_fast_training.py)",
    "freeze_cancelled_bias": "same results as plain Keras (tests/test_fast_training.py)",
    "fast_dropout": "other random masks, same drop rate and expectation (tests/test_fast_training.py)",
}
# trainer.precision settings measured against float32; the one precision=auto picks here is the default.
PRECISION_SWITCHES = ("mixed_bfloat16", "autocast_bfloat16")
# Switches that change the arithmetic, so get a short accuracy check.
ARITHMETIC_SWITCHES = ("jit_compile", *PRECISION_SWITCHES)
REQUIRED_KEYS = tuple(TARGETS) + tuple(f"speedup_{s}" for s in SWITCHES)

# Thread settings tried: (intra_op, inter_op); (0, 0) is TensorFlow's default (one per core).
THREAD_SETTINGS = ((2, 1), (1, 1), (1, 2))
# Training accuracy (last epoch of the short check) a switch may lose and still "hold". The
# check compares training accuracy: after a few hundred steps, test accuracy mostly measures
# how far BatchNormalization's moving statistics (momentum 0.99) still lag, not the switch.
ACCURACY_TOLERANCE = 0.03
SPEEDUP_THRESHOLD = 1.03  # below this a "speedup" is within the noise of a shared machine


@dataclass(frozen=True)
class Plan:
    """How much to measure: ``full`` (default), ``quick`` (under 10 minutes on 2 cores), ``tiny`` (tests)."""

    name: str
    rounds: int  # in-process rounds over all training variants
    warm_steps: int  # steps run before timing starts in each measurement (multiple of spe)
    measure_steps: int  # steps timed in each measurement (multiple of spe)
    window_steps: int  # throughput: the fastest this many consecutive timed steps (multiple of spe)
    steps_per_execution: int
    pipeline_batches: int
    matmul_n: int
    matmul_repeats: int
    cfg_job_runs: int
    overhead_pairs: int
    overhead_epochs: int
    mlflow_epochs: int
    accuracy_epochs: int
    thread_rounds: int
    stall_pairs: int = 0  # extra back-to-back pipeline/memory pairs per round, for the stall ratio only
    thread_settings: tuple[tuple[int, int], ...] = THREAD_SETTINGS
    always_check_accuracy: bool = True  # else only switches measured faster get the accuracy check
    # quick: start no round after this many seconds of the bench (at least min_rounds), so a
    # busy machine still finishes in time; the stages after the rounds take a fixed amount of work.
    rounds_deadline_s: float | None = None
    min_rounds: int = 1
    overhead_log_model: bool = True  # log the trained model in the overhead runs (after the timed epochs)
    concurrent: bool = False  # run the subprocess stages beside the in-process one (tiny: no timing meaning)
    model_overrides: tuple[str, ...] = ()  # tiny: a one-block cnn_bn, so tracing and XLA take seconds
    synthetic_per_class: int = 500
    subprocess_timeout_s: float = 900.0


PLANS = {
    "full": Plan("full", rounds=8, warm_steps=8, measure_steps=48, window_steps=16, steps_per_execution=4, pipeline_batches=150,
                 matmul_n=2048, matmul_repeats=6, cfg_job_runs=9, overhead_pairs=4, overhead_epochs=5,
                 mlflow_epochs=20, accuracy_epochs=4, thread_rounds=2, stall_pairs=2),
    "quick": Plan("quick", rounds=5, warm_steps=4, measure_steps=16, window_steps=8, steps_per_execution=4, pipeline_batches=60,
                  matmul_n=2048, matmul_repeats=4, cfg_job_runs=5, overhead_pairs=1, overhead_epochs=3,
                  mlflow_epochs=8, accuracy_epochs=2, thread_rounds=1, thread_settings=((2, 1),), stall_pairs=2,
                  always_check_accuracy=False, rounds_deadline_s=200, min_rounds=3, overhead_log_model=False),
    # tiny: 2 rounds asked, the deadline lets 1 run (tests/test_bench.py checks it).
    "tiny": Plan("tiny", rounds=2, rounds_deadline_s=1e-9, warm_steps=2, measure_steps=2, window_steps=2, steps_per_execution=2, pipeline_batches=3,
                 matmul_n=128, matmul_repeats=2, cfg_job_runs=1, overhead_pairs=1, overhead_epochs=2, stall_pairs=1,
                 mlflow_epochs=2, accuracy_epochs=1, thread_rounds=1, thread_settings=((1, 1),),
                 synthetic_per_class=20, subprocess_timeout_s=300.0, concurrent=True,
                 model_overrides=("model.filters=[8]", "model.dropout=[0.1]", "model.dense_units=16")),
}


# ----------------------------------------------------------------------------- helpers


def default_subset() -> Path:
    """The shared 5k CIFAR-10 subset beside the checkout (as tests/conftest.py finds it)."""
    return REPO_ROOT.parent / "shared" / "data" / "cifar10-subset"


def data_overrides(data_dir: Path | None, synthetic_per_class: int) -> tuple[list[str], str]:
    """Hydra overrides selecting the benchmark data, and a description of it."""
    if data_dir is not None:
        return ["dataset=cifar10", f"dataset.data_dir={data_dir}", "dataset.download=false"], f"cifar10 at {data_dir}"
    n = synthetic_per_class
    return [
        "dataset=synthetic", "dataset.image_size=32", "dataset.channels=3", "dataset.num_classes=10",
        f"dataset.samples_per_class={n}", f"dataset.test_samples_per_class={max(2, n // 5)}",
        "dataset.val_fraction=0.1",
    ], f"synthetic 32x32x3, 10 classes x {n}"


BASE_OVERRIDES = ["model=cnn_bn", "augmentation=shift_flip_rotate"]


def compose(overrides: Sequence[str]):
    """cifarlab's config with ``overrides``, composed as the CLI does (no Hydra run)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from cifarlab.config.schema import register_configs, validate
    from cifarlab.config.locations import conf_dir
    from cifarlab.config.presets import register_experiments

    register_configs()
    register_experiments()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    GlobalHydra.instance().clear()
    validate(cfg)
    return cfg


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("HYDRA_FULL_ERROR", None)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n"
            f"--- stderr\n{proc.stderr[-3000:]}"
        )
    return proc


def _worker(kind: str, args: dict, cwd: Path, timeout: float) -> dict:
    """Run ``python -m cifarlab.bench --worker kind`` and return the JSON it reports."""
    proc = _run(
        [sys.executable, "-m", "cifarlab.bench", "--worker", kind, "--worker-args", json.dumps(args)], cwd, timeout
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise RuntimeError(f"worker {kind} reported nothing\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def _median(values: Sequence[float]) -> float:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(statistics.median(values)) if values else float("nan")


class Log:
    def __init__(self, quiet: bool = False) -> None:
        self.start = time.perf_counter()
        self.quiet = quiet

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"bench [{self.elapsed():6.1f}s] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- FLOPs and peak


def _layer_output_shapes(layer) -> list[tuple]:
    """Output shape of each call of ``layer`` in a functional model."""
    shapes = []
    for node in getattr(layer, "_inbound_nodes", []) or []:
        outputs = node.outputs if isinstance(node.outputs, (list, tuple)) else [node.outputs]
        for out in outputs:
            shapes.append(tuple(out.shape))
    if not shapes and hasattr(layer, "output"):
        shapes.append(tuple(layer.output.shape))
    return shapes


def _layer_input_shapes(layer) -> list[tuple]:
    shapes = []
    for node in getattr(layer, "_inbound_nodes", []) or []:
        tensors = node.input_tensors if hasattr(node, "input_tensors") else node.arguments.keras_tensors
        shapes.append(tuple(tensors[0].shape))
    return shapes


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def layer_macs(layer) -> int:
    """Multiply-accumulates of one forward pass (one image) of a Conv/Dense layer; 0 for others."""
    from keras import layers
    from keras.src.layers.convolutional.base_conv import BaseConv
    from keras.src.layers.convolutional.base_conv_transpose import BaseConvTranspose
    from keras.src.layers.convolutional.base_depthwise_conv import BaseDepthwiseConv
    from keras.src.layers.convolutional.base_separable_conv import BaseSeparableConv

    total = 0
    if isinstance(layer, BaseSeparableConv):
        for in_shape, out_shape in zip(_layer_input_shapes(layer), _layer_output_shapes(layer)):
            cin, k = in_shape[-1], _prod(layer.kernel_size)
            spatial = _prod(out_shape[1:-1])
            total += spatial * cin * layer.depth_multiplier * k  # depthwise
            total += spatial * cin * layer.depth_multiplier * layer.filters  # pointwise
    elif isinstance(layer, BaseDepthwiseConv):
        for in_shape, out_shape in zip(_layer_input_shapes(layer), _layer_output_shapes(layer)):
            total += _prod(out_shape[1:-1]) * in_shape[-1] * layer.depth_multiplier * _prod(layer.kernel_size)
    elif isinstance(layer, BaseConvTranspose):
        for in_shape in _layer_input_shapes(layer):
            total += _prod(in_shape[1:-1]) * in_shape[-1] * layer.filters * _prod(layer.kernel_size)
    elif isinstance(layer, BaseConv):
        for in_shape, out_shape in zip(_layer_input_shapes(layer), _layer_output_shapes(layer)):
            cin_per_group = in_shape[-1] // getattr(layer, "groups", 1)
            total += _prod(out_shape[1:-1]) * layer.filters * cin_per_group * _prod(layer.kernel_size)
    elif isinstance(layer, layers.Dense):
        for in_shape in _layer_input_shapes(layer):
            total += _prod(in_shape[1:-1]) * in_shape[-1] * layer.units
    return total


def _all_layers(model) -> list:
    import keras

    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(_all_layers(layer))
        else:
            found.append(layer)
    return found


def count_flops(model) -> dict[str, Any]:
    """Analytic FLOPs per image: 2 x MACs of every Conv/Dense forward, and x3 for a training step.

    The x3 is the usual convention (the backward pass computes gradients for both the
    inputs and the weights of each layer: about twice the forward work). BatchNorm,
    activations, pooling and the optimizer update are not counted.
    """
    per_layer = {layer.name: layer_macs(layer) for layer in _all_layers(model)}
    per_layer = {name: macs for name, macs in per_layer.items() if macs}
    macs = sum(per_layer.values())
    return {"macs": macs, "forward": 2 * macs, "train": 6 * macs, "per_layer_macs": per_layer}


def profiler_flops(model) -> float | None:
    """Forward FLOPs per image as TensorFlow's graph profiler counts them (a cross-check; also counts BN etc.)."""
    try:
        import tensorflow as tf
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32)
        concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
        frozen = convert_variables_to_constants_v2(concrete)
        options = (
            tf.compat.v1.profiler.ProfileOptionBuilder(tf.compat.v1.profiler.ProfileOptionBuilder.float_operation())
            .with_empty_output()
            .build()
        )
        info = tf.compat.v1.profiler.profile(
            graph=frozen.graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=options
        )
        return float(info.total_float_ops)
    except Exception:  # a cross-check only; the analytic count is what is reported
        return None


def matmul_peak(n: int = 2048, repeats: int = 6) -> float:
    """FLOP/s of the best of ``repeats`` warm n x n float32 matrix products (2 n^3 FLOPs each)."""
    import tensorflow as tf

    a = tf.random.normal((n, n), dtype=tf.float32, seed=1)
    b = tf.random.normal((n, n), dtype=tf.float32, seed=2)
    tf.linalg.matmul(a, b).numpy()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        c = tf.linalg.matmul(a, b)
        _ = c[0, 0].numpy()  # CPU ops run synchronously; this only makes sure
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best


# ----------------------------------------------------------------------------- in-process training measurements


def _batch_clock():
    import keras

    class BatchClock(keras.callbacks.Callback):
        """(index of the last batch done, time) after every executed step."""

        def __init__(self) -> None:
            super().__init__()
            self.marks: list[tuple[int, float]] = []

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.marks.append((batch, time.perf_counter()))

    return BatchClock()


def steps_per_second(marks: Sequence[tuple[int, float]], warm_steps: int, window_steps: int | None = None) -> float:
    """Steps per second from (index of the last step done, time) marks, skipping ``warm_steps``.

    Over all timed steps; with ``window_steps``, over the fastest run of at least that
    many consecutive timed steps.
    """
    marks = [(b, t) for b, t in marks if b >= warm_steps - 1]
    spans = [(marks[0], marks[-1])]
    if window_steps:
        spans = [
            (first, next(last for last in marks[i + 1:] if last[0] - first[0] >= window_steps))
            for i, first in enumerate(marks)
            if marks[-1][0] - first[0] >= window_steps
        ] or spans
    return max((end[0] - start[0]) / (end[1] - start[1]) for start, end in spans)


def stall_pair(r: int, i: int) -> tuple[str, str]:
    """Which of the stall ratio's two sides runs first in round ``r``'s pair ``i`` (0: the pair
    within the round's rotation; then ``Plan.stall_pairs`` extra ones): each first in turn, so
    that load from other processes drifting over a round does not land on one side only."""
    return ("memory", "pipeline") if (r + i) % 2 == 0 else ("pipeline", "memory")


def round_order(names: Sequence[str], r: int) -> list[str]:
    """The order of round ``r``'s measurements: rotated, so that no variant is always first,
    with "memory" and "pipeline" back to back in the order of ``stall_pair(r, 0)``."""
    paired = "memory" in names and "pipeline" in names
    others = [name for name in names if not (paired and name == "memory")]
    order = others[r % len(others):] + others[: r % len(others)] if others else []
    if paired:
        order.insert(order.index("pipeline") + (stall_pair(r, 0)[0] == "pipeline"), "memory")
    return order


def fit_throughput(model, dataset, warm_steps: int, measure_steps: int, batch_size: int,
                   window_steps: int | None = None) -> float:
    """Images per second of ``model.fit`` on ``dataset`` after ``warm_steps`` untimed steps.

    Steps are timed by a batch-end callback, as cifarlab's own per-batch callbacks
    (time budget, non-finite loss) would see them. With ``window_steps``, the fastest
    run of that many consecutive steps within the measured ones: the same best-of
    estimate as :func:`matmul_peak`, so that a burst of load from another process
    during part of a measurement does not count against the model.
    """
    clock = _batch_clock()
    model.fit(
        dataset, epochs=1, steps_per_epoch=warm_steps + measure_steps, callbacks=[clock], verbose=0, shuffle=False
    )
    return steps_per_second(clock.marks, warm_steps, window_steps) * batch_size


def pipeline_throughput(dataset, batches: int, warm: int = 3) -> float:
    """Images per second of iterating ``dataset`` alone."""
    iterator = iter(dataset)
    for _ in range(warm):
        next(iterator)
    images = 0
    start = time.perf_counter()
    for _ in range(batches):
        x, _ = next(iterator)
        images += int(x.shape[0])
    return images / (time.perf_counter() - start)


def materialise(dataset, batches: int):
    """``batches`` batches of ``dataset`` computed now and served from memory, same element spec."""
    import numpy as np
    import tensorflow as tf

    xs, ys = [], []
    for x, y in dataset.take(batches):
        xs.append(x.numpy())
        ys.append(y.numpy())
    batch_size = xs[0].shape[0]
    memory = tf.data.Dataset.from_tensor_slices((np.concatenate(xs), np.concatenate(ys)))
    return memory.batch(batch_size).repeat().prefetch(tf.data.AUTOTUNE)


def cached_train_dataset(images, labels, batch_size: int, augment, seed: int, parallel_calls: int | None):
    """cifarlab's training pipeline with ``.cache()`` after the deterministic stage (the float cast).

    Augmented batches are never cached: that would replay one augmentation every epoch.
    """
    import tensorflow as tf

    from cifarlab.data.pipeline import map_calls, prefetch_size

    calls = map_calls(parallel_calls)
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=calls).cache()
    ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True).repeat().batch(batch_size)
    ds = ds.map(lambda x, y: (augment(x), y), num_parallel_calls=calls, deterministic=False)
    return ds.prefetch(prefetch_size(parallel_calls))


def _variant_cfg(cfg, **trainer):
    from omegaconf import OmegaConf

    return OmegaConf.merge(cfg, {"trainer": trainer})


def build_compiled(cfg, data, steps_per_epoch: int, epochs: int):
    """cnn_bn as a cifarlab run builds and compiles it (precision, jit_compile, steps_per_execution)."""
    import keras

    from cifarlab.models.layers.swap import use_fast_dropout, use_fused_batchnorm
    from cifarlab.models import build_model
    from cifarlab.training.precision import apply_precision, global_policy, resolve_precision
    from cifarlab.training.compile import compile_model

    precision = resolve_precision(cfg.trainer.precision)
    keras.utils.set_random_seed(cfg.trainer.seed)
    keras.mixed_precision.set_dtype_policy(global_policy(precision))
    try:
        model = build_model(cfg.model, data.input_shape, data.num_classes)
        if cfg.trainer.fused_batchnorm:
            model = use_fused_batchnorm(model)
        if cfg.trainer.fast_dropout:
            model = use_fast_dropout(model)
        model = apply_precision(model, precision)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    compile_model(model, cfg, steps_per_epoch, epochs)
    return model


def _train_data(cfg, data, parallel_calls: int | None | str = "config"):
    """cifarlab's training pipeline, with the run's ``trainer.input_parallelism`` unless given."""
    from cifarlab.data.augment import build_augmentation
    from cifarlab.data.pipeline import resolve_input_parallelism, train_dataset

    if parallel_calls == "config":
        parallel_calls = resolve_input_parallelism(cfg.trainer.input_parallelism)
    augment = build_augmentation(cfg.augmentation, seed=cfg.trainer.seed)
    return train_dataset(data.x_train, data.y_train, cfg.trainer.batch_size, augment, seed=cfg.trainer.seed,
                         repeat=True, parallel_calls=parallel_calls), augment


class Snapshot:
    """A model's weights and optimizer state, to restart training from the same point."""

    def __init__(self, model) -> None:
        model.optimizer.build(model.trainable_variables)
        self.model = model
        self.weights = model.get_weights()
        self.optimizer = [v.numpy() for v in model.optimizer.variables]

    def restore(self):
        self.model.set_weights(self.weights)
        for variable, value in zip(self.model.optimizer.variables, self.optimizer):
            variable.assign(value)
        return self.model


def short_accuracy(snapshot: Snapshot, cfg, data, epochs: int) -> dict[str, float]:
    """Accuracy after ``epochs`` epochs from the snapshot, the same data order for every variant.

    Full batches only, from the same pipeline as the timing, so an XLA model meets no new shape.
    """
    import keras

    from cifarlab.training.evaluation import evaluate_model

    model = snapshot.restore()
    keras.utils.set_random_seed(cfg.trainer.seed)
    dataset, _ = _train_data(cfg, data)
    steps = max(1, len(data.x_train) // cfg.trainer.batch_size)
    history = model.fit(dataset, epochs=epochs, steps_per_epoch=steps, verbose=0, shuffle=False).history
    _, test_accuracy, _ = evaluate_model(model, data, cfg.trainer.eval_batch_size)
    return {"train_accuracy": float(history["accuracy"][-1]), "train_loss": float(history["loss"][-1]),
            "test_accuracy": float(test_accuracy)}


def callback_epoch_seconds(cfg, model, images_per_epoch: int, epochs: int, workdir: Path) -> dict[str, list[float]]:
    """Seconds of each per-epoch call of every default cifarlab callback, the MLflow logger into real SQLite.

    The callbacks are built as a run builds them (``cfg.callbacks``); validation
    accuracy improves every epoch, so the best checkpoint is written every time (the
    usual case early in training). The first epoch (caches, first save) is not counted.
    """
    import mlflow

    from cifarlab.training.callbacks import CallbackContext, MlflowMetricsLogger, build_callbacks
    from cifarlab.tracking.recorder import RunRecorder

    store = workdir / "callbacks"
    store.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{store / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        exp = client.create_experiment("bench-callbacks", artifact_location=(store / "artifacts").as_uri())
        run = mlflow.start_run(experiment_id=exp)
        try:
            ctx = CallbackContext(
                checkpoint_dir=store / "checkpoints", backup_dir=store / "backup",
                recorder=RunRecorder(run.info.run_id), images_per_epoch=images_per_epoch,
            )
            callbacks = build_callbacks(cfg.callbacks, ctx)
            if not any(isinstance(cb, MlflowMetricsLogger) for cb in callbacks):
                callbacks.append(MlflowMetricsLogger(ctx.recorder, images_per_epoch))
            seconds: dict[str, list[float]] = {}
            for cb in callbacks:
                cb.set_model(model)
                cb.on_train_begin()
            for epoch in range(epochs + 1):
                logs = {"loss": 1.2 - 0.01 * epoch, "accuracy": 0.5 + 0.01 * epoch, "val_loss": 1.3 - 0.01 * epoch,
                        "val_accuracy": 0.45 + 0.01 * epoch, "learning_rate": 0.0025}
                for cb in callbacks:
                    cb.on_epoch_begin(epoch)
                for cb in callbacks:
                    name = "mlflow" if isinstance(cb, MlflowMetricsLogger) else type(cb).__name__
                    start = time.perf_counter()
                    cb.on_epoch_end(epoch, dict(logs))
                    if epoch:
                        seconds.setdefault(name, []).append(time.perf_counter() - start)
            model.stop_training = False
            return seconds
        finally:
            mlflow.end_run()
    finally:
        mlflow.set_tracking_uri(previous)


# ----------------------------------------------------------------------------- subprocess measurements


def cfg_job_seconds(runs: int, workdir: Path, timeout: float) -> list[float]:
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        _run([sys.executable, "-m", "cifarlab", "--cfg", "job"], workdir, timeout)
        seconds.append(time.perf_counter() - start)
    return seconds


def cifarlab_epochs(overrides: list[str], epochs: int, workdir: Path, timeout: float) -> dict:
    """A real ``python -m cifarlab`` run; its per-epoch timing as MLflow recorded it."""
    from mlflow import MlflowClient

    store = workdir / "mlruns"
    args = [*overrides, f"trainer.epochs={epochs}", f"paths.mlruns_dir={store}", "tracking.experiment=bench"]
    start = time.perf_counter()
    _run([sys.executable, "-m", "cifarlab", *args], workdir, timeout)
    wall = time.perf_counter() - start
    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bench")
    (run,) = client.search_runs([exp.experiment_id])
    history = sorted(client.get_metric_history(run.info.run_id, "epoch_seconds"), key=lambda m: m.step)
    stamps = [m.timestamp / 1000.0 for m in history]
    return {
        "epoch_seconds": [m.value for m in history],
        # epoch-end to epoch-end: everything of an epoch, callbacks after the logger included
        "periods": [b - a for a, b in zip(stamps, stamps[1:])],
        "wall_s": wall,
        "run_id": run.info.run_id,
    }


def _worker_bare_fit(args: dict) -> dict:
    """A bare Keras fit: same model, split, batch, augmentation and validation data; no cifarlab callbacks."""
    import keras

    from cifarlab.data.augment import build_augmentation
    from cifarlab.data import load_dataset
    from cifarlab.models import build_model
    from cifarlab.data.pipeline import eval_dataset, resolve_input_parallelism, train_dataset

    cfg = compose(args["overrides"])
    t = cfg.trainer
    keras.utils.set_random_seed(t.seed)
    data = load_dataset(cfg.dataset, default_data_dir=cfg.paths.data_dir)
    model = build_model(cfg.model, data.input_shape, data.num_classes)
    model.compile(
        optimizer=keras.optimizers.Nadam(learning_rate=cfg.optimizer.lr),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    augment = build_augmentation(cfg.augmentation, seed=t.seed)
    # The input pipeline a cifarlab run would use, so that only the framework around fit differs.
    train_ds = train_dataset(data.x_train, data.y_train, t.batch_size, augment, seed=t.seed,
                             parallel_calls=resolve_input_parallelism(t.input_parallelism))
    val_ds = eval_dataset(data.x_val, data.y_val, t.eval_batch_size)
    ends: list[float] = []
    durations: list[float] = []

    class EpochClock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            ends.append(time.perf_counter())
            durations.append(ends[-1] - self._start)

    model.fit(train_ds, validation_data=val_ds, epochs=args["epochs"], callbacks=[EpochClock()], verbose=2)
    return {"epoch_seconds": durations, "periods": [b - a for a, b in zip(ends, ends[1:])]}


def _worker_threads(args: dict) -> dict:
    """Training throughput with TensorFlow's thread pools set before anything runs."""
    import tensorflow as tf

    intra, inter = args["threads"]
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    from cifarlab.data import load_dataset

    cfg = compose(args["overrides"])
    data = load_dataset(cfg.dataset, default_data_dir=cfg.paths.data_dir)
    model = build_compiled(cfg, data, args["warm_steps"] + args["measure_steps"], 1)
    dataset, _ = _train_data(cfg, data)
    values = [
        fit_throughput(model, dataset, args["warm_steps"], args["measure_steps"], cfg.trainer.batch_size,
                       args["window_steps"])
        for _ in range(args["repeats"])
    ]
    return {"images_per_s": values, "threads": [intra, inter]}


WORKERS: dict[str, Callable[[dict], dict]] = {"bare_fit": _worker_bare_fit, "threads": _worker_threads}


# ----------------------------------------------------------------------------- the benchmark


@dataclass
class Measurements:
    details: dict[str, Any] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)


def _in_process(plan: Plan, overrides: list[str], workdir: Path, log: Log, m: Measurements) -> None:
    from cifarlab.data import load_dataset
    from cifarlab.training.precision import resolve_precision

    cfg = compose(overrides)
    data = load_dataset(cfg.dataset, default_data_dir=cfg.paths.data_dir)
    bs = cfg.trainer.batch_size
    m.details["data"] = {
        "train": len(data.x_train), "val": len(data.x_val), "test": len(data.x_test),
        "shape": list(data.input_shape), "batch_size": bs,
    }
    steps = plan.warm_steps + plan.measure_steps
    spe = plan.steps_per_execution

    log("building cnn_bn and its variants")
    resolved = resolve_precision(cfg.trainer.precision)

    def precision_variant(precision: str) -> str:
        return "default" if precision == resolved else f"precision_{precision}"

    variant_cfgs = {
        "default": cfg,
        "jit_compile": _variant_cfg(cfg, jit_compile=True),
        "steps_per_execution": _variant_cfg(cfg, steps_per_execution=spe),
        **{f"without_{name}": _variant_cfg(cfg, **{name: False}) for name in DEFAULT_ON},
        **{precision_variant(p): _variant_cfg(cfg, precision=p) for p in ("float32", *PRECISION_SWITCHES) if p != resolved},
    }
    models = {name: build_compiled(c, data, steps, 1) for name, c in variant_cfgs.items()}
    # Switches that change the arithmetic get a short accuracy check: (switched on, reference).
    accuracy_pairs = {
        "jit_compile": ("jit_compile", "default"),
        **{p: (precision_variant(p), precision_variant("float32")) for p in PRECISION_SWITCHES},
    }
    snapshots = {v: Snapshot(models[v]) for pair in accuracy_pairs.values() for v in pair}
    default = models["default"]
    flops = count_flops(default)
    m.details["flops"] = {
        "forward_per_image": flops["forward"], "train_per_image": flops["train"],
        "forward_per_image_tf_profiler": profiler_flops(default),
        "per_layer_macs": flops["per_layer_macs"],
        "convention": "2 x MACs of Conv/Dense forward; x3 for forward + backward",
    }
    from cifarlab.data.pipeline import resolve_input_parallelism

    input_calls = resolve_input_parallelism(cfg.trainer.input_parallelism)
    pipeline, augment = _train_data(cfg, data)
    memory = materialise(pipeline, steps)
    cached = cached_train_dataset(data.x_train, data.y_train, bs, augment, cfg.trainer.seed, input_calls)
    # The other input_parallelism: tf.data autotuning where the default is a fixed count, and back.
    other_calls = None if input_calls is not None else 1
    other_input, _ = _train_data(cfg, data, parallel_calls=other_calls)
    # variant -> (model, dataset)
    variants = {
        "pipeline": (models["default"], pipeline),
        "memory": (models["default"], memory),
        **{name: (models[name], pipeline) for name in variant_cfgs if name != "default"},
        "caching": (models["default"], cached),
        "other_input_parallelism": (models["default"], other_input),
    }
    # Trace every train function once, outside the timing (XLA compiles here).
    for name, (model, ds) in variants.items():
        log(f"warming up {name}")
        fit_throughput(model, ds, spe, spe, bs)

    rounds: list[dict[str, float]] = []
    stall_ratios: list[float] = []  # pipeline / memory, each pair measured back to back
    names = list(variants)

    def measure(name: str) -> float:
        model, ds = variants[name]
        return fit_throughput(model, ds, plan.warm_steps, plan.measure_steps, bs, plan.window_steps)
    for r in range(plan.rounds):
        if r >= plan.min_rounds and plan.rounds_deadline_s and log.elapsed() > plan.rounds_deadline_s:
            log(f"{plan.rounds_deadline_s:g}s deadline for the rounds passed: {r} of {plan.rounds} rounds measured")
            break
        log(f"round {r + 1}/{plan.rounds}: matmul peak, pipeline, {len(variants)} training variants")
        row = {"matmul_flops": matmul_peak(plan.matmul_n, plan.matmul_repeats)}
        row["pipeline_alone"] = pipeline_throughput(pipeline, plan.pipeline_batches)
        for name in round_order(names, r):
            row[name] = measure(name)
        stall_ratios.append(row["pipeline"] / row["memory"])
        # More pairs for the stall ratio alone: a few percent is what it must resolve. Kept out
        # of ``row``, so that every variant still gets one measurement per round.
        for i in range(1, 1 + plan.stall_pairs):
            first, second = stall_pair(r, i)
            pair = {first: measure(first), second: measure(second)}
            stall_ratios.append(pair["pipeline"] / pair["memory"])
        row["matmul_flops"] = max(row["matmul_flops"], matmul_peak(plan.matmul_n, plan.matmul_repeats))
        rounds.append(row)
    m.details["rounds"] = rounds
    m.details["rounds_measured"] = len(rounds)
    m.details["stall_ratios"] = stall_ratios
    # Throughputs: the best of the rounds, the closest to what this machine does. Ratios: the
    # median of within-round ratios, paired in time so the machine's drift cancels.
    best = {key: max(row[key] for row in rounds) for key in rounds[0]}
    median = {key: _median([row[key] for row in rounds]) for key in rounds[0]}

    def per_round(a: str, b: str) -> list[float]:
        return [row[a] / row[b] for row in rounds]

    m.values["pipeline_images_per_s"] = best["pipeline_alone"]
    m.values["train_images_per_s"] = best["pipeline"]
    m.values["pipeline_stall_ratio"] = _median(stall_ratios)
    m.values["flops_utilization"] = _median([row["pipeline"] * flops["train"] / row["matmul_flops"] for row in rounds])
    m.details["best"] = best
    m.details["median"] = median
    m.details["ratio_of_bests"] = {
        "pipeline_stall_ratio": best["pipeline"] / best["memory"],
        "flops_utilization": best["pipeline"] * flops["train"] / best["matmul_flops"],
    }
    m.details["matmul_peak_gflops"] = {"best": best["matmul_flops"] / 1e9, "median": median["matmul_flops"] / 1e9,
                                       "n": plan.matmul_n}
    m.details["train_gflops"] = best["pipeline"] * flops["train"] / 1e9
    switches = m.details.setdefault("switches", {})

    def speedup(faster: str, slower: str, default: bool) -> dict[str, Any]:
        faster, slower = ("pipeline" if v == "default" else v for v in (faster, slower))
        return {"speedup": _median(per_round(faster, slower)), "default": default,
                "ratio_of_bests": best[faster] / best[slower], "per_round": per_round(faster, slower)}

    for name in ("jit_compile", "steps_per_execution", "caching"):
        switches[name] = speedup(name, "default", default=False)
    for name in DEFAULT_ON:
        switches[name] = speedup("default", f"without_{name}", default=True)
        switches[name]["setting"] = f"trainer.{name}=true (the default)"
        switches[name]["accuracy_held"] = None
        switches[name]["accuracy_note"] = ACCURACY_NOTES[name]
    for p in PRECISION_SWITCHES:
        switches[p] = speedup(precision_variant(p), precision_variant("float32"), default=p == resolved)
        switches[p]["setting"] = f"trainer.precision={p}, vs float32" + (
            " (what the default precision=auto picks here)" if p == resolved else "")
    switches["jit_compile"]["setting"] = "trainer.jit_compile=true"
    switches["steps_per_execution"]["setting"] = f"trainer.steps_per_execution={spe}"
    switches["caching"]["setting"] = "tf.data .cache() after the float cast, before shuffle/augmentation"
    if input_calls is None:  # autotuning is what runs here: measure one thread against it, like jit_compile
        switches["input_parallelism"] = speedup("other_input_parallelism", "default", default=False)
        switches["input_parallelism"]["setting"] = "trainer.input_parallelism=1, vs tf.data autotuning"
    else:  # a fixed count runs here: measure it against autotuning, like the default-on switches
        switches["input_parallelism"] = speedup("default", "other_input_parallelism", default=True)
        switches["input_parallelism"]["setting"] = (
            f"trainer.input_parallelism={cfg.trainer.input_parallelism} ({input_calls} "
            f"thread{'s' if input_calls > 1 else ''}), vs trainer.input_parallelism=autotune")
    for name in ("steps_per_execution", "caching", "input_parallelism"):
        switches[name]["accuracy_held"] = None
        switches[name]["accuracy_note"] = "same arithmetic and data: not affected"

    checked = [
        name for name in ARITHMETIC_SWITCHES
        if plan.always_check_accuracy or switches[name]["default"] or switches[name]["speedup"] >= SPEEDUP_THRESHOLD
    ]
    for name in ARITHMETIC_SWITCHES:
        if name not in checked:
            switches[name]["accuracy_held"] = None
            switches[name]["accuracy_note"] = "not checked: not measured faster"
    if checked:
        log(f"accuracy check ({plan.accuracy_epochs} epochs each): {', '.join(checked)}, each on and off")
        measured = sorted({v for name in checked for v in accuracy_pairs[name]})
        accuracy = {v: short_accuracy(snapshots[v], variant_cfgs[v], data, plan.accuracy_epochs) for v in measured}
        m.details["accuracy_check"] = {"epochs": plan.accuracy_epochs, "tolerance": ACCURACY_TOLERANCE, **accuracy}
        for name in checked:
            on, off = (accuracy[v] for v in accuracy_pairs[name])
            switches[name]["accuracy"] = on
            switches[name]["default_accuracy"] = off  # the reference: the switch off (float32 for precisions)
            switches[name]["accuracy_held"] = bool(on["train_accuracy"] >= off["train_accuracy"] - ACCURACY_TOLERANCE)

    log(f"callbacks and MLflow logger: {plan.mlflow_epochs} epochs into SQLite")
    per_callback = callback_epoch_seconds(cfg, default, len(data.x_train), plan.mlflow_epochs, workdir)
    seconds = per_callback["mlflow"]
    m.details["mlflow_log_seconds"] = {"median": _median(seconds), "max": max(seconds), "all": seconds}
    m.details["callback_seconds_per_epoch"] = {name: _median(v) for name, v in per_callback.items()}
    # Until the real run's epoch time is known: a full epoch at the measured throughput.
    m.details["estimated_epoch_seconds"] = len(data.x_train) / m.values["train_images_per_s"]


def _threads(plan: Plan, overrides: list[str], workdir: Path, log: Log, m: Measurements) -> None:
    settings = [(0, 0), *plan.thread_settings]
    per_round: list[dict[str, float]] = []
    for r in range(plan.thread_rounds):
        row = {}
        order = settings[r % len(settings):] + settings[: r % len(settings)]
        for intra, inter in order:
            log(f"threads round {r + 1}/{plan.thread_rounds}: intra_op={intra} inter_op={inter} (subprocess)")
            out = _worker(
                "threads",
                {"threads": [intra, inter], "overrides": overrides, "warm_steps": plan.warm_steps,
                 "measure_steps": plan.measure_steps, "window_steps": plan.window_steps, "repeats": 3},
                workdir, plan.subprocess_timeout_s,
            )
            row[f"intra{intra}_inter{inter}"] = max(out["images_per_s"])
        per_round.append(row)
    best = {key: max(row[key] for row in per_round) for key in per_round[0]}
    speedups = {}
    for intra, inter in plan.thread_settings:
        key = f"intra{intra}_inter{inter}"
        speedups[key] = best[key] / best["intra0_inter0"]
    chosen = max(speedups, key=speedups.get)
    m.details.setdefault("switches", {})["threads"] = {
        "speedup": speedups[chosen],
        "setting": f"tf.config.threading {chosen.replace('_', ' ')} (default: 0 0, one thread per core)",
        "images_per_s": best,
        "per_setting": speedups,
        "rounds": per_round,
        "accuracy_held": None,
        "accuracy_note": "same arithmetic: not affected",
    }


def _overhead(plan: Plan, overrides: list[str], workdir: Path, log: Log, m: Measurements) -> None:
    pairs = []
    for r in range(plan.overhead_pairs):
        order = ("cifarlab", "bare") if r % 2 == 0 else ("bare", "cifarlab")
        pair = {}
        for who in order:
            log(f"overhead pair {r + 1}/{plan.overhead_pairs}: {who} run of {plan.overhead_epochs} epochs (subprocess)")
            folder = Path(tempfile.mkdtemp(prefix=f"{who}-", dir=workdir))
            if who == "cifarlab":
                run_overrides = [*overrides, *([] if plan.overhead_log_model else ["tracking.log_model=false"])]
                pair[who] = cifarlab_epochs(run_overrides, plan.overhead_epochs, folder, plan.subprocess_timeout_s)
            else:
                pair[who] = _worker(
                    "bare_fit", {"overrides": overrides, "epochs": plan.overhead_epochs}, folder,
                    plan.subprocess_timeout_s,
                )
        pairs.append(pair)

    def steady(values: list[float], drop_first: bool) -> float:
        kept = values[1:] if drop_first and len(values) > 1 else values
        return min(kept)  # load from other processes only adds time

    # Periods (epoch end to epoch end) already start after the first epoch.
    def best(who: str, key: str, drop_first: bool) -> float:
        return min(steady(p[who][key], drop_first) for p in pairs)

    by_period = best("cifarlab", "periods", False) / best("bare", "periods", False)
    by_logged = best("cifarlab", "epoch_seconds", True) / best("bare", "epoch_seconds", True)
    m.values["framework_overhead_ratio"] = by_period
    m.details["framework_overhead"] = {
        "ratio_epoch_end_to_epoch_end": by_period,
        "ratio_logged_epoch_seconds": by_logged,
        "per_pair_ratio_epoch_end_to_epoch_end": [
            steady(p["cifarlab"]["periods"], False) / steady(p["bare"]["periods"], False) for p in pairs
        ],
        "method": "fastest steady epoch of each side over all runs (runs alternate cifarlab/bare, ABBA)",
        "note": "main value: epoch-end to epoch-end (MLflow metric timestamps vs. a bare callback), so every "
                "callback counts; epoch_seconds as logged misses the callbacks after the MLflow logger",
        "pairs": pairs,
    }
    m.details["cifarlab_epoch_seconds"] = best("cifarlab", "epoch_seconds", True)


def run_bench(
    plan: Plan, data_dir: Path | None, workdir: Path, log: Log | None = None
) -> dict[str, Any]:
    """Every measurement of ``plan``; the result as it is written to JSON."""
    import keras
    import tensorflow as tf

    log = log or Log()
    started = time.perf_counter()
    overrides, data_description = data_overrides(data_dir, plan.synthetic_per_class)
    overrides = [*overrides, *BASE_OVERRIDES, *plan.model_overrides]
    m = Measurements()

    def cfg_job() -> None:
        log(f"python -m cifarlab --cfg job x{plan.cfg_job_runs}")
        seconds = cfg_job_seconds(plan.cfg_job_runs, workdir, plan.subprocess_timeout_s)
        m.values["cfg_job_seconds"] = _median(seconds)
        m.details["cfg_job_seconds"] = seconds

    subprocess_stages = [
        cfg_job,
        lambda: _threads(plan, overrides, workdir, log, m),
        lambda: _overhead(plan, overrides, workdir, log, m),
    ]
    if plan.concurrent:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(subprocess_stages)) as pool:
            futures = [pool.submit(stage) for stage in subprocess_stages]
            _in_process(plan, overrides, workdir, log, m)
            for future in futures:
                future.result()
    else:
        subprocess_stages[0]()
        _in_process(plan, overrides, workdir, log, m)
        for stage in subprocess_stages[1:]:
            stage()

    epoch_s = m.details.get("cifarlab_epoch_seconds") or m.details["estimated_epoch_seconds"]
    m.values["mlflow_overhead_ratio"] = m.details["mlflow_log_seconds"]["median"] / epoch_s
    m.details["mlflow_overhead_epoch_seconds"] = epoch_s

    switches = m.details["switches"]
    recommended = []
    for name in SWITCHES:
        s = switches[name]
        m.values[f"speedup_{name}"] = s["speedup"]
        faster = s["speedup"] >= SPEEDUP_THRESHOLD
        s["recommend_default"] = bool(faster and s.get("accuracy_held") is not False)
        if s["recommend_default"]:
            recommended.append(f"{name}: {s['setting']} (x{s['speedup']:.2f})")

    result: dict[str, Any] = {key: float(m.values[key]) for key in REQUIRED_KEYS}
    result["targets"] = {
        key: {"op": op, "value": target, "unit": unit, "description": what}
        for key, (op, target, unit, what) in TARGETS.items()
    }
    result["met"] = {key: met(key, result[key]) for key in TARGETS}
    result["switches"] = switches
    result["recommended_defaults"] = recommended
    result["machine"] = {
        "cpu_count": os.cpu_count(),
        "sched_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "tf_version": tf.__version__,
        "keras_version": keras.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    result["plan"] = asdict(plan)
    result["data"] = {"source": data_description, **m.details.pop("data")}
    result["bench_seconds"] = time.perf_counter() - started
    result["details"] = m.details
    return result


def met(key: str, value: float) -> bool | None:
    op, target, _, _ = TARGETS[key]
    if op is None or value is None or not math.isfinite(value):
        return None
    return {">=": value >= target, "<=": value <= target, "<": value < target, ">": value > target}[op]


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3f}"


def table(result: dict[str, Any]) -> str:
    rows = [("key", "value", "target", "met?")]
    for key, (op, target, unit, _) in TARGETS.items():
        flag = result["met"][key]
        rows.append((key, _fmt(result[key]) + (f" {unit}" if unit else ""),
                     f"{op} {target:g}" if op else "-", "-" if flag is None else ("yes" if flag else "NO")))
    for name in SWITCHES:
        s = result["switches"][name]
        held = s.get("accuracy_held")
        note = "n/a" if held is None else ("held" if held else "DROPPED")
        verdict = "recommend" if s["recommend_default"] else "keep off"
        if s.get("default"):
            verdict = "default on" if s["recommend_default"] else "NOT FASTER"
        rows.append((f"speedup_{name}", f"x{result[f'speedup_{name}']:.3f}", f"accuracy {note}", verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    m = result["machine"]
    lines.append("")
    lines.append(f"machine: {m['cpu_count']} CPUs, TensorFlow {m['tf_version']}, Keras {m['keras_version']}; "
                 f"data: {result['data']['source']}; plan: {result['plan']['name']}, "
                 f"{result['details']['rounds_measured']} rounds, {result['bench_seconds']:.0f} s")
    for name in SWITCHES:
        s = result["switches"][name]
        extra = ""
        if "accuracy" in s:
            a, d = s["accuracy"], s["default_accuracy"]
            extra = (f"; short check: train accuracy {a['train_accuracy']:.3f} vs {d['train_accuracy']:.3f} without"
                     f", test {a['test_accuracy']:.3f} vs {d['test_accuracy']:.3f}")
        elif s.get("accuracy_note"):
            extra = f"; accuracy: {s['accuracy_note']}"
        lines.append(f"  {name}: {s['setting']}{extra}")
    lines.append("recommended defaults: " + ("; ".join(result["recommended_defaults"]) or "none"))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cifarlab.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (under 10 minutes on 2 cores)")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # seconds; for tests
    parser.add_argument("--out", type=Path, default=Path("bench.json"), help="JSON results (default bench.json)")
    parser.add_argument("--data-dir", type=Path, default=None, help="CIFAR-10 folder (default: the shared subset)")
    parser.add_argument("--synthetic", action="store_true", help="generated 32x32x3 images even if the subset exists")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--worker-args", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(RESULT_PREFIX + json.dumps(WORKERS[args.worker](json.loads(args.worker_args))), flush=True)
        return 0

    plan = PLANS["tiny" if args.tiny else "quick" if args.quick else "full"]
    if args.synthetic:
        data_dir = None
    elif args.data_dir is not None:
        if not args.data_dir.is_dir():
            print(f"cifarlab.bench: error: --data-dir {args.data_dir} is not a folder", file=sys.stderr)
            return 2
        data_dir = args.data_dir.resolve()
    else:
        data_dir = default_subset() if default_subset().is_dir() else None

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cifarlab-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        result = run_bench(plan, data_dir, workdir.resolve())
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(table(result))
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
