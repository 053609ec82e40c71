"""Robust per-object 3D from a mask and an aligned depth image (vectorised numpy).

For each mask: resample it onto the depth image's grid (same field of view, any scale), crop
to its box, drop invalid depths (0, NaN, inf, outside [min_depth, max_depth]), take the median
depth of the eroded mask (its core, away from the border where depth edges smear), keep the
mask's points within a band of a few median absolute deviations of it (this rejects flying
pixels and background leaking into the mask's edge), and back-project those with the
intrinsics. The result is the points' mean and their axis-aligned box in the optical frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sam2_ros.spatial.camera import Intrinsics

# The narrowest depth band kept around the median (metres): the sensor noise of a flat surface.
MIN_BAND = 0.03
MAD_TO_SIGMA = 1.4826  # a normal distribution's standard deviation per median absolute deviation
EMPTY_MASK = "the mask is empty"  # an object out of view: no 3D, and nothing wrong
MEDIAN_SAMPLES = 2000  # about this many depths (a regular grid) make the median and its spread


@dataclass(frozen=True)
class DepthSettings:
    """How depths inside a mask become one object's 3D estimate."""

    min_depth: float = 0.1  # metres; nearer depths are invalid
    max_depth: float = 10.0  # metres; farther depths are invalid
    erode_pixels: int = 2  # the median comes from the mask eroded by this many depth pixels
    outlier_mads: float = 4.0  # kept: |z - median| <= max(MIN_BAND, this * 1.4826 * MAD); 0 = off
    min_points: int = 10  # fewer valid points: 3D is invalid

    def __post_init__(self) -> None:
        if not 0 <= self.min_depth < self.max_depth:
            raise ValueError(f"need 0 <= min_depth < max_depth; given {self.min_depth}, "
                             f"{self.max_depth}")
        if self.erode_pixels < 0 or self.outlier_mads < 0 or self.min_points < 1:
            raise ValueError(f"need erode_pixels >= 0, outlier_mads >= 0, min_points >= 1; given "
                             f"{self.erode_pixels}, {self.outlier_mads}, {self.min_points}")


@dataclass(frozen=True)
class Object3D:
    """One object's 3D estimate in the depth camera's optical frame (metres)."""

    valid: bool
    centroid: np.ndarray  # (3,) float64; zeros when invalid
    box_center: np.ndarray  # (3,) float64
    box_size: np.ndarray  # (3,) float64, full side lengths
    num_points: int  # points that made the estimate
    points: np.ndarray  # (N, 3) float32: those on the cloud grid (empty unless asked for)
    problem: str = ""  # why it is invalid


def invalid(problem: str, num_points: int = 0) -> Object3D:
    zeros = np.zeros(3)
    return Object3D(valid=False, centroid=zeros, box_center=zeros, box_size=zeros,
                    num_points=num_points, points=np.zeros((0, 3), np.float32), problem=problem)


def resample_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """An (H, W) bool mask on a (h, w) grid covering the same view (nearest pixel centre)."""
    height, width = mask.shape
    if (height, width) == shape:
        return mask
    rows = ((np.arange(shape[0]) + 0.5) * (height / shape[0])).astype(np.intp)  # (h,)
    cols = ((np.arange(shape[1]) + 0.5) * (width / shape[1])).astype(np.intp)  # (w,)
    return mask[rows[:, None], cols[None, :]]  # (h, w)


def erode(mask: np.ndarray, radius: int, *, outside: bool = False) -> np.ndarray:
    """(H, W) bool mask eroded by a (2r+1)^2 square; beyond the array counts as `outside`."""
    if radius == 0:
        return mask
    height, width = mask.shape
    padded = np.full((height + 2 * radius, width), outside)
    padded[radius:radius + height] = mask
    rows = padded[0:height].copy()
    for offset in range(1, 2 * radius + 1):
        rows &= padded[offset:offset + height]
    padded = np.full((height, width + 2 * radius), outside)
    padded[:, radius:radius + width] = rows
    out = padded[:, 0:width].copy()
    for offset in range(1, 2 * radius + 1):
        out &= padded[:, offset:offset + width]
    return out


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """(H, W) bool mask grown by a (2r+1)^2 square (the image border does not grow it)."""
    return ~erode(~mask, radius, outside=True)


