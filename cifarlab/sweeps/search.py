"""The study that a search's workers share: opened with its checks, its budget, its heartbeat.

Any number of processes (on one machine, or on many with a database server)
that run the same search command are workers of one Optuna study. Each asks
for a trial, runs it, tells the result and asks again, never waiting for
another; they stop together once ``n_trials`` trials are COMPLETE or PRUNED:

- ``open_study`` checks, before any trial runs, that the study is the same
  search (direction, fixed overrides, search space) and that ``n_trials`` is
  not below what is already done; each mismatch is one line.
- ``next_step`` is the shared budget: ask, wait for trials other workers are
  running (they may still fail and be retried), or stop.
- ``Heartbeat`` beats for the trials this process runs, so a worker that died
  is noticed (``fail_stale``) and its trial retried by a live one.
- ``ask_lock`` serialises asking between the threads of a worker, and between
  workers on one SQLite file, so that the study never runs past ``n_trials``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Optional, cast

import numpy as np
import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig
from optuna.distributions import distribution_to_json
from optuna.trial import TrialState

from cifarlab.errors import CifarlabError
from cifarlab.sweeps.space import Space, check_repeats, grid, search_space, sweep_lines
from cifarlab.sweeps.storage import open_storage, resolve_storage, shown, storage_lock, trial_id

IDENTITY_ATTR = "cifarlab.fixed_overrides"
SPACE_ATTR = "cifarlab.search_space"
WORKER_ATTR = "cifarlab.worker"  # host:pid of the worker that runs the trial
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)
# Overrides that do not change what a trial computes (as in cifarlab.tracking.identity.config_hash).
NOT_IDENTITY = ("tracking.", "paths.", "trainer.verbose", "hydra.")
Direction = Literal["minimize", "maximize"]


@dataclass(frozen=True)
class SearchSettings:
    """The ``hydra.sweeper`` keys that say which study this is and how its workers share it."""

    storage: Optional[str]
    study_name: Optional[str]
    direction: str = "maximize"
    n_trials: int = 20
    heartbeat_interval: int = 15
    grace_period: int = 60
    max_retry: int = 3

    @classmethod
    def from_config(cls, sweeper: DictConfig) -> SearchSettings:
        """From the ``hydra.sweeper`` node of a composed config."""
        defaults = cls(storage=None, study_name=None)
        return cls(
            storage=resolve_storage(sweeper.get("storage")),
            study_name=sweeper.get("study_name"),
            direction=str(sweeper.get("direction", defaults.direction)),
            **{key: int(sweeper.get(key, getattr(defaults, key))) for key in _INT_KEYS},
        )

    def storage_object(self) -> Any:
        """The RDB storage with heartbeat (None: in memory)."""
        if not self.storage:
            return None
        return open_storage(
            self.storage,
            heartbeat_interval=self.heartbeat_interval,
            grace_period=self.grace_period,
            max_retry=self.max_retry,
        )

    def check(self) -> None:
        for key in ("heartbeat_interval", "grace_period"):
            if int(getattr(self, key)) < 1:
                raise CifarlabError(f"hydra.sweeper.{key}={getattr(self, key)}: must be 1 second or more")
        if self.grace_period <= self.heartbeat_interval:
            raise CifarlabError(
                f"hydra.sweeper.grace_period={self.grace_period} is not above heartbeat_interval="
                f"{self.heartbeat_interval}: live trials would be failed; set it to 2-4 heartbeats"
            )
        if self.n_trials < 1:
            raise CifarlabError(f"hydra.sweeper.n_trials={self.n_trials}: set 1 or more trials")


_INT_KEYS = ("n_trials", "heartbeat_interval", "grace_period", "max_retry")


def preflight(config: DictConfig) -> None:
    """Before the sweep's parent run or any trial: the same checks the sweeper makes, as one-line errors."""
    sweeper = config.hydra.sweeper
    settings = SearchSettings.from_config(sweeper)
    lines = sweep_lines(sweeper.get("params"), [str(o) for o in config.hydra.overrides.task])
    try:
        space, fixed = search_space(lines, OverridesParser.create())
    except HydraException as err:
        raise CifarlabError(f"hydra.sweeper.params: {err}") from None
    check_repeats(int(sweeper.get("repeats", 1)), space)
    settings.check()
    if settings.storage:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        open_study(settings, space, fixed)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def space_signature(space: Space) -> dict[str, str]:
    return {name: distribution_to_json(dist) for name, (_, dist) in sorted(space.items())}


