"""Every preset's logged model loads with plain MLflow where cifarlab cannot be imported.

The README promises that the logged model needs no cifarlab code: a user serves it
with ``mlflow models serve`` or loads it with ``mlflow.pyfunc.load_model`` on a
machine without cifarlab. Each preset trains one step (``debug=fast``) on generated
images in one sweep, then a fresh Python process in which ``import cifarlab`` fails
loads every logged model and predicts on uint8 images (the delta baseline's, a traced
SavedModel, among them); the README's serving recipe, run as written in bash (only the
run id and port filled in), serves the recommended CPU preset's (whose training schedule
is cifarlab's own class). One server is enough: ``mlflow models serve`` loads a model
as ``mlflow.pyfunc.load_model`` does, and each start costs 15-30 s on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import REPO_ROOT, all_runs, cli_env, free_port, run_cli, run_python

from cifarlab.config.locations import experiments_dir

# Makes ``import cifarlab`` fail in the process that loads the models.
BLOCK_CIFARLAB = textwrap.dedent(
    """
    import sys

    class NoCifarlab:
        def find_spec(self, name, path=None, target=None):
            if name == "cifarlab" or name.startswith("cifarlab."):
                raise ImportError(name + " is not installed here")
            return None

    sys.meta_path.insert(0, NoCifarlab())
    """
)

LOAD_AND_PREDICT = textwrap.dedent(
    """
    import json, sys
    import mlflow, numpy as np

    mlflow.set_tracking_uri(sys.argv[1])
    shapes, failed = {}, {}
    for run_id in json.loads(sys.argv[2]):
        try:
            model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
        except Exception as err:
            failed[run_id] = str(err).splitlines()[0][:300]
            continue
        shape = model.metadata.get_input_schema().inputs[0].shape
        probs = model.predict(np.zeros((2, *shape[1:]), np.uint8))
        assert probs.shape[0] == 2 and np.allclose(probs.sum(axis=1), 1.0, atol=1e-3), probs
        shapes[run_id] = list(probs.shape)
    print(json.dumps({"loaded": shapes, "failed": failed}))
    """
)


SERVED = "cifar10_fast_cpu"


def readme_serving_block() -> str:
    blocks = re.findall(r"```bash\n(.*?)```", (REPO_ROOT / "README.md").read_text(), flags=re.S)
    (block,) = [b for b in blocks if "mlflow models serve -m runs:/" in b]
    return block


def serve_as_the_readme_says(run_id: str, cwd, env: dict[str, str]) -> list[float]:
    """The README's serving block in bash for ``run_id``: the class probabilities it answers."""
    script = readme_serving_block().replace("<run id>", run_id).replace("5001", str(free_port()))
    proc = subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    answer = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert answer.startswith("{"), (run_id, proc.stdout[-2000:], proc.stderr[-3000:])
    (probs,) = json.loads(answer)["predictions"]
    return probs


@pytest.mark.slow
def test_every_presets_model_loads_and_predicts_without_cifarlab(tmp_path):
    run_cli(
        "-m", "experiment=glob(*)", "debug=fast", "dataset=synthetic", "dataset.image_size=32",
        "tracking.log_model=true",
        cwd=tmp_path, timeout=1500,
    )  # fmt: skip
    runs = [r for r in all_runs(tmp_path / "mlruns") if r.data.tags.get("sweep_role") != "parent"]
    presets = {r.data.tags.get("preset") for r in runs}
    assert presets == {p.stem for p in experiments_dir().glob("*.yaml")}
    assert all(r.info.status == "FINISHED" for r in runs)

    blocker = tmp_path / "no_cifarlab"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_CIFARLAB)
    # The README's recipe calls ``mlflow`` by name: this interpreter's, active venv or not.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**cli_env(), "PYTHONPATH": str(blocker), "PATH": path}
    assert subprocess.run([sys.executable, "-c", "import cifarlab"], env=env, cwd=tmp_path).returncode != 0
    store = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    run_ids = [r.info.run_id for r in runs]  # delta's own layer too: its model is a traced SavedModel
    proc = run_python(LOAD_AND_PREDICT, store, json.dumps(run_ids), cwd=tmp_path, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["failed"] == {} and set(result["loaded"]) == set(run_ids)

    by_preset = {r.data.tags.get("preset"): r.info.run_id for r in runs}
    probs = serve_as_the_readme_says(by_preset[SERVED], tmp_path, env)
    assert len(probs) == 4 and abs(sum(probs) - 1.0) < 1e-3  # the synthetic dataset's 4 classes
