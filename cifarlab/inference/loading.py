"""Load a trained model (MLflow run, ``models:/`` URI or ``.keras`` checkpoint) and images for it.

Shared by ``cifarlab.predict`` and ``cifarlab.evaluate``. Finding a model
(``locate_model``) talks to MLflow only and imports no TensorFlow, so a wrong
run id or path fails in a second; ``load_model`` then imports Keras.
"""

from __future__ import annotations

import csv
import glob
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from cifarlab import tracking
from cifarlab.errors import ConfigError, CifarlabError, DataError

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
CHECKPOINT_SUFFIXES = (".keras", ".h5")
MODEL_NAME = "model"  # the name train.py logs the model under
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_MODEL_ID = re.compile(r"^m-[0-9a-f]{32}$")
_URI_HELP = "use models:/<name>/<version>, models:/<model id> (m-...) or runs:/<run id>/model"


@dataclass
class ModelSource:
    """Where a model lives, found without importing TensorFlow."""

    kind: str  # "mlflow" (a logged model URI) or "checkpoint" (a .keras file)
    location: str  # the URI or the local file path
    class_names: list[str] | None
    source_run_id: str | None
    description: str


@dataclass
class LoadedModel:
    """A Keras model ready to predict: raw 0-255 pixels in, class probabilities out."""

    keras_model: Any
    class_names: list[str]
    input_shape: tuple[int, int, int]
    source_run_id: str | None
    description: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# --------------------------------------------------------------------------- MLflow store


def resolve_tracking_uri(uri: str | None = None, mlruns_dir: str = "mlruns") -> str:
    """The store training used: ``uri``, else $MLFLOW_TRACKING_URI, else SQLite in ``mlruns_dir``."""
    cfg = OmegaConf.create({"tracking": {"uri": uri}, "paths": {"mlruns_dir": mlruns_dir}})
    return tracking.tracking_uri(cfg)


def connect(uri: str):
    """An MlflowClient for ``uri``; fails in one line when the store is not there."""
    import mlflow

    tracking.check_server_reachable(uri)
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        if not db.is_file():
            raise CifarlabError(
                f"no MLflow store at {db} (tracking.uri={uri!r}); run from the folder you trained in, "
                "or set tracking.uri=... (or paths.mlruns_dir=...) to where the runs are"
            )
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri)


def get_run(client: Any, run_id: str, key: str = "run"):
    """The MLflow run ``run_id``, or a one-line error naming ``key``."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as err:
        if getattr(err, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
            raise CifarlabError(f"{key}={run_id!r}: MLflow answered: {_first_line(err)}") from None
    hint = "" if _RUN_ID.match(run_id) else " (run ids are 32 hex characters)"
    raise ConfigError(
        key,
        run_id,
        f"copy the id from the training output or the MLflow UI (mlflow ui --backend-store-uri "
        f"{client.tracking_uri})",
        problem=f"is not a run in {client.tracking_uri}{hint}",
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# --------------------------------------------------------------------------- finding a model


def parse_class_names(value: str | Sequence[str] | None) -> list[str] | None:
    """``cat,dog`` or ``[cat, dog]`` (or a list) as a list of names; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [part.strip().strip("'\"") for part in value.strip().strip("[]").split(",")]
    names = [str(v) for v in value if str(v)]
    return names or None


def class_names_from_reports(reports_dir: Path) -> list[str] | None:
    """Class names from a run's ``reports/confusion_matrix.csv`` header, if it is there."""
    path = Path(reports_dir) / "confusion_matrix.csv"
    if not path.is_file():
        return None
    with path.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), [])
    return header[1:] or None


def _run_class_names(run_id: str) -> list[str] | None:
    import mlflow

    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="reports/confusion_matrix.csv", dst_path=tempfile.mkdtemp()
        )
    except Exception:  # no reports logged: the caller falls back to generic names
        return None
    return class_names_from_reports(Path(local).parent)


def _model_info(uri: str, key: str):
    """``mlflow.models.get_model_info`` with its failure as one line naming ``key``."""
    import mlflow

    try:
        return mlflow.models.get_model_info(uri)
    except Exception as err:  # MlflowException, OSError: the URI does not lead to a model
        raise ConfigError(key, uri, _URI_HELP, problem=f"is not a loadable model ({_first_line(err)})") from None


