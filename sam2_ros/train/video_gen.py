"""Procedural training clips: textured shapes and glyphs moving over a background, exact masks.

Objects drift, spin and scale, cross each other (the higher layer wins each pixel), and
may leave the view and come back; untracked distractors and a slowly panning camera make
the background less trivial. Optionally a larger opaque layer sweeps over one object, hiding it
wholly for a few frames (`Difficulty.hide_prob`). Everything derives from one
`np.random.Generator`, so a seed reproduces a clip exactly.

Run `python -m sam2_ros.train.video_gen --out out/samples --n 3` to look at a few clips.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from sam2_ros.train.backgrounds import load_backgrounds, random_crop, synthetic_background
from sam2_ros.train.motion import MotionConfig, Trajectory, leaving_trajectory, random_trajectory
from sam2_ros.train.sprites import Sprite, place, random_sprite
from sam2_ros.train.textures import random_texture

SUPERSAMPLE = 2  # sprite pixels per image pixel at scale 1, so magnified sprites stay smooth
MAX_ATTEMPTS = 50


@dataclass(frozen=True)
class Difficulty:
    """How hard a clip is; sizes and shifts are fractions of the image's shorter side."""

    motion: MotionConfig = field(default_factory=MotionConfig)
    object_size: tuple[float, float] = (0.15, 0.45)  # bounding-square side of a new object
    num_distractors: tuple[int, int] = (0, 2)  # untracked moving objects, inclusive range
    leave_prob: float = 0.15  # chance a tracked object leaves the view and re-enters
    occlusion_prob: float = 0.3  # chance an object is steered across one below it
    # Chance (clips of 3+ frames) that a larger opaque layer passes over one tracked object,
    # hiding it wholly for a few frames; 0 draws nothing, so earlier clips stay the same.
    hide_prob: float = 0.0
    hider_cover: tuple[float, float] = (1.3, 2.5)  # hider's inner radius / the object's radius
    hider_speed: tuple[float, float] = (0.03, 0.12)  # per frame, may exceed the objects' max_speed
    glyph_prob: float = 0.3  # chance an object is a letter or digit rather than a shape
    photo_prob: float = 0.6  # chance of a photo background, when photos are given
    camera_pan: float = 0.03  # largest background shift over a clip
    brightness: float = 0.15  # largest relative brightness change at either end of a clip
    blur_prob: float = 0.2  # chance that a frame is blurred
    max_noise: float = 6.0  # largest std of per-pixel noise, in uint8 levels
    min_first_area: float = 0.002  # least fraction of the image each object covers on frame 0


@dataclass(frozen=True)
class Clip:
    """A generated clip; object k of `masks`/`visible` has id `obj_ids[k]`."""

    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    masks: np.ndarray  # (T, K, H, W) bool, after occlusion: each pixel belongs to at most one object
    visible: np.ndarray  # (T, K) bool: the object has at least one pixel in the frame
    obj_ids: np.ndarray  # (K,) int64, 1..K
    depth: np.ndarray | None = None  # (T, H, W) float32 metres, when the layers have depths


@dataclass(frozen=True)
class Layer:
    """One moving object; layers are drawn in order, so later ones occlude earlier ones."""

    sprite: Sprite
    trajectory: Trajectory
    tracked: bool = True
    depth: np.ndarray | None = None  # (T,) float32 metres: a flat layer facing the camera


def render_layers(background: np.ndarray, layers: Sequence[Layer]) -> tuple[np.ndarray, np.ndarray]:
    """Paint layers over a background (T, H, W, 3) uint8, bottom to top.

    Returns frames (T, H, W, 3) uint8 and labels (T, H, W) int16: the index of the layer
    that owns each pixel, or -1 for background.
    """
    num_frames, h, w = background.shape[:3]
    frames = background.copy()
    labels = np.full((num_frames, h, w), -1, dtype=np.int16)
    for index, layer in enumerate(layers):
        if len(layer.trajectory) != num_frames:
            raise ValueError(f"layer {index} has {len(layer.trajectory)} poses, expected {num_frames}")
        for t in range(num_frames):
            placed = place(layer.sprite, layer.trajectory.pose(t), (h, w))
            if placed is None:
                continue
            rows, cols, alpha, rgb = placed
            frames[t, rows, cols][alpha] = rgb[alpha]
            labels[t, rows, cols][alpha] = index
    return frames, labels


