"""A pickle loader that admits only what a CIFAR python batch is made of.

A pickle can call any importable function while it loads (``__reduce__``), so a
tampered batch could run ``os.system``. This unpickler resolves a short allow-list
of globals and refuses everything else before it is called.
"""

from __future__ import annotations

import builtins
import pickle
from pathlib import Path
from typing import IO, Any

import numpy as np

from cifarlab.errors import DataError, UnsafePickleError

_NUMPY_2 = int(np.__version__.split(".")[0]) >= 2
_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")


def _latin1_encode(obj: object, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes: str -> latin-1 only."""
    if not isinstance(obj, str) or encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode({type(obj).__name__}, {encoding!r})")
    return obj.encode("latin1", errors)


# (module, name) -> the object handed to the unpickler. Containers (dict, list,
# tuple, bytes, str, int) are pickle opcodes and need no global at all.
_ALLOWED: dict[tuple[str, str], Any] = {
    **{("builtins", n): getattr(builtins, n) for n in ("set", "frozenset", "bytearray", "complex")},
    ("_codecs", "encode"): _latin1_encode,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
_NUMPY_NAMES = {"_reconstruct", "scalar"}


def _normalise(module: str) -> str:
    if module == "__builtin__":  # the Python 2 name, as in the official files
        return "builtins"
    if module in _MULTIARRAY:  # numpy 1 wrote numpy.core, numpy 2 writes numpy._core
        return _MULTIARRAY[1] if _NUMPY_2 else _MULTIARRAY[0]
    return module


class SafeUnpickler(pickle.Unpickler):
    """Resolves only numpy array reconstruction and a few harmless builtins."""

    def __init__(self, file: IO[bytes], source: str) -> None:
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        resolved = _normalise(module)
        if (resolved, name) in _ALLOWED:
            return _ALLOWED[(resolved, name)]
        if resolved in _MULTIARRAY and name in _NUMPY_NAMES:
            return super().find_class(resolved, name)
        raise UnsafePickleError(
            f"{self.source}: refused to load global {module}.{name} "
            "(a CIFAR batch only holds numpy arrays, lists and bytes); "
            "the file was not executed"
        )


def safe_load(file: IO[bytes], source: str | Path) -> Any:
    """Unpickle ``file`` with :class:`SafeUnpickler`; ``source`` names it in errors."""
    try:
        return SafeUnpickler(file, str(source)).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated or garbled: EOFError, UnpicklingError, ValueError ...
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(
            f"{source}: not a readable CIFAR-10 python batch ({reason}); "
            "expected a pickled dict with b'data' and b'labels'"
        ) from exc


def safe_load_path(path: Path) -> Any:
    with open(path, "rb") as f:
        return safe_load(f, path)
