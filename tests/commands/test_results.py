"""``python -m cifarlab results``: the preset table rebuilt from a real MLflow store."""

from __future__ import annotations

import pytest
from helpers import all_runs, run_cli

from cifarlab.reports.results_table import hand_written_notes, render


def test_rebuilt_table_keeps_what_was_written_under_it():
    notes = (
        "A line without a heading.\n\n## How these were made\n\n| a hand-made | table |\n|---|---|\n\nEnd.\n"
    )
    rebuilt = render([], hand_written_notes(render([]) + "\n\n" + notes))
    assert rebuilt == render([]) + "\n" + notes
    assert hand_written_notes(rebuilt) == notes  # stable over rebuilds
    assert hand_written_notes(render([])) == "" and render([], "") == render([])


@pytest.mark.slow
def test_results_table_shows_the_newest_preset_run_and_keeps_hand_written_notes(tmp_path):
    run_cli(
        "experiment=mlp_cifar10",
        "dataset=synthetic",
        "model.hidden_units=[16]",
        "trainer.epochs=2",
        "+tracking.tags.note='two epochs on synthetic data'",
        cwd=tmp_path,
    )
    (run,) = all_runs(tmp_path / "mlruns")
    output = tmp_path / "RESULTS.md"
    notes = "## How these were made\n\nWritten by hand; must survive a rebuild.\n"
    output.write_text("# old title\n\n| preset |\n|---|\n| `mlp_cifar10` | stale row |\n\n" + notes)

    for _ in range(2):  # a rebuild of a rebuilt file keeps the notes once
        run_cli(f"output={output}", cwd=tmp_path, command="results")
    text = output.read_text()

    (row,) = [line for line in text.splitlines() if line.startswith("| `mlp_cifar10`")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    # The preset claims validation accuracy, so the run's best validation accuracy is shown.
    assert cells[3] == f"{100 * run.data.metrics['val/best_accuracy']:.1f}%"
    assert cells[2] == "50.0%" and cells[4] == "val/accuracy"
    assert cells[5] == "2 / 20"
    assert cells[9] == "two epochs on synthetic data" and cells[10] == run.info.run_id[:8]
    assert "stale row" not in text and "old title" not in text
    assert text.count(notes) == 1 and text.endswith(notes)
    # Presets never run say so.
    (unrun,) = [line for line in text.splitlines() if line.startswith("| `resnet20_cifar10`")]
    assert "not run yet" in unrun


def test_reading_the_results_rewrites_no_file(tmp_path, capsys):
    from cifarlab.commands import results
    from cifarlab.config.locations import experiments_dir

    published = experiments_dir() / "RESULTS.md"
    before = published.read_text()
    results.main([f"mlruns_dir={tmp_path / 'mlruns'}"])  # an empty store: every preset "not run yet"
    assert published.read_text() == before
    assert "| `mlp_cifar10` |" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.md"))
