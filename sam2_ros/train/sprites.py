"""Object sprites (a silhouette plus its texture) and their placement in a frame.

A sprite lives in its own pixel grid; a `Pose` maps it into the image. Rendering samples
the sprite at each image pixel centre (nearest neighbour), so the frame and the mask come
from the same samples and the ground truth is exact by construction.
"""
from __future__ import annotations

import string
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sam2_ros.train.textures import random_texture

SHAPES = ("ellipse", "polygon", "star", "rounded_rect")
GLYPHS = string.ascii_uppercase + string.digits + "abdefghkmnqrty&?#@%"
GLYPH_FONT_SIZE = 128  # drawn once at this size, then resized, so one font object serves all sprites


@dataclass(frozen=True)
class Sprite:
    """An object's appearance in sprite pixels: `alpha` (h, w) bool, `texture` (h, w, 3) uint8."""

    alpha: np.ndarray
    texture: np.ndarray

    def __post_init__(self) -> None:
        if self.alpha.ndim != 2 or self.texture.shape != (*self.alpha.shape, 3):
            raise ValueError(
                f"expected alpha (h, w) and texture (h, w, 3), got {self.alpha.shape} and {self.texture.shape}"
            )

    @property
    def radius(self) -> float:
        """Distance from the sprite centre to its farthest opaque pixel corner, in sprite pixels."""
        ys, xs = np.nonzero(self.alpha)
        h, w = self.alpha.shape
        dy = np.maximum(np.abs(ys - h / 2), np.abs(ys + 1 - h / 2))
        dx = np.maximum(np.abs(xs - w / 2), np.abs(xs + 1 - w / 2))
        return float(np.sqrt(dx**2 + dy**2).max()) if ys.size else 0.0


@dataclass(frozen=True)
class Pose:
    """Sprite centre (cx, cy) in image pixels, rotation in radians, image pixels per sprite pixel."""

    cx: float
    cy: float
    angle: float = 0.0
    scale: float = 1.0


def place(sprite: Sprite, pose: Pose, image_shape: tuple[int, int]) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
    """Sample `sprite` at the pixel centres of its bounding box in an image of `image_shape` (H, W).

    Returns (rows, cols, alpha (h, w) bool, rgb (h, w, 3) uint8) for the box `image[rows, cols]`,
    or None when the sprite falls entirely outside the image.
    """
    sh, sw = sprite.alpha.shape
    cos, sin = np.cos(pose.angle), np.sin(pose.angle)
    half_x = pose.scale * (abs(cos) * sw + abs(sin) * sh) / 2
    half_y = pose.scale * (abs(sin) * sw + abs(cos) * sh) / 2
    x0, x1 = max(int(np.floor(pose.cx - half_x)), 0), min(int(np.ceil(pose.cx + half_x)), image_shape[1])
    y0, y1 = max(int(np.floor(pose.cy - half_y)), 0), min(int(np.ceil(pose.cy + half_y)), image_shape[0])
    if x0 >= x1 or y0 >= y1:
        return None
    px = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - pose.cx  # (1, w)
    py = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - pose.cy  # (h, 1)
    # Inverse rotation and scale: image offsets -> sprite coordinates about the sprite centre.
    u = np.floor((cos * px + sin * py) / pose.scale + sw / 2).astype(np.int64)  # (h, w)
    v = np.floor((-sin * px + cos * py) / pose.scale + sh / 2).astype(np.int64)  # (h, w)
    inside = (u >= 0) & (u < sw) & (v >= 0) & (v < sh)
    u, v = np.where(inside, u, 0), np.where(inside, v, 0)
    alpha = inside & sprite.alpha[v, u]
    return slice(y0, y1), slice(x0, x1), alpha, sprite.texture[v, u]


@lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=GLYPH_FONT_SIZE)


def _glyph(rng: np.random.Generator, size: int) -> Image.Image:
    """A random letter, digit or sign, drawn bold and scaled so its longer side spans `size`."""
    char = GLYPHS[rng.integers(len(GLYPHS))]
    stroke = int(GLYPH_FONT_SIZE * rng.uniform(0.01, 0.07))  # the font is thin; strokes keep glyphs solid
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = probe.textbbox((0, 0), char, font=_font(), stroke_width=stroke)
    glyph = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(glyph).text((-left, -top), char, fill=255, font=_font(), stroke_width=stroke, stroke_fill=255)
    fit = size / max(glyph.size)
    glyph = glyph.resize((max(round(glyph.width * fit), 1), max(round(glyph.height * fit), 1)), Image.BILINEAR)
    out = Image.new("L", (size, size), 0)
    out.paste(glyph, ((size - glyph.width) // 2, (size - glyph.height) // 2))
    return out


def silhouette(rng: np.random.Generator, size: int, kind: str) -> np.ndarray:
    """A random (size, size) bool silhouette of `kind` (one of SHAPES, or "glyph") filling most of the square."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    c, r = size / 2, size / 2 - 1
    if kind == "ellipse":
        rx, ry = r * rng.uniform(0.5, 1.0), r * rng.uniform(0.5, 1.0)
        draw.ellipse([c - rx, c - ry, c + rx, c + ry], fill=255)
    elif kind == "polygon":
        n = int(rng.integers(3, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, size=n))
        radii = r * rng.uniform(0.45, 1.0, size=n)
        draw.polygon(list(zip(c + radii * np.cos(angles), c + radii * np.sin(angles))), fill=255)
    elif kind == "star":
        n = int(rng.integers(4, 8))
        angles = np.arange(2 * n) * np.pi / n + rng.uniform(0, np.pi)
        radii = np.where(np.arange(2 * n) % 2 == 0, r, r * rng.uniform(0.35, 0.65))
        draw.polygon(list(zip(c + radii * np.cos(angles), c + radii * np.sin(angles))), fill=255)
    elif kind == "rounded_rect":
        hw, hh = r * rng.uniform(0.4, 1.0), r * rng.uniform(0.4, 1.0)
        corner = min(hw, hh) * rng.uniform(0.0, 0.8)
        draw.rounded_rectangle([c - hw, c - hh, c + hw, c + hh], radius=corner, fill=255)
    elif kind == "glyph":
        canvas.paste(_glyph(rng, size - 2), (1, 1))
    else:
        raise ValueError(f"unknown silhouette kind {kind!r}; expected one of {SHAPES + ('glyph',)}")
    return np.asarray(canvas) > 127


def random_sprite(rng: np.random.Generator, size: int, *, glyph_prob: float) -> Sprite:
    """A textured shape or glyph on a (size, size) sprite grid."""
    kind = "glyph" if rng.random() < glyph_prob else SHAPES[rng.integers(len(SHAPES))]
    alpha = silhouette(rng, size, kind)
    if not alpha.any():  # a degenerate polygon at a tiny size; an ellipse always has pixels
        alpha = silhouette(rng, size, "ellipse")
    return Sprite(alpha=alpha, texture=random_texture(rng, (size, size)))
