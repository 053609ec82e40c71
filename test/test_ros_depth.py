"""The node turns tracked masks into 3D from an aligned depth image (issue #14), over DDS.

A test client publishes colour, 16UC1 depth and CameraInfo at 640x480 from a generated RGB-D
clip (a disc coming towards the camera), prompts the disc with a box, and reads ~/masks,
~/points, ~/markers and ~/detections_3d. The nano checkpoint (128 px input) keeps it fast.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sam2_ros.msg", reason="msg/srv not built: run bash scripts/setup.sh and "
                    "source scripts/env.sh")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from rgbd_scenes import HEIGHT, K, WIDTH, approaching_disc_clip, mask_centroid  # noqa: E402
from sam2_ros.depth_view import COLOUR_FRAME, DEPTH_FRAME, camera_info_message, depth_message, \
    stamped  # noqa: E402
from sam2_ros.engine.checkpoint import trained_image_size  # noqa: E402
from sam2_ros.ros.conversions import array_to_image, image_to_mask  # noqa: E402
from sam2_ros.ros.depth_msgs import CLOUD_DTYPE  # noqa: E402
from sam2_ros.spatial.estimate import dilate  # noqa: E402
from sam2_ros.srv import AddPrompt  # noqa: E402
from sam2_ros.train.metrics import region_similarity  # noqa: E402
from sam2_ros.train.prompts import mask_to_box  # noqa: E402
from test_ros_node import Client, context, spinning, wait_for  # noqa: E402,F401 (context: the fixture)

CHECKPOINT = Path(__file__).resolve().parents[1] / "weights" / "sam2_nano.pt"
needs_checkpoint = pytest.mark.skipif(not CHECKPOINT.is_file(), reason=f"{CHECKPOINT} is absent")
DEPTH_DELAY_NS = 5_000_000  # depth stamped 5 ms after colour: within depth_sync_tolerance
RESEND_S = 3.0
HALF_K = [k / 2 for k in K[:6]] + K[6:]  # fx, cx, fy, cy halved (pixel-centre offsets aside)


def depth_image(depth_m: np.ndarray, stamp_ns: int, encoding: str = "16UC1") -> Image:
    return depth_message(depth_m, stamped(DEPTH_FRAME, stamp_ns), encoding)


def camera_info(stamp_ns: int, k=K, size=(WIDTH, HEIGHT)) -> CameraInfo:
    return camera_info_message(stamped(DEPTH_FRAME, stamp_ns), k, width=size[0], height=size[1])


class DepthClient:
    """The test's camera: colour through `client`, depth and camera info beside it; records
    the node's 3D outputs."""

    def __init__(self, client: Client, node_name: str) -> None:
        self.client, node = client, client.node
        self.depth = node.create_publisher(Image, "/rgbd/depth/image_raw", qos_profile_sensor_data)
        self.info = node.create_publisher(CameraInfo, "/rgbd/depth/camera_info",
                                          qos_profile_sensor_data)
        self.points: list[PointCloud2] = []
        node.create_subscription(PointCloud2, f"/{node_name}/points", self.points.append, 10)
        self.detections: list = []
        try:
            from vision_msgs.msg import Detection3DArray
        except ImportError:
            self.vision_msgs = False
        else:
            self.vision_msgs = True
            node.create_subscription(Detection3DArray, f"/{node_name}/detections_3d",
                                     self.detections.append, 10)

    def wait_matched(self) -> None:
        """Until the node's depth and camera info subscriptions are discovered (best-effort
        messages published before that are lost)."""
        wait_for(lambda: self.depth.get_subscription_count() and self.info.get_subscription_count()
                 and self.client.camera.get_subscription_count(), 30, "the node's subscriptions")

    def show(self, rgb: np.ndarray, stamp_ns: int, depth: Image | None, info: CameraInfo | None):
        """Publish depth and camera info, then the colour frame; return the node's masks of it."""
        frame = array_to_image(rgb, encoding="rgb8", header=stamped(COLOUR_FRAME, stamp_ns))
        deadline, resend = time.monotonic() + 60, 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= resend:  # again only when unanswered (lost before discovery)
                for publisher, msg in ((self.depth, depth), (self.info, info)):
                    if msg is not None:
                        publisher.publish(msg)
                time.sleep(0.1)  # depth arrives before colour, as from a driver
                self.client.camera.publish(frame)
                resend = time.monotonic() + RESEND_S
            answered = [m for m in self.client.masks
                        if (m.header.stamp.sec, m.header.stamp.nanosec) == divmod(stamp_ns, 10**9)]
            if answered:
                return answered[-1]
            time.sleep(0.02)
        raise AssertionError(f"timed out after 60 s waiting for the masks of {stamp_ns} ns")


