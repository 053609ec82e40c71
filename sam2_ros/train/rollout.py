"""One training example through SAM 2, with gradients, step for step as the tracker runs it.

The rollout calls the same `SAM2Model` methods and the same `MemoryBank` as
`StreamingTracker`, in the same order: every frame is first tracked from the memory (unless
the object has none yet), a prompt then replaces that frame's output and makes it a
conditioning memory, and corrective clicks are added one by one with the previous logits as
a dense prompt. Only the inference-mode wrapper and the numpy bookkeeping differ. The K
objects of a clip share one prompt schedule, so they run as one batch and one bank holds
their memories stacked along the first dimension.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from sam2_ros.engine.memory_bank import MemoryBank, MemoryEntry, MemorySelection
from sam2_ros.engine.model import FrameFeatures, HeadOutput, MemoryTokens, SAM2Model
from sam2_ros.engine.preprocess import points_to_model, preprocess_frame
from sam2_ros.engine.prompt_encoder import PADDING_LABEL
from sam2_ros.engine.tracker import BOX_LABELS, PREV_LOGITS_CLAMP
from sam2_ros.train.losses import LossParts, LossWeights, decoder_loss, feature_scale_loss
from sam2_ros.train.prompts import PromptKind, PromptPlan, initial_prompt, sample_click
from sam2_ros.train.video_gen import Clip

MAX_CONDITIONING_FRAMES = 4  # the tracker's default


@dataclass(frozen=True)
class RolloutLoss:
    """Mean loss over every supervised decoder pass of one example (plus the feature-scale term)."""

    total: torch.Tensor  # scalar, differentiable
    focal: float
    dice: float
    iou: float
    object_score: float
    passes: int
    feature_scale: float = 0.0  # unweighted


class _LossSum:
    def __init__(self) -> None:
        self.parts: list[LossParts] = []

    def add(self, parts: LossParts) -> None:
        self.parts.append(parts)

    def mean(self) -> RolloutLoss:
        n = len(self.parts)
        if n == 0:
            raise ValueError("the rollout supervised no decoder pass")
        return RolloutLoss(
            total=torch.stack([p.total for p in self.parts]).mean(),
            focal=sum(p.focal for p in self.parts) / n,
            dice=sum(p.dice for p in self.parts) / n,
            iou=sum(p.iou for p in self.parts) / n,
            object_score=sum(p.object_score for p in self.parts) / n,
            passes=n,
        )


def _frame(features: FrameFeatures, t: int, batch: int) -> FrameFeatures:
    """Frame t of features encoded for a whole clip, repeated for `batch` objects."""
    one = FrameFeatures(
        pix_feat=features.pix_feat[t : t + 1],
        pix_pos=features.pix_pos[t : t + 1],
        high_res=(features.high_res[0][t : t + 1], features.high_res[1][t : t + 1]),
    )
    return one.expand(batch)


def _memory_tokens(model: SAM2Model, selection: MemorySelection, memory_pos: torch.Tensor) -> MemoryTokens:
    """Tokens of a bank whose entries hold all K objects: features (K, Cm, h, w), pointers (K, C)."""
    k = selection.features[0].shape[0]
    return model.memory_tokens(
        features=torch.stack(selection.features, dim=1),  # (K, F, Cm, h, w)
        feature_pos=memory_pos.expand(k, -1, -1, -1),
        tpos_indices=selection.tpos_indices,
        obj_ptrs=torch.stack(selection.obj_ptrs, dim=1),  # (K, P, C)
        ptr_distances=torch.tensor(selection.ptr_distances, device=memory_pos.device)[None].expand(k, -1),  # (K, P)
    )


def _initial_points(
    rng: np.random.Generator, kind: PromptKind, gt: np.ndarray, image_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """First clicks or box corners of K objects (K, H, W) in model pixels, padded to one length."""
    coords, labels = [], []
    for mask in gt:
        prompt = initial_prompt(rng, kind, mask)
        if prompt.box is not None:
            coords.append(prompt.box.reshape(2, 2))
            labels.append(np.array(BOX_LABELS))
        else:
            coords.append(prompt.points)
            labels.append(prompt.labels)
    n = max(len(c) for c in coords)
    coords_t = torch.zeros(len(gt), n, 2)
    labels_t = torch.full((len(gt), n), PADDING_LABEL, dtype=torch.int32)
    for i, (c, lab) in enumerate(zip(coords, labels)):
        coords_t[i, : len(c)] = torch.from_numpy(points_to_model(c, gt.shape[1:], image_size))
        labels_t[i, : len(lab)] = torch.from_numpy(lab.astype(np.int32))
    return coords_t.to(device), labels_t.to(device)


def _correction_points(
    rng: np.random.Generator, heads: HeadOutput, gt: np.ndarray, image_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One click per object (K, 1, 2), (K, 1) from the error of the current prediction."""
    pred = F.interpolate(heads.low_res_logits.detach(), size=gt.shape[1:], mode="bilinear", align_corners=False)
    pred = (pred[:, 0] > 0).cpu().numpy()  # (K, H, W)
    clicks = [sample_click(rng, g, p) for g, p in zip(gt, pred)]
    coords = np.stack([c for c, _ in clicks])  # (K, 2)
    device = heads.low_res_logits.device
    coords = torch.from_numpy(points_to_model(coords, gt.shape[1:], image_size))[:, None].to(device)  # (K, 1, 2)
    labels = torch.tensor([[label] for _, label in clicks], dtype=torch.int32, device=device)  # (K, 1)
    return coords, labels


