"""The node with the shipped nano checkpoint follows a box-prompted moving object.

The behavioural counterpart of test_ros_node.py (which runs random weights): frames of a
hand-built scene go to the node's camera topic one at a time, the planner's box arrives
through ~/add_prompt, and the masks come back on ~/masks, as on a robot.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sam2_ros.msg", reason="msg/srv not built: run bash scripts/setup.sh and "
                    "source scripts/env.sh")

from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from nano_scenes import HIDDEN, crossing_clip, occlusion_clip  # noqa: E402
from sam2_ros.engine.checkpoint import trained_image_size  # noqa: E402
from sam2_ros.ros.conversions import array_to_image, image_to_mask  # noqa: E402
from sam2_ros.srv import AddPrompt  # noqa: E402
from sam2_ros.train.metrics import region_similarity  # noqa: E402
from sam2_ros.train.prompts import mask_to_box  # noqa: E402
from test_ros_node import Client, context, spinning, wait_for  # noqa: E402,F401 (context: the fixture)

CHECKPOINT = Path(__file__).resolve().parents[1] / "weights" / "sam2_nano.pt"
# Followed: mean IoU over frames 1.. above this. Measured with the tracker directly on this scene
# (seed 0) the shipped checkpoint scores 0.82, and the true frame-0 mask held still
# 0.23, so a node that stops following the disc fails.
MIN_MEAN_IOU = 0.5
RESEND_S = 2.0
needs_checkpoint = pytest.mark.skipif(not CHECKPOINT.is_file(), reason=f"{CHECKPOINT} is absent")


def run_node(context, clip, request: AddPrompt.Request) -> list:
    """Send `clip`'s frames to a nano node one at a time, prompting on frame 0 with `request`;
    return object 1's ObjectMask on every frame after it."""
    from sam2_ros.ros.node import Sam2Node

    overrides = [Parameter("model_size", value="nano"), Parameter("checkpoint", value=str(CHECKPOINT)),
                 Parameter("image_size", value=trained_image_size(CHECKPOINT)),
                 Parameter("image_topic", value="/nano/image")]
    node = Sam2Node("sam2_nano", context=context, parameter_overrides=overrides)
    client = Client(context, node_name="sam2_nano", image_topic="/nano/image")

    def show(index: int):
        """Publish frame `index` (stamped index + 1 s) and wait for the node's masks of it."""
        header = Header(frame_id="camera_optical")
        header.stamp.sec = index + 1
        frame = array_to_image(clip.frames[index], encoding="rgb8", header=header)
        deadline, resend = time.monotonic() + 60, 0.0
        while time.monotonic() < deadline:
            # Sent once, and again only after RESEND_S without an answer (a best-effort frame
            # published before discovery completes is lost): the node tracks every frame it
            # receives, so sending a frame twice would track it twice.
            if time.monotonic() >= resend:
                client.camera.publish(frame)
                resend = time.monotonic() + RESEND_S
            answered = [m for m in client.masks if m.header.stamp.sec == index + 1]
            if answered:
                return answered[-1]
            time.sleep(0.02)
        raise AssertionError(f"timed out after 60 s waiting for the masks of frame {index}")

    with spinning(context, node, client.node):
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        wait_for(lambda: client.add_prompt.service_is_ready(), 60, "the add_prompt service")
        show(0)
        request.object_id = 1
        reply = client.call(client.add_prompt, request)
        assert reply.success, reply.message
        return [next(m for m in show(index).masks if m.object_id == 1) for index in range(1, len(clip.frames))]


@needs_checkpoint
def test_node_follows_a_box_prompted_disc_with_the_nano_checkpoint(context) -> None:
    clip = crossing_clip(seed=0)
    truth = clip.masks[:, 0]  # (T, H, W)
    masks = run_node(context, clip, AddPrompt.Request(box=mask_to_box(truth[0]).tolist()))
    ious = [region_similarity(image_to_mask(m.mask), truth[t]) for t, m in enumerate(masks, 1)]
    assert np.mean(ious) > MIN_MEAN_IOU, np.round(ious, 2).tolist()


@needs_checkpoint
def test_node_reports_the_disc_hidden_under_the_passing_square(context) -> None:
    """Over the node's topics: the disc is reported in view before the square arrives, and as
    `visible=false` with an empty mask on most of the frames the square wholly hides it (the
    share the tracker tests require on held-out hiding clips: more than half; the shipped
    checkpoint flags 3 of these 4). Finding it again is not asserted: see test_nano_tracking."""
    clip = occlusion_clip()
    mask = array_to_image(clip.masks[0, 0].astype(np.uint8) * 255, encoding="mono8", header=Header())
    masks = run_node(context, clip, AddPrompt.Request(mask=mask))
    visible = [m.visible for m in masks]  # frames 1..
    report = f"visible on frames 1.. {np.array(visible, int).tolist()}"
    assert all(visible[:4]), report
    assert sum(not visible[t - 1] for t in HIDDEN) > len(HIDDEN) / 2, report
    assert all(not image_to_mask(m.mask).any() for m in masks if not m.visible), report
