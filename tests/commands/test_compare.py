"""``python -m cifarlab compare``: the statistics on known values, then real runs in a real store."""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import TINY, all_runs, mlflow_client, run_cli

from cifarlab.reports.comparison import (
    RunResult,
    changed_errors,
    compare_pair,
    comparison_markdown,
    confusion_difference_figure,
    discordant_counts,
    mcnemar_exact,
    wilson_interval,
)

NAMES = ["cat", "dog", "frog"]


def test_wilson_interval_matches_known_values():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    low, high = wilson_interval(0, 10)  # never below 0, and not degenerate at the edge
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0) and wilson_interval(10, 10)[0] == pytest.approx(
        0.7225, abs=1e-4
    )
    narrow, wide = wilson_interval(700, 1000), wilson_interval(70, 100)
    assert narrow[0] > wide[0] and narrow[1] < wide[1]


def test_mcnemar_exact_matches_the_binomial_test():
    assert mcnemar_exact(1, 9) == pytest.approx(0.02148, abs=1e-5)
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact(40, 60) == pytest.approx(0.05689, abs=1e-4)


def test_discordant_counts_are_the_images_only_one_run_got_right():
    y = np.array([0, 1, 2, 0, 1, 2])
    a = np.array([0, 1, 2, 1, 1, 0])  # right on 0, 1, 2, 4
    b = np.array([0, 2, 2, 0, 1, 1])  # right on 0, 2, 3, 4
    assert discordant_counts(y, a, b) == (1, 1)
    assert discordant_counts(y, a, y) == (0, 2)


def test_changed_errors_name_the_cells_that_changed_most():
    cm_a = np.array([[50, 112, 3], [10, 80, 0], [0, 0, 9]])
    cm_b = np.array([[82, 80, 3], [4, 86, 0], [0, 1, 8]])
    assert changed_errors(cm_a, cm_b, NAMES) == [
        "cat predicted as dog: 112 -> 80",
        "dog predicted as cat: 10 -> 4",
        "frog predicted as dog: 0 -> 1",
    ]  # the diagonal (right answers) and unchanged cells are left out
    assert changed_errors(cm_a, cm_b, NAMES, top=1) == ["cat predicted as dog: 112 -> 80"]
    assert changed_errors(cm_a, cm_a, NAMES) == []


def test_a_pair_report_has_the_test_the_deltas_and_a_centred_heatmap(tmp_path):
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    a = RunResult("a" * 32, "first", y, np.array([0, 1, 1, 1, 1, 1, 1, 1, 2, 2]))  # cats called dogs
    b = RunResult("b" * 32, "second", y, np.array([0, 0, 0, 1, 1, 1, 1, 1, 2, 0]))
    pair = compare_pair(a, b, NAMES)
    assert (pair.discordant_b, pair.discordant_c) == (1, 2)
    assert pair.accuracy_delta == pytest.approx(0.1)
    cat = pair.classes[0]
    assert cat.recall_a == pytest.approx(0.25) and cat.recall_b == pytest.approx(0.75) and cat.support == 4
    assert pair.changed_errors[0] == "cat predicted as dog: 3 -> 1"

    text = comparison_markdown([a, b], [pair], ["diff.png"])
    assert "| `aaaaaaaa` | first | 70.00% | [39.68%, 89.22%] | 7 / 10 |" in text
    assert "b = 1 (aaaaaaaa right, bbbbbbbb wrong), c = 2" in text and "p = 1." in text
    assert "- cat predicted as dog: 3 -> 1" in text and "![confusion matrix change](diff.png)" in text

    fig = confusion_difference_figure(pair, NAMES)
    image = fig.axes[0].images[0]
    assert image.norm.vmin == -image.norm.vmax == -2  # centred at 0: equal change either way looks alike
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == NAMES


def _run_id(stdout: str) -> str:
    return re.search(r"MLflow run ([0-9a-f]{32})", stdout).group(1)