def _robust_centre(z: np.ndarray, sample: np.ndarray, settings: DepthSettings
                   ) -> tuple[float, float]:
    """Median depth of `z[sample]` and the half-width of the band kept around it (metres).
    Large samples are thinned to a regular grid of about MEDIAN_SAMPLES pixels first."""
    step = max(1, int(np.sqrt(np.count_nonzero(sample) / MEDIAN_SAMPLES)))
    depths = z[::step, ::step][sample[::step, ::step]]  # (n,)
    median = float(np.median(depths))
    spread = settings.outlier_mads * MAD_TO_SIGMA * float(np.median(np.abs(depths - median)))
    return median, max(MIN_BAND, spread)


def estimate_object(mask: np.ndarray, depth: np.ndarray, camera: Intrinsics,
                    settings: DepthSettings, *, cloud_stride: int = 0) -> Object3D:
    """3D of one object from its (H, W) bool mask on the depth grid and (H, W) float32 depth in
    metres. `cloud_stride` > 0 also returns the kept points on every stride-th row and column
    of the depth image (a grid shared by all objects), for a point cloud.

    Sums and extremes go through per-row and per-column reductions (x depends only on the
    column and z, y only on the row and z), so no per-pixel coordinates are built.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return invalid(EMPTY_MASK)
    cols = np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    inside = mask[top:bottom, left:right]  # (h, w) crop
    z = depth[top:bottom, left:right]  # (h, w) metres
    with np.errstate(invalid="ignore"):  # NaN compares False: invalid, as wanted
        usable = inside & (z >= settings.min_depth) & (z <= settings.max_depth)  # (h, w)
    count = int(np.count_nonzero(usable))
    if count < settings.min_points:
        return invalid(f"{count} valid depths inside the mask (fewer than min_depth_points "
                       f"{settings.min_points})", count)
    keep = usable
    if settings.outlier_mads > 0:
        core = erode(inside, settings.erode_pixels) & usable
        median, band = _robust_centre(
            z, core if np.count_nonzero(core) >= settings.min_points else usable, settings)
        with np.errstate(invalid="ignore"):
            keep = usable & (np.abs(z - median) <= band)
    count = int(np.count_nonzero(keep))
    if count < settings.min_points:
        return invalid(f"{count} depths agree with the object's median depth (fewer than "
                       f"min_depth_points {settings.min_points})", count)
    x_factor = (np.arange(left, right) - camera.cx) / camera.fx  # (w,) x / z per column
    y_factor = (np.arange(top, bottom) - camera.cy) / camera.fy  # (h,) y / z per row
    kept = np.where(keep, z, 0.0)  # (h, w), float64 sums below
    column_sums, row_sums = kept.sum(axis=0, dtype=np.float64), kept.sum(axis=1, dtype=np.float64)
    centroid = np.array([x_factor @ column_sums, y_factor @ row_sums, column_sums.sum()]) / count
    near = np.where(keep, z, np.inf)  # (h, w)
    far = np.where(keep, z, -np.inf)
    low, high = np.empty(3), np.empty(3)
    for axis, factor, reduce_over in ((0, x_factor, 0), (1, y_factor, 1)):
        zmin, zmax = near.min(axis=reduce_over), far.max(axis=reduce_over)  # per column / row
        used = np.isfinite(zmin)
        ends = np.stack([factor[used] * zmin[used], factor[used] * zmax[used]])  # (2, n)
        low[axis], high[axis] = ends.min(), ends.max()
    low[2], high[2] = near.min(), far.max()
    on_grid = np.zeros((0, 3), np.float32)
    if cloud_stride > 0:
        first_row, first_col = -top % cloud_stride, -left % cloud_stride  # absolute multiples
        grid = keep[first_row::cloud_stride, first_col::cloud_stride]
        vs, us = np.nonzero(grid)
        vs, us = vs * cloud_stride + first_row, us * cloud_stride + first_col  # crop pixels
        depths = z[vs, us]
        on_grid = np.stack([x_factor[us] * depths, y_factor[vs] * depths, depths],
                           axis=1).astype(np.float32)  # (N, 3)
    return Object3D(valid=True, centroid=centroid, box_center=(low + high) / 2,
                    box_size=high - low, num_points=count, points=on_grid)
