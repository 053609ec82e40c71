"""The four heavy parts of SAM 2 as tensor-only modules with fixed layouts, for export.

Each part calls the engine's own method (`SAM2Model.encode_image`, `run_heads`,
`encode_memory`, and the memory attention behind `condition_on_memory`), so an exported
graph computes exactly what eager PyTorch computes; only the Python flags of those methods
(multimask, mask prompt, binarize) become one graph per value. Memory attention takes a
fixed number of memory slots plus a validity mask, so one graph serves every step.

`PartSpec` names every part's inputs, outputs and dynamic dimensions: the ONNX exporter,
onnxruntime and TensorRT backends all read the same names from here.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sam2_ros.engine.model import FrameFeatures, MemoryTokens, SAM2Model

BATCH, POINTS = "batch", "points"  # names of the dynamic dimensions (objects, prompt points)


@dataclass(frozen=True)
class MemorySlots:
    """Fixed memory layout of the static memory-attention graph.

    `frames` spatial slots of `hw` tokens (conditioning frames plus recent frames), then
    `pointers` object pointers of `split` tokens each. A bank with `max_conditioning` kept
    prompts selects at most that many conditioning frames plus `num_maskmem - 1` recent
    ones, and the conditioning frames' pointers plus `max_obj_ptrs - 1` recent pointers.
    """

    frames: int
    pointers: int
    hw: int
    split: int  # tokens per object pointer (hidden_dim / mem_dim)

    @classmethod
    def for_model(cls, model: SAM2Model, max_conditioning: int) -> MemorySlots:
        cfg = model.cfg
        return cls(
            frames=max_conditioning + cfg.num_maskmem - 1,
            pointers=max_conditioning + cfg.max_obj_ptrs_in_encoder - 1,
            hw=cfg.feature_size**2,
            split=cfg.hidden_dim // cfg.mem_dim,
        )

    @property
    def spatial_tokens(self) -> int:
        return self.frames * self.hw

    @property
    def pointer_tokens(self) -> int:
        return self.pointers * self.split

    @property
    def tokens(self) -> int:
        return self.spatial_tokens + self.pointer_tokens


def pad_memory(memory: MemoryTokens, slots: MemorySlots) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Variable-length memory -> (tokens, pos, mask) in the fixed slots; (B, M, Cm) x2, (B, M) bool.

    Attention over keys is order-free and RoPE repeats per frame, so where a frame sits among
    the spatial slots does not matter; empty slots are zero and masked out.
    """
    b, m, cm = memory.tokens.shape
    n_ptr = memory.num_obj_ptr_tokens
    n_spatial = m - n_ptr
    if n_spatial > slots.spatial_tokens or n_ptr > slots.pointer_tokens:
        raise ValueError(
            f"memory of {n_spatial} spatial and {n_ptr} pointer tokens exceeds the static slots "
            f"({slots.spatial_tokens} spatial, {slots.pointer_tokens} pointer); export with a larger "
            f"max_conditioning"
        )
    tokens = memory.tokens.new_zeros(b, slots.tokens, cm)  # (B, M_static, Cm)
    pos = memory.pos.new_zeros(b, slots.tokens, cm)  # (B, M_static, Cm)
    mask = torch.zeros(b, slots.tokens, dtype=torch.bool, device=memory.tokens.device)  # (B, M_static)
    ptr_start = slots.spatial_tokens
    for dst, src in ((tokens, memory.tokens), (pos, memory.pos)):
        dst[:, :n_spatial] = src[:, :n_spatial]
        dst[:, ptr_start : ptr_start + n_ptr] = src[:, n_spatial:]
    mask[:, :n_spatial] = True
    mask[:, ptr_start : ptr_start + n_ptr] = True
    return tokens, pos, mask


class ImageEncoderPart(nn.Module):
    """image (1, 3, S, S) -> pix_feat, pix_pos (1, C, h, w), high_res_0 (1, C/8, 4h, 4w),
    high_res_1 (1, C/4, 2h, 2w): trunk, neck and the decoder's conv_s0/conv_s1."""

    def __init__(self, model: SAM2Model) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.model.encode_image(image)
        return feats.pix_feat, feats.pix_pos, feats.high_res[0], feats.high_res[1]


