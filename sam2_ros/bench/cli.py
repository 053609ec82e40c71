"""`python -m sam2_ros.bench {engine,backends,depth,cameras}`: our tracker and Meta's reference on one stream.

engine    our tracker (torch backend) vs the reference: per-frame latency, FPS, memory; with
          --dtype bfloat16 on CPU, float32 and bfloat16 of both; --replay: stamped prompts.
backends  every backend available here (torch, onnxruntime, tensorrt) and the reference, with
          per-part latencies and a bar plot.
depth     per-object 3D from an aligned depth image (sam2_ros/bench/depth.py).
cameras   one node serving N cameras vs N single-camera nodes (sam2_ros/bench/cameras.py).

Both build the reference and our model from the same official-format weights (--checkpoint,
or random weights saved in that format), feed them the same frames and clicks, and time
them interleaved frame by frame in one process.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from sam2_ros.backends import BackendUnavailable, make_backend
from sam2_ros.bench import cameras, depth, report
from sam2_ros.bench.accuracy import VISIBLE_BIAS, compare_runners, make_visible
from sam2_ros.bench.frames import load_frames
from sam2_ros.bench.machine import machine_info
from sam2_ros.bench.measure import run_stream
from sam2_ros.bench.reference import build_reference_predictor
from sam2_ros.bench.replay import measure_replay
from sam2_ros.bench.runners import OursRunner, ReferenceRunner, Runner
from sam2_ros.engine import build_model, load_checkpoint
from sam2_ros.engine.config import SIZES, VERSIONS
from sam2_ros.engine.precision import check_dtype, prepare_model

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
REFERENCE_MODES = {"eager": ("eager",), "vos": ("vos",), "both": ("eager", "vos"), "none": ()}
ALL_BACKENDS = ("torch", "onnxruntime", "tensorrt")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", choices=SIZES, default="tiny", help="SAM 2 size")
    common.add_argument("--version", choices=VERSIONS, default="2.1")
    common.add_argument("--image-size", type=int, default=1024, help="model input side, a multiple of 32")
    common.add_argument("--frames", type=int, default=50, help="timed frames per stream")
    common.add_argument("--warmup", type=int, default=8,
                        help="untimed frames after the prompted frame 0 (default 8: compiles done, the "
                             "7-frame memory window full)")
    common.add_argument("--objects", default=None, help="comma-separated object counts, one stream each")
    common.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    common.add_argument("--dtype", choices=sorted(DTYPES), default="float32",
                        help="ours and the eager reference (the reference under autocast below float32; on "
                             "CPU bfloat16 only, where the CPU has native bf16, and float32 runs beside it); "
                             "onnxruntime is always float32, tensorrt float16 unless bfloat16 is asked")
    common.add_argument("--compile", action="store_true", help="torch.compile our torch backend's parts")
    common.add_argument("--cuda-graphs", action="store_true", help="CUDA graphs for our torch backend's parts")
    common.add_argument("--checkpoint", type=Path, help="official .pt file; random weights without it")
    common.add_argument("--reference-mode", choices=sorted(REFERENCE_MODES), default="eager",
                        help="Meta's predictor: eager (plain), vos (SAM2VideoPredictorVOS: torch.compile "
                             "max-autotune + bfloat16, CUDA only), both, or none")
    common.add_argument("--max-conditioning-frames", type=int, default=4)
    common.add_argument("--video", default="bedroom",
                        help="'bedroom' (bundled real frames, looped), 'synthetic', or a directory of images")
    common.add_argument("--seed", type=int, default=0, help="random weights' seed")
    common.add_argument("--json", type=Path, help="write the results here")
    common.add_argument("--plot", type=Path, help="write a PNG bar plot here")

    parser = argparse.ArgumentParser(prog="python -m sam2_ros.bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    common.add_argument("--backends", default=None,
                        help="comma-separated backends to try (default: torch for engine, all for backends)")
    common.add_argument("--onnx-dir", type=Path,
                        help="exported parts (exported there if missing); default: a cache keyed by the weights")
    engine = sub.add_parser("engine", parents=[common], help="our tracker vs Meta's reference, per-frame latency and memory")
    engine.add_argument("--replay", default=None,
                        help="comma-separated depths (e.g. 5,20): time a prompt stamped that many frames back, "
                             "feature cache off and on, against tracking those frames live (ours, torch, at --dtype)")
    engine.add_argument("--replay-rounds", type=int, default=3, help="replays timed per depth")
    engine.add_argument("--accuracy-frames", type=int, default=0,
                        help="> 0: also compare every runner's masks with the float32 reference over this many "
                             "frames of each --accuracy-videos (mask IoU, logit error)")
    engine.add_argument("--accuracy-videos", default="bedroom,blocks",
                        help="comma-separated bundled videos (test/data) or image directories for --accuracy-frames")
    sub.add_parser("backends", parents=[common], help="every available backend, per part, with a plot")
    depth.add_arguments(sub.add_parser("depth", help="per-object 3D from depth: median and p99 ms"))
    cameras.add_arguments(sub.add_parser("cameras", help="one node with N cameras vs N nodes: "
                                         "RSS and throughput"))
    args = parser.parse_args(argv)
    if args.command in ("depth", "cameras"):
        return args
    if args.objects is None:
        args.objects = "1,4" if args.command == "engine" else "1,4,16"
    if args.backends is None:
        args.backends = "torch" if args.command == "engine" else ",".join(ALL_BACKENDS)
    return args


def check_settings(args: argparse.Namespace) -> list[int]:
    """The object counts, or ValueError for settings this machine cannot run."""
    try:
        objects = [int(n) for n in args.objects.split(",")]
    except ValueError:
        raise ValueError(f"--objects must be comma-separated integers, got {args.objects!r}") from None
    if not objects or min(objects) < 1:
        raise ValueError(f"--objects must be >= 1 each, got {args.objects!r}")
    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda, but torch sees no CUDA device")
    if getattr(args, "replay", None):
        try:
            depths = [int(d) for d in args.replay.split(",")]
        except ValueError:
            raise ValueError(f"--replay must be comma-separated integers, got {args.replay!r}") from None
        if min(depths) < 1 or args.replay_rounds < 1:
            raise ValueError(f"--replay depths and --replay-rounds must be >= 1, got {args.replay!r}, {args.replay_rounds}")
    if args.device == "cpu":
        try:
            check_dtype(torch.device("cpu"), DTYPES[args.dtype])
        except ValueError as err:
            raise ValueError(f"--dtype {args.dtype}: {err}") from None
        if args.cuda_graphs:
            raise ValueError("--cuda-graphs needs --device cuda")
        if "vos" in REFERENCE_MODES[args.reference_mode]:
            raise ValueError(
                "--reference-mode vos is Meta's CUDA configuration (torch.compile max-autotune + bfloat16); "
                "on CPU use eager"
            )
    return objects


def prepare_weights(args: argparse.Namespace, scratch: Path) -> tuple[Path | None, str]:
    """The official-format file both models load, and how to describe it."""
    if args.checkpoint is not None:
        return args.checkpoint, f"checkpoint {args.checkpoint}"
    described = (f"RANDOM (seed {args.seed}; no --checkpoint; object-score bias {VISIBLE_BIAS}, so objects are "
                 "predicted present): timings hold, masks are meaningless")
    if not REFERENCE_MODES[args.reference_mode]:
        return None, described
    torch.manual_seed(args.seed)
    predictor = build_reference_predictor(
        args.model, image_size=args.image_size, version=args.version, checkpoint=None, device="cpu"
    )
    make_visible(predictor)
    path = scratch / f"sam{args.version}_{args.model}_random{args.seed}.pt"
    torch.save({"model": predictor.state_dict()}, path)
    return path, described


def precisions(args: argparse.Namespace) -> list[torch.dtype]:
    """The dtypes ours and the eager reference run at: on CPU a reduced --dtype runs beside
    float32 (the speed-up and the accuracy cost are both measured against it)."""
    dtype = DTYPES[args.dtype]
    return [torch.float32, dtype] if args.device == "cpu" and dtype != torch.float32 else [dtype]


def model_for(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """`model` itself, or for a reduced dtype on CPU a copy whose weights are cast once
    (`prepare_model`), so the float32 runners keep theirs."""
    device = next(model.parameters()).device
    if device.type == "cpu" and dtype != torch.float32:
        return prepare_model(copy.deepcopy(model), device, dtype)
    return model


def our_runners(args: argparse.Namespace, model: torch.nn.Module) -> tuple[list[Runner], dict[str, dict[str, str]]]:
    """Runners for the backends asked for, and each backend's status."""
    names = [n.strip() for n in args.backends.split(",")]
    unknown = sorted(set(names) - set(ALL_BACKENDS))
    if unknown:
        raise ValueError(f"unknown backends {unknown}; expected some of {ALL_BACKENDS}")
    dtype = DTYPES[args.dtype]
    options: dict[str, list[dict[str, Any]]] = {
        "torch": [{"dtype": d, "compile": args.compile, "cuda_graphs": args.cuda_graphs} for d in precisions(args)],
        "onnxruntime": [{"dtype": torch.float32, "onnx_dir": args.onnx_dir}],
        "tensorrt": [{"dtype": torch.float16 if dtype == torch.float32 else dtype}],
    }
    runners: list[Runner] = []
    statuses: dict[str, dict[str, str]] = {}
    for name in names:
        for option in options[name]:
            try:
                if name == "onnxruntime" and args.onnx_dir is not None:
                    from sam2_ros.backends.onnx_export import ensure_exported

                    ensure_exported(model, args.onnx_dir, max_conditioning=args.max_conditioning_frames)
                part_model = model_for(model, option["dtype"]) if name == "torch" else model
                backend = make_backend(name, part_model, max_conditioning=args.max_conditioning_frames, **option)
            except BackendUnavailable as err:
                statuses[name] = {"status": f"skipped: {name} not importable", "detail": str(err)}
                continue
            except (ImportError, ValueError, RuntimeError) as err:
                statuses[name] = {"status": f"skipped: {type(err).__name__}", "detail": str(err)}
                continue
            statuses[name] = {"status": "ok", "detail": ""}
            runners.append(OursRunner(part_model, backend, dtype=option["dtype"],
                                      max_conditioning_frames=args.max_conditioning_frames))
    return runners, statuses


