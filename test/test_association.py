"""Detection rounds on hand-built boxes: the association rules, without ROS or a tracker."""
from __future__ import annotations

import numpy as np
import pytest

from sam2_ros.ros.association import (AssociationConfig, Associator, Detection, clip_box,
                                      greedy_assignment, iou_matrix)

LEFT = np.array([10.0, 10.0, 50.0, 50.0])
RIGHT = np.array([100.0, 10.0, 140.0, 50.0])


def det(box, class_id: str = "1", score: float = 0.9) -> Detection:
    return Detection(box=np.asarray(box, np.float64), class_id=class_id, score=score)


def shifted(box: np.ndarray, dx: float) -> np.ndarray:
    return box + np.array([dx, 0, dx, 0])


def associator(**overrides) -> Associator:
    return Associator(AssociationConfig(**{"forget_after": 3, **overrides}))


def run(assoc: Associator, detections, on_frame, last_seen=None):
    """Plan and commit one round (the node commits after applying the prompts)."""
    plan = assoc.plan(detections, on_frame, last_seen or {})
    assoc.commit(plan, detections)
    return plan


def start(assoc: Associator, *boxes) -> dict[int, np.ndarray]:
    """Objects made from detections, then confirmed by a second round: {id: box}."""
    detections = [det(box) for box in boxes]
    plan = run(assoc, detections, {})
    on_frame = {object_id: detections[index].box for object_id, index in plan.created}
    run(assoc, detections, on_frame)
    return on_frame


def test_iou_matrix_and_greedy_assignment() -> None:
    ious = iou_matrix(np.stack([LEFT, RIGHT]), np.stack([shifted(LEFT, 20), RIGHT, LEFT]))
    assert ious.shape == (2, 3)
    assert ious[0, 0] == pytest.approx(20 * 40 / (2 * 1600 - 800))
    assert ious[0, 2] == 1 and ious[1, 1] == 1 and ious[1, 0] == 0
    # One-to-one: row 0 prefers column 1 (0.9) but loses it to row 1 (0.95) and takes column 0.
    score = np.array([[0.8, 0.9], [0.1, 0.95]])
    assert greedy_assignment(score, minimum=0.5) == [(1, 1), (0, 0)]
    assert greedy_assignment(score, minimum=0.85) == [(1, 1)]
    assert greedy_assignment(np.zeros((0, 2)), minimum=0.1) == []


def test_clip_box_cuts_to_the_image_and_refuses_boxes_outside() -> None:
    np.testing.assert_array_equal(clip_box(np.array([-5.0, 2, 30, 80]), width=64, height=48),
                                  [0, 2, 30, 48])
    assert clip_box(np.array([70.0, 2, 90, 20]), width=64, height=48) is None
    assert clip_box(np.array([10.0, 47.5, 20, 60]), width=64, height=48) is None


def test_new_objects_get_the_next_free_ids_and_keep_them_when_the_boxes_come_swapped() -> None:
    assoc = associator()
    plan = run(assoc, [det(LEFT, "3", 0.8), det(RIGHT, "7", 0.95)], {5: None}, {})
    # Most confident first; id 1 and 2 (5 is a service-prompted object, far from both).
    assert plan.created == ((1, 1), (2, 0)) and plan.reprompted == ()
    assert assoc.labels() == {1: ("7", 0.95), 2: ("3", 0.8)}  # service-prompted 5 has none
    on_frame = {1: shifted(RIGHT, 3), 2: shifted(LEFT, 3), 5: None}
    plan = run(assoc, [det(shifted(LEFT, 5), "3"), det(shifted(RIGHT, 5), "7")], on_frame)
    assert set(plan.kept) == {(1, 1), (2, 0)} and plan.created == () and plan.forgotten == ()


def test_two_objects_crossing_keep_their_ids() -> None:
    """Object 1 passes over object 2, whose mask lags behind: both boxes are nearest to object
    1's mask (a nearest-mask rule per box would give object 1 both and start a new object);
    the one-to-one assignment keeps object 1 and re-prompts object 2 with its own box."""
    assoc = associator()
    start(assoc, LEFT, shifted(LEFT, 50))
    on_frame = {1: shifted(LEFT, 25), 2: shifted(LEFT, 45)}
    plan = run(assoc, [det(shifted(LEFT, 22)), det(shifted(LEFT, 30))], on_frame)
    assert plan.kept == ((1, 0),) and plan.reprompted == ((2, 1),) and plan.created == ()


def test_a_drifted_mask_is_reprompted_and_a_missed_detection_changes_nothing() -> None:
    assoc = associator()
    start(assoc, LEFT, RIGHT)
    # Object 1's mask spread right (IoU 0.4 with its box); object 2's detection is missing.
    on_frame = {1: np.array([10.0, 10, 110, 50]), 2: RIGHT}
    plan = run(assoc, [det(LEFT)], on_frame)
    assert plan.reprompted == ((1, 0),) and plan.kept == () and plan.created == ()
    assert plan.missed == {1: 0, 2: 0}  # 2 is still visible: not a miss
    for _ in range(5):
        plan = run(assoc, [det(LEFT)], {1: LEFT, 2: RIGHT})
        assert plan.kept == ((1, 0),) and plan.forgotten == ()


