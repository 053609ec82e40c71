"""TrackingSession: prompts on the newest and on buffered past frames, with the real tracker.

The real StreamingTracker (tiny, random weights; 256 px, or 64 px with every object
visible where results are compared exactly) runs everywhere except the plumbing tests that
record the exact call order of a stamped-prompt replay.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

pytest.importorskip("sam2_ros.msg", reason="msg/srv not built: run bash scripts/setup.sh and "
                    "source scripts/env.sh")

from std_msgs.msg import Header  # noqa: E402

from sam2_ros.engine import StreamingTracker, build_model  # noqa: E402
from sam2_ros.engine.feature_cache import frame_feature_bytes  # noqa: E402
from sam2_ros.ros.frame_buffer import FrameBuffer, FrameNotBufferedError  # noqa: E402
from sam2_ros.ros.session import Prompt, PromptError, TrackingSession  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "blocks"
SEC = 1_000_000_000


@pytest.fixture(scope="module")
def video() -> list[np.ndarray]:
    """Seven real frames at half size (240x135) to keep the CPU time small."""
    return [np.asarray(PILImage.open(path).convert("RGB").resize((240, 135)))
            for path in sorted(DATA.glob("*.jpg"))[:7]]


@pytest.fixture(scope="module")
def model():
    return build_model("tiny", image_size=256)


@pytest.fixture(scope="module")
def small_model():
    """64 px, the object-score head biased so every object is visible (real masks)."""
    torch.manual_seed(0)
    model = build_model("tiny", image_size=64)
    with torch.no_grad():
        model.sam_mask_decoder.pred_obj_score_head.layers[2].bias.fill_(1.0)
    return model


def make_session(tracker, *, capacity: int = 8, max_objects: int = 4, on_tracked=None):
    frames = FrameBuffer(capacity=capacity, max_bytes=2**30)
    extra = {} if on_tracked is None else {"on_tracked": on_tracked}
    return frames, TrackingSession(tracker, frames=frames, max_objects=max_objects, **extra)


def receive(frames: FrameBuffer, rgb: np.ndarray, sec: int):
    header = Header(frame_id="cam")
    header.stamp.sec = sec
    return frames.append(header, rgb, received=float(sec))


def box_mask(height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    mask[40:90, 60:150] = True
    return mask


def prompt(object_id: int = 1, *, stamp_sec: int = 0, points=None, labels=None, box=None,
           mask=None, clear_old: bool = True) -> Prompt:
    as_array = (lambda value, dtype: None if value is None else np.asarray(value, dtype))
    return Prompt(object_id=object_id, points=as_array(points, np.float32),
                  labels=as_array(labels, np.int32), box=as_array(box, np.float32),
                  mask=mask, clear_old=clear_old, stamp_ns=stamp_sec * SEC)


def test_prompt_on_the_newest_frame_and_track(model, video) -> None:
    tracker = StreamingTracker(model)
    frames, session = make_session(tracker)
    with pytest.raises(PromptError, match="no camera frame received yet"):
        session.add_prompt(prompt(points=[[10, 10]], labels=[1]))
    first = receive(frames, video[0], 1)
    # Not tracked yet: the prompt tracks the newest frame itself, and the worker skips it.
    target, result = session.add_prompt(prompt(mask=box_mask(135, 240)))
    assert target is first and tracker.frame_index == 0
    assert session.track(first) is None
    iou = (result.mask & box_mask(135, 240)).sum() / (result.mask | box_mask(135, 240)).sum()
    assert result.mask.shape == (135, 240) and iou > 0.9 and result.visible
    results = session.track(receive(frames, video[1], 2))
    assert list(results) == [1] and results[1].mask.shape == (135, 240)
    # A second object and a correction (added clicks) on the newest frame.
    _, second = session.add_prompt(prompt(2, points=[[30, 30]], labels=[1]))
    _, corrected = session.add_prompt(prompt(2, points=[[200, 100]], labels=[0],
                                             clear_old=False))
    assert session.object_ids == [1, 2] and tracker.frame_index == 1
    assert not np.isclose(second.score, corrected.score)  # the extra click changed the result
    assert session.memory_bytes() > 0


def test_bad_prompts_leave_the_tracker_unchanged(model, video) -> None:
    tracker = StreamingTracker(model)
    frames, session = make_session(tracker, max_objects=1)
    session.track(receive(frames, video[0], 1))
    session.add_prompt(prompt(points=[[10, 10]], labels=[1]))
    before = (tracker.frame_index, tracker.object_ids, tracker.memory_stats())
    bad = [
        (prompt(points=[[240.5, 10]], labels=[1]), r"point 0 \(240.5, 10\) lies outside the "
                                                   r"240x135 frame"),
        (prompt(points=[[5, -1]], labels=[1]), "lies outside"),
        (prompt(box=[10, 10, 300, 20]), r"0 <= x0 < x1 <= 240"),
        (prompt(box=[10, 10, 10, 20]), r"0 <= x0 < x1"),
        (prompt(mask=np.ones((10, 10), bool)), "mask is 10x10; expected the frame's size 240x135"),
        (prompt(2, points=[[10, 10]], labels=[1]), "already tracking 1 objects"),
    ]
    for request, message in bad:
        with pytest.raises(PromptError, match=message):
            session.add_prompt(request)
    with pytest.raises(FrameNotBufferedError, match="no buffered frame has stamp 9"):
        session.add_prompt(prompt(stamp_sec=9, points=[[10, 10]], labels=[1]))
    with pytest.raises(KeyError, match="unknown object id 5; tracking \\[1\\]"):
        session.remove_object(5)
    after = (tracker.frame_index, tracker.object_ids, tracker.memory_stats())
    assert after == before


def assert_same(a, b) -> None:
    assert np.array_equal(a.low_res_logits, b.low_res_logits) and np.array_equal(a.mask, b.mask)
    assert (a.score, a.object_score_logit) == (b.score, b.object_score_logit)


def run(model, video, script: dict[int, list], feature_cache_bytes: int = 0) -> tuple:
    """Receive and track frames 1..6 (stamp = seconds), applying `script[sec]` edits
    (prompts, or object ids to remove) right after tracking frame `sec`."""
    tracker = StreamingTracker(model, feature_cache_bytes=feature_cache_bytes)
    frames, session = make_session(tracker)
    received, answers = [], []
    for sec, rgb in enumerate(video, start=1):
        received.append(receive(frames, rgb, sec))
        session.track(received[-1])
        for edit in script.get(sec, []):
            if isinstance(edit, Prompt):
                answers.append(session.add_prompt(edit))
            else:
                session.remove_object(edit)
    return tracker, frames, session, received, answers


@pytest.mark.parametrize("cached_frames", [0, 8], ids=["feature_cache_off", "feature_cache_on"])
def test_stamped_prompt_equals_the_live_prompt(small_model, video, cached_frames: int) -> None:
    """Object 2 clicked on frame 3 live, or by stamp after frame 6 was tracked: the prompt's
    result, the tracker's state and the next frame agree exactly, including the prompts and
    removals given on the frames in between (replayed, not lost). With the feature cache on
    the replay re-encodes no frame, and still agrees exactly."""
    clicked = prompt(2, points=[[60, 50]], labels=[1])
    edits = {1: [prompt(1, mask=box_mask(135, 240)), prompt(3, box=[150, 20, 230, 120])],
             3: [prompt(1, points=[[100, 60]], labels=[0], clear_old=False)],
             4: [3],  # remove object 3
             5: [prompt(1, points=[[80, 70]], labels=[1])]}
    live = run(small_model, video[:6], {**edits, 3: [*edits[3], clicked]})
    budget = cached_frames * frame_feature_bytes(small_model, torch.float32)
    stamped = run(small_model, video[:6], edits, feature_cache_bytes=budget)
    tracker, frames, session, received, _ = stamped
    assert session.object_ids == [1]
    encoded = tracker.feature_cache.misses
    target, result = session.add_prompt(prompt(2, stamp_sec=3, points=[[60, 50]], labels=[1]))
    if cached_frames:  # frames 3..6 tracked again, none encoded again
        assert (tracker.feature_cache.hits, tracker.feature_cache.misses) == (4, encoded)
    assert target is received[2] and session.last_frame is received[5]
    assert_same(result, live[4][3][1])  # the live answers: two on frame 1, two on frame 3
    assert result.mask.any() and not result.mask.all()
    assert tracker.frame_index == live[0].frame_index == 5
    assert session.object_ids == live[2].object_ids == [1, 2]
    assert tracker.memory_stats() == live[0].memory_stats()
    newest = video[6]
    ours = session.track(receive(frames, newest, 7))
    theirs = live[2].track(receive(live[1], newest, 7))
    assert sorted(ours) == sorted(theirs) == [1, 2]
    for object_id in ours:
        assert_same(ours[object_id], theirs[object_id])


def test_stamped_prompt_on_a_skipped_frame_is_refused(small_model, video) -> None:
    tracker = StreamingTracker(small_model)
    frames, session = make_session(tracker)
    received = [receive(frames, rgb, sec) for sec, rgb in enumerate(video[:5], start=1)]
    for frame in received:
        if frame.stamp_ns != 3 * SEC:  # frame 3 was dropped by the worker
            session.track(frame)
    session.add_prompt(prompt(1, stamp_sec=2, points=[[100, 60]], labels=[1]))
    before = (tracker.frame_index, tracker.object_ids, tracker.memory_stats(),
              session.memory_bytes())
    with pytest.raises(PromptError, match=r"stamp 3\.000000000 was received but not tracked "
                       r".*nearest tracked frames have stamps 2\.000000000 and 4\.000000000"):
        session.add_prompt(prompt(1, stamp_sec=3, points=[[100, 60]], labels=[1]))
    assert (tracker.frame_index, tracker.object_ids, tracker.memory_stats(),
            session.memory_bytes()) == before
    assert session.last_frame is received[4]


def test_remove_and_reset(model, video) -> None:
    tracker = StreamingTracker(model)
    frames, session = make_session(tracker)
    session.track(receive(frames, video[0], 1))
    session.add_prompt(prompt(1, points=[[10, 10]], labels=[1]))
    session.add_prompt(prompt(2, points=[[100, 50]], labels=[1]))
    session.remove_object(1)
    assert list(session.track(receive(frames, video[1], 2))) == [2]
    session.reset()
    assert session.object_ids == [] and session.last_frame is None
    assert tracker.frame_index == -1
    # Buffered frames stay promptable after a reset.
    target, _ = session.add_prompt(prompt(3, stamp_sec=1, points=[[10, 10]], labels=[1]))
    assert target.stamp_ns == SEC and session.object_ids == [3]


class RecordingTracker:
    """Plumbing only: records calls (frames by their first pixel); fails one object's prompts."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.object_ids: list[int] = []
        self.last = 0  # the last tracked frame's pixel value
        self.fail_for: int | None = None
        self.fail_track: int | None = None  # a frame (pixel value) whose tracking raises once

    def snapshot(self) -> SimpleNamespace:
        return SimpleNamespace(object_ids=list(self.object_ids), last=self.last)

    def restore(self, snapshot: SimpleNamespace) -> None:
        self.calls.append(("restore", snapshot.last))
        self.object_ids, self.last = list(snapshot.object_ids), snapshot.last

    def track(self, frame: np.ndarray, key: object = None) -> dict:
        value = int(frame[0, 0, 0])
        self.calls.append(("track", value))
        if value == self.fail_track:
            self.fail_track = None
            raise RuntimeError("transient device error")
        self.last = value
        return {}

    def memory_bytes(self, snapshots) -> int:
        """One byte per snapshot kept: counts what the session holds alive."""
        return len(list(snapshots))

    def add_prompt(self, obj_id: int, **_: object):
        self.calls.append(("prompt", obj_id))
        if obj_id == self.fail_for:
            raise ValueError("engine refused")
        if obj_id not in self.object_ids:
            self.object_ids.append(obj_id)
        return object()

    def remove_object(self, obj_id: int) -> None:
        self.calls.append(("remove", obj_id))
        self.object_ids.remove(obj_id)


