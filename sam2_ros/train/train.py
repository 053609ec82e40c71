"""Train a SAM 2 size (the `nano` one by default) on generated videos, as the SAM 2 paper does.

Each step is one example: with probability `video_prob` a short clip tracked through the
memory (prompted on frame 0 with a mask, click or box, then corrective clicks on a few
frames), otherwise a single frame segmented from clicks or a box (SAM 2's joint image and
video training). The example runs through `rollout`, the tracker's own per-frame step with
gradients. The run is deterministic for a seed and resumable: a state (model, optimizer,
step, RNGs) is saved every few minutes and at the end, and the weights are exported in the
official format.

    python -m sam2_ros.train.train --minutes 60 --out out/train [--resume]
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sam2_ros.engine.checkpoint import load_checkpoint
from sam2_ros.engine.model import SAM2Model, build_model
from sam2_ros.train.backgrounds import load_backgrounds
from sam2_ros.train.losses import LossWeights
from sam2_ros.train.prompts import PromptMix, PromptPlan, plan_prompts
from sam2_ros.train.rollout import RolloutLoss, rollout
from sam2_ros.train.video_gen import Clip, Difficulty, generate_clip

REPO = Path(__file__).resolve().parents[2]
# Photos to crop backgrounds from. The `blocks` test frames stay unseen: they are the real
# video the evaluation runs on.
BACKGROUNDS = REPO / "test" / "data" / "bedroom"
CSV_FIELDS = ("step", "elapsed_s", "lr", "example", "frames", "objects", "loss", "focal", "dice", "iou",
              "object_score", "passes", "feature_scale")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run's numbers (the wall-clock limit does not)."""

    size: str = "nano"
    image_size: int = 128
    seed: int = 0
    steps: int = 22000  # length of the learning-rate schedule; a run stops here at the latest
    # At 1e-3 the model never learned to select the prompted object (it could not even memorise
    # 8 fixed two-object images); at 3e-4 it memorised them within 600 steps (see the card).
    lr: float = 3e-4
    min_lr_ratio: float = 0.05  # cosine decay ends at lr * this
    warmup_steps: int = 200
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    video_prob: float = 0.6  # otherwise an image (single-frame) example
    video_frames: int = 4
    num_objects: tuple[int, int] = (1, 3)
    # Each object of an image example is prompted this many times, independently (SAM 2 samples
    # many prompts per image). The decoder is cheap next to the image encoder, and the prompt-to-
    # location mapping only emerges after a few thousand prompts (measured on CPU, see the card).
    image_prompts_per_object: int = 4
    easy_steps: int = 4000  # curriculum: examples on a flat background first (EASY)
    clicks_per_correction: int = 2  # SAM 2 uses 7; fewer keeps CPU steps short
    occlusion_prob: float = Difficulty().occlusion_prob  # chance an object is steered across a lower one
    # Chance a clip gets a larger layer passing wholly over one object (Difficulty.hide_prob):
    # the steered occlusions above rarely hide an object completely, and the model never
    # learned to flag such frames absent from them.
    hide_prob: float = 0.0
    # SAM 2 weighs focal 20 : dice 1. From scratch that weight makes the model predict empty
    # masks wherever it cannot yet tell which object was meant: on boxed objects on a flat
    # background, after 1,500 steps the predicted mask overlapped the union of the objects with
    # IoU 0.08 at 20 and 0.78 at 1 (one-off measurement, see the card).
    focal_weight: float = 1.0
    # Keeps the image features near unit scale (see LossWeights.feature_scale): without it their
    # std grew from 0.8 to ~2,300 in 12,000 steps, and the memory no longer changed any mask.
    feature_scale_weight: float = 0.01
    # Start the memory path from a prior (see `memory_prior_init`); 0 keeps PyTorch's init.
    memory_mask_gain: float = 5.0
    memory_locality_bias: float = 4.0
    # Start the decoder's prompt/image cross-attention from a prior (see `decoder_prior_init`).
    decoder_locality_gain: float = 2.0
    decoder_locality_aligned: bool = False  # the shipped run used random orthonormal rows
    # A second stage (as SAM 2 trains in stages): start from these weights (official format)
    # instead of the priors above, with a fresh optimizer and schedule. Empty: from scratch.
    init_weights: str = ""

    def lr_at(self, step: int) -> float:
        """Linear warmup, then cosine decay to `lr * min_lr_ratio` at `steps`."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        progress = min((step - self.warmup_steps) / max(self.steps - self.warmup_steps, 1), 1.0)
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

    @property
    def loss_weights(self) -> LossWeights:
        return LossWeights(focal=self.focal_weight, feature_scale=self.feature_scale_weight)

    @property
    def prompt_mix(self) -> PromptMix:
        return PromptMix(clicks_per_correction=self.clicks_per_correction)


@dataclass
class TrainState:
    """What a resumed run needs to continue exactly where the last one stopped."""

    model: SAM2Model
    optimizer: torch.optim.Optimizer
    rng: np.random.Generator  # draws every clip and prompt
    step: int = 0
    elapsed_s: float = 0.0  # training wall time over all runs


def memory_prior_init(model: SAM2Model, *, mask_gain: float, locality_bias: float) -> None:
    """Bias a fresh model's memory path towards reading the mask where it was.

    From scratch the memory's mask signal faded in training (one measurement: a memory written
    from the prompted mask and one from a mask moved 40 px apart differed by 0.1% of the
    memory's spread after 2,300 steps, against 22% at init), so the memory stopped selecting
    anything. `mask_gain` scales the last conv (weight and bias) of the memory encoder's mask
    branch; `locality_bias` puts the same constant in the memory cross-attention's query and key
    biases, which RoPE turns into a preference for the same place in earlier frames.
    """
    with torch.no_grad():
        if mask_gain:
            last = [m for m in model.memory_encoder.mask_downsampler.modules() if isinstance(m, torch.nn.Conv2d)][-1]
            last.weight.mul_(mask_gain)
            last.bias.mul_(mask_gain)
        if locality_bias:
            for layer in model.memory_attention.layers:
                layer.cross_attn_image.q_proj.bias.fill_(locality_bias)
                layer.cross_attn_image.k_proj.bias.fill_(locality_bias)


def decoder_prior_init(model: SAM2Model, *, gain: float, seed: int = 0, aligned: bool = False) -> None:
    """Start every prompt/image cross-attention of the mask decoder with tied query and key
    projections, biases zero, so that attention starts local.

    Points and the image carry the same random Fourier encoding, [sin(2 pi B p), cos(2 pi B p)]
    (F frequencies, 2F channels). `aligned`: each head reads the sine and the cosine of its own
    few frequencies, so a query and a key score sum_f cos(2 pi b_f (p - x)), a kernel that peaks
    where the click is. Otherwise the shared projection is `gain` x random orthonormal rows,
    which keeps only part of that kernel. PyTorch's init scores positions at random, and from
    scratch the decoder settled on segmenting every object whatever the prompt (see the card).
    """
    if not gain:
        return
    generator = torch.Generator().manual_seed(seed)
    transformer = model.sam_mask_decoder.transformer
    attentions = [transformer.final_attn_token_to_image]
    for layer in transformer.layers:
        attentions += [layer.cross_attn_token_to_image, layer.cross_attn_image_to_token]
    with torch.no_grad():
        for attention in attentions:
            out_dim, in_dim = attention.q_proj.weight.shape
            if aligned:
                per_head = out_dim // attention.num_heads // 2  # frequencies per head
                picks = []
                for head in range(attention.num_heads):
                    freqs = list(range(head * per_head, (head + 1) * per_head))
                    picks += freqs + [in_dim // 2 + f for f in freqs]  # their sines, then cosines
                rows = torch.zeros(out_dim, in_dim)
                rows[torch.arange(out_dim), torch.tensor(picks)] = 1.0
            else:
                rows = torch.linalg.qr(torch.randn(in_dim, out_dim, generator=generator))[0].T  # (out, in)
            for proj in (attention.q_proj, attention.k_proj):
                proj.weight.copy_(gain * rows)
                proj.bias.zero_()


def new_state(cfg: TrainConfig, device: str | torch.device = "cpu") -> TrainState:
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.size, image_size=cfg.image_size).to(device).train()
    if cfg.init_weights:  # a later stage: the earlier stage's weights replace any init
        load_checkpoint(model, cfg.init_weights)
    else:
        memory_prior_init(model, mask_gain=cfg.memory_mask_gain, locality_bias=cfg.memory_locality_bias)
        decoder_prior_init(model, gain=cfg.decoder_locality_gain, seed=cfg.seed,
                           aligned=cfg.decoder_locality_aligned)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return TrainState(model=model, optimizer=optimizer, rng=np.random.default_rng(cfg.seed))


def save_state(state: TrainState, cfg: TrainConfig, path: Path) -> None:
    """Atomically write model, optimizer, step, RNG states and config to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": state.model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "step": state.step,
            "elapsed_s": state.elapsed_s,
            "numpy_rng": state.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "config": dataclasses.asdict(cfg),
        },
        tmp,
    )
    os.replace(tmp, path)


