"""A seeded search draws reproducibly, never repeats itself on resume, and nearby seeds are unrelated."""

from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution

from cifarlab.sweeps.search import draw_seed


def _draws(seed: int, n: int, study: optuna.Study | None = None) -> list[float]:
    """``n`` asks of a study, the sampler reseeded before each as the sweeper does."""
    study = study or optuna.create_study()
    values = []
    for _ in range(n):
        study.sampler = optuna.samplers.RandomSampler(seed=draw_seed(seed, len(study.trials)))
        trial = study.ask({"lr": FloatDistribution(1e-4, 1e-1, log=True)})
        study.tell(trial, 0.5)
        values.append(trial.params["lr"])
    return values


def test_the_same_seed_draws_the_same_trials():
    assert _draws(7, 6) == _draws(7, 6)


def test_nearby_seeds_are_not_shifted_copies_of_each_other():
    seed_0, seed_1 = _draws(0, 8), _draws(1, 8)
    assert seed_0[1:] != seed_1[:-1]  # with seed + trials, seed 0's trial k was seed 1's trial k-1
    assert len(set(seed_0) | set(seed_1)) == 16


def test_a_resumed_study_does_not_repeat_its_first_draws():
    study = optuna.create_study()
    first = _draws(3, 4, study)
    resumed = _draws(3, 4, study)  # a new invocation on the same study: a fresh sampler
    assert len(set(first) | set(resumed)) == 8
