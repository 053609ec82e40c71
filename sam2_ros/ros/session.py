"""The tracker plus the recent-frame buffer: what the worker thread runs, free of ROS.

Stamped prompts. The tracker only prompts its last tracked frame, so to prompt an
older buffered frame the session tracks that frame again, applies the prompt there
and re-tracks the frames it had tracked since, up to now. The replay is bounded by
the buffer length and leaves the tracker's last frame where it was. The tracker
then holds the old frames' memories next to the replayed ones; its memory bank
bounds both.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sam2_ros.ros.frame_buffer import BufferedFrame, FrameBuffer


class ObjectResultLike(Protocol):
    mask: np.ndarray  # (H, W) bool
    score: float
    object_score_logit: float
    visible: bool


class TrackerLike(Protocol):
    """The part of the engine's StreamingTracker the node uses."""

    object_ids: list[int]

    def track(self, frame: np.ndarray) -> dict[int, ObjectResultLike]: ...

    def add_prompt(self, obj_id: int, *, points: np.ndarray | None, labels: np.ndarray | None,
                   box: np.ndarray | None, mask: np.ndarray | None,
                   clear_old: bool) -> ObjectResultLike: ...

    def remove_object(self, obj_id: int) -> None: ...

    def reset(self) -> None: ...

    def memory_stats(self) -> dict[int, object]: ...  # values have .bytes


class PromptError(ValueError):
    """A prompt that cannot apply to its frame; the tracker is left unchanged."""


@dataclass(frozen=True)
class Prompt:
    """A validated AddPrompt request in plain arrays (pixel coordinates)."""

    object_id: int
    points: np.ndarray | None  # (N, 2) float32 x, y
    labels: np.ndarray | None  # (N,) int32, 1 = object, 0 = background
    box: np.ndarray | None  # (4,) float32 x0, y0, x1, y1
    mask: np.ndarray | None  # (H, W) bool
    clear_old: bool
    stamp_ns: int  # 0 = the newest frame


class TrackingSession:
    """Feeds frames to the tracker and applies prompts on the frame they name."""

    def __init__(self, tracker: TrackerLike, *, frames: FrameBuffer, capacity: int,
                 max_objects: int) -> None:
        self._tracker = tracker
        self._frames = frames
        self._max_objects = max_objects
        self._tracked: deque[int] = deque(maxlen=capacity)  # seqs of tracked frames
        self._last: BufferedFrame | None = None

    @property
    def last_frame(self) -> BufferedFrame | None:
        """The tracker's last tracked frame (what a stamp-0 prompt would see)."""
        return self._last

    @property
    def object_ids(self) -> list[int]:
        return list(self._tracker.object_ids)

    def track(self, frame: BufferedFrame) -> dict[int, ObjectResultLike] | None:
        """Track a new frame; None when it is not newer than the last one (already seen)."""
        if self._last is not None and frame.seq <= self._last.seq:
            return None
        return self._track(frame)

    def _track(self, frame: BufferedFrame) -> dict[int, ObjectResultLike]:
        results = self._tracker.track(frame.rgb)
        self._tracked.append(frame.seq)
        self._last = frame
        return results

    def add_prompt(self, prompt: Prompt) -> tuple[BufferedFrame, ObjectResultLike]:
        """Apply the prompt on its frame and return that frame and the object's result there."""
        target = self._target(prompt.stamp_ns)
        self._check(prompt, target)
        if self._last is not None and target.seq == self._last.seq:
            return target, self._apply(prompt)
        if self._last is None or target.seq > self._last.seq:
            self._track(target)
            return target, self._apply(prompt)
        return target, self._prompt_past(prompt, target)

    def _target(self, stamp_ns: int) -> BufferedFrame:
        if stamp_ns != 0:
            return self._frames.find(stamp_ns)
        newest = self._frames.newest()
        if newest is None:
            raise PromptError("no camera frame received yet: publish images before prompting")
        return newest

    def _check(self, prompt: Prompt, frame: BufferedFrame) -> None:
        """Checks that need the frame; everything else was checked on the request."""
        is_new = prompt.object_id not in self._tracker.object_ids
        if is_new and len(self._tracker.object_ids) >= self._max_objects:
            raise PromptError(f"cannot add object {prompt.object_id}: already tracking "
                              f"{self._max_objects} objects (max_objects)")
        width, height = frame.width, frame.height
        if prompt.points is not None and len(prompt.points):
            xs, ys = prompt.points[:, 0], prompt.points[:, 1]
            outside = (xs < 0) | (xs > width) | (ys < 0) | (ys > height)
            if outside.any():
                index = int(np.flatnonzero(outside)[0])
                raise PromptError(
                    f"point {index} ({xs[index]:g}, {ys[index]:g}) lies outside the "
                    f"{width}x{height} frame (0 <= x <= {width}, 0 <= y <= {height})")
        if prompt.box is not None:
            x0, y0, x1, y1 = prompt.box
            if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
                raise PromptError(f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) must satisfy "
                                  f"0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height}")
        if prompt.mask is not None and prompt.mask.shape != (height, width):
            raise PromptError(f"mask is {prompt.mask.shape[1]}x{prompt.mask.shape[0]}; "
                              f"expected the frame's size {width}x{height}")

    def _apply(self, prompt: Prompt) -> ObjectResultLike:
        return self._tracker.add_prompt(prompt.object_id, points=prompt.points,
                                        labels=prompt.labels, box=prompt.box,
                                        mask=prompt.mask, clear_old=prompt.clear_old)

    def _prompt_past(self, prompt: Prompt, target: BufferedFrame) -> ObjectResultLike:
        """Prompt an older frame: track it again, prompt it, re-track to now."""
        last = self._last
        replay = [frame for frame in self._frames.after(target.seq) if frame.seq in self._tracked]
        self._tracker.track(target.rgb)
        try:
            return self._apply(prompt)
        finally:
            # Back to now even when the prompt failed, so later frames follow on.
            for frame in replay:
                self._tracker.track(frame.rgb)
            self._last = last

    def memory_bytes(self) -> int:
        """Bytes of memory the tracker holds over all objects."""
        return sum(stats.bytes for stats in self._tracker.memory_stats().values())

    def remove_object(self, object_id: int) -> None:
        if object_id not in self._tracker.object_ids:
            raise KeyError(f"unknown object id {object_id}; tracking "
                           f"{sorted(self._tracker.object_ids) or 'no objects'}")
        self._tracker.remove_object(object_id)

    def reset(self) -> None:
        """Forget every object and all memory; buffered frames stay promptable."""
        self._tracker.reset()
        self._tracked.clear()
        self._last = None
