"""Pinhole intrinsics and depth units: what back-projection needs, validated at the edge."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# The encodings depth drivers publish, and the metres per stored unit.
DEPTH_SCALES = {"16UC1": 1e-3, "mono16": 1e-3, "32FC1": 1.0}


class CameraModelError(ValueError):
    """Intrinsics or a depth image that cannot give 3D points."""


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of the depth image (pixels), for an image of `width` x `height`."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_k(cls, k: Sequence[float], *, width: int, height: int) -> Intrinsics:
        """From a row-major 3x3 camera matrix K (CameraInfo.k); CameraModelError when unusable."""
        values = np.asarray(k, dtype=np.float64)
        if values.shape != (9,):
            raise CameraModelError(f"K needs 9 values (row-major 3x3); given {values.size}")
        if not np.isfinite(values).all() or not values.any():
            raise CameraModelError("K is all zeros or not finite: the camera is not calibrated "
                                   "(CameraInfo.k)")
        fx, fy, cx, cy = values[0], values[4], values[2], values[5]
        if fx <= 0 or fy <= 0:
            raise CameraModelError(f"focal lengths must be positive; given fx={fx:g}, fy={fy:g}")
        if width <= 0 or height <= 0:
            raise CameraModelError(f"camera info has an empty image size {width}x{height}")
        return cls(fx=float(fx), fy=float(fy), cx=float(cx), cy=float(cy), width=int(width),
                   height=int(height))

    def check_image(self, width: int, height: int) -> None:
        """CameraModelError unless a depth image of this size matches the calibration."""
        if (width, height) != (self.width, self.height):
            raise CameraModelError(f"depth image is {width}x{height} but its camera info is for "
                                   f"{self.width}x{self.height}")


def depth_in_metres(raw: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W) depth as float32 metres: 16UC1 is millimetres, 32FC1 metres (0 = no depth)."""
    if encoding not in DEPTH_SCALES:
        raise CameraModelError(f"unsupported depth encoding {encoding!r}; expected one of "
                               f"{sorted(DEPTH_SCALES)}")
    if raw.dtype == np.float32 or raw.dtype.kind == "f":
        return raw.astype(np.float32, copy=False)
    return raw.astype(np.float32) * np.float32(DEPTH_SCALES[encoding])  # (H, W)


def depth_from_metres(depth: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W) metres stored as a driver would: 16UC1 uint16 millimetres (0 where the depth is
    invalid or beyond 65.535 m) or 32FC1 float32 metres."""
    if encoding not in DEPTH_SCALES:
        raise CameraModelError(f"unsupported depth encoding {encoding!r}; expected one of "
                               f"{sorted(DEPTH_SCALES)}")
    if DEPTH_SCALES[encoding] == 1.0:
        return depth.astype(np.float32)
    millimetres = np.nan_to_num(depth / DEPTH_SCALES[encoding], nan=0.0, posinf=0.0, neginf=0.0)
    return np.where((millimetres > 0) & (millimetres <= 65535), np.round(millimetres), 0
                    ).astype(np.uint16)  # (H, W)


def check_same_view(colour: tuple[int, int], depth: tuple[int, int], *,
                    tolerance: float = 0.02) -> None:
    """CameraModelError unless (H, W) colour and depth images can share a field of view
    (the same aspect ratio within `tolerance`, relative)."""
    (ch, cw), (dh, dw) = colour, depth
    ratio = (cw / ch) / (dw / dh)
    if abs(ratio - 1.0) > tolerance:
        raise CameraModelError(
            f"depth {dw}x{dh} and colour {cw}x{ch} images have different aspect ratios: an "
            f"aligned depth image has the colour image's size or a scaled copy of it")
