"""model.init_from with a file that is not a readable Keras model: one line, before any run opens."""

from __future__ import annotations

import zipfile

import pytest
from helpers import TINY, all_runs, run_cli


def _truncated(path):
    path.write_bytes(b"PK\x03\x04 truncated")


def _zip_without_a_model(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a model")


@pytest.mark.slow
@pytest.mark.parametrize("make", [_truncated, _zip_without_a_model])
def test_unreadable_init_from_fails_in_one_line_naming_the_file(tmp_path, make):
    bad = tmp_path / "bad.keras"
    make(bad)
    proc = run_cli(*TINY, f"model.init_from={bad}", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("cifarlab: error:")]
    assert len(errors) == 1 and "is not a readable Keras model" in errors[0] and str(bad) in errors[0]
    assert "Traceback" not in proc.stderr
    assert all_runs(tmp_path / "mlruns") == []