def rollout(
    model: SAM2Model,
    clip: Clip,
    plan: PromptPlan,
    rng: np.random.Generator,
    *,
    weights: LossWeights = LossWeights(),
    outputs: list[HeadOutput] | None = None,
) -> RolloutLoss:
    """Run `clip` (frames at the model's input size) through the model as the tracker would,
    prompted by `plan`, and return the mean loss of every decoder pass. Each frame's final
    output (K objects) is appended to `outputs` when given."""
    size = model.image_size
    num_frames, k = clip.masks.shape[:2]
    if clip.frames.shape[1:3] != (size, size):
        raise ValueError(f"clip frames must be {size}x{size} (the model's input), got {clip.frames.shape[1:3]}")
    cfg = model.cfg
    device = next(model.parameters()).device
    images = torch.cat([preprocess_frame(frame, size, device=device) for frame in clip.frames])  # (T, 3, S, S)
    targets = torch.from_numpy(clip.masks).to(device).float()  # (T, K, S, S)
    encoded = model.encode_image(images)
    bank = MemoryBank(
        max_conditioning=MAX_CONDITIONING_FRAMES, num_maskmem=cfg.num_maskmem, max_obj_ptrs=cfg.max_obj_ptrs_in_encoder
    )
    memory_pos: torch.Tensor | None = None  # (1, Cm, h, w), the same for every memory
    losses = _LossSum()

    def decode(feats: FrameFeatures, memory: MemoryTokens | None, target: torch.Tensor, *,
               points: tuple[torch.Tensor, torch.Tensor] | None = None,
               previous: HeadOutput | None = None) -> HeadOutput:
        """One supervised decoder pass. With points, as the tracker's add_prompt: a known
        object's current logits (detached, clamped) enter as a dense prompt."""
        prompt: dict[str, object] = {"multimask": True}
        if points is not None:
            coords, labels = points
            real_points = int((labels != PADDING_LABEL).sum(dim=1).max())
            prompt = {"point_coords": coords, "point_labels": labels,
                      "multimask": real_points <= cfg.multimask_max_points}
            if previous is not None:
                prompt["mask_logits"] = previous.low_res_logits.detach().clamp(-PREV_LOGITS_CLAMP, PREV_LOGITS_CLAMP)
        decoded = model.decode(model.condition_on_memory(feats, memory), feats.high_res, **prompt)
        losses.add(decoder_loss(decoded.masks, decoded.ious, decoded.object_score_logits, target, weights))
        return model.select_output(decoded)

    for t in range(num_frames):
        feats = _frame(encoded, t, k)
        target = targets[t][:, None]  # (K, 1, S, S)
        gt = clip.masks[t]  # (K, S, S)
        selection = bank.select(t)
        memory = None if selection is None else _memory_tokens(model, selection, memory_pos)
        heads = None
        if memory is not None:  # track(frame)
            heads = decode(feats, memory, target)
        points: tuple[torch.Tensor, torch.Tensor] | None = None
        if t in plan.prompt_frames:  # add_prompt(...) with the initial prompt
            if plan.kind is PromptKind.MASK:
                heads = model.mask_as_output(feats, target)  # the mask is the output: nothing to learn
            else:
                points = _initial_points(rng, plan.kind, gt, size, device)
                heads = decode(feats, memory, target, points=points, previous=heads)
        if t in plan.correction_frames:  # add_prompt(..., clear_old=False), one click at a time
            for _ in range(plan.clicks_per_correction):
                assert heads is not None  # frame 0 is always prompted first
                click = _correction_points(rng, heads, gt, size)
                if points is not None:  # added to this frame's earlier clicks
                    click = (torch.cat([points[0], click[0]], dim=1), torch.cat([points[1], click[1]], dim=1))
                points = click
                heads = decode(feats, memory, target, points=points, previous=heads)
        assert heads is not None
        if outputs is not None:
            outputs.append(heads)
        conditioning = t in plan.prompt_frames or t in plan.correction_frames
        features, pos = model.encode_memory(
            feats.pix_feat, heads.low_res_logits, heads.object_score_logits, binarize=conditioning
        )
        if memory_pos is None:
            memory_pos = pos[:1]
        # Per-object scores stay in the batch; the bank never reads this field.
        entry = MemoryEntry(frame_idx=t, features=features, obj_ptr=heads.obj_ptr, object_score_logit=float("nan"))
        bank.add(entry, conditioning=conditioning)
    mean = losses.mean()
    if weights.feature_scale == 0.0:
        return mean
    scale = feature_scale_loss(encoded.pix_feat, encoded.high_res)
    return replace(mean, total=mean.total + weights.feature_scale * scale, feature_scale=scale.item())

