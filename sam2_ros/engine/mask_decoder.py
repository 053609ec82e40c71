"""SAM 2 mask decoder: prompt tokens + image embedding -> mask logits, IoU, object score."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .common import MLP, LayerNorm2d
from .precision import run_float32
from .transformer import TwoWayTransformer


@dataclass(frozen=True)
class MaskDecoderConfig:
    """Defaults: SAM 2.1 (every official SAM 2 / 2.1 size uses the same decoder).

    All official checkpoints predict object scores with an MLP, use the high-resolution FPN
    features and a sigmoid IoU head, so those are built in rather than configurable.
    """

    transformer_dim: int = 256
    transformer_depth: int = 2
    transformer_num_heads: int = 8
    transformer_mlp_dim: int = 2048
    attention_downsample_rate: int = 2
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    use_multimask_token_for_obj_ptr: bool = True
    # With one output mask, fall back to the best multimask output when the single mask is
    # unstable under a +-delta logit threshold shift (what SAM 2's video predictor enables).
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98


def stability_scores(mask_logits: torch.Tensor, delta: float) -> torch.Tensor:
    """IoU of the masks thresholded at +delta and -delta: (..., H, W) -> (...); 1 when both are empty."""
    flat = mask_logits.flatten(-2)  # (..., HW)
    area_inner = (flat > delta).sum(-1).float()
    area_outer = (flat > -delta).sum(-1).float()
    return torch.where(area_outer > 0, area_inner / area_outer, 1.0)


class MaskDecoder(nn.Module):
    """Predicts 1 + num_multimask_outputs masks per prompt set and picks the ones to return.

    Output tokens are [object score, IoU, mask 0 (single), masks 1.. (multimask)], followed by
    the prompt tokens. Parameter names follow the checkpoints' `sam_mask_decoder.*` keys.
    """

    def __init__(self, cfg: MaskDecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dim = cfg.transformer_dim
        self.num_mask_tokens = cfg.num_multimask_outputs + 1
        self.transformer = TwoWayTransformer(
            depth=cfg.transformer_depth,
            embedding_dim=dim,
            num_heads=cfg.transformer_num_heads,
            mlp_dim=cfg.transformer_mlp_dim,
            attention_downsample_rate=cfg.attention_downsample_rate,
        )
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.obj_score_token = nn.Embedding(1, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.conv_s0 = nn.Conv2d(dim, dim // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(dim, dim // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            dim, cfg.iou_head_hidden_dim, self.num_mask_tokens, cfg.iou_head_depth, sigmoid_output=True
        )
        self.pred_obj_score_head = MLP(dim, dim, 1, 3)

    def project_high_res(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """FPN levels [(B, C, 4h, 4w), (B, C, 2h, 2w), ...] -> [(B, C/8, 4h, 4w), (B, C/4, 2h, 2w)].

        Done once per frame (not per prompt) by the model; the result is `high_res_features`.
        """
        if len(feats) < 2:
            raise ValueError(f"need the two highest-resolution FPN levels, got {len(feats)} level(s)")
        return [self.conv_s0(feats[0]), self.conv_s1(feats[1])]

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        repeat_image: bool,
        high_res_features: list[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """All mask tokens' outputs: (masks (B, M+1, 4h, 4w), iou (B, M+1), tokens (B, M+1, C),
        object_score_logits (B, 1)); index 0 is the single-mask token.
        """
        b = sparse_prompt_embeddings.shape[0]
        if repeat_image and image_embeddings.shape[0] != 1:
            raise ValueError(f"repeat_image needs one image embedding, got {image_embeddings.shape[0]}")
        if not repeat_image and image_embeddings.shape[0] != b:
            raise ValueError(
                f"image embeddings batch {image_embeddings.shape[0]} != prompt batch {b} (repeat_image=False)"
            )
        if image_pe.shape[0] != 1:
            raise ValueError(f"image_pe must have batch 1 (get_dense_pe()), got {image_pe.shape[0]}")
        if len(high_res_features) != 2:
            raise ValueError(f"high_res_features must be 2 maps (project_high_res), got {len(high_res_features)}")
        feat_s0, feat_s1 = high_res_features

        output_tokens = torch.cat(
            [self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight]
        )  # (2 + M+1, C)
        tokens = torch.cat([output_tokens.expand(b, -1, -1), sparse_prompt_embeddings], dim=1)  # (B, T, C)

        # One image serving several prompt sets broadcasts instead of being copied.
        src = (image_embeddings + dense_prompt_embeddings).expand(b, -1, -1, -1)  # (B, C, h, w)
        _, c, h, w = src.shape
        # float32 on the CPU bf16 path (precision.FLOAT32_PARTS); a plain call otherwise.
        hs, src = run_float32(self.transformer, src, image_pe, tokens)  # (B, T, C), (B, hw, C)
        obj_token_out = hs[:, 0]  # (B, C)
        iou_token_out = hs[:, 1]  # (B, C)
        mask_tokens_out = hs[:, 2 : 2 + self.num_mask_tokens]  # (B, M+1, C)

        src = src.transpose(1, 2).reshape(b, c, h, w)  # (B, C, h, w)
        up1, norm1, act1, up2, act2 = self.output_upscaling
        upscaled = act1(norm1(up1(src) + feat_s1))  # (B, C/4, 2h, 2w)
        upscaled = act2(up2(upscaled) + feat_s0)  # (B, C/8, 4h, 4w)

        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )  # (B, M+1, C/8)
        _, cu, hu, wu = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, cu, hu * wu)).reshape(b, -1, hu, wu)  # (B, M+1, 4h, 4w)

        iou_pred = self.iou_prediction_head(iou_token_out)  # (B, M+1)
        object_score_logits = self.pred_obj_score_head(obj_token_out)  # (B, 1)
        return masks, iou_pred, mask_tokens_out, object_score_logits

    def select_stable(self, masks: torch.Tensor, iou_pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per prompt set: the single mask if stable, else the multimask output with the best IoU.

        masks (B, M+1, H, W), iou_pred (B, M+1) -> (B, 1, H, W), (B, 1).
        """
        best = iou_pred[:, 1:].argmax(dim=-1, keepdim=True) + 1  # (B, 1), index into all tokens
        best_iou = iou_pred.gather(1, best)  # (B, 1)
        best_masks = masks.gather(1, best[:, :, None, None].expand(-1, -1, *masks.shape[-2:]))  # (B, 1, H, W)
        single_masks, single_iou = masks[:, :1], iou_pred[:, :1]
        is_stable = stability_scores(single_masks, self.cfg.dynamic_multimask_stability_delta) >= (
            self.cfg.dynamic_multimask_stability_thresh
        )  # (B, 1)
        masks_out = torch.where(is_stable[:, :, None, None], single_masks, best_masks)
        iou_out = torch.where(is_stable, single_iou, best_iou)
        return masks_out, iou_out

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        repeat_image: bool,
        high_res_features: list[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """image_embeddings (B or 1, C, h, w), image_pe (1, C, h, w), sparse (B, N, C),
        dense (B, C, h, w), high_res_features from `project_high_res` ((B or 1, C/8, 4h, 4w),
        (B or 1, C/4, 2h, 2w)).

        Returns masks (B, M, 4h, 4w), iou_pred (B, M), sam_tokens_out (B, M', C) and
        object_score_logits (B, 1); M = num_multimask_outputs with multimask_output, else 1.
        """
        masks, iou_pred, mask_tokens_out, object_score_logits = self.predict_masks(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            repeat_image,
            high_res_features,
        )
        if multimask_output:
            masks, iou_pred = masks[:, 1:], iou_pred[:, 1:]
        elif self.cfg.dynamic_multimask_via_stability and not self.training:
            masks, iou_pred = self.select_stable(masks, iou_pred)
        else:
            masks, iou_pred = masks[:, :1], iou_pred[:, :1]

        # The object pointer comes from the single-mask token unless the checkpoint was trained
        # to take it from the multimask tokens when several masks are returned.
        if multimask_output and self.cfg.use_multimask_token_for_obj_ptr:
            sam_tokens_out = mask_tokens_out[:, 1:]  # (B, M, C)
        else:
            sam_tokens_out = mask_tokens_out[:, :1]  # (B, 1, C)
        return masks, iou_pred, sam_tokens_out, object_score_logits
