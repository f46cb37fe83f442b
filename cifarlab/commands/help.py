"""``python -m cifarlab --help``: cifarlab's own help, built from the config folders it ships.

Hydra's help (the whole composed config) stays one flag away: ``--hydra-help`` for
Hydra's flags, ``--cfg job`` for every value.
"""

from __future__ import annotations

from omegaconf import OmegaConf

from cifarlab.config.locations import conf_dir, experiments_dir

# The groups a user picks from most, in the order the defaults list has them.
GROUPS = ("dataset", "model", "optimizer", "augmentation", "callbacks", "stages", "tracking", "debug")
COMMON_OVERRIDES = (
    ("trainer.epochs=20 trainer.batch_size=128", "how long and in what batches"),
    ("optimizer.lr=0.001 trainer.seed=1", "the learning rate, the seed"),
    ("experiment=cifar10_fast_cpu", "a preset recipe (see experiments/)"),
    ("debug=fast", "a smoke test: a few steps, nothing long"),
    ("-m model=mlp,cnn_bn optimizer.lr=1e-3,3e-3", "a sweep: every combination, one parent run"),
    ("-m hparams_search=mlp_optuna", "an Optuna search"),
)


def options(group: str, default: str | None) -> str:
    """The group's options, the default marked with ``*``."""
    folder = experiments_dir() if group == "experiment" else conf_dir() / group
    names = sorted(path.stem for path in folder.glob("*.yaml"))
    return " | ".join(f"{name}*" if name == default else name for name in names)


def defaults() -> dict[str, str | None]:
    """Group -> default option, from the primary config's defaults list."""
    chosen: dict[str, str | None] = {}
    primary = OmegaConf.to_container(OmegaConf.load(conf_dir() / "config.yaml"))
    assert isinstance(primary, dict)
    for entry in primary.get("defaults", []):
        if isinstance(entry, dict):
            chosen.update({str(key): value for key, value in entry.items()})
    return chosen


def help_text(commands: dict[str, tuple[str, str]]) -> str:
    width = max(len(name) for name in commands)
    lines = [
        "cifarlab: config-driven Keras experiments for small images, every run recorded in MLflow.",
        "",
        "usage: python -m cifarlab [GROUP=OPTION ...] [KEY=VALUE ...]      train one run",
        "       python -m cifarlab -m [KEY=A,B ...]                         a sweep or a search",
        "       python -m cifarlab COMMAND [KEY=VALUE ...]                  another command (COMMAND --help)",
        "",
        "groups (one option each; * marks the default):",
    ]
    chosen = defaults()
    for group in (*GROUPS, "experiment"):
        lines.append(f"  {group + '=':<14}{options(group, chosen.get(group))}")
    lines += ["", "common overrides:"]
    lines += [f"  {override:<44}{what}" for override, what in COMMON_OVERRIDES]
    lines += ["", "commands:"]
    lines += [f"  {name:<{width}}  {what}" for name, (_, what) in commands.items()]
    lines += [
        "",
        "see the runs:   mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db  (then http://127.0.0.1:5000)",
        "every value:    python -m cifarlab --cfg job        Hydra's own flags: python -m cifarlab --hydra-help",
        "the guide:      README.md (quick start, presets, sweeps, searches, scaling out, troubleshooting)",
        "quieter/louder: CIFARLAB_VERBOSE=1 shows TensorFlow's and MLflow's start-up lines",
    ]
    return "\n".join(lines)
