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

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

from omegaconf import DictConfig

from cifarlab.config.arguments import parse_options, run_command
from cifarlab.inference.predict_images import check_options, predict
from cifarlab.inference.store_options import PathsOptions, TrackingOptions

PROG = "cifarlab predict"
EXAMPLE = "run=<run id> images=photos/"


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
    return parse_options(PredictConfig, argv, prog=PROG, example=EXAMPLE)[0]


def main(argv: Sequence[str] | None = None) -> None:
    run_command(
        PredictConfig,
        __doc__,
        argv,
        prog=PROG,
        example=EXAMPLE,
        run=lambda cfg, _: predict(cfg, check_options(cfg)),
    )


if __name__ == "__main__":
    main()
