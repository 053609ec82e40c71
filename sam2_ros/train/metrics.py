"""DAVIS-style video segmentation scores: J (region IoU) and F (boundary F-measure).

Scores are computed per object per frame, averaged over frames for each object, then
over objects, so a long-visible object does not outweigh a brief one. Slice out the
prompted frames before scoring if they should not count (DAVIS skips the first frame).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BOUNDARY_TOLERANCE = 0.008  # of the image diagonal, as DAVIS


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"expected two (H, W) masks of one shape, got {pred.shape} and {gt.shape}")
    return pred.astype(bool, copy=False), gt.astype(bool, copy=False)


def region_similarity(pred: np.ndarray, gt: np.ndarray) -> float:
    """J: intersection over union of two (H, W) masks; 1 when both are empty."""
    pred, gt = _check_pair(pred, gt)
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else np.count_nonzero(pred & gt) / union


def boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels (H, W) of `mask` with a 4-neighbour outside it; the image edge does not count as outside."""
    padded = np.pad(mask, 1, mode="edge")
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of (H, W) by a disk of `radius` pixels (offsets with dy^2 + dx^2 <= r^2)."""
    h, w = mask.shape
    padded = np.pad(mask, radius)
    out = np.zeros_like(mask)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx <= radius * radius:
                out |= padded[radius + dy:radius + dy + h, radius + dx:radius + dx + w]
    return out


def tolerance_px(shape: tuple[int, int], tolerance: float = BOUNDARY_TOLERANCE) -> int:
    """Boundary match distance in pixels for an image of `shape` (H, W)."""
    return max(math.ceil(tolerance * math.hypot(*shape)), 1)


def boundary_measure(pred: np.ndarray, gt: np.ndarray, *, tolerance: float = BOUNDARY_TOLERANCE) -> float:
    """F: harmonic mean of boundary precision and recall, matching within `tolerance` x the diagonal.

    Empty masks follow DAVIS: both empty scores 1, exactly one empty scores 0.
    """
    pred, gt = _check_pair(pred, gt)
    pred_edge, gt_edge = boundary(pred), boundary(gt)
    n_pred, n_gt = np.count_nonzero(pred_edge), np.count_nonzero(gt_edge)
    if n_pred == 0 or n_gt == 0:
        return 1.0 if n_pred == n_gt else 0.0
    radius = tolerance_px(pred.shape, tolerance)
    precision = np.count_nonzero(pred_edge & _dilate(gt_edge, radius)) / n_pred
    recall = np.count_nonzero(gt_edge & _dilate(pred_edge, radius)) / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class JFScores:
    """Per-object J and F, each averaged over the object's frames."""

    j_per_object: np.ndarray  # (K,)
    f_per_object: np.ndarray  # (K,)

    @property
    def j(self) -> float:
        return float(self.j_per_object.mean())

    @property
    def f(self) -> float:
        return float(self.f_per_object.mean())

    @property
    def jf(self) -> float:
        return (self.j + self.f) / 2


def evaluate_clip(pred: np.ndarray, gt: np.ndarray, *, tolerance: float = BOUNDARY_TOLERANCE) -> JFScores:
    """Score predicted masks (T, K, H, W) against ground truth of the same shape."""
    if pred.shape != gt.shape or pred.ndim != 4:
        raise ValueError(f"expected pred and gt of one (T, K, H, W) shape, got {pred.shape} and {gt.shape}")
    num_frames, num_objects = gt.shape[:2]
    j = np.array([[region_similarity(pred[t, k], gt[t, k]) for t in range(num_frames)]
                  for k in range(num_objects)])  # (K, T)
    f = np.array([[boundary_measure(pred[t, k], gt[t, k], tolerance=tolerance) for t in range(num_frames)]
                  for k in range(num_objects)])  # (K, T)
    return JFScores(j_per_object=j.mean(axis=1), f_per_object=f.mean(axis=1))


def pool(scores: Sequence[JFScores]) -> JFScores:
    """All objects of several clips as one set, so the means weigh every object equally."""
    return JFScores(j_per_object=np.concatenate([s.j_per_object for s in scores]),
                    f_per_object=np.concatenate([s.f_per_object for s in scores]))
