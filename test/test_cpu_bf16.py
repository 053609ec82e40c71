"""bfloat16 on CPU: who may run it, how close it stays to float32, and the feature cache.

The bf16 tracker is compared with the float32 one (itself proven equal to Meta's reference
by test_tracker_parity) on the bundled real frames, with random weights (tiny) and with
the small trained checkpoint (nano). At 512 px Meta's own model under CPU bf16
autocast stays at mean mask IoU ~0.995 from its float32, and ours in bf16 as close
(bench_results/README.md); at test sizes, with few pixels per mask, the bounds are looser
and stated per case.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sam2_ros.engine import StreamingTracker, build_model, load_checkpoint
from sam2_ros.engine.feature_cache import FeatureCache, feature_tensors, frame_feature_bytes
from sam2_ros.engine.precision import (check_dtype, cpu_bf16_instructions, inference_context,
                                       matmul_weights_dtype, run_float32)

DATA = Path(__file__).resolve().parent / "data"
NANO = Path(__file__).resolve().parents[1] / "weights" / "sam2_nano.pt"
CPU = torch.device("cpu")
needs_cpu_bf16 = pytest.mark.skipif(not cpu_bf16_instructions(),
                                    reason="this CPU has no native bf16 (avx512_bf16 / amx_bf16)")


def real_frames(video: str, n: int, size: tuple[int, int] = (256, 144)) -> list[np.ndarray]:
    paths = sorted((DATA / video).glob("*.jpg"))[:n]
    return [np.asarray(Image.open(p).convert("RGB").resize(size)) for p in paths]


def test_dtype_policy_on_cpu() -> None:
    check_dtype(CPU, torch.float32, flags=frozenset())
    check_dtype(CPU, torch.bfloat16, flags=frozenset({"avx512f", "avx512_bf16"}))
    check_dtype(CPU, torch.bfloat16, flags=frozenset({"amx_bf16"}))
    with pytest.raises(ValueError, match="float16 on CPU is refused: PyTorch has no fast float16 matmul"):
        check_dtype(CPU, torch.float16, flags=frozenset({"avx512_bf16", "avx512_fp16"}))
    with pytest.raises(ValueError, match="needs native bf16 matmuls \\(the avx512_bf16 or amx_bf16 instruction set\\)"):
        check_dtype(CPU, torch.bfloat16, flags=frozenset({"avx2", "avx512f"}))
    with pytest.raises(ValueError, match="dtype must be one of"):
        check_dtype(CPU, torch.float64)


def test_tracker_refuses_float16_on_cpu_and_bf16_on_other_backends() -> None:
    model = build_model("tiny", 64)
    with pytest.raises(ValueError, match="float16 on CPU is refused"):
        StreamingTracker(model, dtype=torch.float16)
    if cpu_bf16_instructions():
        with pytest.raises(ValueError, match="runs on the torch backend only, got backend 'onnxruntime'"):
            StreamingTracker(model, dtype=torch.bfloat16, backend="onnxruntime")
    assert matmul_weights_dtype(model) == torch.float32  # refused before any cast


@needs_cpu_bf16
def test_bf16_casts_matmul_weights_once() -> None:
    model = build_model("tiny", 64)
    tracker = StreamingTracker(model, dtype=torch.bfloat16)
    assert tracker.model is model and matmul_weights_dtype(model) == torch.bfloat16
    assert model.image_encoder.trunk.blocks[0].norm1.weight.dtype == torch.float32  # norms stay float32
    assert model.no_mem_embed.dtype == torch.float32
    # The mask decoder's transformer stays float32 (precision.FLOAT32_PARTS), its MLPs bf16.
    assert matmul_weights_dtype(model.sam_mask_decoder.transformer) == torch.float32
    assert model.sam_mask_decoder.output_hypernetworks_mlps[0].layers[0].weight.dtype == torch.bfloat16


@needs_cpu_bf16
def test_float32_part_runs_in_float32_under_cpu_autocast() -> None:
    model = build_model("tiny", 64)
    StreamingTracker(model, dtype=torch.bfloat16)
    transformer = model.sam_mask_decoder.transformer
    src, pe, tokens = torch.randn(1, 256, 4, 4), torch.randn(1, 256, 4, 4), torch.randn(1, 7, 256)
    with inference_context(torch.device("cpu"), torch.bfloat16):
        hs, keys = run_float32(transformer, src.bfloat16(), pe, tokens.bfloat16())
    assert hs.dtype == keys.dtype == torch.float32
    with torch.inference_mode():
        expected_hs, expected_keys = transformer(src.bfloat16().float(), pe, tokens.bfloat16().float())
    assert torch.equal(hs, expected_hs) and torch.equal(keys, expected_keys)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def track_clip(model: torch.nn.Module, dtype: torch.dtype, frames: list[np.ndarray],
               clicks: list[tuple[float, float]]) -> list[dict]:
    tracker = StreamingTracker(model, dtype=dtype)
    out = []
    for t, frame in enumerate(frames):
        results = tracker.track(frame)
        if t == 0:
            results = {i: tracker.add_prompt(i, points=np.array([click]), labels=np.array([1]))
                       for i, click in enumerate(clicks, start=1)}
        out.append(results)
    return out


def compare(ours: list[dict], reference: list[dict]) -> tuple[float, float, float]:
    """Mean and min mask IoU, and the median of the per-mask max logit errors."""
    ious, errors = [], []
    for a, b in zip(ours, reference):
        assert a.keys() == b.keys()
        for obj_id in a:
            ious.append(iou(a[obj_id].mask, b[obj_id].mask))
            errors.append(float(np.abs(a[obj_id].low_res_logits - b[obj_id].low_res_logits).max()))
    return float(np.mean(ious)), float(np.min(ious)), float(np.median(errors))


@needs_cpu_bf16
def test_bf16_tracks_like_float32_random_weights() -> None:
    """Tiny at 256 px, random weights made visible, two clicked objects over 6 real frames."""
    torch.manual_seed(0)
    model = build_model("tiny", 256)
    with torch.no_grad():
        model.sam_mask_decoder.pred_obj_score_head.layers[2].bias.fill_(1.0)
    frames = real_frames("bedroom", 6)
    clicks = [(80.0, 70.0), (190.0, 90.0)]
    reference = track_clip(model, torch.float32, frames, clicks)
    mean_iou, min_iou, logit_error = compare(track_clip(model, torch.bfloat16, frames, clicks), reference)
    assert mean_iou >= 0.98 and min_iou >= 0.95, (mean_iou, min_iou)
    assert logit_error < 0.1, logit_error
    assert all(r[1].mask.any() for r in reference)  # real masks, not all-absent ones


@needs_cpu_bf16
@pytest.mark.skipif(not NANO.is_file(), reason="weights/sam2_nano.pt not in this checkout")
def test_bf16_tracks_like_float32_trained_checkpoint() -> None:
    """The trained nano checkpoint (128 px) on the real `blocks` frames."""
    model = build_model("nano", 128)
    load_checkpoint(model, NANO)
    frames = real_frames("blocks", 8, size=(240, 135))
    clicks = [(120.0, 70.0)]
    reference = track_clip(model, torch.float32, frames, clicks)
    mean_iou, min_iou, logit_error = compare(track_clip(model, torch.bfloat16, frames, clicks), reference)
    # Trained logits reach +-30 here (random ones stay near +-1): the error is bounded relative to them.
    scale = max(float(np.abs(r[1].low_res_logits).max()) for r in reference)
    assert mean_iou >= 0.95 and min_iou >= 0.9, (mean_iou, min_iou)
    assert logit_error < 0.05 * scale, (logit_error, scale)


@pytest.mark.parametrize("dtype", [torch.float32, pytest.param(torch.bfloat16, marks=needs_cpu_bf16)])
def test_frame_feature_bytes_is_what_a_frame_takes(dtype: torch.dtype) -> None:
    model = build_model("tiny", 64)
    tracker = StreamingTracker(model, dtype=dtype, feature_cache_bytes=1 << 30)
    tracker.track(np.zeros((48, 64, 3), np.uint8), key="a")
    assert tracker.feature_cache.nbytes() == frame_feature_bytes(model, dtype)


def fake_features(fill: float, side: int = 4, pos: torch.Tensor | None = None):
    from sam2_ros.engine.model import FrameFeatures

    pos = torch.zeros(1, 8, side, side) if pos is None else pos
    return FrameFeatures(pix_feat=torch.full((1, 8, side, side), fill), pix_pos=pos,
                         high_res=(torch.full((1, 1, 4 * side, 4 * side), fill),
                                   torch.full((1, 2, 2 * side, 2 * side), fill)))


def test_feature_cache_evicts_least_recently_used_within_budget() -> None:
    pos = torch.zeros(1, 8, 4, 4)  # shared by every frame, counted once
    one = sum(t.numel() * 4 for t in feature_tensors(fake_features(0.0, pos=pos)) if t is not pos)
    cache = FeatureCache(budget_bytes=3 * one + pos.numel() * 4, frame_bytes=one + pos.numel() * 4)
    assert cache.enabled and "feature cache on" in cache.status
    for key in range(3):
        cache.put(key, fake_features(float(key), pos=pos))
    assert cache.keys() == [0, 1, 2] and cache.nbytes() <= cache.budget_bytes
    assert cache.get(0) is not None  # now the most recently used
    cache.put(3, fake_features(3.0, pos=pos))
    assert cache.keys() == [2, 0, 3] and cache.nbytes() <= cache.budget_bytes
    assert float(cache.get(3).pix_feat[0, 0, 0, 0]) == 3.0 and cache.get(1) is None
    cache.clear()
    assert len(cache) == 0 and cache.nbytes() == 0


def test_feature_cache_smaller_than_one_frame_stays_off() -> None:
    model = build_model("tiny", 64)
    frame = frame_feature_bytes(model, torch.float32)
    tracker = StreamingTracker(model, feature_cache_bytes=frame - 1)
    cache = tracker.feature_cache
    assert not cache.enabled
    assert cache.status.startswith(f"feature cache off: its budget of {frame - 1} bytes is smaller than one frame")
    tracker.track(np.zeros((48, 64, 3), np.uint8), key=1)
    assert len(cache) == 0 and cache.get(1) is None
    assert FeatureCache(0, frame).status.startswith("feature cache off (budget 0)")
    with pytest.raises(ValueError, match="budget must be >= 0 bytes, got -1"):
        FeatureCache(-1, frame)


def test_feature_cache_is_cleared_by_reset_and_skips_the_encoder() -> None:
    model = build_model("tiny", 64)
    tracker = StreamingTracker(model, feature_cache_bytes=4 * frame_feature_bytes(model, torch.float32))
    frame = np.zeros((48, 64, 3), np.uint8)
    calls = []
    encode = tracker.backend.encode_image
    tracker.backend.encode_image = lambda image: calls.append(1) or encode(image)
    tracker.track(frame, key=7)
    tracker.track(frame, key=7)
    assert len(calls) == 1 and tracker.feature_cache.hits == 1
    tracker.reset()
    tracker.track(frame, key=7)
    assert len(calls) == 2
