"""One stream through several runners, interleaved frame by frame.

Interleaving (alternating which runner goes first) makes background load, thermal state and
caches hit every runner alike, so the ratios hold on a shared machine even where absolute
times drift.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from sam2_ros.backends.base import PART_NAMES
from sam2_ros.bench import memory
from sam2_ros.bench.frames import object_clicks
from sam2_ros.bench.runners import Runner
from sam2_ros.bench.stats import LatencyStats


@dataclass(frozen=True)
class RunnerStats:
    frame_ms: LatencyStats  # whole step: preprocess, every object, masks at frame resolution
    parts_ms: dict[str, LatencyStats]  # per frame, summed over the part's calls in that frame
    held_bytes_start: int  # state kept after the warm-up
    held_bytes_end: int  # ... and after the timed frames
    cuda_step_peak_bytes: int  # 0 on CPU


@dataclass(frozen=True)
class StreamStats:
    runners: dict[str, RunnerStats]
    peak_rss_bytes: int  # this process, over this stream (all runners)
    peak_rss_scope: str
    cuda_max_allocated_bytes: int  # this process, at the peak of any timed step; 0 on CPU


def run_stream(
    runners: list[Runner],
    frames: list[np.ndarray],
    *,
    n_objects: int,
    warmup: int,
    timed: int,
    device: torch.device,
    time_parts: bool,
) -> StreamStats:
    """Frame 0 is tracked then prompted (one click per object); `warmup` frames follow
    untimed (compiles, the memory window filling up), then `timed` frames are measured.
    Frames loop when the stream is longer than `frames`."""
    if timed < 1 or warmup < 0:
        raise ValueError(f"need timed >= 1 and warmup >= 0, got timed={timed}, warmup={warmup}")
    scope = "this stream" if memory.reset_peak_rss() else "process lifetime (peak RSS cannot be reset here)"
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    clicks = object_clicks(n_objects, frames[0].shape[:2])
    for runner in runners:
        runner.start()
        runner.step(frames[0])
        for obj_id, click in enumerate(clicks, start=1):
            runner.prompt(obj_id, click)
    for i in range(1, warmup + 1):
        for runner in runners:
            runner.step(frames[i % len(frames)])

    held_start = {r.name: r.held_bytes() for r in runners}
    frame_ms: dict[str, list[float]] = {r.name: [] for r in runners}
    parts_ms: dict[str, dict[str, list[float]]] = {r.name: {p: [] for p in PART_NAMES} for r in runners}
    peaks = {r.name: memory.CudaStepPeak(device) for r in runners}
    for r in runners:
        r.timer.enabled = time_parts
    try:
        for i in range(warmup + 1, warmup + 1 + timed):
            frame = frames[i % len(frames)]
            for runner in runners if i % 2 else runners[::-1]:
                runner.timer.reset()
                with peaks[runner.name]:
                    sync()
                    start = time.perf_counter()
                    runner.step(frame)
                    sync()
                    frame_ms[runner.name].append((time.perf_counter() - start) * 1e3)
                for part, times in runner.timer.times_ms.items():
                    if times:
                        parts_ms[runner.name][part].append(sum(times))
    finally:
        for r in runners:
            r.timer.enabled = False
            r.timer.reset()

    stats = {
        r.name: RunnerStats(
            frame_ms=LatencyStats.of(frame_ms[r.name]),
            parts_ms={p: LatencyStats.of(t) for p, t in parts_ms[r.name].items() if t},
            held_bytes_start=held_start[r.name],
            held_bytes_end=r.held_bytes(),
            cuda_step_peak_bytes=peaks[r.name].peak,
        )
        for r in runners
    }
    return StreamStats(
        runners=stats,
        peak_rss_bytes=memory.peak_rss_bytes(),
        peak_rss_scope=scope,
        cuda_max_allocated_bytes=max((p.total_peak for p in peaks.values()), default=0),
    )
