"""``cifarlab predict`` behind its options: check them, find the model, predict, show and write the results.

The options are checked and the model located before TensorFlow is imported, so
mistakes fail fast with one line; ``predict`` then loads the model and predicts
the images (or ``samples=N`` test images of the run's own dataset).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from cifarlab.errors import CifarlabError, ConfigError
from cifarlab.inference.grid import save_grid
from cifarlab.inference.images import find_images
from cifarlab.inference.labels import parse_class_names
from cifarlab.inference.loading import load_source
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
from cifarlab.inference.store_options import store_uri
from cifarlab.runtime.interrupts import signals_deferred
from cifarlab.tracking import queries
from cifarlab.tracking.store import connect

OUTPUT_SUFFIXES = (".csv", ".json")
GRID_SUFFIXES = (".png", ".jpg", ".pdf", ".svg")
DEFAULT_SAMPLES_GRID = "prediction_grid.png"


def check_options(cfg: DictConfig) -> list[Path]:
    """Check the options (no TensorFlow) and return the image files to predict (none for samples=)."""
    which = check_one_source(cfg.run, cfg.checkpoint, cfg.model)
    if which == "checkpoint":
        check_checkpoint(cfg.checkpoint)
    _check_what_to_predict(cfg, which)
    for key, minimum in (("top_k", 1), ("batch_size", 1)):
        if cfg[key] < minimum:
            raise ConfigError(key, cfg[key], f"use a whole number of at least {minimum}")
    check_suffix("output", cfg.output, OUTPUT_SUFFIXES)
    check_suffix("grid", cfg.grid, GRID_SUFFIXES)
    return find_images(cfg.images) if cfg.images is not None else []


def _check_what_to_predict(cfg: DictConfig, which: str) -> None:
    """Exactly one of images= and samples= (which needs a training run)."""
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


def check_suffix(key: str, value: str | None, allowed: Sequence[str]) -> None:
    if value is not None and Path(value).suffix.lower() not in allowed:
        fix = f"end the file name in {' or '.join(allowed)}, e.g. {key}=predictions{allowed[0]}"
        raise ConfigError(key, value, fix)


def samples_data(source: ModelSource, cfg: DictConfig, tracking_uri: str) -> SplitData:
    """The test split of the run that trained the model, rebuilt from its params (no TensorFlow)."""
    if source.source_run_id is None:
        problem = f"needs a training run; {source.description} has none"
        raise ConfigError("samples", cfg.samples, "use run=<run id> instead", problem)
    params = queries.get_run(connect(tracking_uri), source.source_run_id).data.params
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


def predict(cfg: DictConfig, files: list[Path]) -> Predictions:
    """Locate and load the model, predict, print the table and write what was asked for.

    Ctrl-C or SIGTERM stops it once the model is loaded, or at a batch's end while it
    predicts (nothing written either way); once the writing began, after all of it.
    """
    uri = store_uri(cfg)
    source = locate_model(
        cfg.run, cfg.checkpoint, cfg.model, class_names=parse_class_names(cfg.class_names), tracking_uri=uri
    )
    data = samples_data(source, cfg, uri) if cfg.samples is not None else None
    # TensorFlow must not be interrupted mid-op (runtime.interrupts): a signal waits for the model.
    with signals_deferred(until="loading the model"):
        model, warnings = load_source(source)  # imports TensorFlow
    for line in warnings:
        print(f"cifarlab: warning: {line}", file=sys.stderr, flush=True)
    with signals_deferred():  # a signal kept after the last batch acts here: nothing written
        if data is not None:
            preds = predict_samples(model, data, cfg.samples, cfg.seed, cfg.batch_size)
        else:
            preds = predict_files(model, files, cfg.images, cfg.batch_size)
    grid = cfg.grid or (DEFAULT_SAMPLES_GRID if data is not None else None)
    _report_in_full(preds, cfg, model.description, grid)
    return preds


def _report_in_full(preds: Predictions, cfg: DictConfig, description: str, grid: str | None) -> None:
    """``report``, with a signal during the writing kept until all of it is written."""
    written = False
    try:
        with signals_deferred(until="writing everything asked for"):
            report(preds, cfg, description, grid)
            written = True
    except KeyboardInterrupt as err:  # the kept signal, or a second one that cut the writing short
        files = " and ".join(f for f in (cfg.output, grid) if f) or "the table"
        done = (
            "everything asked for was written before it stopped"
            if written
            else (f"the writing was cut short: {files} may be incomplete; run the command again")
        )
        err.done = done  # type: ignore[attr-defined]
        raise
