"""Evaluate a checkpoint as the node runs it: `StreamingTracker`, prompt on frame 0, track the rest.

Held-out generated clips (seeds disjoint from training, longer than the training clips)
give J and F per object (DAVIS-style, the prompted frame excluded) and how often the
predicted visibility matches the truth, for the checkpoint and for random weights of the
same architecture. The real `blocks` test video (never used in training) gets a hand-drawn
box prompt on frame 0; its later frames have only hand-drawn boxes, so it is scored by the
IoU of the predicted mask's bounding box with them, plus an overlay figure.

    python -m sam2_ros.train.evaluate --checkpoint weights/sam2_nano.pt --out weights/sam2_nano_eval \
        --loss-csv out/stage1/loss.csv out/train/loss.csv
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sam2_ros.engine.checkpoint import load_checkpoint, trained_image_size
from sam2_ros.engine.model import SAM2Model, build_model
from sam2_ros.engine.tracker import StreamingTracker
from sam2_ros.train.backgrounds import load_backgrounds
from sam2_ros.train.metrics import JFScores, evaluate_clip, pool, region_similarity
from sam2_ros.train.prompts import PromptKind, initial_prompt, mask_to_box
from sam2_ros.train.train import BACKGROUNDS, REPO, plot_curve
from sam2_ros.train.video_gen import Clip, Difficulty, generate_clip

# Held-out clips come from np.random.default_rng([HELDOUT_ENTROPY, i]); training draws one
# stream from default_rng(seed) with a small seed, a different seed sequence.
HELDOUT_ENTROPY = 1_000_003
# Hiding clips: a larger layer passes wholly over one object (then, mostly, frees it again).
HIDING_ENTROPY = 1_000_033
HIDING = Difficulty(hide_prob=1.0, leave_prob=0.0)
RANDOM_WEIGHTS_SEED = 0
REAL_VIDEO = REPO / "test" / "data" / "blocks"
# Drawn by hand on frame 0 of the 480x270 blocks video (x0, y0, x1, y1). The blocks do not
# move; the same boxes were checked by eye to still fit frames 6 and 11.
REAL_BOXES = {1: ("red U block", (286.0, 75.0, 326.0, 116.0)), 2: ("yellow W block", (201.0, 171.0, 236.0, 206.0))}
REAL_LABELLED_FRAMES = (6, 11)
_COLOURS = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200]], dtype=np.float32)


@dataclass(frozen=True)
class TrackedClip:
    masks: np.ndarray  # (T, K, H, W) bool; frame 0 holds the prompt's output
    visible: np.ndarray  # (T, K) bool


def heldout_clip(index: int, *, num_frames: int, image_size: int,
                 backgrounds: Sequence[np.ndarray] | None) -> Clip:
    """Held-out clip `index`; the same for every call."""
    rng = np.random.default_rng([HELDOUT_ENTROPY, index])
    return generate_clip(rng, num_frames=num_frames, size=(image_size, image_size), backgrounds=backgrounds)


def hiding_clip(index: int, *, num_frames: int, image_size: int,
                backgrounds: Sequence[np.ndarray] | None) -> Clip:
    """Held-out hiding clip `index` (HIDING difficulty, 1-2 objects); the same for every call."""
    rng = np.random.default_rng([HIDING_ENTROPY, index])
    return generate_clip(rng, num_frames=num_frames, size=(image_size, image_size), num_objects=(1, 2),
                         backgrounds=backgrounds, difficulty=HIDING)


def track_clip(tracker: StreamingTracker, clip: Clip, kind: PromptKind, rng: np.random.Generator) -> TrackedClip:
    """Prompt every object on frame 0 with a prompt of `kind` drawn from its mask, then track."""
    tracker.reset()
    num_frames, k = clip.masks.shape[:2]
    masks = np.zeros(clip.masks.shape, dtype=bool)
    visible = np.zeros((num_frames, k), dtype=bool)
    tracker.track(clip.frames[0])
    for i, obj_id in enumerate(clip.obj_ids):
        prompt = initial_prompt(rng, kind, clip.masks[0, i])
        if prompt.mask is not None:
            result = tracker.add_prompt(int(obj_id), mask=prompt.mask.astype(bool))
        elif prompt.box is not None:
            result = tracker.add_prompt(int(obj_id), box=prompt.box)
        else:
            result = tracker.add_prompt(int(obj_id), points=prompt.points, labels=prompt.labels)
        masks[0, i], visible[0, i] = result.mask, result.visible
    for t in range(1, num_frames):
        results = tracker.track(clip.frames[t])
        for i, obj_id in enumerate(clip.obj_ids):
            masks[t, i], visible[t, i] = results[int(obj_id)].mask, results[int(obj_id)].visible
    return TrackedClip(masks=masks, visible=visible)


def _summary(scores: JFScores, union_scores: JFScores, visibility: list[np.ndarray],
             gt_visible: list[np.ndarray]) -> dict[str, float]:
    pred, gt = np.concatenate(visibility), np.concatenate(gt_visible)
    absent = ~gt
    return {
        "J": round(scores.j, 4),
        # Each object's prediction against the union of all tracked objects: near J (or above),
        # the model marks every object whichever was prompted, rather than the prompted one.
        "J_vs_all_objects": round(union_scores.j, 4),
        "F": round(scores.f, 4),
        "J&F": round(scores.jf, 4),
        "objects": int(scores.j_per_object.size),
        "visibility_accuracy": round(float((pred == gt).mean()), 4),
        "absent_frames": int(absent.sum()),
        "absent_flagged": round(float((~pred[absent]).mean()), 4) if absent.any() else None,
    }


def evaluate_synthetic(model: SAM2Model, *, num_clips: int, num_frames: int, kinds: Sequence[PromptKind],
                       backgrounds: Sequence[np.ndarray] | None) -> dict[str, dict[str, float]]:
    """J, F and visibility per prompt kind over the held-out clips (frames after the prompt)."""
    tracker = StreamingTracker(model)
    results = {}
    for kind in kinds:
        rng = np.random.default_rng([HELDOUT_ENTROPY, num_clips, 7])  # prompt draws, same for every model
        scores, union_scores, visibility, gt_visible = [], [], [], []
        for index in range(num_clips):
            clip = heldout_clip(index, num_frames=num_frames, image_size=model.image_size, backgrounds=backgrounds)
            tracked = track_clip(tracker, clip, kind, rng)
            scores.append(evaluate_clip(tracked.masks[1:], clip.masks[1:]))
            union = np.broadcast_to(clip.masks[1:].any(axis=1, keepdims=True), clip.masks[1:].shape)
            union_scores.append(evaluate_clip(tracked.masks[1:], union))
            visibility.append(tracked.visible[1:].ravel())
            gt_visible.append(clip.visible[1:].ravel())
        results[kind.value] = _summary(pool(scores), pool(union_scores), visibility, gt_visible)
    return results


def held_still(clip: Clip) -> TrackedClip:
    """The baseline that does not track: every object's true frame-0 mask on every frame, always in view."""
    return TrackedClip(masks=np.broadcast_to(clip.masks[:1], clip.masks.shape),
                       visible=np.ones_like(clip.visible))


