"""Shutting down as ROS tools do it: SIGINT (Ctrl-C, `ros2 launch`) or SIGTERM at any
moment ends the node with status 0 and no error, and queued calls get an answer."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("sam2_ros.msg", reason="msg/srv not built: run bash scripts/setup.sh and "
                    "source scripts/env.sh")

from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from test_ros_node import Client, block_mask, context, mask_request, spinning, wait_for  # noqa: E402,F401,E501

from sam2_ros.ros.conversions import mask_to_image  # noqa: E402
from sam2_ros.srv import RemoveObject  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ERROR_MARKS = ("[ERROR]", "[FATAL]", "Traceback", "terminate called", "Aborted")


def start_node(*params: str) -> tuple[subprocess.Popen, list[str]]:
    """The node as a process; its output lines are collected as they come."""
    command = [sys.executable, "-m", "sam2_ros.ros.node", "--ros-args",
               "-p", "allow_random_weights:=true", "-p", "image_size:=256",
               "-r", "__node:=sam2_shutdown", "-r", "image:=/shutdown/image"]
    for param in params:
        command += ["-p", param]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True).start()
    return process, lines


def stop_and_check(process: subprocess.Popen, lines: list[str], signum: int) -> None:
    process.send_signal(signum)
    try:
        status = process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    time.sleep(0.2)  # the reader thread takes the last lines
    output = "".join(lines)
    assert status == 0, output
    assert not [mark for mark in ERROR_MARKS if mark in output], output


@pytest.mark.parametrize("moment", ["loading", "active"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_ends_the_node_cleanly(moment: str, signum: int) -> None:
    process, lines = start_node()
    try:
        mark = "configuring: loading" if moment == "loading" else "configured:"
        wait_for(lambda: any(mark in line for line in lines) or process.poll() is not None,
                 90, f"the node to print {mark!r}")
        assert process.poll() is None, "".join(lines)
        stop_and_check(process, lines, signum)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)


def test_queued_calls_are_answered_at_shutdown(context) -> None:
    """Calls waiting behind a long job get "shutting down", not silence."""
    from sam2_ros.ros.node import Sam2Node

    node = Sam2Node("sam2_drain", context=context, parameter_overrides=[
        Parameter("allow_random_weights", value=True), Parameter("image_size", value=256),
        Parameter("image_topic", value="/drain/image")])
    client = Client(context, node_name="sam2_drain", image_topic="/drain/image")
    with spinning(context, node, client.node, threads=8):
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        client.stream_until(lambda: client.masks, what="the first mask array")
        release = threading.Event()
        node._worker.submit(lambda: release.wait(30))  # the worker is busy
        futures = [client.remove.call_async(RemoveObject.Request(object_id=7))
                   for _ in range(3)]
        time.sleep(1.0)  # the calls reach the node and queue behind the job
        stopper = threading.Thread(target=node.stop_serving)
        stopper.start()
        time.sleep(0.3)
        release.set()
        stopper.join(timeout=30)
        wait_for(lambda: all(f.done() for f in futures), 30, "answers to the queued calls")
        replies = [f.result() for f in futures]
        assert all(not r.success and "shutting down" in r.message for r in replies), replies
        # New calls after that: refused at once with the same reason.
        reply = client.call(client.add_prompt, mask_request(
            1, mask_to_image(block_mask(), header=Header())))
        assert not reply.success and "shutting down" in reply.message
