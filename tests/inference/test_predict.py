"""``python -m cifarlab predict``: a trained run's model names a class for each of your images."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY, all_runs, cli_env, mlflow_client, run_cli, run_python
from PIL import Image

from cifarlab.commands.predict import parse_args
from cifarlab.errors import CifarlabError
from cifarlab.inference.images import find_images, prepare_images
from cifarlab.inference.predict_images import check_options
from cifarlab.models.class_names import save_class_names

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_images(folder: Path) -> list[str]:
    """Four PNGs for a 16x16 RGB model: two that fit, one 20x20 (resized), one grayscale."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / "b.png")
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / "big.png")
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), mode="L").save(folder / "gray.png")
    (folder / "notes.txt").write_text("not an image")
    return ["a.png", "b.png", "big.png", "gray.png"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny FINISHED run, its class names, and a folder of images to predict."""
    workdir = tmp_path_factory.mktemp("predict")
    run_cli(*TINY, cwd=workdir)
    (run,) = all_runs(workdir / "mlruns")
    assert run.info.status == "FINISHED"
    names = write_images(workdir / "images")
    class_names = [f"class_{i}" for i in range(4)]  # the synthetic dataset's names
    return workdir, run.info.run_id, names, class_names


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_folder_predictions_table_csv_and_grid(trained):
    workdir, run_id, names, class_names = trained
    proc = run_cli(
        f"run={run_id}",
        "images=images",
        "output=out/preds.csv",
        "grid=grid.png",
        command="predict",
        cwd=workdir,
    )
    table = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.endswith("%")}
    assert sorted(table) == names  # notes.txt is not an image
    for row in table.values():
        assert row[1] in class_names  # the top-1 class
        assert len([cell for cell in row if cell.endswith("%")]) == 3  # top_k=3 by default
    assert "resized 1 image from 20x20 to 16x16" in proc.stderr and "big.png" in proc.stderr
    assert "from grayscale to RGB: gray.png" in proc.stderr

    rows = read_csv(workdir / "out" / "preds.csv")
    assert [r["file"] for r in rows] == names
    for r in rows:
        assert r["predicted"] == r["top1_class"] == table[r["file"]][1]
        probs = [float(r[f"top{i}_probability"]) for i in (1, 2, 3)]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
    grid = workdir / "grid.png"
    assert grid.read_bytes()[:8] == PNG_MAGIC
    assert Image.open(grid).size[0] > 300


def test_checkpoint_from_a_downloaded_run_writes_json(trained, tmp_path):
    workdir, run_id, names, _ = trained
    client = mlflow_client(workdir / "mlruns")
    ckpt = Path(client.download_artifacts(run_id, "checkpoints/best.keras", str(tmp_path)))
    proc = run_cli(
        f"checkpoint={ckpt}",
        "images=images",
        f"output={tmp_path / 'preds.json'}",
        "top_k=4",
        "class_names=w,x,y,z",
        command="predict",
        cwd=workdir,
    )
    assert f"by checkpoint {ckpt}" in proc.stdout
    rows = json.loads((tmp_path / "preds.json").read_text())
    assert [r["file"] for r in rows] == names
    for row in rows:
        assert row["predicted"] in "wxyz" and row["predicted"] == row["top_k"][0]["class"]
        assert sorted(e["class"] for e in row["top_k"]) == ["w", "x", "y", "z"]
        assert sum(e["probability"] for e in row["top_k"]) == pytest.approx(1.0, abs=1e-4)


def test_samples_predicts_the_runs_test_images_with_true_labels(trained):
    workdir, run_id, _, class_names = trained
    proc = run_cli(f"run={run_id}", "samples=5", "output=samples.json", command="predict", cwd=workdir)
    rows = json.loads((workdir / "samples.json").read_text())
    assert len(rows) == 5 and all(r["file"].startswith("test[") for r in rows)
    assert all(r["true"] in class_names and r["correct"] == (r["true"] == r["predicted"]) for r in rows)
    assert "sampled test images right" in proc.stdout
    assert (workdir / "prediction_grid.png").read_bytes()[:8] == PNG_MAGIC
    assert "/step" not in proc.stdout  # one batch: no progress
    # Many batches show Keras's progress: a bar on a terminal, its closing line in a log.
    many = run_cli(
        f"run={run_id}", "samples=12", "batch_size=1", "output=many.json", command="predict", cwd=workdir
    )
    assert [line for line in many.stdout.splitlines() if line.startswith("12/12 ") and "/step" in line]


@pytest.mark.slow
def test_a_signal_while_predict_writes_lets_it_finish_and_says_so(trained):
    """The output is a named pipe, so the writing waits, deterministically, for this test to read."""
    workdir, run_id, _, _ = trained
    pipe = workdir / "piped.csv"
    os.mkfifo(pipe)
    command = subprocess.Popen(
        [sys.executable, "-m", "cifarlab", "predict", f"run={run_id}", "images=images", f"output={pipe}"],
        cwd=workdir, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert command.stdout is not None
    while "predictions by" not in command.stdout.readline():  # the table comes, then the writing
        assert command.poll() is None, command.communicate()
    command.send_signal(signal.SIGTERM)
    time.sleep(1)  # the signal lands while the writing waits for a reader
    rows = list(csv.DictReader(read_fifo_until_exit(pipe, command).splitlines()))
    _, stderr = command.communicate(timeout=60)
    assert len(rows) == 4, stderr  # written in full
    assert command.returncode == 143 and "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == (
        "cifarlab predict: stopped by SIGTERM; everything asked for was written before it stopped"
    )


@pytest.mark.slow
def test_a_signal_while_predict_loads_the_model_stops_it_once_loaded_and_says_so(trained):
    workdir, run_id, _, _ = trained
    command = subprocess.Popen(
        [sys.executable, "-m", "cifarlab", "predict", f"run={run_id}", "images=images", "output=out.csv"],
        cwd=workdir, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    maps = Path(f"/proc/{command.pid}/maps")
    while "libtensorflow" not in maps.read_text():  # the options are checked: the loading began
        assert command.poll() is None, command.communicate()
        time.sleep(0.01)
    command.send_signal(signal.SIGTERM)
    _, stderr = command.communicate(timeout=60)
    assert command.returncode == 143 and "Traceback" not in stderr, stderr
    # TensorFlow is not interrupted mid-op; the signal waits for the model, not for a batch.
    assert "cifarlab: SIGTERM: stopping after loading the model; SIGTERM again stops at once" in stderr
    assert stderr.strip().splitlines()[-1] == "cifarlab predict: stopped by SIGTERM; nothing was recorded"
    assert not (workdir / "out.csv").exists()


def read_fifo_until_exit(pipe: Path, command: subprocess.Popen, timeout_s: float = 60) -> str:
    """All a command writes into the named pipe ``pipe``. Opened without waiting for a writer, so a
    command that died before opening it fails the test instead of hanging it."""
    fd = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)  # lets the command's open for writing go on
    chunks, deadline = [], time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:  # the writer is there, with nothing written yet
                chunk = None
            if chunk:
                chunks.append(chunk)
            elif chunk == b"" and command.poll() is not None:  # no writer, and none to come
                return b"".join(chunks).decode()
            else:
                time.sleep(0.05)
    finally:
        os.close(fd)
    command.kill()
    raise AssertionError(f"the command wrote for more than {timeout_s} s")


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("cifarlab: error: ")
    return lines[0]


def test_missing_images_folder_is_one_line_error(trained):
    workdir, run_id, _, _ = trained
    proc = run_cli(f"run={run_id}", "images=no_such_folder", command="predict", cwd=workdir, check=False)
    line = one_line_error(proc)
    assert "images='no_such_folder'" in line and "does not exist" in line


def test_unknown_run_is_one_line_error(trained):
    workdir, _, _, _ = trained
    proc = run_cli(
        "run=0123456789abcdef0123456789abcdef", "images=images", command="predict", cwd=workdir, check=False
    )
    line = one_line_error(proc)
    assert "run='0123456789abcdef0123456789abcdef' is not a run" in line


@pytest.mark.parametrize(
    "args, expected",
    [
        (["images=x"], "no model given"),
        (["run=a", "checkpoint=b.keras", "images=x"], "run= and checkpoint= were both given"),
        (["run=a"], "nothing to predict"),
        (["run=a", "imgs=x"], "did you mean images=?"),
        (["run=a", "images=x", "top_k=abc"], "top_k='abc' is not valid; use a number"),
        (["run=a", "images=x", "output=preds.txt"], "output='preds.txt'"),
        (["checkpoint=missing.keras", "images=x"], "checkpoint='missing.keras' does not exist"),
        (["checkpoint=c.keras", "samples=3"], "samples=3 needs the training run"),
    ],
)
def test_bad_arguments_fail_before_loading_anything(args, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.keras").write_bytes(b"")
    with pytest.raises(CifarlabError, match=expected.replace("?", r"\?").replace("[", r"\[")):
        check_options(parse_args(args))


def test_argument_errors_do_not_import_tensorflow(tmp_path):
    code = textwrap.dedent(
        """
        import sys
        from cifarlab.commands import predict
        try:
            predict.main(["run=0123456789abcdef0123456789abcdef", "images=missing"])
        except SystemExit as exit:
            print("exit", exit.code)
        print("tensorflow" in sys.modules, "keras" in sys.modules)
        """
    )
    proc = run_python(code, cwd=tmp_path)
    assert proc.stdout.split() == ["exit", "1", "False", "False"], proc.stderr


def test_prepare_images_resizes_and_converts_channels(tmp_path):
    write_images(tmp_path)
    files = find_images(str(tmp_path))
    assert [f.name for f in files] == ["a.png", "b.png", "big.png", "gray.png"]

    rgb, warnings = prepare_images(files, (16, 16, 3))
    assert rgb.shape == (4, 16, 16, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[0], np.asarray(Image.open(tmp_path / "a.png")))
    gray = rgb[3]
    assert np.array_equal(gray[..., 0], gray[..., 2])  # grayscale replicated into RGB
    assert any("resized 1 image from 20x20 to 16x16" in w for w in warnings)

    mono, warnings = prepare_images(files[:1] + files[3:], (8, 8, 1))
    assert mono.shape == (2, 8, 8, 1)
    assert any("resized 2 images from 16x16 to 8x8" in w for w in warnings)
    assert any("from colour to grayscale: a.png" in w for w in warnings)


def test_find_images_rejects_empty_folders_and_unreadable_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CifarlabError, match="no images"):
        find_images(str(tmp_path / "empty"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(CifarlabError, match="broken.png cannot be read as an image"):
        prepare_images(find_images(str(broken)), (16, 16, 3))


def table_classes(stdout: str) -> set[str]:
    """The top-1 class of every row of the predictions table."""
    return {line.split()[1] for line in stdout.splitlines() if line.endswith("%")}


def test_checkpoint_names_its_classes_from_the_file_saved_beside_it(trained, tmp_path):
    workdir, run_id, _, _ = trained
    client = mlflow_client(workdir / "mlruns")
    ckpt = Path(client.download_artifacts(run_id, "checkpoints/best.keras", str(tmp_path)))
    save_class_names(ckpt, ["ant", "bee", "cow", "doe"])
    proc = run_cli(f"checkpoint={ckpt}", "images=images", "top_k=4", command="predict", cwd=workdir)
    assert table_classes(proc.stdout) <= {"ant", "bee", "cow", "doe"} and "class_" not in proc.stdout

    proc = run_cli(
        f"checkpoint={ckpt}",
        "images=images",
        "class_names=w,x,y,z",  # the argument wins
        command="predict",
        cwd=workdir,
    )
    assert table_classes(proc.stdout) <= set("wxyz")

    ckpt.with_name("best.classes.json").unlink()  # no names saved: generic ones, as before
    proc = run_cli(f"checkpoint={ckpt}", "images=images", command="predict", cwd=workdir)
    assert table_classes(proc.stdout) <= {f"class_{i}" for i in range(4)}


def test_truncated_checkpoint_is_one_line_naming_the_file(trained, tmp_path):
    workdir, run_id, _, _ = trained
    client = mlflow_client(workdir / "mlruns")
    whole = Path(client.download_artifacts(run_id, "checkpoints/best.keras", str(tmp_path))).read_bytes()
    cut = tmp_path / "cut.keras"
    cut.write_bytes(whole[: len(whole) // 2])
    proc = run_cli(f"checkpoint={cut}", "images=images", command="predict", cwd=workdir, check=False)
    line = one_line_error(proc)
    assert f"{cut} is not a readable Keras model" in line


def test_a_zip_that_is_no_keras_model_is_one_error_line(trained, tmp_path):
    workdir, _, _, _ = trained
    fake = tmp_path / "fake.keras"
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("notes.txt", "not a model")
    proc = run_cli(f"checkpoint={fake}", "images=images", command="predict", cwd=workdir, check=False)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("cifarlab: error: ")]
    assert len(errors) == 1 and f"{fake} is not a readable Keras model" in errors[0]
