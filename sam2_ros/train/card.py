"""Write the model card of a trained checkpoint from its config (.yaml) and evaluation (results.json).

    python -m sam2_ros.train.card --weights weights/sam2_nano.pt --eval weights/sam2_nano_eval
"""
from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import yaml

KINDS = (("mask", "ground-truth mask"), ("box", "jittered box"), ("click", "one positive click"))


def _fmt(value: object) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _synthetic_table(results: dict) -> list[str]:
    lines = ["| frame-0 prompt | weights | J | F | J&F | J vs all objects | visibility accuracy | absent frames flagged |",
             "|---|---|---|---|---|---|---|---|"]
    for kind, label in KINDS:
        for name in ("trained", "random"):
            r = results[name]["synthetic"][kind]
            lines.append(f"| {label} | {name} | {_fmt(r['J'])} | {_fmt(r['F'])} | {_fmt(r['J&F'])} | {_fmt(r.get('J_vs_all_objects'))} | "
                         f"{_fmt(r['visibility_accuracy'])} | {_fmt(r['absent_flagged'])} ({r['absent_frames']}) |")
    return lines


def _real_table(results: dict) -> list[str]:
    lines = ["| object | weights | box IoU per hand-labelled frame | frames predicted visible |", "|---|---|---|---|"]
    for name in ("trained", "random"):
        real = results[name]["real"]
        for obj, r in real["objects"].items():
            ious = ", ".join(f"frame {t}: {v:.2f}" for t, v in r["box_iou"].items())
            lines.append(f"| {obj} | {name} | {ious} | {r['visible_frames']} / {real['frames']} |")
    return lines


def _status(results: dict) -> list[str]:
    """What the numbers say, in words."""
    trained, random = results["trained"]["synthetic"], results["random"]["synthetic"]
    j = {kind: trained[kind]["J"] for kind, _ in KINDS}
    lines = [f"**Status: held-out J {j['mask']:.2f} (mask prompt), {j['box']:.2f} (box), {j['click']:.2f} "
             f"(click), against {random['box']['J']:.2f} for random weights.**"]
    if max(j.values()) - min(j.values()) < 0.005:
        lines.append("Mask, box and click prompts score the same: what the model predicts on the tracked frames "
                     "does not depend on the prompt, i.e. it does not track.")
    elif all(trained[kind].get("J_vs_all_objects", 0.0) >= j[kind] for kind, _ in KINDS):
        lines.append("Its masks match the union of all tracked objects at least as well as the prompted object "
                     "(column \"J vs all objects\"): it marks the objects in view rather than the one prompted, "
                     "i.e. it does not track yet.")
    lines.append("The checkpoint is shipped to exercise the pipeline offline (loading, the demo, the training "
                 "and evaluation code), not as a tracker. Training this architecture from scratch needs far "
                 "more compute than an hour on a shared CPU (see the notes under Training); `--device cuda` "
                 "runs the same recipe on a GPU.")
    return lines


def _memory_prior_flags(train: dict) -> str:
    """The memory-prior flags of the reproduce command, when the run used them."""
    if not (train.get("memory_mask_gain") or train.get("memory_locality_bias")):
        return ""
    return (f"--memory-mask-gain {train['memory_mask_gain']:g} "
            f"--memory-locality-bias {train['memory_locality_bias']:g} ")


