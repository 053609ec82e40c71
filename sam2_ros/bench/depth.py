"""`python -m sam2_ros.bench depth`: the cost of per-object 3D from an aligned depth image.

A synthetic 640x480 frame (by default): N objects (box faces at 0.6-1.8 m) before a wall,
16UC1 depth with sensor noise, holes and flying pixels on the edges, masks grown 2 px over
the edges. Each iteration times, interleaved in one process:

  ours            decode 16UC1 + every object's robust estimate (sam2_ros.spatial.estimate)
  ours+cloud      the same, also picking the ~/points grid points (points_stride 4)
  reference       a plain implementation: back-project every pixel of the frame, then per
                  object the mean of its masked valid points (no outlier rejection)

Each is reported as wall-clock and CPU time of the timing thread: on a shared machine the
wall-clock tail includes time the process was preempted by others.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sam2_ros.bench.machine import machine_info
from sam2_ros.bench.stats import LatencyStats
from sam2_ros.spatial.camera import Intrinsics, depth_in_metres
from sam2_ros.spatial.estimate import DepthSettings, dilate, erode, estimate_object

RATIO_DEFINITION = "reference ms / ours ms per frame (> 1: ours is faster)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--objects", type=int, default=4, help="objects per frame")
    parser.add_argument("--iterations", type=int, default=300, help="timed frames")
    parser.add_argument("--warmup", type=int, default=20, help="untimed frames first")
    parser.add_argument("--points-stride", type=int, default=4, help="the cloud grid (node: points_stride)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")


def scene(width: int, height: int, objects: int, seed: int
          ) -> tuple[Intrinsics, np.ndarray, list[np.ndarray]]:
    """Intrinsics, a (H, W) uint16 millimetre depth image and the objects' (H, W) bool masks."""
    rng = np.random.default_rng(seed)
    focal = 525.0 * width / 640
    camera = Intrinsics(fx=focal, fy=focal, cx=(width - 1) / 2, cy=(height - 1) / 2, width=width,
                        height=height)
    depth = np.full((height, width), 2.5)  # (H, W) metres: the wall
    masks = []
    for z in np.sort(rng.uniform(0.6, 1.8, objects))[::-1]:  # far first: nearer ones occlude
        w, h = rng.integers(width // 8, width // 3), rng.integers(height // 8, height // 3)
        x, y = rng.integers(0, width - w), rng.integers(0, height - h)
        mask = np.zeros((height, width), bool)
        mask[y:y + h, x:x + w] = True
        for other in masks:
            other &= ~mask
        depth[mask] = z
        masks.append(mask)
    depth *= 1 + rng.normal(0, 0.004, depth.shape)  # sensor noise
    edges = np.zeros_like(depth, bool)
    for mask in masks:
        grown = dilate(mask, 2)
        edges |= grown & ~erode(mask, 1)
        mask |= grown  # the tracked mask spills 2 px over the object's edge
    depth[edges & (rng.random(depth.shape) < 0.5)] *= rng.uniform(0.8, 1.5)  # flying pixels
    depth[rng.random(depth.shape) < 0.02] = 0  # holes
    return camera, np.round(depth * 1000).astype(np.uint16), masks


def ours(raw: np.ndarray, masks: list[np.ndarray], camera: Intrinsics, settings: DepthSettings,
         cloud_stride: int) -> list:
    depth = depth_in_metres(raw, "16UC1")
    return [estimate_object(mask, depth, camera, settings, cloud_stride=cloud_stride)
            for mask in masks]


def reference(raw: np.ndarray, masks: list[np.ndarray], camera: Intrinsics) -> list[np.ndarray]:
    """Every pixel back-projected, then the mean of each mask's valid points."""
    z = raw.astype(np.float32) / 1000  # (H, W)
    us, vs = np.meshgrid(np.arange(camera.width, dtype=np.float32),
                         np.arange(camera.height, dtype=np.float32))
    cloud = np.stack([(us - camera.cx) * z / camera.fx, (vs - camera.cy) * z / camera.fy, z],
                     axis=-1)  # (H, W, 3)
    return [cloud[mask & (z > 0)].mean(axis=0) for mask in masks]


def timed(function) -> tuple[float, float]:
    """Wall-clock and this thread's CPU milliseconds of one call (on a shared machine the
    difference is time spent preempted)."""
    wall, cpu = time.perf_counter(), time.thread_time()
    function()
    return (time.perf_counter() - wall) * 1e3, (time.thread_time() - cpu) * 1e3


def run(args: argparse.Namespace) -> int:
    if args.objects < 1 or args.iterations < 1 or args.width < 16 or args.height < 16:
        print(f"error: need --objects >= 1, --iterations >= 1 and a frame of at least 16x16; "
              f"given {args.objects}, {args.iterations}, {args.width}x{args.height}",
              file=sys.stderr)
        return 2
    camera, raw, masks = scene(args.width, args.height, args.objects, args.seed)
    settings = DepthSettings()
    runners = {"ours": lambda: ours(raw, masks, camera, settings, 0),
               "ours+cloud": lambda: ours(raw, masks, camera, settings, args.points_stride),
               "reference": lambda: reference(raw, masks, camera)}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runners}
    for iteration in range(args.warmup + args.iterations):
        for name, runner in runners.items():  # interleaved: load changes hit all alike
            elapsed = timed(runner)
            if iteration >= args.warmup:
                times[name].append(elapsed)
    stats = {name: LatencyStats.of([wall for wall, _ in values]) for name, values in times.items()}
    cpu_stats = {name: LatencyStats.of([cpu for _, cpu in values])
                 for name, values in times.items()}
    estimates = ours(raw, masks, camera, settings, args.points_stride)
    document: dict[str, Any] = {
        "command": "depth",
        "argv": sys.argv[1:],
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(torch.device("cpu")),
        "settings": {"width": args.width, "height": args.height, "objects": args.objects,
                     "iterations": args.iterations, "warmup": args.warmup,
                     "points_stride": args.points_stride, "seed": args.seed,
                     "mask_pixels": [int(m.sum()) for m in masks],
                     "valid_objects": sum(e.valid for e in estimates),
                     "cloud_points": sum(len(e.points) for e in estimates)},
        "ratio_definition": RATIO_DEFINITION,
        "notes": [__doc__.split("\n\n", 1)[1].strip()],
        "runners": {name: {"wall_ms": stats[name].to_json(), "cpu_ms": cpu_stats[name].to_json()}
                    for name in stats},
        "ratios": {name: stats["reference"].median / stats[name].median
                   for name in ("ours", "ours+cloud")},
    }
    for name, s in stats.items():
        cpu = cpu_stats[name]
        print(f"{name:>11}: median {s.median:.2f} ms, p99 {s.p99:.2f} ms (CPU time: median "
              f"{cpu.median:.2f}, p99 {cpu.p99:.2f}) over {s.n} frames ({args.objects} objects, "
              f"{args.width}x{args.height})")
    print(f"ratios ({RATIO_DEFINITION}): "
          + ", ".join(f"{k} {v:.2f}x" for k, v in document["ratios"].items()))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
