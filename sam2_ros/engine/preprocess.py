"""Frames, prompts and masks between frame pixels and the model's square input.

The model sees every frame stretched to image_size x image_size (no aspect preservation),
as Meta's predictors feed it; all resizing runs in torch on the target device.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_frame(frame: object) -> np.ndarray:
    """The frame as an (H, W, 3) uint8 array, or ValueError naming what was expected."""
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"frame must be a numpy array (H, W, 3) uint8 RGB, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8 RGB, got dtype {frame.dtype}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be (H, W, 3) RGB, got shape {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"frame must not be empty, got shape {frame.shape}")
    return frame


def preprocess_frame(frame: np.ndarray, image_size: int, *, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, S, S) normalized model input.

    Scaled to [0, 1], resized with antialiased bilinear interpolation (as the reference image
    predictor's transform does), then normalized with the ImageNet mean and std.
    """
    image = torch.from_numpy(np.ascontiguousarray(check_frame(frame))).to(device)  # (H, W, 3) uint8
    image = image.permute(2, 0, 1)[None].float() / 255.0  # (1, 3, H, W)
    if image.shape[-2:] != (image_size, image_size):
        image = F.interpolate(image, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, device=image.device).reshape(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device).reshape(1, 3, 1, 1)
    return (image - mean) / std  # (1, 3, S, S) float32


def points_to_model(points: np.ndarray, frame_hw: tuple[int, int], image_size: int) -> np.ndarray:
    """(N, 2) x, y in frame pixels -> (N, 2) in model-input pixels (x / W * S, y / H * S)."""
    h, w = frame_hw
    scale = np.array([w, h], dtype=np.float32)
    return points.astype(np.float32) / scale * np.float32(image_size)


def mask_to_model(mask: torch.Tensor, image_size: int) -> torch.Tensor:
    """(H, W) bool mask prompt -> (1, 1, S, S) float 0/1, resized as the reference video
    predictor resizes mask prompts (antialiased bilinear, then >= 0.5)."""
    mask = mask[None, None].float()  # (1, 1, H, W)
    if mask.shape[-2:] == (image_size, image_size):
        return mask
    resized = F.interpolate(mask, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    return (resized >= 0.5).float()


def logits_to_frame_mask(low_res_logits: torch.Tensor, frame_hw: tuple[int, int]) -> torch.Tensor:
    """(B, 1, h, w) mask logits -> (B, H, W) bool at frame resolution (bilinear, then > 0)."""
    logits = F.interpolate(low_res_logits.float(), size=frame_hw, mode="bilinear", align_corners=False)
    return logits[:, 0] > 0