def clip_from_layers(background: np.ndarray, layers: Sequence[Layer], *,
                     background_depth: float | None = None) -> Clip:
    """Render layers and keep the tracked ones as objects, numbered 1..K from the bottom layer up.

    With `background_depth` (metres; every layer then needs its `depth`), the clip also gets
    a depth image per frame: each pixel the depth of the layer that owns it, else the
    background's (the painter's order is the depth order the caller chose).
    """
    frames, labels = render_layers(background, layers)
    tracked = np.array([i for i, layer in enumerate(layers) if layer.tracked], dtype=np.int16)
    masks = labels[:, None] == tracked[None, :, None, None]  # (T, K, H, W)
    depth = None
    if background_depth is not None:
        missing = [i for i, layer in enumerate(layers) if layer.depth is None]
        if missing:
            raise ValueError(f"background_depth given, but layers {missing} have no depth")
        per_layer = np.stack([layer.depth for layer in layers], axis=1).astype(np.float32)  # (T, L)
        table = np.concatenate([per_layer, np.full((len(frames), 1), background_depth, np.float32)],
                               axis=1)  # (T, L + 1): label -1 reads the last column
        depth = np.take_along_axis(table, labels.reshape(len(frames), -1).astype(np.intp) % table.shape[1],
                                   axis=1).reshape(labels.shape)  # (T, H, W)
    return Clip(frames=frames, masks=masks, visible=masks.any(axis=(2, 3)),
                obj_ids=np.arange(1, len(tracked) + 1, dtype=np.int64), depth=depth)


def _panning_background(rng: np.random.Generator, num_frames: int, size: tuple[int, int],
                        difficulty: Difficulty, photos: Sequence[np.ndarray] | None) -> np.ndarray:
    """Background frames (T, H, W, 3) uint8: one canvas seen through a slowly sliding window."""
    h, w = size
    margin = int(round(difficulty.camera_pan * min(size)))
    canvas_size = (h + 2 * margin, w + 2 * margin)
    if photos and rng.random() < difficulty.photo_prob:
        canvas = random_crop(rng, photos[rng.integers(len(photos))], canvas_size)
    else:
        canvas = synthetic_background(rng, canvas_size)
    start, end = rng.integers(0, 2 * margin + 1, size=(2, 2))
    steps = np.linspace(0.0, 1.0, num_frames)[:, None]
    offsets = np.rint(start + (end - start) * steps).astype(int)  # (T, 2) as (y, x)
    return np.stack([canvas[y:y + h, x:x + w] for y, x in offsets])


def _random_layer(rng: np.random.Generator, num_frames: int, size: tuple[int, int],
                  difficulty: Difficulty, *, tracked: bool) -> tuple[Layer, bool]:
    """A random object and whether its trajectory leaves the view."""
    side = rng.uniform(*difficulty.object_size) * min(size)
    sprite = random_sprite(rng, max(int(round(side * SUPERSAMPLE)), 4), glyph_prob=difficulty.glyph_prob)
    leaves = tracked and num_frames >= 3 and rng.random() < difficulty.leave_prob
    make = leaving_trajectory if leaves else random_trajectory
    trajectory = make(rng, num_frames=num_frames, image_size=size, radius=sprite.radius,
                      base_scale=1.0 / SUPERSAMPLE, config=difficulty.motion)
    return Layer(sprite=sprite, trajectory=trajectory, tracked=tracked), leaves