def _checkpoint_run_id(path: Path) -> str | None:
    """The run id when the file sits in a run's artifacts (``<run id>/artifacts/checkpoints/x``)."""
    parts = path.resolve().parts
    if len(parts) >= 4 and parts[-2] == "checkpoints" and parts[-3] == "artifacts" and _RUN_ID.match(parts[-4]):
        return parts[-4]
    return None


def check_checkpoint(checkpoint: str) -> Path:
    """The checkpoint path, checked to be an existing ``.keras`` (or ``.h5``) file."""
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        problem = "is a folder" if path.is_dir() else "does not exist"
        raise ConfigError("checkpoint", checkpoint, "give the path of a .keras file, e.g. best.keras", problem)
    if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise ConfigError(
            "checkpoint", checkpoint, "give a Keras model file ending in .keras", "is not a .keras file"
        )
    return path


def _checkpoint_source(path: Path, class_names: list[str] | None) -> ModelSource:
    names = class_names or class_names_from_reports(path.resolve().parent.parent / "reports")
    return ModelSource("checkpoint", str(path), names, _checkpoint_run_id(path), f"checkpoint {path}")


def _run_source(client: Any, run_id: str, class_names: list[str] | None) -> ModelSource:
    """The run's logged model, else its ``checkpoints/best.keras`` artifact."""
    import mlflow

    run = get_run(client, run_id)
    uri = f"runs:/{run_id}/{MODEL_NAME}"
    try:
        info = mlflow.models.get_model_info(uri)
    except Exception:  # no logged model (tracking.log_model=false): try the checkpoint
        info = None
    if info is not None:
        names = class_names or (info.metadata or {}).get("class_names") or _run_class_names(run_id)
        return ModelSource("mlflow", uri, _names(names), run_id, f"run {run_id} ({info.model_uri})")
    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="checkpoints/best.keras", dst_path=tempfile.mkdtemp()
        )
    except Exception:
        raise ConfigError(
            "run",
            run_id,
            "train with tracking.log_model=true, or pass checkpoint=<path.keras>",
            problem=f"has no logged model and no checkpoints/best.keras (status {run.info.status})",
        ) from None
    names = class_names or _run_class_names(run_id)
    return ModelSource("checkpoint", local, names, run_id, f"run {run_id} (checkpoints/best.keras)")


def _uri_source(model_uri: str, class_names: list[str] | None) -> ModelSource:
    if _MODEL_ID.match(model_uri):  # a logged model's id, as MLflow shows it
        model_uri = f"models:/{model_uri}"
    if not model_uri.startswith(("models:/", "runs:/")) and "://" not in model_uri:
        raise ConfigError("model", model_uri, _URI_HELP, problem="is not a model URI")
    info = _model_info(model_uri, "model")
    names = class_names or (info.metadata or {}).get("class_names")
    if not names and info.run_id:
        names = _run_class_names(info.run_id)
    return ModelSource("mlflow", model_uri, _names(names), info.run_id, f"model {model_uri}")


def _names(names: Sequence[str] | None) -> list[str] | None:
    return [str(n) for n in names] if names else None


def check_one_source(run: str | None, checkpoint: str | None, model_uri: str | None) -> str:
    """Which of run= / checkpoint= / model= was given: exactly one must be."""
    given = [key for key, value in (("run", run), ("checkpoint", checkpoint), ("model", model_uri)) if value]
    if not given:
        raise CifarlabError(
            "no model given; add run=<run id> (printed by training, listed by mlflow ui), "
            "checkpoint=<path.keras> or model=<models:/... or runs:/... URI>"
        )
    if len(given) > 1:
        both = "both" if len(given) == 2 else "all"
        raise CifarlabError(f"{' and '.join(k + '=' for k in given)} were {both} given; keep exactly one of them")
    return given[0]


def locate_model(
    run: str | None = None,
    checkpoint: str | None = None,
    model_uri: str | None = None,
    *,
    class_names: Sequence[str] | None = None,
    tracking_uri: str | None = None,
) -> ModelSource:
    """Find the model (no TensorFlow): exactly one of ``run``, ``checkpoint``, ``model_uri``."""
    which = check_one_source(run, checkpoint, model_uri)
    names = _names(class_names)
    if which == "checkpoint":
        return _checkpoint_source(check_checkpoint(str(checkpoint)), names)
    client = connect(tracking_uri or resolve_tracking_uri())
    if which == "run":
        return _run_source(client, str(run), names)
    return _uri_source(str(model_uri), names)


