"""Detections <-> tracked objects: which to keep, re-prompt, start or forget. Pure numpy.

One detection round compares a detector's boxes with every tracked object's mask box on the
frame the detector saw, in two stages:

1. **IoU**: a one-to-one assignment between detections and objects, greedy by IoU (the
   highest pair first, each side used once; pairs below `match_iou` stay unmatched), where
   an object's IoU with a box is the higher of its mask box's on that frame and its last
   confirmed box's (a mask spread over two objects overlaps both boxes; the confirmed box
   says which is its own). Greedy rather than Hungarian: with the few, rarely overlapping
   boxes a robot tracks both give the same pairs except on near-ties, and greedy needs no
   solver and is easy to reason about. A matched object whose mask box still agrees
   (IoU >= `reprompt_iou`) is kept as is; one that drifted, or is not visible on that
   frame, is re-prompted with the box. Where both have a class, it must agree.
2. **Recovery**: detections left over and objects left over (hidden, gone off onto another
   object, spread far beyond their box, or not yet born on that frame) are paired greedily by
   the distance between box centres, in diagonals of the larger of the two boxes, within
   `RECOVERY_DISTANCE`; the object's box is its last confirmed one (the last detection box it
   was matched to, else its last mask box) or its mask box on the frame, whichever is closer.
   Where both have a class it must agree. Those objects are re-prompted, keeping their ids.

Detections still unmatched start new objects (score >= `min_score`, class in `classes`),
unless one overlaps a tracked object's box by `reprompt_iou` or more (a second box on the
same object). Objects neither matched nor visible for `forget_after` rounds are forgotten;
so is a detector-made object no detection has matched since it was made (a false positive:
SAM 2 keeps "seeing" whatever the wrong box covered). Service-prompted objects are never
forgotten unless `manage_prompted`.

`Associator.plan` decides without changing anything; `commit` records a plan once the
node applied it, so a round that failed half-way leaves the records as they were.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

# Recovery gate: box centres within this many diagonals (of the larger box) of each other.
RECOVERY_DISTANCE = 1.0


@dataclass(frozen=True)
class Detection:
    """One detector box in the frame's pixels (x1, y1 exclusive edges)."""

    box: np.ndarray  # (4,) float64 x0, y0, x1, y1
    class_id: str  # "" when the detector gave none
    score: float


@dataclass(frozen=True)
class AssociationConfig:
    match_iou: float = 0.2
    reprompt_iou: float = 0.5
    min_score: float = 0.5
    classes: frozenset[int] = frozenset()  # empty = every class
    forget_after: int = 5
    manage_prompted: bool = False
    max_objects: int = 16
    max_object_id: int = 65535


@dataclass
class ObjectRecord:
    """What the associator remembers of one tracked object between rounds."""

    class_id: str = ""  # "" for service-prompted objects
    score: float = 0.0  # the latest matched detection's score; 0 for service-prompted objects
    from_detector: bool = False  # made by a detection (else prompted through the service)
    confirmed: bool = False  # matched by a detection after the one that made it
    box: np.ndarray | None = None  # (4,) the last detection box it was matched to
    missed: int = 0  # consecutive rounds neither matched nor visible


@dataclass(frozen=True)
class RoundPlan:
    """One round's decisions; (object id, detection index) pairs index the round's detections."""

    kept: tuple[tuple[int, int], ...] = ()
    reprompted: tuple[tuple[int, int], ...] = ()  # drifted, not visible, or recovered
    created: tuple[tuple[int, int], ...] = ()
    forgotten: tuple[int, ...] = ()
    missed: Mapping[int, int] = field(default_factory=dict)  # each tracked object's new count
    filtered: int = 0  # below min_score, outside classes, or a second box on a tracked object
    over_max: int = 0  # would have started an object beyond max_objects


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (N, 4) with every box in b (M, 4) -> (N, M)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])  # (N, M)
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)  # (N, M)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])  # (N,)
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # (M,)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def greedy_assignment(score: np.ndarray, *, minimum: float) -> list[tuple[int, int]]:
    """One-to-one (row, column) pairs of a (N, M) score matrix, highest first, each >= minimum."""
    pairs, used_rows, used_cols = [], set(), set()
    order = np.argsort(-score, axis=None, kind="stable")
    for row, col in zip(*np.unravel_index(order, score.shape)):
        if score[row, col] < minimum:
            break
        if row in used_rows or col in used_cols:
            continue
        pairs.append((int(row), int(col)))
        used_rows.add(row)
        used_cols.add(col)
    return pairs