def load_state(cfg: TrainConfig, path: Path, device: str | torch.device = "cpu") -> TrainState:
    """The state saved at `path`; the run's config must match the one it was saved with."""
    saved = torch.load(path, map_location="cpu", weights_only=False)
    saved_cfg = TrainConfig(**{**saved["config"], "num_objects": tuple(saved["config"]["num_objects"])})
    if saved_cfg != cfg:
        raise ValueError(f"{path} was saved by a run with config {saved_cfg}, not the requested {cfg}")
    state = new_state(cfg, device)
    state.model.load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.rng.bit_generator.state = saved["numpy_rng"]
    torch.set_rng_state(saved["torch_rng"])
    if saved.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda_rng"])
    state.step, state.elapsed_s = saved["step"], saved["elapsed_s"]
    return state


@dataclass(frozen=True)
class StepLog:
    example: str  # "image" or "video", prefixed "easy-" during the curriculum
    frames: int
    objects: int
    loss: RolloutLoss


# The curriculum's first examples: objects on a flat grey background and nothing else.
EASY = Difficulty(photo_prob=1.0, num_distractors=(0, 0), occlusion_prob=0.0, leave_prob=0.0, camera_pan=0.0,
                  brightness=0.0, blur_prob=0.0, max_noise=0.0)
