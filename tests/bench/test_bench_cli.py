"""The bench's command line: key=value options, the legacy flags, --help and one-line errors.

Nothing here runs a measurement (tests/bench/test_bench.py runs the tiny bench).
"""

from __future__ import annotations

import math

import pytest
from helpers import run_python

from cifarlab.bench.report import met
from cifarlab.commands.bench import chosen_data, chosen_plan, main, parse_bench_args


def test_legacy_flags_and_key_value_give_the_same_options(tmp_path):
    legacy = parse_bench_args(["--quick", "--out", "x.json", "--data-dir", str(tmp_path), "--workdir=w"])
    keys = parse_bench_args(["quick=true", "out=x.json", f"data_dir={tmp_path}", "workdir=w"])
    assert legacy == keys
    assert (
        keys.quick is True and keys.out == "x.json" and keys.data_dir == str(tmp_path) and keys.workdir == "w"
    )
    assert parse_bench_args(["--synthetic", "--tiny"]) == parse_bench_args(["synthetic=true", "tiny=true"])


def test_options_choose_the_plan_and_the_data(tmp_path):
    assert chosen_plan(parse_bench_args([])).name == "full"
    assert chosen_plan(parse_bench_args(["quick=true"])).name == "quick"
    assert chosen_plan(parse_bench_args(["--tiny"])).name == "tiny"
    assert chosen_data(parse_bench_args(["synthetic=true", f"data_dir={tmp_path}"])) is None
    assert chosen_data(parse_bench_args([f"data_dir={tmp_path}"])) == tmp_path.resolve()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["qick=true"], "did you mean quick=?"),
        (["quick=maybe"], "quick='maybe' is not valid"),
        (["--fast"], "unknown flag '--fast'"),
        (["--out"], "--out needs a value"),
        (["data_dir=/no/such/folder"], "data_dir=/no/such/folder is not a folder"),
        (["--worker", "threads", "--worker-args", "{bad"], "--worker-args is not JSON"),
    ],
)
def test_a_wrong_argument_fails_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("cifarlab bench: error: ") and message in err and err.count("\n") == 1


def test_help_lists_every_option_without_importing_tensorflow(tmp_path):
    code = (
        "import sys; from cifarlab.commands.bench import main; main(['--help']); "
        "assert 'tensorflow' not in sys.modules, 'the bench CLI imported TensorFlow for --help'"
    )
    proc = run_python(code, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("``python -m cifarlab bench``")
    assert "options (defaults):" in proc.stdout
    for option in ("quick=False", "out=bench.json", "data_dir=None", "synthetic=False"):
        assert f"  {option}\n" in proc.stdout


def test_met_compares_with_each_target():
    assert met("pipeline_stall_ratio", 0.97) is True
    assert met("pipeline_stall_ratio", 0.96) is False
    assert met("flops_utilization", 0.45) is True and met("flops_utilization", 0.39) is False
    assert met("flops_utilization_float32", 0.8) is None  # reported beside it, no target
    assert met("mlflow_overhead_ratio", 0.01) is False  # a strict "<"
    assert met("cfg_job_seconds", 1.5) is True
    assert met("flops_utilization", math.nan) is None
    assert met("train_images_per_s", 1000.0) is None  # reported, no target
