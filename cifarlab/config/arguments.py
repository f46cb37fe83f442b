"""``key=value`` arguments for cifarlab's entry points, parsed and explained one way.

Each entry point (predict, evaluate, compare, export, results, workers, bench)
describes its options as a dataclass; ``parse_options`` turns ``argv`` into that
typed config, and ``usage`` prints the same ``--help`` shape for all of them: the
module's docstring, then every option with its default. ``run_command`` is the
``main`` they share: help, parse, run, and a ``CifarlabError``, Ctrl-C or SIGTERM as
one line. The training CLI is Hydra's and takes the same ``key=value`` form.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cifarlab.errors import CifarlabError, environment_failure
from cifarlab.runtime.interrupts import describe_interrupt, stop_on_sigterm

HELP_FLAGS = ("-h", "--help")


def option_keys(node: Any, prefix: str = "") -> list[str]:
    """Every leaf key of a config node, dotted."""
    keys = []
    for key, value in node.items():
        name = f"{prefix}{key}"
        keys += option_keys(value, f"{name}.") if isinstance(value, DictConfig) else [name]
    return keys


def usage(schema: type, doc: str) -> str:
    """The help text: ``doc`` and every option of ``schema`` with its default."""
    defaults = OmegaConf.structured(schema)
    options = "\n".join(f"  {key}={OmegaConf.select(defaults, key)}" for key in option_keys(defaults))
    return f"{doc.strip()}\n\noptions (defaults):\n{options}\n"


def wants_help(argv: Sequence[str]) -> bool:
    return any(arg in HELP_FLAGS for arg in argv)


def split_key_value(arg: str, prog: str, example: str) -> tuple[str, str]:
    key, sep, value = arg.partition("=")
    if not sep or not key:
        raise CifarlabError(f"argument {arg!r} is not key=value; write e.g. {example}")
    return key, value


def parse_options(
    schema: type, argv: Sequence[str], *, prog: str, example: str, pass_through: bool = False
) -> tuple[DictConfig, list[str]]:
    """``key=value`` arguments into a typed ``schema`` config.

    Unknown keys fail in one line with the closest option, unless ``pass_through``,
    when they are returned (as Hydra overrides, for commands that compose a config).
    """
    cfg = OmegaConf.structured(schema)
    known = option_keys(cfg)
    rest: list[str] = []
    for arg in argv:
        key, value = split_key_value(arg, prog, example)
        if key not in known:
            if pass_through:
                rest.append(arg)
                continue
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]}=? " if close else ""
            raise CifarlabError(
                f"{key}={value!r} is not an option of {prog}; {hint}options: {', '.join(known)}"
            )
        _set(cfg, key, value)
    return cfg, rest


def _set(cfg: DictConfig, key: str, value: str) -> None:
    kind = type(OmegaConf.select(cfg, key)).__name__
    try:
        OmegaConf.update(cfg, key, None if value in ("", "null", "None") else value, merge=False)
    except OmegaConfBaseException:
        hint = "true or false" if kind == "bool" else "a number" if kind in ("int", "float") else "a value"
        raise CifarlabError(f"{key}={value!r} is not valid; use {hint}, e.g. {key}=...") from None


def exit_with_error(prog: str, err: Exception, code: int = 1) -> None:
    """The one-line error every entry point ends with."""
    print(f"{prog}: error: {err}", file=sys.stderr)
    sys.exit(code)


def run_command(
    schema: type,
    doc: str | None,
    argv: Sequence[str] | None,
    *,
    prog: str,
    example: str,
    run: Callable[[DictConfig, list[str]], object],
    pass_through: bool = False,
) -> None:
    """An entry point's ``main``: ``--help`` prints ``usage``; otherwise ``argv`` (default: the command
    line) is parsed into ``schema`` and ``run(options, other arguments)`` called. A ``CifarlabError``
    from either ends the process with one line and exit status 1; Ctrl-C or SIGTERM with one line
    (the run it ended KILLED, if any) and the shell's 130 or 143."""
    args = list(sys.argv[1:] if argv is None else argv)
    if wants_help(args):
        print(usage(schema, doc or ""))
        return
    stop_on_sigterm()
    try:
        options, rest = parse_options(schema, args, prog=prog, example=example, pass_through=pass_through)
        run(options, rest)
    except KeyboardInterrupt as err:
        line, code = describe_interrupt(err, resumes=False)
        print(f"{prog}: {line}", file=sys.stderr, flush=True)
        sys.exit(code)
    except CifarlabError as err:
        exit_with_error("cifarlab", err)
    except Exception as err:  # a full disk or a read-only folder: the machine's fault, told in one line
        described = environment_failure(err)
        if described is None:
            raise
        exit_with_error("cifarlab", CifarlabError(described))
