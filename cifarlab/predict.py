"""``python -m cifarlab.predict``: class predictions of a trained model for your images.

    python -m cifarlab.predict run=<run id> images=<file, folder or 'glob/*.png'>
    python -m cifarlab.predict checkpoint=best.keras images=photos/ output=preds.csv grid=grid.png
    python -m cifarlab.predict model=models:/<name>/<version> images=cat.jpg top_k=5
    python -m cifarlab.predict run=<run id> samples=12 grid=samples.png   # the run's own test images

Arguments are ``key=value`` like the training CLI's. They are checked, and the
model located in MLflow, before TensorFlow is imported, so mistakes fail fast
with one ``cifarlab: error: ...`` line.
"""

from __future__ import annotations


import csv
import difflib
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cifarlab.errors import CifarlabError, ConfigError

OUTPUT_SUFFIXES = (".csv", ".json")
GRID_SUFFIXES = (".png", ".jpg", ".pdf", ".svg")
MAX_GRID_IMAGES = 48
DEFAULT_SAMPLES_GRID = "prediction_grid.png"


@dataclass
class TrackingOptions:
    # None: $MLFLOW_TRACKING_URI if set, else sqlite:///<paths.mlruns_dir>/mlflow.db
    uri: Optional[str] = None


@dataclass
class PathsOptions:
    mlruns_dir: str = "mlruns"


@dataclass
class PredictConfig:
    run: Optional[str] = None  # an MLflow run id: its logged model
    checkpoint: Optional[str] = None  # a .keras file
    model: Optional[str] = None  # models:/<name>/<version>, models:/<model id> or runs:/<id>/model
    images: Optional[str] = None  # an image, a folder of images or a glob
    samples: Optional[int] = None  # instead of images: N random test images of the run's dataset
    output: Optional[str] = None  # predictions as .csv or .json
    grid: Optional[str] = None  # a figure of the images with their class probabilities
    top_k: int = 3
    seed: int = 0  # which test images samples=N picks
    batch_size: int = 256
    class_names: Optional[str] = None  # "cat,dog,..." for a checkpoint without a run beside it
    tracking: TrackingOptions = field(default_factory=TrackingOptions)
    paths: PathsOptions = field(default_factory=PathsOptions)


@dataclass
class Predictions:
    """One row per image: its label for the table and files, and class probabilities."""

    names: list[str]
    probs: np.ndarray
    class_names: list[str]
    images: np.ndarray
    y_true: np.ndarray | None = None

    def top(self, k: int) -> np.ndarray:
        return np.argsort(-self.probs, axis=1, kind="stable")[:, : min(k, self.probs.shape[1])]


# --------------------------------------------------------------------------- arguments


def _keys(node: Any, prefix: str = "") -> list[str]:
    keys = []
    for key, value in node.items():
        name = f"{prefix}{key}"
        keys += _keys(value, f"{name}.") if isinstance(value, DictConfig) else [name]
    return keys


def usage() -> str:
    """The help text: the module docstring and every option with its default."""
    defaults = OmegaConf.structured(PredictConfig)
    options = "\n".join(f"  {key}={OmegaConf.select(defaults, key)}" for key in _keys(defaults))
    return f"{__doc__.strip()}\n\noptions (defaults):\n{options}\n"


def parse_args(argv: Sequence[str]) -> DictConfig:
    """``key=value`` arguments into a typed PredictConfig; unknown keys and bad types fail in one line."""
    cfg = OmegaConf.structured(PredictConfig)
    known = _keys(cfg)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            raise CifarlabError(f"argument {arg!r} is not key=value; write e.g. run=<run id> images=photos/")
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]}=? " if close else ""
            raise CifarlabError(
                f"{key}={value!r} is not an option of cifarlab.predict; {hint}options: {', '.join(known)}"
            )
        try:
            OmegaConf.update(cfg, key, None if value in ("", "null", "None") else value, merge=False)
        except OmegaConfBaseException:
            raise ConfigError(key, value, f"use a whole number, e.g. {key}=3", "is not a whole number") from None
    return cfg


