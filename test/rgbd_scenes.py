"""Synthetic depth scenes with analytic 3D ground truth (640x480, a 525 px pinhole camera);
the node tests' RGB-D clip comes from sam2_ros.train.rgbd_clip."""
from __future__ import annotations

import numpy as np

from sam2_ros.spatial.camera import Intrinsics
from sam2_ros.train.rgbd_clip import CAMERA, HEIGHT, K, WIDTH, approaching_disc_clip  # noqa: F401

WALL = 2.0  # metres, behind the box
# A box face 25 x 17 cm at 0.8 m, straddling the optical axis.
BOX_SCENE_DEFAULTS = {"low": (-0.10, -0.05), "high": (0.15, 0.12), "z": 0.8}


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


def mask_centroid(mask: np.ndarray, depth: float, camera: Intrinsics = CAMERA) -> np.ndarray:
    """The mean 3D point of a flat mask at `depth` metres (ground truth for fronto-parallel layers)."""
    vs, us = np.nonzero(mask)
    return np.array([(us.mean() - camera.cx) * depth / camera.fx,
                     (vs.mean() - camera.cy) * depth / camera.fy, depth])
