"""Pair each camera frame with the depth frame of the nearest stamp, without waiting.

Depth frames are kept as they arrive (a bounded ring, thread-safe); when a colour frame's
results are published the nearest one is looked up. A depth frame that has not arrived by
then is not waited for: that frame gets no 3D.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

Value = TypeVar("Value")


@dataclass(frozen=True)
class Stamped(Generic[Value]):
    stamp_ns: int
    value: Value


class NearestStampBuffer(Generic[Value]):
    """The last `capacity` stamped values; looked up by nearest stamp."""

    def __init__(self, *, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1; given {capacity}")
        self._items: deque[Stamped[Value]] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def add(self, stamp_ns: int, value: Value) -> None:
        with self._lock:
            self._items.append(Stamped(stamp_ns, value))

    def nearest(self, stamp_ns: int) -> Stamped[Value] | None:
        """The held value whose stamp is nearest (the newer one on a tie); None when empty."""
        with self._lock:
            items = list(self._items)
        if not items:
            return None
        return min(reversed(items), key=lambda item: abs(item.stamp_ns - stamp_ns))

    def match(self, stamp_ns: int, tolerance_ns: int) -> Stamped[Value] | None:
        """The nearest held value if its stamp is within `tolerance_ns`, else None."""
        found = self.nearest(stamp_ns)
        if found is None or abs(found.stamp_ns - stamp_ns) > tolerance_ns:
            return None
        return found

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
