"""The tracker plus the recent-frame buffer: what the worker thread runs, free of ROS.

Stamped prompts. The tracker only prompts its last tracked frame, so for each tracked frame
still buffered the session keeps the tracker's snapshot from just before it and the edits
(prompts, removals) applied on it. A prompt on an older frame restores that frame's
snapshot, tracks the frame again, replays its edits, applies the prompt, then tracks the
later frames again with their edits: the tracker ends exactly where the same prompt given
live on that frame would have left it. The replay is bounded by the buffer length; a
prompt that fails still replays, which returns the tracker exactly to where it was.

Frames the worker skipped (a newer one arrived first) never entered the memory, and
inserting one now would change what every later frame saw, so a stamped prompt on a
skipped frame is refused with the stamps of the nearest tracked frames. A frame newer than
the last tracked one is tracked on the spot (the worker would have tracked it next).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from sam2_ros.ros.frame_buffer import BufferedFrame, FrameBuffer, format_stamp


class ObjectResultLike(Protocol):
    mask: np.ndarray  # (H, W) bool
    score: float
    object_score_logit: float
    visible: bool


class SnapshotLike(Protocol):
    object_ids: list[int]  # the objects tracked when it was taken


class TrackerLike(Protocol):
    """The part of the engine's StreamingTracker the node uses."""

    object_ids: list[int]

    def snapshot(self) -> SnapshotLike: ...

    def restore(self, snapshot: SnapshotLike) -> None: ...

    def track(self, frame: np.ndarray, key: Hashable | None = None) -> dict[int, ObjectResultLike]: ...

    def add_prompt(self, obj_id: int, *, points: np.ndarray | None, labels: np.ndarray | None,
                   box: np.ndarray | None, mask: np.ndarray | None,
                   clear_old: bool) -> ObjectResultLike: ...

    def remove_object(self, obj_id: int) -> None: ...

    def reset(self) -> None: ...

    def memory_bytes(self, snapshots: Iterable[SnapshotLike]) -> int: ...


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


@dataclass(frozen=True)
class Removal:
    """A RemoveObject request, kept to replay it after a stamped prompt."""

    object_id: int


@dataclass
class TrackedFrame:
    """A tracked frame, the tracker's state just before it, and the edits made on it."""

    frame: BufferedFrame
    before: SnapshotLike
    edits: list[Prompt | Removal] = field(default_factory=list)  # in the order applied


