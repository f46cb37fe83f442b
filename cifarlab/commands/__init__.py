"""The doors of cifarlab: one thin module per command, each ``main(argv)``.

``python -m cifarlab`` (or ``cifarlab``) trains; a first argument naming another
command runs that one instead: ``python -m cifarlab predict run=<id> images=x/``.
Only the chosen command's module is imported, so ``--help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from cifarlab.runtime import teardown
from cifarlab.runtime.interrupts import describe_interrupt, stop_on_sigterm

# name -> (module, one line of what it does); "train" is the default.
COMMANDS = {
    "train": ("cifarlab.commands.train", "train one run, a sweep (-m) or a search (Hydra overrides)"),
    "predict": ("cifarlab.commands.predict", "class predictions of a trained model for your images"),
    "evaluate": ("cifarlab.commands.evaluate", "score a trained run's model again, recorded as a linked run"),
    "compare": ("cifarlab.commands.compare", "is one run really better than another? intervals and McNemar"),
    "export": ("cifarlab.commands.export", "a trained model as a SavedModel or LiteRT file"),
    "rerun": (
        "cifarlab.commands.rerun",
        "the command that made a run, run again (warns if code or versions differ)",
    ),
    "results": ("cifarlab.commands.results", "the presets' results table, from the MLflow store"),
    "workers": ("cifarlab.commands.workers", "K workers of one search, as local processes or a SLURM array"),
    "bench": ("cifarlab.commands.bench", "measure cifarlab's speed on this machine against its targets"),
}


def command_main(name: str, argv: Sequence[str]) -> int | None:
    """Run command ``name`` with ``argv``; its exit status (None: success)."""
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(list(argv))


def main(argv: Sequence[str] | None = None) -> None:
    """``cifarlab [COMMAND] ARGS``: the named command, else training with Hydra overrides."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["--help"], ["-h"], ["help"]):
        from cifarlab.commands.help import help_text

        print(help_text(COMMANDS))
        sys.exit(0)
    name = args[0] if args and args[0] in COMMANDS else "train"
    rest = args[1:] if args and args[0] == name else args
    if name == "train":
        sys.argv = [sys.argv[0], *rest]  # Hydra reads sys.argv itself
    sys.exit(command_main(name, rest))


def cli() -> None:
    """The process's entry point (``python -m cifarlab``, the ``cifarlab`` script): ``main``, then
    the exit with its status skips Python's teardown (runtime/teardown.py). Ctrl-C or SIGTERM
    before the command can take them (while Python imports it) end with one line too."""
    teardown.arm()
    stop_on_sigterm()
    try:
        main()
    except SystemExit as stop:
        teardown.record_status(stop.code)
        raise
    except KeyboardInterrupt as err:
        line, code = describe_interrupt(err, resumes=False)
        print(f"cifarlab: {line}", file=sys.stderr, flush=True)
        teardown.record_status(code)
        sys.exit(code)
