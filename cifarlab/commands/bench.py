"""``python -m cifarlab bench``: measure cifarlab's speed on this machine, against its targets.

    python -m cifarlab bench                              # the full bench: every round and repeat
    python -m cifarlab bench quick=true out=bench.json    # fewer steps and repeats: 7-16 minutes on 2 cores
    python -m cifarlab bench data_dir=path/to/cifar10     # or synthetic=true: generated images

Arguments are ``key=value`` like the training CLI's; the older spellings
(``--quick --out X --data-dir X --synthetic``) still work. The results go to a
JSON file (``out``) and a table on stdout; progress goes to stderr. Data:
``data_dir`` if given, else the CIFAR-10 subset in ../shared/data/cifar10-subset
beside the checkout when present; generated 32x32x3 images with ``synthetic=true``
or when neither is there.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, cast

from omegaconf import OmegaConf

from cifarlab.bench.plan import PLANS, Plan, default_subset
from cifarlab.config.arguments import exit_with_error, parse_options, usage, wants_help
from cifarlab.errors import CifarlabError

PROG = "cifarlab bench"
EXAMPLE = "quick=true out=bench.json"
# The spellings of the argparse days: flags that take no value, and those that take the next argument.
LEGACY_SWITCHES = {"--quick": "quick", "--tiny": "tiny", "--synthetic": "synthetic"}
LEGACY_VALUES = {"--out": "out", "--data-dir": "data_dir", "--workdir": "workdir"}
WORKER_FLAGS = ("--worker", "--worker-args")


@dataclass
class BenchOptions:
    quick: bool = False  # fewer steps and repeats: 7-16 minutes on 2 cores
    tiny: bool = False  # seconds, for the tests: the numbers mean nothing
    out: str = "bench.json"  # where the JSON results go
    data_dir: Optional[str] = None  # a CIFAR-10 folder (default: the shared subset, if present)
    synthetic: bool = False  # generated 32x32x3 images even if the subset exists
    workdir: Optional[str] = None  # scratch folder (default: a temporary one, removed after)


def translate_legacy(argv: Sequence[str]) -> list[str]:
    """``--quick --out X --data-dir=Y`` as ``quick=true out=X data_dir=Y``; key=value arguments unchanged."""
    args, out = list(argv), []
    while args:
        arg = args.pop(0)
        flag, sep, value = arg.partition("=")
        if arg in LEGACY_SWITCHES:
            out.append(f"{LEGACY_SWITCHES[arg]}=true")
        elif flag in LEGACY_VALUES:
            if not sep:
                if not args:
                    raise CifarlabError(f"{flag} needs a value; write {LEGACY_VALUES[flag]}=...")
                value = args.pop(0)
            out.append(f"{LEGACY_VALUES[flag]}={value}")
        elif arg.startswith("-"):
            raise CifarlabError(f"unknown flag {arg!r}; arguments are key=value, e.g. {EXAMPLE} (see --help)")
        else:
            out.append(arg)
    return out


def parse_bench_args(argv: Sequence[str]) -> BenchOptions:
    """The command line (key=value, or the legacy flags) as checked options; CifarlabError in one line if wrong."""
    cfg, _ = parse_options(BenchOptions, translate_legacy(argv), prog=PROG, example=EXAMPLE)
    options = cast(BenchOptions, OmegaConf.to_object(cfg))
    if options.data_dir is not None and not options.synthetic and not Path(options.data_dir).is_dir():
        raise CifarlabError(f"data_dir={options.data_dir} is not a folder")
    return options


def chosen_plan(options: BenchOptions) -> Plan:
    return PLANS["tiny" if options.tiny else "quick" if options.quick else "full"]


def chosen_data(options: BenchOptions) -> Path | None:
    """The CIFAR-10 folder to measure on, or None for generated images."""
    if options.synthetic:
        return None
    if options.data_dir is not None:
        return Path(options.data_dir).resolve()
    return default_subset() if default_subset().is_dir() else None


def worker_request(argv: Sequence[str]) -> tuple[str, dict] | None:
    """``--worker KIND [--worker-args JSON]``, the bench's protocol with its own subprocesses; None if not one."""
    if "--worker" not in argv:
        return None
    values = dict(zip(argv[::2], argv[1::2]))
    if set(values) - set(WORKER_FLAGS) or len(argv) % 2:
        raise CifarlabError("a worker takes only --worker KIND --worker-args JSON")
    try:
        args = json.loads(values.get("--worker-args", "{}"))
    except json.JSONDecodeError as err:
        raise CifarlabError(f"--worker-args is not JSON ({err})") from None
    return values["--worker"], args


def serve_worker(kind: str, args: dict) -> int:
    # Deferred: the workers import TensorFlow, which --help and the argument checks do without.
    from cifarlab.bench.subprocess_workers import WORKERS, run_worker_here

    if kind not in WORKERS:
        raise CifarlabError(f"--worker {kind!r} is not a worker; choose one of: {', '.join(sorted(WORKERS))}")
    run_worker_here(kind, args)
    return 0


def run(options: BenchOptions) -> int:
    """The benchmark as ``options`` ask; the JSON written, the table printed."""
    # Deferred: the measurements import TensorFlow, which --help and the argument checks do without.
    from cifarlab.bench.report import table, write_result
    from cifarlab.bench.runner import run_bench

    workdir = Path(options.workdir) if options.workdir else Path(tempfile.mkdtemp(prefix="cifarlab-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        result = run_bench(chosen_plan(options), chosen_data(options), workdir.resolve())
    finally:
        if options.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    out = Path(options.out)
    write_result(result, out)
    print(table(result))
    print(f"\nwritten: {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if wants_help(argv):
        print(usage(BenchOptions, __doc__ or ""))
        return 0
    try:
        request = worker_request(argv)
        if request is not None:
            return serve_worker(*request)
        return run(parse_bench_args(argv))
    except CifarlabError as err:
        exit_with_error(PROG, err, code=2)
    return 2  # not reached: exit_with_error exits
