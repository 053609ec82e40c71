"""Export SAM 2's parts to ONNX (and optionally build TensorRT engines from them).

    python -m sam2_ros.export --model tiny --image-size 1024 --out weights/onnx/ \
        [--checkpoint sam2.1_hiera_tiny.pt] [--tensorrt --engine-dir weights/trt/]

Without --checkpoint the weights are random (for tests). The directory gets one file per
part plus manifest.json, which the onnxruntime and TensorRT backends check against the
weights they are given.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from sam2_ros.engine import build_model, load_checkpoint
from sam2_ros.engine.config import SIZES, VERSIONS

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sam2_ros.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=SIZES, default="tiny", help="SAM 2 size")
    parser.add_argument("--version", choices=VERSIONS, default="2.1")
    parser.add_argument("--image-size", type=int, default=1024, help="model input side, a multiple of 32")
    parser.add_argument("--checkpoint", type=Path, help="official .pt file; random weights without it")
    parser.add_argument("--out", type=Path, required=True, help="directory for the ONNX parts")
    parser.add_argument("--max-conditioning", type=int, default=4,
                        help="prompted frames remembered per object (the tracker's max_conditioning_frames)")
    parser.add_argument("--tensorrt", action="store_true", help="also build TensorRT engines (needs a GPU)")
    parser.add_argument("--engine-dir", type=Path, help="TensorRT engine cache (default ~/.cache/sam2_ros/tensorrt)")
    parser.add_argument("--precision", choices=sorted(DTYPES), default="fp16", help="TensorRT precision")
    parser.add_argument("--max-objects", type=int, default=16, help="TensorRT profile: objects per batch")
    parser.add_argument("--max-points", type=int, default=16, help="TensorRT profile: points per prompt")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = build_model(args.model, image_size=args.image_size, version=args.version)
    if args.checkpoint is not None:
        print(load_checkpoint(model, args.checkpoint).summary())
    else:
        print("no --checkpoint: exporting RANDOM weights (meaningless masks; fine for tests)")

    from sam2_ros.backends.onnx_export import export_parts

    manifest = export_parts(model, args.out, max_conditioning=args.max_conditioning)
    print(f"exported {len(manifest.parts)} parts to {args.out}: {', '.join(manifest.parts)}")
    if args.tensorrt:
        from sam2_ros.backends import make_backend
        from sam2_ros.backends.trt_backend import ProfileLimits

        if not torch.cuda.is_available():
            print("--tensorrt needs a CUDA GPU, and torch sees none", file=sys.stderr)
            return 1
        backend = make_backend(
            "tensorrt",
            model.cuda(),
            dtype=DTYPES[args.precision],
            max_conditioning=args.max_conditioning,
            onnx_dir=args.out,
            engine_dir=args.engine_dir,
            limits=ProfileLimits(max_objects=args.max_objects, max_points=args.max_points),
        )
        for part, path in backend.engine_paths.items():
            print(f"TensorRT engine for {part}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
