"""The benchmark's progress lines on stderr, with the seconds since it started."""

from __future__ import annotations

import sys
import time


class Log:
    def __init__(self, quiet: bool = False) -> None:
        self.start = time.perf_counter()
        self.quiet = quiet

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"bench [{self.elapsed():6.1f}s] {message}", file=sys.stderr, flush=True)
