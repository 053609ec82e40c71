"""Warnings about bad input, throttled per kind of problem and counted for diagnostics."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable


class ThrottledWarnings:
    """Passes each kind's warning to `sink` at most once per `period` seconds; counts them all."""

    def __init__(self, sink: Callable[[str], None], *, kinds: Iterable[str] = (),
                 period: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._sink = sink
        self._period = period
        self._clock = clock
        self._last: dict[str, float] = {}
        self.counts = dict.fromkeys(kinds, 0)  # `kinds` are listed at 0 before any warning
        self._lock = threading.Lock()

    def warn(self, kind: str, text: str) -> None:
        now = self._clock()
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            last = self._last.get(kind)
            if last is not None and now - last < self._period:
                return
            self._last[kind] = now
        self._sink(text)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)
