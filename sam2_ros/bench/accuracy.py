"""How far reduced precision moves the masks: every runner against Meta's float32 reference.

The runners of one `engine` setting (ours and the reference, each at float32 and the
reduced dtype) see the same frames and clicks; per frame and object the mask IoU and the
largest low-resolution logit difference against `reference:eager` at float32 are taken.
Random weights are given a visible object-score bias, or every mask would be the empty
"absent" mask and agree trivially.
"""
from __future__ import annotations

import numpy as np
import torch

from sam2_ros.bench.frames import object_clicks
from sam2_ros.bench.runners import POSITIVE, OursRunner, ReferenceRunner, Runner
from sam2_ros.engine.preprocess import preprocess_frame

BASELINE = "reference:eager"
VISIBLE_BIAS = 1.0  # object-score head output bias for random weights (test_tracker_parity's)


def make_visible(model: torch.nn.Module) -> None:
    """Random weights: bias the object-score head so objects are predicted present."""
    with torch.no_grad():
        model.sam_mask_decoder.pred_obj_score_head.layers[2].bias.fill_(VISIBLE_BIAS)


def _logits(runner: Runner, frame: np.ndarray, prompt_clicks: list[np.ndarray] | None) -> list[np.ndarray]:
    """Every object's (S/4, S/4) float32 logits on `frame`, prompting first when asked."""
    if isinstance(runner, OursRunner):
        results = runner.tracker.track(frame)
        if prompt_clicks is not None:
            results = {i: runner.tracker.add_prompt(i, points=c, labels=POSITIVE)
                       for i, c in enumerate(prompt_clicks, start=1)}
        return [r.low_res_logits for r in results.values()]
    assert isinstance(runner, ReferenceRunner)
    from sam2_ros.engine.precision import inference_context

    with inference_context(runner.device, runner.dtype):
        image = preprocess_frame(frame, runner.predictor.image_size, device=runner.device)
        results = runner.reference.track(image, frame.shape[:2])
        if prompt_clicks is not None:
            results = {i: runner.reference.add_prompt(i, points=c, labels=POSITIVE)
                       for i, c in enumerate(prompt_clicks, start=1)}
    return [r.low_res_logits for r in results.values()]


def compare_runners(runners: list[Runner], frames: list[np.ndarray], *, n_objects: int, n_frames: int) -> dict:
    """Mean and min mask IoU and logit errors of each runner against BASELINE."""
    names = [r.name for r in runners]
    if BASELINE not in names:
        raise ValueError(f"accuracy needs the float32 reference ({BASELINE}) among the runners, got {names}")
    clicks = object_clicks(n_objects, frames[0].shape[:2])
    outputs: dict[str, list[list[np.ndarray]]] = {}
    for runner in runners:
        runner.start()
        outputs[runner.name] = [
            _logits(runner, frames[t % len(frames)], clicks if t == 0 else None) for t in range(n_frames)
        ]
    base = outputs[BASELINE]
    report = {}
    for name, frames_out in outputs.items():
        if name == BASELINE:
            continue
        ious, max_errors, mean_errors = [], [], []
        for ours_t, base_t in zip(frames_out, base):
            for a, b in zip(ours_t, base_t):
                ma, mb = a > 0, b > 0
                union = np.logical_or(ma, mb).sum()
                ious.append(1.0 if union == 0 else float(np.logical_and(ma, mb).sum() / union))
                max_errors.append(float(np.abs(a - b).max()))
                mean_errors.append(float(np.abs(a - b).mean()))
        report[name] = {
            "mask_iou_mean": float(np.mean(ious)),
            "mask_iou_min": float(np.min(ious)),
            "logit_max_abs_error_max": float(np.max(max_errors)),
            "logit_mean_abs_error_mean": float(np.mean(mean_errors)),
            "masks_compared": len(ious),
        }
    empty = sum(int((b <= 0).all()) for t in base for b in t)
    return {"against": BASELINE, "frames": n_frames, "objects": n_objects,
            "baseline_empty_masks": empty, "runners": report}
