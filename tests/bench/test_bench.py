"""The benchmark: its FLOP counter, its JSON in a tiny mode, and the fast CPU preset composing.

No assertion here is about time: the bench reports its targets, met or not.
"""

from __future__ import annotations

import json
import math
import statistics

import pytest
from helpers import run_cli


def test_flop_counter_matches_a_hand_count():
    import keras

    from cifarlab.bench.flops import count_flops

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="valid", name="conv_valid")(inputs)  # -> 6x6x4
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", name="conv_strided")(x)  # -> 3x3x6
    x = keras.layers.BatchNormalization()(x)  # not counted
    x = keras.layers.Flatten()(x)  # 54 features
    outputs = keras.layers.Dense(5, name="dense")(x)
    model = keras.Model(inputs, outputs)

    conv_valid = 6 * 6 * 4 * (3 * 3 * 3)  # output positions x filters x kernel MACs = 3888
    conv_strided = 3 * 3 * 6 * (3 * 3 * 4)  # = 1944
    dense = 54 * 5  # = 270
    flops = count_flops(model)
    assert flops["per_layer_macs"] == {"conv_valid": conv_valid, "conv_strided": conv_strided, "dense": dense}
    assert flops["macs"] == 6102
    assert flops["forward"] == 2 * 6102
    assert flops["train"] == 3 * 2 * 6102


def test_flop_counter_counts_cnn_bn_convs_and_dense():
    from omegaconf import OmegaConf

    from cifarlab.bench.flops import count_flops
    from cifarlab.training.builders import build_model

    cfg = OmegaConf.load(
        __import__("cifarlab.config.locations", fromlist=["x"]).conf_dir() / "model" / "cnn_bn.yaml"
    )
    model = build_model(cfg, (32, 32, 3), 10)
    expected = (
        32 * 32 * 32 * 27
        + 32 * 32 * 32 * 288  # block 1 at 32x32
        + 16 * 16 * 64 * 288
        + 16 * 16 * 64 * 576  # block 2 at 16x16
        + 8 * 8 * 128 * 576
        + 8 * 8 * 128 * 1152  # block 3 at 8x8
        + 2048 * 64
        + 64 * 10  # head and logits
    )
    assert count_flops(model)["macs"] == expected


