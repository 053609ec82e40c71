"""J and F on cases with known answers."""
import math

import numpy as np
import pytest

from sam2_ros.train.metrics import (
    boundary_measure, evaluate_clip, pool, region_similarity, tolerance_px,
)

SHAPE = (256, 256)


def square(y: int, x: int, side: int) -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[y:y + side, x:x + side] = True
    return mask


def test_identical_and_disjoint():
    a = square(40, 40, 50)
    assert region_similarity(a, a) == 1.0 and boundary_measure(a, a) == 1.0
    b = square(150, 150, 50)
    assert region_similarity(a, b) == 0.0 and boundary_measure(a, b) == 0.0


def test_empty_masks_follow_davis():
    empty = np.zeros(SHAPE, bool)
    assert region_similarity(empty, empty) == 1.0 and boundary_measure(empty, empty) == 1.0
    a = square(40, 40, 50)
    for pred, gt in [(a, empty), (empty, a)]:
        assert region_similarity(pred, gt) == 0.0 and boundary_measure(pred, gt) == 0.0


@pytest.mark.parametrize("shift", [1, 5, 12, 30])
def test_shifted_square_iou(shift):
    side = 40
    gt, pred = square(60, 60, side), square(60, 60 + shift, side)
    assert region_similarity(pred, gt) == pytest.approx((side - shift) / (side + shift))


def test_shifted_square_boundary():
    side = 40
    radius = tolerance_px(SHAPE)
    assert radius == math.ceil(0.008 * math.hypot(*SHAPE))
    gt = square(60, 60, side)
    # Within tolerance every boundary pixel finds a partner.
    assert boundary_measure(square(60, 60 + radius, side), gt) == 1.0
    # Beyond it, the horizontal edges match except `shift - radius` pixels each; the vertical
    # edges match only within `radius` rows of the corners.
    shift = 10
    expected = (2 * (side - shift + radius) + 2 * radius) / (4 * side - 4)
    assert boundary_measure(square(60, 60 + shift, side), gt) == pytest.approx(expected)


def test_a_looser_tolerance_forgives_more():
    gt, pred = square(60, 60, 40), square(60, 70, 40)
    assert boundary_measure(pred, gt, tolerance=0.05) > boundary_measure(pred, gt)


def test_clip_scores_average_frames_per_object_then_objects():
    gt = np.zeros((2, 2, *SHAPE), bool)
    gt[:, 0] = square(10, 10, 40)
    gt[:, 1] = square(100, 100, 40)
    pred = gt.copy()
    pred[1, 0] = square(10, 20, 40)  # object 0 is off by 10 px on frame 1
    pred[:, 1] = False  # object 1 is missed everywhere
    scores = evaluate_clip(pred, gt)
    j_frame1 = (40 - 10) / (40 + 10)
    np.testing.assert_allclose(scores.j_per_object, [(1 + j_frame1) / 2, 0.0])
    assert scores.j == pytest.approx((1 + j_frame1) / 4)
    assert scores.f_per_object[1] == 0.0 and 0 < scores.f_per_object[0] < 1
    assert scores.jf == pytest.approx((scores.j + scores.f) / 2)
    both = pool([scores, evaluate_clip(gt, gt)])
    assert both.j_per_object.shape == (4,) and both.j == pytest.approx((scores.j * 2 + 2) / 4)
    with pytest.raises(ValueError, match="T, K, H, W"):
        evaluate_clip(pred[0], gt[0])
