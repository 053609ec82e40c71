"""StreamingTracker API: results, object lifecycle, and bad input rejected with the state untouched."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sam2_ros.engine import ObjectResult, StreamingTracker, build_model

IMAGE_SIZE = 64
H, W = 48, 80


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("tiny", IMAGE_SIZE)


def frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(n)]


def started(model: torch.nn.Module) -> StreamingTracker:
    """A tracker two frames in, with object 1 clicked on frame 0."""
    tracker = StreamingTracker(model)
    first, second = frames(2)
    tracker.track(first)
    tracker.add_prompt(1, points=np.array([[20.0, 10.0]]), labels=np.array([1]))
    tracker.track(second)
    return tracker


def test_results_have_the_documented_types(model: torch.nn.Module) -> None:
    tracker = started(model)
    prompted = tracker.add_prompt(2, box=np.array([5.0, 5.0, 40.0, 30.0]))
    results = tracker.track(frames(3)[2])
    assert set(results) == {1, 2} and tracker.object_ids == [1, 2]
    for result in [prompted, *results.values()]:
        assert isinstance(result, ObjectResult)
        assert result.mask.shape == (H, W) and result.mask.dtype == np.bool_
        assert result.low_res_logits.shape == (IMAGE_SIZE // 4, IMAGE_SIZE // 4)
        assert result.low_res_logits.dtype == np.float32
        assert isinstance(result.score, float) and isinstance(result.object_score_logit, float)
        assert result.visible == (result.object_score_logit > 0)
    assert tracker.frame_index == 2


def test_no_objects_still_tracks_frames(model: torch.nn.Module) -> None:
    tracker = StreamingTracker(model)
    assert tracker.track(frames(1)[0]) == {} and tracker.frame_index == 0


def test_mask_prompt_is_the_output(model: torch.nn.Module) -> None:
    tracker = started(model)
    mask = np.zeros((H, W), bool)
    mask[10:30, 20:60] = True
    result = tracker.add_prompt(3, mask=mask)
    assert result.visible and result.score == 1.0
    assert (result.mask == mask).mean() > 0.95  # resized to the model and back


def test_objects_are_independent(model: torch.nn.Module) -> None:
    """Adding object 2 mid-stream (batched with object 1 later) leaves object 1's results alone."""
    stream = frames(8)
    alone, both = started(model), started(model)
    both.add_prompt(2, points=np.array([[60.0, 30.0]]), labels=np.array([1]))
    for frame in stream:
        a, b = alone.track(frame), both.track(frame)
        assert set(b) == {1, 2}
        assert np.abs(a[1].low_res_logits - b[1].low_res_logits).max() <= 1e-5
        assert abs(a[1].object_score_logit - b[1].object_score_logit) <= 1e-5


def test_clear_old_false_keeps_the_frames_clicks(model: torch.nn.Module) -> None:
    fresh, kept = started(model), started(model)
    click = dict(points=np.array([[60.0, 30.0]]), labels=np.array([0]))
    fresh.add_prompt(1, points=np.array([[10.0, 40.0]]), labels=np.array([1]))
    kept.add_prompt(1, points=np.array([[10.0, 40.0]]), labels=np.array([1]))
    cleared = fresh.add_prompt(1, **click)
    added = kept.add_prompt(1, **click, clear_old=False)
    assert np.abs(cleared.low_res_logits - added.low_res_logits).max() > 1e-3


def test_remove_and_reset(model: torch.nn.Module) -> None:
    tracker = started(model)
    tracker.add_prompt(2, box=np.array([5.0, 5.0, 40.0, 30.0]))
    tracker.remove_object(1)
    assert tracker.object_ids == [2] and set(tracker.track(frames(1)[0])) == {2}
    assert set(tracker.memory_stats()) == {2}
    with pytest.raises(KeyError, match="unknown object id 1.*tracked ids: \\[2\\]"):
        tracker.remove_object(1)
    tracker.reset()
    assert tracker.object_ids == [] and tracker.frame_index == -1 and tracker.memory_stats() == {}
    with pytest.raises(ValueError, match="call track"):
        tracker.add_prompt(1, points=np.array([[1.0, 1.0]]), labels=np.array([1]))


def test_memory_stats_count_frames_and_bytes(model: torch.nn.Module) -> None:
    tracker = started(model)
    stats = tracker.memory_stats()[1]
    assert stats.conditioning_frames == 1 and stats.spatial_frames == 1 and stats.object_pointers == 2
    cm, side = model.cfg.mem_dim, IMAGE_SIZE // 16
    assert stats.bytes == 2 * (cm * side * side + model.cfg.hidden_dim) * 4  # float32


def test_prompt_before_any_frame(model: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match="call track\\(frame\\) before add_prompt"):
        StreamingTracker(model).add_prompt(1, points=np.array([[1.0, 1.0]]), labels=np.array([1]))


