"""TrackingSession: prompts on the newest and on buffered past frames, with the real tracker.

The real StreamingTracker (tiny, random weights, 256 px) runs everywhere except one
plumbing test that records the exact call order of a stamped-prompt replay.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

pytest.importorskip("sam2_ros.msg", reason="msg/srv not built: run bash scripts/setup.sh and "
                    "source scripts/env.sh")

from std_msgs.msg import Header  # noqa: E402

from sam2_ros.engine import StreamingTracker, build_model  # noqa: E402
from sam2_ros.ros.frame_buffer import FrameBuffer, FrameNotBufferedError  # noqa: E402
from sam2_ros.ros.session import Prompt, PromptError, TrackingSession  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "blocks"
SEC = 1_000_000_000


@pytest.fixture(scope="module")
def video() -> list[np.ndarray]:
    """Six real frames at half size (240x135) to keep the CPU time small."""
    return [np.asarray(PILImage.open(path).convert("RGB").resize((240, 135)))
            for path in sorted(DATA.glob("*.jpg"))[:6]]


@pytest.fixture(scope="module")
def model():
    return build_model("tiny", image_size=256)


def make_session(tracker, *, capacity: int = 8, max_objects: int = 4):
    frames = FrameBuffer(capacity=capacity)
    return frames, TrackingSession(tracker, frames=frames, capacity=capacity,
                                   max_objects=max_objects)


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


def test_stamped_prompt_on_a_past_frame_retracks_to_now(model, video) -> None:
    tracker = StreamingTracker(model)
    frames, session = make_session(tracker)
    received = [receive(frames, rgb, sec) for sec, rgb in enumerate(video[:5], start=1)]
    for frame in received:
        if frame.stamp_ns != 3 * SEC:  # frame 3 was dropped by the worker
            session.track(frame)
    assert tracker.frame_index == 3
    target, result = session.add_prompt(prompt(7, stamp_sec=2, mask=box_mask(135, 240)))
    assert target is received[1] and result.visible
    # Frame 2 again, then the tracked frames after it (4 and 5): three more tracked frames.
    assert tracker.frame_index == 6 and session.last_frame is received[4]
    stats = tracker.memory_stats()[7]
    assert stats.conditioning_frames == 1 and stats.spatial_frames == 2
    # The dropped frame 3 can be prompted too; the next frame continues from "now".
    session.add_prompt(prompt(8, stamp_sec=3, points=[[100, 60]], labels=[1]))
    assert tracker.frame_index == 9 and session.last_frame is received[4]
    results = session.track(receive(frames, video[5], 6))
    assert sorted(results) == [7, 8] and tracker.frame_index == 10


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
    """Plumbing only: records calls; fails prompts on request."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.object_ids: list[int] = []
        self.fail = False

    def track(self, frame: np.ndarray) -> dict:
        self.calls.append(("track", int(frame[0, 0, 0])))
        return {}

    def add_prompt(self, obj_id: int, **_: object):
        self.calls.append(("prompt", obj_id))
        if self.fail:
            raise ValueError("engine refused")
        return object()


def test_replay_order_and_recovery_when_the_prompt_fails() -> None:
    tracker = RecordingTracker()
    frames, session = make_session(tracker, capacity=4)
    received = [receive(frames, np.full((4, 4, 3), sec, np.uint8), sec) for sec in range(1, 7)]
    for frame in received[:5]:
        session.track(frame)
    tracker.calls.clear()
    session.add_prompt(prompt(stamp_sec=3, points=[[1, 1]], labels=[1]))
    # Frame 6 arrived but was never tracked: the replay stops at the last tracked frame.
    assert tracker.calls == [("track", 3), ("prompt", 1), ("track", 4), ("track", 5)]
    tracker.calls.clear()
    tracker.fail = True
    with pytest.raises(ValueError, match="engine refused"):
        session.add_prompt(prompt(stamp_sec=4, points=[[1, 1]], labels=[1]))
    assert tracker.calls == [("track", 4), ("prompt", 1), ("track", 5)]
    assert session.last_frame is received[4]
    with pytest.raises(FrameNotBufferedError, match="holds 4 frames with stamps 3.0+ .. 6.0+"):
        session.add_prompt(prompt(stamp_sec=2, points=[[1, 1]], labels=[1]))
