"""Shared fixtures: compose configs like the CLI does, into tmp_path. Helpers live in helpers.py."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from cifarlab.config.compose import compose_config, register_config_store

register_config_store()
# trainer.fast_dropout=auto calibrates nothing in the tests (and their CLI subprocesses), except those about it.
os.environ.setdefault("CIFARLAB_CALIBRATE", "0")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with slow tests first. xdist (--dist loadfile) hands out whole files in collection
    order: the long ones then start early instead of keeping one worker busy after the other
    has run out of files. The order within a file stays as it is."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


REPO_MLRUNS = Path(__file__).resolve().parents[1] / "mlruns"


@pytest.fixture(scope="session", autouse=True)
def nothing_written_to_the_repositorys_mlruns() -> Iterator[None]:
    """Tests keep their stores in tmp_path. An experiment a test makes with a bare MlflowClient
    gets MLflow's default artifact root, ./mlruns of pytest's folder: the repository's."""
    before = set(REPO_MLRUNS.iterdir()) if REPO_MLRUNS.is_dir() else set()
    yield
    after = set(REPO_MLRUNS.iterdir()) if REPO_MLRUNS.is_dir() else set()
    assert after <= before, f"tests wrote into {REPO_MLRUNS}: {sorted(p.name for p in after - before)}"


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
