"""The node under load and failure: real rclpy, the real tracker (tiny, random weights, 256 px)
and a worker held busy by a job that waits on a gate (a long replay, a slow device).

Each test reproduces a defect found in review (issue #13); every wait is bounded.
"""
from __future__ import annotations

import io
import threading
import time

import pytest
from PIL import Image as PILImage

pytest.importorskip("sam2_ros.msg", reason="msg/srv not built: run bash scripts/setup.sh and "
                    "source scripts/env.sh")

from lifecycle_msgs.msg import State  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CompressedImage  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from sam2_ros.ros import services  # noqa: E402
from sam2_ros.ros.conversions import mask_to_image  # noqa: E402
from sam2_ros.srv import RemoveObject  # noqa: E402
from test_ros_node import (FRAMES, Client, block_mask, context, mask_request,  # noqa: E402,F401
                           spinning, wait_for)

SUCCESS = TransitionCallbackReturn.SUCCESS


def make_node(context, name: str, **parameters):
    from sam2_ros.ros.node import Sam2Node

    overrides = [Parameter("allow_random_weights", value=True),
                 Parameter("image_size", value=256),
                 Parameter("image_topic", value=f"/{name}/image"),
                 *(Parameter(key, value=value) for key, value in parameters.items())]
    node = Sam2Node(name, context=context, parameter_overrides=overrides)
    return node, Client(context, node_name=name, image_topic=f"/{name}/image")


def start(node, client) -> None:
    assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
    wait_for(lambda: client.add_prompt.service_is_ready(), 30, "the add_prompt service")
    client.stream_until(lambda: client.masks, what="the first mask array")


def block_worker(node) -> threading.Event:
    """Hold the worker in a job until the returned gate is set (at most 60 s)."""
    gate, started = threading.Event(), threading.Event()
    node._worker.submit(lambda: (started.set(), gate.wait(60)))
    wait_for(started.is_set, 30, "the worker to take the blocking job")
    return gate


def statuses(client, name: str) -> list:
    return [s for d in client.diagnostics for s in d.status if s.name == f"{name}: tracking"]


def values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def jpeg(index: int) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(FRAMES[index % len(FRAMES)]).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_waiting_calls_do_not_starve_the_camera(context) -> None:
    """Six calls wait on a busy worker (4 executor threads): camera frames are still
    buffered and diagnostics still published; every call is answered once it is free."""
    node, client = make_node(context, "sam2_starve", diagnostics_period=0.2,
                             service_timeout=60.0)
    with spinning(context, node, client.node, threads=4):
        start(node, client)
        gate = block_worker(node)
        try:
            calls = [client.remove.call_async(RemoveObject.Request(object_id=9))
                     for _ in range(6)]
            time.sleep(1.0)  # the calls reach their callbacks and wait
            before = len(statuses(client, "sam2_starve"))
            first = client.sent[-1] + 1
            for sec in range(first, first + 5):
                client.publish(sec, sec=sec)
                time.sleep(0.1)
            wait_for(lambda: node._frames.newest().stamp_ns == (first + 4) * 10**9, 20,
                     "the camera frames published while the calls wait, in the buffer")
            wait_for(lambda: len(statuses(client, "sam2_starve")) >= before + 3, 20,
                     "diagnostics while the calls wait")
            assert not any(call.done() for call in calls)
        finally:
            gate.set()
        wait_for(lambda: all(call.done() for call in calls), 60, "the six replies")
        assert all("unknown object id 9" in call.result().message for call in calls)
        assert node.trigger_deactivate() == SUCCESS


