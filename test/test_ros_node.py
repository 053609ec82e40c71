"""The real node with real rclpy and the real tracker (tiny, random weights, 256 px).

One test spins the node in this process (lifecycle, outputs, diagnostics, a burst of
calls); one starts it as a separate process, as users do, and drives it over DDS.
Every wait is bounded so a broken node fails the test instead of hanging it.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

pytest.importorskip("sam2_ros.msg", reason="msg/srv not built: run bash scripts/setup.sh and "
                    "source scripts/env.sh")

ROOT = Path(__file__).resolve().parents[1]
# Large images between processes need the loopback shared-memory profile (see config/).
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE",
                      str(ROOT / "config" / "fastdds_local_large_data.xml"))
os.environ.setdefault("RMW_FASTRTPS_USE_QOS_FROM_XML", "0")

import rclpy  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import Point  # noqa: E402
from lifecycle_msgs.msg import State  # noqa: E402
from lifecycle_msgs.srv import GetState  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from sam2_ros.msg import ObjectMaskArray  # noqa: E402
from sam2_ros.ros.conversions import array_to_image, image_to_mask, mask_to_image  # noqa: E402
from sam2_ros.srv import AddPrompt, RemoveObject  # noqa: E402

FRAMES = [np.asarray(PILImage.open(path).convert("RGB"))
          for path in sorted((ROOT / "test" / "data" / "blocks").glob("*.jpg"))]
HEIGHT, WIDTH = FRAMES[0].shape[:2]  # 270, 480


def wait_for(condition: Callable[[], object], timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def block_mask() -> np.ndarray:
    """Roughly the red 'U' block of the first frame."""
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[75:115, 285:325] = True
    return mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


class Client:
    """Camera publisher, output subscriber and service client, spun by a background executor."""

    def __init__(self, context, *, node_name: str, image_topic: str) -> None:
        self.node = rclpy.create_node(f"test_client_{os.getpid()}", context=context)
        self.camera = self.node.create_publisher(Image, image_topic, qos_profile_sensor_data)
        self.masks: list[ObjectMaskArray] = []
        self.labels: list[Image] = []
        self.overlays: list[Image] = []
        self.markers: list[MarkerArray] = []
        self.diagnostics: list[DiagnosticArray] = []
        for kind, topic, sink in [(ObjectMaskArray, "masks", self.masks),
                                  (Image, "label_image", self.labels),
                                  (Image, "overlay", self.overlays),
                                  (MarkerArray, "markers", self.markers)]:
            self.node.create_subscription(kind, f"/{node_name}/{topic}", sink.append, 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics",
                                      self.diagnostics.append, 10)
        self.add_prompt = self.node.create_client(AddPrompt, f"/{node_name}/add_prompt")
        # Deep client queues too, so a burst of replies is not lost on this side.
        self.remove = self.node.create_client(RemoveObject, f"/{node_name}/remove_object",
                                              qos_profile=QoSProfile(depth=100))
        self.reset = self.node.create_client(Trigger, f"/{node_name}/reset")
        self.sent: list[int] = []  # stamps (seconds) of the frames published

    @staticmethod
    def camera_header(sec: int) -> Header:
        header = Header(frame_id="camera_optical")
        header.stamp.sec = sec
        return header

    def publish(self, index: int, *, sec: int) -> None:
        self.camera.publish(array_to_image(FRAMES[index % len(FRAMES)], encoding="rgb8",
                                           header=self.camera_header(sec)))
        self.sent.append(sec)

    def show(self, sec: int, *, timeout: float = 60.0, resend: float = 2.0) -> ObjectMaskArray:
        """Publish frame `sec` alone and wait for its masks: the worker cannot skip it. A
        frame lost before discovery is sent again (the node drops a copy it already has)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.publish(sec, sec=sec)
            end = min(time.monotonic() + resend, deadline)
            while time.monotonic() < end:
                arrays = [m for m in self.masks if m.header.stamp.sec == sec]
                if arrays:
                    return arrays[0]
                time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout} s waiting for the masks of frame {sec}")

    def call(self, client, request, timeout: float = 60.0):
        future = client.call_async(request)
        wait_for(future.done, timeout, f"a reply from {client.srv_name}")
        return future.result()

    def stream_until(self, condition: Callable[[], object], *, what: str,
                     timeout: float = 60.0):
        """Publish frames (stamps 1, 2, ... seconds) at ~5 Hz until `condition` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sec = self.sent[-1] + 1 if self.sent else 1
            self.publish(sec, sec=sec)
            end = time.monotonic() + 0.2
            while time.monotonic() < end:
                value = condition()
                if value:
                    return value
                time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def points_request(object_id: int, points: list[tuple[float, float]], labels: list[int],
                   **fields) -> AddPrompt.Request:
    request = AddPrompt.Request(object_id=object_id, labels=labels,
                                points=[Point(x=float(x), y=float(y)) for x, y in points])
    for key, value in fields.items():
        setattr(request, key, value)
    return request


def mask_request(object_id: int, mask_msg: Image, sec: int = 0) -> AddPrompt.Request:
    request = AddPrompt.Request(object_id=object_id, mask=mask_msg)
    request.stamp.sec = sec
    return request


def last_ids(masks: list[ObjectMaskArray], after_sec: int):
    """Object ids of the newest mask array for a frame stamped after `after_sec`."""
    fresh = [m for m in masks if m.header.stamp.sec > after_sec]
    return sorted(o.object_id for o in fresh[-1].masks) if fresh else None


@pytest.fixture
def context():
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


@contextlib.contextmanager
def spinning(context, *nodes, threads: int = 4):
    """Spin `nodes` on a background executor; on exit stop it and destroy them."""
    executor = MultiThreadedExecutor(num_threads=threads, context=context)
    for node in nodes:
        executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        yield
    finally:
        executor.shutdown(timeout_sec=5)
        spinner.join(timeout=10)
        for node in nodes:
            node.destroy_node()


def test_node_in_process(context) -> None:
    from sam2_ros.ros.node import Sam2Node

    overrides = [Parameter("allow_random_weights", value=True),
                 Parameter("image_size", value=256),
                 Parameter("image_topic", value="/inproc/image"),
                 Parameter("diagnostics_period", value=0.2)]
    node = Sam2Node("sam2_inproc", context=context, parameter_overrides=overrides)
    client = Client(context, node_name="sam2_inproc", image_topic="/inproc/image")
    with spinning(context, node, client.node):
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        wait_for(lambda: client.add_prompt.service_is_ready(), 30, "the add_prompt service")
        reply = client.call(client.add_prompt, points_request(1, [(5, 5)], [1]))
        assert not reply.success and "not active" in reply.message  # configured, inactive
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_ACTIVE

        client.stream_until(lambda: client.masks, what="the first mask array")
        reply = client.call(client.add_prompt, mask_request(
            4, mask_to_image(block_mask(), header=Header())))
        assert reply.success, reply.message
        assert iou(image_to_mask(reply.mask), block_mask()) > 0.9
        prompted = reply.header.stamp.sec
        client.stream_until(lambda: last_ids(client.masks, prompted) == [4]
                            and client.labels and client.overlays and client.markers, what="outputs with object 4")
        labels = client.labels[-1]
        assert (labels.encoding, labels.width, labels.height) == ("mono16", WIDTH, HEIGHT)
        assert set(np.unique(np.frombuffer(labels.data, "<u2"))) <= {0, 4}
        assert (client.overlays[-1].encoding, client.overlays[-1].width) == ("rgb8", WIDTH)

        # A burst of 30 calls at once: every one is answered (deep service queue).
        futures = [client.remove.call_async(RemoveObject.Request(object_id=9))
                   for _ in range(30)]
        wait_for(lambda: all(f.done() for f in futures), 60, "30 replies")
        assert all(not f.result().success and "unknown object id 9" in f.result().message
                   for f in futures)

        status = wait_for(lambda: [s for d in client.diagnostics for s in d.status
                                   if s.name == "sam2_inproc: tracking"
                                   and any(kv.key == "objects" and kv.value == "1"
                                           for kv in s.values)], 30, "diagnostics")[-1]
        values = {kv.key: kv.value for kv in status.values}
        assert float(values["fps"]) > 0 and int(values["memory_bytes"]) > 0
        assert float(values["latency_p99_ms"]) >= float(values["latency_p50_ms"]) > 0

        # Lifecycle: deactivate, clean up, and a bad parameter fails configure clearly.
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        result = node.set_parameters([Parameter("device", value="gpu7")])[0]
        assert not result.successful and "expected cpu, cuda, cuda:N or mps" in result.reason
    # A bad value from a params file (not checked when declared) fails configure clearly.
    bad = Sam2Node("sam2_bad", context=context,
                   parameter_overrides=[*overrides, Parameter("device", value="gpu7")])
    try:
        assert bad.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert bad._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
    finally:
        bad.destroy_node()


@pytest.fixture
def node_process():
    """`python -m sam2_ros.ros.node` as a user runs it, with the shipped params file."""
    log = open(ROOT / "log" / "test_ros_node_process.log", "w") \
        if (ROOT / "log").is_dir() else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, "-m", "sam2_ros.ros.node", "--ros-args",
         "--params-file", str(ROOT / "config" / "sam2.yaml"),
         "-p", "allow_random_weights:=true", "-p", "image_size:=256",
         "-p", "frame_buffer_length:=10", "-p", "diagnostics_period:=0.5",
         "-r", "__node:=sam2_xproc", "-r", "image:=/xproc/image"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    yield process
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
    if log is not subprocess.DEVNULL:
        log.close()


def test_node_across_processes(context, node_process) -> None:
    client = Client(context, node_name="sam2_xproc", image_topic="/xproc/image")
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(client.node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        wait_for(lambda: client.add_prompt.service_is_ready() or node_process.poll() is not None,
                 90, "the node's services")
        assert node_process.poll() is None, "the node exited; see log/test_ros_node_process.log"
        # The services exist from configure on; autostart activates the node right after
        # (its state is served all along, as a lifecycle manager sees it).
        get_state = client.node.create_client(GetState, "/sam2_xproc/get_state")
        wait_for(lambda: client.call(get_state, GetState.Request()).current_state.id
                 == State.PRIMARY_STATE_ACTIVE, 60, "the node to be active")

        reply = client.call(client.add_prompt, points_request(1, [(10, 10)], [1]))
        assert not reply.success and "no camera frame received yet" in reply.message

        first = client.stream_until(lambda: client.masks, what="a mask array")[0]
        assert first.header.frame_id == "camera_optical" and first.header.stamp.sec in client.sent
        assert first.masks == []

        # Object 1 from a mask on the newest frame.
        reply = client.call(client.add_prompt, mask_request(
            1, mask_to_image(block_mask(), header=Header())))
        assert reply.success, reply.message
        assert (reply.mask.width, reply.mask.height, reply.mask.encoding) == (WIDTH, HEIGHT,
                                                                             "mono8")
        assert reply.header.stamp.sec in client.sent and reply.visible
        assert iou(image_to_mask(reply.mask), block_mask()) > 0.9
        arrays = client.stream_until(lambda: [m for m in client.masks if m.masks],
                                     what="a mask array with object 1")
        tracked = arrays[-1]
        assert tracked.header.stamp.sec in client.sent
        assert tracked.header.frame_id == "camera_optical"
        assert [o.object_id for o in tracked.masks] == [1]
        assert (tracked.masks[0].mask.width, tracked.masks[0].mask.height) == (WIDTH, HEIGHT)

        # A second object, then a correction of it with an extra negative click.
        reply = client.call(client.add_prompt, points_request(2, [(197, 128)], [1]))
        assert reply.success, reply.message
        reply = client.call(client.add_prompt, points_request(2, [(60, 60)], [0],
                                                              clear_old=False))
        assert reply.success, reply.message
        now = client.sent[-1]
        client.stream_until(lambda: last_ids(client.masks, now) == [1, 2],
                            what="objects 1 and 2")

        # A stamped prompt on a buffered past frame answers with that frame's header. The
        # frame must have been tracked (one with a mask array): shown one at a time, the
        # worker skips none, however slow the machine.
        past = client.sent[-1] + 1
        client.show(past)
        client.show(past + 1)
        reply = client.call(client.add_prompt, mask_request(
            3, mask_to_image(block_mask(), header=Header()), sec=past))
        assert reply.success, reply.message
        assert reply.header.stamp.sec == past and reply.header.frame_id == "camera_optical"
        now = client.sent[-1]
        client.stream_until(lambda: last_ids(client.masks, now) == [1, 2, 3],
                            what="objects 1, 2 and 3")

        # Bad input: each a failed response with a clear message.
        wrong_encoding = mask_to_image(block_mask(), header=Header())
        wrong_encoding.encoding = "rgb8"
        short = mask_to_image(block_mask(), header=Header())
        short.data = bytes(100)
        empty = Image(encoding="mono8", width=5, height=0, step=5)
        small = mask_to_image(np.ones((10, 10), bool), header=Header())
        bad = [
            (mask_request(5, wrong_encoding), "unsupported encoding 'rgb8'"),
            (mask_request(5, short), "data has 100 bytes"),
            (mask_request(5, empty), "empty image: 5x0"),
            (mask_request(5, small), "mask is 10x10; expected the frame's size 480x270"),
            (points_request(5, [(WIDTH + 5, 10)], [1]), "lies outside the 480x270 frame"),
            (points_request(5, [(float("nan"), 10)], [1]), "NaN"),
            (points_request(5, [(10, 10)], [1, 0]), "one label per point"),
            (points_request(0, [(10, 10)], [1]), "object_id must be in 1..65535"),
            # Frames are stamped on whole seconds: this stamp names no buffered frame,
            # however fast the node ran (frame 3 itself may still be buffered).
            (points_request(5, [(10, 10)], [1], stamp=Time(sec=3, nanosec=500_000_000)),
             "no buffered frame has stamp 3.500000000"),
        ]
        for request, message in bad:
            reply = client.call(client.add_prompt, request)
            assert not reply.success and message in reply.message, (message, reply.message)
        reply = client.call(client.remove, RemoveObject.Request(object_id=42))
        assert not reply.success and "unknown object id 42" in reply.message

        # Bad camera frames are rejected (counted), and tracking goes on.
        for bad_frame in [Image(encoding="yuv422", width=4, height=4, step=8, data=bytes(32)),
                          Image(encoding="rgb8", width=4, height=4, step=12, data=bytes(5)),
                          Image(encoding="rgb8")]:
            client.camera.publish(bad_frame)
        wait_for(lambda: [kv for d in client.diagnostics for s in d.status for kv in s.values
                          if kv.key == "frames_rejected" and int(kv.value) >= 3], 30,
                 "three rejected frames in /diagnostics")

        # RemoveObject, then reset.
        reply = client.call(client.remove, RemoveObject.Request(object_id=1))
        assert reply.success, reply.message
        now = client.sent[-1]
        client.stream_until(lambda: last_ids(client.masks, now) == [2, 3],
                            what="objects 2 and 3 after removing 1")
        reply = client.call(client.reset, Trigger.Request())
        assert reply.success, reply.message
        now = client.sent[-1]
        client.stream_until(lambda: last_ids(client.masks, now) == [],
                            what="no objects after reset")

        # Still serving after all of that.
        reply = client.call(client.add_prompt, points_request(7, [(305, 95)], [1]))
        assert reply.success, reply.message
        assert node_process.poll() is None
    finally:
        executor.shutdown(timeout_sec=5)
        spinner.join(timeout=10)
        client.node.destroy_node()
