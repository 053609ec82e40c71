"""StreamingTracker equals Meta's SAM 2 driven causally (test/causal_reference.py).

Both models get the same seeded random weights through our `load_checkpoint` of a file in
the official format, and the same preprocessed frames. Every object on every frame is
compared: low-res logits, predicted IoU and object score within 2e-4 (faithful float32
implementations differ by ~1e-6; a real slip such as 4 object pointers instead of 16 moves
the logits by ~1e-3), and frame-resolution masks with IoU >= 0.999.

With random weights the object-score head cannot see whether an object is in view, so
visibility is scripted: its output bias is raised (every object visible, masks are real
predictions) and, where an object leaves the view, lowered on both models alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from causal_reference import CausalReference, RefResult
from reference_sam2 import build_reference, save_official
from sam2_ros.engine import ObjectResult, StreamingTracker, build_model, load_checkpoint
from sam2_ros.engine.preprocess import preprocess_frame

ATOL = 2e-4
MIN_MASK_IOU = 0.999
VISIBLE, ABSENT = 1.0, -1.0  # object-score head bias; its raw output stays within +-0.3 here
DATA = Path(__file__).parent / "data" / "bedroom"


def bedroom_frames() -> list[np.ndarray]:
    frames = [np.array(Image.open(p).convert("RGB")) for p in sorted(DATA.glob("*.jpg"))]
    assert len(frames) >= 10, f"expected 10 frames in {DATA}, found {len(frames)}"
    return frames


def square_frames(xs: list[int | None], hw: tuple[int, int] = (144, 256)) -> list[np.ndarray]:
    """Synthetic frames: a red square at column x on a textured background (None: no square)."""
    rng = np.random.default_rng(0)
    background = rng.integers(0, 80, (*hw, 3), dtype=np.uint8)
    frames = []
    for x in xs:
        frame = background.copy()
        if x is not None:
            frame[40:90, max(x, 0) : max(x + 50, 0)] = (220, 40, 30)
        frames.append(frame)
    return frames


@dataclass
class Pair:
    ours: torch.nn.Module
    ref: torch.nn.Module
    image_size: int

    def set_visibility(self, bias: float) -> None:
        """Object-score head output bias, on both models."""
        with torch.no_grad():
            for model in (self.ours, self.ref):
                model.sam_mask_decoder.pred_obj_score_head.layers[2].bias.fill_(bias)


def make_pair(tmp_path: Path, size: str, image_size: int, version: str = "2.1") -> Pair:
    ref = build_reference(size, image_size, version)
    with torch.no_grad():
        ref.sam_mask_decoder.pred_obj_score_head.layers[2].bias.fill_(VISIBLE)
    ours = build_model(size, image_size, version)
    load_checkpoint(ours, save_official(ref, tmp_path / f"sam2_{version}_{size}_{image_size}.pt"))
    return Pair(ours=ours, ref=ref, image_size=image_size)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    return make_pair(tmp_path_factory.mktemp("ckpt"), "tiny", 128)


Script = dict[int, list[tuple]]  # frame -> [("prompt", obj_id, kwargs) | ("visibility", bias)]


def run_both(pair: Pair, frames: list[np.ndarray], script: Script, *, max_conditioning_frames: int = 4):
    """Feed the stream to both; returns [(tag, ours, reference)] for every output."""
    tracker = StreamingTracker(pair.ours, max_conditioning_frames=max_conditioning_frames)
    reference = CausalReference(pair.ref, max_conditioning_frames=max_conditioning_frames)
    compared: list[tuple[str, ObjectResult, RefResult]] = []
    try:
        for t, frame in enumerate(frames):
            for action in script.get(t, []):
                if action[0] == "visibility":
                    pair.set_visibility(action[1])
            ours = tracker.track(frame)
            ref = reference.track(preprocess_frame(frame, pair.image_size), frame.shape[:2])
            assert ours.keys() == ref.keys()
            compared += [(f"frame {t} object {k}", ours[k], ref[k]) for k in ours]
            for action in script.get(t, []):
                if action[0] == "prompt":
                    _, obj_id, kwargs = action
                    compared.append((f"frame {t} prompt {obj_id} {sorted(kwargs)}",
                                     tracker.add_prompt(obj_id, **kwargs), reference.add_prompt(obj_id, **kwargs)))
    finally:
        pair.set_visibility(VISIBLE)
    return compared


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def assert_parity(compared: list[tuple[str, ObjectResult, RefResult]]) -> None:
    worst = {"logits": (0.0, ""), "score": (0.0, ""), "object_score": (0.0, ""), "mask_iou": (1.0, "")}
    for tag, ours, ref in compared:
        assert ours.low_res_logits.shape == ref.low_res_logits.shape, tag
        diffs = {
            "logits": float(np.abs(ours.low_res_logits - ref.low_res_logits).max()),
            "score": abs(ours.score - ref.score),
            "object_score": abs(ours.object_score_logit - ref.object_score_logit),
        }
        for key, value in diffs.items():
            if value > worst[key][0]:
                worst[key] = (value, tag)
        ref_logits = torch.from_numpy(ref.low_res_logits)[None, None]
        ref_mask = (F.interpolate(ref_logits, size=ours.mask.shape, mode="bilinear", align_corners=False) > 0)[0, 0]
        iou = mask_iou(ours.mask, ref_mask.numpy())
        if iou < worst["mask_iou"][0]:
            worst["mask_iou"] = (iou, tag)
        assert ours.visible == (ours.object_score_logit > 0), tag
    for key in ("logits", "score", "object_score"):
        assert worst[key][0] <= ATOL, f"max |delta {key}| = {worst[key][0]:.2e} > {ATOL} at {worst[key][1]}"
    assert worst["mask_iou"][0] >= MIN_MASK_IOU, f"mask IoU {worst['mask_iou'][0]:.5f} at {worst['mask_iou'][1]}"


def assert_covers(compared, *, visible: bool = True, absent: bool = False) -> None:
    """The scenario really exercised visible (and absent) objects with non-trivial masks."""
    states = {r.visible for _, r, _ in compared}
    if visible:
        assert True in states, "no visible object in the scenario"
        assert any(r.visible and r.mask.any() for _, r, _ in compared), "every visible mask is empty"
    if absent:
        assert False in states, "no absent object in the scenario"


def click(x: float, y: float, label: int = 1, **kw) -> dict:
    return dict(points=np.array([[x, y]]), labels=np.array([label]), **kw)


# Every prompt kind on real photographs: a click then tracking, a box and a mask for objects
# added mid-stream, a negative-click correction, clicks added with clear_old=False, and more
# prompted frames than max_conditioning_frames (the oldest become ordinary memories).
PROMPTS: Script = {
    0: [("prompt", 1, click(120, 70))],
    2: [("prompt", 2, dict(box=np.array([20.0, 30.0, 120.0, 130.0])))],
    3: [("prompt", 3, dict(mask=np.pad(np.ones((60, 80), bool), ((40, 44), (150, 26)))))],
    5: [("prompt", 1, click(60, 40, label=0)), ("prompt", 1, click(200, 100, clear_old=False))],
    6: [("prompt", 2, click(70, 80, label=0))],
    7: [("prompt", 2, click(90, 60))],
    8: [("prompt", 2, dict(points=np.array([[30.0, 40.0], [100.0, 120.0]]), labels=np.array([1, 1])))],
    9: [("prompt", 2, click(50, 50, label=0))],
}


def test_click_then_tracking(tiny: Pair) -> None:
    compared = run_both(tiny, bedroom_frames(), {0: [("prompt", 1, click(120, 70))]})
    assert len(compared) == 10  # the click, then 9 tracked frames
    assert_covers(compared)
    assert_parity(compared)


def test_all_prompt_kinds_real_frames(tiny: Pair) -> None:
    frames = bedroom_frames()
    compared = run_both(tiny, frames + frames[::-1][1:4], PROMPTS)
    assert_covers(compared)
    assert_parity(compared)


def test_two_conditioning_frames(tiny: Pair) -> None:
    compared = run_both(tiny, bedroom_frames(), PROMPTS, max_conditioning_frames=2)
    assert_parity(compared)


def test_object_leaving_view(tiny: Pair) -> None:
    """A square slides out of view (object absent: NO_OBJ_SCORE masks, no-object pointer and
    memory embedding) and comes back; a second object stays in view."""
    xs = [40, 80, 120, 160, 200, 240, None, None, None, 200, 160, 120]
    script: Script = {
        0: [("prompt", 1, click(65, 65)), ("prompt", 2, dict(box=np.array([0.0, 100.0, 60.0, 140.0])))],
        6: [("visibility", ABSENT)],
        9: [("visibility", VISIBLE)],
    }
    compared = run_both(tiny, square_frames(xs), script)
    assert_covers(compared, absent=True)
    absent = [r for _, r, _ in compared if not r.visible]
    assert all(np.all(r.low_res_logits == -1024.0) and not r.mask.any() for r in absent)
    assert_parity(compared)


def test_empty_mask_prompt(tiny: Pair) -> None:
    """A mask prompt with no pixel set declares the object absent on that frame."""
    frames = square_frames([40, 60, 80, 100])
    compared = run_both(tiny, frames, {1: [("prompt", 1, dict(mask=np.zeros((144, 256), bool)))]})
    assert not compared[0][1].visible
    assert_parity(compared)


def test_sam2_0_checkpoint(tmp_path: Path) -> None:
    pair = make_pair(tmp_path, "tiny", 128, version="2.0")
    compared = run_both(pair, bedroom_frames()[:6], {0: [("prompt", 1, click(120, 70))], 3: PROMPTS[2]})
    assert_parity(compared)


@pytest.mark.parametrize(
    "size", ["small", pytest.param("base_plus", marks=pytest.mark.slow), pytest.param("large", marks=pytest.mark.slow)]
)
def test_sizes(tmp_path: Path, size: str) -> None:
    pair = make_pair(tmp_path, size, 128)
    script = {0: [("prompt", 1, click(120, 70))], 2: PROMPTS[2], 3: PROMPTS[3], 5: PROMPTS[5]}
    compared = run_both(pair, bedroom_frames()[:8], script)
    assert_covers(compared)
    assert_parity(compared)


def test_tiny_at_256(tmp_path: Path) -> None:
    pair = make_pair(tmp_path, "tiny", 256)
    compared = run_both(pair, bedroom_frames()[:6], {0: [("prompt", 1, click(120, 70))], 2: PROMPTS[2]})
    assert_covers(compared)
    assert_parity(compared)


def test_a_real_slip_is_caught(tiny: Pair) -> None:
    """The tolerance is tight enough to see the reference keep 4 object pointers instead of 16."""
    frames = bedroom_frames()
    tiny.ref.max_obj_ptrs_in_encoder = 4
    try:
        compared = run_both(tiny, frames, {0: [("prompt", 1, click(120, 70))]})
    finally:
        tiny.ref.max_obj_ptrs_in_encoder = 16
    with pytest.raises(AssertionError, match="logits"):
        assert_parity(compared)


IMAGE_MODE_CASES = [  # (clicks or box corners in frame pixels, labels, multimask as SAM2ImagePredictor is asked)
    (np.array([[120.0, 70.0]]), np.array([1]), True),
    (np.array([[20.0, 30.0], [120.0, 130.0]]), np.array([2, 3]), False),
    (np.array([[120.0, 70.0], [60.0, 40.0]]), np.array([1, 0]), False),
]


def our_image_prediction(pair: Pair, frame: np.ndarray, coords: np.ndarray, labels: np.ndarray) -> ObjectResult:
    tracker = StreamingTracker(pair.ours)
    tracker.track(frame)
    if labels[0] == 2:
        return tracker.add_prompt(1, box=coords.reshape(4))
    return tracker.add_prompt(1, points=coords, labels=labels)


def assert_matches_image_prediction(ours: ObjectResult, masks, ious, low_res) -> None:
    best = int(np.argmax(ious))
    assert ours.visible
    assert np.abs(ours.low_res_logits - low_res[best]).max() <= ATOL
    assert abs(ours.score - float(ious[best])) <= ATOL
    assert mask_iou(ours.mask, masks[best] > 0) >= MIN_MASK_IOU


@torch.inference_mode()
def test_image_mode_matches_reference_heads(tiny: Pair) -> None:
    """One frame, no memory: equal to the reference's image-prediction path (what
    SAM2ImagePredictor.set_image + predict compute), replayed with its own modules."""
    ref, s = tiny.ref, tiny.image_size
    frame = bedroom_frames()[0]
    h, w = frame.shape[:2]
    _, feats, _, sizes = ref._prepare_backbone_features(ref.forward_image(preprocess_frame(frame, s)))
    feats[-1] = feats[-1] + ref.no_mem_embed
    feats = [f.permute(1, 2, 0).reshape(1, -1, *size) for f, size in zip(feats, sizes)]
    for coords, labels, multimask in IMAGE_MODE_CASES:
        points = torch.tensor(coords, dtype=torch.float32)[None] / torch.tensor([w, h]) * s
        sparse, dense = ref.sam_prompt_encoder(points=(points, torch.tensor(labels, dtype=torch.int32)[None]),
                                               boxes=None, masks=None)
        low_res, ious, _, _ = ref.sam_mask_decoder(
            image_embeddings=feats[-1], image_pe=ref.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=multimask, repeat_image=False, high_res_features=feats[:-1],
        )
        masks = F.interpolate(low_res, size=(h, w), mode="bilinear", align_corners=False)
        assert_matches_image_prediction(
            our_image_prediction(tiny, frame, coords, labels), masks[0].numpy(), ious[0].numpy(), low_res[0].numpy()
        )


def test_image_mode_matches_image_predictor(tiny: Pair) -> None:
    """The same against SAM2ImagePredictor itself (its transforms need torchvision)."""
    pytest.importorskip("torchvision", reason="SAM2ImagePredictor's transforms import torchvision, not installed")
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    s = tiny.image_size
    frame = bedroom_frames()[0]
    predictor = SAM2ImagePredictor(tiny.ref)
    predictor._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]  # hard-coded for 1024
    predictor.set_image(frame)
    for coords, labels, multimask in IMAGE_MODE_CASES:
        if labels[0] == 2:
            kwargs = dict(box=coords.reshape(4))
        else:
            kwargs = dict(point_coords=coords, point_labels=labels)
        masks, ious, low_res = predictor.predict(**kwargs, multimask_output=multimask, return_logits=True)
        assert_matches_image_prediction(our_image_prediction(tiny, frame, coords, labels), masks, ious, low_res)
