"""Detector-driven tracking, the ROS side: vision_msgs in and out, pause service, counters.

A detector (YOLO, Grounding DINO, OWL, ...) publishes `vision_msgs/Detection2DArray` on
`detections_topic`, stamped with the image it saw. Each array becomes a job on the worker
(the thread that owns the tracker): find that frame's mask boxes (`BoxHistory`), decide
(`association.Associator`), then apply every re-prompt and new object as box prompts on that
frame with one replay (`TrackingSession.add_prompts`) and remove forgotten objects.

vision_msgs has no PyPI wheel: it is imported here, lazily; without it the node runs and
says once that detections are off. Bad input (NaN or empty boxes, boxes outside the image,
stamps of frames no longer tracked, empty arrays, non-numeric class ids with a class filter)
is refused and counted, with a throttled warning.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from types import ModuleType

import numpy as np
from rclpy.lifecycle import LifecycleNode
from std_msgs.msg import Header
from std_srvs.srv import SetBool

from sam2_ros.ros.association import AssociationConfig, Associator, Detection, clip_box
from sam2_ros.ros.box_history import BoxHistory, StaleStampError, frame_period_ns, mask_box
from sam2_ros.ros.frame_buffer import FrameBuffer, FrameNotBufferedError, stamp_to_ns
from sam2_ros.ros.optional_msgs import import_vision_msgs
from sam2_ros.ros.parameters import NodeConfig
from sam2_ros.ros.session import ObjectResultLike, Prompt, PromptError, TrackingSession

WARN_PERIOD_S = 5.0  # per kind of problem
# Diagnostics keys, in the order they are reported.
COUNTERS = ("detection_arrays", "detections_received", "detections_matched",
            "detections_reprompted", "detections_new", "objects_forgotten",
            "detections_filtered", "detections_dropped_stale", "detections_dropped_bad_box",
            "detections_dropped_bad_class", "detections_dropped_over_max",
            "detection_arrays_dropped_empty", "detection_arrays_paused", "detection_rounds_failed")


@dataclass(frozen=True)
class DetectionBatch:
    """One Detection2DArray in plain data, with what its conversion refused."""

    stamp_ns: int
    detections: tuple[Detection, ...]
    bad_boxes: int = 0  # NaN, infinite, zero or negative size
    bad_classes: int = 0  # class id not an integer while a class filter is set


def detections_from_msg(msg, *, class_filter: bool) -> DetectionBatch:
    """A Detection2DArray as boxes (x0, y0, x1, y1), each with its best hypothesis; a box
    without hypotheses has class "" and score 1."""
    detections, bad_boxes, bad_classes = [], 0, 0
    for item in msg.detections:
        bbox = item.bbox
        cx, cy, w, h = bbox.center.position.x, bbox.center.position.y, bbox.size_x, bbox.size_y
        if not (np.isfinite([cx, cy, w, h]).all() and w > 0 and h > 0):
            bad_boxes += 1
            continue
        best = max(item.results, key=lambda r: r.hypothesis.score, default=None)
        class_id = best.hypothesis.class_id.strip() if best is not None else ""
        score = float(best.hypothesis.score) if best is not None else 1.0
        if class_filter and not _is_integer(class_id):
            bad_classes += 1
            continue
        box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float64)
        detections.append(Detection(box=box, class_id=class_id, score=score))
    return DetectionBatch(stamp_ns=stamp_to_ns(msg.header.stamp.sec, msg.header.stamp.nanosec),
                          detections=tuple(detections), bad_boxes=bad_boxes,
                          bad_classes=bad_classes)


def _is_integer(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def detection_array(vision: ModuleType, header: Header, results: Mapping[int, ObjectResultLike],
                    labels: Mapping[int, tuple[str, float]]):
    """The tracked objects visible on a frame as a Detection2DArray: box from the mask,
    `id` = the object id, one hypothesis (class id, score) for detector-made objects."""
    out = vision.Detection2DArray(header=header)
    for object_id in sorted(results):
        box = mask_box(results[object_id])
        if box is None:
            continue
        item = vision.Detection2D(header=header, id=str(object_id))
        item.bbox.center.position.x = float(box[0] + box[2]) / 2
        item.bbox.center.position.y = float(box[1] + box[3]) / 2
        item.bbox.size_x, item.bbox.size_y = float(box[2] - box[0]), float(box[3] - box[1])
        if object_id in labels:
            class_id, score = labels[object_id]
            item.results = [vision.ObjectHypothesisWithPose(
                hypothesis=vision.ObjectHypothesis(class_id=class_id, score=float(score)))]
        out.detections.append(item)
    return out


class DetectionsInput:
    """What the node creates at configure for detector-driven tracking; see the module doc."""

    def __init__(self, node: LifecycleNode, config: NodeConfig, *, session: TrackingSession,
                 boxes: BoxHistory, frames: FrameBuffer,
                 submit: Callable[[Callable[[], object]], Future],
                 max_object_id: Callable[[], int]) -> None:
        """`max_object_id` and the session's `max_objects` are read each round (both may
        change live)."""
        self._node, self._config = node, config
        self._session, self._boxes, self._frames, self._submit = session, boxes, frames, submit
        self._max_object_id = max_object_id
        self._associator = Associator(AssociationConfig(
            match_iou=config.match_iou, reprompt_iou=config.reprompt_iou,
            min_score=config.min_score, classes=frozenset(config.classes),
            forget_after=config.forget_after, manage_prompted=config.manage_prompted))
        self._vision = import_vision_msgs()
        self.enabled = config.detections_enabled
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()  # the callback and the worker both count
        self._warned: dict[str, float] = {}  # kind -> time.monotonic() of its last warning
        self._detections_sub = None
        self._detections_pub = None
        self._enable_srv = None
        logger = node.get_logger()
        if self._vision is None:
            (logger.warning if config.detections_topic else logger.info)(
                "vision_msgs is not importable: detector-driven tracking "
                f"{'(detections_topic) ' if config.detections_topic else ''}and ~/detections "
                "are off (build vision_msgs in the workspace to enable them)")
            return
        if config.publish_detections:
            self._detections_pub = node.create_lifecycle_publisher(
                self._vision.Detection2DArray, "~/detections", 10)
        if config.detections_topic:
            self._enable_srv = node.create_service(SetBool, "~/set_detections_enabled",
                                                   self._on_set_enabled)

    # Lifecycle (called by the node) -----------------------------------------------------
    def activate(self) -> None:
        if self._vision is not None and self._config.detections_topic:
            self._detections_sub = self._node.create_subscription(
                self._vision.Detection2DArray, self._config.detections_topic,
                self._on_detections, 10)

    def deactivate(self) -> None:
        if self._detections_sub is not None:
            self._node.destroy_subscription(self._detections_sub)
            self._detections_sub = None

    def destroy(self) -> None:
        self.deactivate()
        if self._detections_pub is not None:
            self._node.destroy_lifecycle_publisher(self._detections_pub)
        if self._enable_srv is not None:
            self._node.destroy_service(self._enable_srv)

    # Outputs (worker thread) ------------------------------------------------------------
    def labels(self) -> dict[int, tuple[str, float]]:
        """Class id and score of each detector-made object, for ~/masks."""
        return self._associator.labels()

    def publish(self, header: Header, results: Mapping[int, ObjectResultLike]) -> None:
        """~/detections for one tracked frame, while someone subscribes."""
        publisher = self._detections_pub
        if publisher is None or publisher.get_subscription_count() == 0:
            return
        publisher.publish(detection_array(self._vision, header, results, self.labels()))

    def diagnostics(self) -> dict[str, str]:
        with self._counts_lock:
            values = {key: str(self._counts[key]) for key in COUNTERS}
        values["detections_enabled"] = str(self.enabled).lower()
        return values

    # Callbacks --------------------------------------------------------------------------
    def _on_set_enabled(self, request: SetBool.Request, response: SetBool.Response
                        ) -> SetBool.Response:
        self.enabled = bool(request.data)
        response.success = True
        response.message = ("detector-driven prompting " +
                            ("enabled" if self.enabled else "paused"))
        self._node.get_logger().info(response.message)
        return response

    def _on_detections(self, msg) -> None:
        """Convert and hand the array to the worker; never waits for it."""
        self._count(detection_arrays=1)
        if not self.enabled:
            self._count(detection_arrays_paused=1)
            return
        if not msg.detections:
            self._count(detection_arrays_dropped_empty=1)
            self._warn("empty", "detection array refused: it holds no detections")
            return
        batch = detections_from_msg(msg, class_filter=bool(self._config.classes))
        self._count(detections_received=len(msg.detections),
                    detections_dropped_bad_box=batch.bad_boxes,
                    detections_dropped_bad_class=batch.bad_classes)
        if batch.bad_boxes:
            self._warn("bad_box", f"{batch.bad_boxes} detection boxes refused: NaN, "
                       f"infinite, or not a positive size")
        if batch.bad_classes:
            self._warn("bad_class", f"{batch.bad_classes} detections refused: class id is not "
                       f"an integer while classes={list(self._config.classes)} filters by id")
        if batch.detections:
            self._submit(lambda: self._round(batch)).add_done_callback(self._round_done)

    def _round_done(self, future: Future) -> None:
        error = future.exception()
        if error is not None and self._node.context.ok():
            self._count(detection_rounds_failed=1)
            self._warn("failed", f"detection round failed: {error!r}")

    def _count(self, **increments: int) -> None:
        with self._counts_lock:
            self._counts.update(increments)

    def _warn(self, kind: str, message: str) -> None:
        """At most one warning per kind every WARN_PERIOD_S (rclpy throttles per call site,
        and every kind passes through here)."""
        now = time.monotonic()
        if now - self._warned.get(kind, -WARN_PERIOD_S) >= WARN_PERIOD_S:
            self._warned[kind] = now
            self._node.get_logger().warning(message)

    # The round (worker thread) ----------------------------------------------------------
    def _round(self, batch: DetectionBatch) -> None:
        period = frame_period_ns(self._frames.stamps())
        try:
            entry = self._boxes.lookup(batch.stamp_ns, period_ns=period)
        except StaleStampError as error:
            self._count(detections_dropped_stale=len(batch.detections))
            self._warn("stale", f"detection array dropped: {error}")
            return
        detections = []
        for detection in batch.detections:
            box = clip_box(detection.box, width=entry.width, height=entry.height)
            if box is None:
                self._count(detections_dropped_bad_box=1)
                self._warn("outside", f"detection box {np.round(detection.box, 1).tolist()} "
                           f"refused: it lies outside the {entry.width}x{entry.height} image")
            else:
                detections.append(dataclasses.replace(detection, box=box))
        if not detections:
            return
        tracked = self._session.object_ids
        self._associator.config = dataclasses.replace(
            self._associator.config, max_objects=self._session.max_objects,
            max_object_id=self._max_object_id())
        self._associator.forget_untracked(tracked)
        last_seen = self._boxes.last_seen()
        plan = self._associator.plan(
            detections, {object_id: entry.boxes.get(object_id) for object_id in tracked},
            {object_id: last_seen[object_id] for object_id in tracked if object_id in last_seen})
        prompts = [Prompt(object_id=object_id, points=None, labels=None,
                          box=detections[index].box.astype(np.float32), mask=None,
                          clear_old=True, stamp_ns=entry.stamp_ns)
                   for object_id, index in plan.reprompted + plan.created]
        if prompts:
            try:
                self._session.add_prompts(prompts)
            except FrameNotBufferedError as error:  # the frame left the buffer meanwhile
                self._count(detections_dropped_stale=len(detections))
                self._warn("stale", f"detection array dropped: {error}")
                return
            except PromptError as error:  # e.g. max_objects exceeded on a replayed frame
                self._count(detection_rounds_failed=1)
                self._warn("failed", f"detection round not applied: {error}")
                return
        for object_id in plan.forgotten:
            self._session.remove_object(object_id)
        self._associator.commit(plan, detections)
        self._count(detections_matched=len(plan.kept) + len(plan.reprompted),
                    detections_reprompted=len(plan.reprompted),
                    detections_new=len(plan.created), objects_forgotten=len(plan.forgotten),
                    detections_filtered=plan.filtered,
                    detections_dropped_over_max=plan.over_max)
        if plan.over_max:
            self._warn("over_max", f"{plan.over_max} new detections dropped: already "
                       f"tracking {self._session.max_objects} objects (max_objects)")
