"""``python -m cifarlab predict``: class predictions of a trained model for your images.

    python -m cifarlab predict run=<run id> images=<file, folder or 'glob/*.png'>
    python -m cifarlab predict checkpoint=best.keras images=photos/ output=preds.csv grid=grid.png
    python -m cifarlab predict model=models:/<name>/<version> images=cat.jpg top_k=5
    python -m cifarlab predict run=<run id> samples=12 grid=samples.png   # the run's own test images

Arguments are ``key=value`` like the training CLI's. They are checked, and the
model located in MLflow, before TensorFlow is imported, so mistakes fail fast
with one ``cifarlab: error: ...`` line.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from omegaconf import DictConfig

from cifarlab.config.arguments import exit_with_error, parse_options, usage, wants_help
from cifarlab.errors import CifarlabError, ConfigError
from cifarlab.inference.grid import save_grid
from cifarlab.inference.images import find_images
from cifarlab.inference.labels import parse_class_names
from cifarlab.inference.loading import load_source
from cifarlab.inference.model_store import (
    PathsOptions,
    TrackingOptions,
    connect,
    get_run,
    resolve_tracking_uri,
)
from cifarlab.inference.predictions import (
    Predictions,
    format_table,
    predict_files,
    predict_samples,
    prediction_rows,
    write_output,
)
from cifarlab.inference.run_data import SplitData, load_split, run_config
from cifarlab.inference.source import ModelSource, check_checkpoint, check_one_source, locate_model

PROG = "cifarlab predict"
OUTPUT_SUFFIXES = (".csv", ".json")
GRID_SUFFIXES = (".png", ".jpg", ".pdf", ".svg")
DEFAULT_SAMPLES_GRID = "prediction_grid.png"


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


def parse_args(argv: Sequence[str]) -> DictConfig:
    """``key=value`` arguments into a typed PredictConfig; unknown keys and bad types fail in one line."""
    return parse_options(PredictConfig, argv, prog=PROG, example="run=<run id> images=photos/")[0]


def validate(cfg: DictConfig) -> list[Path]:
    """Check the options (no TensorFlow) and return the image files to predict (none for samples=)."""
    which = check_one_source(cfg.run, cfg.checkpoint, cfg.model)
    if which == "checkpoint":
        check_checkpoint(cfg.checkpoint)
    if cfg.images is None and cfg.samples is None:
        raise CifarlabError(
            "nothing to predict; add images=<image file or folder> or samples=<N> (N test images of the run's dataset)"
        )
    if cfg.images is not None and cfg.samples is not None:
        raise CifarlabError(
            f"images={cfg.images!r} and samples={cfg.samples} were both given; keep one of them"
        )
    if cfg.samples is not None and cfg.samples < 1:
        raise ConfigError("samples", cfg.samples, "use a whole number of at least 1, e.g. samples=12")
    if cfg.samples is not None and which == "checkpoint":
        raise ConfigError(
            "samples",
            cfg.samples,
            "use run=<run id> so the run's dataset can be rebuilt",
            "needs the training run",
        )
    for key, minimum in (("top_k", 1), ("batch_size", 1)):
        if cfg[key] < minimum:
            raise ConfigError(key, cfg[key], f"use a whole number of at least {minimum}")
    check_suffix("output", cfg.output, OUTPUT_SUFFIXES)
    check_suffix("grid", cfg.grid, GRID_SUFFIXES)
    return find_images(cfg.images) if cfg.images is not None else []


def check_suffix(key: str, value: str | None, allowed: Sequence[str]) -> None:
    if value is not None and Path(value).suffix.lower() not in allowed:
        fix = f"end the file name in {' or '.join(allowed)}, e.g. {key}=predictions{allowed[0]}"
        raise ConfigError(key, value, fix)


def samples_data(source: ModelSource, cfg: DictConfig, tracking_uri: str) -> SplitData:
    """The test split of the run that trained the model, rebuilt from its params (no TensorFlow)."""
    if source.source_run_id is None:
        problem = f"needs a training run; {source.description} has none"
        raise ConfigError("samples", cfg.samples, "use run=<run id> instead", problem)
    params = get_run(connect(tracking_uri), source.source_run_id).data.params
    return load_split(run_config(params), "test")


def report(preds: Predictions, cfg: DictConfig, description: str, grid: str | None) -> None:
    """Print the table (and accuracy on samples); write the output file and grid asked for."""
    count = f"{len(preds.names)} prediction{'s' if len(preds.names) != 1 else ''}"
    print(f"cifarlab: {count} by {description}", flush=True)
    print(format_table(preds, cfg.top_k), flush=True)
    if preds.y_true is not None:
        accuracy = float(np.mean(preds.probs.argmax(axis=1) == preds.y_true))
        print(f"cifarlab: {100 * accuracy:.1f}% of {len(preds.names)} sampled test images right", flush=True)
    if cfg.output:
        write_output(Path(cfg.output), prediction_rows(preds, cfg.top_k))
        print(f"cifarlab: predictions written to {cfg.output}", flush=True)
    if grid:
        save_grid(Path(grid), preds, cfg.top_k, cfg.seed)
        print(f"cifarlab: prediction grid written to {grid}", flush=True)


def run(cfg: DictConfig, files: list[Path]) -> Predictions:
    """Locate and load the model, predict, print the table and write what was asked for."""
    uri = resolve_tracking_uri(cfg.tracking.uri, cfg.paths.mlruns_dir)
    source = locate_model(
        cfg.run, cfg.checkpoint, cfg.model, class_names=parse_class_names(cfg.class_names), tracking_uri=uri
    )
    data = samples_data(source, cfg, uri) if cfg.samples is not None else None
    model, warnings = load_source(source)  # imports TensorFlow
    for line in warnings:
        print(f"cifarlab: warning: {line}", file=sys.stderr, flush=True)
    if data is not None:
        preds = predict_samples(model, data, cfg.samples, cfg.seed, cfg.batch_size)
    else:
        preds = predict_files(model, files, cfg.images, cfg.batch_size)
    report(preds, cfg, model.description, cfg.grid or (DEFAULT_SAMPLES_GRID if data is not None else None))
    return preds


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if wants_help(argv):
        print(usage(PredictConfig, __doc__))
        return
    try:
        cfg = parse_args(argv)
        run(cfg, validate(cfg))
    except CifarlabError as err:
        exit_with_error("cifarlab", err)


if __name__ == "__main__":
    main()
