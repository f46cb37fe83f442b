"""Shared fixtures: compose configs like the CLI does, and run the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from cifarlab.config.compose import compose_config, register_config_store

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = REPO_ROOT.parent / "shared" / "data" / "cifar10-subset"

# A run small enough for seconds on 2 cores: 4 classes of 16x16 images.
TINY = [
    "dataset=synthetic",
    "model=mlp",
    "model.hidden_units=[32]",
    "augmentation=none",
    "trainer.epochs=2",
    "trainer.batch_size=32",
]

register_config_store()
# trainer.fast_dropout=auto calibrates nothing in the tests (and their CLI subprocesses), except those about it.
os.environ.setdefault("CIFARLAB_CALIBRATE", "0")


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose ``conf/`` with overrides, outputs and store redirected into tmp_path."""

    def _compose(*overrides: str) -> DictConfig:
        cfg = compose_config(overrides, check=False, hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.mlruns_dir = str(tmp_path / "mlruns")
            cfg.paths.state_dir = str(tmp_path / "mlruns" / "state")
            cfg.paths.output_dir = str(tmp_path / "outputs")
            cfg.trainer.verbose = 0
            del cfg.hydra
        return cfg

    yield _compose
    GlobalHydra.instance().clear()


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("HYDRA_FULL_ERROR", None)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(
    *args: str, cwd: Path, module: str = "cifarlab", check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -m cifarlab ARGS`` in ``cwd`` (so its mlruns/ lands there)."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"python -m {module} {' '.join(args)} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


def mlflow_client(store_dir: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{store_dir / 'mlflow.db'}")


def all_runs(store_dir: Path, experiment: str = "cifarlab") -> list:
    client = mlflow_client(store_dir)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], max_results=1000)