def card_text(description: dict, results: dict, figures: Path, card_dir: Path) -> str:
    train, model = description["training"], description["model"]
    held = results["heldout"]
    rel = lambda name: os.path.relpath(figures / name, card_dir)  # noqa: E731
    lines = [
        "# sam2_nano: a small SAM 2 trained here, on generated videos",
        "",
        "Not one of Meta's checkpoints: our own SAM 2.1 architecture at a small size, trained from",
        "random weights on this project's procedural videos, so that the node, the demo and the tests",
        "can run real (non-random) weights without internet.",
        "",
        *_status(results),
        "",
        "## Model",
        f"- `{model['build']}`, then `load_checkpoint(model, 'weights/sam2_nano.pt')` (official format",
        "  `{\"model\": state_dict}`); the full config is in `sam2_nano.yaml`.",
        f"- {description['parameters']:,} parameters: Hiera trunk "
        f"{description['architecture']['image_encoder']['trunk']['embed_dim']} channels, stages "
        f"{description['architecture']['image_encoder']['trunk']['stages']}; hidden {description['architecture']['hidden_dim']}, "
        f"memory {description['architecture']['mem_dim']} channels; "
        f"{description['architecture']['memory_attention']['num_layers']} memory-attention layers.",
        "",
        "## Data",
        "- `sam2_ros.train.video_gen.generate_clip`: textured shapes and letters moving, rotating and",
        "  scaling, occluding each other, leaving and re-entering the view, untracked distractors, camera",
        f"  pan, blur, noise; {train['num_objects'][0]}–{train['num_objects'][1]} tracked objects, exact masks. "
        "Backgrounds: synthetic textures or crops of",
        "  the `test/data/bedroom` frames (the `blocks` frames are kept unseen for the real-video check).",
        f"- Each step one example: a {train['video_frames']}-frame clip (p={train['video_prob']}) or a single",
        f"  frame whose objects are each prompted {train['image_prompts_per_object']} times. Prompts as in SAM 2: frame 0 "
        "gets a mask (p=0.5, clips only), a jittered box or a click; with",
        f"  boxes/clicks, {train['clicks_per_correction']} corrective clicks from the error region on up to 2 frames.",
        f"- Curriculum: the first {train['easy_steps']} examples are drawn the same way on a flat grey background,",
        "  without distractors, occlusions or camera effects.",
        "",
        "## Training",
        "- The tracker's own per-frame step with gradients (`sam2_ros.train.rollout`: the same `SAM2Model`",
        "  methods and `MemoryBank`); losses as SAM 2 (focal + dice on the best of the multimask outputs,",
        "  L1 on every predicted IoU, BCE on the object score; masks only where the object is present), but",
        f"  weighted {train.get('focal_weight', 20.0):g} focal : 1 dice, not SAM 2's 20 : 1, plus "
        f"{train.get('feature_scale_weight', 0.0):g} x the image features' mean square (see the notes).",
        f"- AdamW lr {train['lr']} (warmup {train['warmup_steps']}, cosine to x{train['min_lr_ratio']}), weight decay",
        f"  {train['weight_decay']}, gradient clip {train['grad_clip']}, seed {train['seed']}, image size {model['image_size']}.",
        f"- **{train['steps_done']} steps** of a {train['steps']}-step schedule in **{train['wall_time_s'] / 60:.0f} min**"
        f" on {train['machine']}.",
        f"- Reproduce: `python -m sam2_ros.train.train --steps {train['steps']} --image-size {model['image_size']} "
        f"--video-prob {train['video_prob']} --video-frames {train['video_frames']} "
        f"--max-objects {train['num_objects'][1]} --easy-steps {train['easy_steps']} "
        f"{_memory_prior_flags(train)}--minutes {math.ceil(train['wall_time_s'] / 60) + 5} --out out/train` (resumable with `--resume`; "
        "with one thread on the same torch, the numbers depend on the config and seed, not on the time limit).",
        "",
        f"![loss]({rel('loss.png')})",
        "",
        "Notes from getting here (one-off measurements on this machine; the scripts are not in the repo):",
        "- One torch thread: on the 2 shared cores, two threads made each Hiera block ~10x slower",
        "  (the threads wait on each other whenever the other is descheduled).",
        "- The hard part from scratch is *which* object: the decoder and the memory attention must learn",
        "  to use where a prompt points (or what the memory holds) before anything selects the prompted",
        "  object. Toy runs at 128 px (1,500 steps each unless said, lr 1e-3): boxed objects on a flat",
        "  background reach IoU 0.87 with one object per image, but with 1-4 objects the prediction",
        "  covers every object whichever is boxed (IoU with the boxed object 0.34, with all objects",
        "  0.78 at focal weight 1). At SAM 2's focal weight 20 it instead predicts almost nothing (0.03",
        "  and 0.08), hence weight 1 here. A 2x or 4x wider decoder (hidden 128, 256), query/key",
        "  projections tied at init, a sinusoidal init of the trunk's position embedding, box-only",
        "  pretraining on blank images, and click instead of box prompts (3,000 steps; some of these at",
        "  focal 20) did not make the prompt select its object either. Mask-prompted 4-frame clips",
        "  through the memory (2 objects, 5,000 steps) scored J 0.34-0.51 against 0.47-0.62 for the",
        "  union of the objects, with no upward trend; a position-favouring init of the memory",
        "  cross-attention did not change that.",
        "- The first session's runs (focal 20, 256 and 128 px, up to 7,000 steps, box-only curriculum)",
        "  all scored J < 0.10 through the tracker, the same for mask, box and click prompts.",
        "- Why the prompt kinds score the same: nothing bounds the image features' scale (the decoder",
        "  normalises what it reads), and from scratch their std grew from 0.8 to 1,700-2,300 within",
        "  10,000-12,000 steps, the memory features' to ~8,700. Added to such features, the memory",
        "  readout and the positional encodings no longer count. Hence the feature-scale term (0.01 x",
        "  the features' mean square), which holds their std near 1-2. It is not enough alone: the",
        "  memory's dependence on the mask fades too. Memories written from the prompted mask and from",
        "  that mask moved 40 px differ by 22% of the memory's spread at init, by 0.1% after 2,300",
        "  steps with the feature term (0.0005% after 12,000 without), the object pointer by 0.05%. The",
        "  optional memory prior (`--memory-mask-gain`, `--memory-locality-bias`) starts the mask",
        "  branch stronger and the memory attention local; on a toy (2 objects, flat background,",
        "  1,500 steps) it raised tracked J from 0.35 to 0.60, but the masks still matched the union",
        "  of the objects better (0.86) than the prompted one.",
        "- The decoder can learn where a box points: on a blank image with 64 random boxes per step",
        "  it learned to fill the box (IoU 0.85 after 1,500 steps), after a plateau that broke at",
        "  ~400 steps in one run and not within 1,000 in another (grey instead of black image, other",
        "  boxes); that second model, continued on boxed objects, gave the union (IoU 0.53 with the",
        "  boxed object, 0.83 with all objects, 1,250 steps). A rerun of the first setting that did",
        "  learn box fill (IoU 0.85), continued the same way, did no better: 0.54 and 0.85 after 1,500.",
        "",
        "## Evaluation",
        f"Held-out generated clips ({held['clips']} clips of {held['frames']} frames at {held['image_size']} px, "
        f"seeds `default_rng([{held['entropy']}, i])`, disjoint from training, {held['frames'] / train['video_frames']:.0f}x "
        "longer than the training clips), run as the node",
        "runs them: `StreamingTracker`, every object prompted on frame 0, the rest tracked. J (IoU) and F",
        "(boundary) are per object over frames 1.., averaged over objects; visibility accuracy compares",
        "`visible` with the truth on every frame; the last column is the share of frames where an object is",
        "truly absent (hidden or out of view) that were flagged `visible=False` (count in brackets).",
        "Random weights: the same architecture, `torch.manual_seed(0)`.",
        "",
        *_synthetic_table(results),
        "",
        "Held-out clip 0, box prompt (rows: truth, trained, random; every 2nd frame):",
        f"![heldout]({rel('heldout_clip0.jpg')})",
        "",
        "### Real video",
        "`test/data/blocks` (480x270, 12 frames, never seen in training): a box drawn by hand on frame 0",
        "for two blocks; the blocks do not move, so the same hand boxes label frames 6 and 11. Scored by the",
        "IoU of the predicted mask's bounding box with them (no pixel ground truth exists).",
        "",
        *_real_table(results),
        "",
        f"Trained (every 3rd frame): ![blocks]({rel('blocks_trained.jpg')})",
        "",
        f"Random weights: ![blocks random]({rel('blocks_random.jpg')})",
        "",
        "Reproduce: `python -m sam2_ros.train.evaluate --checkpoint weights/sam2_nano.pt --out weights/sam2_nano_eval`.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=Path("weights/sam2_nano.pt"))
    parser.add_argument("--eval", type=Path, default=Path("weights/sam2_nano_eval"))
    parser.add_argument("--card", type=Path, default=Path("weights/SAM2_NANO_CARD.md"))
    args = parser.parse_args(argv)
    description = yaml.safe_load(args.weights.with_suffix(".yaml").read_text())
    results = json.loads((args.eval / "results.json").read_text())
    args.card.write_text(card_text(description, results, args.eval, args.card.parent))
    print(f"wrote {args.card}")


if __name__ == "__main__":
    main()
