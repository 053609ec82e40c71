"""Depth messages in and out, without a node: depth images, CameraInfo, cloud, markers."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sam2_ros.msg", reason="msg/srv not built: run bash scripts/setup.sh and "
                    "source scripts/env.sh")

from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from rgbd_scenes import BOX_SCENE_DEFAULTS, CAMERA, K, box_scene  # noqa: E402
from sam2_ros.depth_view import depth_message  # noqa: E402
from sam2_ros.ros import depth_msgs  # noqa: E402
from sam2_ros.ros.conversions import ImageConversionError, depth_image_to_array  # noqa: E402
from sam2_ros.ros.depth_input import camera_info_topic  # noqa: E402
from sam2_ros.ros.parameters import NodeConfig  # noqa: E402
from sam2_ros.spatial.camera import CameraModelError, depth_from_metres, depth_in_metres  # noqa: E402
from sam2_ros.spatial.estimate import DepthSettings, estimate_object, invalid  # noqa: E402

HEADER = Header(frame_id="depth_optical")


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_depth_images_round_trip(encoding) -> None:
    depth = np.array([[0.5, 1.2345, np.nan], [0.0, 3.0, 70.0]])
    raw = depth_image_to_array(depth_message(depth, HEADER, encoding))
    metres = depth_in_metres(raw, encoding)
    if encoding == "16UC1":  # millimetres; NaN and beyond 65.535 m become 0 (no depth)
        np.testing.assert_allclose(metres, [[0.5, 1.234, 0], [0, 3, 0]], atol=1e-6)
    else:
        np.testing.assert_array_equal(metres, depth.astype(np.float32))


def test_depth_images_big_endian_and_padded_rows() -> None:
    values = np.array([[1000, 2000, 3000], [4000, 5000, 6000]], dtype=">u2")
    padded = np.zeros((2, 4), dtype=">u2")
    padded[:, :3] = values
    msg = Image(height=2, width=3, encoding="16UC1", is_bigendian=1, step=8, data=padded.tobytes())
    np.testing.assert_array_equal(depth_image_to_array(msg), values.astype(np.uint16))


@pytest.mark.parametrize("change, message", [
    ({"encoding": "rgb8"}, "unsupported depth encoding 'rgb8'"),
    ({"step": 5}, "step 5"),
    ({"data": bytes(10)}, "data has 10 bytes; expected step * height = 6 * 2 = 12"),
    ({"width": 0}, "empty image"),
])
def test_bad_depth_images_say_what_is_wrong(change, message) -> None:
    msg = Image(height=2, width=3, encoding="16UC1", step=6, data=bytes(12))
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ImageConversionError, match=message.replace("*", r"\*")):
        depth_image_to_array(msg)


def test_camera_info() -> None:
    assert depth_msgs.intrinsics(CameraInfo(width=640, height=480, k=K)) == CAMERA
    with pytest.raises(CameraModelError, match="not calibrated"):
        depth_msgs.intrinsics(CameraInfo(width=640, height=480))


def test_camera_info_topic_defaults_beside_the_depth_topic() -> None:
    def topic(depth: str, info: str = "") -> str:
        return camera_info_topic(NodeConfig(depth_topic=depth, camera_info_topic=info))

    assert topic("/camera/camera/aligned_depth_to_color/image_raw") == \
        "/camera/camera/aligned_depth_to_color/camera_info"
    assert topic("depth/image_raw") == "depth/camera_info"
    assert topic("depth") == "camera_info"
    assert topic("/depth") == "/camera_info"
    assert topic("/a/depth", "/b/info") == "/b/info"


def estimates():
    mask, depth = box_scene(**BOX_SCENE_DEFAULTS)
    return {3: estimate_object(mask, depth.astype(np.float32), CAMERA, DepthSettings(),
                               cloud_stride=8),
            5: invalid("no depth")}


def test_object_3d_messages() -> None:
    found = estimates()
    valid, missing = depth_msgs.object_3d(HEADER, found[3]), depth_msgs.object_3d(HEADER, found[5])
    assert valid.valid and valid.header.frame_id == "depth_optical"
    assert valid.centroid.z == pytest.approx(0.8) and valid.num_points == found[3].num_points
    assert not missing.valid and missing.centroid.z == 0 and missing.box_size.x == 0
    assert not depth_msgs.object_3d(HEADER, None).valid


def test_point_cloud_layout() -> None:
    found = estimates()
    cloud = depth_msgs.point_cloud(HEADER, found)
    points = np.frombuffer(bytes(cloud.data), dtype=depth_msgs.CLOUD_DTYPE)
    assert cloud.header.frame_id == "depth_optical" and cloud.height == 1
    assert cloud.width == len(points) == len(found[3].points) > 0
    assert cloud.point_step == 16 and cloud.row_step == 16 * cloud.width and not cloud.is_bigendian
    np.testing.assert_array_equal(points["object_id"], 3)
    np.testing.assert_allclose(points["x"], found[3].points[:, 0])
    empty = depth_msgs.point_cloud(HEADER, {})
    assert empty.width == 0 and len(empty.data) == 0


def test_box_markers_3d() -> None:
    found = estimates()
    box, label = depth_msgs.box_markers_3d(HEADER, found)  # object 5 is invalid: none for it
    assert (box.type, box.id, label.type, label.id) == (Marker.LINE_LIST, 6, Marker.TEXT_VIEW_FACING, 7)
    assert box.ns == label.ns == "sam2_3d" and box.header.frame_id == "depth_optical"
    ends = np.array([[p.x, p.y, p.z] for p in box.points])  # (24, 3): 12 edges
    assert ends.shape == (24, 3)
    np.testing.assert_allclose(ends.max(0) - ends.min(0), found[3].box_size)
    edge_lengths = np.linalg.norm(ends[0::2] - ends[1::2], axis=1)
    np.testing.assert_allclose(sorted(edge_lengths), sorted(np.repeat(found[3].box_size, 4)))
    assert label.text == f"3: {np.linalg.norm(found[3].centroid):.2f} m"


def test_detections_3d() -> None:
    vision_msgs_msg = pytest.importorskip("vision_msgs.msg", reason="vision_msgs has no PyPI "
                                          "wheel; setup.sh builds it only with SAM2_ROS_VENDOR")
    found = estimates()
    array = depth_msgs.detections_3d(vision_msgs_msg, HEADER, found, {3: 0.9, 5: 0.4})
    assert array.header.frame_id == "depth_optical" and len(array.detections) == 1
    detection = array.detections[0]
    assert detection.id == "3" and detection.results[0].hypothesis.score == pytest.approx(0.9)
    assert detection.bbox.size.x == pytest.approx(found[3].box_size[0])
    assert detection.results[0].pose.pose.position.z == pytest.approx(found[3].centroid[2])


def test_depth_parameters_are_validated_together() -> None:
    from sam2_ros.ros.parameters import ParameterError, validate

    with pytest.raises(ParameterError, match="min_depth=2.0 must be below max_depth=1.0"):
        validate(NodeConfig(min_depth=2.0, max_depth=1.0))
    with pytest.raises(ParameterError, match="points_stride=0: expected 1..64"):
        validate(NodeConfig(points_stride=0))
    assert validate(NodeConfig(depth_topic="/d", min_depth=0.2, max_depth=4.0)).max_depth == 4.0
