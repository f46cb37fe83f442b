"""Which model to use: a run's logged model, a ``.keras`` checkpoint or a ``models:/`` URI.

``locate_model`` finds it and its class names by asking the store only
(``cifarlab.tracking``), with no TensorFlow, so a wrong run id or path fails in a
second; ``loading`` then loads it.
"""

from __future__ import annotations

import re
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifarlab.errors import CifarlabError, ConfigError, first_line
from cifarlab.inference.labels import as_names, checkpoint_class_names, run_class_names
from cifarlab.models.class_names import class_names_path, load_class_names
from cifarlab.tracking import queries
from cifarlab.tracking.models import RUN_KERAS_FILES
from cifarlab.tracking.registry import MODEL_NAME
from cifarlab.tracking.store import connect
from cifarlab.tracking.target import resolve_uri

CHECKPOINT_SUFFIXES = (".keras", ".h5")
DEFAULT_MLRUNS_DIR = "mlruns"  # where training keeps its store when nothing else is said
# A run without an MLflow model: the model its test metrics are of (a search's trial), else its best checkpoint.
MODEL_ID = re.compile(r"^m-[0-9a-f]{32}$")
URI_HELP = (
    "use models:/<name>/<version>, models:/<name>@<alias>, models:/<model id> (m-...) or runs:/<run id>/model"
)


@dataclass
class ModelSource:
    """Where a model lives, found without importing TensorFlow."""

    kind: str  # "mlflow" (a logged model URI) or "checkpoint" (a .keras file)
    location: str  # the URI or the local file path
    class_names: list[str] | None
    source_run_id: str | None
    description: str


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
        raise CifarlabError(
            f"{' and '.join(k + '=' for k in given)} were {both} given; keep exactly one of them"
        )
    return given[0]


def check_checkpoint(checkpoint: str) -> Path:
    """The checkpoint path, checked to be an existing ``.keras`` (or ``.h5``) file."""
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        problem = "is a folder" if path.is_dir() else "does not exist"
        raise ConfigError(
            "checkpoint", checkpoint, "give the path of a .keras file, e.g. best.keras", problem
        )
    if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise ConfigError(
            "checkpoint", checkpoint, "give a Keras model file ending in .keras", "is not a .keras file"
        )
    return path


def unreadable_checkpoint(path: Path | str, reason: str = "") -> CifarlabError:
    """The one-line error for a checkpoint file Keras cannot read."""
    detail = f" ({reason})" if reason else ""
    return CifarlabError(
        f"checkpoint={str(path)!r}: {path} is not a readable Keras model{detail}; "
        "give a .keras file saved by cifarlab training (a truncated or corrupt file must be saved again)"
    )


def check_readable(path: Path) -> Path:
    """A ``.keras`` file is a zip archive: a truncated or corrupt one fails here, before TensorFlow."""
    if path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):
        raise unreadable_checkpoint(path, "not a complete .keras archive")
    return path


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
    names = as_names(class_names)
    if which == "checkpoint":
        path = check_readable(check_checkpoint(str(checkpoint)))
        return ModelSource(
            "checkpoint",
            str(path),
            names or checkpoint_class_names(path),
            checkpoint_run_id(path),
            f"checkpoint {path}",
        )
    client = connect(tracking_uri or resolve_uri(None, DEFAULT_MLRUNS_DIR))
    if which == "run":
        return run_source(client, str(run), names)
    return uri_source(str(model_uri), names)


def checkpoint_run_id(path: Path) -> str | None:
    """The run id when the file sits in a run's artifacts (``<run id>/artifacts/checkpoints/x``)."""
    parts = path.resolve().parts
    if (
        len(parts) >= 4
        and parts[-2] == "checkpoints"
        and parts[-3] == "artifacts"
        and queries.RUN_ID.match(parts[-4])
    ):
        return parts[-4]
    return None


def model_info(uri: str, key: str) -> Any:
    """The logged model's info (``cifarlab.tracking.queries.model_info``), its failure one line naming ``key``."""
    try:
        return queries.model_info(uri)
    except Exception as err:  # MlflowException, OSError: the URI does not lead to a model
        raise ConfigError(
            key, uri, URI_HELP, problem=f"is not a loadable model ({first_line(err)})"
        ) from None


def run_source(client: Any, run_id: str, class_names: list[str] | None) -> ModelSource:
    """The run's logged model, else its trained Keras file (a search's trial), else its best checkpoint."""
    run = queries.get_run(client, run_id)
    uri = f"runs:/{run_id}/{MODEL_NAME}"
    try:
        info = model_info(uri, "run")
    except ConfigError:  # no logged model (tracking.log_model=false, a search's trial): a Keras file
        info = None
    if info is not None:
        names = class_names or as_names((info.metadata or {}).get("class_names")) or run_class_names(run_id)
        return ModelSource("mlflow", uri, names, run_id, f"run {run_id} ({info.model_uri})")
    for artifact in RUN_KERAS_FILES:
        local = download_run_keras_file(run_id, artifact)
        if local is not None:
            names = class_names or load_class_names(local) or run_class_names(run_id)
            return ModelSource("checkpoint", str(local), names, run_id, f"run {run_id} ({artifact})")
    raise ConfigError(
        "run",
        run_id,
        "train with tracking.log_model=true, or pass checkpoint=<path.keras>",
        problem=f"has no logged model and no {' or '.join(RUN_KERAS_FILES)} (status {run.info.status})",
    )


def download_run_keras_file(run_id: str, artifact: str) -> Path | None:
    """The run's Keras file ``artifact``, with the class names saved beside it when there are any."""
    folder = tempfile.mkdtemp()
    local = queries.download_run_artifact(run_id, artifact, folder)
    if local is not None:
        names_file = class_names_path(Path(artifact))
        queries.download_run_artifact(run_id, names_file.as_posix(), folder)
    return local


def uri_source(model_uri: str, class_names: list[str] | None) -> ModelSource:
    """A logged model named by URI (or by its ``m-...`` id)."""
    if MODEL_ID.match(model_uri):  # a logged model's id, as MLflow shows it
        model_uri = f"models:/{model_uri}"
    if not model_uri.startswith(("models:/", "runs:/")) and "://" not in model_uri:
        raise ConfigError("model", model_uri, URI_HELP, problem="is not a model URI")
    info = model_info(model_uri, "model")
    names = class_names or as_names((info.metadata or {}).get("class_names"))
    if not names and info.run_id:
        names = run_class_names(info.run_id)
    return ModelSource("mlflow", model_uri, names, info.run_id, f"model {model_uri}")