def validate(cfg: DictConfig) -> list[Path]:
    """Check the options (no TensorFlow) and return the image files to predict (none for samples=)."""
    from cifarlab.inference.loading import check_checkpoint, check_one_source, find_images

    which = check_one_source(cfg.run, cfg.checkpoint, cfg.model)
    if which == "checkpoint":
        check_checkpoint(cfg.checkpoint)
    if cfg.images is None and cfg.samples is None:
        raise CifarlabError(
            "nothing to predict; add images=<image file or folder> or samples=<N> (N test images of the run's dataset)"
        )
    if cfg.images is not None and cfg.samples is not None:
        raise CifarlabError(f"images={cfg.images!r} and samples={cfg.samples} were both given; keep one of them")
    if cfg.samples is not None and cfg.samples < 1:
        raise ConfigError("samples", cfg.samples, "use a whole number of at least 1, e.g. samples=12")
    if cfg.samples is not None and which == "checkpoint":
        raise ConfigError(
            "samples", cfg.samples, "use run=<run id> so the run's dataset can be rebuilt", "needs the training run"
        )
    for key, minimum in (("top_k", 1), ("batch_size", 1)):
        if cfg[key] < minimum:
            raise ConfigError(key, cfg[key], f"use a whole number of at least {minimum}")
    _check_suffix("output", cfg.output, OUTPUT_SUFFIXES)
    _check_suffix("grid", cfg.grid, GRID_SUFFIXES)
    return find_images(cfg.images) if cfg.images is not None else []


def _check_suffix(key: str, value: str | None, allowed: Sequence[str]) -> None:
    if value is not None and Path(value).suffix.lower() not in allowed:
        fix = f"end the file name in {' or '.join(allowed)}, e.g. {key}=predictions{allowed[0]}"
        raise ConfigError(key, value, fix)


# --------------------------------------------------------------------------- predicting


def _display_names(files: Sequence[Path], images_arg: str) -> list[str]:
    """Files as shown in the table: relative to the images folder when one was given."""
    root = Path(images_arg).expanduser()
    if root.is_dir():
        return [str(f.relative_to(root)) for f in files]
    return [str(f) for f in files]


def predict_files(model: Any, files: Sequence[Path], cfg: DictConfig) -> Predictions:
    """Predictions for image files, after converting and resizing them for the model."""
    from cifarlab.inference.loading import predict_probs, prepare_images

    images, warnings = prepare_images(files, model.input_shape)
    for line in warnings:
        print(f"cifarlab: warning: {line}", file=sys.stderr, flush=True)
    probs = predict_probs(model, images, cfg.batch_size)
    return Predictions(_display_names(files, cfg.images), probs, model.class_names, images)


def predict_samples(model: Any, data: Any, cfg: DictConfig) -> Predictions:
    """Predictions for ``cfg.samples`` random test images of the run's dataset, with true labels."""
    from cifarlab.inference.loading import predict_probs

    if tuple(data.x_test.shape[1:]) != tuple(model.input_shape):
        raise CifarlabError(
            f"the run's dataset {data.name} has images shaped {data.x_test.shape[1:]} but the model "
            f"takes {model.input_shape}; predict on images= instead"
        )
    rng = np.random.default_rng(cfg.seed)
    chosen = np.sort(rng.choice(len(data.x_test), size=min(cfg.samples, len(data.x_test)), replace=False))
    images, y_true = data.x_test[chosen], data.y_test[chosen]
    probs = predict_probs(model, images, cfg.batch_size)
    names = [f"test[{i}]" for i in chosen]
    return Predictions(names, probs, list(data.class_names), images, y_true)


