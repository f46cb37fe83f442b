"""``python -m cifarlab evaluate``: evaluate a trained run's model again, recorded as a new MLflow run.

    python -m cifarlab evaluate run=<run id>                       # the run's own test split
    python -m cifarlab evaluate run=<run id> split=val
    python -m cifarlab evaluate run=<run id> dataset.data_dir=/data/cifar10-copy
    python -m cifarlab evaluate run=<run id> dataset=image_folder dataset.data_dir=photos/

The dataset is rebuilt from the run's params (``dataset.*``, ``paths.data_dir``);
other arguments are Hydra overrides of cifarlab's config and win over the run's
values (``dataset=<name>`` replaces the run's dataset entirely). The new run goes
to the source run's experiment unless ``tracking.experiment=`` is given, is tagged
``source_run_id`` / ``evaluation_of``, and holds metrics and ``reports/``.
An image folder is evaluated on all of its ``test/`` folder, also when it has no
``train/``. Own options, below: ``run=`` (required), ``split=test|val``,
``output_dir=`` (also keep the reports in this folder).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from omegaconf import DictConfig

from cifarlab.config.arguments import parse_options, run_command
from cifarlab.inference.evaluate_run import EvalArgs, eval_args, evaluate, print_result

PROG = "cifarlab evaluate"
EXAMPLE = "run=<run id> split=test"


@dataclass
class EvalOptions:
    """evaluate's own options; every other key=value is a Hydra override of cifarlab's config."""

    run: Optional[str] = None  # the training run whose model is evaluated (or model=)
    model: Optional[str] = None  # a registered model, models:/<name>@<alias> or models:/<name>/<version>
    split: str = "test"  # test or val
    output_dir: Optional[str] = None  # also keep the reports in this folder


def parse_args(argv: Sequence[str]) -> EvalArgs:
    """``run=``, ``split=``, ``output_dir=``; everything else is a Hydra override for the config."""
    return eval_args(*parse_options(EvalOptions, argv, prog=PROG, example=EXAMPLE, pass_through=True))


def _evaluate(options: DictConfig, overrides: list[str]) -> None:
    """Evaluate as the options say, and print the result. Ctrl-C or SIGTERM stops it at a
    safe point (``evaluate``): its run, if open, ends KILLED and ``run_command`` closes with one line."""
    args = eval_args(options, overrides)
    print_result(evaluate(args), args.output_dir)


def main(argv: Sequence[str] | None = None) -> None:
    run_command(EvalOptions, __doc__, argv, prog=PROG, example=EXAMPLE, run=_evaluate, pass_through=True)


if __name__ == "__main__":
    main()
