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

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

from cifarlab.config.arguments import run_command
from cifarlab.inference.deploy import check_options, export
from cifarlab.inference.store_options import PathsOptions, TrackingOptions

PROG = "cifarlab export"
EXAMPLE = "run=<run id> format=litert out=model.tflite"


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


def main(argv: Sequence[str] | None = None) -> None:
    run_command(
        ExportConfig,
        __doc__,
        argv,
        prog=PROG,
        example=EXAMPLE,
        run=lambda cfg, _: export(cfg, check_options(cfg)),
    )


if __name__ == "__main__":
    main()
