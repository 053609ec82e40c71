"""Random colour textures for objects and synthetic backgrounds.

Every generator returns a float32 (H, W, 3) image in [0, 255], so callers can blend
and shade before one final conversion to uint8.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image


def random_color(rng: np.random.Generator) -> np.ndarray:
    """A colour spread over hue and brightness, so objects and backgrounds often differ."""
    return rng.uniform(0.0, 255.0, size=3).astype(np.float32)  # (3,)


def upsample(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of a float (h, w, 3) image in [0, 255] to `shape` (H, W)."""
    pil = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    return np.asarray(pil.resize((shape[1], shape[0]), Image.BICUBIC), dtype=np.float32)


def _coords(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates normalised to [0, 1): ys (H, 1), xs (1, W)."""
    h, w = shape
    return np.arange(h, dtype=np.float32)[:, None] / h, np.arange(w, dtype=np.float32)[None, :] / w


def _blend(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-pixel mix of colours a and b (3,) by weights t (H, W) in [0, 1]."""
    return a * (1.0 - t[..., None]) + b * t[..., None]  # (H, W, 3)


def noise(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Smooth two-colour noise: blotches of 2 to 16 cells a side, with a little per-cell hue."""
    cells = int(rng.integers(2, 17))
    mix = rng.uniform(0, 1, size=(cells, cells, 1))
    grid = random_color(rng) * (1 - mix) + random_color(rng) * mix  # (cells, cells, 3)
    grid += rng.normal(0, rng.uniform(0, 40), size=grid.shape)
    return upsample(grid, shape)


def stripes(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Parallel stripes at a random angle and period, hard-edged or sinusoidal."""
    ys, xs = _coords(shape)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(0.05, 0.35)
    phase = (xs * np.cos(angle) + ys * np.sin(angle)) / period * 2 * np.pi  # (H, W)
    wave = 0.5 + 0.5 * np.sin(phase + rng.uniform(0, 2 * np.pi))
    t = (wave > 0.5).astype(np.float32) if rng.random() < 0.5 else wave
    return _blend(random_color(rng), random_color(rng), t)


def checker(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A checkerboard with a random cell count per side."""
    ys, xs = _coords(shape)
    cells = rng.integers(2, 9)
    t = ((np.floor(ys * cells) + np.floor(xs * cells)) % 2).astype(np.float32)  # (H, W)
    return _blend(random_color(rng), random_color(rng), t)


def gradient(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A linear or radial two-colour gradient."""
    ys, xs = _coords(shape)
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        t = xs * np.cos(angle) + ys * np.sin(angle)
    else:
        cy, cx = rng.uniform(0, 1, size=2)
        t = np.sqrt((ys - cy) ** 2 + (xs - cx) ** 2)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)  # (H, W)
    return _blend(random_color(rng), random_color(rng), t)


def flat(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A single colour; the fine grain added by `random_texture` keeps it from being perfectly flat."""
    return np.broadcast_to(random_color(rng), (*shape, 3)).copy()


TEXTURES: tuple[Callable[[np.random.Generator, tuple[int, int]], np.ndarray], ...] = (
    noise, stripes, checker, gradient, flat,
)


def random_texture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """One random texture with colour jitter, soft shading and fine grain, as uint8 (H, W, 3)."""
    texture = TEXTURES[rng.integers(len(TEXTURES))](rng, shape)
    texture = texture * rng.uniform(0.8, 1.2, size=3).astype(np.float32)  # colour jitter
    shade = gradient(rng, shape).mean(axis=-1, keepdims=True) / 255.0  # (H, W, 1)
    texture = texture * (1.0 - rng.uniform(0.0, 0.4) * shade)
    grain = rng.standard_normal(size=texture.shape, dtype=np.float32) * rng.uniform(0.0, 8.0)
    return np.clip(texture + grain, 0, 255).astype(np.uint8)
