"""2D axial rotary position encoding (RoPE) for square token grids.

Channels are rotated in adjacent pairs (2i, 2i+1): the first half of the pairs by the
token's column index, the second half by its row index, each with `head_dim // 4`
frequencies. The reference does this with complex multiplication; here it is written with
real cos/sin tables so that the same code exports to ONNX and TensorRT.
"""
from __future__ import annotations

import functools
import math
import weakref

import torch


def grid_side(num_tokens: int) -> int:
    """Side of the square grid that `num_tokens` tokens form (row-major)."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f"RoPE expects a square token grid, got {num_tokens} tokens")
    return side


def axial_tables(head_dim: int, side: int, theta: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angles, each (side * side, head_dim // 2) float32.

    Cached per (head_dim, side, theta, device) and shared by every attention layer in eager
    mode. While torch.export / torch.compile trace they are computed in the graph instead:
    a cache filled then would keep the tracer's fake tensors.
    """
    if head_dim % 4:
        raise ValueError(f"RoPE head_dim must be a multiple of 4, got {head_dim}")
    if torch.compiler.is_compiling():
        return _compute_tables(head_dim, side, theta, device)
    return _cached_tables(head_dim, side, theta, device)


def _compute_tables(head_dim: int, side: int, theta: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    exponents = torch.arange(0, head_dim, 4, device=device)[: head_dim // 4].float() / head_dim
    freqs = 1.0 / (theta ** exponents)  # (head_dim/4,)
    t = torch.arange(side * side, dtype=torch.float32, device=device)
    col = t % side  # (N,)
    row = torch.div(t, side, rounding_mode="floor")  # (N,)
    angles = torch.cat((torch.outer(col, freqs), torch.outer(row, freqs)), dim=-1)  # (N, head_dim/2)
    return angles.cos(), angles.sin()


@functools.lru_cache(maxsize=32)
def _cached_tables(head_dim: int, side: int, theta: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # Normal tensors even when first asked for under inference_mode, so a later autograd
    # pass can still save them for backward.
    with torch.inference_mode(False), torch.no_grad():
        return _compute_tables(head_dim, side, theta, device)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x: (..., K * N, head_dim) by tables (N, head_dim / 2), repeated over the K blocks.

    K > 1 is the memory case: K frames of N tokens, each frame with the same positions.
    Computed in float32 (as the reference does) and returned in x's dtype.
    """
    n, half = cos.shape
    if x.shape[-1] != 2 * half:
        raise ValueError(f"RoPE expects head_dim {2 * half}, got {x.shape[-1]}")
    if x.shape[-2] % n:
        raise ValueError(f"RoPE expects a multiple of {n} tokens (frames of the grid), got {x.shape[-2]}")
    lead = x.shape[:-2]
    if x.dtype == torch.bfloat16 and x.device.type == "cpu" and not torch.compiler.is_compiling():
        return _apply_rope_paired(x, cos, sin)
    pairs = x.float().reshape(*lead, x.shape[-2] // n, n, half, 2)  # (..., K, N, head_dim/2, 2)
    even, odd = pairs[..., 0], pairs[..., 1]  # (..., K, N, head_dim/2)
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)  # (..., K, N, head_dim/2, 2)
    return rotated.reshape(x.shape).type_as(x)


def _apply_rope_paired(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """`apply_rope` for bf16 on CPU in fewer passes over x: x * cos' + swap(x) * sin', with
    cos' = (cos, cos) and sin' = (-sin, sin) per pair and swap exchanging each pair's two
    channels. The products and sum run in float32 (the tables are float32), rounded once.
    One grid of tokens at a time, so that the float32 temporaries stay in cache."""
    n, half = cos.shape
    cos2, sin2 = _paired_tables(cos, sin)  # (N, head_dim) each
    frames = x.reshape(-1, n, 2 * half)  # (M, N, head_dim), M = lead * K
    out = torch.empty(frames.shape, dtype=x.dtype, device=x.device)
    for i in range(frames.shape[0]):
        frame = frames[i]  # (N, head_dim)
        rotated = frame * cos2  # float32
        rotated.addcmul_(frame.unflatten(-1, (half, 2)).flip(-1).flatten(-2), sin2)
        out[i].copy_(rotated)
    return out.reshape(x.shape)


def _paired_tables(cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, cos) and (-sin, sin) interleaved per channel pair: (N, head_dim) each, kept as
    long as the tables they come from (those of `axial_tables` are cached and shared)."""
    entry = _PAIRED.get(id(cos))
    if entry is None or entry[0] is not sin:
        with torch.inference_mode(False), torch.no_grad():
            entry = (sin, cos.repeat_interleave(2, dim=-1), torch.stack((-sin, sin), dim=-1).flatten(-2))
        if id(cos) not in _PAIRED:
            weakref.finalize(cos, _PAIRED.pop, id(cos), None)  # forgotten with the table
        _PAIRED[id(cos)] = entry
    return entry[1], entry[2]


# id of a cos table -> (its sin table, cos', sin'); an entry goes when its cos table does.
# (Keyed by id: a WeakKeyDictionary would compare tensors with ==, elementwise.)
_PAIRED: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
