"""Memory encoder: turns a frame's features and its predicted mask into a memory entry.

The mask is downsampled to the feature grid, added to projected image features, fused by
ConvNeXt blocks and projected to the (narrower) memory width, with a sine position encoding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .common import LayerNorm2d
from .position_encoding import PositionEmbeddingSine


@dataclass
class MemoryEncoderConfig:
    """Same for every SAM 2 / 2.1 size."""

    in_dim: int = 256  # image feature channels
    out_dim: int = 64  # memory channels
    mask_kernel_size: int = 3
    mask_stride: int = 2
    mask_padding: int = 1
    mask_total_stride: int = 16  # mask resolution / feature resolution
    fuser_num_layers: int = 2
    fuser_kernel_size: int = 7
    layer_scale_init_value: float = 1e-6


class MaskDownsampler(nn.Module):
    """Strided conv + LayerNorm2d + GELU stages (channels x stride^2 each) to the total
    stride, then a 1x1 conv to `embed_dim`. Parameters live in `encoder.{i}`."""

    def __init__(self, embed_dim: int, *, kernel_size: int, stride: int, padding: int, total_stride: int) -> None:
        super().__init__()
        num_stages = round(math.log(total_stride, stride))
        if stride**num_stages != total_stride:
            raise ValueError(f"total_stride must be a power of stride {stride}, got {total_stride}")
        self.encoder = nn.Sequential()
        channels = 1
        for _ in range(num_stages):
            out = channels * stride**2
            self.encoder.append(nn.Conv2d(channels, out, kernel_size, stride=stride, padding=padding))
            self.encoder.append(LayerNorm2d(out))
            self.encoder.append(nn.GELU())
            channels = out
        self.encoder.append(nn.Conv2d(channels, embed_dim, kernel_size=1))

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        """(B, 1, S*H, S*W) -> (B, embed_dim, H, W)."""
        return self.encoder(masks)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise conv, LayerNorm2d, pointwise MLP (as Linear layers on
    channels-last), layer scale `gamma`, residual."""

    def __init__(self, dim: int, *, kernel_size: int, layer_scale_init_value: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        h = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)  # (B, H, W, C)
        h = self.gamma * self.pwconv2(self.act(self.pwconv1(h)))  # (B, H, W, C)
        return x + h.permute(0, 3, 1, 2)  # (B, C, H, W)


class Fuser(nn.Module):
    """A stack of CXBlocks (parameters in `layers.{i}`)."""

    def __init__(self, dim: int, *, num_layers: int, kernel_size: int, layer_scale_init_value: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            CXBlock(dim, kernel_size=kernel_size, layer_scale_init_value=layer_scale_init_value)
            for _ in range(num_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """Checkpoint prefix `memory_encoder.`."""

    def __init__(self, cfg: MemoryEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mask_downsampler = MaskDownsampler(
            cfg.in_dim,
            kernel_size=cfg.mask_kernel_size,
            stride=cfg.mask_stride,
            padding=cfg.mask_padding,
            total_stride=cfg.mask_total_stride,
        )
        self.pix_feat_proj = nn.Conv2d(cfg.in_dim, cfg.in_dim, kernel_size=1)
        self.fuser = Fuser(
            cfg.in_dim,
            num_layers=cfg.fuser_num_layers,
            kernel_size=cfg.fuser_kernel_size,
            layer_scale_init_value=cfg.layer_scale_init_value,
        )
        self.out_proj = nn.Conv2d(cfg.in_dim, cfg.out_dim, kernel_size=1)
        self.position_encoding = PositionEmbeddingSine(cfg.out_dim)

    def forward(
        self, pix_feat: torch.Tensor, masks: torch.Tensor, skip_mask_sigmoid: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """pix_feat: (B, in_dim, h, w); masks: (B, 1, S*h, S*w) with S = mask_total_stride,
        probabilities, or logits when `skip_mask_sigmoid` is False (SAM 2 itself passes
        already scaled probabilities). Returns (features, pos), each (B, out_dim, h, w)."""
        b, _, h, w = pix_feat.shape
        s = self.cfg.mask_total_stride
        if masks.shape != (b, 1, s * h, s * w):
            raise ValueError(f"masks must be {(b, 1, s * h, s * w)} for features {tuple(pix_feat.shape)}, "
                             f"got {tuple(masks.shape)}")
        if not skip_mask_sigmoid:
            masks = torch.sigmoid(masks)
        x = self.pix_feat_proj(pix_feat) + self.mask_downsampler(masks)  # (B, in_dim, h, w)
        x = self.out_proj(self.fuser(x))  # (B, out_dim, h, w)
        return x, self.position_encoding(x)
