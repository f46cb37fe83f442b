"""A quiet screen: TensorFlow's and MLflow's start-up lines kept off the console.

TensorFlow reads ``TF_CPP_MIN_LOG_LEVEL`` once, when it is first imported, but
some lines come before its logging starts and ignore it: "All log messages before
absl::InitializeLog()...", "Could not find cuda drivers" and, on a machine without
a GPU, "failed call to cuInit", which reads like a failure and is not one. So the
first import of TensorFlow (and its look for devices) runs with the process's
stderr captured, and every line but those start-up lines is written out again.
MLflow's INFO lines are held back the same way, by its own log level, and so are its
artifact download bars.

``CIFARLAB_VERBOSE=1`` brings all of them back; a user's own settings of the
variables win.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType

TF_LOG_LEVEL = "2"  # errors only
MLFLOW_LOG_LEVEL = "WARNING"

START_UP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IWE]\d{4} [\d:. ]+\d+ (cudart_stub|cuda_platform|cuda_executor|cuda_dnn|cuda_fft|cuda_blas"
    r"|computation_placer|cpu_feature_guard|port)\.cc:\d+\]"
    r"|To enable the following instructions: )"
)


def verbose() -> bool:
    return os.environ.get("CIFARLAB_VERBOSE", "") not in ("", "0", "false")


def quiet_tensorflow() -> None:
    """Set the log levels, and hide the start-up lines of TensorFlow's first import."""
    if verbose():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_LOG_LEVEL)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", MLFLOW_LOG_LEVEL)
    # MLflow draws a progress bar for every artifact it downloads, a search's end downloads dozens.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


@contextmanager
def stderr_without(noise: re.Pattern[str]) -> Iterator[None]:
    """Capture file descriptor 2 (C++ writes there directly); on leaving, write back what ``noise`` spares."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [
                line for line in capture.read().decode(errors="replace").splitlines() if not noise.match(line)
            ]
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` as the other finders do, and loads it with its start-up lines hidden."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once; and the search below must not find this finder again
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with stderr_without(START_UP_NOISE):
            self.loader.exec_module(module)
            module.config.list_physical_devices()  # the look for a GPU, which prints the cuInit line
