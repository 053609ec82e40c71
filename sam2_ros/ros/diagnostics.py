"""Throughput, latency and failures of the tracking loop, reported as a diagnostic_msgs status."""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue


@dataclass(frozen=True)
class StatsSnapshot:
    fps: float  # tracked frames per second over the last `horizon` seconds
    latency_p50: float  # seconds from a frame's arrival to its results being published
    latency_p99: float
    frames: int  # tracked frames since start
    failed: int  # frames whose tracking raised, since start
    failed_recent: int  # of them within the horizon
    last_error: str  # the newest failure ("" when none)
    horizon: float


@dataclass(frozen=True)
class SessionFigures:
    """What the session holds, computed on the worker thread when diagnostics ask for it."""

    objects: int = 0
    memory_bytes: int = 0  # object memory of the tracker and the stamped-prompt snapshots


class TrackingStats:
    """Records tracked frames' finish times and latencies, and failed frames.

    Rates count the finish times within `horizon` seconds (kept by time, not by count, so any
    frame rate is measured); percentiles use the last `window` latencies.
    """

    def __init__(self, *, horizon: float = 5.0, window: int = 200) -> None:
        self._horizon = horizon
        self._finished: deque[float] = deque()  # within the horizon of the newest record
        self._failures: deque[float] = deque()
        self._latencies: deque[float] = deque(maxlen=window)
        self._frames = 0
        self._failed = 0
        self._last_error = ""
        self._lock = threading.Lock()

    def record(self, *, finished: float, latency: float) -> None:
        with self._lock:
            self._finished.append(finished)
            self._latencies.append(latency)
            self._frames += 1
            self._forget(finished)

    def record_failure(self, *, at: float, error: str) -> None:
        with self._lock:
            self._failures.append(at)
            self._failed += 1
            self._last_error = error
            self._forget(at)

    def _forget(self, now: float) -> None:
        for times in (self._finished, self._failures):
            while times and now - times[0] > self._horizon:
                times.popleft()

    def snapshot(self, *, now: float) -> StatsSnapshot:
        """FPS counts frames finished within the horizon before `now`."""
        with self._lock:
            self._forget(now)
            finished = list(self._finished)
            latencies = np.asarray(self._latencies, dtype=np.float64)
            frames, failed, failed_recent = self._frames, self._failed, len(self._failures)
            last_error = self._last_error
        fps = len(finished) / self._horizon if finished else 0.0
        if len(finished) >= 2 and frames == len(finished):
            # Shortly after start the horizon is not yet filled: rate over the frames seen.
            fps = (len(finished) - 1) / max(finished[-1] - finished[0], 1e-9)
        p50, p99 = (np.percentile(latencies, [50, 99]) if latencies.size else (0.0, 0.0))
        return StatsSnapshot(fps=float(fps), latency_p50=float(p50), latency_p99=float(p99),
                             frames=frames, failed=failed, failed_recent=failed_recent,
                             last_error=last_error, horizon=self._horizon)


def diagnostic_status(*, name: str, hardware_id: str, stats: StatsSnapshot, dropped: int,
                      figures: SessionFigures,
                      extra: Mapping[str, str] | None = None) -> DiagnosticStatus:
    """One status: ERROR while frames fail, WARN when none were tracked recently, else OK."""
    if stats.failed_recent:
        level = DiagnosticStatus.ERROR
        message = (f"{stats.failed_recent} frames failed to track in the last "
                   f"{stats.horizon:g} s: {stats.last_error}")
    elif stats.fps > 0:
        level = DiagnosticStatus.OK
        message = f"tracking {figures.objects} objects at {stats.fps:.1f} fps"
    else:
        level, message = DiagnosticStatus.WARN, "no frames tracked recently"
    values = {
        "fps": f"{stats.fps:.2f}",
        "latency_p50_ms": f"{stats.latency_p50 * 1e3:.1f}",
        "latency_p99_ms": f"{stats.latency_p99 * 1e3:.1f}",
        "frames_tracked": str(stats.frames),
        "frames_failed": str(stats.failed),
        "frames_dropped": str(dropped),
        "objects": str(figures.objects),
        "memory_bytes": str(figures.memory_bytes),
        **(extra or {}),
    }
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=v) for k, v in values.items()])
