"""A diverging loss stops training with one line of advice, whatever callbacks the config has."""

from __future__ import annotations

import pytest
from helpers import TINY, all_runs, run_cli


@pytest.mark.slow
@pytest.mark.parametrize("callbacks", ["callbacks=default", "callbacks=none"])
def test_diverged_loss_gives_one_line_of_advice_with_or_without_the_nan_callback(tmp_path, callbacks):
    proc = run_cli(
        *TINY, callbacks, "optimizer=sgd", "optimizer.lr=1e30", "trainer.epochs=3", cwd=tmp_path, check=False
    )
    assert proc.returncode != 0
    (error,) = [line for line in proc.stderr.splitlines() if line.startswith("cifarlab: error:")]
    assert "training loss became nan in epoch 1; lower optimizer.lr (now 1e+30)" in error, proc.stderr[-2000:]
    assert "Input contains NaN" not in proc.stderr
    (run,) = all_runs(tmp_path / "mlruns")
    assert run.info.status == "FAILED"