FLAT_GREY = np.full((8, 8, 3), 120, dtype=np.uint8)


def _example(state: TrainState, cfg: TrainConfig,
             backgrounds: Sequence[np.ndarray] | None) -> tuple[str, Clip, PromptPlan]:
    """Draw the next example: its kind ("image" or "video", maybe "easy-" first), clip and prompt plan.

    The first `easy_steps` examples are drawn the same way, but on a flat grey background
    with no distractors, occlusions or camera effects (EASY).
    """
    rng, size = state.rng, (cfg.image_size, cfg.image_size)
    easy = state.step < cfg.easy_steps
    video = rng.random() < cfg.video_prob
    frames = cfg.video_frames if video else 1
    scene = (dict(backgrounds=[FLAT_GREY], difficulty=EASY) if easy else
             dict(backgrounds=backgrounds,
                  difficulty=Difficulty(occlusion_prob=cfg.occlusion_prob, hide_prob=cfg.hide_prob)))
    clip = generate_clip(rng, num_frames=frames, size=size, num_objects=cfg.num_objects, **scene)
    if not video:
        clip = replicate_objects(clip, cfg.image_prompts_per_object)
    kind = ("easy-" if easy else "") + ("video" if video else "image")
    return kind, clip, plan_prompts(rng, frames, cfg.prompt_mix)


def train_step(state: TrainState, cfg: TrainConfig, backgrounds: Sequence[np.ndarray] | None) -> StepLog:
    """Draw one example, run it through the model and update the weights."""
    kind, clip, plan = _example(state, cfg, backgrounds)
    for group in state.optimizer.param_groups:
        group["lr"] = cfg.lr_at(state.step)
    loss = rollout(state.model, clip, plan, state.rng, weights=cfg.loss_weights)
    state.optimizer.zero_grad(set_to_none=True)
    loss.total.backward()
    torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.grad_clip)
    state.optimizer.step()
    state.step += 1
    return StepLog(example=kind, frames=clip.masks.shape[0], objects=clip.masks.shape[1], loss=loss)


def replicate_objects(clip: Clip, times: int) -> Clip:
    """Each object `times` times in a row, so that each copy gets its own prompts."""
    return dataclasses.replace(clip, masks=np.repeat(clip.masks, times, axis=1),
                               visible=np.repeat(clip.visible, times, axis=1),
                               obj_ids=np.arange(1, clip.masks.shape[1] * times + 1, dtype=np.int64))


