"""The node's depth input: subscriptions, the depth ring, 3D estimates and their publishers.

The node creates one DepthInput at configure when `depth_topic` is set. Depth frames and
camera info are only stored by their callbacks; the work happens when the node publishes a
tracked frame's results (`for_frame`, on the worker thread) or answers AddPrompt
(`fill_prompt_response`). Bad input is warned about (throttled, per kind) and counted in the
node's diagnostics; 2D tracking never waits for depth nor depends on it.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np
from rclpy.lifecycle import LifecycleNode
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from sam2_ros.msg import ObjectMaskArray
from sam2_ros.ros import conversions, depth_msgs
from sam2_ros.ros.frame_buffer import BufferedFrame, format_stamp, stamp_to_ns
from sam2_ros.ros.optional_msgs import import_vision_msgs
from sam2_ros.ros.parameters import NodeConfig
from sam2_ros.ros.session import ObjectResultLike
from sam2_ros.spatial.camera import CameraModelError, Intrinsics, check_same_view, depth_in_metres
from sam2_ros.spatial.estimate import EMPTY_MASK, DepthSettings, Object3D, estimate_object, \
    invalid, resample_mask
from sam2_ros.spatial.pairing import NearestStampBuffer
from sam2_ros.spatial.throttle import ThrottledWarnings
from sam2_ros.srv import AddPrompt


# Kinds of bad input, each warned about (throttled) and counted in diagnostics.
PROBLEMS = ("depth_frames_rejected", "depth_no_partner", "depth_no_camera_info",
            "depth_bad_camera_model", "depth_objects_invalid", "depth_errors")


@dataclass(frozen=True)
class DepthFrame:
    header: Header
    raw: np.ndarray = field(repr=False)  # (H, W) uint16 millimetres or float32 metres
    encoding: str


def camera_info_topic(config: NodeConfig) -> str:
    """The CameraInfo topic: as set, or camera_info beside the depth image topic."""
    if config.camera_info_topic:
        return config.camera_info_topic
    namespace, _, _ = config.depth_topic.rpartition("/")
    return f"{namespace}/camera_info" if namespace or config.depth_topic.startswith("/") \
        else "camera_info"


def depth_settings(config: NodeConfig) -> DepthSettings:
    return DepthSettings(min_depth=config.min_depth, max_depth=config.max_depth,
                         erode_pixels=config.depth_erode_pixels,
                         outlier_mads=config.depth_outlier_mads,
                         min_points=config.min_depth_points)


class FrameDepth:
    """One tracked frame with its paired depth: 3D per object, computed once, on first use."""

    def __init__(self, depth: DepthFrame, camera: Intrinsics, masks: dict[int, np.ndarray],
                 scores: dict[int, float], settings: DepthSettings, cloud_stride: int,
                 warn: Callable[[str, str], None]) -> None:
        self.header = depth.header
        self._warn = warn  # (kind, text), for objects without valid 3D
        self._depth = depth
        self._camera = camera
        self._masks = masks  # (H, W) bool each, on the colour grid
        self._scores = scores
        self._settings = settings
        self._cloud_stride = cloud_stride

    @functools.cached_property
    def estimates(self) -> dict[int, Object3D]:
        try:
            depth = depth_in_metres(self._depth.raw, self._depth.encoding)  # (h, w) metres
            estimates = {object_id: estimate_object(resample_mask(mask, depth.shape), depth,
                                                    self._camera, self._settings,
                                                    cloud_stride=self._cloud_stride)
                         for object_id, mask in self._masks.items()}
        except Exception as error:  # a 3D failure must never cost the frame's 2D results
            self._warn("depth_errors", f"3D estimation failed: {error!r}")
            return {object_id: invalid(f"failed: {error!r}") for object_id in self._masks}
        for object_id, estimate in estimates.items():
            if not estimate.valid and estimate.problem != EMPTY_MASK:  # empty: out of view
                stamp = stamp_to_ns(self.header.stamp.sec, self.header.stamp.nanosec)
                self._warn("depth_objects_invalid", f"no 3D for object {object_id} on the depth "
                           f"frame stamped {format_stamp(stamp)}: {estimate.problem}")
        return estimates

    def fill_masks(self, masks: ObjectMaskArray) -> ObjectMaskArray:
        """Set each ObjectMask's position_3d."""
        for item in masks.masks:
            item.position_3d = depth_msgs.object_3d(self.header, self.estimates.get(item.object_id))
        return masks

    def markers(self) -> list:
        return depth_msgs.box_markers_3d(self.header, self.estimates)

    def cloud(self) -> PointCloud2:
        return depth_msgs.point_cloud(self.header, self.estimates)

    def detections(self, vision_msgs_msg: ModuleType):
        return depth_msgs.detections_3d(vision_msgs_msg, self.header, self.estimates,
                                        self._scores)


