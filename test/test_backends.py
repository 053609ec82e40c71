"""Backends: the interface through which the tracker runs SAM 2's parts, the static memory
slots, onnxruntime vs torch on parts and whole streams, per-part timing, TensorRT's pure
pieces (and TensorRT itself where it imports)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from backend_helpers import IMAGE_SIZE, MAX_CONDITIONING, exported_dir, iou, make_model, stream
from sam2_ros.backends import BackendUnavailable, make_backend, parts
from sam2_ros.backends.base import PART_NAMES
from sam2_ros.backends.ort_backend import bound_dims, resolve_shape
from sam2_ros.backends.parts import MemorySlots, pad_memory
from sam2_ros.backends.torch_backend import TorchBackend
from sam2_ros.backends.trt_backend import (
    ProfileLimits,
    engine_filename,
    onnx_input_shapes,
    profile_shapes,
    torch_dtype,
)
from sam2_ros.engine import StreamingTracker
from sam2_ros.engine.model import MemoryTokens

LOGIT_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return make_model()


@pytest.fixture(scope="module")
def onnx_dir(model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return exported_dir(model, tmp_path_factory)


def random_memory(model: torch.nn.Module, batch: int, frames: int, pointers: int, seed: int = 0) -> MemoryTokens:
    """A memory as the tracker builds it: `frames` spatial memories and `pointers` pointers."""
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    h = cfg.feature_size
    return model.memory_tokens(
        features=torch.randn(batch, frames, cfg.mem_dim, h, h, generator=g),
        feature_pos=torch.randn(batch, cfg.mem_dim, h, h, generator=g),
        tpos_indices=[i % cfg.num_maskmem for i in range(frames)],
        obj_ptrs=torch.randn(batch, pointers, cfg.hidden_dim, generator=g),
        ptr_distances=torch.arange(1, pointers + 1).expand(batch, -1),
    )


def frame_features(model: torch.nn.Module, batch: int):
    image = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model.encode_image(image).expand(batch)


# --- the interface ---------------------------------------------------------------------------

def test_unknown_backend_names_the_choices(model: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match=r"unknown backend 'cuda'.*'torch', 'onnxruntime', 'tensorrt'"):
        make_backend("cuda", model)


def test_missing_dependency_says_what_to_install(model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorrt" else real(name, *a))
    with pytest.raises(BackendUnavailable, match=r"needs \['tensorrt'\].*JetPack"):
        make_backend("tensorrt", model)


def test_torch_backend_rejects_gpu_options_on_cpu(model: torch.nn.Module) -> None:
    # Reduced precision on CPU: float16 is refused; bfloat16 wants weights cast once first.
    with pytest.raises(ValueError, match="dtype float16 on CPU is refused"):
        TorchBackend(model, dtype=torch.float16)
    with pytest.raises(ValueError, match="weights must already be torch.bfloat16|needs native "
                                         "bf16 matmuls"):  # the latter on CPUs without bf16
        TorchBackend(model, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="cuda_graphs needs the model on CUDA"):
        TorchBackend(model, cuda_graphs=True)


def test_torch_backend_equals_the_model(model: torch.nn.Module) -> None:
    """Each backend method computes what the SAM2Model method of the same name computes."""
    backend = make_backend("torch", model)
    feats = frame_features(model, 2)
    memory = random_memory(model, 2, frames=3, pointers=4)
    coords = torch.tensor([[[30.0, 40.0], [100.0, 90.0]]]).expand(2, -1, -1)
    labels = torch.tensor([[1, 0]], dtype=torch.int32).expand(2, -1)
    with torch.no_grad():
        assert torch.equal(backend.condition_on_memory(feats, memory), model.condition_on_memory(feats, memory))
        assert torch.equal(backend.condition_on_memory(feats, None), model.condition_on_memory(feats, None))
        got = backend.run_heads(feats.pix_feat, feats.high_res, point_coords=coords, point_labels=labels,
                                multimask=False)
        want = model.run_heads(feats.pix_feat, feats.high_res, point_coords=coords, point_labels=labels,
                               multimask=False)
        assert torch.equal(got.low_res_logits, want.low_res_logits) and torch.equal(got.obj_ptr, want.obj_ptr)
        tracked = backend.run_heads(feats.pix_feat, feats.high_res, multimask=True)
        assert torch.equal(tracked.low_res_logits, model.run_heads(feats.pix_feat, feats.high_res,
                                                                   multimask=True).low_res_logits)
        got_mem = backend.encode_memory(feats.pix_feat, got.low_res_logits, got.object_score_logits, binarize=True)
        want_mem = model.encode_memory(feats.pix_feat, want.low_res_logits, want.object_score_logits, binarize=True)
        assert all(torch.equal(a, b) for a, b in zip(got_mem, want_mem))


# --- static memory slots ---------------------------------------------------------------------

def test_slots_hold_the_largest_memory_a_bank_selects(model: torch.nn.Module) -> None:
    slots = MemorySlots.for_model(model, MAX_CONDITIONING)
    cfg = model.cfg
    assert slots.frames == MAX_CONDITIONING + cfg.num_maskmem - 1
    assert slots.pointers == MAX_CONDITIONING + cfg.max_obj_ptrs_in_encoder - 1
    assert slots.tokens == slots.frames * cfg.feature_size**2 + slots.pointers * (cfg.hidden_dim // cfg.mem_dim)


@pytest.mark.parametrize(("frames", "pointers"), [(1, 1), (3, 7), (10, 19)])
def test_static_slot_attention_equals_variable_length(model: torch.nn.Module, frames: int, pointers: int) -> None:
    feats = frame_features(model, 2)
    memory = random_memory(model, 2, frames, pointers)
    static = TorchBackend(model, static_memory=True, max_conditioning=MAX_CONDITIONING)
    with torch.no_grad():
        expected = model.condition_on_memory(feats, memory)
        got = static.condition_on_memory(feats, memory)
    assert (got - expected).abs().max() <= 1e-4


def test_padding_puts_pointers_after_all_spatial_slots(model: torch.nn.Module) -> None:
    slots = MemorySlots.for_model(model, MAX_CONDITIONING)
    memory = random_memory(model, 1, frames=2, pointers=3)
    tokens, pos, mask = pad_memory(memory, slots)
    n_spatial = 2 * slots.hw
    assert tokens.shape == pos.shape == (1, slots.tokens, model.cfg.mem_dim)
    assert mask[0, :n_spatial].all() and not mask[0, n_spatial : slots.spatial_tokens].any()
    ptr = slice(slots.spatial_tokens, slots.spatial_tokens + 3 * slots.split)
    assert mask[0, ptr].all() and not mask[0, ptr.stop :].any()
    assert torch.equal(tokens[0, ptr], memory.tokens[0, n_spatial:])
    assert torch.equal(pos[0, :n_spatial], memory.pos[0, :n_spatial])
    assert not tokens[~mask].any()


def test_padding_refuses_a_memory_larger_than_the_slots(model: torch.nn.Module) -> None:
    slots = MemorySlots.for_model(model, 2)
    with pytest.raises(ValueError, match="exceeds the static slots"):
        pad_memory(random_memory(model, 1, frames=slots.frames + 1, pointers=1), slots)


# --- onnxruntime vs torch ----------------------------------------------------------------------

def test_ort_backend_parts_equal_torch(model: torch.nn.Module, onnx_dir: Path) -> None:
    ort_backend = make_backend("onnxruntime", model, onnx_dir=onnx_dir, max_conditioning=MAX_CONDITIONING)
    image = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        got_f, want_f = ort_backend.encode_image(image), model.encode_image(image)
        pairs = [(got_f.pix_feat, want_f.pix_feat), (got_f.pix_pos, want_f.pix_pos), *zip(got_f.high_res, want_f.high_res)]
        for a, b in pairs:
            assert (a - b).abs().max() <= LOGIT_TOLERANCE
        feats = want_f.expand(3)  # strided views: the backend must make them contiguous
        memory = random_memory(model, 3, frames=4, pointers=6)
        cond = ort_backend.condition_on_memory(feats, memory)
        assert (cond - model.condition_on_memory(feats, memory)).abs().max() <= LOGIT_TOLERANCE
        previous = torch.randn(3, 1, IMAGE_SIZE // 4, IMAGE_SIZE // 4)
        for kwargs in ({"multimask": True}, {"multimask": True, "mask_logits": previous},
                       {"multimask": False, "point_coords": torch.rand(3, 4, 2) * IMAGE_SIZE,
                        "point_labels": torch.tensor([[1, 0, 2, 3]] * 3, dtype=torch.int32)}):
            got = ort_backend.run_heads(cond, feats.high_res, **kwargs)
            want = model.run_heads(cond, feats.high_res, **kwargs)
            for field in ("low_res_logits", "iou", "obj_ptr", "object_score_logits"):
                assert (getattr(got, field) - getattr(want, field)).abs().max() <= LOGIT_TOLERANCE, field
        for binarize in (False, True):
            got_m = ort_backend.encode_memory(feats.pix_feat, want.low_res_logits, want.object_score_logits,
                                              binarize=binarize)
            want_m = model.encode_memory(feats.pix_feat, want.low_res_logits, want.object_score_logits,
                                         binarize=binarize)
            assert all((a - b).abs().max() <= LOGIT_TOLERANCE for a, b in zip(got_m, want_m))


def track_sequence(
    model: torch.nn.Module, backend: object, n_frames: int = 10
) -> list[dict[int, tuple[np.ndarray, np.ndarray]]]:
    """A stream with every prompt kind: box, a correction click, a mask, multi-click, tracking."""
    device = next(model.parameters()).device
    tracker = StreamingTracker(model, max_conditioning_frames=MAX_CONDITIONING, device=device, backend=backend)
    frames = stream(n_frames)
    outputs = []
    for t, frame in enumerate(frames):
        results = dict(tracker.track(frame))
        if t == 0:
            results[1] = tracker.add_prompt(1, box=np.array([30.0, 40.0, 70.0, 80.0]))
        if t == 3:
            results[1] = tracker.add_prompt(1, points=np.array([[60.0, 60.0]]), labels=np.array([0]),
                                            clear_old=False)
            mask = np.zeros(frame.shape[:2], bool)
            mask[5:30, 100:150] = True
            results[2] = tracker.add_prompt(2, mask=mask)
        if t == 5:
            results[3] = tracker.add_prompt(3, points=np.array([[20.0, 100.0], [40.0, 110.0]]),
                                            labels=np.array([1, 1]))
        outputs.append({i: (r.mask, r.low_res_logits) for i, r in results.items()})
    return outputs


def test_ort_tracks_a_stream_like_torch(model: torch.nn.Module, onnx_dir: Path) -> None:
    expected = track_sequence(model, "torch")
    got = track_sequence(model, make_backend("onnxruntime", model, onnx_dir=onnx_dir,
                                             max_conditioning=MAX_CONDITIONING))
    assert [set(f) for f in got] == [set(f) for f in expected]
    assert set(expected[-1]) == {1, 2, 3}
    for frame_got, frame_want in zip(got, expected):
        for obj_id, (mask, logits) in frame_want.items():
            assert iou(frame_got[obj_id][0], mask) >= 0.99
            assert np.abs(frame_got[obj_id][1] - logits).max() <= 1e-2


def test_timer_records_each_part_only_when_enabled(model: torch.nn.Module) -> None:
    backend = make_backend("torch", model)
    track_sequence(model, backend, n_frames=4)
    assert all(len(v) == 0 for v in backend.timer.times_ms.values())
    backend.timer.enabled = True
    track_sequence(model, backend, n_frames=4)
    counts = {name: len(backend.timer.times_ms[name]) for name in PART_NAMES}
    assert counts["image_encoder"] == 4
    assert all(counts[name] > 0 for name in PART_NAMES)
    assert all(t > 0 for times in backend.timer.times_ms.values() for t in times)
    backend.timer.reset()
    assert all(len(v) == 0 for v in backend.timer.times_ms.values())


# --- TensorRT: pure pieces here, the engines where tensorrt imports ----------------------------

def test_profiles_cover_dynamic_dims_only(onnx_dir: Path) -> None:
    limits = ProfileLimits(max_objects=8, opt_objects=2, max_points=6, opt_points=3)
    assert profile_shapes(onnx_input_shapes(onnx_dir / "image_encoder.onnx"), limits) == {}
    spec = parts.decoder_spec(multimask=True, has_mask=True)
    shapes = profile_shapes(onnx_input_shapes(onnx_dir / spec.filename), limits)
    assert set(shapes) == set(spec.inputs)
    assert shapes["point_coords"] == ((1, 1, 2), (2, 3, 2), (8, 6, 2))
    h = IMAGE_SIZE // 16
    assert shapes["mask_logits"] == ((1, 1, 4 * h, 4 * h), (2, 1, 4 * h, 4 * h), (8, 1, 4 * h, 4 * h))
    with pytest.raises(ValueError, match="no profile range for dim 'frames'"):
        profile_shapes({"x": ["frames", 3]}, limits)


def test_engine_filename_changes_with_every_key(onnx_dir: Path) -> None:
    from sam2_ros.backends.onnx_export import ExportManifest

    manifest = ExportManifest.load(onnx_dir)
    base = dict(precision="fp16", gpu_name="NVIDIA Jetson AGX Orin", compute_capability=(8, 7),
                trt_version="10.3.0", limits=ProfileLimits(), onnx_digest="abc", int8=False)
    name = engine_filename(manifest, "decoder_multi", **base)
    assert name.startswith(f"decoder_multi-tiny-{IMAGE_SIZE}-v2.1-fp16-nvidia-jetson-agx-orin-sm87-trt10.3.0-")
    changes = dict(precision="fp32", gpu_name="NVIDIA H100", compute_capability=(9, 0), trt_version="10.4.0",
                   limits=ProfileLimits(max_objects=4), onnx_digest="abd", int8=True)
    for key, value in changes.items():
        assert engine_filename(manifest, "decoder_multi", **{**base, key: value}) != name, key


def test_trt_dtype_names_map_to_torch() -> None:
    class FakeDataType:
        def __init__(self, name: str) -> None:
            self.name = name

    assert torch_dtype(FakeDataType("HALF")) is torch.float16
    assert torch_dtype(FakeDataType("BOOL")) is torch.bool
    with pytest.raises(ValueError, match="FP8"):
        torch_dtype(FakeDataType("FP8"))


def test_output_shapes_resolve_from_named_dims() -> None:
    spec = parts.decoder_spec(multimask=True, has_mask=False)
    inputs = {name: torch.zeros(3, 1) for name in spec.inputs}
    inputs["point_coords"] = torch.zeros(3, 5, 2)
    inputs["point_labels"] = torch.zeros(3, 5)
    dims = bound_dims(spec, inputs)
    assert dims == {"batch": 3, "points": 5}
    assert resolve_shape(["batch", 1, 64, 64], dims, "x") == (3, 1, 64, 64)
    with pytest.raises(ValueError, match="cannot resolve dim 's7'"):
        resolve_shape(["s7", 4], dims, "x")
    inputs["point_labels"] = torch.zeros(2, 5)
    with pytest.raises(ValueError, match="dim 'batch' is 3 elsewhere but 2"):
        bound_dims(spec, inputs)


def test_tensorrt_tracks_a_stream_like_torch(model: torch.nn.Module, onnx_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorrt", reason="tensorrt not importable")
    cuda_model = make_model().cuda()
    expected = track_sequence(cuda_model, "torch")
    backend = make_backend("tensorrt", cuda_model, dtype=torch.float32, onnx_dir=onnx_dir,
                           engine_dir=tmp_path, max_conditioning=MAX_CONDITIONING)
    got = track_sequence(cuda_model, backend)
    for frame_got, frame_want in zip(got, expected):
        for obj_id, (mask, logits) in frame_want.items():
            assert iou(frame_got[obj_id][0], mask) >= 0.98  # TF32 inside fp32 engines
            assert np.abs(frame_got[obj_id][1] - logits).max() <= 5e-2


# --- CUDA fast paths (only where a GPU is) ------------------------------------------------------

@pytest.mark.parametrize("options", [{"static_memory": True, "cuda_graphs": True},
                                     {"dtype": torch.bfloat16, "cuda_graphs": True}], ids=["graphs", "bf16-graphs"])
def test_cuda_fast_paths_track_like_eager(options: dict, device: str) -> None:
    if not device.startswith("cuda") or not torch.cuda.is_available():
        pytest.skip("CUDA fast paths need SAM2_ROS_TEST_DEVICE=cuda and a CUDA GPU")
    cuda_model = make_model().to(device)
    expected = track_sequence(cuda_model, "torch")
    got = track_sequence(cuda_model, TorchBackend(cuda_model, max_conditioning=MAX_CONDITIONING, **options))
    worst = min(iou(g[i][0], e[i][0]) for g, e in zip(got, expected) for i in e)
    assert worst >= (0.99 if "dtype" not in options else 0.9)