# --------------------------------------------------------------------------- loading it


def _register_custom_layers() -> None:
    """Import every cifarlab model module, so layers they register deserialize."""
    import importlib
    import pkgutil

    import cifarlab.models

    for module in pkgutil.iter_modules(cifarlab.models.__path__):
        try:
            importlib.import_module(f"cifarlab.models.{module.name}")
        except ImportError:  # an optional dependency is missing: its layers are not needed here
            pass


def _load_keras(source: ModelSource) -> Any:
    _register_custom_layers()
    if source.kind == "checkpoint":
        import keras

        try:
            return keras.models.load_model(source.location, compile=False)
        except Exception as err:  # corrupt file, unknown layer, wrong format
            raise CifarlabError(
                f"checkpoint={source.location!r} could not be loaded as a Keras model ({_first_line(err)}); "
                "give a .keras file saved by cifarlab training"
            ) from None
    import mlflow.keras

    try:
        return mlflow.keras.load_model(source.location)
    except Exception as err:
        raise CifarlabError(f"{source.description} could not be loaded ({_first_line(err)})") from None


def _input_shape(model: Any) -> tuple[int, int, int]:
    shape = tuple(model.input_shape[1:])
    if len(shape) != 3 or any(d is None for d in shape):
        raise CifarlabError(f"the model takes inputs shaped {shape}; cifarlab models take (height, width, channels)")
    return tuple(int(d) for d in shape)  # type: ignore[return-value]


def _checked_names(names: list[str] | None, num_outputs: int, warn: list[str]) -> list[str]:
    if names and len(names) == num_outputs:
        return names
    if names:
        warn.append(
            f"{len(names)} class names for a model with {num_outputs} outputs; using class_0..class_{num_outputs - 1}"
        )
    return [f"class_{i}" for i in range(num_outputs)]


def load_source(source: ModelSource) -> tuple[LoadedModel, list[str]]:
    """Load a located model (imports Keras); returns it and any warnings."""
    model = _load_keras(source)
    warnings: list[str] = []
    num_outputs = int(model.output_shape[-1])
    names = _checked_names(source.class_names, num_outputs, warnings)
    loaded = LoadedModel(model, names, _input_shape(model), source.source_run_id, source.description)
    return loaded, warnings


def load_model(
    run: str | None = None,
    checkpoint: str | None = None,
    model_uri: str | None = None,
    *,
    class_names: Sequence[str] | None = None,
    tracking_uri: str | None = None,
) -> LoadedModel:
    """Load a model from a run id, a ``.keras`` checkpoint or a ``models:/``/``runs:/`` URI."""
    source = locate_model(run, checkpoint, model_uri, class_names=class_names, tracking_uri=tracking_uri)
    return load_source(source)[0]


def predict_probs(model: LoadedModel, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, classes) for uint8 images; softmax applied if the model gave logits."""
    probs = np.asarray(model.keras_model.predict(images, batch_size=batch_size, verbose=0), dtype=np.float64)
    sums = probs.sum(axis=1)
    if probs.size and (probs.min() < 0 or not np.allclose(sums, 1.0, atol=1e-3)):
        shifted = np.exp(probs - probs.max(axis=1, keepdims=True))
        probs = shifted / shifted.sum(axis=1, keepdims=True)
    return probs


# --------------------------------------------------------------------------- images


def find_images(spec: str, key: str = "images") -> list[Path]:
    """An image file, every image under a folder (sorted, subfolders too), or a glob's matches."""
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise ConfigError(
                key, spec, "point it at PNG or JPEG files",
                problem="is a folder with no images (subfolders searched too)",
            )
        return found
    if any(ch in spec for ch in "*?["):
        found = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if found:
            return found
        raise ConfigError(key, spec, "check the pattern, e.g. images='photos/*.png'", problem="matches no files")
    raise ConfigError(key, spec, "give an image file or a folder of PNG/JPEG images", problem="does not exist")


def _open_image(path: Path):
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return ImageOps.exif_transpose(img)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(
            f"images: {path} cannot be read as an image ({_first_line(err)}); remove it or give PNG/JPEG files"
        ) from None


