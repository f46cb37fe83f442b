"""Name -> builder registries, in the spirit of TF Model Garden's ``registry.py``.

A group YAML picks its builder with ``name:``; the builder receives that node only.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from cifarlab.errors import ConfigError

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    """A dict of builders filled by a decorator.

    >>> MODELS = Registry("model")
    >>> @MODELS.register("mlp")
    ... def build_mlp(cfg, input_shape, num_classes): ...
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._builders: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def decorator(builder: F) -> F:
            if name in self._builders:
                raise KeyError(
                    f"{self.kind} {name!r} is already registered by "
                    f"{self._builders[name].__module__}.{self._builders[name].__qualname__}"
                )
            self._builders[name] = builder
            return builder

        return decorator

    def get(self, name: str) -> F:
        try:
            return self._builders[name]
        except KeyError:
            raise ConfigError(
                f"{self.kind}.name", name, self._choices_hint(name), problem="is not registered"
            ) from None

    def _choices_hint(self, name: str) -> str:
        hint = f"choose one of: {', '.join(sorted(self._builders))}"
        close = difflib.get_close_matches(str(name), self._builders, n=1)
        return f"did you mean {close[0]!r}? {hint}" if close else hint

    def names(self) -> list[str]:
        return sorted(self._builders)

    def __contains__(self, name: object) -> bool:
        return name in self._builders

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._builders))

    def __len__(self) -> int:
        return len(self._builders)
