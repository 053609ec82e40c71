"""Smooth object trajectories: drifting, rotating, scaling, leaving the view and coming back."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sam2_ros.train.sprites import Pose


@dataclass(frozen=True)
class MotionConfig:
    """Per-frame motion limits; distances are fractions of the image's shorter side."""

    max_speed: float = 0.04
    max_accel: float = 0.008
    max_rotation: float = 0.12  # radians per frame
    max_scale_rate: float = 0.04  # change of log-scale per frame
    scale_range: tuple[float, float] = (0.7, 1.4)  # bounds relative to the starting scale


@dataclass(frozen=True)
class Trajectory:
    """Pose per frame: centre (T, 2) as (x, y) image pixels, angle (T,) radians, scale (T,)."""

    center: np.ndarray
    angle: np.ndarray
    scale: np.ndarray

    def __len__(self) -> int:
        return len(self.angle)

    def pose(self, t: int) -> Pose:
        return Pose(cx=float(self.center[t, 0]), cy=float(self.center[t, 1]),
                    angle=float(self.angle[t]), scale=float(self.scale[t]))

    def shifted(self, offset: np.ndarray) -> Trajectory:
        """The same motion translated by `offset` (2,) pixels."""
        return Trajectory(center=self.center + offset, angle=self.angle, scale=self.scale)


def _drift(rng: np.random.Generator, num_frames: int, start: float, low: float, high: float,
           speed: float, accel: float) -> np.ndarray:
    """A 1-D path with random initial velocity and acceleration, bouncing between low and high."""
    pos, vel = start, rng.uniform(-speed, speed)
    path = np.empty(num_frames, dtype=np.float32)
    for t in range(num_frames):
        path[t] = pos
        vel = float(np.clip(vel + rng.normal(0.0, accel), -speed, speed))
        pos += vel
        if not low <= pos <= high:  # reflect off the wall
            pos = 2 * (low if pos < low else high) - pos
            vel = -vel
            pos = float(np.clip(pos, low, high))
    return path


def _spin_and_zoom(rng: np.random.Generator, num_frames: int, base_scale: float,
                   config: MotionConfig) -> tuple[np.ndarray, np.ndarray]:
    """Angle (T,) with a steady spin plus jitter, and scale (T,) drifting within config.scale_range."""
    t = np.arange(num_frames, dtype=np.float32)
    spin = rng.uniform(-config.max_rotation, config.max_rotation)
    angle = rng.uniform(0, 2 * np.pi) + spin * t + np.cumsum(rng.normal(0, config.max_rotation / 4, num_frames))
    log_rate = rng.uniform(-config.max_scale_rate, config.max_scale_rate)
    log_scale = log_rate * t + np.cumsum(rng.normal(0, config.max_scale_rate / 4, num_frames))
    low, high = np.log(config.scale_range[0]), np.log(config.scale_range[1])
    scale = base_scale * np.exp(np.clip(log_scale, low, high))
    return angle.astype(np.float32), scale.astype(np.float32)


def random_trajectory(rng: np.random.Generator, *, num_frames: int, image_size: tuple[int, int],
                      radius: float, base_scale: float, config: MotionConfig) -> Trajectory:
    """A trajectory that keeps the sprite's centre inside the image (edges may be cut).

    `radius` is the sprite's bounding radius in sprite pixels.
    """
    h, w = image_size
    side = min(h, w)
    angle, scale = _spin_and_zoom(rng, num_frames, base_scale, config)
    # Start far enough from the edges that most of the object shows on the first frame.
    reach = min(radius * float(scale[0]) * 0.7, side * 0.45)
    xs = _drift(rng, num_frames, rng.uniform(reach, w - reach), 0, w,
                config.max_speed * side, config.max_accel * side)
    ys = _drift(rng, num_frames, rng.uniform(reach, h - reach), 0, h,
                config.max_speed * side, config.max_accel * side)
    return Trajectory(center=np.stack([xs, ys], axis=1), angle=angle, scale=scale)


def leaving_trajectory(rng: np.random.Generator, *, num_frames: int, image_size: tuple[int, int],
                       radius: float, base_scale: float, config: MotionConfig) -> Trajectory:
    """A trajectory in view on the first and last frames and fully outside for some frames between.

    The sprite's bounding circle crosses one image edge: it slides out over `ramp` frames,
    stays out for one or more frames, and slides back in, so the object disappears and
    re-enters. Needs at least 3 frames.
    """
    if num_frames < 3:
        raise ValueError(f"leaving and re-entering needs at least 3 frames, got {num_frames}")
    h, w = image_size
    side = min(h, w)
    angle, scale = _spin_and_zoom(rng, num_frames, base_scale, config)
    reach = radius * float(scale.max())  # bounding radius in image pixels, over the whole clip
    longest = min(3, (num_frames - 1) // 2)  # frames to slide out (and back in)
    ramp = int(rng.integers(max(longest - 1, 1), longest + 1))
    out_frames = int(rng.integers(1, num_frames - 2 * ramp + 1))
    first_out = int(rng.integers(ramp, num_frames - ramp - out_frames + 1))
    # Distance of the plateau of "outside" frames, cosine ramps to the in-view frames.
    t = np.arange(num_frames, dtype=np.float32)
    gap = np.maximum(np.maximum(first_out - t, t - (first_out + out_frames - 1)), 0)  # (T,)
    bump = np.where(gap >= ramp, 0.0, 0.5 * (1 + np.cos(np.pi * gap / ramp)))
    edge = int(rng.integers(4))  # 0 left, 1 right, 2 top, 3 bottom
    extent = w if edge < 2 else h
    # Signed depth of the centre past the edge: inside (fully visible) -> outside (fully hidden).
    depth_in = -min(reach + rng.uniform(0, 0.2) * side, extent / 2)
    depth_out = reach + 2.0
    depth = depth_in + (depth_out - depth_in) * bump  # (T,)
    normal = -depth if edge in (0, 2) else extent + depth
    along_extent = h if edge < 2 else w
    margin = min(reach, along_extent / 2)  # keeps the object whole along the edge when it fits
    along = _drift(rng, num_frames, rng.uniform(margin, along_extent - margin), margin,
                   along_extent - margin, config.max_speed * side, config.max_accel * side)
    xs, ys = (normal, along) if edge < 2 else (along, normal)
    center = np.stack([xs, ys], axis=1).astype(np.float32)
    return Trajectory(center=center, angle=angle, scale=scale)