def recorded_session(*, max_objects: int = 4):
    """Frames 1..6 received (capacity 4), 1..5 tracked; object 5 clicked on frame 2,
    object 2 on frame 4, object 5 removed on frame 5."""
    tracker = RecordingTracker()
    frames, session = make_session(tracker, capacity=4, max_objects=max_objects)
    received = []
    for sec in range(1, 7):
        received.append(receive(frames, np.full((4, 4, 3), sec, np.uint8), sec))
        if sec < 6:
            session.track(received[-1])
        if sec in (2, 4):
            session.add_prompt(prompt(5 if sec == 2 else 2, points=[[1, 1]], labels=[1]))
    session.remove_object(5)
    tracker.calls.clear()
    return tracker, session, received


def test_replay_order_and_recovery_when_the_prompt_fails() -> None:
    tracker, session, received = recorded_session()
    session.add_prompt(prompt(1, stamp_sec=3, points=[[1, 1]], labels=[1]))
    # Back to before frame 3, then forward with the edits of each frame; frame 6 arrived
    # but was never tracked: the replay stops at the last tracked frame.
    assert tracker.calls == [("restore", 2), ("track", 3), ("prompt", 1), ("track", 4),
                             ("prompt", 2), ("track", 5), ("remove", 5)]
    tracker.calls.clear()
    tracker.fail_for = 7
    with pytest.raises(ValueError, match="engine refused"):
        session.add_prompt(prompt(7, stamp_sec=4, points=[[1, 1]], labels=[1]))
    # The new prompt follows the frame's own edits; failed, the tracker goes straight back
    # to its state from before the call (5 = the last tracked frame), and it is not replayed.
    assert tracker.calls == [("restore", 3), ("track", 4), ("prompt", 2), ("prompt", 7),
                             ("restore", 5)]
    assert session.last_frame is received[4] and tracker.object_ids == [1, 2]
    tracker.calls.clear()
    session.add_prompt(prompt(1, stamp_sec=4, points=[[1, 1]], labels=[1]))
    assert ("prompt", 7) not in tracker.calls
    with pytest.raises(FrameNotBufferedError, match="holds 4 frames with stamps 3.0+ .. 6.0+"):
        session.add_prompt(prompt(stamp_sec=2, points=[[1, 1]], labels=[1]))


