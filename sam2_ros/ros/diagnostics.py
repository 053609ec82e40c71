"""Throughput and latency of the tracking loop, reported as a diagnostic_msgs status."""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue


@dataclass(frozen=True)
class StatsSnapshot:
    fps: float  # tracked frames per second over the recent window
    latency_p50: float  # seconds from a frame's arrival to its results being published
    latency_p99: float
    frames: int  # tracked frames since start


class TrackingStats:
    """Records each tracked frame's finish time and latency; keeps the last `window`."""

    def __init__(self, *, window: int = 200) -> None:
        self._finished: deque[float] = deque(maxlen=window)
        self._latencies: deque[float] = deque(maxlen=window)
        self._frames = 0
        self._lock = threading.Lock()

    def record(self, *, finished: float, latency: float) -> None:
        with self._lock:
            self._finished.append(finished)
            self._latencies.append(latency)
            self._frames += 1

    def snapshot(self, *, now: float, horizon: float = 5.0) -> StatsSnapshot:
        """FPS counts frames finished within `horizon` seconds before `now`."""
        with self._lock:
            finished = [t for t in self._finished if now - t <= horizon]
            latencies = np.asarray(self._latencies, dtype=np.float64)
            frames = self._frames
        fps = len(finished) / horizon if finished else 0.0
        if len(finished) >= 2 and frames == len(finished):
            # Shortly after start the horizon is not yet filled: rate over the frames seen.
            fps = (len(finished) - 1) / max(finished[-1] - finished[0], 1e-9)
        p50, p99 = (np.percentile(latencies, [50, 99]) if latencies.size else (0.0, 0.0))
        return StatsSnapshot(fps=float(fps), latency_p50=float(p50), latency_p99=float(p99),
                             frames=frames)


def diagnostic_status(*, name: str, hardware_id: str, stats: StatsSnapshot, dropped: int,
                      objects: int, memory_bytes: int,
                      extra: Mapping[str, str] | None = None) -> DiagnosticStatus:
    """One status: OK while frames are tracked, WARN when none were in the window."""
    level = DiagnosticStatus.OK if stats.fps > 0 else DiagnosticStatus.WARN
    message = (f"tracking {objects} objects at {stats.fps:.1f} fps" if stats.fps > 0
               else "no frames tracked recently")
    values = {
        "fps": f"{stats.fps:.2f}",
        "latency_p50_ms": f"{stats.latency_p50 * 1e3:.1f}",
        "latency_p99_ms": f"{stats.latency_p99 * 1e3:.1f}",
        "frames_tracked": str(stats.frames),
        "frames_dropped": str(dropped),
        "objects": str(objects),
        "memory_bytes": str(memory_bytes),
        **(extra or {}),
    }
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=v) for k, v in values.items()])
