"""The stream every runner sees: bundled real frames looped, a directory, or synthetic frames,
and one click per object spread over the frame."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

TEST_DATA = Path(__file__).resolve().parents[2] / "test" / "data"
BUNDLED_VIDEOS = ("bedroom", "blocks")
SYNTHETIC_HW = (480, 640)  # a VGA camera
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def load_frames(source: str) -> tuple[list[np.ndarray], str]:
    """Frames (H, W, 3) uint8 RGB and a description: "bedroom" or "blocks" (the bundled real
    frames), "synthetic", or a directory of JPEG/PNG images (sorted by name)."""
    if source == "synthetic":
        return synthetic_frames(), f"synthetic {SYNTHETIC_HW[1]}x{SYNTHETIC_HW[0]}"
    directory = TEST_DATA / source if source in BUNDLED_VIDEOS else Path(source)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"frames directory {directory} not found (the bundled frames live in the source tree's "
            f"test/data/{{{','.join(BUNDLED_VIDEOS)}}}); use --video synthetic or a directory of images"
        )
    from PIL import Image

    paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no {'/'.join(IMAGE_SUFFIXES)} images in {directory}")
    frames = [np.array(Image.open(p).convert("RGB")) for p in paths]
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise ValueError(f"frames in {directory} must share one size, got {sorted(shapes)}")
    h, w = frames[0].shape[:2]
    return frames, f"{directory} ({len(frames)} frames {w}x{h}, looped)"


def synthetic_frames(n: int = 16, hw: tuple[int, int] = SYNTHETIC_HW, seed: int = 0) -> list[np.ndarray]:
    """Textured background with bright squares drifting right, so masks have structure."""
    rng = np.random.default_rng(seed)
    h, w = hw
    background = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
    side = min(h, w) // 6
    frames = []
    for t in range(n):
        frame = background.copy()
        for row in range(3):
            y = (row + 1) * h // 4 - side // 2
            x = (w // 8 + 6 * t + row * side) % (w - side)
            frame[y : y + side, x : x + side] = (230, 200 - 60 * row, 40 + 80 * row)
        frames.append(frame)
    return frames


def object_clicks(n_objects: int, frame_hw: tuple[int, int]) -> list[np.ndarray]:
    """One positive click (1, 2) x, y per object, at the centres of a near-square grid."""
    h, w = frame_hw
    cols = math.ceil(math.sqrt(n_objects))
    rows = math.ceil(n_objects / cols)
    return [
        np.array([[(i % cols + 0.5) * w / cols, (i // cols + 0.5) * h / rows]], dtype=np.float32)
        for i in range(n_objects)
    ]
