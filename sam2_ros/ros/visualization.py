"""What people look at: an overlay, a label image and rviz markers from per-object masks.

Pure numpy/PIL apart from the marker messages; nothing here needs a running node.
"""
from __future__ import annotations

import colorsys
from collections.abc import Mapping

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from PIL import Image as PILImage
from PIL import ImageDraw
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, inclusive


def object_colour(object_id: int) -> tuple[int, int, int]:
    """A stable, well separated RGB colour per object id (golden-ratio hue steps)."""
    hue = (object_id * 0.618033988749895) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(red * 255), int(green * 255), int(blue * 255)


def bounding_box(mask: np.ndarray) -> Box | None:
    """The tight inclusive box around an (H, W) bool mask, or None when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def label_image(masks: Mapping[int, np.ndarray], *, height: int, width: int,
                dtype: type = np.uint16) -> np.ndarray:
    """(H, W) image whose pixels hold the object id (0 = background).

    Objects are painted in increasing id order, so a larger id wins where masks overlap.
    """
    limit = np.iinfo(dtype).max
    labels = np.zeros((height, width), dtype=dtype)  # (H, W)
    for object_id in sorted(masks):
        if not 0 < object_id <= limit:
            raise ValueError(f"object id {object_id} does not fit a {np.dtype(dtype)} label "
                             f"image (1..{limit})")
        labels[masks[object_id]] = object_id
    return labels


def overlay(frame: np.ndarray, masks: Mapping[int, np.ndarray], *,
            alpha: float = 0.5) -> np.ndarray:
    """The (H, W, 3) RGB frame with each mask tinted in its colour and labelled with its id."""
    blended = frame.astype(np.float32)  # (H, W, 3)
    for object_id in sorted(masks):
        colour = np.asarray(object_colour(object_id), dtype=np.float32)  # (3,)
        mask = masks[object_id]
        blended[mask] = (1.0 - alpha) * blended[mask] + alpha * colour
    picture = PILImage.fromarray(blended.round().astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for object_id in sorted(masks):
        box = bounding_box(masks[object_id])
        if box is None:
            continue
        draw.rectangle(box, outline=object_colour(object_id), width=2)
        draw.text((box[0] + 3, box[1] + 2), str(object_id), fill=(255, 255, 255),
                  stroke_width=2, stroke_fill=(0, 0, 0))
    return np.asarray(picture)


def box_markers(header: Header, boxes: Mapping[int, Box], *, width: int, height: int,
                namespace: str = "sam2") -> MarkerArray:
    """Boxes and id labels for rviz, drawn on a virtual image plane in the camera frame.

    Without camera intrinsics the node cannot place boxes in 3D, so the image is drawn
    as a 1 m wide plane at z = 1 m in the optical frame (x right, y down), centred on
    the optical axis. The first marker clears the previous frame's markers.
    """
    scale = 1.0 / width

    def plane_point(x: float, y: float) -> Point:
        return Point(x=(x - width / 2) * scale, y=(y - height / 2) * scale, z=1.0)

    markers = [Marker(header=header, ns=namespace, action=Marker.DELETEALL)]
    for object_id in sorted(boxes):
        x0, y0, x1, y1 = boxes[object_id]
        red, green, blue = object_colour(object_id)
        colour = ColorRGBA(r=red / 255, g=green / 255, b=blue / 255, a=1.0)
        outline = Marker(header=header, ns=namespace, id=2 * object_id, type=Marker.LINE_STRIP,
                         action=Marker.ADD, color=colour, lifetime=Duration(sec=1))
        outline.pose.orientation.w = 1.0
        outline.scale.x = 2 * scale
        outline.points = [plane_point(x, y)
                          for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))]
        label = Marker(header=header, ns=namespace, id=2 * object_id + 1,
                       type=Marker.TEXT_VIEW_FACING, action=Marker.ADD, color=colour,
                       text=str(object_id), lifetime=Duration(sec=1))
        label.pose.position = plane_point(x0, y0 - 8)
        label.pose.orientation.w = 1.0
        label.scale.z = 16 * scale
        markers += [outline, label]
    return MarkerArray(markers=markers)
