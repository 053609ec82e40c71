"""SAM 2 image encoder: the Hiera trunk and the FPN neck.

Hiera is a hierarchical ViT: four stages of blocks, the first block of each later stage
halving the token grid by max-pooling its queries and widening channels and heads.
Most blocks attend within windows, a few attend globally. The neck projects each stage to
`d_model` channels and adds the top-down path on the lower-resolution levels.
Attribute names follow the official checkpoint keys (`image_encoder.trunk.*`, `.neck.*`).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from sam2_ros.engine.common import MLP, dot_product_attention
from sam2_ros.engine.position_encoding import PositionEmbeddingSine


@dataclass(frozen=True)
class HieraConfig:
    """Hiera trunk hyperparameters; defaults are SAM 2.1 tiny (every size: `config.py`)."""

    embed_dim: int = 96  # channels of stage 1
    num_heads: int = 1  # heads of stage 1
    stages: tuple[int, ...] = (1, 2, 7, 2)  # blocks per stage
    global_att_blocks: tuple[int, ...] = (5, 7, 9)  # block indices with global attention
    window_spec: tuple[int, ...] = (8, 4, 14, 7)  # attention window side per stage
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (7, 7)  # background pos_embed grid
    q_pool: int = 3  # number of stage transitions that pool queries
    q_stride: tuple[int, int] = (2, 2)
    dim_mul: float = 2.0  # channel growth per stage transition
    head_mul: float = 2.0  # head growth per stage transition
    mlp_ratio: float = 4.0
    patch_kernel_size: int = 7
    patch_stride: int = 4
    patch_padding: int = 3

    def __post_init__(self) -> None:
        if len(self.window_spec) != len(self.stages):
            raise ValueError(
                f"window_spec needs one entry per stage: {len(self.stages)} stages, "
                f"got window_spec={self.window_spec}"
            )
        if not 0 <= self.q_pool < len(self.stages):
            raise ValueError(f"q_pool must be in [0, {len(self.stages) - 1}], got {self.q_pool}")

    @property
    def channel_list(self) -> tuple[int, ...]:
        """Output channels of each stage, lowest resolution first (the neck's order)."""
        dims = [int(self.embed_dim * self.dim_mul**s) for s in range(len(self.stages))]
        return tuple(reversed(dims))


@dataclass(frozen=True)
class ImageEncoderConfig:
    """Trunk plus neck; defaults are SAM 2.1 tiny."""

    trunk: HieraConfig = field(default_factory=HieraConfig)
    d_model: int = 256
    backbone_channel_list: tuple[int, ...] = (768, 384, 192, 96)  # lowest resolution first
    fpn_top_down_levels: tuple[int, ...] = (2, 3)  # levels (0 = highest res) fed top-down
    scalp: int = 1  # lowest-resolution levels dropped from the output

    def __post_init__(self) -> None:
        if tuple(self.backbone_channel_list) != self.trunk.channel_list:
            raise ValueError(
                f"backbone_channel_list must equal the trunk's stage channels "
                f"{self.trunk.channel_list}, got {tuple(self.backbone_channel_list)}"
            )


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, C) -> (B * nW, window, window, C), zero-padding H and W up to multiples of window."""
    b, h, w, c = x.shape
    pad_h = (window - h % window) % window
    pad_w = (window - w % window) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))  # (B, Hp, Wp, C)
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c)  # (B*nW, win, win, C)
    return windows, (hp, wp)


def window_unpartition(
    windows: torch.Tensor, window: int, padded_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """Inverse of `window_partition`: (B * nW, window, window, C) -> (B, H, W, C)."""
    hp, wp = padded_hw
    h, w = hw
    b = windows.shape[0] // (hp * wp // window // window)
    x = windows.reshape(b, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)  # (B, Hp, Wp, C)
    if hp > h or wp > w:
        x = x[:, :h, :w, :]
    return x


def pool_grid(x: torch.Tensor, pool: nn.Module) -> torch.Tensor:
    """Apply a 2D pooling to a channels-last grid: (B, H, W, C) -> (B, H', W', C)."""
    return pool(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class MultiScaleAttention(nn.Module):
    """Self-attention over a grid whose queries may be max-pooled (at a stage transition)."""

    def __init__(self, *, dim: int, dim_out: int, num_heads: int, q_pool: nn.Module | None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_pool = q_pool
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, H, W, dim) -> (B, H', W', dim_out), H' = H / q_stride when pooling."""
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1)  # (B, HW, 3, heads, c)
        q, k, v = torch.unbind(qkv, 2)  # (B, HW, heads, c) each
        if self.q_pool is not None:
            q = pool_grid(q.reshape(b, h, w, -1), self.q_pool)  # (B, H', W', heads*c)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, -1)  # (B, H'W', heads, c)
        x = dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        x = x.transpose(1, 2).reshape(b, h, w, -1)  # (B, H', W', dim_out)
        return self.proj(x)


