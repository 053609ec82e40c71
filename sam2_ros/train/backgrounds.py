"""Backgrounds for generated clips: crops of photos from a folder, or synthetic textures."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from sam2_ros.train.sprites import Pose, place, random_sprite
from sam2_ros.train.textures import random_texture, upsample

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def load_backgrounds(folder: str | Path, *, max_images: int | None = None) -> list[np.ndarray]:
    """All images under `folder` (recursively, sorted by path) as RGB uint8 (H, W, 3) arrays."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"background folder {folder} does not exist")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    images = []
    for path in paths[:max_images]:
        with Image.open(path) as image:
            images.append(np.asarray(image.convert("RGB")))
    return images


def random_crop(rng: np.random.Generator, image: np.ndarray, size: tuple[int, int], *,
                area: tuple[float, float] = (0.3, 1.0)) -> np.ndarray:
    """A random crop of `image` covering a fraction `area` of it, resized to `size` (H, W).

    The crop has the aspect ratio of `size`, and is mirrored half the time.
    """
    ih, iw = image.shape[:2]
    aspect = size[1] / size[0]
    # Largest crop with the target aspect, then shrink to the drawn area fraction.
    full_h = min(ih, iw / aspect)
    crop_h = full_h * np.sqrt(rng.uniform(*area))
    crop_w = crop_h * aspect
    y0 = rng.uniform(0, ih - crop_h)
    x0 = rng.uniform(0, iw - crop_w)
    pil = Image.fromarray(image).resize(
        (size[1], size[0]), Image.BILINEAR, box=(x0, y0, x0 + crop_w, y0 + crop_h)
    )
    crop = np.asarray(pil)
    return crop[:, ::-1].copy() if rng.random() < 0.5 else crop


def synthetic_background(rng: np.random.Generator, size: tuple[int, int], *,
                         clutter: tuple[int, int] = (0, 6)) -> np.ndarray:
    """A textured canvas (H, W, 3) uint8 with static untracked shapes, so edges are not only objects'."""
    canvas = random_texture(rng, size)
    if rng.random() < 0.5:  # a second, coarse layer breaks up the single-texture look
        layer = random_texture(rng, size).astype(np.float32)
        blobs = upsample(rng.uniform(0, 255, size=(4, 4, 3)), size).mean(-1, keepdims=True) > 128
        canvas = np.where(blobs, layer, canvas).astype(np.uint8)
    side = min(size)
    for _ in range(int(rng.integers(clutter[0], clutter[1] + 1))):
        sprite = random_sprite(rng, int(side * rng.uniform(0.05, 0.3)) + 4, glyph_prob=0.2)
        placed = place(sprite, Pose(cx=rng.uniform(0, size[1]), cy=rng.uniform(0, size[0]),
                                    angle=rng.uniform(0, 2 * np.pi)), size)
        if placed is not None:
            rows, cols, alpha, rgb = placed
            canvas[rows, cols][alpha] = rgb[alpha]
    return canvas
