"""`python -m sam2_ros.bench.dds`: how many camera frames of one size cross between processes.

Publishes --frames bgr8 `sensor_msgs/Image`s of --width x --height at --rate Hz with
sensor-data QoS (as camera drivers do) to a subscriber in a child process with the same
environment, hence the same DDS settings (FASTDDS_DEFAULT_PROFILES_FILE), and writes how many
arrived. Compare profiles by running it once per profile. Not a timing: a count of losses.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def receive(topic: str) -> int:
    """Frames received on `topic` until stdin closes (the child process)."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("sam2_bench_dds_receiver")
    received: list[int] = []
    node.create_subscription(Image, topic, lambda msg: received.append(len(msg.data)),
                             qos_profile_sensor_data)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    while not stop.is_set():
        rclpy.spin_once(node, timeout_sec=0.05)
    rclpy.try_shutdown()
    return len(received)


def send(topic: str, *, width: int, height: int, frames: int, rate: float,
         match_timeout: float = 30.0) -> tuple[int, float]:
    """Publish `frames` frames once the receiver is matched; the bytes per frame and the
    rate achieved (frames per second: publishing a large frame takes time too)."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    try:
        node = rclpy.create_node("sam2_bench_dds_sender")
        publisher = node.create_publisher(Image, topic, qos_profile_sensor_data)
        deadline = time.monotonic() + match_timeout
        while publisher.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no subscriber matched {topic} within {match_timeout} s")
            rclpy.spin_once(node, timeout_sec=0.1)
        time.sleep(1.0)  # the match is seen here first; give the receiver's side time too
        pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)
        message = Image(width=width, height=height, encoding="bgr8", step=3 * width,
                        data=pixels.tobytes())
        start = time.monotonic()
        for index in range(frames):
            message.header.stamp = node.get_clock().now().to_msg()
            publisher.publish(message)
            time.sleep(max(0.0, start + (index + 1) / rate - time.monotonic()))
        return len(message.data), frames / (time.monotonic() - start)
    finally:
        rclpy.try_shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sam2_ros.bench.dds",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--rate", type=float, default=10.0, help="frames per second sent")
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--drain", type=float, default=5.0,
                        help="seconds the receiver keeps listening after the last frame")
    parser.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)  # the child
    parser.add_argument("--topic", default=f"/sam2_bench_dds_{os.getpid()}",
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.receiver:
        print(f"received {receive(args.topic)}", flush=True)
        return 0
    child = subprocess.Popen([sys.executable, "-m", "sam2_ros.bench.dds", "--receiver",
                              "--topic", args.topic], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        frame_bytes, achieved = send(args.topic, width=args.width, height=args.height,
                                     frames=args.frames, rate=args.rate)
        time.sleep(args.drain)
        output, _ = child.communicate(input="", timeout=60)  # closing stdin stops it
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    received = int(output.strip().splitlines()[-1].removeprefix("received "))
    result = {
        "command": "dds", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "width": args.width, "height": args.height, "bytes_per_frame": frame_bytes,
        "rate_hz": args.rate, "rate_achieved_hz": round(achieved, 2),
        "frames_sent": args.frames, "frames_received": received,
        "fastdds_profile": os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE", ""),
        "rmw": os.environ.get("RMW_IMPLEMENTATION", "default"),
        "cpu_cores": os.cpu_count(), "load_average_1min": os.getloadavg()[0],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