def _to_mode(img: Any, channels: int) -> Any:
    """PIL image in the model's mode: ``L`` for 1 channel, ``RGB`` for 3; transparency becomes white."""
    from PIL import Image

    mode = "L" if channels == 1 else "RGB"
    if img.mode == mode:
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        background.alpha_composite(img.convert("RGBA"))
        img = background
    return img.convert(mode)


def _is_gray(img: Any) -> bool:
    return img.mode in _GRAY_MODES or (img.mode == "P" and img.palette is not None and img.palette.mode == "L")


def _summarise(kind: str, groups: Mapping[str, list[str]]) -> list[str]:
    lines = []
    for what, files in groups.items():
        shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        lines.append(f"{kind} {len(files)} image{'s' if len(files) != 1 else ''} {what}: {shown}")
    return lines


def prepare_images(paths: Sequence[str | Path], input_shape: Sequence[int]) -> tuple[np.ndarray, list[str]]:
    """Read images into a uint8 array shaped ``(N, *input_shape)``, and warnings about changes.

    Images are converted to the model's channels (RGB or grayscale; transparent pixels
    become white) and resized to its height and width; each kind of change is one
    warning line naming the files.
    """
    from PIL import Image

    height, width, channels = (int(d) for d in input_shape)
    if channels not in (1, 3):
        raise CifarlabError(f"the model takes {channels}-channel images; only 1 (grayscale) and 3 (RGB) are supported")
    out = np.empty((len(paths), height, width, channels), dtype=np.uint8)
    resized: dict[str, list[str]] = {}
    converted: dict[str, list[str]] = {}
    for i, path in enumerate(paths):
        img = _open_image(Path(path))
        if _is_gray(img) != (channels == 1):
            change = "from grayscale to RGB" if channels == 3 else "from colour to grayscale"
            converted.setdefault(change, []).append(Path(path).name)
        img = _to_mode(img, channels)
        if img.size != (width, height):
            note = "" if img.width * height == img.height * width else " (aspect ratio not kept)"
            resized.setdefault(f"from {img.width}x{img.height} to {width}x{height}{note}", []).append(
                Path(path).name
            )
            img = img.resize((width, height), Image.Resampling.BICUBIC)
        out[i] = np.asarray(img, dtype=np.uint8).reshape(height, width, channels)
    return out, _summarise("resized", resized) + _summarise("converted", converted)


# --------------------------------------------------------------------------- the run's config


def _overridden_keys(overrides: Sequence[str]) -> set[str]:
    keys = set()
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        keys.add(key.split("@", 1)[0])
    return keys


def _param_value(text: str) -> Any:
    return None if text in ("None", "null") else text


def apply_run_params(cfg: DictConfig, params: Mapping[str, str], overrides: Sequence[str] = ()) -> DictConfig:
    """Set ``cfg.dataset`` and ``cfg.paths.data_dir`` to what the run recorded, except what ``overrides`` set.

    A ``dataset=<name>`` override picks another dataset: then none of the run's
    ``dataset.*`` params apply.
    """
    user = _overridden_keys(overrides)
    with open_dict(cfg):
        if "dataset" not in user:
            for key, value in params.items():
                field = key.removeprefix("dataset.")
                if key.startswith("dataset.") and key not in user and "." not in field and field in cfg.dataset:
                    OmegaConf.update(cfg, key, _param_value(value), merge=False)
        if "paths.data_dir" not in user and params.get("paths.data_dir") not in (None, "None"):
            cfg.paths.data_dir = params["paths.data_dir"]
    return cfg


def compose_config(overrides: Sequence[str]) -> DictConfig:
    """cifarlab's config from ``conf/`` with Hydra overrides, as the training CLI composes it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    from cifarlab.cli import describe_hydra_error  # registers the schema and presets
    from cifarlab.config.schema import validate
    from cifarlab.config.locations import conf_dir

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides))
    except HydraException as err:
        raise CifarlabError(describe_hydra_error(err)) from None
    finally:
        GlobalHydra.instance().clear()
    validate(cfg)
    return cfg


def run_config(params: Mapping[str, str], overrides: Sequence[str] = ()) -> DictConfig:
    """The config to rebuild a run's data: ``conf/`` + ``overrides``, dataset from the run's params."""
    return apply_run_params(compose_config(overrides), params, overrides)