@dataclass
class HidingTally:
    """Per-frame and per-object outcomes around whole absences, pooled over clips."""

    hidden_flagged: list[bool] = field(default_factory=list)  # per absent frame: flagged visible=False
    # per frame before an object's first absence (after the prompt): visible=True
    visible_kept: list[bool] = field(default_factory=list)
    # per object that comes back: mean J on its frames after the absence with at least half of
    # its frame-0 area in view
    j_after: list[float] = field(default_factory=list)

    def add(self, tracked: TrackedClip, clip: Clip) -> None:
        for k in range(clip.masks.shape[1]):
            truth = clip.visible[:, k]
            if truth.all():
                continue  # never absent: nothing to score here
            first = int(np.argmin(truth))
            self.hidden_flagged += (~tracked.visible[~truth, k]).tolist()
            self.visible_kept += tracked.visible[1:first, k].tolist()
            half = 0.5 * clip.masks[0, k].sum()
            back = [t for t in range(first, len(truth)) if clip.masks[t, k].sum() >= half]
            if back:
                self.j_after.append(float(np.mean([region_similarity(tracked.masks[t, k], clip.masks[t, k])
                                                   for t in back])))

    def summary(self) -> dict[str, float | int | None]:
        mean = lambda xs: round(float(np.mean(xs)), 4) if xs else None  # noqa: E731
        return {"hidden_frames": len(self.hidden_flagged), "hidden_flagged": mean(self.hidden_flagged),
                "visible_kept": mean(self.visible_kept), "objects_back": len(self.j_after),
                "J_after": mean(self.j_after)}


def evaluate_hiding(model: SAM2Model, *, num_clips: int, num_frames: int, kinds: Sequence[PromptKind],
                    backgrounds: Sequence[np.ndarray] | None) -> dict[str, dict[str, float | int | None]]:
    """On the hiding clips, per prompt kind: how many wholly hidden frames are flagged, how many
    frames before are kept visible, and J once the object is back (see HidingTally)."""
    tracker = StreamingTracker(model)
    results = {}
    for kind in kinds:
        rng = np.random.default_rng([HIDING_ENTROPY, num_clips, 7])
        tally = HidingTally()
        for index in range(num_clips):
            clip = hiding_clip(index, num_frames=num_frames, image_size=model.image_size, backgrounds=backgrounds)
            tally.add(track_clip(tracker, clip, kind, rng), clip)
        results[kind.value] = tally.summary()
    return results


def _overlay(frame: np.ndarray, masks: Sequence[np.ndarray]) -> np.ndarray:
    out = frame.astype(np.float32)
    for i, mask in enumerate(masks):
        out[mask] = 0.45 * out[mask] + 0.55 * _COLOURS[i % len(_COLOURS)]
    return out.astype(np.uint8)


