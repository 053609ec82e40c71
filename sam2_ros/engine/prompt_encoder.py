"""SAM prompt encoder: clicks and box corners become sparse tokens, a mask becomes a dense map."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .common import LayerNorm2d

NUM_POINT_LABELS = 4  # 0 negative click, 1 positive click, 2 box top-left, 3 box bottom-right
PADDING_LABEL = -1


@dataclass(frozen=True)
class PromptEncoderConfig:
    """Defaults: SAM 2.1 at image_size 1024; image_embedding_size is image_size // 16."""

    embed_dim: int = 256
    image_embedding_size: int = 64
    input_image_size: int = 1024
    mask_in_chans: int = 16


class RandomFourierEncoding(nn.Module):
    """Encodes (x, y) positions in [0, 1]^2 with a fixed random Gaussian frequency matrix.

    The matrix is a buffer stored in the checkpoints (`positional_encoding_gaussian_matrix`),
    so prompts and the dense image grid are encoded with the frequencies the model was trained on.
    """

    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_pos_feats))
        # (size, autocast dtype) -> (the matrix it was computed from, its version, the grid)
        self._grids: dict[tuple[int, torch.dtype | None], tuple[torch.Tensor, int, torch.Tensor]] = {}

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """coords: (..., 2) as (x, y) in [0, 1] -> (..., 2 * num_pos_feats) as [sin, cos]."""
        coords = 2 * coords - 1
        coords = coords @ self.positional_encoding_gaussian_matrix  # (..., F)
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)  # (..., 2F)

    def encode_pixels(self, coords: torch.Tensor, image_size: int) -> torch.Tensor:
        """coords: (B, N, 2) in pixels of a square image_size image -> (B, N, 2F)."""
        return self.encode((coords / image_size).float())

    def grid(self, size: int) -> torch.Tensor:
        """Encoding of the centres of a size x size grid: (2F, size, size).

        The decoder asks for it on every call, so it is cached for the current frequencies
        (and autocast dtype, which rounds the product). The cache can't go stale: moving or
        converting the module makes a new matrix, and writing into it (`load_state_dict`)
        bumps its version; either computes the grid again. While torch.export /
        torch.compile trace, or for an inference tensor (no version counter), it is
        computed on every call instead.
        """
        matrix = self.positional_encoding_gaussian_matrix
        if torch.compiler.is_compiling() or matrix.is_inference():
            return self._compute_grid(size)
        device_type = matrix.device.type
        autocast = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
        key = (size, autocast)
        cached = self._grids.get(key)
        if cached is None or cached[0] is not matrix or cached[1] != matrix._version:
            # A normal tensor even when first asked for under inference_mode, so that a
            # later autograd pass (training) can still use it.
            with torch.inference_mode(False), torch.no_grad():
                self._grids[key] = (matrix, matrix._version, self._compute_grid(size))
        return self._grids[key][2]

    def _compute_grid(self, size: int) -> torch.Tensor:
        device = self.positional_encoding_gaussian_matrix.device
        centres = (torch.arange(size, dtype=torch.float32, device=device) + 0.5) / size  # (S,)
        y = centres[:, None].expand(size, size)  # (S, S)
        x = centres[None, :].expand(size, size)  # (S, S)
        return self.encode(torch.stack([x, y], dim=-1)).permute(2, 0, 1)  # (2F, S, S)


class PromptEncoder(nn.Module):
    """Embeds points (labels -1 padding, 0 negative, 1 positive, 2/3 box corners), boxes and masks.

    Parameter names follow the checkpoints' `sam_prompt_encoder.*` keys.
    """

    def __init__(self, cfg: PromptEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dim = cfg.embed_dim
        self.pe_layer = RandomFourierEncoding(dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, dim) for _ in range(NUM_POINT_LABELS))
        self.not_a_point_embed = nn.Embedding(1, dim)
        self.mask_input_size = (4 * cfg.image_embedding_size, 4 * cfg.image_embedding_size)
        hidden = cfg.mask_in_chans
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, hidden // 4, kernel_size=2, stride=2),
            LayerNorm2d(hidden // 4),
            nn.GELU(),
            nn.Conv2d(hidden // 4, hidden, kernel_size=2, stride=2),
            LayerNorm2d(hidden),
            nn.GELU(),
            nn.Conv2d(hidden, dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of every image-embedding cell: (1, C, h, w)."""
        return self.pe_layer.grid(self.cfg.image_embedding_size)[None]

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor, *, pad: bool) -> torch.Tensor:
        """coords (B, N, 2) pixels, labels (B, N) -> (B, N + pad, C).

        Without a box the decoder was trained with one trailing padding token, hence `pad`.
        """
        coords = coords + 0.5  # pixel centres
        if pad:
            b = coords.shape[0]
            coords = torch.cat([coords, coords.new_zeros(b, 1, 2)], dim=1)  # (B, N+1, 2)
            labels = torch.cat([labels, labels.new_full((b, 1), PADDING_LABEL)], dim=1)  # (B, N+1)
        embedding = self.pe_layer.encode_pixels(coords, self.cfg.input_image_size)  # (B, N', C)
        labels = labels[..., None]  # (B, N', 1)
        embedding = torch.where(labels == PADDING_LABEL, self.not_a_point_embed.weight, embedding)
        for label, label_embed in enumerate(self.point_embeddings):
            embedding = torch.where(labels == label, embedding + label_embed.weight, embedding)
        return embedding

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """boxes (B, 4) as x0, y0, x1, y1 pixels -> corner tokens (B, 2, C)."""
        corners = (boxes + 0.5).reshape(-1, 2, 2)  # (B, 2, 2)
        embedding = self.pe_layer.encode_pixels(corners, self.cfg.input_image_size)  # (B, 2, C)
        corner_embed = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight])  # (2, C)
        return embedding + corner_embed

    def embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """masks (B, 1, 4h, 4w) logits -> (B, C, h, w)."""
        expected = self.mask_input_size
        if masks.dim() != 4 or masks.shape[1] != 1 or tuple(masks.shape[-2:]) != expected:
            raise ValueError(f"mask prompt must be (B, 1, {expected[0]}, {expected[1]}), got {tuple(masks.shape)}")
        return self.mask_downscaling(masks)

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (sparse (B, N', C), dense (B, C, h, w)); B comes from the first prompt given."""
        given = [p for p in (None if points is None else points[0], boxes, masks) if p is not None]
        b = given[0].shape[0] if given else 1
        device = self.no_mask_embed.weight.device
        sparse = [torch.empty(b, 0, self.cfg.embed_dim, device=device)]
        if points is not None:
            sparse.append(self.embed_points(*points, pad=boxes is None))
        if boxes is not None:
            sparse.append(self.embed_boxes(boxes))
        if masks is not None:
            dense = self.embed_masks(masks)
        else:
            h = w = self.cfg.image_embedding_size
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(b, -1, h, w)  # (B, C, h, w)
        return torch.cat(sparse, dim=1), dense