def export_weights(model: SAM2Model, cfg: TrainConfig, state: TrainState, weights: Path) -> None:
    """`weights` (.pt) as the official format {"model": state_dict}, and its config next to it (.yaml)."""
    import yaml  # only the export needs it

    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}, weights)
    description = {
        "model": {"size": model.cfg.size, "image_size": model.cfg.image_size, "version": model.cfg.version,
                  "build": f'build_model("{model.cfg.size}", image_size={model.cfg.image_size})'},
        "architecture": _plain(dataclasses.asdict(model.cfg)),
        "training": {**_plain(dataclasses.asdict(cfg)), "steps_done": state.step,
                     "wall_time_s": round(state.elapsed_s, 1), "machine": machine_description()},
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    earlier = Path(cfg.init_weights).with_suffix(".yaml") if cfg.init_weights else None
    if earlier is not None and earlier.is_file():  # the stage this one started from
        description["training"]["init_training"] = yaml.safe_load(earlier.read_text())["training"]
    weights.with_suffix(".yaml").write_text(yaml.safe_dump(description, sort_keys=False))


def _plain(value: object) -> object:
    """Tuples as lists, recursively, so YAML stays plain."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def machine_description() -> str:
    threads = torch.get_num_threads()
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} CPUs shared, torch {torch.__version__}, {threads} thread(s)"


def plot_curve(csv_paths: Path | Sequence[Path], png_path: Path) -> None:
    """Loss per step (faint) and its moving average, split by example kind. Several logs are
    training stages in order: their steps are laid end to end, with a line where each begins."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, starts = [], []
    for path in [csv_paths] if isinstance(csv_paths, Path) else csv_paths:
        offset = int(rows[-1]["step"]) if rows else 0
        with Path(path).open() as f:
            stage = [{**r, "step": int(r["step"]) + offset} for r in csv.DictReader(f)]
        if rows and stage:
            starts.append(offset)
        rows += stage
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, start in enumerate(starts):
        ax.axvline(start, color="grey", linestyle="--", linewidth=1, label="next stage" if i == 0 else None)
    for kind, colour in (("easy-image", "tab:olive"), ("easy-video", "tab:green"), ("video", "tab:blue"),
                         ("image", "tab:orange")):
        steps = np.array([r["step"] for r in rows if r["example"] == kind])
        loss = np.array([float(r["loss"]) for r in rows if r["example"] == kind])
        if len(loss) == 0:
            continue
        ax.plot(steps, loss, color=colour, alpha=0.2, linewidth=0.8)
        window = min(50, len(loss))
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, color=colour, label=f"{kind} (mean of {window})")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (weighted sum, see the card)")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)


def _truncate_log(csv_path: Path, step: int) -> None:
    """Drop the rows of steps after `step`: a run cut off after its last save repeats them."""
    with csv_path.open() as f:
        rows = list(csv.reader(f))
    with csv_path.open("w", newline="") as f:
        csv.writer(f).writerows([rows[0], *(r for r in rows[1:] if int(r[0]) <= step)])


