"""End-to-end demo: the real node in its own process, a bundled video as its camera.

    bash scripts/demo.sh                 # or: python -m sam2_ros.demo --help

Publishes the frames of test/data/blocks as a camera topic, prompts three blocks
through the node's services (points, a box, and a stamped correction on a past frame),
saves every ~/overlay image to out/demo/ plus an animated GIF, and prints the FPS.

Weights, best first: weights/sam2.1_hiera_tiny.pt (Meta's, when downloaded),
weights/sam2_nano.pt (the project's small offline checkpoint), else random weights --
said loudly, since the masks are then meaningless.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

REPO = Path(__file__).resolve().parents[1]
# The project's small trained checkpoint (sam2_ros.train.train): the engine's "nano" size, run
# at the size it was trained at (its .yaml; see weights/SAM2_NANO_CARD.md).
NANO_CHECKPOINT = REPO / "weights" / "sam2_nano.pt"
NANO_MODEL_SIZE = "nano"
OFFICIAL_TINY = REPO / "weights" / "sam2.1_hiera_tiny.pt"
NODE_NAME = "sam2_demo"
IMAGE_TOPIC = "/demo/camera/image"


@dataclass(frozen=True)
class Weights:
    model_size: str
    checkpoint: str  # "" = random weights
    image_size: int
    note: str


def pick_weights() -> Weights:
    """The best weights present on this machine (see the module docstring)."""
    from sam2_ros.engine.checkpoint import trained_image_size
    from sam2_ros.engine.config import SIZES

    if OFFICIAL_TINY.is_file():
        return Weights("tiny", str(OFFICIAL_TINY), 1024, f"using Meta's {OFFICIAL_TINY}")
    if NANO_CHECKPOINT.is_file() and NANO_MODEL_SIZE in SIZES:
        return Weights(NANO_MODEL_SIZE, str(NANO_CHECKPOINT), trained_image_size(NANO_CHECKPOINT),
                       f"using the project's trained checkpoint {NANO_CHECKPOINT}")
    return Weights("tiny", "", 256,
                   f"NO CHECKPOINT: neither {NANO_CHECKPOINT} nor {OFFICIAL_TINY} exists, so "
                   f"the node runs with RANDOM weights and the masks are meaningless. For real "
                   f"masks: python3 weights/download.py tiny")


def node_command(weights: Weights, image_size: int) -> list[str]:
    command = [sys.executable, "-m", "sam2_ros.ros.node", "--ros-args",
               "--params-file", str(REPO / "config" / "sam2.yaml"),
               "-p", f"model_size:={weights.model_size}", "-p", f"image_size:={image_size}",
               "-r", f"__node:={NODE_NAME}", "-r", f"image:={IMAGE_TOPIC}"]
    if weights.checkpoint:
        command += ["-p", f"checkpoint:={weights.checkpoint}"]
    else:
        command += ["-p", "allow_random_weights:=true"]
    return command


def load_frames(folder: Path) -> list[np.ndarray]:
    paths = sorted(folder.glob("*.jpg")) + sorted(folder.glob("*.png"))
    if not paths:
        raise SystemExit(f"no .jpg/.png frames in {folder}")
    return [np.asarray(PILImage.open(path).convert("RGB")) for path in paths]


def run(args: argparse.Namespace) -> int:
    import rclpy
    from geometry_msgs.msg import Point
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from sam2_ros.ros.conversions import array_to_image, image_to_rgb
    from sam2_ros.srv import AddPrompt

    weights = pick_weights()
    print(f"[demo] {weights.note}")
    frames = load_frames(args.frames)
    args.out.mkdir(parents=True, exist_ok=True)
    node_log = (args.out / "node.log").open("w")
    node = subprocess.Popen(node_command(weights, args.image_size or weights.image_size),
                            cwd=REPO, stdout=node_log, stderr=subprocess.STDOUT)
    rclpy.init()
    client = rclpy.create_node("sam2_demo_client")
    camera = client.create_publisher(Image, IMAGE_TOPIC, qos_profile_sensor_data)
    overlays: list[tuple[float, int, np.ndarray]] = []  # arrival, stamp (s), picture
    client.create_subscription(
        Image, f"/{NODE_NAME}/overlay",
        lambda msg: overlays.append((time.monotonic(), msg.header.stamp.sec, image_to_rgb(msg))),
        10)
    add_prompt = client.create_client(AddPrompt, f"/{NODE_NAME}/add_prompt")
    executor = SingleThreadedExecutor()
    executor.add_node(client)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()

    def wait_for_overlay(stamp: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not any(s == stamp for _, s, _ in overlays):
            time.sleep(0.02)

    def call(request: AddPrompt.Request, what: str) -> None:
        future = add_prompt.call_async(request)
        deadline = time.monotonic() + 120
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.02)
        reply = future.result() if future.done() else None
        print(f"[demo] {what}: " + (reply.message if reply else "no reply within 120 s"))

    stamps: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not add_prompt.service_is_ready():
            if node.poll() is not None or time.monotonic() > deadline:
                print(f"[demo] the node did not start; see {args.out / 'node.log'}")
                return 1
            time.sleep(0.1)
        started = time.monotonic()
        for index in range(len(frames) * args.loops):
            header = Header(frame_id="demo_camera")
            header.stamp.sec = index + 1
            camera.publish(array_to_image(frames[index % len(frames)], encoding="rgb8",
                                          header=header))
            stamps.append(index + 1)
            if args.rate == 0:  # lockstep: the next frame once this one is tracked
                wait_for_overlay(index + 1, timeout=120)
            if index == 1:  # prompt once the node has a frame
                call(AddPrompt.Request(object_id=1, points=[Point(x=305.0, y=95.0)], labels=[1]),
                     "object 1, a click on the red U")
                call(AddPrompt.Request(object_id=2, box=[180.0, 110.0, 270.0, 150.0]),
                     "object 2, a box around SAM")
            if index == 4:  # a detector that saw frame 2 answers late: stamped prompt
                request = AddPrompt.Request(object_id=3, points=[Point(x=218.0, y=187.0)],
                                            labels=[1])
                request.stamp.sec = stamps[1]
                call(request, f"object 3 on the past frame stamped {stamps[1]} s")
            if args.rate > 0:
                time.sleep(max(0.0, started + (index + 1) / args.rate - time.monotonic()))
        wait_for_overlay(stamps[-1], timeout=120)  # the worker always ends on the newest
    finally:
        executor.shutdown(timeout_sec=5)
        client.destroy_node()
        rclpy.try_shutdown()
        node.terminate()
        try:
            node.wait(timeout=15)
        except subprocess.TimeoutExpired:
            node.kill()
        node_log.close()

    if not overlays:
        print(f"[demo] no overlay received; see {args.out / 'node.log'}")
        return 1
    pictures = [PILImage.fromarray(rgb) for _, _, rgb in overlays]
    for index, picture in enumerate(pictures):
        picture.save(args.out / f"overlay_{index:04d}.png")
    pictures[0].save(args.out / "overlay.gif", save_all=True, append_images=pictures[1:],
                     duration=250, loop=0)
    times = [t for t, _, _ in overlays]
    fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    pace = "in lockstep" if args.rate == 0 else f"at {args.rate:g} Hz"
    print(f"[demo] published {len(stamps)} frames {pace}; the node published {len(overlays)} "
          f"overlays at {fps:.2f} FPS (prompt calls included; frames it skipped were stale)")
    print(f"[demo] wrote {len(pictures)} PNGs and overlay.gif to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SAM 2 node demo on a bundled video.")
    parser.add_argument("--frames", type=Path, default=REPO / "test" / "data" / "blocks",
                        help="folder of .jpg/.png frames to publish as the camera")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "demo")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="camera frames per second, like a live camera (the node drops "
                             "stale frames); 0 = lockstep, each frame once the last is tracked")
    parser.add_argument("--loops", type=int, default=2, help="times to play the frames")
    parser.add_argument("--image-size", type=int, default=None,
                        help="model input size (default: per the weights; 256 for random)")
    args = parser.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
