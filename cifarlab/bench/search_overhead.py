"""``search_overhead_ratio``: what a search costs beyond its training.

One real search, ``python -m cifarlab -m hparams_search=mlp_optuna`` (N trials
of 2 epochs, no augmentation, no pruning, the default SQLite store), against a
hand-written Keras loop of the same N trials (the parameters the search drew,
read back from its study) that records nothing: each side's whole wall time,
Python and TensorFlow start-up included, in one bench run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from cifarlab.bench.measurements import Measurements
from cifarlab.bench.plan import Plan
from cifarlab.bench.processes import run_command, run_worker
from cifarlab.bench.progress import Log

SEARCH = ["-m", "hparams_search=mlp_optuna", "augmentation=none", "hydra/sweeper/pruner=nop"]
SWEPT = ("optimizer.lr", "trainer.batch_size", "model.hidden_units")


def search_trials(storage: str) -> list[dict[str, Any]]:
    """The parameters of each trial of the bench's study, in trial order."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="mlp_optuna", storage=storage)
    return [dict(t.params) for t in sorted(study.trials, key=lambda t: t.number)]


def search_overhead_stage(
    plan: Plan, data_overrides: list[str], workdir: Path, log: Log, m: Measurements
) -> None:
    folder = workdir / "search"
    folder.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{folder / 'optuna.db'}"
    args = [*SEARCH, *data_overrides, f"trainer.epochs={plan.search_epochs}",
            f"hydra.sweeper.n_trials={plan.search_trials}", f"hydra.sweeper.storage={storage}",
            f"paths.mlruns_dir={folder / 'mlruns'}", "tracking.experiment=bench-search"]  # fmt: skip
    log(
        f"search: {plan.search_trials} MLP trials of {plan.search_epochs} epochs through cifarlab (subprocess)"
    )
    start = time.perf_counter()
    run_command([sys.executable, "-m", "cifarlab", *args], folder, plan.subprocess_timeout_s * 2)
    search_s = time.perf_counter() - start
    trials = search_trials(storage)
    log(f"search: the same {len(trials)} trials in a hand-written Keras loop (subprocess)")
    start = time.perf_counter()
    peer = run_worker(
        "search_peer",
        {"overrides": data_overrides, "epochs": plan.search_epochs, "trials": trials},
        folder,
        plan.subprocess_timeout_s * 2,
    )
    peer_s = time.perf_counter() - start
    m.values["search_overhead_ratio"] = search_s / peer_s
    m.details["search_overhead"] = {
        "cifarlab_search_s": search_s,
        "keras_loop_s": peer_s,
        "trials": len(trials),
        "epochs_per_trial": plan.search_epochs,
        "per_trial_overhead_s": (search_s - peer_s) / max(len(trials), 1),
        "keras_loop_val_accuracy": peer["val_accuracy"],
        "method": "whole wall time of each subprocess, start-up included; the loop trains the "
        "parameters the search drew, with the same data, and records nothing",
    }


def keras_search_loop(args: dict) -> dict:
    """The peer: each trial a plain Keras MLP with the mlp preset's layers and optimizer (Nadam),
    trained and tested on the same arrays, nothing recorded."""
    import keras

    from cifarlab.config.compose import compose_config
    from cifarlab.training.plan import assemble

    data = assemble(compose_config([*args["overrides"], "model=mlp"])).data.load()  # the same arrays
    accuracies = []
    for trial in args["trials"]:
        keras.utils.set_random_seed(0)
        hidden = trial["model.hidden_units"]
        hidden = json.loads(hidden) if isinstance(hidden, str) else hidden
        model = keras.Sequential([keras.Input(data.input_shape), keras.layers.Rescaling(1 / 255.0),
                                  keras.layers.Flatten(),
                                  *[keras.layers.Dense(units, activation="elu") for units in hidden],
                                  keras.layers.Dense(data.num_classes, activation="softmax")])  # fmt: skip
        model.compile(
            optimizer=keras.optimizers.Nadam(learning_rate=float(trial["optimizer.lr"])),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        history = model.fit(
            data.x_train,
            data.y_train,
            batch_size=int(trial["trainer.batch_size"]),
            epochs=args["epochs"],
            validation_data=(data.x_val, data.y_val),
            verbose=0,
        )
        model.evaluate(data.x_test, data.y_test, verbose=0)
        accuracies.append(max(history.history["val_accuracy"]))
    return {"val_accuracy": accuracies}