class DepthInput:
    """Owns the depth and camera-info subscriptions, the depth ring and the 3D publishers."""

    def __init__(self, node: LifecycleNode, config: NodeConfig) -> None:
        self._node = node
        self._settings = depth_settings(config)
        self._tolerance_ns = int(round(config.depth_sync_tolerance * 1e9))
        self._cloud_stride = config.points_stride
        self._publish_points = config.publish_points
        # As long as the frame buffer: a stamped prompt on a buffered frame finds its depth.
        self._depth_frames: NearestStampBuffer[DepthFrame] = NearestStampBuffer(
            capacity=max(config.frame_buffer_length, 2))
        self._camera_info: CameraInfo | None = None
        self._problems = ThrottledWarnings(node.get_logger().warning, kinds=PROBLEMS)
        self.paired = 0
        self.unpaired = 0
        self._points_pub = node.create_lifecycle_publisher(PointCloud2, "~/points", 10)
        self._vision_msgs = self._import_vision_msgs() if config.publish_detections_3d else None
        self._detections_pub = (node.create_lifecycle_publisher(
            self._vision_msgs.Detection3DArray, "~/detections_3d", 10)
            if self._vision_msgs is not None else None)
        info_topic = camera_info_topic(config)
        self._depth_subscriptions = [
            node.create_subscription(Image, config.depth_topic, self._on_depth,
                                     qos_profile_sensor_data),
            node.create_subscription(CameraInfo, info_topic, self._on_camera_info,
                                     qos_profile_sensor_data)]
        node.get_logger().info(
            f"3D from depth {node.resolve_topic_name(config.depth_topic)} with camera info "
            f"{node.resolve_topic_name(info_topic)} (sync tolerance "
            f"{config.depth_sync_tolerance * 1e3:.0f} ms)")

    @classmethod
    def create(cls, node: LifecycleNode, config: NodeConfig) -> DepthInput | None:
        """A DepthInput, or None when depth_topic is empty (3D off)."""
        return cls(node, config) if config.depth_topic else None

    def _import_vision_msgs(self) -> ModuleType | None:
        """vision_msgs.msg, or None (said once): it has no PyPI wheel."""
        vision_msgs = import_vision_msgs()
        if vision_msgs is None:
            self._node.get_logger().info(
                "~/detections_3d is off: vision_msgs is not importable; install "
                "ros-<distro>-vision-msgs for it (the other 3D outputs work without it)")
        return vision_msgs

    def destroy(self) -> None:
        for subscription in self._depth_subscriptions:
            self._node.destroy_subscription(subscription)
        self._depth_subscriptions = []
        for publisher in (self._points_pub, self._detections_pub):
            if publisher is not None:
                self._node.destroy_lifecycle_publisher(publisher)
        self._depth_frames.clear()

    # Callbacks: store only ------------------------------------------------------------
    def _on_depth(self, msg: Image) -> None:
        try:
            raw = conversions.depth_image_to_array(msg)
        except conversions.ImageConversionError as error:
            self._problems.warn("depth_frames_rejected", f"depth frame rejected: {error}")
            return
        self._depth_frames.add(stamp_to_ns(msg.header.stamp.sec, msg.header.stamp.nanosec),
                               DepthFrame(header=msg.header, raw=raw, encoding=msg.encoding))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    # Work -----------------------------------------------------------------------------
    def _paired_depth(self, frame: BufferedFrame) -> tuple[DepthFrame, Intrinsics] | None:
        """The depth frame paired with `frame` and its intrinsics, or None (warned, counted)."""
        found = self._depth_frames.nearest(frame.stamp_ns)
        if found is None or abs(found.stamp_ns - frame.stamp_ns) > self._tolerance_ns:
            where = ("no depth frame received yet" if found is None else
                     f"the nearest depth stamp {format_stamp(found.stamp_ns)} is "
                     f"{(found.stamp_ns - frame.stamp_ns) / 1e6:+.1f} ms away")
            self._problems.warn("depth_no_partner", f"no 3D for the frame stamped "
                                f"{format_stamp(frame.stamp_ns)}: {where} (depth_sync_tolerance "
                                f"{self._tolerance_ns / 1e6:.1f} ms)")
            return None
        depth = found.value
        info = self._camera_info
        if info is None:
            self._problems.warn("depth_no_camera_info", "no 3D: no CameraInfo received yet on "
                                "the camera_info topic")
            return None
        try:
            camera = depth_msgs.intrinsics(info)
            height, width = depth.raw.shape
            camera.check_image(width, height)
            check_same_view((frame.height, frame.width), (height, width))
        except CameraModelError as error:
            self._problems.warn("depth_bad_camera_model", f"no 3D: {error}")
            return None
        return depth, camera

    def for_frame(self, frame: BufferedFrame, results: dict[int, ObjectResultLike]
                  ) -> FrameDepth | None:
        """The frame's depth pairing (3D computed lazily), after publishing ~/points and
        ~/detections_3d when subscribed; None without a usable paired depth frame."""
        paired = self._paired_depth(frame)
        if paired is None:
            self.unpaired += 1
            return None
        self.paired += 1
        want_points = self._publish_points and self._points_pub.get_subscription_count() > 0
        spatial = FrameDepth(*paired, masks={i: r.mask for i, r in results.items()},
                             scores={i: float(r.score) for i, r in results.items()},
                             settings=self._settings,
                             cloud_stride=self._cloud_stride if want_points else 0,
                             warn=self._problems.warn)
        if want_points:
            self._points_pub.publish(spatial.cloud())
        if self._detections_pub is not None and self._detections_pub.get_subscription_count():
            self._detections_pub.publish(spatial.detections(self._vision_msgs))
        return spatial

    def fill_prompt_response(self, response: AddPrompt.Response, frame: BufferedFrame,
                             result: ObjectResultLike, object_id: int) -> AddPrompt.Response:
        """Set the reply's position_3d from the prompted frame's paired depth (if any)."""
        paired = self._paired_depth(frame)
        if paired is None:
            return response
        spatial = FrameDepth(*paired, masks={object_id: result.mask},
                             scores={object_id: float(result.score)}, settings=self._settings,
                             cloud_stride=0, warn=self._problems.warn)
        response.position_3d = depth_msgs.object_3d(spatial.header, spatial.estimates[object_id])
        return response

    def diagnostics(self) -> dict[str, str]:
        """Counters for the node's diagnostics status."""
        values = {"depth_frames_paired": str(self.paired),
                  "depth_frames_unpaired": str(self.unpaired),
                  "depth_frames_buffered": str(len(self._depth_frames))}
        values.update({kind: str(count) for kind, count in self._problems.snapshot().items()})
        return values