def identity_lines(fixed: dict[str, str]) -> list[str]:
    return sorted(line for name, line in fixed.items() if not name.startswith(NOT_IDENTITY))


def open_study(
    settings: SearchSettings, space: Space, fixed: dict[str, str], storage: Any = None
) -> optuna.Study:
    """Create or load the study; one-line CifarlabError if it is another search or below its trials."""
    settings.check()
    study = optuna.create_study(
        study_name=settings.study_name,
        storage=storage if storage is not None else settings.storage_object(),
        direction=cast(Direction, settings.direction),  # Optuna checks the value
        load_if_exists=True,
    )
    _check_same_search(study, settings, space, fixed)
    done = len(study.get_trials(deepcopy=False, states=COUNTED))
    if settings.n_trials < done:
        raise CifarlabError(
            f"hydra.sweeper.n_trials={settings.n_trials} is below the {done} trials study '{study.study_name}' "
            f"has already done; set hydra.sweeper.n_trials={done} (nothing more runs) or more to extend it"
        )
    return study


def _check_same_search(
    study: optuna.Study, settings: SearchSettings, space: Space, fixed: dict[str, str]
) -> None:
    where = f"study '{study.study_name}' in {shown(settings.storage or 'memory')}"
    fix = "rerun with the same search to resume it, or set hydra.sweeper.study_name=<new name>"
    if study.direction.name.lower() != settings.direction.lower():
        raise CifarlabError(
            f"hydra.sweeper.direction={settings.direction}: {where} was created to {study.direction.name.lower()}; {fix}"
        )
    for attr, now, what in (
        (IDENTITY_ATTR, identity_lines(fixed), "other overrides"),
        (SPACE_ATTR, space_signature(space), "another search space"),
    ):
        earlier = study.user_attrs.get(attr)
        if earlier is None:
            study.set_user_attr(attr, now)
        elif earlier != now:
            raise CifarlabError(
                f"{where} was run with {what} ({_differs(earlier, now)}): its trials are not comparable; {fix}"
            )


def _differs(earlier: Any, now: Any) -> str:
    if isinstance(earlier, dict) and isinstance(now, dict):
        keys = sorted(k for k in set(earlier) | set(now) if earlier.get(k) != now.get(k))
        return "differs in " + ", ".join(keys)
    return f"{' '.join(earlier) or 'none'}; now {' '.join(now) or 'none'}"


# --- the shared budget ----------------------------------------------------------------------


def grid_size(space: Space) -> int:
    size = 1
    for name, (_, dist) in space.items():
        size *= len(grid(dist, name))
    return size


def next_step(study: optuna.Study, n_trials: int) -> str:
    """``ask`` a trial, ``wait`` for the trials other workers run, or ``done``."""
    trials = study.get_trials(deepcopy=False, states=(*COUNTED, TrialState.RUNNING))
    done = sum(1 for t in trials if t.state in COUNTED)
    if done >= n_trials:
        return "done"
    if len(trials) >= n_trials:
        return "wait"  # the running trials may still fail; then their retry is asked
    return "ask"


