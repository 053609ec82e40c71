"""Memory is O(1) in the stream length: the bank keeps only what can still be attended."""
from __future__ import annotations

import gc

import numpy as np
import psutil
import pytest
import torch

from sam2_ros.engine import StreamingTracker, build_model
from sam2_ros.engine.feature_cache import frame_feature_bytes
from sam2_ros.engine.memory_bank import MemoryBank, MemoryEntry
from sam2_ros.engine.precision import cpu_bf16_instructions

NUM_MASKMEM, MAX_PTRS, MAX_COND = 7, 16, 4


def entry(t: int) -> MemoryEntry:
    return MemoryEntry(frame_idx=t, features=torch.full((2, 1, 1), float(t)), obj_ptr=torch.full((4,), float(t)),
                       object_score_logit=1.0)


def test_bank_bounds_and_selection() -> None:
    """Prompts every 5th frame: at most MAX_COND (+1 while the newest frame is a prompt)
    conditioning frames, num_maskmem spatial memories, max_obj_ptrs pointers; a step sees
    the MAX_COND latest prompts plus the last 6 frames (older prompts as ordinary frames)."""
    bank = MemoryBank(max_conditioning=MAX_COND, num_maskmem=NUM_MASKMEM, max_obj_ptrs=MAX_PTRS)
    for t in range(200):
        bank.add(entry(t), conditioning=t % 5 == 0)
        stats = bank.stats()
        assert stats.conditioning_frames <= MAX_COND + 1
        assert stats.spatial_frames <= NUM_MASKMEM
        assert stats.object_pointers - stats.conditioning_frames <= MAX_PTRS
    selection = bank.select(200)
    # The 4 latest prompts (temporal slot 6), then frames 194..199 but 195, a prompt (slots 5..0).
    assert [int(f.flatten()[0]) for f in selection.features] == [180, 185, 190, 195, 194, 196, 197, 198, 199]
    assert selection.tpos_indices == [6, 6, 6, 6, 5, 3, 2, 1, 0]
    # Pointers: the prompts', then the ordinary frames 1..15 back, newest first.
    assert selection.ptr_distances == [20, 15, 10, 5, 1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14]
    assert [int(p[0]) for p in selection.obj_ptrs] == [200 - d for d in selection.ptr_distances]


def test_bank_prompt_on_the_newest_frame_still_sees_the_ones_before() -> None:
    bank = MemoryBank(max_conditioning=2, num_maskmem=NUM_MASKMEM, max_obj_ptrs=MAX_PTRS)
    for t in (0, 30, 60, 90):
        bank.add(entry(t), conditioning=True)
    # A second prompt on frame 90 attends to the 2 prompts before it, not to itself.
    assert [int(f.flatten()[0]) for f in bank.select(90).features] == [30, 60]
    assert [int(f.flatten()[0]) for f in bank.select(91).features] == [60, 90]
    assert bank.stats().conditioning_frames == 3


def rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


@pytest.fixture
def one_thread():
    """Tiny tensors: intra-op threads only add synchronisation (8x slower on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


CPU_BF16 = pytest.mark.skipif(not cpu_bf16_instructions(),
                              reason="this CPU has no native bf16 (avx512_bf16 / amx_bf16)")


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, pytest.param(torch.bfloat16, marks=CPU_BF16)],
                         ids=["float32", "bfloat16"])
def test_tracker_memory_is_flat_over_2000_frames(one_thread: None, dtype: torch.dtype) -> None:
    """Two objects, corrections every 100 frames (conditioning evictions), an object declared
    absent by an empty mask and brought back: memory_stats and process RSS stop growing
    after the first window. In bfloat16 with the feature cache on (keyed by frame), which
    stays within its budget of three frames."""
    torch.manual_seed(0)
    model = build_model("tiny", 32)
    budget = 3 * frame_feature_bytes(model, dtype) if dtype == torch.bfloat16 else 0
    tracker = StreamingTracker(model, dtype=dtype, feature_cache_bytes=budget)
    rng = np.random.default_rng(0)
    h, w = 24, 40
    mask = np.zeros((h, w), bool)
    mask[5:15, 10:30] = True
    peak_bytes: dict[str, int] = {}
    rss: dict[int, float] = {}
    for t in range(2000):
        tracker.track(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), key=t)
        assert tracker.feature_cache.nbytes() <= budget
        if t == 0:
            tracker.add_prompt(1, points=np.array([[20.0, 12.0]]), labels=np.array([1]))
        if t == 50:
            tracker.add_prompt(2, box=np.array([2.0, 2.0, 20.0, 20.0]))
        if t % 100 == 99:
            tracker.add_prompt(1, points=np.array([[float(t % w), 5.0]]), labels=np.array([t % 2]))
        if t % 250 == 249:
            tracker.add_prompt(2, mask=mask if t % 500 == 499 else np.zeros((h, w), bool))
        stats = tracker.memory_stats()
        for s in stats.values():
            assert s.conditioning_frames <= 5 and s.spatial_frames <= NUM_MASKMEM
            assert s.object_pointers <= MAX_PTRS + s.conditioning_frames
        phase = "first" if t < 1000 else "second"
        total = sum(s.bytes for s in stats.values())
        peak_bytes[phase] = max(peak_bytes.get(phase, 0), total)
        if t in (500, 1999):
            rss[t] = rss_mb()
    assert peak_bytes["second"] <= peak_bytes["first"], peak_bytes
    assert rss[1999] - rss[500] < 16, f"RSS grew from {rss[500]:.1f} MB to {rss[1999]:.1f} MB"