@pytest.mark.slow
def test_compare_two_real_runs_and_refuse_other_test_data(tmp_path):
    first = _run_id(run_cli(*TINY, "trainer.epochs=1", "tracking.log_model=false", cwd=tmp_path).stdout)
    second = _run_id(
        run_cli(
            *TINY,
            "trainer.epochs=1",
            "tracking.log_model=false",
            "optimizer.lr=0.01",
            "trainer.label_smoothing=0.1",
            cwd=tmp_path,
        ).stdout
    )
    out = tmp_path / "comparison"

    # What differs comes first, and is exactly the two settings changed (the data and code are the same).
    only = run_cli(f"runs={first},{second}", "configs_only=true", command="compare", cwd=tmp_path)
    rows = re.findall(r"^\| `([^`]+)` \|", only.stdout, flags=re.M)
    assert rows == ["optimizer.lr", "trainer.label_smoothing"], only.stdout
    assert "McNemar" not in only.stdout

    done = run_cli(f"runs={first},{second}", f"out={out}", command="compare", cwd=tmp_path)
    for run_id in (first, second):
        assert re.search(
            rf"\| `{run_id[:8]}` \| .* \| \d+\.\d\d% \| \[\d+\.\d\d%, \d+\.\d\d%\] \|", done.stdout
        )
    assert re.search(r"McNemar exact test: b = \d+ .*, c = \d+ .*, p = [0-9.e-]+", done.stdout)
    assert done.stdout.index("## What differs") < done.stdout.index("McNemar")
    assert only.stdout.strip() in done.stdout  # the same table heads the full report
    heatmap = f"confusion_difference_{first[:8]}_{second[:8]}.png"
    assert (out / "comparison.md").is_file() and (out / heatmap).stat().st_size > 0

    (compared,) = [r for r in all_runs(tmp_path / "mlruns") if r.data.tags.get("compared_runs")]
    assert compared.data.tags["compared_runs"] == f"{first},{second}"
    assert f"cifarlab: comparison run {compared.info.run_id} in experiment 'cifarlab'" in done.stdout
    assert (
        compared.info.run_name == f"compare-{first[:8]}-{second[:8]}" and compared.info.status == "FINISHED"
    )
    assert (
        first in compared.data.tags["mlflow.note.content"]
        and second in compared.data.tags["mlflow.note.content"]
    )
    assert 0.0 <= compared.data.metrics["mcnemar_p"] <= 1.0 and "accuracy_delta" in compared.data.metrics
    artifacts = {a.path for a in mlflow_client(tmp_path / "mlruns").list_artifacts(compared.info.run_id)}
    assert {"comparison.md", heatmap} <= artifacts

    other = _run_id(
        run_cli(
            *TINY,
            "trainer.epochs=1",
            "tracking.log_model=false",
            "dataset.samples_per_class=30",
            cwd=tmp_path,
        ).stdout
    )
    refused = run_cli(f"runs={first},{other}", command="compare", cwd=tmp_path, check=False)
    assert refused.returncode != 0
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("cifarlab: error: runs=") and "tested on different data" in line
    assert len([r for r in all_runs(tmp_path / "mlruns") if r.data.tags.get("compared_runs")]) == 1


@pytest.mark.slow
def test_compare_refuses_in_one_line_without_opening_a_run(tmp_path):
    first = _run_id(run_cli(*TINY, "trainer.epochs=1", "tracking.log_model=false", cwd=tmp_path).stdout)
    cases = {
        f"runs={first}": "at least 2",
        f"runs={first},{'0' * 32}": "is not a run in",
    }
    for arg, expected in cases.items():
        refused = run_cli(arg, command="compare", cwd=tmp_path, check=False)
        assert refused.returncode != 0
        (line,) = refused.stderr.strip().splitlines()
        assert line.startswith("cifarlab: error: runs=") and expected in line
    # A run with no stored predictions (a comparison run itself has none).
    client = mlflow_client(tmp_path / "mlruns")
    bare = client.create_run(all_runs(tmp_path / "mlruns")[0].info.experiment_id).info.run_id
    client.set_terminated(bare)
    refused = run_cli(f"runs={first},{bare}", command="compare", cwd=tmp_path, check=False)
    (line,) = refused.stderr.strip().splitlines()
    assert refused.returncode != 0 and "has no stored test predictions" in line
    assert not [r for r in all_runs(tmp_path / "mlruns") if r.data.tags.get("compared_runs")]


@pytest.mark.slow
def test_compare_a_sweeps_best_jobs(tmp_path):
    run_cli("-m", *TINY, "trainer.epochs=1", "tracking.log_model=false", "optimizer=sgd,adam", cwd=tmp_path)
    runs = all_runs(tmp_path / "mlruns")
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.info.run_id for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert len(children) == 2

    run_cli(f"sweep={parent.info.run_id}", command="compare", cwd=tmp_path)
    (compared,) = [r for r in all_runs(tmp_path / "mlruns") if r.data.tags.get("compared_runs")]
    assert set(compared.data.tags["compared_runs"].split(",")) == children
    refused = run_cli(f"sweep={parent.info.run_id}", "top=1", command="compare", cwd=tmp_path, check=False)
    assert refused.returncode != 0 and refused.stderr.strip().startswith("cifarlab: error: top=1")
