"""Two-way transformer of the SAM mask decoder: prompt tokens and image cells attend to each other."""
from __future__ import annotations

import torch
from torch import nn

from .common import MLP, Attention


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, tokens -> image, token MLP, image -> tokens; post-norm after each."""

    def __init__(
        self,
        *,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        attention_downsample_rate: int,
        skip_first_layer_pe: bool,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLP(embedding_dim, mlp_dim, embedding_dim, 2, activation=nn.ReLU)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        # The first block sees the raw prompt embeddings, which already carry their position.
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor, key_pe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """queries/query_pe: (B, N, C); keys (B, HW, C), key_pe (1 or B, HW, C)."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)  # (B, N, C), replaces: no residual
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)  # (B, N, C)
        queries = self.norm1(queries)

        k = keys + key_pe  # (B, HW, C)
        queries = queries + self.cross_attn_token_to_image(queries + query_pe, k, keys)  # (B, N, C)
        queries = self.norm2(queries)

        queries = self.norm3(queries + self.mlp(queries))  # (B, N, C)

        q = queries + query_pe
        keys = keys + self.cross_attn_image_to_token(k, q, queries)  # (B, HW, C)
        keys = self.norm4(keys)
        return queries, keys


class TwoWayTransformer(nn.Module):
    """`depth` two-way blocks, then a last token -> image attention.

    Parameters are `layers.{i}.*`, `final_attn_token_to_image`, `norm_final_attn`, as in the
    checkpoints (`sam_mask_decoder.transformer.*`).
    """

    def __init__(
        self, *, depth: int, embedding_dim: int, num_heads: int, mlp_dim: int, attention_downsample_rate: int
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=i == 0,
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """image_embedding (B, C, h, w), image_pe (1 or B, C, h, w), point_embedding (B, N, C).

        Returns (tokens (B, N, C), image cells (B, hw, C)).
        """
        keys = image_embedding.flatten(2).permute(0, 2, 1)  # (B, hw, C)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)  # (1 or B, hw, C)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        attn_out = self.final_attn_token_to_image(queries + point_embedding, keys + key_pe, keys)  # (B, N, C)
        queries = self.norm_final_attn(queries + attn_out)
        return queries, keys
