"""predict, evaluate and results take key=value the same way and answer --help in the same shape."""

from __future__ import annotations

import pytest
from helpers import run_cli, run_python

from cifarlab.commands import evaluate, predict, results

ENTRY_POINTS = {"predict": predict, "evaluate": evaluate, "results": results}


@pytest.mark.parametrize("flag", ["-h", "--help"])
@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_help_prints_the_docstring_and_every_option(name, flag, capsys):
    module = ENTRY_POINTS[name]
    module.main([flag])  # returns: exit status 0
    out = capsys.readouterr().out
    assert out.startswith(f"``python -m cifarlab {name}``")
    options = out.split("options (defaults):\n", 1)[1].split()
    expected = {
        "predict": {"run=None", "images=None", "top_k=3", "tracking.uri=None", "paths.mlruns_dir=mlruns"},
        "evaluate": {"run=None", "model=None", "split=test", "output_dir=None"},
        "results": {"tracking_uri=None", "experiment=cifarlab", "output=None", "mlruns_dir=mlruns"},
    }[name]
    assert expected <= set(options)


@pytest.mark.parametrize(
    "name, argv, expected",
    [
        ("predict", ["imgs=x"], "imgs='x' is not an option of cifarlab predict; did you mean images=?"),
        (
            "results",
            ["outptu=x.md"],
            "outptu='x.md' is not an option of cifarlab results; did you mean output=?",
        ),
        ("evaluate", ["run"], "argument 'run' is not key=value"),
        ("evaluate", ["split=test"], "give one of run=<run id>"),
        ("evaluate", ["run=abc", "split=train"], "split='train' is not valid; choose one of: test, val"),
    ],
)
def test_bad_arguments_are_one_line_and_a_non_zero_exit(name, argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        ENTRY_POINTS[name].main(argv)
    assert exit_info.value.code != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("cifarlab: error: ") and expected in err


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_cifarlabs_own_help_names_every_command_group_and_preset(flag, tmp_path):
    from cifarlab.commands import COMMANDS
    from cifarlab.config.locations import conf_dir, experiments_dir

    proc = run_cli(flag, cwd=tmp_path)
    text = proc.stdout
    assert "powered by Hydra" not in text and len(text.splitlines()) < 60
    assert all(f"  {name}  " in text for name in COMMANDS)
    for preset in experiments_dir().glob("*.yaml"):
        assert preset.stem in text
    assert "cnn_bn*" in text and "nadam*" in text  # the defaults, marked
    assert all(model.stem in text for model in (conf_dir() / "model").glob("*.yaml"))
    assert "--hydra-help" in text and "mlflow ui" in text and "README" in text


# The cifarlab command, with a signal sent to itself while Python imports the chosen command's
# module (the first seconds of `python -m cifarlab evaluate ...`), as a shell would start it.
SIGNAL_WHILE_IMPORTING = """
import importlib, os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # pytest-xdist's workers ignore it
from cifarlab.commands import cli

signum, import_module = getattr(signal, sys.argv[1]), importlib.import_module
def importing(name, *args):
    if name.startswith("cifarlab.commands."):
        os.kill(os.getpid(), signum)
    return import_module(name, *args)
importlib.import_module = importing
sys.argv = ["cifarlab", "evaluate", "run=" + "0" * 32]
cli()
"""


@pytest.mark.parametrize(("signame", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_while_the_command_is_imported_ends_in_one_line(tmp_path, signame, code):
    proc = run_python(SIGNAL_WHILE_IMPORTING, signame, cwd=tmp_path)
    assert proc.returncode == code
    assert proc.stderr.strip().splitlines() == [f"cifarlab: stopped by {signame}; nothing was recorded"]