class MultiScaleBlock(nn.Module):
    """Pre-norm transformer block; windowed or global attention, optional query pooling.

    When the width changes, the shortcut is projected (`proj`) and pooled like the queries.
    """

    def __init__(
        self,
        *,
        dim: int,
        dim_out: int,
        num_heads: int,
        mlp_ratio: float,
        q_stride: tuple[int, int] | None,
        window_size: int,
    ) -> None:
        super().__init__()
        self.window_size = window_size  # 0 = global attention
        self.q_stride = q_stride
        self.pool = None if q_stride is None else nn.MaxPool2d(kernel_size=q_stride, stride=q_stride)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(dim=dim, dim_out=dim_out, num_heads=num_heads, q_pool=self.pool)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, 2, activation=nn.GELU)
        self.proj = nn.Linear(dim, dim_out) if dim != dim_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, H, W, dim) -> (B, H', W', dim_out)."""
        shortcut = x
        x = self.norm1(x)
        if self.proj is not None:
            shortcut = self.proj(x)  # (B, H, W, dim_out)
            if self.pool is not None:
                shortcut = pool_grid(shortcut, self.pool)  # (B, H', W', dim_out)

        window = self.window_size
        if window > 0:
            hw = x.shape[1:3]
            x, padded_hw = window_partition(x, window)  # (B*nW, win, win, dim)
        x = self.attn(x)
        if window > 0:
            if self.q_stride is not None:
                # Queries were pooled inside each window: windows and grid shrank with them.
                window //= self.q_stride[0]
                hw = shortcut.shape[1:3]
                padded_hw = tuple(-(-s // window) * window for s in hw)
            x = window_unpartition(x, window, padded_hw, hw)  # (B, H', W', dim_out)

        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Strided convolution from pixels to the stage-1 token grid (channels last)."""

    def __init__(self, *, embed_dim: int, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=kernel_size, stride=stride, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)  # (B, H/4, W/4, C)


class Hiera(nn.Module):
    """Hierarchical ViT trunk; returns each stage's output, highest resolution first."""

    def __init__(self, cfg: HieraConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(
            embed_dim=cfg.embed_dim,
            kernel_size=cfg.patch_kernel_size,
            stride=cfg.patch_stride,
            padding=cfg.patch_padding,
        )
        # Background embedding, resized to the token grid, plus one tiled per window (arXiv 2311.05613).
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.embed_dim, *cfg.window_pos_embed_bkg_spatial_size))
        first_window = cfg.window_spec[0]
        self.pos_embed_window = nn.Parameter(torch.zeros(1, cfg.embed_dim, first_window, first_window))
        self._pos_cache: tuple[tuple, torch.Tensor] | None = None  # see position_embedding

        stage_ends = [sum(cfg.stages[: s + 1]) - 1 for s in range(len(cfg.stages))]
        self.stage_ends = tuple(stage_ends)
        pool_blocks = {end + 1 for end in stage_ends[: cfg.q_pool]}

        self.blocks = nn.ModuleList()
        dim, heads, stage = cfg.embed_dim, cfg.num_heads, 0
        for i in range(sum(cfg.stages)):
            # A stage's first block still uses the previous stage's window (before pooling).
            window = 0 if i in cfg.global_att_blocks else cfg.window_spec[stage]
            dim_out = dim
            if i - 1 in stage_ends:
                dim_out, heads, stage = int(dim * cfg.dim_mul), int(heads * cfg.head_mul), stage + 1
            self.blocks.append(
                MultiScaleBlock(
                    dim=dim,
                    dim_out=dim_out,
                    num_heads=heads,
                    mlp_ratio=cfg.mlp_ratio,
                    q_stride=cfg.q_stride if i in pool_blocks else None,
                    window_size=window,
                )
            )
            dim = dim_out

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (window tiling, exact pooling)."""
        pooling = [stride**self.cfg.q_pool for stride in self.cfg.q_stride]
        return self.cfg.patch_stride * math.lcm(self.cfg.window_spec[0], *pooling)

    def position_embedding(self, h: int, w: int) -> torch.Tensor:
        """(1, h, w, C) embedding for an h x w token grid.

        A function of the weights only, so outside autograd and tracing it is computed once
        per grid and reused (the bicubic resize costs ~5% of a frame): the cache is keyed by
        the parameters' identity, version counters (bumped by `load_state_dict`), dtype and
        device, so loading or casting weights recomputes it.
        """
        if torch.is_grad_enabled() or torch.compiler.is_compiling() or torch.jit.is_tracing():
            return self._compute_position_embedding(h, w)
        params = (self.pos_embed, self.pos_embed_window)
        key = (h, w, *((p.data_ptr(), p._version, p.dtype, p.device) for p in params))
        if self._pos_cache is None or self._pos_cache[0] != key:
            self._pos_cache = (key, self._compute_position_embedding(h, w))
        return self._pos_cache[1]

    def _compute_position_embedding(self, h: int, w: int) -> torch.Tensor:
        pos = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")  # (1, C, h, w)
        window = self.pos_embed_window.shape[-1]
        pos = pos + self.pos_embed_window.tile([1, 1, h // window, w // window])
        return pos.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 3, H, W) -> one (B, C_s, H / 4 / 2^s, W / 4 / 2^s) map per stage s."""
        x = self.patch_embed(x)  # (B, H/4, W/4, C)
        x = x + self.position_embedding(x.shape[1], x.shape[2])
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))  # (B, C_s, H_s, W_s)
        return outputs