def synthetic_figure(models: dict[str, SAM2Model], clip: Clip, path: Path, *, every: int = 2) -> None:
    """Rows: ground truth, then each model's tracking (box prompt on frame 0); every `every`-th frame."""
    rows = [[_overlay(f, m) for f, m in zip(clip.frames[::every], clip.masks[::every])]]
    for model in models.values():
        tracked = track_clip(StreamingTracker(model), clip, PromptKind.BOX, np.random.default_rng(0))
        rows.append([_overlay(f, m) for f, m in zip(clip.frames[::every], tracked.masks[::every])])
    Image.fromarray(np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)).save(path, quality=85)


def _box_iou(a: np.ndarray, b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = ix * iy
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return float(inter / (area(a) + area(b) - inter))


def evaluate_real(model: SAM2Model, figure: Path | None) -> dict[str, object]:
    """Box prompts on frame 0 of the blocks video; box IoU on the hand-labelled frames."""
    frames = [np.array(Image.open(p).convert("RGB")) for p in sorted(REAL_VIDEO.glob("*.jpg"))]
    tracker = StreamingTracker(model)
    tracker.track(frames[0])
    per_frame = [{obj_id: tracker.add_prompt(obj_id, box=np.array(box)) for obj_id, (_, box) in REAL_BOXES.items()}]
    per_frame += [tracker.track(frame) for frame in frames[1:]]
    objects = {}
    for obj_id, (name, box) in REAL_BOXES.items():
        ious = {}
        for t in REAL_LABELLED_FRAMES:
            mask = per_frame[t][obj_id].mask
            ious[t] = _box_iou(mask_to_box(mask), box) if mask.any() else 0.0
        objects[name] = {
            "box_iou": {str(t): round(v, 4) for t, v in ious.items()},
            "visible_frames": int(sum(r[obj_id].visible for r in per_frame)),
            "mask_area_px": [int(r[obj_id].mask.sum()) for r in per_frame],
        }
    if figure is not None:
        shown = range(0, len(frames), 3)
        tiles = [_overlay(frames[t], [per_frame[t][i].mask for i in REAL_BOXES]) for t in shown]
        Image.fromarray(np.concatenate(tiles, axis=1)).save(figure, quality=85)
    return {"video": str(REAL_VIDEO.relative_to(REPO)), "frames": len(frames), "objects": objects}


def random_model(size: str, image_size: int) -> SAM2Model:
    torch.manual_seed(RANDOM_WEIGHTS_SEED)
    return build_model(size, image_size=image_size)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=REPO / "weights" / "sam2_nano.pt")
    parser.add_argument("--size", default="nano")
    parser.add_argument("--image-size", type=int, help="default: the size in the checkpoint's .yaml, else 256")
    parser.add_argument("--out", type=Path, default=REPO / "weights" / "sam2_nano_eval")
    parser.add_argument("--clips", type=int, default=30)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--hiding-clips", type=int, default=20)
    parser.add_argument("--hiding-frames", type=int, default=14)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--loss-csv", type=Path, nargs="*", default=[],
                        help="training logs (loss.csv) of the checkpoint's stages, in order: plotted to OUT/loss.png")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.image_size is None:
        args.image_size = trained_image_size(args.checkpoint)
    trained = build_model(args.size, image_size=args.image_size)
    load_checkpoint(trained, args.checkpoint)
    models = {"trained": trained, "random": random_model(args.size, args.image_size)}
    backgrounds = load_backgrounds(BACKGROUNDS) if BACKGROUNDS.is_dir() else None
    kinds = (PromptKind.MASK, PromptKind.BOX, PromptKind.CLICK)
    results: dict[str, object] = {
        "heldout": {"clips": args.clips, "frames": args.frames, "entropy": HELDOUT_ENTROPY,
                    "image_size": args.image_size, "scored_frames": "1..T-1 (frame 0 is prompted)"},
        "hiding": {"clips": args.hiding_clips, "frames": args.hiding_frames, "entropy": HIDING_ENTROPY},
    }
    for name, model in models.items():
        results[name] = {
            "synthetic": evaluate_synthetic(model, num_clips=args.clips, num_frames=args.frames, kinds=kinds,
                                            backgrounds=backgrounds),
            "hiding": evaluate_hiding(model, num_clips=args.hiding_clips, num_frames=args.hiding_frames, kinds=kinds,
                                      backgrounds=backgrounds),
            "real": evaluate_real(model, args.out / f"blocks_{name}.jpg"),
        }
        print(name, json.dumps(results[name]["synthetic"]), json.dumps(results[name]["hiding"]), flush=True)
    example = heldout_clip(0, num_frames=args.frames, image_size=args.image_size, backgrounds=backgrounds)
    synthetic_figure(models, example, args.out / "heldout_clip0.jpg")
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    if args.loss_csv:
        plot_curve(args.loss_csv, args.out / "loss.png")
    print(f"wrote {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