class MemoryAttentionPart(nn.Module):
    """Current features (B, C, h, w) and memory in static slots -> conditioned (B, C, h, w)."""

    def __init__(self, model: SAM2Model, slots: MemorySlots) -> None:
        super().__init__()
        self.model = model
        self.slots = slots

    def forward(
        self,
        pix_feat: torch.Tensor,
        pix_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        memory_mask: torch.Tensor,
    ) -> torch.Tensor:
        b, c, h, w = pix_feat.shape
        fused = self.model.memory_attention(
            curr=pix_feat.flatten(2).transpose(1, 2),  # (B, hw, C)
            curr_pos=pix_pos.flatten(2).transpose(1, 2),  # (B, hw, C)
            memory=memory,  # (B, M_static, Cm)
            memory_pos=memory_pos,  # (B, M_static, Cm)
            num_obj_ptr_tokens=self.slots.pointer_tokens,
            memory_mask=memory_mask,  # (B, M_static)
        )  # (B, hw, C)
        return fused.transpose(1, 2).reshape(b, c, h, w)


class DecoderPart(nn.Module):
    """Prompt encoder + mask decoder + pointer head (`SAM2Model.run_heads`) for one value of
    its flags: with `has_mask` the graph takes previous logits (B, 1, 4h, 4w) as a dense prompt.

    Points are a dynamic dimension rather than padded: extra padding tokens would take part
    in the decoder's attention and change its output.
    """

    def __init__(self, model: SAM2Model, *, multimask: bool, has_mask: bool) -> None:
        super().__init__()
        self.model = model
        self.multimask = multimask
        self.has_mask = has_mask

    def forward(
        self,
        pix_feat: torch.Tensor,
        high_res_0: torch.Tensor,
        high_res_1: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_logits: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        heads = self.model.run_heads(
            pix_feat,
            (high_res_0, high_res_1),
            point_coords=point_coords,
            point_labels=point_labels,
            mask_logits=mask_logits if self.has_mask else None,
            multimask=self.multimask,
        )
        return heads.low_res_logits, heads.iou, heads.obj_ptr, heads.object_score_logits


class MemoryEncoderPart(nn.Module):
    """`SAM2Model.encode_memory` for one value of `binarize` -> features, pos (B, Cm, h, w)."""

    def __init__(self, model: SAM2Model, *, binarize: bool) -> None:
        super().__init__()
        self.model = model
        self.binarize = binarize

    def forward(
        self, pix_feat: torch.Tensor, low_res_logits: torch.Tensor, object_score_logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode_memory(pix_feat, low_res_logits, object_score_logits, binarize=self.binarize)


@dataclass(frozen=True)
class PartSpec:
    """One exported graph: its file stem, I/O names and which input dims are dynamic."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic: dict[str, dict[int, str]]  # input name -> {axis: dim name}

    @property
    def filename(self) -> str:
        return f"{self.name}.onnx"


IMAGE_ENCODER = PartSpec(
    name="image_encoder",
    inputs=("image",),
    outputs=("pix_feat", "pix_pos", "high_res_0", "high_res_1"),
    dynamic={},
)
MEMORY_ATTENTION = PartSpec(
    name="memory_attention",
    inputs=("pix_feat", "pix_pos", "memory", "memory_pos", "memory_mask"),
    outputs=("conditioned",),
    dynamic={name: {0: BATCH} for name in ("pix_feat", "pix_pos", "memory", "memory_pos", "memory_mask")},
)


def decoder_spec(*, multimask: bool, has_mask: bool) -> PartSpec:
    inputs = ("pix_feat", "high_res_0", "high_res_1", "point_coords", "point_labels")
    inputs += ("mask_logits",) if has_mask else ()
    dynamic = {name: {0: BATCH} for name in inputs}
    dynamic["point_coords"] = {0: BATCH, 1: POINTS}
    dynamic["point_labels"] = {0: BATCH, 1: POINTS}
    return PartSpec(
        name=f"decoder_{'multi' if multimask else 'single'}{'_mask' if has_mask else ''}",
        inputs=inputs,
        outputs=("low_res_logits", "iou", "obj_ptr", "object_score_logits"),
        dynamic=dynamic,
    )


def memory_encoder_spec(*, binarize: bool) -> PartSpec:
    inputs = ("pix_feat", "low_res_logits", "object_score_logits")
    return PartSpec(
        name=f"memory_encoder_{'binary' if binarize else 'soft'}",
        inputs=inputs,
        outputs=("memory_features", "memory_pos"),
        dynamic={name: {0: BATCH} for name in inputs},
    )


DECODER_FLAGS = tuple((multimask, has_mask) for multimask in (True, False) for has_mask in (False, True))
BINARIZE_FLAGS = (False, True)


def all_specs() -> list[PartSpec]:
    """Every graph a streaming tracker needs."""
    return [
        IMAGE_ENCODER,
        MEMORY_ATTENTION,
        *(decoder_spec(multimask=m, has_mask=k) for m, k in DECODER_FLAGS),
        *(memory_encoder_spec(binarize=b) for b in BINARIZE_FLAGS),
    ]


def build_part(spec: PartSpec, model: SAM2Model, slots: MemorySlots) -> nn.Module:
    """The module a spec exports."""
    if spec == IMAGE_ENCODER:
        return ImageEncoderPart(model)
    if spec == MEMORY_ATTENTION:
        return MemoryAttentionPart(model, slots)
    for multimask, has_mask in DECODER_FLAGS:
        if spec == decoder_spec(multimask=multimask, has_mask=has_mask):
            return DecoderPart(model, multimask=multimask, has_mask=has_mask)
    for binarize in BINARIZE_FLAGS:
        if spec == memory_encoder_spec(binarize=binarize):
            return MemoryEncoderPart(model, binarize=binarize)
    raise ValueError(f"unknown part {spec.name!r}; expected one of {[s.name for s in all_specs()]}")


def example_inputs(
    spec: PartSpec, model: SAM2Model, slots: MemorySlots, *, batch: int = 2, points: int = 3
) -> dict[str, torch.Tensor]:
    """Inputs of the right shapes and dtypes for tracing or checking a part (batch and points
    above 1 so that exporters cannot specialise the dynamic dims)."""
    cfg = model.cfg
    c, cm, h, s = cfg.hidden_dim, cfg.mem_dim, cfg.feature_size, cfg.image_size
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(device)

    shapes = {
        "image": (1, 3, s, s),
        "pix_feat": (batch, c, h, h),
        "pix_pos": (batch, c, h, h),
        "high_res_0": (batch, c // 8, 4 * h, 4 * h),
        "high_res_1": (batch, c // 4, 2 * h, 2 * h),
        "memory": (batch, slots.tokens, cm),
        "memory_pos": (batch, slots.tokens, cm),
        "mask_logits": (batch, 1, 4 * h, 4 * h),
        "low_res_logits": (batch, 1, 4 * h, 4 * h),
        "object_score_logits": (batch, 1),
    }
    inputs: dict[str, torch.Tensor] = {}
    for name in spec.inputs:
        if name == "point_coords":
            inputs[name] = torch.rand(batch, points, 2, generator=g).to(device) * s
        elif name == "point_labels":
            inputs[name] = torch.randint(-1, 4, (batch, points), generator=g, dtype=torch.int32).to(device)
        elif name == "memory_mask":
            inputs[name] = (torch.rand(batch, slots.tokens, generator=g) > 0.3).to(device)
        else:
            inputs[name] = randn(*shapes[name])
    return inputs


def frame_features(outputs: dict[str, torch.Tensor]) -> FrameFeatures:
    """Image-encoder outputs by name -> the engine's FrameFeatures."""
    return FrameFeatures(
        pix_feat=outputs["pix_feat"],
        pix_pos=outputs["pix_pos"],
        high_res=(outputs["high_res_0"], outputs["high_res_1"]),
    )
