"""SAM 2: the submodules plus the math of one streaming step, as small pure methods.

A step for B objects of one frame is: `encode_image` (once per frame), then per object group
`memory_tokens` -> `condition_on_memory` -> `run_heads` (or `mask_as_output` for mask
prompts), then `encode_memory` for the memory bank. The tracker owns the state (which
memories exist); this module owns the arithmetic. Parameter names equal the official
checkpoint keys, so Meta's files load with a plain `load_state_dict`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sam2_ros.engine.common import MLP
from sam2_ros.engine.config import SAM2Config, sam2_config
from sam2_ros.engine.image_encoder import ImageEncoder
from sam2_ros.engine.mask_decoder import MaskDecoder
from sam2_ros.engine.memory_attention import MemoryAttention
from sam2_ros.engine.memory_encoder import MemoryEncoder
from sam2_ros.engine.prompt_encoder import PADDING_LABEL, PromptEncoder

NO_OBJ_SCORE = -1024.0  # mask logit of an object predicted absent
# A mask prompt is used as the output as logits of -10 (background) / +10 (object).
MASK_AS_OUTPUT_SCALE, MASK_AS_OUTPUT_BIAS = 20.0, -10.0


@dataclass(frozen=True)
class FrameFeatures:
    """Image features of one frame (batch 1 or B)."""

    pix_feat: torch.Tensor  # (B, C, h, w) lowest-resolution level, h = image_size / 16
    pix_pos: torch.Tensor  # (B, C, h, w) its sine position encoding
    high_res: tuple[torch.Tensor, torch.Tensor]  # (B, C/8, 4h, 4w), (B, C/4, 2h, 2w) for the decoder

    def expand(self, batch: int) -> FrameFeatures:
        """The same frame repeated for `batch` objects (views, no copies)."""
        return FrameFeatures(
            pix_feat=self.pix_feat.expand(batch, -1, -1, -1),
            pix_pos=self.pix_pos.expand(batch, -1, -1, -1),
            high_res=(self.high_res[0].expand(batch, -1, -1, -1), self.high_res[1].expand(batch, -1, -1, -1)),
        )


@dataclass(frozen=True)
class HeadOutput:
    """What the SAM heads predict for B objects."""

    low_res_logits: torch.Tensor  # (B, 1, 4h, 4w) float32, NO_OBJ_SCORE where the object is absent
    iou: torch.Tensor  # (B,) predicted IoU of the chosen mask
    obj_ptr: torch.Tensor  # (B, C) object pointer for later frames' memory attention
    object_score_logits: torch.Tensor  # (B, 1) > 0: the object is visible


@dataclass(frozen=True)
class DecoderOutput:
    """Every mask the decoder proposes for B objects (M = 3 with multimask, else 1)."""

    masks: torch.Tensor  # (B, M, 4h, 4w) logits, not yet gated by the object score
    ious: torch.Tensor  # (B, M) predicted IoU of each mask
    tokens: torch.Tensor  # (B, M', C) output tokens the object pointer is made from
    object_score_logits: torch.Tensor  # (B, 1) > 0: the object is visible


@dataclass(frozen=True)
class MemoryTokens:
    """Memory of B objects sharing one layout, ready for memory attention."""

    tokens: torch.Tensor  # (B, K*hw + 4P, Cm): K spatial frames, then P pointers split in C/Cm tokens each
    pos: torch.Tensor  # (B, K*hw + 4P, Cm)
    num_obj_ptr_tokens: int


def sine_encoding_1d(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Transformer sine/cosine encoding of scalar positions: (...,) -> (..., dim) as [sin, cos]."""
    half = dim // 2
    exponent = torch.div(torch.arange(half, dtype=torch.float32, device=positions.device), 2, rounding_mode="floor")
    freqs = temperature ** (2 * exponent / half)  # (half,)
    angles = positions[..., None] / freqs  # (..., half)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def padding_points(batch: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompt SAM 2 gives the decoder while tracking: one padding point per object.

    Returns coords (B, 1, 2) zeros in `dtype` and labels (B, 1) int32 = PADDING_LABEL.
    """
    coords = torch.zeros(batch, 1, 2, dtype=dtype, device=device)  # (B, 1, 2)
    labels = torch.full((batch, 1), PADDING_LABEL, dtype=torch.int32, device=device)  # (B, 1)
    return coords, labels


class SAM2Model(nn.Module):
    """SAM 2 / 2.1 with the settings of Meta's video predictor."""

    def __init__(self, cfg: SAM2Config) -> None:
        super().__init__()
        self.cfg = cfg
        c, cm = cfg.hidden_dim, cfg.mem_dim
        self.image_encoder = ImageEncoder(cfg.image_encoder)
        self.sam_prompt_encoder = PromptEncoder(cfg.prompt_encoder)
        self.sam_mask_decoder = MaskDecoder(cfg.mask_decoder)
        self.memory_attention = MemoryAttention(cfg.memory_attention)
        self.memory_encoder = MemoryEncoder(cfg.memory_encoder)
        # Mask prompt (full resolution) -> logits at the decoder's mask-input resolution.
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(cfg.num_maskmem, 1, 1, cm))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, c))
        # In the checkpoints, but unused: every released config adds the no-memory embedding
        # directly instead of attending to it.
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, c))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, c))
        if cfg.no_obj_embed_spatial:
            self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, cm))
        else:
            self.register_parameter("no_obj_embed_spatial", None)
        self.obj_ptr_proj = MLP(c, c, c, 3)
        self.obj_ptr_tpos_proj = nn.Linear(c, cm) if cfg.proj_tpos_enc_in_obj_ptrs else nn.Identity()
        for p in (self.maskmem_tpos_enc, self.no_mem_embed, self.no_mem_pos_enc, self.no_obj_ptr):
            nn.init.trunc_normal_(p, std=0.02)
        if self.no_obj_embed_spatial is not None:
            nn.init.trunc_normal_(self.no_obj_embed_spatial, std=0.02)

    @property
    def image_size(self) -> int:
        return self.cfg.image_size

    def encode_image(self, image: torch.Tensor) -> FrameFeatures:
        """image: (B, 3, S, S) normalized -> features; the decoder's high-res projections are
        applied here once per frame rather than once per object or click."""
        backbone_fpn, pos = self.image_encoder(image)
        high_res = self.sam_mask_decoder.project_high_res(backbone_fpn[:2])
        return FrameFeatures(pix_feat=backbone_fpn[-1], pix_pos=pos[-1], high_res=(high_res[0], high_res[1]))

    def memory_tokens(
        self,
        features: torch.Tensor,
        feature_pos: torch.Tensor,
        tpos_indices: list[int],
        obj_ptrs: torch.Tensor,
        ptr_distances: torch.Tensor,
    ) -> MemoryTokens:
        """Flatten memory frames and object pointers into attention tokens with their encodings.

        features: (B, K, Cm, h, w) spatial memories; feature_pos: (B, Cm, h, w), the same for
        every frame; tpos_indices: K indices into `maskmem_tpos_enc` (which slot of the
        temporal window each frame occupies); obj_ptrs: (B, P, C); ptr_distances: (B, P)
        signed frame distances (current minus the pointer's frame).
        """
        b, k, cm, h, w = features.shape
        spatial = features.flatten(3).transpose(2, 3).reshape(b, k * h * w, cm)  # (B, K*hw, Cm)
        pos = feature_pos.flatten(2).transpose(1, 2)  # (B, hw, Cm)
        tpos = self.maskmem_tpos_enc[tpos_indices].reshape(k, 1, cm)  # (K, 1, Cm)
        spatial_pos = (pos[:, None] + tpos[None]).reshape(b, k * h * w, cm)  # (B, K*hw, Cm)

        p, c = obj_ptrs.shape[1], obj_ptrs.shape[2]
        split = c // cm  # a pointer becomes `split` tokens of width Cm
        ptr_tokens = obj_ptrs.reshape(b, p * split, cm)  # (B, P*split, Cm)
        ptr_pos = self.pointer_pos_enc(ptr_distances).repeat_interleave(split, dim=1)  # (B, P*split, Cm)
        return MemoryTokens(
            tokens=torch.cat([spatial, ptr_tokens], dim=1),
            pos=torch.cat([spatial_pos, ptr_pos], dim=1),
            num_obj_ptr_tokens=p * split,
        )

    def pointer_pos_enc(self, distances: torch.Tensor) -> torch.Tensor:
        """(B, P) signed frame distances -> (B, P, Cm) temporal encoding of object pointers."""
        cfg = self.cfg
        b, p = distances.shape
        if not cfg.add_tpos_enc_to_obj_ptrs:
            return self.no_obj_ptr.new_zeros(b, p, cfg.mem_dim)
        if not cfg.use_signed_tpos_enc_to_obj_ptrs:
            distances = distances.abs()
        dim = cfg.hidden_dim if cfg.proj_tpos_enc_in_obj_ptrs else cfg.mem_dim
        # Normalized by the widest pointer window, so the encoding spans [0, 1] of a period.
        enc = sine_encoding_1d(distances.float() / (cfg.max_obj_ptrs_in_encoder - 1), dim)  # (B, P, dim)
        return self.obj_ptr_tpos_proj(enc)  # (B, P, Cm)

    def condition_on_memory(self, feats: FrameFeatures, memory: MemoryTokens | None) -> torch.Tensor:
        """Current frame features fused with the memory -> (B, C, h, w).

        Without memory (a prompt on an object's first frame) the learned no-memory embedding
        is added instead, as SAM 2 does on initial conditioning frames.
        """
        pix = feats.pix_feat  # (B, C, h, w)
        if memory is None:
            return pix + self.no_mem_embed.reshape(1, -1, 1, 1)
        b, c, h, w = pix.shape
        fused = self.memory_attention(
            curr=pix.flatten(2).transpose(1, 2),  # (B, hw, C)
            curr_pos=feats.pix_pos.flatten(2).transpose(1, 2),  # (B, hw, C)
            memory=memory.tokens,
            memory_pos=memory.pos,
            num_obj_ptr_tokens=memory.num_obj_ptr_tokens,
        )  # (B, hw, C)
        return fused.transpose(1, 2).reshape(b, c, h, w)

    def run_heads(
        self,
        pix_feat: torch.Tensor,
        high_res: tuple[torch.Tensor, torch.Tensor],
        *,
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask_logits: torch.Tensor | None = None,
        multimask: bool,
    ) -> HeadOutput:
        """Prompt encoder + mask decoder for B objects: `decode`, then `select_output`.

        pix_feat: (B, C, h, w) (memory-conditioned); point_coords: (B, N, 2) in model-input
        pixels, point_labels: (B, N) (2/3 = box corners); mask_logits: (B, 1, 4h, 4w) previous
        logits fed as a dense prompt.
        """
        decoded = self.decode(
            pix_feat, high_res, point_coords=point_coords, point_labels=point_labels,
            mask_logits=mask_logits, multimask=multimask,
        )
        return self.select_output(decoded)

    def decode(
        self,
        pix_feat: torch.Tensor,
        high_res: tuple[torch.Tensor, torch.Tensor],
        *,
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask_logits: torch.Tensor | None = None,
        multimask: bool,
    ) -> DecoderOutput:
        """Every mask the decoder proposes, before choosing one (training supervises them all)."""
        b = pix_feat.shape[0]
        if point_coords is None:
            # No clicks: one padding point, as SAM 2 feeds the decoder while tracking.
            point_coords, point_labels = padding_points(b, pix_feat.device, pix_feat.dtype)
        sparse, dense = self.sam_prompt_encoder(points=(point_coords, point_labels), boxes=None, masks=mask_logits)
        masks, ious, tokens, object_score_logits = self.sam_mask_decoder(
            image_embeddings=pix_feat,
            image_pe=self.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=False,
            high_res_features=list(high_res),
        )  # (B, M, 4h, 4w), (B, M), (B, M', C), (B, 1)
        return DecoderOutput(masks=masks, ious=ious, tokens=tokens, object_score_logits=object_score_logits)

    def select_output(self, decoded: DecoderOutput) -> HeadOutput:
        """Of several masks, the one with the best predicted IoU. Masks of objects scored
        absent are set to NO_OBJ_SCORE and their pointer is replaced by the learned
        no-object pointer."""
        masks, ious, tokens = decoded.masks, decoded.ious, decoded.tokens
        b = masks.shape[0]
        appearing = decoded.object_score_logits > 0  # (B, 1)
        masks = torch.where(appearing[:, :, None, None], masks, NO_OBJ_SCORE).float()
        if masks.shape[1] > 1:
            best = ious.argmax(dim=-1)  # (B,)
            rows = torch.arange(b, device=masks.device)
            low_res, iou = masks[rows, best][:, None], ious[rows, best]  # (B, 1, 4h, 4w), (B,)
            token = tokens[rows, best] if tokens.shape[1] > 1 else tokens[:, 0]  # (B, C)
        else:
            low_res, iou, token = masks, ious[:, 0], tokens[:, 0]
        return HeadOutput(
            low_res_logits=low_res,
            iou=iou,
            obj_ptr=self._gate_pointer(self.obj_ptr_proj(token), appearing.float()),
            object_score_logits=decoded.object_score_logits,
        )

    def mask_as_output(self, feats: FrameFeatures, mask: torch.Tensor) -> HeadOutput:
        """A mask prompt (B, 1, S, S), 0/1, is taken as the output itself (as +-10 logits);
        the decoder runs only to produce the object pointer from it, without memory."""
        mask = mask.float()
        high_res = mask * MASK_AS_OUTPUT_SCALE + MASK_AS_OUTPUT_BIAS  # (B, 1, S, S)
        low_res = F.interpolate(
            high_res, size=(high_res.shape[-2] // 4, high_res.shape[-1] // 4),
            mode="bilinear", align_corners=False, antialias=True,
        )  # (B, 1, S/4, S/4)
        heads = self.run_heads(
            feats.pix_feat, feats.high_res, mask_logits=self.mask_downsample(mask), multimask=False
        )
        appearing = mask.flatten(1).gt(0).any(dim=1, keepdim=True).float()  # (B, 1) from the mask itself
        return HeadOutput(
            low_res_logits=low_res,
            iou=torch.ones(mask.shape[0], device=mask.device),
            obj_ptr=self._gate_pointer(heads.obj_ptr, appearing),
            object_score_logits=appearing * MASK_AS_OUTPUT_SCALE + MASK_AS_OUTPUT_BIAS,
        )

    def _gate_pointer(self, obj_ptr: torch.Tensor, appearing: torch.Tensor) -> torch.Tensor:
        """(B, C) pointer, (B, 1) 0/1 -> the pointer if visible, else the no-object pointer."""
        return appearing * obj_ptr + (1 - appearing) * self.no_obj_ptr

    def encode_memory(
        self,
        pix_feat: torch.Tensor,
        low_res_logits: torch.Tensor,
        object_score_logits: torch.Tensor,
        *,
        binarize: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A frame's memory from its raw (not memory-conditioned) features and predicted mask.

        pix_feat: (B, C, h, w); low_res_logits: (B, 1, 4h, 4w); object_score_logits: (B, 1).
        `binarize` for prompted frames (the mask is trusted as given), soft sigmoid otherwise.
        Returns (features, pos), each (B, Cm, h, w).
        """
        size = self.cfg.image_size
        high_res = F.interpolate(low_res_logits, size=(size, size), mode="bilinear", align_corners=False)
        mask = (high_res > 0).float() if binarize else torch.sigmoid(high_res)  # (B, 1, S, S)
        mask = mask * self.cfg.sigmoid_scale_for_mem_enc + self.cfg.sigmoid_bias_for_mem_enc
        features, pos = self.memory_encoder(pix_feat, mask, skip_mask_sigmoid=True)
        if self.no_obj_embed_spatial is not None:
            absent = 1 - (object_score_logits > 0).float()  # (B, 1)
            features = features + absent[:, :, None, None] * self.no_obj_embed_spatial[:, :, None, None]
        return features, pos

    def forward(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError("SAM2Model is driven step by step; use sam2_ros.engine.StreamingTracker")


def build_model(size: str, image_size: int = 1024, version: str = "2.1") -> SAM2Model:
    """SAM 2 of an official size with random weights, in eval mode (load weights with
    `load_checkpoint`)."""
    return SAM2Model(sam2_config(size, image_size, version)).eval()