def _run_data(run_id: str, cfg: DictConfig) -> Any:
    """The training run's dataset, rebuilt from its params (no TensorFlow)."""
    import mlflow

    from cifarlab.data import load_dataset
    from cifarlab.inference.loading import get_run, run_config

    params = get_run(mlflow.MlflowClient(), run_id).data.params
    run_cfg = run_config(params)
    return load_dataset(run_cfg.dataset, default_data_dir=run_cfg.paths.data_dir)


# --------------------------------------------------------------------------- showing and saving


def format_table(preds: Predictions, top_k: int) -> str:
    """A plain-text table: file, (true class), then the top-k classes with probabilities."""
    top = preds.top(top_k)
    width = max([len("file"), *map(len, preds.names)])
    cls_width = max(len(c) for c in preds.class_names)
    header = f"{'file':<{width}}"
    if preds.y_true is not None:
        header += f"  {'true':<{cls_width}}   "
    header += "".join(f"  {'top-' + str(i + 1):<{cls_width + 7}}" for i in range(top.shape[1]))
    lines = [header.rstrip()]
    for row, name in enumerate(preds.names):
        line = f"{name:<{width}}"
        if preds.y_true is not None:
            mark = "ok" if top[row, 0] == preds.y_true[row] else "xx"
            line += f"  {preds.class_names[preds.y_true[row]]:<{cls_width}} {mark}"
        for c in top[row]:
            line += f"  {preds.class_names[c]:<{cls_width}} {100 * preds.probs[row, c]:5.1f}%"
        lines.append(line.rstrip())
    return "\n".join(lines)


def prediction_rows(preds: Predictions, top_k: int) -> list[dict[str, Any]]:
    """One record per image: file, predicted class, its probability, the top-k (and the true class)."""
    rows = []
    for row, c_top in enumerate(preds.top(top_k)):
        record: dict[str, Any] = {
            "file": preds.names[row],
            "predicted": preds.class_names[c_top[0]],
            "probability": round(float(preds.probs[row, c_top[0]]), 6),
        }
        if preds.y_true is not None:
            record["true"] = preds.class_names[preds.y_true[row]]
            record["correct"] = bool(c_top[0] == preds.y_true[row])
        record["top_k"] = [
            {"class": preds.class_names[c], "probability": round(float(preds.probs[row, c]), 6)} for c in c_top
        ]
        rows.append(record)
    return rows


