"""The sweep: this process is one worker of an Optuna study, one Hydra job per trial.

A worker asks the study for a trial, turns it into overrides, hands them to the
launcher (basic, joblib, submitit), tells the job's return value (cifarlab: best
validation accuracy) back, and asks again, until ``n_trials`` trials are COMPLETE
or PRUNED in the study, whichever worker ran them. With ``n_jobs`` > 1 and a
launcher that runs jobs in other processes (joblib, submitit), ``n_jobs`` such
loops run side by side, so a new trial starts as soon as any ends: no batch
waits for its slowest trial. The same command started in several processes, or
on several machines with a database storage, makes them workers of one study
(``cifarlab.sweeps.search``: the budget, the heartbeat, retries of dead workers' trials).

With ``repeats`` > 1 a trial is ``repeats`` jobs, ``trainer.seed=<seed>+i``, and is
told their mean (FAIL if one failed, PRUNED if one was pruned). Job numbers follow
trial numbers (``cifarlab.sweeps.contract.trial_jobs``): a job learns its trial
from its number and its study from the sweep's ticket, so it can report epochs
for pruning, and workers sharing a sweep folder never share a job folder. When
a trial's jobs return, their reports (the same contract) say which were pruned
and which MLflow runs they used: the trial is told PRUNED, and keeps its run.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, cast

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from cifarlab.sweeps import search
from cifarlab.sweeps.contract import JobReport, read_report, trial_jobs
from cifarlab.sweeps.job import jobs_dir
from cifarlab.sweeps.space import (
    SEED_KEY,
    Space,
    check_repeats,
    format_value,
    grid,
    search_space,
    suggest,
    sweep_lines,
)
from cifarlab.sweeps.storage import resolve_storage
from cifarlab.sweeps.study import RUN_ATTR

log = logging.getLogger(__name__)

REPEATS_ATTR = "cifarlab.repeat_values"  # each repeat's objective (seed -> value), when repeats > 1


def _say(message: str) -> None:
    print(f"cifarlab: optuna: {message}", flush=True)


class OptunaSweeperImpl:
    def __init__(
        self,
        *,
        sampler: Any,
        pruner: Any,
        direction: str,
        storage: Optional[str],
        study_name: Optional[str],
        n_trials: int,
        n_jobs: Optional[int],
        params: Optional[DictConfig],
        repeats: int = 1,
        heartbeat_interval: int = 15,
        grace_period: int = 60,
        max_retry: int = 3,
    ) -> None:
        self.repeats = int(repeats)
        self.sampler_cfg = sampler
        self.pruner_cfg = pruner
        self.settings = search.SearchSettings(
            storage=resolve_storage(storage),
            study_name=study_name,
            direction=str(direction),
            n_trials=int(n_trials),
            heartbeat_interval=int(heartbeat_interval),
            grace_period=int(grace_period),
            max_retry=int(max_retry),
        )
        self.storage = self.settings.storage
        self.n_jobs = n_jobs
        self.params = params
        self.lock = threading.Lock()
        self.in_flight: dict[int, optuna.Trial] = {}  # trial number -> trial, of this worker
        self.errors: list[BaseException] = []

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    # --- the study ---------------------------------------------------------------------------

    def _sampler(self, n_existing: int, space: Space) -> Any:
        cfg = (
            cast(dict[str, Any], OmegaConf.to_container(self.sampler_cfg, resolve=True))
            if OmegaConf.is_config(self.sampler_cfg)
            else dict(self.sampler_cfg)
        )
        if cfg.get("seed") is not None:
            cfg["seed"] = search.draw_seed(int(cfg["seed"]), n_existing)
        with search.optuna_quiet():  # constant_liar is experimental
            sampler = instantiate(cfg)
        if cfg.get("_partial_"):  # the grid sampler: its grid comes from the search space
            sampler = sampler(search_space={name: grid(dist, name) for name, (_, dist) in space.items()})
        return sampler

    def _parallel_jobs(self) -> int:
        """Trials in flight in this worker: ``n_jobs``, else the launcher's n_jobs; 1 with the basic launcher."""
        launcher = self.config.hydra.launcher
        wanted = self.n_jobs if self.n_jobs is not None else int(launcher.get("n_jobs") or 1)
        wanted = max(1, int(wanted))
        if wanted > 1 and "BasicLauncher" in str(launcher.get("_target_", "")):
            _say(
                f"n_jobs={wanted} with the basic launcher, which runs one job at a time in this process: one trial "
                "at a time here; for more use hydra/launcher=joblib, or start more workers (README: searches)"
            )
            return 1
        return wanted

    # --- the sweep ---------------------------------------------------------------------------

    def sweep(self, arguments: list[str]) -> Any:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        self.space, self.fixed = search_space(sweep_lines(self.params, arguments), parser)
        check_repeats(self.repeats, self.space)
        storage = self.settings.storage_object()
        self.study = search.open_study(self.settings, self.space, self.fixed, storage)
        self.study.pruner = instantiate(self.pruner_cfg) if self.pruner_cfg else optuna.pruners.NopPruner()
        self.n_trials = self.settings.n_trials
        if self.sampler_cfg.get("_partial_"):  # the grid sampler: no more trials than grid points
            self.n_trials = min(self.n_trials, search.grid_size(self.space))
        self.heartbeat = search.Heartbeat(storage, self.study.study_name, self.settings.heartbeat_interval)
        n_jobs = self._parallel_jobs()
        self._announce(n_jobs)
        try:
            self._run_workers(n_jobs)
        finally:
            self.heartbeat.stop()
            self._release_in_flight()
        self._write_results(self.study)
        return None

    def _announce(self, n_jobs: int) -> None:
        done = len(self.study.get_trials(deepcopy=False, states=search.COUNTED))
        where = self.storage or "memory (not resumable)"
        sampler = self._sampler(0, self.space)
        _say(
            f"study '{self.study.study_name}' in {where}: {done} trials done, n_trials={self.n_trials}; "
            f"{max(self.n_trials - done, 0)} to go, {n_jobs} at a time in this worker "
            f"({type(sampler).__name__}, {type(self.study.pruner).__name__})"
        )
        if not self.storage:
            _say(
                "no hydra.sweeper.storage: jobs cannot report epochs, so no pruning, and no other worker can join"
            )

    def _run_workers(self, n_jobs: int) -> None:
        """``n_jobs`` ask-run-tell loops: n_jobs - 1 threads and this one (which gets Ctrl-C)."""
        threads = [
            threading.Thread(target=self._guarded_loop, daemon=True, name=f"optuna-{i}")
            for i in range(1, n_jobs)
        ]
        for thread in threads:
            thread.start()
        self._loop()
        for thread in threads:
            thread.join()
        if self.errors:
            raise self.errors[0]

    def _guarded_loop(self) -> None:
        try:
            self._loop()
        except BaseException as err:  # noqa: BLE001 - raised again in the main thread
            self.errors.append(err)

    def _loop(self) -> None:
        """Ask, run, tell, until the study has its trials (or this loop failed as many as it may)."""
        failures_allowed = max(1, self.n_trials)
        while failures_allowed > 0 and not self.errors:
            with search.ask_lock(self.storage, self.lock):
                search.fail_stale(self.study, self.settings.grace_period, self.settings.max_retry)
                step = search.next_step(self.study, self.n_trials)
                asked = self._ask() if step == "ask" else None
            if step == "done":
                return
            if asked is None:
                search.wait_a_while(self.settings.heartbeat_interval)
                continue
            trial, overrides = asked
            jobs = trial_jobs(trial.number, self.repeats)
            returns = list(self.launcher.launch(overrides, initial_job_idx=jobs.start))
            with self.lock:
                state = self._tell(self.study, trial, returns, self._reports(jobs))
                self.heartbeat.remove(trial.number)
                self.in_flight.pop(trial.number, None)
            failures_allowed -= state == TrialState.FAIL

    def _ask(self) -> tuple[optuna.Trial, list[list[str]]]:
        self.study.sampler = self._sampler(len(self.study.get_trials(deepcopy=False)), self.space)
        with search.optuna_quiet():
            trial = self.study.ask()
        search.claim(trial, self.heartbeat)
        self.in_flight[trial.number] = trial
        return trial, self._repeat_overrides(trial, self.space, self.fixed)

    def _release_in_flight(self) -> None:
        """Trials this worker was running when it stopped (Ctrl-C, an error): FAIL, queued again."""
        with self.lock:
            for number in list(self.in_flight):
                search.fail_and_retry(self.study, number, self.settings.max_retry)
            self.in_flight.clear()

    def _job_overrides(self, trial: optuna.Trial, space: Space, fixed: dict[str, str]) -> list[str]:
        lines = list(fixed.values())
        for name, (key, dist) in space.items():
            lines.append(f"{key}={format_value(suggest(trial, name, dist))}")
        return lines

    def _repeat_overrides(self, trial: optuna.Trial, space: Space, fixed: dict[str, str]) -> list[list[str]]:
        """The trial's jobs: one, or ``repeats`` with trainer.seed=<composed seed>+i."""
        lines = self._job_overrides(trial, space, fixed)
        if self.repeats == 1:
            return [lines]
        lines = [line for line in lines if line != fixed.get(SEED_KEY)]
        base = int(OmegaConf.select(self.config, SEED_KEY, default=0) or 0)
        return [lines + [f"{SEED_KEY}={base + i}"] for i in range(self.repeats)]

    def _value(self, trial: optuna.Trial, ret: JobReturn) -> Optional[float]:
        """A job's objective; None when it failed or returned none."""
        if ret.status == JobStatus.COMPLETED:
            try:
                return float(ret.return_value)
            except (TypeError, ValueError):
                return None
        try:
            _ = ret.return_value  # raises what the job raised
        except Exception as err:  # noqa: BLE001 - logged; the trial is told FAILED
            log.warning(f"trial {trial.number} raised {err!r}")
        return None

    def _reports(self, jobs: range) -> list[JobReport]:
        """What the trial's jobs reported of themselves (jobs that left no report are left out)."""
        folder = jobs_dir(self.config.hydra)
        return [report for report in (read_report(folder, num) for num in jobs) if report is not None]

    def _tell(
        self, study: optuna.Study, trial: optuna.Trial, returns: Sequence[JobReturn], reports: list[JobReport]
    ) -> TrialState:
        """Tell the trial's outcome (its jobs' mean, PRUNED or FAIL); return the state told."""
        values = [self._value(trial, ret) for ret in returns]
        failed = any(v is None or not math.isfinite(v) for v in values)
        value = None if failed else sum(values) / len(values)  # type: ignore[arg-type]
        if len(returns) > 1:
            seeds = [
                str(OmegaConf.select(ret.cfg, SEED_KEY)) if ret.cfg is not None else str(i)
                for i, ret in enumerate(returns)
            ]
            trial.set_user_attr(REPEATS_ATTR, dict(zip(seeds, values)))
        run_ids = [r.run_id for r in reports if r.run_id]
        if run_ids:  # the trial's run (the last job's, with repeats), for the study's report
            trial.set_user_attr(RUN_ATTR, run_ids[-1])
        params = " ".join(f"{k}={format_value(v)}" for k, v in trial.params.items())
        pruned = [r.pruned_at_epoch for r in reports if r.pruned_at_epoch is not None]
        if pruned:
            state, line = TrialState.PRUNED, f"PRUNED after epoch {pruned[-1] + 1}"
        elif value is None or not math.isfinite(value):
            state, line = TrialState.FAIL, "FAILED"
        else:
            each = (
                f" (mean of {len(values)}: {', '.join(f'{v:.4f}' for v in values)})"
                if len(values) > 1
                else ""
            )
            state, line = TrialState.COMPLETE, f"value {value:.4f}{each}"
        try:
            study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
        except RuntimeError as err:
            # The grid sampler calls study.stop() once the grid is done; outside optimize() that raises.
            if "Study.stop" not in str(err):
                raise
        _say(f"trial {trial.number} {line}: {params}")
        return state

    def _write_results(self, study: optuna.Study) -> None:
        results: dict[str, Any] = {
            "name": "cifarlab_optuna",
            "study_name": study.study_name,
            "storage": self.storage,
        }
        try:
            best = study.best_trial
        except ValueError:
            _say("no trial completed yet")
        else:
            results.update(best_trial=best.number, best_params=best.params, best_value=best.value)
            params = " ".join(f"{k}={format_value(v)}" for k, v in best.params.items())
            _say(f"best trial {best.number} value {best.value:.4f}: {params}")
        folder = Path(str(self.config.hydra.sweep.dir))
        folder.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(results), folder / "optimization_results.yaml")
