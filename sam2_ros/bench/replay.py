"""What a stamped prompt costs: re-tracking the frames after it, with and without the
feature cache, against tracking those frames live.

A stamped prompt k frames back restores the tracker to just before that frame, tracks it
again, applies the prompt, then tracks the k - 1 frames after it again, as the node's
session does (`sam2_ros.ros.session`). Here the same is driven on the engine directly: two
trackers on one model, cache off and cache on, are fed the same stream, interleaved step by
step. Each round tracks k new frames live (timed: `live_ms`), then replays a prompt k frames
back on each tracker (timed: `replay_ms`). Ratio replay / live: < 1 is cheaper than live.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from sam2_ros.bench.frames import object_clicks
from sam2_ros.bench.stats import LatencyStats
from sam2_ros.engine import StreamingTracker
from sam2_ros.engine.feature_cache import frame_feature_bytes
from sam2_ros.engine.model import SAM2Model
from sam2_ros.engine.tracker import TrackerSnapshot

POSITIVE = np.array([1], dtype=np.int64)


@dataclass
class _Stream:
    """A tracker plus, per recent frame, its key, image and the snapshot taken before it."""

    tracker: StreamingTracker
    history: deque[tuple[int, np.ndarray, TrackerSnapshot]]

    def track(self, key: int, frame: np.ndarray) -> None:
        before = self.tracker.snapshot()
        self.tracker.track(frame, key=key)
        self.history.append((key, frame, before))

    def replay(self, depth: int, obj_id: int, click: np.ndarray) -> None:
        """A click on obj_id `depth` frames back, then forward again to now."""
        entries = list(self.history)[-depth:]
        self.tracker.restore(entries[0][2])
        for _ in entries:
            self.history.pop()
        for i, (key, frame, _) in enumerate(entries):
            self.track(key, frame)
            if i == 0:
                self.tracker.add_prompt(obj_id, points=click, labels=POSITIVE, clear_old=False)


def measure_replay(
    model: SAM2Model,
    frames: list[np.ndarray],
    *,
    dtype: torch.dtype,
    device: torch.device,
    depths: list[int],
    n_objects: int,
    rounds: int,
    max_conditioning_frames: int,
) -> dict:
    """Per depth: live and replay latencies with the cache off and on, the ratios, and the
    cache's budget and measured bytes. `model` must already be prepared for `dtype`."""
    deepest = max(depths)
    frame_bytes = frame_feature_bytes(model, dtype)
    budget = frame_bytes * (deepest + 1)
    streams = {
        name: _Stream(
            StreamingTracker(model, device=device, dtype=dtype, max_conditioning_frames=max_conditioning_frames,
                             feature_cache_bytes=cache),
            deque(maxlen=deepest + 1),
        )
        for name, cache in (("cache_off", 0), ("cache_on", budget))
    }
    clicks = object_clicks(n_objects, frames[0].shape[:2])
    key = 0
    for stream in streams.values():
        stream.track(key, frames[0])
        for obj_id, click in enumerate(clicks, start=1):
            stream.tracker.add_prompt(obj_id, points=click, labels=POSITIVE)
    key += 1
    for _ in range(deepest):  # fill the history (and the cache) before anything is timed
        for stream in streams.values():
            stream.track(key, frames[key % len(frames)])
        key += 1

    results = {}
    for depth in depths:
        live = {name: [] for name in streams}
        replay = {name: [] for name in streams}
        for r in range(rounds):
            keys = list(range(key, key + depth))
            key += depth
            order = list(streams.items()) if r % 2 == 0 else list(streams.items())[::-1]
            for name, stream in order:
                start = time.perf_counter()
                for k in keys:
                    stream.track(k, frames[k % len(frames)])
                live[name].append((time.perf_counter() - start) * 1e3)
            for name, stream in order:
                start = time.perf_counter()
                stream.replay(depth, obj_id=1, click=clicks[0])
                replay[name].append((time.perf_counter() - start) * 1e3)
        live_ms = {n: LatencyStats.of(t).to_json() for n, t in live.items()}
        replay_ms = {n: LatencyStats.of(t).to_json() for n, t in replay.items()}
        results[str(depth)] = {
            "live_ms": live_ms,
            "replay_ms": replay_ms,
            "replay_over_live_median": {n: replay_ms[n]["median"] / live_ms[n]["median"] for n in streams},
            "cache_on_over_cache_off_replay_median": replay_ms["cache_on"]["median"] / replay_ms["cache_off"]["median"],
        }
    cache = streams["cache_on"].tracker.feature_cache
    return {
        "definition": "replay_ms: restore + re-track `depth` frames with a prompt on the first; live_ms: "
                      "tracking `depth` new frames; both summed over the frames, median over rounds",
        "objects": n_objects,
        "rounds": rounds,
        "dtype": str(dtype).removeprefix("torch."),
        "depths": results,
        "cache": {
            "budget_bytes": budget,
            "frame_bytes_estimate": frame_bytes,
            "held_bytes_at_end": cache.nbytes(),
            "frames_held_at_end": len(cache),
            "hits": cache.hits,
            "misses": cache.misses,
            "within_budget": cache.nbytes() <= budget,
        },
    }
