"""Sine positional encoding of a 2D feature map (FPN neck and memory encoder)."""
from __future__ import annotations

import math

import torch
from torch import nn


class PositionEmbeddingSine(nn.Module):
    """DETR-style sine/cosine encoding of normalized (y, x) positions; no parameters.

    Returns (B, num_pos_feats, H, W): the first half encodes y, the second half x.
    """

    def __init__(self, num_pos_feats: int, *, temperature: float = 10000.0) -> None:
        super().__init__()
        if num_pos_feats % 2:
            raise ValueError(f"num_pos_feats must be even, got {num_pos_feats}")
        self.num_pos_feats = num_pos_feats // 2
        self.temperature = temperature
        self.scale = 2 * math.pi
        self._cache: dict[tuple[int, int, torch.device], torch.Tensor] = {}

    @torch.no_grad()
    def encode(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """(1, 2 * num_pos_feats, h, w) float32, cached per size and device."""
        key = (h, w, device)
        if key not in self._cache:
            eps = 1e-6
            y = torch.arange(1, h + 1, dtype=torch.float32, device=device)
            x = torch.arange(1, w + 1, dtype=torch.float32, device=device)
            y = (y / (y[-1:] + eps) * self.scale).view(h, 1).expand(h, w)  # (h, w)
            x = (x / (x[-1:] + eps) * self.scale).view(1, w).expand(h, w)  # (h, w)
            n = self.num_pos_feats
            dim_t = torch.arange(n, dtype=torch.float32, device=device)
            dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / n)  # (n,)
            pos_x = x[..., None] / dim_t  # (h, w, n)
            pos_y = y[..., None] / dim_t
            pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=3).flatten(2)
            pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=3).flatten(2)
            self._cache[key] = torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1)[None]  # (1, 2n, h, w)
        return self._cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, num_pos_feats, H, W) in x's dtype."""
        pe = self.encode(x.shape[-2], x.shape[-1], x.device)
        return pe.to(x.dtype).expand(x.shape[0], -1, -1, -1)