@pytest.mark.slow
def test_steps_per_second_skips_warm_steps_and_finds_the_fastest_window():
    from itertools import accumulate

    from cifarlab.bench.throughput import steps_per_second

    # Step i ends at marks[i]: warm-up steps 0-1 slow, then 0.1 s per step except
    # steps 5-6, held up 1 s by something else.
    durations = [5.0, 5.0, 0.1, 0.1, 0.1, 1.0, 1.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    ends = list(accumulate(durations))
    marks = list(enumerate(ends))
    overall = steps_per_second(marks, warm_steps=2)
    assert overall == pytest.approx(11 / (ends[-1] - ends[1]))  # the 11 timed steps, warm-up left out
    assert steps_per_second(marks, warm_steps=2, window_steps=4) == pytest.approx(10.0)  # steps 7-10, say
    assert steps_per_second(marks, warm_steps=2, window_steps=11) == pytest.approx(overall)
    # Marks every 2 steps (steps_per_execution=2): windows span whole executions.
    coarse = marks[1::2]  # steps 1, 3, ..., 11
    assert steps_per_second(coarse, warm_steps=2, window_steps=3) == pytest.approx(4 / 0.4)


def test_round_order_rotates_and_keeps_the_stall_pair_back_to_back():
    from cifarlab.bench.plan import round_order, stall_pair

    names = ["pipeline", "memory", "jit_compile", "caching", "without_fast_dropout"]
    orders = [round_order(names, r) for r in range(8)]
    for order in orders:
        assert sorted(order) == sorted(names)
        pipeline, memory = order.index("pipeline"), order.index("memory")
        assert abs(pipeline - memory) == 1
    # The first measurement of a round moves on.
    assert len({order[0] for order in orders[:4]}) >= 3
    # Every pair of a quick bench (the round's own, then 2 extra), in the order measured:
    # each side goes first in turn.
    firsts = []
    for r, order in enumerate(orders):
        firsts.append(min(("memory", "pipeline"), key=order.index))
        firsts += [stall_pair(r, i)[0] for i in (1, 2)]
        assert stall_pair(r, 0)[0] == firsts[-3]
    assert all(a != b for a, b in zip(firsts, firsts[1:])) and len(firsts) == 24
    # Without both sides there is nothing to pair.
    assert sorted(round_order(["memory", "caching"], 1)) == ["caching", "memory"]
    assert round_order(["memory"], 3) == ["memory"]


@pytest.mark.slow
def test_tiny_bench_writes_every_key_as_a_number(tmp_path):
    out = tmp_path / "bench.json"
    run_cli(
        "--tiny",
        "--synthetic",
        "--out",
        str(out),
        "--workdir",
        str(tmp_path / "work"),
        cwd=tmp_path,
        command="bench",
        timeout=600,
    )
    result = json.loads(out.read_text())
    from cifarlab.bench.plan import REQUIRED_KEYS, TARGETS

    for key in REQUIRED_KEYS:
        assert isinstance(result[key], (int, float)) and math.isfinite(result[key]), key
    for key in (
        "pipeline_images_per_s",
        "train_images_per_s",
        "pipeline_stall_ratio",
        "framework_overhead_ratio",
        "cfg_job_seconds",
        "flops_utilization",
        "mlflow_overhead_ratio",
        "search_overhead_ratio",
        "speedup_jit_compile",
        "speedup_mixed_bfloat16",
        "speedup_autocast_bfloat16",
        "speedup_threads",
        "speedup_steps_per_execution",
        "speedup_caching",
        "speedup_fused_batchnorm",
        "speedup_freeze_cancelled_bias",
    ):
        assert key in result
    assert set(result["targets"]) == set(TARGETS) and set(result["met"]) == set(TARGETS)
    search = result["details"]["search_overhead"]  # both sides ran the search's 2 trials, timed whole
    assert search["trials"] == 2 and len(search["keras_loop_val_accuracy"]) == 2
    assert search["cifarlab_search_s"] / search["keras_loop_s"] == result["search_overhead_ratio"]
    assert result["targets"]["pipeline_stall_ratio"] == {
        "op": ">=",
        "value": 0.97,
        "unit": "",
        "description": TARGETS["pipeline_stall_ratio"][3],
    }
    machine = result["machine"]
    assert (
        machine["cpu_count"] >= 1
        and machine["sched_cpus"] >= 1
        and machine["tf_version"]
        and machine["cpu_model"]
    )
    assert set(machine["isa_features"]) >= {"avx2", "avx512f", "avx512_bf16", "amx", "vnni"}
    assert (
        machine["libraries"]["tensorflow"]
        and machine["libraries"]["mlflow"]
        and "torch" in machine["libraries"]
    )
    # FLOP utilisation against the peak of the dtype the run computes in, float32's beside it.
    from cifarlab.bench.flops import compute_dtype
    from cifarlab.training.precision import resolve_precision

    peaks = result["details"]["matmul_peak_gflops"]
    assert peaks["compute_dtype"] == compute_dtype(resolve_precision("auto"))
    train_gflops = result["details"]["train_gflops"]
    assert result["details"]["ratio_of_bests"]["flops_utilization"] == pytest.approx(
        train_gflops / peaks["best"]
    )
    assert result["details"]["ratio_of_bests"]["flops_utilization_float32"] == pytest.approx(
        train_gflops / peaks["float32_best"]
    )
    # fast_dropout=auto with calibration off (the tests): Keras's Dropout is the default, FastDropout measured against it.
    assert result["switches"]["fast_dropout"]["default"] is False
    assert result["switches"]["fast_dropout"]["calibration"] is None
    assert result["data"]["source"].startswith("synthetic")
    assert isinstance(result["recommended_defaults"], list)
    # The tiny plan asks for 2 rounds with a deadline already passed: the deadline stops the second.
    assert result["plan"]["rounds"] == 2 and result["details"]["rounds_measured"] == 1
    # The stall ratio: the median of the round's own pair and its stall_pairs extra pairs.
    stall_ratios = result["details"]["stall_ratios"]
    assert len(stall_ratios) == 1 + result["plan"]["stall_pairs"] == 2
    assert result["pipeline_stall_ratio"] == pytest.approx(statistics.median(stall_ratios))
    # The precision precision=auto picks here is reported as the default, measured against float32.
    precision_defaults = {
        p for p in ("mixed_bfloat16", "autocast_bfloat16") if result["switches"][p]["default"]
    }
    assert precision_defaults == ({resolve_precision("auto")} - {"float32"})


def test_machine_info_reads_the_isa_features_from_the_cpu_flags(monkeypatch):
    from cifarlab.runtime import hardware

    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx2", "avx512f", "amx_tile", "avx512_vnni", "sse2"})
    assert hardware.isa_features() == {
        "avx2": True,
        "avx512f": True,
        "avx512_bf16": False,
        "amx": True,
        "vnni": True,
        "arm_bf16": False,
    }
    key = hardware.machine_key("2.99")
    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx2"})
    assert hardware.machine_key("2.99") != key  # another CPU's calibration is not this one's
    versions = hardware.library_versions()
    assert versions["python"] and versions["numpy"] and "torch" in versions


def test_fast_cpu_preset_composes(tmp_path):
    proc = run_cli("experiment=cifar10_fast_cpu", "--cfg", "job", cwd=tmp_path)
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(proc.stdout)
    assert cfg.model.name == "resnet9"
    assert cfg.augmentation.name == "crop_flip"
    assert cfg.trainer.test_time_flip is True
    # A recipe, not a race: no time budget, and the one-cycle warmup ends well inside its fixed epochs.
    assert cfg.trainer.time_budget_s is None
    assert 0 < cfg.optimizer.schedule.warmup_epochs < cfg.trainer.epochs / 4
    assert cfg.augmentation.mixup_alpha > 0
    assert cfg.optimizer.schedule.name in ("one_cycle", "cosine")
    assert cfg.claim.accuracy == 0.72
    assert "66.6%" in cfg.claim.source
