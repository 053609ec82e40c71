"""StreamingTracker.snapshot/restore: restoring and re-tracking repeats the stream bit for bit,
and snapshots share the tracker's memory, so keeping n of them costs O(n), not O(stream)."""
from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch

from sam2_ros.engine import ObjectResult, StreamingTracker, build_model

IMAGE_SIZE = 64
H, W = 48, 80
VISIBLE = 1.0  # object-score head bias: every object visible, so masks are real predictions


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: intra-op threads only add synchronisation on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("tiny", IMAGE_SIZE)
    with torch.no_grad():
        model.sam_mask_decoder.pred_obj_score_head.layers[2].bias.fill_(VISIBLE)
    return model


def frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(n)]


def started(model: torch.nn.Module, stream: list[np.ndarray]) -> StreamingTracker:
    """Objects 1 (click) and 2 (box, added later) on the first frames of `stream`."""
    tracker = StreamingTracker(model)
    tracker.track(stream[0])
    tracker.add_prompt(1, points=np.array([[20.0, 10.0]]), labels=np.array([1]))
    tracker.track(stream[1])
    tracker.add_prompt(2, box=np.array([40.0, 5.0, 75.0, 40.0]))
    return tracker


def assert_same(a: dict[int, ObjectResult], b: dict[int, ObjectResult]) -> None:
    assert set(a) == set(b)
    for obj_id in a:
        assert np.array_equal(a[obj_id].low_res_logits, b[obj_id].low_res_logits)
        assert np.array_equal(a[obj_id].mask, b[obj_id].mask)
        assert a[obj_id].score == b[obj_id].score
        assert a[obj_id].object_score_logit == b[obj_id].object_score_logit


def test_restore_then_retrack_is_bit_identical(model: torch.nn.Module) -> None:
    """Past the spatial window (num_maskmem 7), so the tracker evicts entries the snapshot
    still holds; twice, so restoring does not consume the snapshot."""
    stream = frames(16)
    tracker = started(model, stream)
    snapshot = tracker.snapshot()
    stats = tracker.memory_stats()
    assert snapshot.object_ids == [1, 2] and snapshot.frame_index == 1
    assert snapshot.memory_stats() == stats
    original = [tracker.track(frame) for frame in stream[2:]]
    assert any(r.mask.any() and not r.mask.all() for r in original[-1].values())  # non-trivial
    after = tracker.memory_stats()
    assert after != stats
    for _ in range(2):
        tracker.restore(snapshot)
        assert tracker.frame_index == 1 and tracker.memory_stats() == stats
        for expected, frame in zip(original, stream[2:]):
            assert_same(tracker.track(frame), expected)
        assert tracker.memory_stats() == after


def test_prompt_after_restore_equals_the_live_prompt(model: torch.nn.Module) -> None:
    """Restore the state before frame k, track k, prompt, re-track: the same as prompting k live."""
    stream = frames(10, seed=1)
    correction = dict(points=np.array([[60.0, 30.0]]), labels=np.array([0]))
    live = started(model, stream)
    for frame in stream[2:5]:
        live.track(frame)
    live_prompt = live.add_prompt(1, **correction)
    live_results = [live.track(frame) for frame in stream[5:]]

    tracker = started(model, stream)
    for frame in stream[2:4]:
        tracker.track(frame)
    before_k = tracker.snapshot()
    for frame in stream[4:]:
        tracker.track(frame)
    tracker.restore(before_k)
    with pytest.raises(ValueError, match="restored state without the frame's features: call track"):
        tracker.add_prompt(1, **correction)
    tracker.track(stream[4])
    prompted = tracker.add_prompt(1, **correction)
    assert np.array_equal(prompted.low_res_logits, live_prompt.low_res_logits)
    for expected, frame in zip(live_results, stream[5:]):
        assert_same(tracker.track(frame), expected)
    assert tracker.memory_stats() == live.memory_stats()


def test_restore_undoes_removals_and_resets(model: torch.nn.Module) -> None:
    stream = frames(4, seed=2)
    tracker = started(model, stream)
    snapshot = tracker.snapshot()
    tracker.remove_object(2)
    tracker.track(stream[2])
    tracker.reset()
    tracker.restore(snapshot)
    assert tracker.object_ids == [1, 2] and tracker.frame_index == 1
    assert_same(tracker.track(stream[2]), started(model, stream).track(stream[2]))


def test_snapshots_share_memory_and_stay_bounded(model: torch.nn.Module) -> None:
    """Keeping the last n snapshots adds at most n frames' memory per object, flat over the stream."""
    n = 4
    stream = frames(2 + 16 + n + 8, seed=3)  # past the pointer window (16) and n, then 8 more
    tracker = started(model, stream)
    kept: deque = deque(maxlen=n)
    alone, together = [], []
    for frame in stream[2:]:
        kept.append(tracker.snapshot())
        tracker.track(frame)
        alone.append(tracker.memory_bytes())
        together.append(tracker.memory_bytes(kept))
    cfg = model.cfg
    side = IMAGE_SIZE // 16
    per_frame = (cfg.mem_dim * side * side + cfg.hidden_dim) * 4  # one object's memory of one frame
    logits = 2 * (IMAGE_SIZE // 4) ** 2 * 4  # the two objects' logits of one frame, one storage
    steady = 2 + cfg.max_obj_ptrs_in_encoder + n  # frames after which nothing new is shared
    assert len(set(together[steady:])) == 1 and len(set(alone[steady:])) == 1  # flat
    extra = together[-1] - alone[-1]
    assert 0 < extra <= n * (2 * per_frame + logits)
