"""Latency summaries: the figures a frame-rate budget is judged by."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds over `n` samples; `fps` from the mean (frames per second of wall time)."""

    n: int
    median: float
    p90: float
    p99: float
    mean: float
    min: float
    fps: float

    @classmethod
    def of(cls, times_ms: list[float]) -> LatencyStats:
        if not times_ms:
            raise ValueError("no latencies to summarize: time at least one frame")
        t = np.asarray(times_ms, dtype=np.float64)
        mean = float(t.mean())
        return cls(
            n=len(t),
            median=float(np.median(t)),
            p90=float(np.percentile(t, 90)),
            p99=float(np.percentile(t, 99)),
            mean=mean,
            min=float(t.min()),
            fps=1e3 / mean,
        )

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)
