"""Optuna in a sweep: the study its jobs report to, epoch-level pruning in a job, the study report on the parent.

A job of the ``cifarlab_optuna`` sweeper finds its study in the sweep's ticket
(``study_ticket``; ``cifarlab.sweeps.contract``) and its trial from its job
number, so the job's own config, and so its config hash, stays free of Optuna.
It reports validation accuracy after every epoch; when the pruner says stop, the
callback calls ``on_prune`` (the job notes it in its report and tags its MLflow
run ``pruned=true``) and raises ``RunPruned``: the run ends FINISHED with the tag
``pruned=true`` (the leaderboard shows it PRUNED), and the sweeper, reading the
job's report, tells Optuna the trial was PRUNED.

Nothing here talks to MLflow: the job's hooks (``cifarlab.sweeps.job_hooks``) tag its run.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cifarlab.errors import CifarlabError
from cifarlab.reports.figures import save_figure
from cifarlab.sweeps.contract import StudyTicket
from cifarlab.sweeps.storage import open_storage, resolve_storage, trial_id

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

RUN_ATTR = "mlflow_run_id"  # the trial's MLflow run, set by the sweeper from the job's report
OPTUNA_SWEEPER = "cifarlab_optuna_sweeper"


class RunPruned(CifarlabError):
    """Optuna pruned this job: its MLflow run ends FINISHED (the search ended it, nobody killed it),
    tagged ``pruned=true``; sweeps never reuse it as a finished config."""

    run_status = "FINISHED"


def is_optuna(config: DictConfig) -> bool:
    """Whether the multirun of ``config`` is an Optuna search (the ``cifarlab_optuna`` sweeper)."""
    return OPTUNA_SWEEPER in str(config.hydra.sweeper.get("_target_", ""))


def study_ticket(config: DictConfig) -> StudyTicket | None:
    """The study a search's jobs report their epochs to; None for other sweeps, and for a study in memory
    (which jobs in other processes cannot reach)."""
    sweeper = config.hydra.sweeper
    if not is_optuna(config) or not sweeper.get("storage"):
        return None
    pruner = sweeper.get("pruner")
    return StudyTicket(
        storage=str(resolve_storage(sweeper.storage)),
        study_name=sweeper.get("study_name"),
        repeats=int(sweeper.get("repeats", 1)),
        pruner=OmegaConf.to_container(pruner, resolve=True) if pruner else None,  # type: ignore[arg-type]
    )


# --- in a job ---------------------------------------------------------------------------------


def _load(ticket: StudyTicket) -> tuple[optuna.Study, optuna.storages.BaseStorage]:
    """The search's study, with the sweeper's pruner, and its storage."""
    pruner = instantiate(ticket.pruner) if ticket.pruner else None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(ticket.storage)
    return optuna.load_study(study_name=ticket.study_name, storage=storage, pruner=pruner), storage


def job_trial(ticket: StudyTicket, number: int) -> optuna.Trial:
    """Trial ``number`` of the search's study, as the job running it reports to it from its own process."""
    study, storage = _load(ticket)
    return optuna.trial.Trial(study, trial_id(storage, study.study_name, number))


def study_name(ticket: StudyTicket) -> str:
    """The study's name (asked of its storage when the sweeper was given none)."""
    return ticket.study_name or _load(ticket)[0].study_name


def pruning_callback(
    ticket: StudyTicket, number: int, *, on_prune: Callable[[int], None], monitor: str = "val_accuracy"
) -> Any:
    """A Keras callback that reports ``monitor`` to trial ``number`` each epoch and stops it when pruned."""
    import keras  # deferred: Keras imports TensorFlow, which the sweeper's own process never needs

    trial = job_trial(ticket, number)

    class OptunaPruning(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            value = (logs or {}).get(monitor)
            if value is None or not math.isfinite(float(value)):
                return
            trial.report(float(value), step=epoch)
            if not trial.should_prune():
                return
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
    best = best_trial(study)
    if best is not None:
        report.update(
            best_trial=best.number,
            best_value=best.value,
            best_params=best.params,
            best_run_id=best.user_attrs.get(RUN_ATTR),
        )
    return report


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best COMPLETE trial; among equal values the earliest (lowest number), the rule the
    leaderboard follows too (``cifarlab.reports.leaderboard.ranked``). Optuna's own
    ``study.best_trial`` leaves ties to the database's order."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return None
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
    return max(complete, key=lambda t: (sign * float(t.value or 0.0), -t.number))


def counted_runs(config: DictConfig) -> dict[str, int]:
    """The MLflow run of every trial the search counts (COMPLETE or PRUNED), by run id, with its
    trial number: runs a trial reused from an earlier search included, whichever worker ran it."""
    ticket = study_ticket(config)
    if ticket is None:
        return {}
    study, _ = _load(ticket)
    counted = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    trials = study.get_trials(deepcopy=False, states=counted)
    return {t.user_attrs[RUN_ATTR]: t.number for t in trials if t.user_attrs.get(RUN_ATTR)}


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
    # fANOVA (Optuna's default until 5.x, PED-ANOVA since), seeded: the plot and best_params.json
    # show the same numbers, and a search's importances read as they did before Optuna 5.
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
        _save_figure(axes, folder / "optuna_history.png")
        if importances:
            axes = plot_param_importances(study, evaluator=_evaluator())
        else:
            _, axes = plt.subplots(figsize=(7, 1.5))
            axes.axis("off")
            reason = error or "needs at least 2 complete trials"
            axes.text(0.5, 0.5, f"Parameter importances: {reason}", ha="center", va="center", wrap=True)
        _save_figure(axes, folder / "optuna_param_importances.png")


def _save_figure(axes: Axes, path: Path) -> None:
    """The axes' figure (a pyplot Figure, not a SubFigure) as a PNG, then closed."""
    from matplotlib import pyplot as plt

    figure = cast("Figure", axes.figure)
    save_figure(figure, path, dpi=110)
    plt.close(figure)


def study_report(config: DictConfig, folder: Path) -> dict[str, Any]:
    """Optimisation history and parameter importances as PNGs in ``folder``; the best trial as JSON."""
    sweeper = config.hydra.sweeper
    storage = resolve_storage(sweeper.storage)
    if storage is None:  # a study in memory is gone with its process: nothing left to report on
        return {"note": "hydra.sweeper.storage is not set: the study was kept in memory only"}
    study = optuna.load_study(study_name=sweeper.study_name, storage=open_storage(storage))
    report = _trial_counts(study, storage)
    importances, error = _importances(study)
    report["importances"] = importances
    if error:
        report["importances_error"] = error
    _save_plots(study, importances, error, folder)
    (folder / "best_params.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report
