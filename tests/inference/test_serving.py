"""The README's serving recipe, run as written, where cifarlab cannot be imported.

The README's block (``mlflow models serve`` of a run's logged model, wait for
``/ping``, POST a batch of uint8 images to ``/invocations``) runs in bash with only
the run id and the port filled in, on the model of the recommended CPU preset (whose
training schedule is cifarlab's own class) and on the delta baseline's (a traced
SavedModel): each answers class probabilities.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from helpers import REPO_ROOT, all_runs, cli_env, free_port, run_cli

from cifarlab.config.locations import experiments_dir

BLOCK_CIFARLAB = "import sys\nclass No:\n    def find_spec(self, name, path=None, target=None):\n" + (
    "        if name.split('.')[0] == 'cifarlab': raise ImportError(name)\nsys.meta_path.insert(0, No())\n"
)


def readme_serving_block() -> str:
    blocks = re.findall(r"```bash\n(.*?)```", (REPO_ROOT / "README.md").read_text(), flags=re.S)
    (block,) = [b for b in blocks if "mlflow models serve -m runs:/" in b]
    return block


@pytest.mark.slow
def test_the_readmes_serving_recipe_answers_for_the_fast_preset_and_the_delta_baseline(tmp_path):
    assert (experiments_dir() / "cifar10_fast_cpu.yaml").is_file()
    run_cli(
        "-m", "experiment=cifar10_fast_cpu,delta_cifar10", "debug=fast", "dataset=synthetic",
        "dataset.image_size=32", "tracking.log_model=true", "reports.figures=false",
        cwd=tmp_path, timeout=900,
    )  # fmt: skip
    runs = [r for r in all_runs(tmp_path / "mlruns") if r.data.tags.get("sweep_role") != "parent"]
    assert {r.data.tags.get("preset") for r in runs} == {"cifar10_fast_cpu", "delta_cifar10"}

    blocker = tmp_path / "no_cifarlab"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_CIFARLAB)
    env = {**cli_env(), "PYTHONPATH": str(blocker)}
    for run in runs:
        port = str(free_port())
        script = readme_serving_block().replace("<run id>", run.info.run_id).replace("5001", port)
        proc = subprocess.run(
            ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        answer = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        assert answer.startswith("{"), (run.data.tags.get("preset"), proc.stdout[-2000:], proc.stderr[-3000:])
        (probs,) = json.loads(answer)["predictions"]
        assert len(probs) == 4 and abs(sum(probs) - 1.0) < 1e-3  # the synthetic dataset's 4 classes
