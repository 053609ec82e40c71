"""SAM 2-style prompt simulation for training: clicks, jittered boxes and mask prompts.

Follows the SAM 2 paper's interactive training: the first frame gets a ground-truth
mask (p=0.5), a positive click (0.25) or a box (0.25); with clicks or boxes, a few
frames then receive corrective clicks sampled from the error between prediction and
ground truth. Points are (x, y) pixel indices (column, row); boxes are
(x0, y0, x1, y1) with inclusive pixel bounds, like SAM 2's `mask_to_box`.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from sam2_ros.train.distance import distance_to_background


class PromptKind(enum.Enum):
    MASK = "mask"
    CLICK = "click"
    BOX = "box"


def _check_mask(name: str, mask: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    if mask.ndim != 2 or (shape is not None and mask.shape != shape):
        expected = "(H, W)" if shape is None else str(shape)
        raise ValueError(f"{name} must have shape {expected}, got {mask.shape}")
    return mask.astype(bool, copy=False)


def _sample_interior(rng: np.random.Generator, region: np.ndarray) -> np.ndarray:
    """A pixel of `region`, drawn with probability proportional to its distance from the region's edge.

    Deep points are more likely than points on a thin rim, as a person clicks in the
    middle of what they mean; every pixel of the region stays possible.
    """
    weight = distance_to_background(region).ravel()  # (H*W,)
    index = rng.choice(weight.size, p=weight / weight.sum())
    y, x = divmod(int(index), region.shape[1])
    return np.array([x, y], dtype=np.float32)


def sample_click(rng: np.random.Generator, gt_mask: np.ndarray,
                 pred_mask: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """One click and its label (1 positive, 0 negative) correcting `pred_mask` toward `gt_mask`.

    The click lands in the larger error region: missed object pixels give a positive
    click, spurious pixels a negative one. No prediction counts as an empty one, so a
    first click is positive inside the object. A perfect prediction (or an absent object
    with no prediction) gets a negative click on the background, as in SAM 2.

    Args:
        gt_mask: (H, W) bool ground truth.
        pred_mask: (H, W) bool current prediction, or None.
    Returns:
        point (2,) float32 as (x, y), and the label.
    """
    gt_mask = _check_mask("gt_mask", gt_mask)
    if pred_mask is None:
        pred_mask = np.zeros_like(gt_mask)
    pred_mask = _check_mask("pred_mask", pred_mask, gt_mask.shape)
    missed = gt_mask & ~pred_mask
    spurious = pred_mask & ~gt_mask
    if missed.any() or spurious.any():
        if missed.sum() >= spurious.sum():
            return _sample_interior(rng, missed), 1
        return _sample_interior(rng, spurious), 0
    if gt_mask.all():  # nowhere to put a negative click: confirm the object instead
        return _sample_interior(rng, gt_mask), 1
    return _sample_interior(rng, ~gt_mask), 0


def mask_to_box(mask: np.ndarray) -> np.ndarray:
    """Tight box (4,) float32 x0, y0, x1, y1 around a non-empty (H, W) mask, bounds inclusive."""
    mask = _check_mask("mask", mask)
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if rows.size == 0:
        raise ValueError("cannot box an empty mask")
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float32)


def box_from_mask(rng: np.random.Generator, mask: np.ndarray, jitter: float = 0.1,
                  max_jitter_px: float = 20.0) -> np.ndarray:
    """The mask's box with each side moved by up to `jitter` x the box width/height (at most
    `max_jitter_px`), uniformly, then clipped to the image (SAM's box noise).

    Returns (4,) float32 x0, y0, x1, y1.
    """
    box = mask_to_box(mask)
    h, w = mask.shape
    reach_x = min(jitter * (box[2] - box[0]), max_jitter_px)
    reach_y = min(jitter * (box[3] - box[1]), max_jitter_px)
    noise = rng.uniform(-1.0, 1.0, size=4) * np.array([reach_x, reach_y, reach_x, reach_y])
    return np.clip(box + noise, 0, [w - 1, h - 1, w - 1, h - 1]).astype(np.float32)


def mask_prompt(mask: np.ndarray) -> np.ndarray:
    """A ground-truth mask as a prompt: (H, W) float32 of 0/1, the dtype the model's mask input takes."""
    return _check_mask("mask", mask).astype(np.float32)


@dataclass(frozen=True)
class Prompt:
    """An initial prompt for one object on one frame; unused parts are empty or None."""

    points: np.ndarray  # (N, 2) float32 (x, y); N = 0 for box and mask prompts
    labels: np.ndarray  # (N,) int32, 1 positive, 0 negative
    box: np.ndarray | None = None  # (4,) float32 x0, y0, x1, y1
    mask: np.ndarray | None = None  # (H, W) float32 0/1


def initial_prompt(rng: np.random.Generator, kind: PromptKind, gt_mask: np.ndarray) -> Prompt:
    """A first prompt of `kind` from the ground truth.

    An object absent from the frame cannot be boxed; it gets a (negative) click instead.
    """
    no_points = np.zeros((0, 2), dtype=np.float32), np.zeros(0, dtype=np.int32)
    if kind is PromptKind.MASK:
        return Prompt(*no_points, mask=mask_prompt(gt_mask))
    if kind is PromptKind.BOX and gt_mask.any():
        return Prompt(*no_points, box=box_from_mask(rng, gt_mask))
    point, label = sample_click(rng, gt_mask)
    return Prompt(points=point[None], labels=np.array([label], dtype=np.int32))


@dataclass(frozen=True)
class PromptMix:
    """How often each prompt kind is used, and how many frames get corrective clicks (SAM 2 defaults)."""

    prob_mask: float = 0.5  # first-frame prompt is the ground-truth mask
    prob_box_given_points: float = 0.5  # otherwise a box, else a single positive click
    max_prompt_frames: int = 2  # frames prompted before tracking: frame 0 plus random others
    max_correction_frames: int = 2  # frames with corrective clicks, prompted frames included
    clicks_per_correction: int = 7  # corrective clicks added one by one on each such frame


@dataclass(frozen=True)
class PromptPlan:
    """Which frames of a clip get which prompts during one training step."""

    kind: PromptKind  # the initial prompt on every frame of `prompt_frames`
    prompt_frames: tuple[int, ...]  # frame 0 first, then the extra conditioning frames
    correction_frames: tuple[int, ...]  # frames that receive corrective clicks (empty for MASK)
    clicks_per_correction: int


def plan_prompts(rng: np.random.Generator, num_frames: int, mix: PromptMix = PromptMix()) -> PromptPlan:
    """Draw the prompt schedule of one clip, as SAM 2 training does.

    A mask prompt needs no corrections. With clicks or boxes, corrective clicks go on
    every prompted frame plus randomly chosen later ones. A single frame (image training)
    always uses clicks or boxes, since a mask prompt would give the answer away.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    use_mask = num_frames > 1 and rng.random() < mix.prob_mask
    num_prompted = int(rng.integers(1, min(mix.max_prompt_frames, num_frames) + 1))
    extra = rng.choice(np.arange(1, num_frames), size=num_prompted - 1, replace=False)
    prompt_frames = (0, *sorted(int(t) for t in extra))
    if use_mask:
        return PromptPlan(kind=PromptKind.MASK, prompt_frames=prompt_frames,
                          correction_frames=(), clicks_per_correction=0)
    kind = PromptKind.BOX if rng.random() < mix.prob_box_given_points else PromptKind.CLICK
    most = max(min(mix.max_correction_frames, num_frames), num_prompted)
    num_corrected = int(rng.integers(num_prompted, most + 1))
    others = [t for t in range(num_frames) if t not in prompt_frames]
    more = rng.choice(others, size=num_corrected - num_prompted, replace=False) if others else []
    correction_frames = tuple(sorted({*prompt_frames, *(int(t) for t in more)}))
    return PromptPlan(kind=kind, prompt_frames=prompt_frames, correction_frames=correction_frames,
                      clicks_per_correction=mix.clicks_per_correction)