def clip_box(box: np.ndarray, *, width: int, height: int) -> np.ndarray | None:
    """The box cut to the frame, or None when less than a pixel of it lies inside."""
    x0, y0, x1, y1 = np.clip(box, 0, [width, height, width, height])
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return np.array([x0, y0, x1, y1], np.float64)


def admitted(detection: Detection, config: AssociationConfig) -> bool:
    """Score and class filters (the class id was checked to be a number when `classes` is set)."""
    if detection.score < config.min_score:
        return False
    return not config.classes or int(detection.class_id) in config.classes


def _same_class(record: ObjectRecord, detection: Detection) -> bool:
    """False only when both have a class and they differ."""
    return not (record.class_id and detection.class_id and record.class_id != detection.class_id)


def _or_empty(box: np.ndarray | None) -> np.ndarray:
    """The box, or an empty one (IoU 0 with everything) for None."""
    return np.zeros(4) if box is None else box


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    """Distance between the boxes' centres in diagonals of the larger box."""
    diagonal = max(np.hypot(*(a[2:] - a[:2])), np.hypot(*(b[2:] - b[:2])))
    return float(np.linalg.norm((a[:2] + a[2:]) / 2 - (b[:2] + b[2:]) / 2) / diagonal)


class Associator:
    """The per-object records and the rules of one detection round."""

    def __init__(self, config: AssociationConfig) -> None:
        self.config = config
        self.records: dict[int, ObjectRecord] = {}
        self._next_id = 1

    def labels(self) -> dict[int, tuple[str, float]]:
        """Class id and score of each detector-made object."""
        return {object_id: (record.class_id, record.score)
                for object_id, record in self.records.items() if record.from_detector}

    def plan(self, detections: Sequence[Detection], on_frame: Mapping[int, np.ndarray | None],
             last_seen: Mapping[int, np.ndarray]) -> RoundPlan:
        """Decide one round. `on_frame`: every tracked object's mask box on the detection's
        frame (None: not visible there); `last_seen`: the latest mask box of each (any frame)."""
        config = self.config
        records = {object_id: self.records.get(object_id, ObjectRecord()) for object_id in on_frame}
        usable = [i for i, d in enumerate(detections) if admitted(d, config)]
        filtered = len(detections) - len(usable)
        ids = list(on_frame)
        kept, reprompted = [], []

        # Stage 1: IoU with each object's mask box on the detection's frame or its last
        # confirmed box, whichever is higher (a mask spread over two objects overlaps both
        # boxes; the confirmed box says which one is its own).
        boxes = np.array([detections[i].box for i in usable]).reshape(-1, 4)  # (D, 4)
        with_mask = iou_matrix(np.array([_or_empty(on_frame[o]) for o in ids]).reshape(-1, 4),
                               boxes)  # (N, D)
        with_confirmed = iou_matrix(
            np.array([_or_empty(records[o].box) for o in ids]).reshape(-1, 4), boxes)
        same_class = np.array([[_same_class(records[o], detections[i]) for i in usable]
                               for o in ids], bool).reshape(with_mask.shape)  # (N, D)
        score = np.where(same_class, np.maximum(with_mask, with_confirmed), 0.0)
        for row, col in greedy_assignment(score, minimum=config.match_iou):
            pair = (ids[row], usable[col])
            (kept if with_mask[row, col] >= config.reprompt_iou else reprompted).append(pair)
        matched_ids = {o for o, _ in kept + reprompted}
        matched_dets = {d for _, d in kept + reprompted}

        # Stage 2: lost objects and leftover detections, by distance to the last confirmed box.
        lost = [o for o in on_frame if o not in matched_ids
                and (records[o].box is not None or o in last_seen)]
        left = [i for i in usable if i not in matched_dets]
        closeness = np.full((len(lost), len(left)), -np.inf)  # -distance in diagonals
        for row, object_id in enumerate(lost):
            confirmed = records[object_id].box
            anchors = [last_seen[object_id] if confirmed is None else confirmed,
                       on_frame[object_id]]
            for col, index in enumerate(left):
                detection = detections[index]
                if not _same_class(records[object_id], detection):
                    continue
                closeness[row, col] = -min(_distance(anchor, detection.box)
                                           for anchor in anchors if anchor is not None)
        for row, col in greedy_assignment(closeness, minimum=-RECOVERY_DISTANCE):
            reprompted.append((lost[row], left[col]))
            matched_ids.add(lost[row])
            matched_dets.add(left[col])

        # New objects from what is left, most confident first.
        created, over_max = [], 0
        taken = set(on_frame)
        boxes = np.array([b for b in on_frame.values() if b is not None]).reshape(-1, 4)
        next_id = self._next_id
        for index in sorted((i for i in usable if i not in matched_dets),
                            key=lambda i: -detections[i].score):
            if boxes.size and iou_matrix(detections[index].box, boxes).max() >= config.reprompt_iou:
                filtered += 1
                continue
            if len(taken) >= config.max_objects:
                over_max += 1
                continue
            object_id, next_id = self._free_id(next_id, taken)
            taken.add(object_id)
            created.append((object_id, index))

        # Forgetting: a round where an object is neither matched nor visible is a miss; for an
        # unconfirmed detector-made object only a match counts (its mask may be a false box's).
        missed, forgotten = {}, []
        for object_id, record in records.items():
            trusted = record.confirmed or not record.from_detector
            seen = on_frame[object_id] is not None and trusted
            missed[object_id] = 0 if object_id in matched_ids or seen else record.missed + 1
            if missed[object_id] >= config.forget_after and \
                    (record.from_detector or config.manage_prompted):
                forgotten.append(object_id)
        return RoundPlan(kept=tuple(kept), reprompted=tuple(reprompted), created=tuple(created),
                         forgotten=tuple(forgotten), missed=missed, filtered=filtered,
                         over_max=over_max)

    def commit(self, plan: RoundPlan, detections: Sequence[Detection]) -> None:
        """Record a plan the node applied (its prompts succeeded, its objects were removed)."""
        for object_id, count in plan.missed.items():
            self.records.setdefault(object_id, ObjectRecord()).missed = count
        for object_id, index in plan.kept + plan.reprompted:
            record, detection = self.records[object_id], detections[index]
            record.box, record.confirmed = detection.box, True
            if record.from_detector:
                record.score = detection.score
        for object_id, index in plan.created:
            detection = detections[index]
            self.records[object_id] = ObjectRecord(class_id=detection.class_id,
                                                   score=detection.score, from_detector=True,
                                                   box=detection.box)
            self._next_id = object_id % self.config.max_object_id + 1
        for object_id in plan.forgotten:
            self.records.pop(object_id, None)

    def forget_untracked(self, tracked: Sequence[int]) -> None:
        """Drop the records of objects the tracker no longer has (removed or reset elsewhere)."""
        for object_id in set(self.records) - set(tracked):
            del self.records[object_id]

    def _free_id(self, start: int, taken: set[int]) -> tuple[int, int]:
        """The first id from `start` on (wrapping past max_object_id) not in `taken`, and the
        one after it."""
        limit = self.config.max_object_id
        object_id = start
        while object_id in taken:
            object_id = object_id % limit + 1
        return object_id, object_id % limit + 1
