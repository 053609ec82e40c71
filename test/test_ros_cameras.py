"""One node, two cameras, one model (issue #17), over DDS with the nano checkpoint.

Camera `front` sees the crossing clip, camera `rear` the occlusion clip; object id 1 is
prompted on both (on different discs) and each camera follows its own. Removal, reset and a
stalled camera are checked per camera; bad camera names fail configure.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sam2_ros.msg", reason="msg/srv not built: run bash scripts/setup.sh and "
                    "source scripts/env.sh")

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from nano_scenes import crossing_clip, occlusion_clip  # noqa: E402
from sam2_ros.engine.checkpoint import trained_image_size  # noqa: E402
from sam2_ros.msg import ObjectMaskArray  # noqa: E402
from sam2_ros.ros.conversions import array_to_image, image_to_mask  # noqa: E402
from sam2_ros.ros.parameters import NodeConfig, ParameterError, validate  # noqa: E402
from sam2_ros.srv import AddPrompt, RemoveObject  # noqa: E402
from sam2_ros.train.metrics import region_similarity  # noqa: E402
from sam2_ros.train.prompts import mask_to_box  # noqa: E402
from test_ros_node import context, spinning, wait_for  # noqa: E402,F401 (context: the fixture)

CHECKPOINT = Path(__file__).resolve().parents[1] / "weights" / "sam2_nano.pt"
needs_checkpoint = pytest.mark.skipif(not CHECKPOINT.is_file(), reason=f"{CHECKPOINT} is absent")
NODE = "sam2_multi"
RESEND_S = 2.0


class CameraClient:
    """One camera's publisher, its ~/<camera>/masks subscriber and its own services."""

    def __init__(self, node, camera: str, clip) -> None:
        self.clip = clip
        self.camera = node.create_publisher(Image, f"/multi/{camera}/image",
                                            qos_profile_sensor_data)
        self.masks: list[ObjectMaskArray] = []
        node.create_subscription(ObjectMaskArray, f"/{NODE}/{camera}/masks", self.masks.append, 10)
        self.add_prompt = node.create_client(AddPrompt, f"/{NODE}/{camera}/add_prompt")
        self.remove = node.create_client(RemoveObject, f"/{NODE}/{camera}/remove_object")
        self.reset = node.create_client(Trigger, f"/{NODE}/{camera}/reset")

    def show(self, index: int, timeout: float = 60.0) -> ObjectMaskArray:
        """Publish clip frame `index` (stamped index + 1 s) until its masks come back."""
        header = Header(frame_id="camera_optical")
        header.stamp.sec = index + 1
        frame = array_to_image(self.clip.frames[index % len(self.clip.frames)],
                               encoding="rgb8", header=header)
        deadline, resend = time.monotonic() + timeout, 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= resend:
                self.camera.publish(frame)
                resend = time.monotonic() + RESEND_S
            answered = [m for m in self.masks if m.header.stamp.sec == index + 1]
            if answered:
                return answered[-1]
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout} s waiting for the masks of frame {index}")


def tracked_alone(clip, frames: range) -> dict[int, np.ndarray]:
    """Object 1's mask on `frames` from a tracker of its own, mask-prompted on frame 0."""
    from sam2_ros.engine import StreamingTracker, build_model, load_checkpoint

    model = build_model("nano", image_size=trained_image_size(CHECKPOINT))
    load_checkpoint(model, CHECKPOINT)
    tracker = StreamingTracker(model)
    tracker.track(clip.frames[0])
    tracker.add_prompt(1, mask=clip.masks[0, 0])
    return {index: tracker.track(clip.frames[index])[1].mask for index in frames}


def call(client, request, timeout: float = 60.0):
    wait_for(client.service_is_ready, 60, f"the service {client.srv_name}")
    future = client.call_async(request)
    wait_for(future.done, timeout, f"a reply from {client.srv_name}")
    return future.result()


def box_request(clip, camera: str = "") -> AddPrompt.Request:
    return AddPrompt.Request(object_id=1, box=mask_to_box(clip.masks[0, 0]).tolist(),
                             camera=camera)


