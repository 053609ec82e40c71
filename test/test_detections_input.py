"""The pieces of detector-driven tracking around the association: box history, one-replay
prompts in the session, Detection2DArray conversion both ways, and running without vision_msgs."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("sam2_ros.msg", reason="msg/srv not built: run bash scripts/setup.sh and "
                    "source scripts/env.sh")

import rclpy  # noqa: E402
from rclpy.lifecycle import LifecycleNode  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from sam2_ros.ros import detections_input  # noqa: E402
from sam2_ros.ros.box_history import BoxHistory, StaleStampError, frame_period_ns  # noqa: E402
from sam2_ros.ros.frame_buffer import FrameBuffer  # noqa: E402
from sam2_ros.ros.parameters import NodeConfig, ParameterError, validate  # noqa: E402
from sam2_ros.ros.session import PromptError, TrackingSession  # noqa: E402
from test_ros_session import RecordingTracker, make_session, prompt, receive  # noqa: E402

MS = 1_000_000


def result(box=None, *, shape=(40, 60)) -> SimpleNamespace:
    """A tracker result whose mask fills `box` (x0, y0, x1, y1 exclusive); None = not visible."""
    mask = np.zeros(shape, bool)
    if box is not None:
        x0, y0, x1, y1 = box
        mask[y0:y1, x0:x1] = True
    return SimpleNamespace(mask=mask, visible=box is not None, score=0.9, object_score_logit=2.0)


def frame(seq: int, stamp_ms: int, shape=(40, 60)) -> SimpleNamespace:
    return SimpleNamespace(seq=seq, stamp_ns=stamp_ms * MS, height=shape[0], width=shape[1])


def test_box_history_records_tracked_frames_and_prompts_and_finds_them_by_stamp() -> None:
    history = BoxHistory(capacity=3)
    for seq in range(4):  # frames every 100 ms; the first falls out
        history.observe(frame(seq, 100 * seq), {1: result((seq, 0, seq + 10, 10))}, True)
    assert len(history) == 3
    entry = history.lookup(200 * MS, period_ns=100 * MS)
    np.testing.assert_array_equal(entry.boxes[1], [2, 0, 12, 10])
    # A prompt on frame 2 adds object 2 there; re-tracking frame 2 replaces the entry.
    history.observe(frame(2, 200), {2: result((20, 20, 30, 30))}, False)
    assert sorted(history.lookup(200 * MS, period_ns=None).boxes) == [1, 2]
    history.observe(frame(2, 200), {1: result(None), 2: result((21, 20, 31, 30))}, True)
    entry = history.lookup(200 * MS, period_ns=None)
    assert entry.boxes[1] is None and entry.boxes[2][0] == 21
    # A skipped frame's stamp: the nearest tracked frame within one period, else refused.
    assert history.lookup(240 * MS, period_ns=50 * MS).seq == 2
    with pytest.raises(StaleStampError, match=r"within one frame period \(30 ms\) of stamp "
                                              r"0.240000000: tracked frames have stamps "
                                              r"0.100000000 .. 0.300000000"):
        history.lookup(240 * MS, period_ns=30 * MS)
    with pytest.raises(StaleStampError, match="stamp 0.000000000"):
        history.lookup(0, period_ns=50 * MS)  # fell out
    np.testing.assert_array_equal(history.last_seen()[1], [3, 0, 13, 10])
    assert frame_period_ns([0, 50 * MS, 100 * MS, 300 * MS, 350 * MS]) == 50 * MS
    assert frame_period_ns([5]) is None


def test_several_prompts_on_a_past_frame_cost_one_replay_and_are_observed() -> None:
    seen = []
    tracker = RecordingTracker()
    frames = FrameBuffer(capacity=4, max_bytes=1 << 20)
    session = TrackingSession(tracker, frames=frames, max_objects=4,
                              observer=lambda f, results, tracked: seen.append(
                                  (f.stamp_ns // 10**9, sorted(results), tracked)))
    received = [receive(frames, np.full((4, 4, 3), sec, np.uint8), sec) for sec in (1, 2, 3)]
    for item in received:
        session.track(item)
    tracker.calls.clear()
    seen.clear()
    target, results = session.add_prompts([prompt(1, stamp_sec=2, box=[0, 0, 2, 2]),
                                           prompt(2, stamp_sec=2, box=[1, 1, 3, 3])])
    assert target is received[1] and len(results) == 2
    assert tracker.calls == [("restore", 1), ("track", 2), ("prompt", 1), ("prompt", 2),
                             ("track", 3)]
    assert seen == [(2, [], True), (2, [1], False), (2, [2], False), (3, [], True)]


def test_add_prompts_checks_everything_before_applying_anything() -> None:
    tracker = RecordingTracker()
    frames, session = make_session(tracker, capacity=4, max_objects=2)
    session.track(receive(frames, np.full((4, 4, 3), 1, np.uint8), 1))
    with pytest.raises(PromptError, match="must name one frame"):
        session.add_prompts([prompt(1, stamp_sec=1, box=[0, 0, 2, 2]), prompt(2, box=[0, 0, 2, 2])])
    with pytest.raises(PromptError, match=r"box \(0, 0, 9, 2\) must satisfy"):
        session.add_prompts([prompt(1, stamp_sec=1, box=[0, 0, 2, 2]),
                             prompt(2, stamp_sec=1, box=[0, 0, 9, 2])])
    with pytest.raises(PromptError, match=r"cannot add objects 1, 2, 3: already tracking 2"):
        session.add_prompts([prompt(i, stamp_sec=1, box=[0, 0, 2, 2]) for i in (1, 2, 3)])
    assert ("prompt", 1) not in tracker.calls and tracker.object_ids == []


def test_detection2d_arrays_in_and_out() -> None:
    vision = pytest.importorskip("vision_msgs.msg", reason="vision_msgs is not built (run "
                                 "scripts/setup.sh with SAM2_ROS_VENDOR set)")

    def item(cx, cy, w, h, *hypotheses):
        out = vision.Detection2D()
        out.bbox.center.position.x, out.bbox.center.position.y = cx, cy
        out.bbox.size_x, out.bbox.size_y = w, h
        out.results = [vision.ObjectHypothesisWithPose(
            hypothesis=vision.ObjectHypothesis(class_id=c, score=s)) for c, s in hypotheses]
        return out

    msg = vision.Detection2DArray(detections=[
        item(20, 10, 10, 4, ("3", 0.2), ("41", 0.8)), item(5, 5, 0, 3, ("1", 0.9)),
        item(float("nan"), 5, 3, 3), item(7, 7, 2, 2, ("cup", 0.9)), item(9, 9, 2, 2)])
    msg.header.stamp.sec, msg.header.stamp.nanosec = 3, 250
    batch = detections_input.detections_from_msg(msg, class_filter=False)
    assert batch.stamp_ns == 3_000_000_250 and batch.bad_boxes == 2 and batch.bad_classes == 0
    first, cup, bare = batch.detections
    np.testing.assert_array_equal(first.box, [15, 8, 25, 12])
    assert (first.class_id, first.score) == ("41", pytest.approx(0.8))  # the best hypothesis
    assert cup.class_id == "cup" and (bare.class_id, bare.score) == ("", 1.0)
    filtered = detections_input.detections_from_msg(msg, class_filter=True)
    assert filtered.bad_classes == 2 and len(filtered.detections) == 1  # "cup" and "" refused

    header = Header(frame_id="cam")
    out = detections_input.detection_array(
        vision, header, {4: result((10, 5, 30, 15)), 5: result(None), 6: result((0, 0, 2, 2))},
        {4: ("41", 0.75)})
    assert [d.id for d in out.detections] == ["4", "6"] and out.header.frame_id == "cam"
    box = out.detections[0].bbox
    assert (box.center.position.x, box.center.position.y) == (20, 10)
    assert (box.size_x, box.size_y) == (20, 10)
    hypothesis = out.detections[0].results[0].hypothesis
    assert (hypothesis.class_id, hypothesis.score) == ("41", pytest.approx(0.75))
    assert out.detections[1].results == []  # prompted through the service: no class


def test_without_vision_msgs_the_node_says_so_and_runs_without_detections(monkeypatch) -> None:
    monkeypatch.setattr(detections_input, "import_vision_msgs", lambda: None)
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = LifecycleNode("sam2_no_vision", context=context)
        logged = []
        monkeypatch.setattr(node, "get_logger", lambda: SimpleNamespace(
            warning=logged.append, info=logged.append))
        inputs = detections_input.DetectionsInput(
            node, NodeConfig(detections_topic="detections"), session=None, boxes=None,
            frames=None, submit=None, max_object_id=lambda: 65535)
        inputs.activate()
        assert len(logged) == 1 and "vision_msgs is not importable" in logged[0]
        assert "(detections_topic)" in logged[0]
        topics = [name for name, _ in node.get_subscriber_names_and_types_by_node(
            "sam2_no_vision", "/")]
        services = [name for name, _ in node.get_service_names_and_types_by_node(
            "sam2_no_vision", "/")]
        assert not any("detections" in name for name in topics + services), (topics, services)
        assert inputs.labels() == {} and inputs.diagnostics()["detection_arrays"] == "0"
        inputs.publish(Header(), {})  # no publisher: nothing to do, no error
        inputs.destroy()
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_classes_parameter_reads_lists_and_empty_yaml_lists_and_refuses_names() -> None:
    assert NodeConfig(classes=[41, 47]).classes == (41, 47)
    assert NodeConfig(classes=None).classes == ()  # an empty YAML list reads as no value
    with pytest.raises(ParameterError, match=r"classes=\['cup'\]: expected integer class ids"):
        validate(NodeConfig(classes=["cup"]))
