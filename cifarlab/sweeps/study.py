"""Optuna in a sweep job (epoch-level pruning) and on the sweep's parent run (study plots).

A job of the ``cifarlab_optuna`` sweeper learns its trial from
``$CIFARLAB_OPTUNA_TRIAL_ID`` (set per job through ``hydra.job.env_set``, so the
job's own config, and so its config hash, stays free of Optuna) and its study
from ``hydra.sweeper`` in its Hydra config. It reports validation accuracy after
every epoch; when the pruner says stop, the callback marks the trial, tags the
MLflow run ``pruned=true`` and raises ``RunPruned``: the run ends KILLED and the
sweeper tells Optuna the trial was PRUNED.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig

PRUNED_ATTR = "cifarlab.pruned_at_epoch"
RUN_ATTR = "mlflow_run_id"


def resolve_storage(url: str | None) -> str | None:
    """A relative SQLite path is relative to the folder the command runs in: make it absolute."""
    if not url:
        return url
    url = str(url)
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url[len(prefix) :].startswith("/") and url[len(prefix) :] != ":memory:":
        path = Path(url[len(prefix) :]).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"{prefix}{path}"
    return url


def _job_study():
    """The study of the sweep this job runs in, with the sweep's pruner."""
    import optuna
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    sweeper = HydraConfig.get().sweeper
    pruner = instantiate(sweeper.pruner) if sweeper.get("pruner") else None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=sweeper.study_name, storage=resolve_storage(sweeper.storage), pruner=pruner)


def note_run(trial_id: int, run_id: str, tracking_uri: str, *, tag_run: bool = True) -> None:
    """The trial's MLflow run as a user attr of the trial; the run tagged with its trial (unless reused)."""
    import mlflow
    import optuna

    study = _job_study()
    trial = optuna.trial.Trial(study, trial_id)
    trial.set_user_attr(RUN_ATTR, run_id)
    if not tag_run:  # a skipped job: the FINISHED run it reuses belongs to another trial
        return
    client = mlflow.MlflowClient(tracking_uri)
    client.set_tag(run_id, "optuna_trial", str(trial.number))
    client.set_tag(run_id, "optuna_study", study.study_name)
    if client.get_run(run_id).data.tags.get("pruned"):  # a resumed run that was pruned before
        client.delete_tag(run_id, "pruned")


def pruning_callback(
    trial_id: int,
    *,
    run_id: str | None,
    tracking_uri: str,
    on_prune: Callable[[int], None],
    monitor: str = "val_accuracy",
):
    """A Keras callback that reports ``monitor`` to the trial each epoch and stops it when pruned."""
    import keras
    import optuna

    from cifarlab.sweeps.record import RunPruned

    study = _job_study()
    trial = optuna.trial.Trial(study, trial_id)

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
            if run_id:
                import mlflow

                client = mlflow.MlflowClient(tracking_uri)
                client.set_tag(run_id, "pruned", "true")
                client.set_tag(run_id, "pruned_at_epoch", str(epoch + 1))
            raise RunPruned(
                f"Optuna pruned trial {trial.number} after epoch {epoch + 1} "
                f"(val/accuracy {float(value):.4f}); its run ends KILLED with tag pruned=true"
            )

    return OptunaPruning()


# --- on the parent run -------------------------------------------------------------------------


def study_report(config: DictConfig, folder: Path) -> dict[str, Any]:
    """Optimisation history and parameter importances as PNGs in ``folder``; the best trial as JSON."""
    import optuna

    sweeper = config.hydra.sweeper
    study = optuna.load_study(study_name=sweeper.study_name, storage=resolve_storage(sweeper.storage))
    trials = study.get_trials(deepcopy=False)
    states = {s.name: sum(1 for t in trials if t.state == s) for s in optuna.trial.TrialState}
    report: dict[str, Any] = {
        "study_name": study.study_name,
        "storage": resolve_storage(sweeper.storage),
        "trials": len(trials),
        "states": {k: v for k, v in states.items() if v},
    }
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        report.update(
            best_trial=best.number,
            best_value=best.value,
            best_params=best.params,
            best_run_id=best.user_attrs.get(RUN_ATTR),
        )
    history_figure(study).savefig(folder / "optuna_history.png", dpi=110)
    importances = None
    if len(complete) >= 2:
        try:
            importances = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError) as err:  # e.g. a parameter that never varied
            report["importances_error"] = str(err)
    report["importances"] = importances
    importance_figure(importances, report.get("importances_error")).savefig(
        folder / "optuna_param_importances.png", dpi=110
    )
    (folder / "best_params.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def history_figure(study):
    """Objective of each trial and the best so far (Optuna's optimisation history, without pyplot)."""
    import optuna
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED and t.intermediate_values]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    if complete:
        ax.scatter([t.number for t in complete], [t.value for t in complete], label="complete trial", zorder=3)
        best, xs, ys = None, [], []
        for t in complete:
            if best is None or (t.value > best if maximize else t.value < best):
                best = t.value
            xs.append(t.number)
            ys.append(best)
        ax.step(xs, ys, where="post", color="red", label="best so far")
    if pruned:
        ax.scatter(
            [t.number for t in pruned],
            [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
            marker="x",
            color="gray",
            label="pruned (last reported)",
        )
    ax.set_xlabel("trial")
    ax.set_ylabel("objective (best val accuracy)")
    ax.set_title(f"Optimisation history: study '{study.study_name}' ({len(trials)} trials)")
    ax.grid(alpha=0.3)
    if complete or pruned:
        ax.legend(loc="best", fontsize="small")
    return fig


def importance_figure(importances: dict[str, float] | None, error: str | None = None):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 0.6 + 0.5 * max(1, len(importances or {}))), layout="constrained")
    ax = fig.subplots()
    if importances:
        names = list(importances)[::-1]
        ax.barh(names, [importances[n] for n in names])
        ax.set_xlabel("importance (optuna.importance.get_param_importances)")
        ax.set_title("Parameter importances")
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, error or "needs at least 2 complete trials", ha="center", va="center", wrap=True)
    return fig