def camera_parameters(cameras: list[str]) -> list[Parameter]:
    return [Parameter("model_size", value="nano"), Parameter("checkpoint", value=str(CHECKPOINT)),
            Parameter("image_size", value=trained_image_size(CHECKPOINT)),
            Parameter("cameras", value=cameras), Parameter("diagnostics_period", value=0.3),
            Parameter("silent_after", value=1.5),
            Parameter("encoder_batch_wait", value=0.02),  # frames shown one at a time: alone
            *[Parameter(f"{camera}.image_topic", value=f"/multi/{camera}/image")
              for camera in cameras]]


@needs_checkpoint
def test_two_cameras_share_one_model_and_keep_their_objects_apart(context) -> None:
    from sam2_ros.ros.node import Sam2Node

    node = Sam2Node(NODE, context=context, parameter_overrides=camera_parameters(["front", "rear"]))
    client_node = rclpy.create_node("test_cameras_client", context=context)
    front = CameraClient(client_node, "front", crossing_clip(seed=0))
    rear = CameraClient(client_node, "rear", occlusion_clip())
    routed = client_node.create_client(AddPrompt, f"/{NODE}/add_prompt")
    routed_remove = client_node.create_client(RemoveObject, f"/{NODE}/remove_object")
    diagnostics: list[DiagnosticArray] = []
    client_node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 50)
    with spinning(context, node, client_node):
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        cameras = node._cameras.nodes
        assert list(cameras) == ["front", "rear"]
        # One model and one backend: the trackers share them, nothing else.
        trackers = [cameras[name]._session._tracker for name in cameras]
        assert trackers[0] is not trackers[1]
        assert trackers[0].model is trackers[1].model
        assert trackers[0].backend is trackers[1].backend  # batching its encoder calls
        assert type(trackers[0].backend).__name__ == "BatchingBackend"
        front.show(0)
        rear.show(0)

        # Object 1 on each camera: through the parent with the camera field, and through the
        # camera's own service.
        reply = call(routed, box_request(front.clip, camera="front"))
        assert reply.success, reply.message
        mask = array_to_image(rear.clip.masks[0, 0].astype(np.uint8) * 255, encoding="mono8",
                              header=Header())
        reply = call(rear.add_prompt, AddPrompt.Request(object_id=1, mask=mask))
        assert reply.success, reply.message
        alone = tracked_alone(rear.clip, range(1, 4))
        for index in range(1, 4):
            front_mask = image_to_mask(next(m.mask for m in front.show(index).masks
                                            if m.object_id == 1))
            rear_mask = image_to_mask(next(m.mask for m in rear.show(index).masks
                                           if m.object_id == 1))
            assert region_similarity(front_mask, front.clip.masks[index, 0]) > 0.5
            # The nano checkpoint follows this disc less well (0.44-0.55 alone); what
            # matters is that sharing the model changes nothing.
            assert region_similarity(rear_mask, rear.clip.masks[index, 0]) > 0.4
            assert region_similarity(rear_mask, alone[index]) > 0.95
            assert region_similarity(front_mask, rear_mask) < 0.2  # two different things

        # Bad routing: an unknown camera, and a camera's own service asked for another.
        reply = call(routed, box_request(front.clip, camera="left"))
        assert not reply.success
        assert "unknown camera 'left'" in reply.message and "['front', 'rear']" in reply.message
        reply = call(front.add_prompt, box_request(front.clip, camera="rear"))
        assert not reply.success and "only camera 'front'" in reply.message
        reply = call(routed, box_request(front.clip))
        assert not reply.success and "set the request's camera field" in reply.message

        # Removal on one camera leaves the other's object 1 alone; reset is per camera too.
        reply = call(routed_remove, RemoveObject.Request(object_id=1, camera="front"))
        assert reply.success, reply.message
        assert [m.object_id for m in front.show(4).masks] == []
        assert [m.object_id for m in rear.show(4).masks] == [1]
        assert call(rear.reset, Trigger.Request()).success
        assert [m.object_id for m in rear.show(5).masks] == []
        reply = call(rear.remove, RemoveObject.Request(object_id=1))
        assert not reply.success and "unknown object id 1" in reply.message

        # A stalled camera: rear stops, front goes on; the model's status names rear.
        index, deadline = 6, time.monotonic() + 60

        def silent_rear():
            return [s for d in diagnostics for s in d.status if s.name == f"{NODE}: model"
                    and s.level == DiagnosticStatus.WARN
                    and {kv.key: kv.value for kv in s.values}.get("silent_cameras") == "rear"]
        while not silent_rear() and time.monotonic() < deadline:
            front.show(index)
            index += 1
        assert silent_rear(), "the model's diagnostics never named the silent rear camera"
        values = {kv.key: kv.value for kv in silent_rear()[-1].values}
        assert values["cameras"] == "front,rear" and int(values["model_bytes"]) > 0
        assert float(values["fps_total"]) > 0 and float(values["encoder_frames_per_call"]) >= 1
        assert float(values["front_last_frame_s"]) < 1.5 <= float(values["rear_last_frame_s"])
        front_status = wait_for(lambda: [s for d in diagnostics for s in d.status
                                         if s.name == "front: tracking"], 10, "front's status")
        assert float({kv.key: kv.value for kv in front_status[-1].values}["fps"]) > 0

        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert node._cameras is None and not cameras["front"].config


