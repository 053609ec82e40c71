"""Synthetic RGB-D scenes with analytic 3D ground truth (640x480, a 525 px pinhole camera)."""
from __future__ import annotations

import numpy as np

from sam2_ros.spatial.camera import Intrinsics
from sam2_ros.train.backgrounds import synthetic_background
from sam2_ros.train.motion import Trajectory
from sam2_ros.train.sprites import Sprite
from sam2_ros.train.textures import random_texture
from sam2_ros.train.video_gen import Clip, Layer, clip_from_layers

WIDTH, HEIGHT = 640, 480
CAMERA = Intrinsics(fx=525.0, fy=525.0, cx=319.5, cy=239.5, width=WIDTH, height=HEIGHT)
K = [CAMERA.fx, 0.0, CAMERA.cx, 0.0, CAMERA.fy, CAMERA.cy, 0.0, 0.0, 1.0]
WALL = 2.0  # metres


def project(x: float, y: float, z: float, camera: Intrinsics = CAMERA) -> tuple[float, float]:
    return camera.fx * x / z + camera.cx, camera.fy * y / z + camera.cy


def pixel_grid(camera: Intrinsics = CAMERA) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) float64 column and row of every pixel centre."""
    return np.meshgrid(np.arange(camera.width, dtype=np.float64),
                       np.arange(camera.height, dtype=np.float64))


def box_scene(low: tuple[float, float], high: tuple[float, float], z: float = 0.8,
              camera: Intrinsics = CAMERA) -> tuple[np.ndarray, np.ndarray]:
    """The face-on front face (x, y from `low` to `high`) of a box at depth `z` before a wall:
    its (H, W) bool mask and the (H, W) float64 depth in metres. The box straddles the optical
    axis, so none of its sides is visible: the front face is all the camera sees of it."""
    us, vs = pixel_grid(camera)
    x, y = (us - camera.cx) * z / camera.fx, (vs - camera.cy) * z / camera.fy
    mask = (x >= low[0]) & (x <= high[0]) & (y >= low[1]) & (y <= high[1])
    return mask, np.where(mask, z, WALL)


def encode(depth: np.ndarray, encoding: str) -> np.ndarray:
    """Metres as a driver stores them: 16UC1 millimetres (uint16) or 32FC1 metres."""
    if encoding == "16UC1":
        return np.round(np.nan_to_num(depth, nan=0.0, posinf=0.0) * 1000).astype(np.uint16)
    return depth.astype(np.float32)


def tilted_plane(tilt: float, distance: float, rows: tuple[int, int], cols: tuple[int, int],
                 camera: Intrinsics = CAMERA):
    """A plane n . X = distance, n = (0, sin tilt, cos tilt), seen over the image rectangle
    rows x cols (half-open). Returns the mask, the depth and the analytic centroid (the mean
    over the rectangle, integrated exactly) and box (over the rectangle's corner pixels)."""
    sin, cos = np.sin(tilt), np.cos(tilt)
    a, b = cos - sin * camera.cy / camera.fy, sin / camera.fy  # 1 / z(v) = (a + b v) / distance
    us, vs = pixel_grid(camera)
    depth = distance / (a + b * vs)
    mask = np.zeros(depth.shape, bool)
    mask[rows[0]:rows[1], cols[0]:cols[1]] = True
    v0, v1 = rows[0] - 0.5, rows[1] - 0.5  # the rectangle's edges, pixel centres at integers
    u0, u1 = cols[0] - 0.5, cols[1] - 0.5
    log = np.log((a + b * v1) / (a + b * v0))
    mean_z = distance * log / (b * (v1 - v0))
    # (v - cy) / (a + b v) = 1 / b - (a / b + cy) / (a + b v)
    mean_y = distance / camera.fy * (1 / b - (a / b + camera.cy) * log / (b * (v1 - v0)))
    mean_x = ((u0 + u1) / 2 - camera.cx) / camera.fx * mean_z
    corners = []
    for v in (rows[0], rows[1] - 1):
        z = distance / (a + b * v)
        for u in (cols[0], cols[1] - 1):
            corners.append(((u - camera.cx) * z / camera.fx, (v - camera.cy) * z / camera.fy, z))
    corners = np.array(corners)
    return mask, depth, np.array([mean_x, mean_y, mean_z]), corners.max(0) - corners.min(0)


def approaching_disc_clip(num_frames: int = 12, seed: int = 0, *, radius: float = 0.12,
                          near: float = 0.9, far: float = 1.6) -> tuple[Clip, np.ndarray]:
    """A textured disc (`radius` metres) coming towards the camera from `far` to `near` metres
    while drifting right, a square drifting left at 1.4 m, before a wall at WALL metres; 640x480.
    Returns the clip (with depth) and the disc's depth per frame (T,)."""
    rng = np.random.default_rng(seed)
    background = np.repeat(synthetic_background(rng, (HEIGHT, WIDTH))[None], num_frames, axis=0)
    t = np.arange(num_frames, dtype=np.float32)
    disc_depth = np.linspace(far, near, num_frames).astype(np.float32)  # (T,)
    sprite_radius = 60  # sprite pixels
    alpha = np.hypot(*np.mgrid[-sprite_radius:sprite_radius, -sprite_radius:sprite_radius] + 0.5) < sprite_radius
    disc = Sprite(alpha=alpha, texture=random_texture(rng, alpha.shape))
    disc_scale = CAMERA.fx * radius / (sprite_radius * disc_depth)  # image px per sprite px
    target = Layer(disc, Trajectory(center=np.stack([260 + 6 * t, 220 + 0 * t], 1), angle=0 * t,
                                    scale=disc_scale), depth=disc_depth)
    square = Sprite(alpha=np.ones((80, 80), bool), texture=random_texture(rng, (80, 80)))
    distractor = Layer(square, Trajectory(center=np.stack([520 - 8 * t, 380 + 0 * t], 1),
                                          angle=0.1 * t, scale=1 + 0 * t),
                       tracked=False, depth=np.full(num_frames, 1.4, np.float32))
    return clip_from_layers(background, [target, distractor], background_depth=WALL), disc_depth


def mask_centroid(mask: np.ndarray, depth: float, camera: Intrinsics = CAMERA) -> np.ndarray:
    """The mean 3D point of a flat mask at `depth` metres (ground truth for fronto-parallel layers)."""
    vs, us = np.nonzero(mask)
    return np.array([(us.mean() - camera.cx) * depth / camera.fx,
                     (vs.mean() - camera.cy) * depth / camera.fy, depth])
