"""A generated RGB-D clip for the depth features: layers at known depths, a pinhole camera.

The layers are flat and face the camera, and each is drawn at the size the pinhole model gives
its depth, so a layer's 3D position follows from its mask and depth exactly.
"""
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
K = [CAMERA.fx, 0.0, CAMERA.cx, 0.0, CAMERA.fy, CAMERA.cy, 0.0, 0.0, 1.0]  # CameraInfo.k
WALL = 2.5  # metres
SQUARE_DEPTH = 1.4  # metres


def approaching_disc_clip(num_frames: int = 12, seed: int = 0, *, radius: float = 0.12,
                          near: float = 0.9, far: float = 1.6) -> tuple[Clip, np.ndarray]:
    """A textured disc (`radius` metres; object 1) coming towards the camera from `far` to `near`
    metres while drifting right, and a spinning square (object 2) drifting left at SQUARE_DEPTH,
    before a wall at WALL metres; 640x480, seen by CAMERA. Returns the clip (with depth) and
    the disc's depth per frame (T,)."""
    rng = np.random.default_rng(seed)
    background = np.repeat(synthetic_background(rng, (HEIGHT, WIDTH))[None], num_frames, axis=0)
    t = np.arange(num_frames, dtype=np.float32)
    disc_depth = np.linspace(far, near, num_frames).astype(np.float32)  # (T,)
    sprite_radius = 60  # sprite pixels
    grid = np.mgrid[-sprite_radius:sprite_radius, -sprite_radius:sprite_radius] + 0.5
    alpha = np.hypot(*grid) < sprite_radius
    disc = Sprite(alpha=alpha, texture=random_texture(rng, alpha.shape))
    disc_scale = CAMERA.fx * radius / (sprite_radius * disc_depth)  # image px per sprite px
    target = Layer(disc, Trajectory(center=np.stack([260 + 6 * t, 220 + 0 * t], 1), angle=0 * t,
                                    scale=disc_scale), depth=disc_depth)
    square = Sprite(alpha=np.ones((80, 80), bool), texture=random_texture(rng, (80, 80)))
    other = Layer(square, Trajectory(center=np.stack([520 - 8 * t, 380 + 0 * t], 1),
                                     angle=0.1 * t, scale=1 + 0 * t),
                  depth=np.full(num_frames, SQUARE_DEPTH, np.float32))
    return clip_from_layers(background, [target, other], background_depth=WALL), disc_depth
