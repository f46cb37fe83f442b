"""``python -m cifarlab``: compose the config with Hydra, check it, then train.

Nothing here imports TensorFlow: ``--cfg job``, ``--help`` and bad values answer
in about a second. Training code is imported only once the config is valid.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import replace
from typing import cast

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig

from cifarlab.config.compose import describe_hydra_error, register_config_store
from cifarlab.config.locations import conf_dir
from cifarlab.config.schema import validate
from cifarlab.errors import CifarlabError, environment_failure
from cifarlab.runtime.interrupts import describe_interrupt, stop_on_sigterm
from cifarlab.sweeps.job import in_a_process_of_its_own
from cifarlab.training.run_hooks import RunHooks

register_config_store()


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    single_run = HydraConfig.get().mode != RunMode.MULTIRUN
    if single_run:
        stop_on_sigterm()  # (a sweep installs its own handler, which ends its parent run too)
    try:
        validate(cfg)
        # Deferred: TensorFlow is imported only once the config is valid.
        from cifarlab.sweeps.job_hooks import job_hooks
        from cifarlab.training.plan import assemble
        from cifarlab.training.run import train

        return train(assemble(cfg), hooks=_with_command_line(job_hooks(cfg))).objective
    except CifarlabError as err:
        # A pruned sweep job ended as planned (run_status FINISHED): a note, not an error.
        label = "" if getattr(err, "run_status", None) == "FINISHED" else "error: "
        print(f"cifarlab: {label}{err}", file=sys.stderr)
        if not single_run:
            return None  # the job is recorded FAILED; the sweep goes on
        sys.exit(1)
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: the run already ended KILLED
        if not single_run and not in_a_process_of_its_own(cast(DictConfig, HydraConfig.get())):
            raise  # the whole sweep stops
        line, code = describe_interrupt(err)
        print(f"cifarlab: {line}", file=sys.stderr)
        if not single_run:
            return None  # scancel stopped this SLURM job: recorded as failed, the sweep goes on
        sys.exit(code)
    except Exception as err:
        # Any other failure of one sweep job (its MLflow run already ended FAILED):
        # report it and let the sweep go on. A single run still raises, unless the
        # machine is at fault (a full disk, a read-only folder): that is one line.
        described = environment_failure(err)
        if described is not None:
            print(f"cifarlab: error: {described}", file=sys.stderr)
            if single_run:
                sys.exit(1)
            return None
        if single_run:
            raise
        traceback.print_exc()
        print("cifarlab: error: the job failed (traceback above); the sweep goes on", file=sys.stderr)
        return None


def _with_command_line(hooks: RunHooks) -> RunHooks:
    """The overrides as typed and the presets chosen, from Hydra, for the run's tags and artifacts."""
    hydra_cfg = HydraConfig.get()
    choices = hydra_cfg.runtime.choices
    presets = {tag: choices.get(group) for tag, group in (("preset", "experiment"), ("debug", "debug"))}
    return replace(hooks, overrides=list(hydra_cfg.overrides.task), preset_choices=presets)


def _is_multirun(args: list[str]) -> bool:
    return any(arg in ("-m", "--multirun", "hydra.mode=MULTIRUN") for arg in args)


def main(argv: list[str] | None = None) -> None:
    """Train as the overrides say; Hydra reads them from sys.argv (``argv`` is for the dispatcher only)."""
    # Hydra prints composition errors over several lines and exits; with
    # HYDRA_FULL_ERROR it raises them instead, and they are reported here as one
    # line. A user who set HYDRA_FULL_ERROR still gets the full traceback.
    wants_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        _hydra_main()
    except HydraException as err:
        if wants_traceback:
            raise
        print(f"cifarlab: error: {describe_hydra_error(err)}", file=sys.stderr)
        sys.exit(2)
    except CifarlabError as err:  # raised by a sweeper, outside any one job (e.g. its study's storage)
        print(f"cifarlab: error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as err:  # a sweep stopped by Ctrl-C or SIGTERM: its runs already ended KILLED
        line, code = describe_interrupt(err, sweep=_is_multirun(sys.argv[1:]))
        print(f"cifarlab: {line}", file=sys.stderr)
        sys.exit(code)
    except Exception as err:  # a full disk or a read-only folder: the machine's fault, told in one line
        described = environment_failure(err)
        if described is None or wants_traceback:
            raise
        print(f"cifarlab: error: {described}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
