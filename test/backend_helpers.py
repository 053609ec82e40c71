"""Shared by the backend tests: one small model, its parts exported once per test session,
and a synthetic stream to track."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sam2_ros.engine import build_model

SIZE, IMAGE_SIZE, MAX_CONDITIONING = "tiny", 256, 4
H, W = 120, 160


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(SIZE, IMAGE_SIZE)


def exported_dir(model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Parts of `model` exported under the session's temp root: every test module that asks
    gets the same directory, exported once (the manifest marks it complete)."""
    pytest.importorskip("onnxscript", reason="onnxscript (torch's ONNX exporter) not installed")
    from sam2_ros.backends.onnx_export import ensure_exported

    directory = tmp_path_factory.getbasetemp() / f"onnx_{SIZE}_{IMAGE_SIZE}"
    ensure_exported(model, directory, max_conditioning=MAX_CONDITIONING)
    return directory


def stream(n: int, seed: int = 0) -> list[np.ndarray]:
    """Textured frames with a bright square drifting right, so masks have structure."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 120, (H, W, 3), dtype=np.uint8)
    frames = []
    for t in range(n):
        frame = background.copy()
        x = 30 + 4 * t
        frame[40:80, x : x + 40] = (230, 200, 40)
        frames.append(frame)
    return frames


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)
