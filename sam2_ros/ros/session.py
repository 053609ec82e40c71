"""The tracker plus the recent-frame buffer: what the worker thread runs, free of ROS.

Stamped prompts. The tracker only prompts its last tracked frame, so for each tracked frame
still buffered (exactly the frames a stamped prompt can name) the session keeps the
tracker's snapshot from just before it and the edits (prompts, removals) applied on it. A
prompt on an older frame restores that frame's snapshot, tracks the frame again, replays
its edits, applies the prompt, then tracks the later frames again with their edits: the
tracker ends exactly where the same prompt given live on that frame would have left it.
The replay is bounded by the buffer. The new history is built aside and swapped in only
when the whole replay succeeded; if anything fails (the prompt, or a transient error while
re-tracking) the tracker is restored to its state from before the call and the history is
untouched. The restored tracker has lost the last frame's image features, so the next
prompt on that frame re-tracks it first (the same replay, one frame long).

Frames the worker skipped (a newer one arrived first) never entered the memory, and
inserting one now would change what every later frame saw, so a stamped prompt on a
skipped frame is refused with the stamps of the nearest tracked frames. A frame newer than
the last tracked one (stamp zero names the newest received frame) is tracked on the spot,
as the worker would have tracked it next, and reported to `on_tracked` like every newly
tracked frame, so it is published too. Several prompts on one frame (`add_prompts`, e.g. a
detector's boxes) share one replay. An optional observer is told every result the session
makes, replayed ones included (those once the replay succeeded).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
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


# Told every result the session makes: (frame, results, tracked) where `tracked` is true
# for a whole (re-)tracked frame and false for the objects a prompt changed on it.
ResultObserver = Callable[[BufferedFrame, Mapping[int, ObjectResultLike], bool], None]
Observation = tuple[BufferedFrame, Mapping[int, ObjectResultLike], bool]


class TrackingSession:
    """Feeds frames to the tracker and applies prompts on the frame they name."""

    def __init__(self, tracker: TrackerLike, *, frames: FrameBuffer, max_objects: int,
                 on_tracked: Callable[[BufferedFrame, dict[int, ObjectResultLike]], None]
                 = lambda frame, results: None,
                 observer: ResultObserver | None = None) -> None:
        self._tracker = tracker
        self._frames = frames
        self.max_objects = max_objects
        self._on_tracked = on_tracked  # each newly tracked frame with its results (not replays)
        self._observer = observer
        # The tracked frames still buffered, oldest first: memory bounded by the buffer.
        self._history: deque[TrackedFrame] = deque()
        self._last: BufferedFrame | None = None
        # After a rolled-back replay: the tracker's state is right but lacks the last frame's
        # image features, so a prompt on that frame re-tracks it first.
        self._needs_retrack = False

    @property
    def last_frame(self) -> BufferedFrame | None:
        """The tracker's last tracked frame."""
        return self._last

    @property
    def tracked_frames(self) -> list[BufferedFrame]:
        """The tracked frames a stamped prompt can still name (each keeps a snapshot)."""
        self._forget_unbuffered()
        return [entry.frame for entry in self._history]

    @property
    def object_ids(self) -> list[int]:
        return list(self._tracker.object_ids)

    def track(self, frame: BufferedFrame) -> dict[int, ObjectResultLike] | None:
        """Track a new frame; None when it is not newer than the last one (already seen)."""
        if self._last is not None and frame.seq <= self._last.seq:
            return None
        results = self._track(frame)
        self._on_tracked(frame, results)
        return results

    def _track(self, frame: BufferedFrame) -> dict[int, ObjectResultLike]:
        before = self._tracker.snapshot()
        # Keyed by sequence number: a replay finds the frame's features in the tracker's
        # feature cache (when it has one) instead of encoding the image again.
        results = self._tracker.track(frame.rgb, key=frame.seq)
        self._history.append(TrackedFrame(frame=frame, before=before))
        self._last, self._needs_retrack = frame, False
        self._forget_unbuffered()
        self._observe(frame, results, True)
        return results

    def _observe(self, frame: BufferedFrame, results: Mapping[int, ObjectResultLike],
                 tracked: bool) -> None:
        if self._observer is not None:
            self._observer(frame, results, tracked)

    def _forget_unbuffered(self) -> None:
        """Drop the history of frames the buffer no longer holds: no stamp can name them."""
        oldest = self._frames.oldest_seq()
        while self._history and (oldest is None or self._history[0].frame.seq < oldest):
            self._history.popleft()

    def add_prompt(self, prompt: Prompt) -> tuple[BufferedFrame, ObjectResultLike]:
        """Apply the prompt on its frame and return that frame and the object's result there."""
        frame, (result,) = self.add_prompts([prompt])
        return frame, result

    def add_prompts(self, prompts: Sequence[Prompt]
                    ) -> tuple[BufferedFrame, list[ObjectResultLike]]:
        """Apply prompts that name one frame, in order, with at most one replay; return the
        frame and each prompt's result. All are checked before any applies; a replay is all
        or nothing (on the newest frame, should the tracker still refuse one, the prompts
        before it stay applied)."""
        stamps = {prompt.stamp_ns for prompt in prompts}
        if len(stamps) != 1:
            raise PromptError(f"prompts applied together must name one frame; given stamps "
                              f"{', '.join(sorted(map(format_stamp, stamps))) or 'none'}")
        target = self._target(stamps.pop())
        replay = self._replay_from(target)
        self._check_peak(prompts, replay)
        for prompt in prompts:
            self._check(prompt, target)
        if replay:
            return target, self._prompt_past(prompts, replay)
        if self._last is None or target.seq > self._last.seq:
            self.track(target)
        return target, [self._apply(prompt) for prompt in prompts]

    def _target(self, stamp_ns: int) -> BufferedFrame:
        if stamp_ns != 0:
            return self._frames.find(stamp_ns)
        newest = self._frames.newest()
        if newest is None:
            raise PromptError("no camera frame received yet: publish images before prompting")
        return newest

    def _replay_from(self, target: BufferedFrame) -> list[TrackedFrame]:
        """The tracked frames from `target` on when the tracker must go back to it (empty
        when the prompt applies now); PromptError for a frame that was not tracked."""
        last = self._last
        if last is None or target.seq > last.seq:
            return []
        self._forget_unbuffered()
        history = list(self._history)
        if target.seq == last.seq:
            return history[-1:] if self._needs_retrack else []
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

    def _check_peak(self, prompts: Sequence[Prompt], replay: list[TrackedFrame]) -> None:
        """max_objects over the frames the prompts and the replayed edits touch."""
        if self._peak_objects(prompts, replay) > self.max_objects:
            where = " on or after that frame" if replay else ""
            ids = ", ".join(str(prompt.object_id) for prompt in prompts)
            raise PromptError(f"cannot add object{'s' if len(prompts) > 1 else ''} {ids}: "
                              f"already tracking {self.max_objects} objects "
                              f"(max_objects){where}")

    def _check(self, prompt: Prompt, frame: BufferedFrame) -> None:
        """Checks that need the frame; everything else was checked on the request."""
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

    def _peak_objects(self, prompts: Sequence[Prompt], replay: list[TrackedFrame]) -> int:
        """The most objects tracked at once with the prompts applied (and the edits after
        them replayed)."""
        if not replay:
            return len({*self._tracker.object_ids, *(p.object_id for p in prompts)})
        first, *later = replay
        ids = set(first.before.object_ids)
        peak = len(ids)
        for edit in [*first.edits, *prompts, *(e for entry in later for e in entry.edits)]:
            if isinstance(edit, Removal):
                ids.discard(edit.object_id)
            else:
                ids.add(edit.object_id)
            peak = max(peak, len(ids))
        return peak

    def _apply(self, prompt: Prompt) -> ObjectResultLike:
        """Prompt the last tracked frame and log the prompt on it."""
        result = self._prompt_tracker(prompt)
        self._log(prompt)
        self._observe(self._last, {prompt.object_id: result}, False)
        return result

    def _prompt_tracker(self, prompt: Prompt) -> ObjectResultLike:
        return self._tracker.add_prompt(prompt.object_id, points=prompt.points,
                                        labels=prompt.labels, box=prompt.box,
                                        mask=prompt.mask, clear_old=prompt.clear_old)

    def _log(self, edit: Prompt | Removal) -> None:
        """Keep an edit of the last tracked frame for replays (while that frame is buffered)."""
        if self._history and self._history[-1].frame is self._last:
            self._history[-1].edits.append(edit)

    def _prompt_past(self, prompts: Sequence[Prompt], replay: list[TrackedFrame]
                     ) -> list[ObjectResultLike]:
        """Back to just before the prompted frame, then forward again with every edit given
        since; the new prompts follow the edits already made on their frame. All or nothing:
        the observer hears of the replayed results only once the whole replay succeeded."""
        first, *later = replay
        now = self._tracker.snapshot()
        seen: list[Observation] = []
        try:
            self._tracker.restore(first.before)
            redone = [self._retrack(first, seen)]
            results = []
            for prompt in prompts:
                results.append(self._prompt_tracker(prompt))
                redone[0].edits.append(prompt)
                seen.append((first.frame, {prompt.object_id: results[-1]}, False))
            redone += [self._retrack(entry, seen) for entry in later]
        except BaseException:
            self._tracker.restore(now)
            self._needs_retrack = True
            raise
        kept = list(self._history)[:len(self._history) - len(replay)]
        self._history = deque([*kept, *redone])
        self._needs_retrack = False
        for observation in seen:
            self._observe(*observation)
        return results

    def _retrack(self, entry: TrackedFrame, seen: list[Observation]) -> TrackedFrame:
        """Track a buffered frame again and replay its edits; the history is not touched
        (what the observer is to hear is added to `seen`)."""
        before = self._tracker.snapshot()
        seen.append((entry.frame, self._tracker.track(entry.frame.rgb, key=entry.frame.seq), True))
        for edit in entry.edits:
            if isinstance(edit, Removal):
                self._tracker.remove_object(edit.object_id)
            else:
                seen.append((entry.frame, {edit.object_id: self._prompt_tracker(edit)}, False))
        return TrackedFrame(frame=entry.frame, before=before, edits=list(entry.edits))

    def memory_bytes(self) -> int:
        """Bytes of object memory held by the tracker and the snapshots for stamped prompts;
        walks every object's tensors: call it when the figure is read, not per frame."""
        self._forget_unbuffered()
        return self._tracker.memory_bytes(entry.before for entry in self._history)

    def remove_object(self, object_id: int) -> None:
        if object_id not in self._tracker.object_ids:
            raise KeyError(f"unknown object id {object_id}; tracking "
                           f"{sorted(self._tracker.object_ids) or 'no objects'}")
        self._tracker.remove_object(object_id)
        self._log(Removal(object_id))

    def reset(self) -> None:
        """Forget every object and all memory. Until the next frame is tracked any buffered
        frame can be prompted (it starts the new stream); after that, older ones cannot."""
        self._tracker.reset()
        self._history.clear()
        self._last, self._needs_retrack = None, False
