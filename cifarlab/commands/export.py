"""``python -m cifarlab export``: a trained model for deployment, taking raw uint8 images.

    python -m cifarlab export run=<run id> format=saved_model out=exported/cnn/1   # TensorFlow Serving
    python -m cifarlab export run=<run id> format=litert out=cnn.tflite            # LiteRT (TFLite)
    python -m cifarlab export model=models:/cnn@champion format=litert out=cnn.tflite

Both take a batch of uint8 images (batch, height, width, channels) as input
``images`` of the ``serving_default`` signature and give class probabilities;
they compute in float32. The options and the model's place in MLflow are
checked before TensorFlow is imported, so mistakes fail fast in one line.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig

from cifarlab.config.arguments import exit_with_error, parse_options, usage, wants_help
from cifarlab.errors import CifarlabError
from cifarlab.inference.formats import check_format, check_out, export_model
from cifarlab.inference.labels import parse_class_names
from cifarlab.inference.loading import load_source
from cifarlab.inference.model_store import PathsOptions, TrackingOptions, resolve_tracking_uri
from cifarlab.inference.source import check_one_source, locate_model

PROG = "cifarlab export"


@dataclass
class ExportConfig:
    run: Optional[str] = None  # an MLflow run id: its logged model
    checkpoint: Optional[str] = None  # a .keras file
    model: Optional[str] = None  # models:/<name>/<version>, models:/<name>@<alias> or runs:/<id>/model
    format: Optional[str] = None  # saved_model | litert
    out: Optional[str] = None  # a folder for saved_model, a .tflite file for litert
    class_names: Optional[str] = None  # "cat,dog,..." printed with the export, for a checkpoint without a run
    tracking: TrackingOptions = field(default_factory=TrackingOptions)
    paths: PathsOptions = field(default_factory=PathsOptions)


def validate(cfg: DictConfig) -> Path:
    """Check the options (no TensorFlow); returns where the export goes."""
    check_format(cfg.format)
    check_one_source(cfg.run, cfg.checkpoint, cfg.model)
    return check_out(cfg.format, cfg.out)


def run(cfg: DictConfig, out: Path) -> Path:
    """Locate and load the model, export it, and say what was written."""
    uri = resolve_tracking_uri(cfg.tracking.uri, cfg.paths.mlruns_dir)
    source = locate_model(
        cfg.run, cfg.checkpoint, cfg.model, class_names=parse_class_names(cfg.class_names), tracking_uri=uri
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


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if wants_help(argv):
        print(usage(ExportConfig, __doc__))
        return
    try:
        cfg = parse_options(
            ExportConfig, argv, prog=PROG, example="run=<run id> format=litert out=model.tflite"
        )[0]
        run(cfg, validate(cfg))
    except CifarlabError as err:
        exit_with_error("cifarlab", err)


if __name__ == "__main__":
    main()
