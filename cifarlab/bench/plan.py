"""What the benchmark measures: its targets, the speed switches, how much of each (``Plan``), and in what order.

Nothing here imports TensorFlow: the command line and the tests read it in an instant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CHECKOUT_DIR = Path(__file__).resolve().parents[2]  # this file is <checkout>/cifarlab/bench/plan.py

# key -> (comparison, target, unit, what it is)
TARGETS: dict[str, tuple[str | None, float | None, str, str]] = {
    "pipeline_images_per_s": (None, None, "img/s", "tf.data pipeline alone, shift_flip_rotate, batch 64"),
    "train_images_per_s": (None, None, "img/s", "cnn_bn training fed by the pipeline"),
    "pipeline_stall_ratio": (">=", 0.97, "", "pipeline-fed / pre-materialised training throughput"),
    "framework_overhead_ratio": ("<=", 1.05, "", "python -m cifarlab epoch / bare model.fit epoch"),
    "cfg_job_seconds": ("<=", 1.5, "s", "python -m cifarlab --cfg job, median"),
    "flops_utilization": (">=", 0.40, "", "cnn_bn training FLOP/s / matmul peak in the run's compute dtype"),
    "flops_utilization_float32": (None, None, "", "cnn_bn training FLOP/s / float32 matmul peak"),
    "mlflow_overhead_ratio": ("<", 0.01, "", "per-epoch MLflow logging / epoch time"),
    "search_overhead_ratio": (
        "<=",
        1.5,
        "",
        "MLP search of N short trials / a hand-written Keras loop of them",
    ),
}
SWITCHES = (
    "jit_compile",
    "mixed_bfloat16",
    "autocast_bfloat16",
    "threads",
    "steps_per_execution",
    "caching",
    "input_parallelism",
    "fused_batchnorm",
    "freeze_cancelled_bias",
    "fast_dropout",
)
# Switches already on by default (tests/test_fast_training.py pins what each keeps): measured as default / switched off.
DEFAULT_ON = ("fused_batchnorm", "freeze_cancelled_bias")
# Switches whose default each machine decides (trainer.X=auto): measured as on / off, "default" saying what auto chose.
MACHINE_DECIDED = ("fast_dropout",)
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
    """How much to measure: ``full`` (default), ``quick`` (7-10 minutes on 2 cores with bfloat16
    units, 16 with AVX2 only), ``tiny`` (tests)."""

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
    search_trials: int = 12  # search_overhead_ratio: trials of the MLP search, and epochs each
    search_epochs: int = 2


PLANS = {
    "full": Plan(
        "full",
        rounds=8,
        warm_steps=8,
        measure_steps=48,
        window_steps=16,
        steps_per_execution=4,
        pipeline_batches=150,
        matmul_n=2048,
        matmul_repeats=6,
        cfg_job_runs=9,
        overhead_pairs=4,
        overhead_epochs=5,
        mlflow_epochs=20,
        accuracy_epochs=4,
        thread_rounds=2,
        stall_pairs=2,
    ),
    "quick": Plan(
        "quick",
        rounds=5,
        warm_steps=4,
        measure_steps=16,
        window_steps=8,
        steps_per_execution=4,
        pipeline_batches=60,
        matmul_n=2048,
        matmul_repeats=4,
        cfg_job_runs=5,
        overhead_pairs=1,
        overhead_epochs=3,
        mlflow_epochs=8,
        accuracy_epochs=2,
        thread_rounds=1,
        thread_settings=((2, 1),),
        stall_pairs=4,
        always_check_accuracy=False,
        rounds_deadline_s=200,
        min_rounds=3,
        overhead_log_model=False,
    ),
    # tiny: 2 rounds asked, the deadline lets 1 run (tests/test_bench.py checks it).
    "tiny": Plan(
        "tiny",
        rounds=2,
        rounds_deadline_s=1e-9,
        warm_steps=2,
        measure_steps=2,
        window_steps=2,
        steps_per_execution=2,
        pipeline_batches=3,
        matmul_n=128,
        matmul_repeats=2,
        cfg_job_runs=1,
        overhead_pairs=1,
        overhead_epochs=2,
        stall_pairs=1,
        mlflow_epochs=2,
        accuracy_epochs=1,
        thread_rounds=1,
        thread_settings=((1, 1),),
        synthetic_per_class=20,
        subprocess_timeout_s=300.0,
        search_trials=2,
        search_epochs=1,
        concurrent=True,
        model_overrides=("model.filters=[8]", "model.dropout=[0.1]", "model.dense_units=16"),
    ),
}


def default_subset() -> Path:
    """The shared 5k CIFAR-10 subset beside the checkout (as tests/conftest.py finds it)."""
    return CHECKOUT_DIR.parent / "shared" / "data" / "cifar10-subset"


def data_overrides(data_dir: Path | None, synthetic_per_class: int) -> tuple[list[str], str]:
    """Hydra overrides selecting the benchmark data, and a description of it."""
    if data_dir is not None:
        return [
            "dataset=cifar10",
            f"dataset.data_dir={data_dir}",
            "dataset.download=false",
        ], f"cifar10 at {data_dir}"
    n = synthetic_per_class
    return [
        "dataset=synthetic",
        "dataset.image_size=32",
        "dataset.channels=3",
        "dataset.num_classes=10",
        f"dataset.samples_per_class={n}",
        f"dataset.test_samples_per_class={max(2, n // 5)}",
        "dataset.val_fraction=0.1",
    ], f"synthetic 32x32x3, 10 classes x {n}"


BASE_OVERRIDES = ["model=cnn_bn", "augmentation=shift_flip_rotate"]


def bench_overrides(plan: Plan, data_dir: Path | None) -> tuple[list[str], str]:
    """Every Hydra override of the benchmarked runs (data, model, augmentation, plan), and the data's description."""
    overrides, data_description = data_overrides(data_dir, plan.synthetic_per_class)
    return [*overrides, *BASE_OVERRIDES, *plan.model_overrides], data_description


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
    order = others[r % len(others) :] + others[: r % len(others)] if others else []
    if paired:
        order.insert(order.index("pipeline") + (stall_pair(r, 0)[0] == "pipeline"), "memory")
    return order
