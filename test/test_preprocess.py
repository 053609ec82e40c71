"""Preprocessing against the reference video predictor's frame loading and prompt conversion."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sam2_ros.engine.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    logits_to_frame_mask,
    mask_to_model,
    points_to_model,
    preprocess_frame,
)

DATA = Path(__file__).parent / "data" / "bedroom"


def reference_frames(folder: Path, image_size: int) -> torch.Tensor:
    pytest.importorskip("sam2", reason="reference sam2==1.1.0 not installed (scripts/setup.sh installs it)")
    from sam2.utils.misc import load_video_frames_from_jpg_images

    images, _, _ = load_video_frames_from_jpg_images(str(folder), image_size, True, compute_device=torch.device("cpu"))
    return images


def test_square_frames_equal_the_reference_loader(tmp_path: Path) -> None:
    """At the model's size no resampling happens: scaling and normalization are the reference's."""
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / f"{i:05d}.jpg")
    expected = reference_frames(tmp_path, 64)
    ours = torch.cat([preprocess_frame(np.array(Image.open(tmp_path / f"{i:05d}.jpg")), 64) for i in range(2)])
    assert ours.shape == (2, 3, 64, 64) and ours.dtype == torch.float32
    assert (ours - expected).abs().max() <= 1e-6


@pytest.mark.parametrize("image_size", [128, 256])
def test_resized_frames_are_close_to_the_reference_loader(image_size: int) -> None:
    """The reference resizes with PIL (bicubic, uint8); we resize in torch (antialiased
    bilinear, as its image predictor does): close, not equal (mean ~1/255 of intensity)."""
    expected = reference_frames(DATA, image_size)
    ours = torch.cat([preprocess_frame(np.array(Image.open(p)), image_size) for p in sorted(DATA.glob("*.jpg"))])
    assert ours.shape == expected.shape
    assert (ours - expected).abs().mean() < 0.03


def test_channel_order_and_normalization() -> None:
    frame = np.zeros((10, 30, 3), np.uint8)
    frame[..., 0] = 255  # pure red
    image = preprocess_frame(frame, 32)
    expected = [(1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], -IMAGENET_MEAN[1] / IMAGENET_STD[1],
                -IMAGENET_MEAN[2] / IMAGENET_STD[2]]
    assert torch.allclose(image[0, :, 16, 16], torch.tensor(expected), atol=1e-5)


def test_points_scale_as_the_video_predictor() -> None:
    points = np.array([[0.0, 0.0], [255.5, 143.0], [17.25, 99.0]])
    expected = torch.tensor(points, dtype=torch.float32) / torch.tensor([256, 144]) * 512
    assert np.array_equal(points_to_model(points, (144, 256), 512), expected.numpy())


def test_mask_prompt_resized_as_the_video_predictor() -> None:
    mask = np.zeros((144, 256), bool)
    mask[20:100, 50:200] = True
    model_mask = mask_to_model(torch.from_numpy(mask), 128)
    assert model_mask.shape == (1, 1, 128, 128) and set(model_mask.unique().tolist()) == {0.0, 1.0}
    rows, cols = torch.nonzero(model_mask[0, 0], as_tuple=True)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (18, 88, 25, 99)  # 20..99 * 128/144, 50..199 / 2
    square = torch.from_numpy(mask[:128, :128].copy())
    assert torch.equal(mask_to_model(square, 128)[0, 0], square.float())  # already the model's size


def test_logits_back_to_frame_resolution() -> None:
    logits = torch.full((2, 1, 32, 32), -5.0)
    logits[0, :, :, :16] = 5.0  # object 0: left half
    masks = logits_to_frame_mask(logits, (60, 100))
    assert masks.shape == (2, 60, 100) and masks.dtype == torch.bool
    assert masks[0, :, :50].all() and not masks[0, :, 50:].any() and not masks[1].any()