class TrackingSession:
    """Feeds frames to the tracker and applies prompts on the frame they name."""

    def __init__(self, tracker: TrackerLike, *, frames: FrameBuffer, capacity: int,
                 max_objects: int) -> None:
        self._tracker = tracker
        self._frames = frames
        self._max_objects = max_objects
        # One snapshot per tracked frame: memory bounded by the buffer length (TrackerSnapshot).
        self._history: deque[TrackedFrame] = deque(maxlen=capacity)

    @property
    def last_frame(self) -> BufferedFrame | None:
        """The tracker's last tracked frame (what a stamp-0 prompt would see)."""
        return self._history[-1].frame if self._history else None

    @property
    def object_ids(self) -> list[int]:
        return list(self._tracker.object_ids)

    def track(self, frame: BufferedFrame) -> dict[int, ObjectResultLike] | None:
        """Track a new frame; None when it is not newer than the last one (already seen)."""
        last = self.last_frame
        if last is not None and frame.seq <= last.seq:
            return None
        return self._track(frame)

    def _track(self, frame: BufferedFrame) -> dict[int, ObjectResultLike]:
        before = self._tracker.snapshot()
        # Keyed by sequence number: a replay finds the frame's features in the tracker's
        # feature cache (when it has one) instead of encoding the image again.
        results = self._tracker.track(frame.rgb, key=frame.seq)
        self._history.append(TrackedFrame(frame=frame, before=before))
        return results

    def add_prompt(self, prompt: Prompt) -> tuple[BufferedFrame, ObjectResultLike]:
        """Apply the prompt on its frame and return that frame and the object's result there."""
        target = self._target(prompt.stamp_ns)
        replay = self._replay_from(target)
        self._check(prompt, target, replay)
        if replay:
            return target, self._prompt_past(prompt, replay)
        last = self.last_frame
        if last is None or target.seq > last.seq:
            self._track(target)
        return target, self._apply(prompt)

    def _target(self, stamp_ns: int) -> BufferedFrame:
        if stamp_ns != 0:
            return self._frames.find(stamp_ns)
        newest = self._frames.newest()
        if newest is None:
            raise PromptError("no camera frame received yet: publish images before prompting")
        return newest

    def _replay_from(self, target: BufferedFrame) -> list[TrackedFrame]:
        """The tracked frames from `target` on when it is older than the last tracked frame
        (empty when the prompt applies now); PromptError for a frame that was not tracked."""
        last = self.last_frame
        if last is None or target.seq >= last.seq:
            return []
        history = list(self._history)
        for index, entry in enumerate(history):
            if entry.frame.seq == target.seq:
                return history[index:]
        nearest = ([e.frame for e in history if e.frame.seq < target.seq][-1:]
                   + [e.frame for e in history if e.frame.seq > target.seq][:1])
        raise PromptError(
            f"the frame with stamp {format_stamp(target.stamp_ns)} was received but not "
            f"tracked (the worker skipped it for a newer frame, or it came before a reset), so "
            f"the memory has no trace of it to prompt; the nearest tracked frames have stamps "
            f"{' and '.join(format_stamp(f.stamp_ns) for f in nearest)}")

    def _check(self, prompt: Prompt, frame: BufferedFrame, replay: list[TrackedFrame]) -> None:
        """Checks that need the frame; everything else was checked on the request."""
        if self._peak_objects(prompt, replay) > self._max_objects:
            where = " on or after that frame" if replay else ""
            raise PromptError(f"cannot add object {prompt.object_id}: already tracking "
                              f"{self._max_objects} objects (max_objects){where}")
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

    def _peak_objects(self, prompt: Prompt, replay: list[TrackedFrame]) -> int:
        """The most objects tracked at once with the prompt applied (and the edits after it
        replayed)."""
        if not replay:
            return len({*self._tracker.object_ids, prompt.object_id})
        first, *later = replay
        ids = set(first.before.object_ids)
        peak = len(ids)
        for edit in [*first.edits, prompt, *(e for entry in later for e in entry.edits)]:
            if isinstance(edit, Removal):
                ids.discard(edit.object_id)
            else:
                ids.add(edit.object_id)
            peak = max(peak, len(ids))
        return peak

    def _apply(self, prompt: Prompt) -> ObjectResultLike:
        """Prompt the last tracked frame and log the prompt on it."""
        result = self._tracker.add_prompt(prompt.object_id, points=prompt.points,
                                          labels=prompt.labels, box=prompt.box,
                                          mask=prompt.mask, clear_old=prompt.clear_old)
        self._history[-1].edits.append(prompt)
        return result

    def _remove(self, removal: Removal) -> None:
        self._tracker.remove_object(removal.object_id)
        self._history[-1].edits.append(removal)

    def _prompt_past(self, prompt: Prompt, replay: list[TrackedFrame]) -> ObjectResultLike:
        """Back to just before the prompted frame, then forward again with every edit given
        since; the new prompt follows the edits already made on its frame."""
        first, *later = replay
        self._tracker.restore(first.before)
        for _ in replay:
            self._history.pop()
        self._retrack(first)
        try:
            return self._apply(prompt)
        finally:
            # Forward to now even when the prompt failed: that is exactly where it was.
            for entry in later:
                self._retrack(entry)

    def _retrack(self, entry: TrackedFrame) -> None:
        self._track(entry.frame)
        for edit in entry.edits:
            if isinstance(edit, Removal):
                self._remove(edit)
            else:
                self._apply(edit)

    def memory_bytes(self) -> int:
        """Bytes of object memory held by the tracker and the snapshots for stamped prompts."""
        return self._tracker.memory_bytes(entry.before for entry in self._history)

    def remove_object(self, object_id: int) -> None:
        if object_id not in self._tracker.object_ids:
            raise KeyError(f"unknown object id {object_id}; tracking "
                           f"{sorted(self._tracker.object_ids) or 'no objects'}")
        self._remove(Removal(object_id))

    def reset(self) -> None:
        """Forget every object and all memory. Until the next frame is tracked any buffered
        frame can be prompted (it starts the new stream); after that, older ones cannot."""
        self._tracker.reset()
        self._history.clear()
