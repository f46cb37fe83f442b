"""cifarlab.commands.export: a run's model as a SavedModel and a LiteRT file, each reloaded and run on uint8 images."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import TINY, all_runs, run_cli


@pytest.fixture(scope="module")  # trains a model and converts it twice: the tests using it are slow
def exported(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("export")
    run_cli(*TINY, "trainer.epochs=1", cwd=workdir)
    (run,) = all_runs(workdir / "mlruns")
    run_id = run.info.run_id
    for fmt, out in (("saved_model", "out/sm"), ("litert", "out/model.tflite")):
        proc = run_cli(f"run={run_id}", f"format={fmt}", f"out={out}", command="export", cwd=workdir)
        assert f"exported as {fmt}" in proc.stdout
    return workdir, run_id


def reference(workdir, run_id, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of the logged Keras model, and of its float32 build that the exports hold."""
    from cifarlab.inference.formats import float32_model
    from cifarlab.inference.loading import load_model

    model = load_model(run=run_id, tracking_uri=f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}")
    logged = model.keras_model.predict(images, verbose=0)
    return logged, float32_model(model.keras_model).predict(images, verbose=0)


def uint8_images(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)


def check_probs(probs: np.ndarray, logged: np.ndarray, float32: np.ndarray) -> None:
    np.testing.assert_allclose(probs, float32, atol=1e-4)
    np.testing.assert_allclose(probs, logged, atol=2e-2)  # the logged model may compute in bfloat16
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_saved_model_serving_signature_takes_uint8(exported):
    import tensorflow as tf

    workdir, run_id = exported
    images = uint8_images()
    serve = tf.saved_model.load(str(workdir / "out" / "sm")).signatures["serving_default"]
    (spec,) = serve.structured_input_signature[1].values()
    assert spec.dtype == tf.uint8 and tuple(spec.shape) == (None, 16, 16, 3)
    (probs,) = serve(images=tf.constant(images)).values()
    check_probs(probs.numpy(), *reference(workdir, run_id, images))


def litert_interpreter(path: str):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # the LiteRT runtime is a separate package; TensorFlow still ships the interpreter
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter(model_path=path)


@pytest.mark.slow
def test_litert_file_runs_on_uint8_images(exported):
    workdir, run_id = exported
    images = uint8_images(1)
    interpreter = litert_interpreter(str(workdir / "out" / "model.tflite"))
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    (probs,) = interpreter.get_signature_runner("serving_default")(images=images).values()
    check_probs(probs, *reference(workdir, run_id, images))


@pytest.mark.parametrize(
    "args, expected",
    [
        (["format=onnx", "out=x"], "format='onnx' is not an export format"),
        (["format=litert", "out=model.pb"], "out='model.pb' is not valid; end the file name in .tflite"),
        (["format=saved_model"], "out=None is missing"),
    ],
)
def test_bad_format_or_out_is_one_line_before_anything_loads(tmp_path, args, expected):
    proc = run_cli("run=0123456789abcdef0123456789abcdef", *args, command="export", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cifarlab: error: ") and expected in lines[0]
    assert not (tmp_path / "mlruns").exists()  # checked before MLflow was asked


@pytest.mark.slow
def test_unknown_run_is_one_line(exported):
    workdir, _ = exported
    proc = run_cli(
        "run=0123456789abcdef0123456789abcdef",
        "format=litert",
        "out=m.tflite",
        command="export",
        cwd=workdir,
        check=False,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cifarlab: error: run='0123456789abcdef0123456789abcdef'")
    assert not (workdir / "m.tflite").exists()