@contextlib.contextmanager
def optuna_quiet() -> Iterator[None]:
    """Optuna warns that its heartbeat API (and TPE's constant_liar) is experimental, and the
    heartbeat meant for Study.optimize: used here on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        yield


def fail_stale(study: optuna.Study, grace_period: int, max_retry: int | None) -> None:
    """Fail (and queue again) trials whose worker stopped beating, and RUNNING trials no worker claims."""
    with optuna_quiet():
        optuna.storages.fail_stale_trials(study)
    cutoff = datetime.now() - timedelta(seconds=grace_period)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        # A trial left by a worker that died before its first beat, or by an older cifarlab.
        if WORKER_ATTR not in trial.user_attrs and trial.datetime_start and trial.datetime_start < cutoff:
            fail_and_retry(study, trial.number, max_retry)


def fail_and_retry(study: optuna.Study, number: int, max_retry: int | None) -> None:
    """End a trial this worker cannot finish FAIL, and queue its parameters again, as Optuna's retry
    callback does for a trial whose heartbeat stopped (same marks, same ``max_retry``)."""
    try:
        study.tell(number, state=TrialState.FAIL)
    except (ValueError, RuntimeError):  # already ended by another worker
        return
    with optuna_quiet():
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        retry(study, study.get_trials(deepcopy=False)[number])
    print(
        f"cifarlab: optuna: trial {number} could not finish here: marked FAIL, its parameters queued again",
        flush=True,
    )


def claim(trial: optuna.Trial, heartbeat: Heartbeat) -> None:
    """Mark the trial as this worker's and start beating for it."""
    heartbeat.add(trial.number)
    trial.set_user_attr(WORKER_ATTR, worker_name())


def draw_seed(seed: int, trials_so_far: int) -> int:
    """The sampler's seed for the next ask: the study's seed and its trials so far, mixed.

    The same study state gives the same draw (a search is reproducible for its seed), a resumed
    study does not repeat its first draws, and workers that ask one after another (under
    ``ask_lock``) draw differently. Mixed by NumPy's SeedSequence, not added: with ``seed + k``,
    seed s at trial k drew what seed s+k drew at trial 0, so studies of nearby seeds repeated
    shifted copies of each other.
    """
    return int(np.random.SeedSequence([seed, trials_so_far]).generate_state(1)[0])


@contextlib.contextmanager
def ask_lock(storage: Optional[str], thread_lock: threading.Lock) -> Iterator[None]:
    """Between threads always; between processes, the storage's own lock (``storage_lock``):
    a file lock beside a SQLite file, a lock of the PostgreSQL or MySQL server itself.

    So no two workers ask at the same moment: each sees the other's trial, draws with another
    seed (``draw_seed``) and counts it against ``n_trials``.
    """
    with thread_lock, storage_lock(storage, "ask"):
        yield


class Heartbeat:
    """One thread that records Optuna's heartbeat for every trial this process runs (by trial number)."""

    def __init__(self, storage: Any, study_name: str, interval: int) -> None:
        self.storage, self.study_name, self.interval = storage, study_name, interval
        self.trial_ids: dict[int, int] = {}  # trial number -> the storage's trial id
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, number: int) -> None:
        if self.storage is None:
            return
        beat_id = trial_id(self.storage, self.study_name, number)
        self.storage.record_heartbeat(beat_id)
        with self._lock:
            self.trial_ids[number] = beat_id
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, name="optuna-heartbeat", daemon=True)
            self._thread.start()

    def remove(self, number: int) -> None:
        with self._lock:
            self.trial_ids.pop(number, None)

    def stop(self) -> None:
        self._stop.set()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                ids = list(self.trial_ids.values())
            for beat_id in ids:
                try:
                    self.storage.record_heartbeat(beat_id)
                except Exception as err:  # noqa: BLE001 - a missed beat is retried next interval
                    print(f"cifarlab: optuna: heartbeat for trial id {beat_id} failed ({err})", flush=True)


def wait_a_while(interval: int) -> None:
    """Between looks at a study whose last trials other workers run."""
    time.sleep(max(1.0, min(5.0, interval / 2)))