def write_output(path: Path, rows: list[dict[str, Any]]) -> None:
    """Predictions as JSON (a list of records) or CSV (top-k flattened to top1_class, top1_probability, ...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        return
    flat = []
    for record in rows:
        item = {k: v for k, v in record.items() if k != "top_k"}
        for i, entry in enumerate(record["top_k"], start=1):
            item[f"top{i}_class"], item[f"top{i}_probability"] = entry["class"], entry["probability"]
        flat.append(item)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)


def unlabeled_grid_figure(preds: Predictions, top_k: int, limit: int = MAX_GRID_IMAGES) -> Any:
    """Each image beside bars of its top-k class probabilities (no true labels needed)."""
    from matplotlib.figure import Figure

    from cifarlab.reports.writer import DPI

    n = min(len(preds.names), limit)
    k = min(max(top_k, 1), len(preds.class_names))
    per_row = min(3, n)
    rows = math.ceil(n / per_row)
    fig = Figure(figsize=(4.2 * per_row, max(1.9, 0.22 * k + 1.1) * rows), dpi=DPI, layout="constrained")
    grid = fig.add_gridspec(rows, 2 * per_row, width_ratios=[1.0, 1.3] * per_row)
    top = preds.top(k)
    for slot in range(n):
        r, c = divmod(slot, per_row)
        _draw_image(fig.add_subplot(grid[r, 2 * c]), preds.images[slot], preds.names[slot])
        _draw_bars(fig.add_subplot(grid[r, 2 * c + 1]), preds.probs[slot], top[slot], preds.class_names)
    return fig


def _draw_image(ax: Any, image: np.ndarray, title: str) -> None:
    gray = image.shape[-1] == 1
    pixels, cmap = (image[..., 0], "gray") if gray else (image, None)
    ax.imshow(pixels, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title if len(title) <= 24 else "…" + title[-23:], fontsize=7)


def _draw_bars(ax: Any, probs: np.ndarray, classes: np.ndarray, class_names: Sequence[str]) -> None:
    positions = np.arange(len(classes))
    colours = ["tab:blue"] + ["0.75"] * (len(classes) - 1)
    ax.barh(positions, probs[classes], color=colours, height=0.75)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    labels = [f"{class_names[c]} {100 * probs[c]:.0f}%" for c in classes]
    ax.set_yticks(positions, labels=labels, fontsize=7)
    ax.set_xticks([0, 0.5, 1], labels=["0", ".5", "1"], fontsize=6)
    ax.tick_params(axis="y", length=0, pad=2)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def save_grid(path: Path, preds: Predictions, cfg: DictConfig) -> None:
    """The grid figure: true-label grid from cifarlab.reports.writer for samples, our own otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if preds.y_true is not None:
        from cifarlab.reports.writer import prediction_grid_figure

        n = min(len(preds.names), MAX_GRID_IMAGES)
        fig = prediction_grid_figure(preds.images, preds.probs, preds.y_true, preds.class_names, n=n, seed=cfg.seed)
    else:
        fig = unlabeled_grid_figure(preds, cfg.top_k)
    fig.savefig(path)
    fig.clear()
    if len(preds.names) > MAX_GRID_IMAGES:
        print(f"cifarlab: grid shows {MAX_GRID_IMAGES} of {len(preds.names)} images", flush=True)


# --------------------------------------------------------------------------- main


def run(cfg: DictConfig, files: list[Path]) -> Predictions:
    """Locate and load the model, predict, print the table and write what was asked for."""
    from cifarlab.inference.loading import load_source, locate_model, parse_class_names, resolve_tracking_uri

    uri = resolve_tracking_uri(cfg.tracking.uri, cfg.paths.mlruns_dir)
    source = locate_model(
        cfg.run, cfg.checkpoint, cfg.model, class_names=parse_class_names(cfg.class_names), tracking_uri=uri
    )
    data = None
    if cfg.samples is not None:
        if source.source_run_id is None:
            problem = f"needs a training run; {source.description} has none"
            raise ConfigError("samples", cfg.samples, "use run=<run id> instead", problem)
        data = _run_data(source.source_run_id, cfg)
    model, warnings = load_source(source)  # imports TensorFlow
    for line in warnings:
        print(f"cifarlab: warning: {line}", file=sys.stderr, flush=True)
    preds = predict_samples(model, data, cfg) if data is not None else predict_files(model, files, cfg)
    count = f"{len(preds.names)} prediction{'s' if len(preds.names) != 1 else ''}"
    print(f"cifarlab: {count} by {model.description}", flush=True)
    print(format_table(preds, cfg.top_k), flush=True)
    if preds.y_true is not None:
        accuracy = float(np.mean(preds.probs.argmax(axis=1) == preds.y_true))
        print(f"cifarlab: {100 * accuracy:.1f}% of {len(preds.names)} sampled test images right", flush=True)
    if cfg.output:
        write_output(Path(cfg.output), prediction_rows(preds, cfg.top_k))
        print(f"cifarlab: predictions written to {cfg.output}", flush=True)
    grid = cfg.grid or (DEFAULT_SAMPLES_GRID if data is not None else None)
    if grid:
        save_grid(Path(grid), preds, cfg)
        print(f"cifarlab: prediction grid written to {grid}", flush=True)
    return preds


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(usage())
        return
    try:
        cfg = parse_args(argv)
        files = validate(cfg)
        run(cfg, files)
    except CifarlabError as err:
        print(f"cifarlab: error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
