"""SAM 2's training losses for one decoder pass over K objects.

Focal + dice on the masks (weights 20:1), L1 between predicted and actual IoU, and a binary
cross-entropy on the object score (the occlusion head). Mask and IoU terms count only for
objects present in the frame: an absent object has no mask to learn, only its score.
With several candidate masks only the best one (lowest focal + dice) is supervised, so the
decoder may keep its other outputs for other readings of an ambiguous prompt; the IoU
head learns every candidate's IoU.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0


@dataclass(frozen=True)
class LossWeights:
    """SAM 2's weights, plus a feature-scale term of our own (off by default)."""

    focal: float = 20.0
    dice: float = 1.0
    iou: float = 1.0
    object_score: float = 1.0
    # Weight of the mean square of the image features (the stride-16 map and both high-res
    # maps). The decoder normalises what it reads, so nothing else bounds their scale; from
    # scratch they grew until the memory readout and the positional encodings, which are
    # added to them, no longer counted.
    feature_scale: float = 0.0


def feature_scale_loss(pix_feat: torch.Tensor, high_res: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Mean square of (B, C, h, w) features and the two high-res maps, summed: a scalar."""
    return pix_feat.pow(2).mean() + high_res[0].pow(2).mean() + high_res[1].pow(2).mean()


@dataclass(frozen=True)
class LossParts:
    """Weighted total and its unweighted parts (means over objects), for logging."""

    total: torch.Tensor  # scalar, differentiable
    focal: float
    dice: float
    iou: float
    object_score: float


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sigmoid focal loss averaged over pixels: (K, M, H, W) logits, (K, 1, H, W) 0/1 -> (K, M)."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target.expand_as(logits), reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    alpha_t = FOCAL_ALPHA * target + (1 - FOCAL_ALPHA) * (1 - target)
    return (alpha_t * ce * (1 - p_t) ** FOCAL_GAMMA).flatten(2).mean(-1)  # (K, M)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice: (K, M, H, W) logits, (K, 1, H, W) 0/1 -> (K, M)."""
    prob = logits.sigmoid().flatten(2)  # (K, M, HW)
    target = target.flatten(2)  # (K, 1, HW)
    overlap = (prob * target).sum(-1)
    return 1 - (2 * overlap + 1) / (prob.sum(-1) + target.sum(-1) + 1)


def actual_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of the thresholded masks with the target: (K, M, H, W), (K, 1, H, W) -> (K, M)."""
    pred = (logits > 0).flatten(2).float()  # (K, M, HW)
    target = target.flatten(2)  # (K, 1, HW)
    inter = (pred * target).sum(-1)
    union = pred.sum(-1) + target.sum(-1) - inter
    return inter / union.clamp(min=1.0)


def decoder_loss(
    mask_logits: torch.Tensor,
    pred_ious: torch.Tensor,
    object_score_logits: torch.Tensor,
    target: torch.Tensor,
    weights: LossWeights = LossWeights(),
) -> LossParts:
    """Loss of one decoder pass.

    mask_logits: (K, M, h, w) raw decoder logits (upsampled here to the target's size);
    pred_ious: (K, M); object_score_logits: (K, 1); target: (K, 1, S, S) 0/1 float.
    """
    if mask_logits.shape[0] != target.shape[0] or target.shape[1] != 1:
        raise ValueError(
            f"expected targets (K, 1, S, S) for K={mask_logits.shape[0]} objects, got {tuple(target.shape)}"
        )
    logits = F.interpolate(mask_logits, size=target.shape[-2:], mode="bilinear", align_corners=False)  # (K, M, S, S)
    present = target.flatten(1).amax(dim=1)  # (K,) 1 where the object is in the frame
    focal = focal_loss(logits, target)  # (K, M)
    dice = dice_loss(logits, target)  # (K, M)
    best = (weights.focal * focal + weights.dice * dice).argmin(dim=1, keepdim=True)  # (K, 1)
    focal, dice = focal.gather(1, best)[:, 0], dice.gather(1, best)[:, 0]  # (K,)
    iou = (pred_ious - actual_iou(logits.detach(), target)).abs().mean(dim=1)  # (K,)
    score = F.binary_cross_entropy_with_logits(object_score_logits[:, 0], present, reduction="none")  # (K,)
    num = mask_logits.shape[0]
    focal, dice, iou = ((x * present).sum() / num for x in (focal, dice, iou))
    score = score.mean()
    total = weights.focal * focal + weights.dice * dice + weights.iou * iou + weights.object_score * score
    return LossParts(total=total, focal=focal.item(), dice=dice.item(), iou=iou.item(), object_score=score.item())
