"""Service requests -> validated plain prompts, and tracker results -> responses.

Everything a request can get wrong without looking at a frame is caught here, before
a job reaches the worker; the frame-dependent checks live in the session.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sensor_msgs.msg import RegionOfInterest
from std_msgs.msg import Header

from sam2_ros.msg import ObjectMask, ObjectMaskArray
from sam2_ros.ros.conversions import image_to_mask, mask_to_image
from sam2_ros.ros.frame_buffer import stamp_to_ns
from sam2_ros.ros.session import ObjectResultLike, Prompt
from sam2_ros.ros.visualization import bounding_box
from sam2_ros.srv import AddPrompt


class RequestError(ValueError):
    """A request that is wrong in itself (before looking at any frame)."""


def check_object_id(object_id: int, *, max_object_id: int) -> int:
    if not 1 <= object_id <= max_object_id:
        raise RequestError(f"object_id must be in 1..{max_object_id} (0 is the label image's "
                           f"background); given {object_id}")
    return object_id


def prompt_from_request(request: AddPrompt.Request, *, max_object_id: int) -> Prompt:
    """Validate an AddPrompt request and return it as arrays; raises RequestError."""
    check_object_id(request.object_id, max_object_id=max_object_id)
    points = labels = box = mask = None
    if request.points or len(request.labels):
        points = np.array([[p.x, p.y] for p in request.points], dtype=np.float32).reshape(-1, 2)
        labels = np.asarray(request.labels, dtype=np.int32)  # (N,)
        if labels.shape != (len(points),):
            raise RequestError(f"need one label per point: {len(points)} points, "
                               f"{labels.size} labels")
        if not np.isfinite(points).all():
            raise RequestError("points contain NaN or infinity")
        if not np.isin(labels, (0, 1)).all():
            raise RequestError(f"labels must be 1 (object) or 0 (background); given "
                               f"{sorted(set(labels.tolist()))}")
    if len(request.box):
        box = np.asarray(request.box, dtype=np.float32)  # (4,)
        if box.shape != (4,):
            raise RequestError(f"box needs 4 values [x0, y0, x1, y1] or none; given {box.size}")
        if not np.isfinite(box).all():
            raise RequestError("box contains NaN or infinity")
    if request.mask.width or request.mask.height or len(request.mask.data):
        mask = image_to_mask(request.mask)  # (H, W)
    if points is None and box is None and mask is None:
        raise RequestError("empty prompt: give points with labels, a box, or a mask")
    if mask is not None and (points is not None or box is not None):
        raise RequestError("give either a mask or points/box, not both")
    if box is not None and not request.clear_old:
        raise RequestError("a box replaces the object's prompts on the frame: use "
                           "clear_old=true with a box")
    return Prompt(object_id=request.object_id, points=points, labels=labels, box=box,
                  mask=mask, clear_old=request.clear_old,
                  stamp_ns=stamp_to_ns(request.stamp.sec, request.stamp.nanosec))


def region_of_interest(mask: np.ndarray) -> RegionOfInterest:
    box = bounding_box(mask)
    if box is None:
        return RegionOfInterest()
    x0, y0, x1, y1 = box
    return RegionOfInterest(x_offset=x0, y_offset=y0, width=x1 - x0 + 1, height=y1 - y0 + 1)


def object_mask(object_id: int, result: ObjectResultLike, header: Header, *,
                label: tuple[str, float] = ("", 0.0)) -> ObjectMask:
    """`label`: the detection class id and score of a detector-made object."""
    return ObjectMask(object_id=object_id, mask=mask_to_image(result.mask, header=header),
                      score=float(result.score),
                      object_score_logit=float(result.object_score_logit),
                      visible=bool(result.visible), bounding_box=region_of_interest(result.mask),
                      class_id=label[0], class_score=float(label[1]))


def object_mask_array(header: Header, results: dict[int, ObjectResultLike], *,
                      labels: Mapping[int, tuple[str, float]] | None = None) -> ObjectMaskArray:
    labels = labels or {}
    return ObjectMaskArray(header=header, masks=[
        object_mask(object_id, results[object_id], header,
                    label=labels.get(object_id, ("", 0.0)))
        for object_id in sorted(results)])


def fill_prompt_response(response: AddPrompt.Response, *, header: Header,
                         result: ObjectResultLike, object_id: int) -> AddPrompt.Response:
    response.success = True
    response.message = (f"object {object_id}: score {float(result.score):.3f}, "
                        f"{'visible' if result.visible else 'not visible'}, "
                        f"{int(result.mask.sum())} pixels")
    response.header = header
    response.mask = mask_to_image(result.mask, header=header)
    response.score = float(result.score)
    response.visible = bool(result.visible)
    return response
