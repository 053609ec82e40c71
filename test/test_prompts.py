"""Prompt simulation: clicks in the right region with the right label, jittered boxes, the prompt mix."""
import numpy as np
import pytest

from sam2_ros.train.distance import distance_to_background
from sam2_ros.train.prompts import (
    PromptKind, PromptMix, box_from_mask, initial_prompt, mask_prompt, mask_to_box, plan_prompts, sample_click,
)

SHAPE = (48, 64)


def rect(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def at(mask: np.ndarray, point: np.ndarray) -> bool:
    x, y = point
    assert x == int(x) and y == int(y), "points are pixel indices"
    return bool(mask[int(y), int(x)])


def brute_force_distance(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1)
    background = np.argwhere(~padded)
    out = np.zeros(padded.shape)
    for y, x in np.argwhere(padded):
        out[y, x] = np.sqrt(((background - [y, x]) ** 2).sum(axis=1)).min()
    return out[1:-1, 1:-1]


@pytest.mark.parametrize("seed", range(5))
def test_distance_transform_is_exact(seed):
    mask = np.random.default_rng(seed).random((17, 23)) < 0.8
    np.testing.assert_allclose(distance_to_background(mask), brute_force_distance(mask), rtol=1e-6)


def test_first_click_is_positive_inside_and_prefers_the_interior():
    gt = rect(5, 45, 4, 60)
    rng = np.random.default_rng(0)
    depth = distance_to_background(gt)
    clicks = [sample_click(rng, gt) for _ in range(300)]
    assert all(label == 1 and at(gt, point) for point, label in clicks)
    mean_depth = np.mean([depth[int(p[1]), int(p[0])] for p, _ in clicks])
    assert mean_depth > 1.2 * depth[gt].mean()  # uniform sampling would give about depth[gt].mean()


def test_missed_region_gets_a_positive_click():
    gt = rect(10, 40, 10, 50)
    pred = rect(10, 40, 10, 25)  # misses the right part, nothing spurious
    for seed in range(20):
        point, label = sample_click(np.random.default_rng(seed), gt, pred)
        assert label == 1 and at(gt & ~pred, point)


def test_spurious_region_gets_a_negative_click():
    gt = rect(10, 20, 10, 20)
    pred = rect(5, 40, 5, 50)  # covers the object and much more
    for seed in range(20):
        point, label = sample_click(np.random.default_rng(seed), gt, pred)
        assert label == 0 and at(pred & ~gt, point)


@pytest.mark.parametrize("missed_wider", [True, False])
def test_click_goes_to_the_larger_error(missed_wider):
    gt = rect(10, 30, 10, 40)
    # Prediction shifted left or right by different amounts: both errors exist.
    pred = rect(10, 30, 16, 42) if missed_wider else rect(10, 30, 12, 50)
    missed, spurious = gt & ~pred, pred & ~gt
    assert (missed.sum() > spurious.sum()) == missed_wider
    for seed in range(10):
        point, label = sample_click(np.random.default_rng(seed), gt, pred)
        region = missed if missed_wider else spurious
        assert label == int(missed_wider) and at(region, point)


def test_perfect_prediction_and_absent_object_get_a_background_click():
    gt = rect(10, 30, 10, 40)
    point, label = sample_click(np.random.default_rng(0), gt, gt.copy())
    assert label == 0 and not at(gt, point)
    point, label = sample_click(np.random.default_rng(0), np.zeros(SHAPE, bool))
    assert label == 0
    with pytest.raises(ValueError, match="pred_mask"):
        sample_click(np.random.default_rng(0), gt, np.zeros((4, 4), bool))


def test_tight_box_and_jittered_box_stay_within_the_noise_bound():
    gt = rect(10, 30, 20, 60)  # inclusive bounds x 20..59, y 10..29
    tight = mask_to_box(gt)
    np.testing.assert_array_equal(tight, [20, 10, 59, 29])
    width, height = 59 - 20, 29 - 10
    rng = np.random.default_rng(0)
    boxes = np.stack([box_from_mask(rng, gt, jitter=0.1) for _ in range(500)])
    bound = np.array([0.1 * width, 0.1 * height] * 2)
    assert (np.abs(boxes - tight) <= bound + 1e-5).all()
    assert (np.abs(boxes - tight).max(axis=0) > 0.8 * bound).all()  # the noise uses its range
    np.testing.assert_array_equal(box_from_mask(rng, gt, jitter=0.0), tight)


def test_box_noise_is_capped_in_pixels_and_clipped_to_the_image():
    big = np.ones(SHAPE, bool)
    rng = np.random.default_rng(0)
    boxes = np.stack([box_from_mask(rng, big, jitter=0.5, max_jitter_px=3.0) for _ in range(200)])
    assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= SHAPE[1] - 1).all() and (boxes[:, [1, 3]] <= SHAPE[0] - 1).all()
    assert (boxes[:, 0] <= 3).all() and (boxes[:, 3] >= SHAPE[0] - 4).all()
    with pytest.raises(ValueError, match="empty"):
        box_from_mask(rng, np.zeros(SHAPE, bool))


def test_mask_prompt_and_initial_prompts():
    gt = rect(10, 30, 10, 40)
    prompt = mask_prompt(gt)
    assert prompt.dtype == np.float32 and set(np.unique(prompt)) == {0.0, 1.0}
    rng = np.random.default_rng(0)
    click = initial_prompt(rng, PromptKind.CLICK, gt)
    assert click.points.shape == (1, 2) and click.labels.tolist() == [1] and at(gt, click.points[0])
    box = initial_prompt(rng, PromptKind.BOX, gt)
    assert box.points.shape == (0, 2) and box.box.shape == (4,)
    mask = initial_prompt(rng, PromptKind.MASK, gt)
    np.testing.assert_array_equal(mask.mask, prompt)
    absent = initial_prompt(rng, PromptKind.BOX, np.zeros(SHAPE, bool))
    assert absent.box is None and absent.labels.tolist() == [0]


def test_prompt_mix_matches_sam2_frequencies_and_frame_rules():
    rng = np.random.default_rng(0)
    mix = PromptMix()
    plans = [plan_prompts(rng, 8, mix) for _ in range(4000)]
    share = {kind: np.mean([p.kind is kind for p in plans]) for kind in PromptKind}
    assert abs(share[PromptKind.MASK] - 0.5) < 0.03
    assert abs(share[PromptKind.CLICK] - 0.25) < 0.03 and abs(share[PromptKind.BOX] - 0.25) < 0.03
    for plan in plans:
        assert plan.prompt_frames[0] == 0 and len(plan.prompt_frames) <= mix.max_prompt_frames
        assert len(set(plan.prompt_frames)) == len(plan.prompt_frames)
        if plan.kind is PromptKind.MASK:
            assert plan.correction_frames == ()
        else:
            assert set(plan.prompt_frames) <= set(plan.correction_frames)
            assert len(plan.correction_frames) <= max(mix.max_correction_frames, len(plan.prompt_frames))
            assert plan.clicks_per_correction == mix.clicks_per_correction
    assert any(len(p.prompt_frames) == 2 for p in plans) and any(len(p.correction_frames) == 2 for p in plans)
    single = [plan_prompts(rng, 1, mix) for _ in range(200)]
    assert all(p.kind is not PromptKind.MASK and p.prompt_frames == (0,) for p in single)
