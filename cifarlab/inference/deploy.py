"""``cifarlab export`` behind its options: check them, find and load the model, write it for deployment.

The format, the output path and the model's place in MLflow are checked before
TensorFlow is imported; ``formats`` writes the SavedModel or LiteRT file.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig

from cifarlab.inference.formats import check_format, check_out, export_model
from cifarlab.inference.labels import parse_class_names
from cifarlab.inference.loading import load_source
from cifarlab.inference.source import check_one_source, locate_model
from cifarlab.inference.store_options import store_uri


def check_options(cfg: DictConfig) -> Path:
    """Check the options (no TensorFlow); returns where the export goes."""
    check_format(cfg.format)
    check_one_source(cfg.run, cfg.checkpoint, cfg.model)
    return check_out(cfg.format, cfg.out)


def export(cfg: DictConfig, out: Path) -> Path:
    """Locate and load the model, export it, and say what was written."""
    source = locate_model(
        cfg.run,
        cfg.checkpoint,
        cfg.model,
        class_names=parse_class_names(cfg.class_names),
        tracking_uri=store_uri(cfg),
    )
    model, warnings = load_source(source)  # imports TensorFlow
    for line in warnings:
        print(f"cifarlab: warning: {line}", file=sys.stderr, flush=True)
    export_model(model, cfg.format, out)
    height, width, channels = model.input_shape
    print(f"cifarlab: {model.description} exported as {cfg.format} to {out}", flush=True)
    print(
        f"cifarlab: input 'images' uint8 (batch, {height}, {width}, {channels}); "
        f"output: probabilities of {', '.join(model.class_names)}",
        flush=True,
    )
    return out