def test_max_objects_counts_the_objects_of_the_replayed_frames() -> None:
    """Now only object 2 is tracked, but on frame 4 objects 5 and 2 both were: a third object
    stamped on frame 3 would exceed max_objects=2 there; on frame 5, after the removal, not."""
    tracker, session, _ = recorded_session(max_objects=2)
    assert tracker.object_ids == [2]
    with pytest.raises(PromptError, match=r"cannot add object 1: already tracking 2 objects "
                       r"\(max_objects\) on or after that frame"):
        session.add_prompt(prompt(1, stamp_sec=3, points=[[1, 1]], labels=[1]))
    assert tracker.calls == []
    session.add_prompt(prompt(1, stamp_sec=5, points=[[1, 1]], labels=[1]))
    assert tracker.object_ids == [2, 1]


def test_a_replay_that_fails_while_re_tracking_leaves_the_session_as_it_was() -> None:
    """A transient error re-tracking frame 4 of a replay from frame 3: the tracker goes back
    to its state from before the call, the live prompt of object 2 on frame 4 and the removal
    on frame 5 are still there to replay, and the failed prompt is not applied."""
    tracker, session, received = recorded_session()
    fresh_replay = [("restore", 2), ("track", 3), ("prompt", 1), ("track", 4), ("prompt", 2),
                    ("track", 5), ("remove", 5)]
    tracker.fail_track = 4
    with pytest.raises(RuntimeError, match="transient device error"):
        session.add_prompt(prompt(1, stamp_sec=3, points=[[1, 1]], labels=[1]))
    assert tracker.calls == [("restore", 2), ("track", 3), ("prompt", 1), ("track", 4),
                             ("restore", 5)]
    assert tracker.object_ids == [2] and tracker.last == 5
    assert session.last_frame is received[4]
    assert [f.stamp_ns // SEC for f in session.tracked_frames] == [3, 4, 5]
    tracker.calls.clear()
    session.add_prompt(prompt(1, stamp_sec=3, points=[[1, 1]], labels=[1]))
    assert tracker.calls == fresh_replay and tracker.object_ids == [1, 2]


def test_a_prompt_on_the_last_frame_after_a_failed_replay_re_tracks_it() -> None:
    """The rolled-back tracker lacks the last frame's image features: a live prompt on that
    frame restores the snapshot from before it and tracks it again with its edits first."""
    tracker, session, received = recorded_session()
    tracker.fail_for = 7
    with pytest.raises(ValueError, match="engine refused"):
        session.add_prompt(prompt(7, stamp_sec=4, points=[[1, 1]], labels=[1]))
    tracker.calls.clear()
    session.add_prompt(prompt(3, stamp_sec=5, points=[[1, 1]], labels=[1]))
    assert tracker.calls == [("restore", 4), ("track", 5), ("remove", 5), ("prompt", 3)]
    tracker.calls.clear()
    session.add_prompt(prompt(4, stamp_sec=5, points=[[1, 1]], labels=[1]))
    assert tracker.calls == [("prompt", 4)]  # features back: prompted directly
    assert tracker.object_ids == [2, 3, 4] and session.last_frame is received[4]


def test_a_failed_replay_with_the_real_tracker_changes_nothing(small_model, video) -> None:
    """Exactly: after a replay that failed half-way, the next frame's results and a live
    prompt on the last frame equal those of a session that never saw the failed call."""
    edits = {1: [prompt(1, mask=box_mask(135, 240))], 3: [prompt(1, points=[[100, 60]],
                                                             labels=[0], clear_old=False)]}
    failed = run(small_model, video[:5], edits)
    untouched = run(small_model, video[:5], edits)
    tracker, frames, session, received, _ = failed
    real_track, calls = tracker.track, []

    def flaky_track(frame, key=None):
        calls.append(len(calls))
        if len(calls) == 2:  # re-tracking frame 3 of the replay from frame 2
            raise RuntimeError("transient device error")
        return real_track(frame, key=key)

    tracker.track = flaky_track
    with pytest.raises(RuntimeError, match="transient device error"):
        session.add_prompt(prompt(2, stamp_sec=2, points=[[60, 50]], labels=[1]))
    tracker.track = real_track
    assert tracker.memory_stats() == untouched[0].memory_stats()
    assert (tracker.frame_index, session.object_ids) == (untouched[0].frame_index, [1])
    _, ours = session.add_prompt(prompt(2, points=[[60, 50]], labels=[1]))
    _, theirs = untouched[2].add_prompt(prompt(2, points=[[60, 50]], labels=[1]))
    assert_same(ours, theirs)
    newest = video[5]
    ours = session.track(receive(frames, newest, 6))
    theirs = untouched[2].track(receive(untouched[1], newest, 6))
    assert sorted(ours) == sorted(theirs) == [1, 2]
    for object_id in ours:
        assert_same(ours[object_id], theirs[object_id])


def test_a_prompt_on_the_newest_untracked_frame_reports_it_as_tracked() -> None:
    """Stamp zero names the newest received frame: when the worker has not reached it, the
    prompt tracks it and reports it to on_tracked (the node publishes it); the worker then
    skips it. A stamped prompt's replay reports nothing (those frames were published)."""
    reported = []
    tracker = RecordingTracker()
    frames, session = make_session(tracker, on_tracked=lambda frame, results:
                                   reported.append(frame.stamp_ns // SEC))
    first = receive(frames, np.full((4, 4, 3), 1, np.uint8), 1)
    session.track(first)
    newest = receive(frames, np.full((4, 4, 3), 2, np.uint8), 2)
    target, _ = session.add_prompt(prompt(1, points=[[1, 1]], labels=[1]))
    assert target is newest and reported == [1, 2]
    assert session.track(newest) is None and reported == [1, 2]
    session.add_prompt(prompt(2, stamp_sec=1, points=[[1, 1]], labels=[1]))
    assert reported == [1, 2]


def test_snapshots_are_kept_only_for_frames_a_stamp_can_name() -> None:
    """Eight frames received into a 4-frame buffer, every other one tracked: only the
    tracked frames still buffered (5 and 7) keep a snapshot, not the last 4 tracked."""
    tracker = RecordingTracker()
    frames, session = make_session(tracker, capacity=4)
    for sec in range(1, 9):
        frame = receive(frames, np.full((4, 4, 3), sec, np.uint8), sec)
        if sec % 2:
            session.track(frame)
    assert [f.stamp_ns // SEC for f in session.tracked_frames] == [5, 7]
    assert session.memory_bytes() == 2  # RecordingTracker: one byte per snapshot
    with pytest.raises(FrameNotBufferedError):
        session.add_prompt(prompt(1, stamp_sec=3, points=[[1, 1]], labels=[1]))