@pytest.mark.parametrize("cameras, reason", [
    (["front", "front"], "cameras[1]='front': the name is used twice"),
    (["front", ""], "cameras[1]='': a camera name must not be empty"),
    (["9cam"], "cameras[0]='9cam': expected a ROS name segment"),
    (["front/left"], "expected a ROS name segment"),
])
def test_bad_camera_names_are_refused_with_the_reason(cameras, reason) -> None:
    with pytest.raises(ParameterError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        validate(NodeConfig(cameras=tuple(cameras)))


def test_tensorrt_cameras_need_one_worker_thread() -> None:
    with pytest.raises(ParameterError, match="worker_threads=0 with backend tensorrt: expected 1"):
        validate(NodeConfig(cameras=("front", "rear"), backend="tensorrt"))
    validate(NodeConfig(cameras=("front", "rear"), backend="tensorrt", worker_threads=1))


def test_a_node_with_duplicate_cameras_fails_configure(context) -> None:
    from sam2_ros.ros.node import Sam2Node

    node = Sam2Node("sam2_dup", context=context, parameter_overrides=[
        Parameter("allow_random_weights", value=True), Parameter("image_size", value=128),
        Parameter("cameras", value=["front", "front"])])
    with spinning(context, node):
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node._cameras is None and node.config is None


def test_rviz_config_has_one_overlay_per_camera() -> None:
    import yaml

    from sam2_ros.ros.rviz_cameras import camera_rviz_config

    base = (Path(__file__).resolve().parents[1] / "config" / "sam2.rviz").read_text()
    document = yaml.safe_load(camera_rviz_config(base, "/sam2", ["front", "rear"]))
    topics = {d["Name"]: d["Topic"]["Value"]
              for d in document["Visualization Manager"]["Displays"] if "Topic" in d}
    assert topics["front: Overlay"] == "/sam2/front/overlay"
    assert topics["rear: Overlay"] == "/sam2/rear/overlay"
    assert "Overlay" not in topics and all("/front/" in t or "/rear/" in t
                                            for t in topics.values() if t.startswith("/sam2/"))


def test_launch_camera_list_is_parsed_checked_or_read_from_the_params_file() -> None:
    from sam2_ros.ros.rviz_cameras import params_file_cameras, parse_cameras

    assert parse_cameras("front, rear") == ["front", "rear"] and parse_cameras("") == []
    with pytest.raises(ValueError, match="cameras\\[1\\]='front': the name is used twice"):
        parse_cameras("front,front")
    config = Path(__file__).resolve().parents[1] / "config"
    assert params_file_cameras(config / "sam2_cameras.yaml") == ["front", "rear"]
    assert params_file_cameras(config / "sam2.yaml") == []
