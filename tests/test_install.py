"""conf/ and experiments/ are found from a wheel install, not only from a checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest
from helpers import REPO_ROOT, cli_env


@pytest.mark.slow
def test_wheel_carries_configs_and_runs_from_any_directory(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(REPO_ROOT)],
        check=True,
        timeout=600,
    )
    (wheel,) = dist.glob("cifarlab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "cifarlab/_conf/config.yaml" in names
    assert "cifarlab/_conf/model/cnn_bn.yaml" in names

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)],
        check=True,
        timeout=600,
    )
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = cli_env()
    env["PYTHONPATH"] = str(target)  # ahead of the editable checkout on sys.path
    script = (
        "import sys; sys.argv = ['cifarlab', '--cfg', 'job', 'model=mlp'];"
        "import cifarlab, cifarlab.config.locations as loc; print('PKG', cifarlab.__file__); print('CONF', loc.conf_dir());"
        "from cifarlab.commands.train import main; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=workdir, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert f"PKG {target}" in proc.stdout
    assert f"CONF {target / 'cifarlab' / '_conf'}" in proc.stdout
    assert "name: mlp" in proc.stdout