def test_outputs_and_diagnostics_stay_true(context) -> None:
    """A prompt that tracks the newest frame publishes it; a camera on both inputs is
    tracked once per stamp; objects and memory follow reset with the camera stopped; the
    memory figure is not computed per frame; failing frames make the status an ERROR."""
    node, client = make_node(context, "sam2_true", diagnostics_period=0.2,
                             compressed_image_topic="/sam2_true/image/compressed")
    compressed = client.node.create_publisher(CompressedImage, "/sam2_true/image/compressed",
                                              qos_profile_sensor_data)
    with spinning(context, node, client.node, threads=4):
        start(node, client)

        # Stamp zero names the newest frame; the worker has not reached it yet.
        gate = block_worker(node)
        try:
            newest = client.sent[-1] + 1
            client.publish(newest, sec=newest)
            wait_for(lambda: node._frames.newest().stamp_ns == newest * 10**9, 20,
                     "the newest frame in the buffer")
            call = client.add_prompt.call_async(mask_request(
                1, mask_to_image(block_mask(), header=Header())))
            time.sleep(0.5)
        finally:
            gate.set()
        reply = wait_for(lambda: call.done() and call.result(), 60, "the prompt's reply")
        assert reply.success and reply.header.stamp.sec == newest, reply.message
        wait_for(lambda: any(m.header.stamp.sec == newest for m in client.masks), 20,
                 "the prompted frame on ~/masks")

        # Each frame on both inputs (same stamp): the second copy is dropped, not tracked.
        first = client.sent[-1] + 1
        for sec in range(first, first + 6):
            client.publish(sec, sec=sec)
            compressed.publish(CompressedImage(header=client.camera_header(sec), format="jpeg",
                                               data=jpeg(sec)))
            time.sleep(0.25)
        wait_for(lambda: [s for s in statuses(client, "sam2_true")
                          if int(values(s)["frames_stale"]) >= 3], 30, "stale frames counted")
        stamps = [m.header.stamp.sec for m in client.masks]
        assert len(stamps) == len(set(stamps)), stamps

        # The memory figure is computed when diagnostics ask, not after every frame.
        node._diagnostics_timer.cancel()
        wait_for(lambda: node._figures_job.done(), 20, "the last figures computed")
        counted = []
        tracker = node._session._tracker
        real_memory_bytes = tracker.memory_bytes
        tracker.memory_bytes = lambda *args: counted.append(1) or real_memory_bytes(*args)
        tracked = len(client.masks)
        client.stream_until(lambda: len(client.masks) >= tracked + 3, what="three frames")
        assert counted == []
        node._diagnostics_timer.reset()
        wait_for(lambda: counted, 20, "the memory figure computed for diagnostics")

        # The camera stops; reset: objects and memory follow.
        wait_for(lambda: values(statuses(client, "sam2_true")[-1])["objects"] == "1", 20,
                 "one object in diagnostics")
        assert client.call(client.reset, Trigger.Request()).success
        latest = wait_for(lambda: [s for s in statuses(client, "sam2_true")
                                   if values(s)["objects"] == "0"], 20,
                          "no objects in diagnostics after reset")[-1]
        assert values(latest)["memory_bytes"] == "0"

        # Frames that fail to track are counted and make the status an ERROR.
        def failing_track(frame, key=None):
            raise RuntimeError("device lost")

        tracker.track = failing_track
        error = client.stream_until(lambda: [s for s in statuses(client, "sam2_true")
                                             if s.level == s.ERROR], what="an ERROR status")[-1]
        assert "device lost" in error.message and int(values(error)["frames_failed"]) >= 1
        assert node.trigger_deactivate() == SUCCESS


def test_timed_out_calls_and_cleanup(context) -> None:
    """service_timeout=1 on a busy worker: the call answers in time and its job never runs;
    cleanup with a timed-out job still queued succeeds, fails the jobs behind it, and a
    second configure runs one diagnostics timer."""
    node, client = make_node(context, "sam2_timeout", service_timeout=1.0)
    with spinning(context, node, client.node, threads=4):
        start(node, client)
        # Object 1 through a job: a call could time out behind a frame on a slow machine.
        prompt = services.prompt_from_request(
            mask_request(1, mask_to_image(block_mask(), header=Header())), max_object_id=65535)
        node._worker.submit(lambda: node._session.add_prompt(prompt)).result(timeout=60)

        gate = block_worker(node)
        asked = time.monotonic()
        reply = client.call(client.remove, RemoveObject.Request(object_id=1), timeout=30)
        assert time.monotonic() - asked < 15
        assert not reply.success and reply.message == (
            "TimeoutError: the worker did not start the request within 1 s (service_timeout); "
            "it was cancelled")
        gate.set()
        objects = node._worker.submit(lambda: node._session.object_ids).result(timeout=30)
        assert objects == [1]  # the cancelled removal never ran

        gate = block_worker(node)
        reply = client.call(client.remove, RemoveObject.Request(object_id=1), timeout=30)
        assert "it was cancelled" in reply.message  # its job stays queued, cancelled
        behind = node._worker.submit(lambda: "ran")
        threading.Timer(0.5, gate.set).start()
        assert node.trigger_deactivate() == SUCCESS
        assert node.trigger_cleanup() == SUCCESS
        with pytest.raises(RuntimeError, match="the node is shutting down"):
            behind.result(timeout=5)
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED

        assert node.trigger_configure() == SUCCESS
        diagnostics_timers = [t for t in node.timers if t.callback == node._publish_diagnostics]
        assert len(diagnostics_timers) == 1


def test_a_reply_does_not_wait_for_the_next_camera_frame_or_timer(context) -> None:
    """No camera, a 60 s diagnostics period: the answer must still go out at once (the
    executor is woken when the worker finishes; it waited for the next event before)."""
    node, client = make_node(context, "sam2_wake", diagnostics_period=60.0)
    with spinning(context, node, client.node, threads=4):
        start(node, client)
        time.sleep(1.0)  # the last frame is tracked; nothing else will wake the executor
        for _ in range(3):
            reply = client.call(client.remove, RemoveObject.Request(object_id=9), timeout=15)
            assert "unknown object id 9" in reply.message
        assert node.trigger_deactivate() == SUCCESS