def train(cfg: TrainConfig, out: Path, *, minutes: float, resume: bool, weights: Path | None,
          device: str = "cpu", save_every_s: float = 180.0) -> TrainState:
    """Train until `cfg.steps` or `minutes` of wall time; save the state, curve and weights."""
    state_path, csv_path = out / "state.pt", out / "loss.csv"
    if resume:
        state = load_state(cfg, state_path, device)
        print(f"resumed at step {state.step} ({state.elapsed_s / 60:.1f} min trained)", flush=True)
        _truncate_log(csv_path, state.step)
    else:
        state = new_state(cfg, device)
        out.mkdir(parents=True, exist_ok=True)
        with csv_path.open("w", newline="") as f:
            csv.writer(f).writerow(CSV_FIELDS)
    backgrounds = load_backgrounds(BACKGROUNDS) if BACKGROUNDS.is_dir() else None
    start = last_save = time.monotonic()
    run_start_elapsed = state.elapsed_s
    with csv_path.open("a", newline="") as f:
        writer = csv.writer(f)
        while state.step < cfg.steps and time.monotonic() - start < minutes * 60:
            log = train_step(state, cfg, backgrounds)
            state.elapsed_s = run_start_elapsed + time.monotonic() - start
            lo = log.loss
            writer.writerow([state.step, f"{state.elapsed_s:.1f}", f"{cfg.lr_at(state.step - 1):.3g}", log.example,
                             log.frames, log.objects, f"{lo.total.item():.5f}", f"{lo.focal:.5f}", f"{lo.dice:.5f}",
                             f"{lo.iou:.5f}", f"{lo.object_score:.5f}", lo.passes, f"{lo.feature_scale:.4f}"])
            f.flush()
            if state.step % 20 == 0:
                print(f"step {state.step} {state.elapsed_s / 60:.1f} min loss {lo.total.item():.4f}", flush=True)
            if time.monotonic() - last_save > save_every_s:
                save_state(state, cfg, state_path)
                plot_curve(csv_path, out / "loss.png")
                last_save = time.monotonic()
    save_state(state, cfg, state_path)
    plot_curve(csv_path, out / "loss.png")
    if weights is not None:
        export_weights(state.model, cfg, state, weights)
    (out / "summary.json").write_text(json.dumps(
        {"steps": state.step, "wall_time_s": state.elapsed_s, "machine": machine_description()}, indent=2))
    print(f"stopped at step {state.step} after {state.elapsed_s / 60:.1f} min", flush=True)
    return state


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="wall-clock limit of this run")
    parser.add_argument("--out", type=Path, default=Path("out/train"))
    parser.add_argument("--resume", action="store_true", help="continue from OUT/state.pt")
    parser.add_argument("--steps", type=int, default=TrainConfig.steps, help="schedule length")
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--image-size", type=int, default=TrainConfig.image_size,
                        help="training (and intended inference) input size")
    parser.add_argument("--video-prob", type=float, default=TrainConfig.video_prob,
                        help="share of clip examples (the rest are single frames)")
    parser.add_argument("--video-frames", type=int, default=TrainConfig.video_frames)
    parser.add_argument("--max-objects", type=int, default=TrainConfig.num_objects[1],
                        help="most tracked objects per example")
    parser.add_argument("--easy-steps", type=int, default=TrainConfig.easy_steps)
    parser.add_argument("--occlusion-prob", type=float, default=TrainConfig.occlusion_prob)
    parser.add_argument("--hide-prob", type=float, default=TrainConfig.hide_prob,
                        help="share of examples where a larger layer wholly hides one object for a while")
    parser.add_argument("--lr", type=float, default=TrainConfig.lr, help="peak learning rate")
    parser.add_argument("--warmup-steps", type=int, default=TrainConfig.warmup_steps)
    parser.add_argument("--memory-mask-gain", type=float, default=TrainConfig.memory_mask_gain)
    parser.add_argument("--memory-locality-bias", type=float, default=TrainConfig.memory_locality_bias)
    parser.add_argument("--decoder-locality-gain", type=float, default=TrainConfig.decoder_locality_gain)
    parser.add_argument("--decoder-locality-aligned", action="store_true",
                        help="decoder prior variant: each head reads its own Fourier frequencies")
    parser.add_argument("--init-weights", default="", help="second stage: start from these weights")
    parser.add_argument("--weights", type=Path, default=REPO / "weights" / "sam2_nano.pt",
                        help="where to export the trained weights")
    # One thread by default: on a machine shared with other jobs, two threads measured ~10x
    # slower per step here (the threads wait on each other whenever one is descheduled).
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="e.g. cuda (untested here: no GPU on this machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(steps=args.steps, seed=args.seed, image_size=args.image_size, lr=args.lr,
                      warmup_steps=args.warmup_steps, video_prob=args.video_prob,
                      video_frames=args.video_frames, num_objects=(1, args.max_objects), easy_steps=args.easy_steps,
                      occlusion_prob=args.occlusion_prob, hide_prob=args.hide_prob,
                      memory_mask_gain=args.memory_mask_gain, memory_locality_bias=args.memory_locality_bias,
                      decoder_locality_gain=args.decoder_locality_gain,
                      decoder_locality_aligned=args.decoder_locality_aligned, init_weights=args.init_weights)
    train(cfg, args.out, minutes=args.minutes, resume=args.resume, weights=args.weights, device=args.device)


if __name__ == "__main__":
    main()