def test_an_object_coming_back_is_reprompted_with_its_id() -> None:
    assoc = associator()
    start(assoc, LEFT, RIGHT)
    # Hidden (no mask) on two rounds while only object 2 is detected: missed, not forgotten.
    for missed in (1, 2):
        plan = run(assoc, [det(RIGHT)], {1: None, 2: RIGHT})
        assert plan.missed[1] == missed and plan.forgotten == ()
    # Back 25 px further right; the tracker has not found it (not visible): same id, re-prompted.
    plan = run(assoc, [det(RIGHT), det(shifted(LEFT, 25))], {1: None, 2: RIGHT})
    assert plan.reprompted == ((1, 1),) and plan.created == () and plan.missed[1] == 0


def test_an_object_that_drifted_onto_its_neighbour_is_recovered_not_duplicated() -> None:
    """Object 1's mask jumped onto object 2: object 2 wins its own box, and object 1's box,
    left over, is paired with object 1 by its last confirmed box rather than starting a new id."""
    assoc = associator()
    start(assoc, LEFT, shifted(LEFT, 50))
    plan = run(assoc, [det(LEFT), det(shifted(LEFT, 50))],
               {1: shifted(LEFT, 48), 2: shifted(LEFT, 50)})
    assert plan.kept == ((2, 1),) and plan.reprompted == ((1, 0),) and plan.created == ()


def test_a_mask_spread_over_two_objects_keeps_to_its_own_box() -> None:
    """Object 1's mask spread up over object 3: its box overlaps object 3's box more than its
    own. Its last confirmed box says which is its own, so neither id swaps: both re-prompted."""
    assoc = associator()
    own, other = np.array([27.0, 46, 55, 80]), np.array([29.0, 12, 57, 41])
    start(assoc, own, other)
    on_frame = {1: np.array([25.0, 0, 58, 80]), 2: np.array([49.0, 0, 78, 52])}
    plan = run(assoc, [det([23, 51, 45, 81]), det([33, 0, 57, 29])], on_frame)
    assert sorted(plan.reprompted) == [(1, 0), (2, 1)] and plan.created == (), plan


def test_far_away_or_other_class_detections_start_new_objects() -> None:
    assoc = associator()
    start(assoc, LEFT)
    plan = run(assoc, [det(shifted(LEFT, 200)), det(shifted(LEFT, 10), class_id="4")],
               {1: None})
    assert plan.reprompted == () and sorted(plan.created) == [(2, 0), (3, 1)]


def test_a_false_positive_is_forgotten_when_no_detection_confirms_it() -> None:
    """SAM 2 keeps a mask on whatever a wrong box covered, so 'visible' does not keep an
    object the detector made and never matched again; a confirmed one stays while visible."""
    assoc = associator(forget_after=3)
    start(assoc, LEFT)
    plan = run(assoc, [det(LEFT), det(RIGHT)], {1: LEFT})
    assert plan.created == ((2, 1),)
    forgotten = []
    for _ in range(3):
        forgotten.append(run(assoc, [det(LEFT)], {1: LEFT, 2: RIGHT}).forgotten)
    assert forgotten == [(), (), (2,)]
    assert 2 not in assoc.records and assoc.labels() == {1: ("1", 0.9)}


def test_objects_lost_for_forget_after_rounds_are_removed_but_prompted_ones_stay() -> None:
    assoc = associator(forget_after=2)
    start(assoc, LEFT)
    # 9 was prompted through the service; neither is matched nor visible.
    plans = [run(assoc, [det(shifted(RIGHT, 300))], {1: None, 9: None}) for _ in range(2)]
    assert plans[0].forgotten == () and plans[1].forgotten == (1,)
    managing = associator(forget_after=2, manage_prompted=True)
    plans = [run(managing, [det(shifted(RIGHT, 300))], {9: None}) for _ in range(2)]
    assert plans[1].forgotten == (9,)


def test_filters_duplicates_and_max_objects() -> None:
    assoc = associator(min_score=0.5, classes=frozenset({1, 2}), max_objects=2)
    plan = run(assoc, [det(LEFT, "1", 0.3), det(LEFT, "5", 0.9), det(LEFT, "2", 0.9)], {7: None})
    assert plan.filtered == 2 and plan.created == ((1, 2),)
    # A second box on a tracked object does not start another; beyond max_objects: dropped.
    plan = run(assoc, [det(LEFT, "2"), det(shifted(LEFT, 2)), det(RIGHT)], {1: LEFT, 7: None})
    assert plan.kept == ((1, 0),) and plan.filtered == 1
    assert plan.created == () and plan.over_max == 1


def test_plan_changes_nothing_until_commit() -> None:
    assoc = associator()
    plan = assoc.plan([det(LEFT)], {4: None}, {})
    assert assoc.records == {} and plan.created == ((1, 0),)
    assert assoc.plan([det(LEFT)], {4: None}, {}).created == ((1, 0),)  # same id again
    assoc.commit(plan, [det(LEFT)])
    assert assoc.plan([det(RIGHT)], {1: LEFT, 4: None}, {}).created == ((2, 0),)