def reference_runners(args: argparse.Namespace, weights: Path | None) -> list[Runner]:
    return [
        ReferenceRunner(
            build_reference_predictor(
                args.model,
                image_size=args.image_size,
                version=args.version,
                checkpoint=weights,
                device=args.device,
                vos_optimized=mode == "vos",
                max_conditioning_frames=args.max_conditioning_frames,
            ),
            mode=mode,
            dtype=dtype,
            max_conditioning_frames=args.max_conditioning_frames,
        )
        for mode in REFERENCE_MODES[args.reference_mode]
        for dtype in (precisions(args) if mode == "eager" else [torch.bfloat16])
    ]


def notes(args: argparse.Namespace, device: torch.device) -> list[str]:
    out = [f"ratios: {report.RATIO_DEFINITION}"]
    if device.type == "cpu":
        out.append(report.CPU_NOTE)
    if args.command == "backends":
        out.append("part timings synchronize the device around each part, for every runner alike; "
                   "`engine` gives per-frame figures without that")
        out.append("parts: Meta's decoder includes upsampling the masks to the image size, which ours does in "
                   "the memory encoder; compare decoder + memory_encoder")
        out.append("onnxruntime runs float32 graphs whatever --dtype; tensorrt builds float16 engines "
                   "unless --dtype asks for bfloat16")
    if REFERENCE_MODES[args.reference_mode]:
        out.append("reference held bytes: the tensors the causal driver keeps (the predictor's per-frame "
                   "fields, never evicted); ours: the bounded memory bank (memory_stats)")
    if args.device == "cpu" and args.dtype == "bfloat16":
        out.append("bfloat16 on CPU: ours casts its linear and convolution weights to bf16 once and runs attention "
                   "through bf16 matmuls; reference:eager+autocast is Meta's model under torch.autocast('cpu', "
                   "bfloat16), casting its float32 weights on each call")
    if "vos" in REFERENCE_MODES[args.reference_mode]:
        out.append("reference:vos runs under bfloat16 autocast with TF32 enabled, as Meta's benchmark script "
                   "does; TF32 is then enabled for every runner in this process")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "depth":
        return depth.run(args)
    if args.command == "cameras":
        return cameras.run(args)
    try:
        objects = check_settings(args)
        frames, frames_described = load_frames(args.video)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    modes = REFERENCE_MODES[args.reference_mode]
    if "vos" in modes:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    with tempfile.TemporaryDirectory(prefix="sam2_ros_bench_") as scratch:
        weights, weights_described = prepare_weights(args, Path(scratch))
        torch.manual_seed(args.seed)
        model = build_model(args.model, image_size=args.image_size, version=args.version)
        if weights is not None:
            load_checkpoint(model, weights)
        model = model.to(device).eval()
        runners, statuses = our_runners(args, model)
        runners += reference_runners(args, weights)
    if not any(isinstance(r, OursRunner) for r in runners):
        print(f"error: no backend of ours could run: {statuses}", file=sys.stderr)
        return 1

    runs = []
    for n in objects:
        print(f"{n} object(s): {', '.join(r.name for r in runners)}, 1 prompted + {args.warmup} warm-up + "
              f"{args.frames} timed frames each ...", file=sys.stderr, flush=True)
        stream = run_stream(runners, frames, n_objects=n, warmup=args.warmup, timed=args.frames,
                            device=device, time_parts=args.command == "backends")
        runs.append(report.run_entry(n, stream, runners))
    accuracy = []
    for video in (args.accuracy_videos.split(",") if getattr(args, "accuracy_frames", 0) else []):
        video_frames, video_described = load_frames(video.strip())
        for n in objects:
            print(f"accuracy on {video}: {n} object(s), {args.accuracy_frames} frames ...", file=sys.stderr, flush=True)
            accuracy.append({"video": video_described, **compare_runners(
                runners, video_frames, n_objects=n, n_frames=args.accuracy_frames)})
    replays = []
    if getattr(args, "replay", None):
        depths = [int(d) for d in args.replay.split(",")]
        for runner in runners:
            if isinstance(runner, OursRunner) and runner.backend.name == "torch" and runner.dtype == DTYPES[args.dtype]:
                print(f"replay {runner.name}: depths {depths}, {args.replay_rounds} rounds, {objects[0]} object(s) ...",
                      file=sys.stderr, flush=True)
                replays.append({"runner": runner.name, **measure_replay(
                    runner.model, frames, dtype=runner.dtype, device=device, depths=depths, n_objects=objects[0],
                    rounds=args.replay_rounds, max_conditioning_frames=args.max_conditioning_frames)})
    document = {
        "command": args.command,
        "argv": sys.argv[1:] if argv is None else list(argv),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(device),
        "settings": {
            "model": args.model,
            "version": args.version,
            "image_size": args.image_size,
            "device": args.device,
            "dtype": args.dtype,
            "precisions": [str(d).removeprefix("torch.") for d in precisions(args)],
            "compile": args.compile,
            "cuda_graphs": args.cuda_graphs,
            "reference_modes": list(modes),
            "objects": objects,
            "timed_frames": args.frames,
            "warmup_frames": args.warmup,
            "max_conditioning_frames": args.max_conditioning_frames,
            "weights": weights_described,
            "frames": frames_described,
            "tf32": torch.backends.cuda.matmul.allow_tf32,
        },
        "backends": statuses,
        "ratio_definition": report.RATIO_DEFINITION,
        "notes": notes(args, device),
        "runs": runs,
    }
    if replays:
        document["replay"] = replays
    if accuracy:
        document["accuracy"] = accuracy
    print(report.format_summary(document))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.plot is not None:
        from sam2_ros.bench.plot import plot

        print(f"wrote {plot(document, args.plot)}")
    return 0
