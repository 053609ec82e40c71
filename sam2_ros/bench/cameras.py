"""`python -m sam2_ros.bench cameras`: one node serving N cameras vs N single-camera nodes.

Both setups run as real node processes (`python -m sam2_ros.ros.node`) driven over DDS by
this process: it publishes frames on every camera topic faster than the nodes can track
them (each node keeps the newest frame per camera), prompts one object per camera, and
counts the mask arrays that come back. Reported per setup: the resident memory (RSS) of the
node processes together, sampled through the run (first and last sample: flat or not), and
the frames tracked per second over all cameras and per camera (fairness). The setups run
one after the other on the same CPU; the ratios compare them.

Also reported: whether running the image encoder on a batch of frames (one per camera)
beats one call per frame, timed in this process on the same model.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sam2_ros.bench.frames import synthetic_frames
from sam2_ros.bench.machine import machine_info

ROOT = Path(__file__).resolve().parents[2]
NANO = ROOT / "weights" / "sam2_nano.pt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cameras", type=int, default=2, help="camera streams")
    parser.add_argument("--frames", type=int, default=300,
                        help="tracked frames per camera in each timed run")
    parser.add_argument("--model", default="nano", help="model size (nano: the shipped checkpoint)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--frame-size", type=int, default=256, help="camera frames' side, px")
    parser.add_argument("--rate", type=float, default=60.0, help="frames/s published per camera")
    parser.add_argument("--worker-threads", type=int, default=0,
                        help="the one node's worker_threads (0: one per camera)")
    parser.add_argument("--compare-threads", action="store_true",
                        help="also run the one node with worker_threads 1")
    parser.add_argument("--batch-wait", type=float, default=0.0,
                        help="also run the one node with encoder_batch_wait this many s")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed runs per setup, the setups alternating")
    parser.add_argument("--encoder-iterations", type=int, default=30)
    parser.add_argument("--json", type=Path, help="write the results here")


def node_params(args: argparse.Namespace, path: Path, cameras: list[str] | None,
                image_topic: str = "image", worker_threads: int = 0,
                batch_wait: float = 0.0) -> None:
    """A params file for one node: the model, and either `cameras` or one image topic."""
    lines = ["/**:", "  ros__parameters:", f"    model_size: {args.model}",
             f"    image_size: {args.image_size}", "    publish_label_image: false",
             "    publish_overlay: false", "    publish_markers: false"]
    if args.model == "nano":
        lines.append(f"    checkpoint: {NANO}")
    else:
        lines.append("    allow_random_weights: true")
    if cameras:
        lines.append(f"    cameras: [{', '.join(cameras)}]")
        lines.append(f"    worker_threads: {worker_threads}")
        lines.append(f"    encoder_batch_wait: {batch_wait}")
        lines += [f"    {camera}.image_topic: /bench/{camera}/image" for camera in cameras]
    else:
        lines.append(f"    image_topic: {image_topic}")
    path.write_text("\n".join(lines) + "\n")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def start_node(params: Path, name: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sam2_ros.ros.node", "--ros-args", "-r", f"__node:={name}",
         "--params-file", str(params)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env=os.environ.copy())


def drive(args: argparse.Namespace, cameras: list[str], masks_topics: dict[str, str],
          prompt_services: dict[str, tuple[str, str]], pids: list[int]) -> dict[str, Any]:
    """Publish frames on every camera until each has `args.frames` tracked frames after the
    prompt; return throughput, per-camera rates and the RSS samples of `pids`."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from sam2_ros.msg import ObjectMaskArray
    from sam2_ros.ros.conversions import array_to_image
    from sam2_ros.srv import AddPrompt

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(f"bench_cameras_{os.getpid()}", context=context)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    frames = synthetic_frames(hw=(args.frame_size, args.frame_size))
    counts = {camera: 0 for camera in cameras}
    lock = threading.Lock()

    def counter(camera: str):
        def count(msg: ObjectMaskArray) -> None:
            with lock:
                counts[camera] += 1
        return count

    publishers = {camera: node.create_publisher(Image, f"/bench/{camera}/image",
                                                qos_profile_sensor_data) for camera in cameras}
    for camera in cameras:
        node.create_subscription(ObjectMaskArray, masks_topics[camera], counter(camera), 100)
    sent = [0]

    def publish_all() -> None:
        sent[0] += 1
        index = sent[0]
        for camera_index, camera in enumerate(cameras):
            header = Header(frame_id=camera)
            header.stamp.sec, header.stamp.nanosec = divmod(index * 10**7, 10**9)
            publishers[camera].publish(array_to_image(
                frames[(index + 3 * camera_index) % len(frames)], encoding="rgb8",
                header=header))

    try:
        deadline = time.monotonic() + 300
        while min(counts.values()) < 3:  # every node answers: discovery and warm-up done
            if time.monotonic() > deadline:
                raise RuntimeError(f"nodes did not answer within 300 s: {counts}")
            publish_all()
            time.sleep(0.1)
        for camera in cameras:  # one object per camera (a box over the first square)
            service, field = prompt_services[camera]
            client = node.create_client(AddPrompt, service)
            if not client.wait_for_service(timeout_sec=60):
                raise RuntimeError(f"no service {service}")
            side = args.frame_size // 6
            request = AddPrompt.Request(object_id=1, camera=field,
                                        box=[0.0, 0.0, float(args.frame_size), float(side * 2)])
            future = client.call_async(request)
            while not future.done():
                time.sleep(0.01)
            if not future.result().success:
                raise RuntimeError(f"prompt on {camera} failed: {future.result().message}")
        with lock:
            start = dict(counts)
        began = time.monotonic()
        samples: list[tuple[float, int]] = []
        next_sample, period = began, 1.0 / args.rate
        while True:
            with lock:
                done = {camera: counts[camera] - start[camera] for camera in cameras}
            if min(done.values()) >= args.frames:
                break
            if time.monotonic() - began > 3600:
                raise RuntimeError(f"timed run did not finish within an hour: {done}")
            if time.monotonic() >= next_sample:
                samples.append((time.monotonic() - began, sum(rss_bytes(pid) for pid in pids)))
                next_sample += 1.0
            publish_all()
            time.sleep(period)
        elapsed = time.monotonic() - began
        samples.append((elapsed, sum(rss_bytes(pid) for pid in pids)))
    finally:
        executor.shutdown(timeout_sec=5)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    total = sum(done.values())
    return {"seconds": round(elapsed, 2), "frames_tracked": done,
            "fps_total": round(total / elapsed, 2),
            "fps_per_camera": {camera: round(n / elapsed, 2) for camera, n in done.items()},
            "rss_mib_first": round(samples[0][1] / 2**20, 1),
            "rss_mib_last": round(samples[-1][1] / 2**20, 1),
            "rss_mib_max": round(max(s for _, s in samples) / 2**20, 1),
            "rss_samples_mib": [[round(t, 1), round(s / 2**20, 1)] for t, s in samples]}


