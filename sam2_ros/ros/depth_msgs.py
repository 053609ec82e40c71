"""Depth-related messages in and out: CameraInfo -> intrinsics, per-object 3D -> Object3D,
PointCloud2, rviz box markers and vision_msgs detections. Pure functions; no node needed."""
from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point, Vector3
from sensor_msgs.msg import CameraInfo, PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker

from sam2_ros.msg import Object3D as Object3DMsg
from sam2_ros.ros.visualization import object_colour
from sam2_ros.spatial.camera import Intrinsics
from sam2_ros.spatial.estimate import Object3D

MARKER_NAMESPACE = "sam2_3d"
# x, y, z (metres) and the object id per point: what rviz colours a cloud by.
CLOUD_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("object_id", "<u4")])
CLOUD_FIELDS = [PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
                PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
                PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
                PointField(name="object_id", offset=12, datatype=PointField.UINT32, count=1)]
# The 12 edges of a box as pairs of corner indices; corner i has bit 0 = x, 1 = y, 2 = z high.
_BOX_EDGES = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]


def intrinsics(msg: CameraInfo) -> Intrinsics:
    """The pinhole intrinsics of a CameraInfo; CameraModelError when K is unusable."""
    return Intrinsics.from_k(msg.k, width=msg.width, height=msg.height)


def _point(values: np.ndarray) -> Point:
    return Point(x=float(values[0]), y=float(values[1]), z=float(values[2]))


def object_3d(header: Header, estimate: Object3D | None) -> Object3DMsg:
    """The message of one estimate (header = the depth image's); invalid without one."""
    msg = Object3DMsg(header=header)
    if estimate is None or not estimate.valid:
        msg.num_points = estimate.num_points if estimate is not None else 0
        return msg
    size = estimate.box_size
    msg.valid = True
    msg.centroid = _point(estimate.centroid)
    msg.box_center = _point(estimate.box_center)
    msg.box_size = Vector3(x=float(size[0]), y=float(size[1]), z=float(size[2]))
    msg.num_points = estimate.num_points
    return msg


def point_cloud(header: Header, estimates: Mapping[int, Object3D]) -> PointCloud2:
    """Every object's cloud points in one unordered PointCloud2 (x, y, z float32, object_id)."""
    ids = sorted(estimates)
    points = [estimates[i].points for i in ids]  # (N_i, 3) each
    cloud = np.empty(sum(len(p) for p in points), dtype=CLOUD_DTYPE)  # (N,)
    if ids:
        stacked = np.concatenate(points, axis=0)  # (N, 3)
        cloud["x"], cloud["y"], cloud["z"] = stacked[:, 0], stacked[:, 1], stacked[:, 2]
        cloud["object_id"] = np.repeat(ids, [len(p) for p in points])
    return PointCloud2(header=header, height=1, width=len(cloud), fields=CLOUD_FIELDS,
                       is_bigendian=False, point_step=CLOUD_DTYPE.itemsize,
                       row_step=CLOUD_DTYPE.itemsize * len(cloud), data=cloud.tobytes(),
                       is_dense=True)


def box_markers_3d(header: Header, estimates: Mapping[int, Object3D]) -> list[Marker]:
    """A wireframe box and an id label ("<id>: <distance> m") per valid object, in the depth
    image's frame; ids 2k and 2k + 1 of namespace sam2_3d, 1 s lifetime."""
    markers = []
    for object_id in sorted(estimates):
        estimate = estimates[object_id]
        if not estimate.valid:
            continue
        red, green, blue = object_colour(object_id)
        colour = ColorRGBA(r=red / 255, g=green / 255, b=blue / 255, a=1.0)
        low = estimate.box_center - estimate.box_size / 2  # (3,)
        corners = low + estimate.box_size * np.array(
            [[(i >> axis) & 1 for axis in range(3)] for i in range(8)])  # (8, 3)
        box = Marker(header=header, ns=MARKER_NAMESPACE, id=2 * object_id, type=Marker.LINE_LIST,
                     action=Marker.ADD, color=colour, lifetime=Duration(sec=1))
        box.pose.orientation.w = 1.0
        box.scale.x = 0.005  # line width, metres
        box.points = [_point(corners[i]) for edge in _BOX_EDGES for i in edge]
        label = Marker(header=header, ns=MARKER_NAMESPACE, id=2 * object_id + 1,
                       type=Marker.TEXT_VIEW_FACING, action=Marker.ADD, color=colour,
                       text=f"{object_id}: {float(np.linalg.norm(estimate.centroid)):.2f} m",
                       lifetime=Duration(sec=1))
        above = [0.0, estimate.box_size[1] / 2 + 0.03, 0.0]  # 3 cm over the box (y is down)
        label.pose.position = _point(estimate.box_center - above)
        label.pose.orientation.w = 1.0
        label.scale.z = 0.04  # text height, metres
        markers += [box, label]
    return markers


def detections_3d(vision_msgs_msg: ModuleType, header: Header, estimates: Mapping[int, Object3D],
                  scores: Mapping[int, float]):
    """A vision_msgs/Detection3DArray of the valid objects: id = the object id, bbox = the
    box, one hypothesis (class "sam2_object", the mask's score) posed at the centroid.
    `vision_msgs_msg` is the imported vision_msgs.msg (optional: it has no PyPI wheel)."""
    msg = vision_msgs_msg.Detection3DArray(header=header)
    for object_id in sorted(estimates):
        estimate = estimates[object_id]
        if not estimate.valid:
            continue
        detection = vision_msgs_msg.Detection3D(header=header, id=str(object_id))
        detection.bbox.center.position = _point(estimate.box_center)
        detection.bbox.center.orientation.w = 1.0
        size = estimate.box_size
        detection.bbox.size = Vector3(x=float(size[0]), y=float(size[1]), z=float(size[2]))
        hypothesis = vision_msgs_msg.ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = "sam2_object"
        hypothesis.hypothesis.score = float(scores.get(object_id, 0.0))
        hypothesis.pose.pose.position = _point(estimate.centroid)
        hypothesis.pose.pose.orientation.w = 1.0
        detection.results = [hypothesis]
        msg.detections.append(detection)
    return msg