def make_node(context, name: str, **parameters):
    from sam2_ros.ros.node import Sam2Node

    overrides = [Parameter("model_size", value="nano"), Parameter("checkpoint", value=str(CHECKPOINT)),
                 Parameter("image_size", value=trained_image_size(CHECKPOINT)),
                 Parameter("image_topic", value="/rgbd/color/image_raw"),
                 Parameter("diagnostics_period", value=0.2),
                 *(Parameter(key, value=value) for key, value in parameters.items())]
    return Sam2Node(name, context=context, parameter_overrides=overrides)


def stamp_of(index: int) -> int:
    return (index + 1) * 1_000_000_000


@needs_checkpoint
def test_the_node_follows_an_approaching_disc_in_3d(context) -> None:
    clip, disc_depth = approaching_disc_clip()
    truth = clip.masks[:, 0]  # (T, H, W)
    node = make_node(context, "sam2_depth", depth_topic="/rgbd/depth/image_raw", points_stride=2)
    client = Client(context, node_name="sam2_depth", image_topic="/rgbd/color/image_raw")
    rgbd = DepthClient(client, "sam2_depth")

    def show(t: int):
        stamp = stamp_of(t)
        return rgbd.show(clip.frames[t], stamp, depth_image(clip.depth[t], stamp + DEPTH_DELAY_NS),
                         camera_info(stamp + DEPTH_DELAY_NS))

    with spinning(context, node, client.node):
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        wait_for(lambda: client.add_prompt.service_is_ready(), 60, "the add_prompt service")
        rgbd.wait_matched()
        show(0)
        reply = client.call(client.add_prompt, AddPrompt.Request(
            object_id=1, box=mask_to_box(truth[0]).tolist()))
        assert reply.success, reply.message
        first = reply.position_3d
        assert first.valid and first.header.frame_id == DEPTH_FRAME
        assert (first.header.stamp.sec, first.header.stamp.nanosec) == divmod(
            stamp_of(0) + DEPTH_DELAY_NS, 10**9)
        expected = mask_centroid(truth[0], disc_depth[0])
        got = np.array([first.centroid.x, first.centroid.y, first.centroid.z])
        assert np.abs(got - expected).max() < 0.015, (got, expected)

        report = []
        for t in range(1, len(clip.frames)):
            mask = next(m for m in show(t).masks if m.object_id == 1)
            position = mask.position_3d
            got = np.array([position.centroid.x, position.centroid.y, position.centroid.z])
            expected = mask_centroid(truth[t], disc_depth[t])
            iou = region_similarity(image_to_mask(mask.mask), truth[t])
            report.append((t, round(iou, 2), np.round(got, 3).tolist(), np.round(expected, 3).tolist()))
            assert position.valid and position.header.frame_id == DEPTH_FRAME, report
            assert abs(got[2] - disc_depth[t]) < 0.01, report  # the disc is flat: depth exact
            assert np.abs(got - expected).max() < 0.015, report  # x, y: as good as the mask
            assert position.box_size.x == pytest.approx(0.24, abs=0.05), report
        assert disc_depth[-1] < disc_depth[0] - 0.5  # it did come towards the camera

        cloud = wait_for(lambda: rgbd.points, 10, "a point cloud")[-1]
        assert cloud.header.frame_id == DEPTH_FRAME
        assert [(f.name, f.offset, f.datatype) for f in cloud.fields] == [
            ("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("object_id", 12, 6)]
        points = np.frombuffer(bytes(cloud.data), dtype=CLOUD_DTYPE)
        assert len(points) == cloud.width > 100 and set(points["object_id"]) == {1}
        assert np.abs(points["z"] - disc_depth[-1]).max() < 0.01
        markers = [m for array in client.markers for m in array.markers if m.ns == "sam2_3d"]
        assert markers and all(m.header.frame_id == DEPTH_FRAME for m in markers)
        assert {m.id for m in markers} == {2, 3}  # box and label of object 1
        if rgbd.vision_msgs:
            detection = wait_for(lambda: rgbd.detections, 10, "3D detections")[-1].detections[0]
            assert detection.id == "1" and detection.header.frame_id == DEPTH_FRAME
            assert detection.bbox.size.x == pytest.approx(0.24, abs=0.05)


def depth_values(diagnostics: list[DiagnosticArray]) -> dict[str, str]:
    values = {kv.key: kv.value for kv in diagnostics[-1].status[0].values}
    return {key: value for key, value in values.items() if key.startswith("depth_")}


@needs_checkpoint
def test_bad_depth_input_is_counted_and_2d_goes_on(context) -> None:
    """Each kind of bad depth input leaves the frame's 2D results as they were, its 3D invalid
    (zeros, not NaN), and is counted in the diagnostics."""
    clip, _ = approaching_disc_clip(num_frames=8)
    truth = clip.masks[:, 0]
    node = make_node(context, "sam2_bad_depth", depth_topic="/rgbd/depth/image_raw")
    client = Client(context, node_name="sam2_bad_depth", image_topic="/rgbd/color/image_raw")
    rgbd = DepthClient(client, "sam2_bad_depth")
    # No depth on the disc nor 15 px around it (where the tracked mask may spill over).
    holes = np.where(dilate(truth[5], 15), 0.0, clip.depth[5])
    cases = [  # (depth, camera info, the diagnostics counter it raises)
        (None, None, "depth_no_partner"),
        (depth_image(clip.depth[1], stamp_of(1)), None, "depth_no_camera_info"),
        (depth_image(clip.depth[2], stamp_of(2)), camera_info(stamp_of(2), k=[0.0] * 9),
         "depth_bad_camera_model"),
        (depth_image(clip.depth[3][:, :HEIGHT], stamp_of(3)),
         camera_info(stamp_of(3), size=(HEIGHT, HEIGHT)), "depth_bad_camera_model"),  # 480x480
        (depth_image(clip.depth[4], stamp_of(4) + 200_000_000), camera_info(stamp_of(4)),
         "depth_no_partner"),  # 200 ms off
        (depth_image(holes, stamp_of(5)), camera_info(stamp_of(5)), "depth_objects_invalid"),
        (depth_image(clip.depth[6], stamp_of(6), "32FC1"), camera_info(stamp_of(6)), None),
        # Depth at half the colour resolution (same view) with its own intrinsics: 3D as well.
        (depth_image(clip.depth[7][::2, ::2], stamp_of(7)),
         camera_info(stamp_of(7), k=HALF_K, size=(WIDTH // 2, HEIGHT // 2)), None),
    ]
    with spinning(context, node, client.node):
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        wait_for(lambda: client.add_prompt.service_is_ready(), 60, "the add_prompt service")
        rgbd.wait_matched()
        rgbd.show(clip.frames[0], stamp_of(0), None, None)
        mask = array_to_image(truth[0].astype(np.uint8) * 255, encoding="mono8", header=Header())
        reply = client.call(client.add_prompt, AddPrompt.Request(object_id=1, mask=mask))
        assert reply.success and not reply.position_3d.valid  # no depth yet: 2D only
        rejected = Image(header=stamped(DEPTH_FRAME, stamp_of(1)), height=2, width=2,
                         encoding="8UC1", step=2, data=bytes(4))
        rgbd.depth.publish(rejected)
        for t, (depth, info, counter) in enumerate(cases[1:], 1):
            before = depth_values(wait_for(lambda: client.diagnostics, 10, "diagnostics"))
            result = next(m for m in rgbd.show(clip.frames[t], stamp_of(t), depth, info).masks
                          if m.object_id == 1)
            assert result.visible and image_to_mask(result.mask).any(), t  # 2D unchanged
            position = result.position_3d
            values = [position.centroid.x, position.centroid.y, position.centroid.z,
                      position.box_size.x, position.box_size.y, position.box_size.z]
            assert np.isfinite(values).all()
            if counter is None:
                assert position.valid, f"frame {t} has 3D"
                assert abs(position.centroid.z - clip.depth[t][truth[t]].mean()) < 0.01, t
                continue
            assert not position.valid and not any(values), t
            wait_for(lambda: int(depth_values(client.diagnostics).get(counter, 0))
                     > int(before[counter]), 10, f"{counter} to rise on frame {t}")
        final = wait_for(lambda: (values := depth_values(client.diagnostics))
                         and int(values["depth_frames_paired"]) >= 2 and values, 10,
                         "diagnostics of the last frame")
        assert int(final["depth_frames_rejected"]) >= 1  # the 8UC1 depth frame
        assert int(final["depth_frames_unpaired"]) >= 5  # frames 0-4


@needs_checkpoint
def test_without_depth_topic_there_is_no_3d_output(context) -> None:
    clip, _ = approaching_disc_clip(num_frames=2)
    node = make_node(context, "sam2_no_depth")
    client = Client(context, node_name="sam2_no_depth", image_topic="/rgbd/color/image_raw")
    rgbd = DepthClient(client, "sam2_no_depth")
    with spinning(context, node, client.node):
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        published = {publisher.topic_name for publisher in node.publishers}  # local, no discovery
        assert "/sam2_no_depth/masks" in published
        assert not published & {"/sam2_no_depth/points", "/sam2_no_depth/detections_3d"}
        subscribed = {subscription.topic_name for subscription in node.subscriptions}
        assert subscribed == {"/rgbd/color/image_raw"}
        masks = rgbd.show(clip.frames[0], stamp_of(0), depth_image(clip.depth[0], stamp_of(0)),
                          camera_info(stamp_of(0)))
        assert masks.masks == []
        values = wait_for(lambda: client.diagnostics, 10, "diagnostics")[-1].status[0].values
        assert not [kv.key for kv in values if kv.key.startswith("depth_")]


@pytest.mark.parametrize("vision_msgs_importable", [True, False])
def test_detections_3d_need_vision_msgs_and_say_so_once(context, monkeypatch,
                                                        vision_msgs_importable) -> None:
    """Without vision_msgs (no PyPI wheel) DepthInput makes every other output and says once,
    at configure, that ~/detections_3d is off."""
    from rclpy.lifecycle import LifecycleNode

    from sam2_ros.ros.depth_input import DepthInput
    from sam2_ros.ros.parameters import NodeConfig

    if vision_msgs_importable:
        pytest.importorskip("vision_msgs.msg", reason="vision_msgs has no PyPI wheel; setup.sh "
                            "builds it only with SAM2_ROS_VENDOR")
    else:
        monkeypatch.setitem(sys.modules, "vision_msgs.msg", None)  # import raises ImportError
    node = LifecycleNode("depth_input_probe", context=context)
    said = []
    monkeypatch.setattr(node, "get_logger", lambda: type("Logger", (), {
        "info": staticmethod(said.append), "warning": staticmethod(said.append)})())
    try:
        depth = DepthInput.create(node, NodeConfig(depth_topic="/probe/depth/image_raw"))
        published = {publisher.topic_name for publisher in node.publishers}  # local, no discovery
        assert "/depth_input_probe/points" in published
        assert ("/depth_input_probe/detections_3d" in published) == vision_msgs_importable
        off = [line for line in said if "~/detections_3d is off" in line]
        assert len(off) == (0 if vision_msgs_importable else 1), said
        assert depth.diagnostics()["depth_frames_paired"] == "0"
        depth.destroy()
        assert DepthInput.create(node, NodeConfig()) is None  # no depth_topic: 3D off
    finally:
        node.destroy_node()
