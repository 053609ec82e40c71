"""Memory attention: conditions the current frame's features on the memory bank.

A stack of pre-norm layers (self-attention, cross-attention to the memory, MLP), both
attentions with 2D RoPE. The memory is `K` spatial frames of `HW` tokens (RoPE repeated per
frame) followed by object-pointer tokens (no RoPE). An optional validity mask lets a fixed
number of memory slots serve every step, so exported graphs keep static shapes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import Attention, dot_product_attention
from .rope import apply_rope, axial_tables, grid_side


@dataclass
class MemoryAttentionConfig:
    """Same for every SAM 2 / 2.1 size. Activation is ReLU; positions enter the queries only
    at the input (`0.1 * curr_pos`), as in every official config."""

    d_model: int = 256
    kv_in_dim: int = 64  # memory channels (memory encoder out_dim)
    num_layers: int = 4
    num_heads: int = 1
    dim_feedforward: int = 2048
    dropout: float = 0.1  # training only
    rope_theta: float = 10000.0
    pos_enc_at_input: bool = True
    pos_enc_at_cross_attn_keys: bool = True


class RoPEAttention(Attention):
    """Attention with 2D axial RoPE on queries and keys.

    Keys longer than the queries are whole frames of the query grid (RoPE repeated per
    frame) followed by `num_k_exclude_rope` tokens that are left unrotated.
    """

    def __init__(
        self, embedding_dim: int, num_heads: int, *, dropout: float, rope_theta: float, kv_in_dim: int | None = None
    ) -> None:
        super().__init__(embedding_dim, num_heads, dropout=dropout, kv_in_dim=kv_in_dim)
        self.rope_theta = rope_theta

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        num_k_exclude_rope: int = 0,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """q: (B, HW, C), k/v: (B, Nk, Ckv), attn_mask: (B, 1, 1, Nk) bool | None -> (B, HW, C)."""
        q = self.split_heads(self.q_proj(q))  # (B, h, HW, c)
        k = self.split_heads(self.k_proj(k))  # (B, h, Nk, c)
        cos, sin = axial_tables(q.shape[-1], grid_side(q.shape[-2]), self.rope_theta, q.device)
        q = apply_rope(q, cos, sin)
        num_k_rope = k.shape[-2] - num_k_exclude_rope
        k = torch.cat((apply_rope(k[:, :, :num_k_rope], cos, sin), k[:, :, num_k_rope:]), dim=-2)  # (B, h, Nk, c)
        if self._values_late(q, v):
            return self._attend_values_late(q, k, v, attn_mask)
        return self.attend(q, k, self.split_heads(self.v_proj(v)), attn_mask)

    def _values_late(self, q: torch.Tensor, v: torch.Tensor) -> bool:
        """Mix the narrow memory before projecting it? On the CPU bf16 matmul path (see
        `dot_product_attention`), when the values are narrower than the heads' width."""
        return q.device.type == "cpu" and q.dtype == torch.bfloat16 and not self.training and \
            v.shape[-1] < self.internal_dim

    def _attend_values_late(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """softmax(q k^T) (v W^T + b) computed as (softmax(q k^T) v) W^T + b: the weights of a
        row sum to 1, so the bias passes through, and the (HW x Nk) product runs at the memory's
        width (64) instead of the projected one (256). Exact up to rounding.

        q, k: (B, h, HW, c) projected and rotated; v: (B, Nk, Ckv) unprojected -> (B, HW, C)."""
        b, heads, _, c = q.shape
        values = v.to(q.dtype)[:, None].expand(b, heads, -1, -1)  # (B, h, Nk, Ckv)
        mixed = dot_product_attention(q, k, values, attn_mask=attn_mask)  # (B, h, HW, Ckv)
        weight = self.v_proj.weight.reshape(heads, c, -1).transpose(-1, -2)  # (h, Ckv, c)
        out = mixed @ weight.to(q.dtype) + self.v_proj.bias.reshape(heads, 1, c).to(q.dtype)  # (B, h, HW, c)
        return self.out_proj(self.merge_heads(out))


class MemoryAttentionLayer(nn.Module):
    """Pre-norm layer: RoPE self-attention, RoPE cross-attention to the memory, ReLU MLP."""

    def __init__(self, cfg: MemoryAttentionConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.self_attn = RoPEAttention(d, cfg.num_heads, dropout=cfg.dropout, rope_theta=cfg.rope_theta)
        self.cross_attn_image = RoPEAttention(
            d, cfg.num_heads, dropout=cfg.dropout, rope_theta=cfg.rope_theta, kv_in_dim=cfg.kv_in_dim
        )
        self.linear1 = nn.Linear(d, cfg.dim_feedforward)
        self.linear2 = nn.Linear(cfg.dim_feedforward, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.norm3 = nn.LayerNorm(d)
        self.dropout = nn.Dropout(cfg.dropout)
        self.dropout1 = nn.Dropout(cfg.dropout)
        self.dropout2 = nn.Dropout(cfg.dropout)
        self.dropout3 = nn.Dropout(cfg.dropout)
        self.pos_enc_at_cross_attn_keys = cfg.pos_enc_at_cross_attn_keys

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        *,
        num_k_exclude_rope: int,
        attn_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """x: (B, HW, C), memory/memory_pos: (B, M, Cm) -> (B, HW, C)."""
        h = self.norm1(x)  # (B, HW, C)
        x = x + self.dropout1(self.self_attn(h, h, h))
        h = self.norm2(x)
        keys = memory + memory_pos if self.pos_enc_at_cross_attn_keys else memory  # (B, M, Cm)
        h = self.cross_attn_image(h, keys, memory, num_k_exclude_rope=num_k_exclude_rope, attn_mask=attn_mask)
        x = x + self.dropout2(h)
        h = self.linear2(self.dropout(F.relu(self.linear1(self.norm3(x)), inplace=True)))  # (B, HW, C)
        return x + self.dropout3(h)


class MemoryAttention(nn.Module):
    """Stack of `MemoryAttentionLayer`s and a final LayerNorm (checkpoint prefix `memory_attention.`)."""

    def __init__(self, cfg: MemoryAttentionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(MemoryAttentionLayer(cfg) for _ in range(cfg.num_layers))
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(
        self,
        curr: torch.Tensor,
        curr_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        num_obj_ptr_tokens: int = 0,
        memory_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Current-frame tokens attend to the memory.

        curr, curr_pos: (B, HW, C), HW a square grid (row-major).
        memory, memory_pos: (B, M, Cm), M = K * HW spatial tokens then `num_obj_ptr_tokens`.
        memory_mask: (B, M) bool, True = valid slot. Masked slots have no influence and may
            hold any values (even non-finite); each batch element needs at least one valid slot.
        Returns (B, HW, C).
        """
        b, m, _ = memory.shape
        if not 0 <= num_obj_ptr_tokens <= m:
            raise ValueError(f"num_obj_ptr_tokens must be in [0, {m}] (memory tokens), got {num_obj_ptr_tokens}")
        attn_mask = None
        if memory_mask is not None:
            if memory_mask.shape != (b, m) or memory_mask.dtype != torch.bool:
                raise ValueError(
                    f"memory_mask must be bool of shape {(b, m)}, got {memory_mask.dtype} {tuple(memory_mask.shape)}"
                )
            valid = memory_mask[:, :, None]  # (B, M, 1)
            # Zeroed so that non-finite garbage cannot leak through 0 * NaN in the softmax.
            memory = torch.where(valid, memory, torch.zeros_like(memory))  # (B, M, Cm)
            memory_pos = torch.where(valid, memory_pos, torch.zeros_like(memory_pos))  # (B, M, Cm)
            attn_mask = memory_mask[:, None, None, :]  # (B, 1, 1, M)
        x = curr + 0.1 * curr_pos if self.cfg.pos_enc_at_input else curr  # (B, HW, C)
        for layer in self.layers:
            x = layer(x, memory, memory_pos, num_k_exclude_rope=num_obj_ptr_tokens, attn_mask=attn_mask)
        return self.norm(x)  # (B, HW, C)
