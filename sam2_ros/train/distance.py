"""Exact Euclidean distance transform in numpy (scipy is not a dependency)."""
from __future__ import annotations

import numpy as np


def distance_to_background(mask: np.ndarray, *, border_is_background: bool = True) -> np.ndarray:
    """Euclidean distance of every foreground pixel to the nearest background pixel.

    Background pixels get 0. With `border_is_background`, the image is treated as padded
    by background, so a pixel on the image edge is 1 away (as SAM 2's click sampler pads).
    Work is limited to the foreground's bounding box: the nearest background pixel of any
    foreground pixel lies within it or on the ring just outside it.

    Args:
        mask: (H, W) bool.
    Returns:
        (H, W) float32 distances.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    mask = mask.astype(bool)
    out = np.zeros(mask.shape, dtype=np.float32)
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if rows.size == 0:
        return out
    y0, y1 = max(rows[0] - 1, 0), min(rows[-1] + 2, mask.shape[0])
    x0, x1 = max(cols[0] - 1, 0), min(cols[-1] + 2, mask.shape[1])
    crop = mask[y0:y1, x0:x1]
    if border_is_background:
        crop = np.pad(crop, 1)
    elif crop.all():
        raise ValueError("mask has no background pixel and border_is_background is False")
    dist = np.sqrt(_squared_distance(crop))
    if border_is_background:
        dist = dist[1:-1, 1:-1]
    out[y0:y1, x0:x1] = dist
    return out


def _squared_distance(mask: np.ndarray) -> np.ndarray:
    """Squared distance to the nearest False pixel: per-column pass, then a row pass."""
    h, w = mask.shape
    inf = np.float32(h * h + w * w + 1)
    # Vertical distance to the nearest background pixel in the same column.
    col = np.empty((h, w), dtype=np.float32)
    run = np.full(w, inf, dtype=np.float32)
    for y in range(h):
        run = np.where(mask[y], run + 1, 0)
        col[y] = run
    run = np.full(w, inf, dtype=np.float32)
    for y in range(h - 1, -1, -1):
        run = np.where(mask[y], run + 1, 0)
        col[y] = np.minimum(col[y], run)
    col2 = np.minimum(col, inf) ** 2  # (H, W)
    # Horizontal pass: best over column offsets d; stop once d^2 exceeds every current best.
    best = col2.copy()
    for d in range(1, w):
        if d * d >= best.max():
            break
        shifted = np.full_like(col2, inf * inf)
        shifted[:, d:] = col2[:, :-d]
        np.minimum(shifted[:, :-d], col2[:, d:], out=shifted[:, :-d])
        np.minimum(best, shifted + d * d, out=best)
    return best