def test_bad_construction(model: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match="max_conditioning_frames must be >= 2, got 1"):
        StreamingTracker(model, max_conditioning_frames=1)
    with pytest.raises(ValueError, match="float16 on CPU is refused"):  # bfloat16: test_cpu_bf16
        StreamingTracker(model, dtype=torch.float16)
    with pytest.raises(ValueError, match="dtype must be"):
        StreamingTracker(model, dtype=torch.float64)


BAD_FRAMES = [
    (np.zeros((H, W, 3), np.float32), "uint8 RGB, got dtype float32"),
    (np.zeros((H, W), np.uint8), "\\(H, W, 3\\) RGB, got shape \\(48, 80\\)"),
    (np.zeros((H, W, 4), np.uint8), "\\(H, W, 3\\) RGB, got shape \\(48, 80, 4\\)"),
    (np.zeros((0, W, 3), np.uint8), "must not be empty"),
    ([[0, 0, 0]], "numpy array .* got list"),
]

POINT = np.array([[10.0, 10.0]])
BAD_PROMPTS = [
    (dict(points=np.array([[np.nan, 10.0]]), labels=np.array([1])), ValueError, "finite"),
    (dict(points=np.array([[W + 1.0, 10.0]]), labels=np.array([1])), ValueError, "lie in the frame \\(0 <= x <= 80"),
    (dict(points=np.array([[10.0, -1.0]]), labels=np.array([1])), ValueError, "lie in the frame"),
    (dict(points=POINT, labels=np.array([1, 0])), ValueError, "labels must be \\(1,\\) .* got shape \\(2,\\)"),
    (dict(points=POINT, labels=np.array([2])), ValueError, "1 \\(positive\\) or 0 \\(negative\\), got \\[2\\]"),
    (dict(points=np.array([10.0, 10.0]), labels=np.array([1])), ValueError, "\\(N, 2\\) .* got shape \\(2,\\)"),
    (dict(points=POINT), ValueError, "points and labels must be given together"),
    (dict(), ValueError, "points with labels, a box, or a mask"),
    (dict(box=np.array([1.0, 2.0, 3.0])), ValueError, "box must be \\(4,\\)"),
    (dict(box=np.array([30.0, 2.0, 3.0, 20.0])), ValueError, "x0 <= x1"),
    (dict(box=np.array([1.0, 2.0, 3.0, 4.0]), clear_old=False), ValueError, "box must come first"),
    (dict(mask=np.ones((H, W + 1), bool)), ValueError, "frame's shape \\(48, 80\\), got \\(48, 81\\)"),
    (dict(mask=np.ones((H, W), np.uint8)), ValueError, "bool numpy array, got uint8"),
    (dict(mask=np.ones((H, W), bool), points=POINT, labels=np.array([1])), ValueError, "not both"),
]


def snapshot(tracker: StreamingTracker) -> tuple:
    return tracker.object_ids, tracker.frame_index, tracker.memory_stats()


@pytest.mark.parametrize("frame, message", BAD_FRAMES, ids=lambda v: getattr(v, "shape", None) or str(v)[:20])
def test_bad_frame(model: torch.nn.Module, frame: object, message: str) -> None:
    tracker = started(model)
    before = snapshot(tracker)
    with pytest.raises(ValueError, match=message):
        tracker.track(frame)
    assert snapshot(tracker) == before


@pytest.mark.parametrize("obj_id", [1, 7])
@pytest.mark.parametrize("kwargs, error, message", BAD_PROMPTS, ids=[m for _, _, m in BAD_PROMPTS])
def test_bad_prompt_leaves_state_unchanged(
    model: torch.nn.Module, obj_id: int, kwargs: dict, error: type, message: str
) -> None:
    """A rejected prompt, for a known (1) or a new (7) object, changes nothing: the stream
    continues exactly as in a twin tracker that never saw it."""
    tracker, twin = started(model), started(model)
    before = snapshot(tracker)
    with pytest.raises(error, match=message):
        tracker.add_prompt(obj_id, **kwargs)
    assert snapshot(tracker) == before
    follow_up = dict(points=np.array([[30.0, 20.0]]), labels=np.array([1]), clear_old=False)
    assert np.array_equal(tracker.add_prompt(1, **follow_up).low_res_logits,
                          twin.add_prompt(1, **follow_up).low_res_logits)
    frame = frames(1, seed=5)[0]
    ours, theirs = tracker.track(frame), twin.track(frame)
    assert np.array_equal(ours[1].low_res_logits, theirs[1].low_res_logits)


def test_bad_obj_id(model: torch.nn.Module) -> None:
    tracker = started(model)
    with pytest.raises(ValueError, match="obj_id must be an int, got str"):
        tracker.add_prompt("a", points=POINT, labels=np.array([1]))
    assert tracker.object_ids == [1]