def run_setup(args: argparse.Namespace, scratch: Path,
              setup: tuple[int, float] | None) -> dict[str, Any]:
    """One timed run: N single-camera nodes (`setup` None) or one N-camera node with
    `setup` = (worker_threads, encoder_batch_wait)."""
    shared = setup is not None
    cameras = [f"cam{index}" for index in range(args.cameras)]
    processes: list[subprocess.Popen] = []
    try:
        if shared:
            params = scratch / "shared.yaml"
            node_params(args, params, cameras, worker_threads=setup[0], batch_wait=setup[1])
            processes.append(start_node(params, "sam2_bench", scratch / "shared.log"))
            masks = {camera: f"/sam2_bench/{camera}/masks" for camera in cameras}
            services = {camera: ("/sam2_bench/add_prompt", camera) for camera in cameras}
        else:
            masks, services = {}, {}
            for camera in cameras:
                params = scratch / f"{camera}.yaml"
                node_params(args, params, None, image_topic=f"/bench/{camera}/image")
                name = f"sam2_bench_{camera}"
                processes.append(start_node(params, name, scratch / f"{camera}.log"))
                masks[camera] = f"/{name}/masks"
                services[camera] = (f"/{name}/add_prompt", "")
        return drive(args, cameras, masks, services, [p.pid for p in processes])
    except RuntimeError:
        for log in sorted(scratch.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def encoder_batching(args: argparse.Namespace) -> dict[str, Any]:
    """Image encoder on a batch of one frame per camera vs one call per frame (ms)."""
    from sam2_ros.engine import build_model

    torch.manual_seed(0)
    model = build_model(args.model, image_size=args.image_size).eval()
    images = torch.rand(args.cameras, 3, args.image_size, args.image_size)  # (N, 3, S, S)
    one_by_one, batched = [], []
    with torch.inference_mode():
        for _ in range(3):  # warm-up
            model.encode_image(images)
        for _ in range(args.encoder_iterations):  # interleaved
            begin = time.perf_counter()
            for index in range(args.cameras):
                model.encode_image(images[index:index + 1])
            one_by_one.append(time.perf_counter() - begin)
            begin = time.perf_counter()
            model.encode_image(images)
            batched.append(time.perf_counter() - begin)
    separate, together = float(np.median(one_by_one)) * 1e3, float(np.median(batched)) * 1e3
    return {"frames": args.cameras, "separate_ms_median": round(separate, 2),
            "batched_ms_median": round(together, 2),
            "speedup": round(separate / together, 3),
            "definition": "separate ms / batched ms for one frame per camera (> 1: batching pays)"}


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE",
                          str(ROOT / "config" / "fastdds_local_large_data.xml"))
    os.environ.setdefault("RMW_FASTRTPS_USE_QOS_FROM_XML", "0")
    if args.model == "nano" and not NANO.is_file():
        print(f"error: {NANO} is absent; use --model tiny (random weights)", file=sys.stderr)
        return 2
    setups: dict[str, tuple[int, float] | None] = {"separate_nodes": None,
                                                   "one_node": (args.worker_threads, 0.0)}
    if args.compare_threads:
        setups["one_node_1_thread"] = (1, 0.0)
    if args.batch_wait > 0:
        setups["one_node_batched_encoder"] = (args.worker_threads, args.batch_wait)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in setups}
    with tempfile.TemporaryDirectory(prefix="sam2_ros_bench_cameras_") as folder:
        for repeat in range(args.repeats):
            for name, threads in setups.items():
                print(f"run {repeat + 1}/{args.repeats}: {name} ...", file=sys.stderr, flush=True)
                runs[name].append(run_setup(args, Path(folder), threads))
    results = {name: {"fps_total_median": float(np.median([r["fps_total"] for r in done])),
                      "rss_mib_max": max(r["rss_mib_max"] for r in done), "runs": done}
               for name, done in runs.items()}
    separate = results["separate_nodes"]
    print("image encoder batching ...", file=sys.stderr, flush=True)
    batching = encoder_batching(args)
    document = {
        "benchmark": "cameras",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(torch.device("cpu")),
        "settings": {key: (str(value) if isinstance(value, Path) else value)
                     for key, value in vars(args).items() if key != "func"},
        **results,
        "ratios": {f"{name}_over_separate": {
            "rss": round(result["rss_mib_max"] / separate["rss_mib_max"], 3),
            "fps": round(result["fps_total_median"] / separate["fps_total_median"], 3)}
            for name, result in results.items() if name != "separate_nodes"},
        "encoder_batching": batching,
        "notes": ["RSS: VmRSS of the node processes together; max over samples taken each "
                  "second of the timed run (first and last sample per run: flat or not).",
                  "Setups alternate run by run on the same (shared) CPU; fps ratios use "
                  "the medians over runs.",
                  "fps: mask arrays received per second over all cameras (frames the node "
                  "tracked; the others were replaced by newer ones)."],
    }
    text = json.dumps(document, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)
    return 0
