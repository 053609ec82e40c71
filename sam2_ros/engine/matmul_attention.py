"""Attention through plain matrix products, for bfloat16 on the CPU.

oneDNN's bf16 GEMMs run ~3-4x faster than float32 on CPUs with AVX512_BF16/AMX, while the
fused CPU `scaled_dot_product_attention` runs bf16 no faster than float32. The products are
issued in the layouts the GEMM takes without a copy: keys row-major (N, c) multiplied as
their transpose. Large products (the memory attention's 1024 queries x 7k memory tokens) go
one matrix at a time through 2D GEMMs in chunks of query rows, whose scores are reused in
place (a batched GEMM with a transposed operand ran 2x slower there, torch 2.13); small ones
(Hiera's windows) go through one batched GEMM.
"""
from __future__ import annotations

import math

import torch

# Score elements per chunk of query rows: ~2 MB of bf16 scores, reused by every chunk.
SCORE_CHUNK = 1 << 20
# Products of at least this many score elements per matrix run one matrix at a time.
LOOP_MIN_SCORES = 1 << 18
# Keys the centring mean is taken over (evenly spaced): any per-query constant is exact.
MEAN_SAMPLES = 512


def centered_keys(k: torch.Tensor, scale: float) -> torch.Tensor:
    """(k - mean(k)) * scale over the keys, computed in float32 and rounded once to k's dtype;
    k: (..., Nk, c).

    Scores leave the GEMM rounded to bf16, an error proportional to their size. Softmax is
    blind to a per-query constant, so the keys' mean is taken out first (q . mean(k) is such a
    constant): smaller scores, smaller rounding. An error in the mean itself is such a
    constant too, so it is taken over a sample of the keys. One fused pass (`addcmul` writing
    k's dtype): the scale must not be rounded to bf16, or every score would share its error.
    Called one matrix (or a few small ones) at a time: its float32 temporaries stay in cache.
    """
    step = max(1, k.shape[-2] // MEAN_SAMPLES)
    shift = k[..., ::step, :].float().mean(dim=-2, keepdim=True) * -scale  # (..., 1, c) float32
    out = torch.empty_like(k)
    return torch.addcmul(shift, k, torch.tensor(scale, dtype=torch.float32), out=out)  # (..., Nk, c)


def matmul_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """softmax(q k^T / sqrt(c) + mask) v, for q: (..., Nq, c), k: (..., Nk, c), v: (..., Nk, cv)
    (leading dims broadcast); attn_mask bool (True = attend) broadcastable to (..., Nq, Nk).
    Scores are float32-accumulated by the GEMM and rounded to q's dtype; softmax accumulates
    in float32. Returns (..., Nq, cv)."""
    lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    nq, c = q.shape[-2:]
    nk, cv = v.shape[-2:]
    q3 = q.expand(*lead, nq, c).reshape(-1, nq, c)  # (G, Nq, c)
    k3 = k.expand(*lead, nk, c).reshape(-1, nk, c)  # (G, Nk, c)
    v3 = v.expand(*lead, nk, cv).reshape(-1, nk, cv)  # (G, Nk, cv)
    mask = None
    if attn_mask is not None:
        rows = nq if attn_mask.shape[-2] == nq else 1
        mask = ~attn_mask.expand(*lead, rows, nk).reshape(-1, rows, nk)  # (G, 1|Nq, Nk) True = hide
    if nq * nk < LOOP_MIN_SCORES:
        out = _batched(q3, k3, v3, mask)
    else:
        out = _per_matrix(q3, k3, v3, mask)
    return out.reshape(*lead, nq, cv)


def _batched(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hide: torch.Tensor | None) -> torch.Tensor:
    """All G matrices in one batched GEMM per product (in chunks of the batch to bound the
    scores). q: (G, Nq, c), k: (G, Nk, c), v: (G, Nk, cv) -> (G, Nq, cv)."""
    g, nq, c = q.shape
    step = max(1, SCORE_CHUNK // (nq * k.shape[1]))
    out = q.new_empty(g, nq, v.shape[-1])
    for start in range(0, g, step):
        part = slice(start, start + step)
        keys = centered_keys(k[part], 1.0 / math.sqrt(c))  # (g', Nk, c)
        scores = torch.bmm(q[part], keys.mT)  # (g', Nq, Nk)
        if hide is not None:
            scores.masked_fill_(hide[part], float("-inf"))
        torch.bmm(torch.softmax(scores, dim=-1), v[part], out=out[part])
    return out


def _per_matrix(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hide: torch.Tensor | None) -> torch.Tensor:
    """One matrix at a time, in chunks of query rows that share one scores buffer.
    q: (G, Nq, c), k: (G, Nk, c), v: (G, Nk, cv) -> (G, Nq, cv)."""
    g, nq, c = q.shape
    nk = k.shape[1]
    rows = max(1, min(nq, SCORE_CHUNK // nk))
    out = q.new_empty(g, nq, v.shape[-1])
    buffer = q.new_empty(rows, nk)
    for i in range(g):
        keys_t = centered_keys(k[i], 1.0 / math.sqrt(c)).mT  # (c, Nk), a view the GEMM reads transposed
        for start in range(0, nq, rows):
            n = min(rows, nq - start)
            scores = buffer[:n]  # (n, Nk)
            torch.mm(q[i, start : start + n], keys_t, out=scores)
            if hide is not None:
                scores.masked_fill_(hide[i, start : start + n] if hide.shape[1] > 1 else hide[i], float("-inf"))
            torch._softmax(scores, -1, False, out=scores)
            torch.mm(scores, v[i], out=out[i, start : start + n])
    return out