class FpnNeck(nn.Module):
    """1x1 lateral projections to d_model, with a nearest-upsampled top-down path on some levels."""

    def __init__(
        self, *, d_model: int, backbone_channel_list: tuple[int, ...], fpn_top_down_levels: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.position_encoding = PositionEmbeddingSine(d_model)
        # convs[j] projects level n - j: the lowest resolution comes first, as in the checkpoints.
        self.convs = nn.ModuleList(
            nn.Sequential(OrderedDict(conv=nn.Conv2d(dim, d_model, kernel_size=1))) for dim in backbone_channel_list
        )
        self.fpn_top_down_levels = tuple(fpn_top_down_levels)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """xs: stage maps, highest resolution first -> (B, d_model, H_s, W_s) per level, same order."""
        if len(xs) != len(self.convs):
            raise ValueError(f"neck expects {len(self.convs)} feature levels, got {len(xs)}")
        n = len(xs) - 1
        low_to_high: list[torch.Tensor] = []
        for i in range(n, -1, -1):
            lateral = self.convs[n - i](xs[i])  # (B, d_model, H_i, W_i)
            if i in self.fpn_top_down_levels and low_to_high:
                top_down = F.interpolate(low_to_high[-1].float(), scale_factor=2.0, mode="nearest")
                low_to_high.append((lateral + top_down).to(lateral.dtype))
            else:
                low_to_high.append(lateral)
        return low_to_high[::-1]


class ImageEncoder(nn.Module):
    """Normalized image -> multi-scale features and their sine position encodings."""

    def __init__(self, cfg: ImageEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.trunk = Hiera(cfg.trunk)
        self.neck = FpnNeck(
            d_model=cfg.d_model,
            backbone_channel_list=cfg.backbone_channel_list,
            fpn_top_down_levels=cfg.fpn_top_down_levels,
        )

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """x: (B, 3, S, S) -> (backbone_fpn, pos_enc), each a list of (B, d_model, S/4 / 2^l, S/4 / 2^l).

        Levels run from high to low resolution; the `scalp` lowest ones are dropped.
        """
        multiple = self.trunk.size_multiple
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] % multiple or x.shape[3] % multiple:
            raise ValueError(
                f"expected images (B, 3, H, W) with H and W multiples of {multiple}, got {tuple(x.shape)}"
            )
        features = self.neck(self.trunk(x))
        if self.cfg.scalp > 0:
            features = features[: -self.cfg.scalp]
        pos = [self.neck.position_encoding(f) for f in features]  # (B, d_model, H_l, W_l) each
        return features, pos