def _steer_into_occlusions(rng: np.random.Generator, layers: list[Layer], leaves: list[bool],
                           occlusion_prob: float) -> None:
    """Translate some layers' paths so that they pass over a lower layer at a random frame."""
    for upper in range(1, len(layers)):
        if leaves[upper] or rng.random() >= occlusion_prob:
            continue  # a leaving path is planned against an edge; moving it would break that
        lower = int(rng.integers(upper))
        t = int(rng.integers(len(layers[upper].trajectory)))
        below, above = layers[lower].trajectory, layers[upper].trajectory
        reach = layers[lower].sprite.radius * float(below.scale[t])
        target = below.center[t] + rng.uniform(-0.5, 0.5, size=2) * reach
        layers[upper] = Layer(sprite=layers[upper].sprite, trajectory=above.shifted(target - above.center[t]),
                              tracked=layers[upper].tracked)


def _hider(rng: np.random.Generator, below: Layer, num_frames: int, size: tuple[int, int],
           difficulty: Difficulty) -> Layer:
    """An untracked opaque square or disc, wider than `below`, crossing it at full speed.

    Its centre passes within a tenth of the object's radius of the object's centre at a
    middle frame, in a straight line, so the object is wholly covered for a few frames
    around it (how many depends on the drawn size and speed; the masks say exactly).
    """
    t_cover = int(rng.integers(1 if num_frames < 4 else 2, num_frames - 1))  # frames 0-1 stay clear
    object_radius = below.sprite.radius * float(below.trajectory.scale.max())  # image pixels
    inner = rng.uniform(*difficulty.hider_cover) * object_radius
    side = max(int(round(2 * inner * SUPERSAMPLE)), 4)  # a square's inner radius is half its side
    alpha = np.ones((side, side), bool) if rng.random() < 0.5 else \
        np.hypot(*np.mgrid[:side, :side] - (side - 1) / 2) <= side / 2
    direction = rng.uniform(0, 2 * np.pi)
    velocity = rng.uniform(*difficulty.hider_speed) * min(size) * np.array([np.cos(direction), np.sin(direction)])
    t = np.arange(num_frames, dtype=np.float32)[:, None] - t_cover
    aim = below.trajectory.center[t_cover] + rng.uniform(-0.1, 0.1, size=2) * object_radius
    trajectory = Trajectory(center=(aim + velocity * t).astype(np.float32),
                            angle=np.full(num_frames, rng.uniform(0, np.pi / 2), np.float32),
                            scale=np.full(num_frames, 1.0 / SUPERSAMPLE, np.float32))
    return Layer(Sprite(alpha=alpha, texture=random_texture(rng, (side, side))), trajectory, tracked=False)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a float (H, W, 3) image, edges replicated."""
    radius = max(int(np.ceil(2 * sigma)), 1)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2).astype(np.float32)
    kernel /= kernel.sum()
    h, w = image.shape[:2]
    padded = np.pad(image, ((radius, radius), (0, 0), (0, 0)), mode="edge")
    image = sum(k * padded[radius + o:radius + o + h] for k, o in zip(kernel, offsets))
    padded = np.pad(image, ((0, 0), (radius, radius), (0, 0)), mode="edge")
    return sum(k * padded[:, radius + o:radius + o + w] for k, o in zip(kernel, offsets))


def _camera_effects(rng: np.random.Generator, frames: np.ndarray, difficulty: Difficulty) -> np.ndarray:
    """Brightness drift, occasional blur and sensor noise; masks are unaffected."""
    num_frames = len(frames)
    start, end = 1 + rng.uniform(-difficulty.brightness, difficulty.brightness, size=2)
    tint = rng.uniform(0.95, 1.05, size=3).astype(np.float32)
    noise_std = rng.uniform(0.0, difficulty.max_noise)
    out = np.empty_like(frames)
    for t in range(num_frames):  # frame by frame keeps the float buffers in cache
        gain = np.float32(start + (end - start) * t / max(num_frames - 1, 1))
        frame = frames[t] * (tint * gain)  # (H, W, 3) float32
        if rng.random() < difficulty.blur_prob:
            frame = _blur(frame, float(rng.uniform(0.4, 1.2)))
        frame += rng.standard_normal(size=frame.shape, dtype=np.float32) * np.float32(noise_std) + 0.5  # + 0.5: round
        out[t] = np.clip(frame, 0, 255, out=frame)
    return out


def generate_clip(
    rng: np.random.Generator,
    *,
    num_frames: int = 8,
    size: tuple[int, int] = (256, 256),
    num_objects: tuple[int, int] = (1, 3),
    backgrounds: Sequence[np.ndarray] | None = None,
    difficulty: Difficulty = Difficulty(),
) -> Clip:
    """A random clip of `num_frames` frames of `size` (H, W) with `num_objects` (inclusive range) tracked objects.

    `backgrounds` are RGB photos (any size) to crop backgrounds from; without them every
    background is synthetic.
    """
    if num_frames < 1 or not 1 <= num_objects[0] <= num_objects[1]:
        raise ValueError(f"need num_frames >= 1 and 1 <= min <= max objects, got {num_frames}, {num_objects}")
    min_pixels = difficulty.min_first_area * size[0] * size[1]
    # Redraw until every object is prompt-able on frame 0 (rarely more than one try).
    for _ in range(MAX_ATTEMPTS):
        background = _panning_background(rng, num_frames, size, difficulty, backgrounds)
        num_tracked = int(rng.integers(num_objects[0], num_objects[1] + 1))
        num_distractors = int(rng.integers(difficulty.num_distractors[0], difficulty.num_distractors[1] + 1))
        made = [_random_layer(rng, num_frames, size, difficulty, tracked=i < num_tracked)
                for i in range(num_tracked + num_distractors)]
        order = rng.permutation(len(made))  # random depth order, bottom first
        layers = [made[i][0] for i in order]
        leaves = [made[i][1] for i in order]
        _steer_into_occlusions(rng, layers, leaves, difficulty.occlusion_prob)
        if num_frames >= 3 and difficulty.hide_prob and rng.random() < difficulty.hide_prob:
            staying = [i for i, layer in enumerate(layers) if layer.tracked and not leaves[i]]
            if staying:  # on top of every layer
                below = layers[staying[int(rng.integers(len(staying)))]]
                layers.append(_hider(rng, below, num_frames, size, difficulty))
        clip = clip_from_layers(background, layers)
        if clip.masks[0].sum(axis=(1, 2)).min() >= min_pixels:
            return replace(clip, frames=_camera_effects(rng, clip.frames, difficulty))
    raise RuntimeError(
        f"no clip in {MAX_ATTEMPTS} tries had every object cover {difficulty.min_first_area:.4f} of frame 0; "
        "lower min_first_area or raise object_size"
    )

_PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                     [145, 30, 180], [70, 240, 240], [240, 50, 230]], dtype=np.float32)


def clip_strip(clip: Clip) -> np.ndarray:
    """Frames on top, masks tinted over them below, side by side: (2H, T*W, 3) uint8."""
    overlay = clip.frames.astype(np.float32) * 0.45
    for k in range(clip.masks.shape[1]):
        overlay[clip.masks[:, k]] += 0.55 * _PALETTE[k % len(_PALETTE)]
    rows = [clip.frames, overlay.astype(np.uint8)]
    return np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write generated clips as PNG strips to look at.")
    parser.add_argument("--out", type=Path, default=Path("out/samples"))
    parser.add_argument("--n", type=int, default=3, help="number of clips")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    parser.add_argument("--backgrounds", type=Path, help="folder of photos to crop backgrounds from")
    args = parser.parse_args(argv)
    photos = load_backgrounds(args.backgrounds) if args.backgrounds else None
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    clips = [generate_clip(rng, num_frames=args.frames, size=tuple(args.size), backgrounds=photos)
             for _ in range(args.n)]
    elapsed = time.perf_counter() - start
    for i, clip in enumerate(clips):
        path = args.out / f"clip_{i:03d}.png"
        Image.fromarray(clip_strip(clip)).save(path)
        print(f"{path}: {clip.masks.shape[1]} objects, visible per frame {clip.visible.sum(axis=1).tolist()}")
    print(f"generated {args.n} clips in {elapsed:.2f} s ({args.n / elapsed:.1f} clips/s)")


if __name__ == "__main__":
    main()
