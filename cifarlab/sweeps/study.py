"""Optuna in a sweep: the study's storage, epoch-level pruning in a job, the study report on the parent.

A job of the ``cifarlab_optuna`` sweeper learns its trial from
``$CIFARLAB_OPTUNA_TRIAL_ID`` (set per job through ``hydra.job.env_set``, so the
job's own config, and so its config hash, stays free of Optuna) and its study
from ``hydra.sweeper`` in its Hydra config. It reports validation accuracy after
every epoch; when the pruner says stop, the callback marks the trial, calls
``on_prune`` (the job tags its MLflow run ``pruned=true``) and raises
``RunPruned``: the run ends FINISHED with the tag ``pruned=true`` (the leaderboard
shows it PRUNED), and the sweeper tells Optuna the trial was PRUNED.

Nothing here talks to MLflow: the job's hooks (``cifarlab.sweeps.job_hooks``) tag its run.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from cifarlab.errors import CifarlabError
from cifarlab.sweeps.storage import open_storage, resolve_storage

PRUNED_ATTR = "cifarlab.pruned_at_epoch"  # read by the sweeper, which tells the trial PRUNED
RUN_ATTR = "mlflow_run_id"


class RunPruned(CifarlabError):
    """Optuna pruned this job: its MLflow run ends FINISHED (the search ended it, nobody killed it),
    tagged ``pruned=true``; sweeps never reuse it as a finished config."""

    run_status = "FINISHED"


# --- in a job ---------------------------------------------------------------------------------


def _job_trial(trial_id: int) -> optuna.Trial:
    """The trial of the sweep this job runs in, in a study with the sweep's pruner."""
    sweeper = HydraConfig.get().sweeper
    pruner = instantiate(sweeper.pruner) if sweeper.get("pruner") else None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(resolve_storage(sweeper.storage))
    study = optuna.load_study(study_name=sweeper.study_name, storage=storage, pruner=pruner)
    return optuna.trial.Trial(study, trial_id)


def note_trial_run(trial_id: int, run_id: str) -> tuple[int, str]:
    """Store the trial's MLflow run as a user attr of the trial; return the trial's number and study name."""
    trial = _job_trial(trial_id)
    trial.set_user_attr(RUN_ATTR, run_id)
    return trial.number, trial.study.study_name


def pruning_callback(trial_id: int, *, on_prune: Callable[[int], None], monitor: str = "val_accuracy") -> Any:
    """A Keras callback that reports ``monitor`` to the trial each epoch and stops it when pruned."""
    import keras  # deferred: Keras imports TensorFlow, which the sweeper's own process never needs

    trial = _job_trial(trial_id)

    class OptunaPruning(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            value = (logs or {}).get(monitor)
            if value is None or not math.isfinite(float(value)):
                return
            trial.report(float(value), step=epoch)
            if not trial.should_prune():
                return
            trial.set_user_attr(PRUNED_ATTR, epoch)
            on_prune(epoch)
            raise RunPruned(
                f"Optuna pruned trial {trial.number} after epoch {epoch + 1} "
                f"(val/accuracy {float(value):.4f}); its run ends FINISHED with tag pruned=true"
            )

    return OptunaPruning()


# --- on the parent run ------------------------------------------------------------------------


def _trial_counts(study: optuna.Study, storage: str | None) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    states = {s.name: sum(1 for t in trials if t.state == s) for s in optuna.trial.TrialState}
    report: dict[str, Any] = {
        "study_name": study.study_name,
        "storage": storage,
        "trials": len(trials),
        "states": {k: v for k, v in states.items() if v},
    }
    if any(t.state == optuna.trial.TrialState.COMPLETE for t in trials):
        best = study.best_trial
        report.update(
            best_trial=best.number,
            best_value=best.value,
            best_params=best.params,
            best_run_id=best.user_attrs.get(RUN_ATTR),
        )
    return report


def _importances(study: optuna.Study) -> tuple[dict[str, float] | None, str | None]:
    """Parameter importances (None with fewer than 2 complete trials), or why they cannot be had."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return None, None
    try:
        return optuna.importance.get_param_importances(study, evaluator=_evaluator()), None
    except (RuntimeError, ValueError) as err:  # e.g. a parameter that never varied
        return None, str(err)


def _evaluator() -> optuna.importance.BaseImportanceEvaluator:
    # Optuna's default (fANOVA), seeded: the plot and best_params.json show the same numbers.
    return optuna.importance.FanovaImportanceEvaluator(seed=0)


def _save_plots(
    study: optuna.Study, importances: dict[str, float] | None, error: str | None, folder: Path
) -> None:
    """optuna_history.png and optuna_param_importances.png, drawn by optuna.visualization.matplotlib."""
    # Deferred: it imports pyplot, which only the sweep's end draws with.
    from matplotlib import pyplot as plt
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    # rc_context: Optuna's plots switch pyplot to its ggplot style; the process keeps its own.
    with warnings.catch_warnings(), plt.rc_context():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        axes = plot_optimization_history(study, target_name="objective (best val accuracy)")
        axes.figure.savefig(folder / "optuna_history.png", dpi=110, bbox_inches="tight")
        plt.close(axes.figure)
        if importances:
            axes = plot_param_importances(study, evaluator=_evaluator())
        else:
            _, axes = plt.subplots(figsize=(7, 1.5))
            axes.axis("off")
            reason = error or "needs at least 2 complete trials"
            axes.text(0.5, 0.5, f"Parameter importances: {reason}", ha="center", va="center", wrap=True)
        axes.figure.savefig(folder / "optuna_param_importances.png", dpi=110, bbox_inches="tight")
        plt.close(axes.figure)


def study_report(config: DictConfig, folder: Path) -> dict[str, Any]:
    """Optimisation history and parameter importances as PNGs in ``folder``; the best trial as JSON."""
    sweeper = config.hydra.sweeper
    storage = resolve_storage(sweeper.storage)
    study = optuna.load_study(study_name=sweeper.study_name, storage=open_storage(storage))
    report = _trial_counts(study, storage)
    importances, error = _importances(study)
    report["importances"] = importances
    if error:
        report["importances_error"] = error
    _save_plots(study, importances, error, folder)
    (folder / "best_params.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report
