"""Behaviour of the shipped nano checkpoint through `StreamingTracker`, as the node runs it.

A prompted moving object is followed on held-out generated clips, and an object hidden by
a passing layer turns `visible=False` and comes back. The checkpoint trained so far does
neither (measured numbers below and in weights/SAM2_NANO_CARD.md), so those two tests are
marked xfail rather than weakened; the scene itself is checked unconditionally.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sam2_ros.engine import StreamingTracker, build_model, load_checkpoint
from sam2_ros.train.backgrounds import load_backgrounds, synthetic_background
from sam2_ros.engine.checkpoint import trained_image_size
from sam2_ros.train.evaluate import heldout_clip, track_clip
from sam2_ros.train.metrics import region_similarity
from sam2_ros.train.motion import Trajectory
from sam2_ros.train.prompts import PromptKind
from sam2_ros.train.sprites import Sprite
from sam2_ros.train.textures import random_texture
from sam2_ros.train.train import BACKGROUNDS
from sam2_ros.train.video_gen import Clip, Layer, clip_from_layers

CHECKPOINT = Path(__file__).resolve().parents[1] / "weights" / "sam2_nano.pt"
needs_checkpoint = pytest.mark.skipif(not CHECKPOINT.is_file(), reason=f"{CHECKPOINT} is absent (train it: "
                                      "python -m sam2_ros.train.train)")

IMAGE_SIZE = trained_image_size(CHECKPOINT)  # the size it was trained at (from its .yaml)
NUM_CLIPS = 5  # held-out clips 0..4 of the evaluation, 12 frames each
# "Followed": on average over the objects, the predicted mask overlaps the truth by more than
# half on the tracked frames. There is no trained score to put the bar under: measured on
# these 5 clips (box prompt, frames 1..11), the shipped checkpoint reaches mean J 0.084 and
# random weights 0.068 (they predict "absent" everywhere, which scores 1 on the frames where
# an object is out of view); on the card's 30 clips, 0.131 against 0.053, the same for mask,
# box and click prompts. So the checkpoint does not track yet, and the tests below are
# expected to fail until a better one is trained (see weights/SAM2_NANO_CARD.md).
MIN_MEAN_J = 0.5
NOT_TRACKING_YET = pytest.mark.xfail(
    reason="the CPU-trained nano checkpoint does not track yet: held-out mean J 0.084 here (random "
           "weights 0.068); it loses the object after the prompted frame and never flags the hidden "
           "one absent (weights/SAM2_NANO_CARD.md)",
    strict=False,
)


@pytest.fixture(scope="module")
def tracker() -> StreamingTracker:
    torch.set_num_threads(1)
    model = build_model("nano", image_size=IMAGE_SIZE)
    load_checkpoint(model, CHECKPOINT)
    return StreamingTracker(model)


@needs_checkpoint
@NOT_TRACKING_YET
def test_box_prompted_objects_are_followed_on_heldout_clips(tracker):
    rng = np.random.default_rng(0)
    backgrounds = load_backgrounds(BACKGROUNDS)  # as the evaluation: the same clips
    per_object = []
    for index in range(NUM_CLIPS):
        clip = heldout_clip(index, num_frames=12, image_size=IMAGE_SIZE, backgrounds=backgrounds)
        tracked = track_clip(tracker, clip, PromptKind.BOX, rng)
        for k in range(clip.masks.shape[1]):
            per_object.append(np.mean([region_similarity(tracked.masks[t, k], clip.masks[t, k])
                                       for t in range(1, clip.masks.shape[0])]))
    assert np.mean(per_object) > MIN_MEAN_J, per_object


# The occlusion scene: a textured shape drifting right, and a larger opaque square sliding
# over it from the left, hiding it completely on frames 7-10, then leaving it free from 13 on.
NUM_FRAMES = 16
SCENE_SIZE = 256  # frame side in pixels; the tracker resizes frames to the model's input
HIDDEN = (7, 8, 9, 10)
FREE_AGAIN = (13, 14, 15)


def occlusion_clip() -> Clip:
    rng = np.random.default_rng(11)
    background = np.repeat(synthetic_background(rng, (SCENE_SIZE, SCENE_SIZE))[None], NUM_FRAMES, axis=0)
    t = np.arange(NUM_FRAMES, dtype=np.float32)
    still = np.zeros(NUM_FRAMES, np.float32)
    # Sprites are drawn at scale 0.5, as the generator's supersampled ones.
    disc = np.hypot(*np.mgrid[-60:60, -60:60] + 0.5) < 60  # 60 px across on screen
    target = Layer(Sprite(alpha=disc, texture=random_texture(rng, disc.shape)),
                   Trajectory(center=np.stack([110 + 2 * t, np.full_like(t, 128)], 1), angle=still, scale=still + 0.5))
    cover = Sprite(alpha=np.ones((280, 280), bool), texture=random_texture(rng, (280, 280)))
    occluder = Layer(cover, Trajectory(center=np.stack([-90 + 26 * t, np.full_like(t, 128)], 1), angle=still,
                                       scale=still + 0.5), tracked=False)
    return clip_from_layers(background, [target, occluder])


def test_occlusion_scene_hides_the_object_completely_then_frees_it():
    clip = occlusion_clip()
    assert clip.visible[:5, 0].all()
    assert not clip.visible[list(HIDDEN), 0].any()
    assert clip.visible[list(FREE_AGAIN), 0].all()
    assert (clip.masks[list(FREE_AGAIN), 0].sum(axis=(1, 2)) == clip.masks[0, 0].sum()).all()  # wholly free


@needs_checkpoint
@NOT_TRACKING_YET
def test_occluded_object_turns_invisible_and_comes_back(tracker):
    clip = occlusion_clip()
    tracked = track_clip(tracker, clip, PromptKind.MASK, np.random.default_rng(0))
    visible = tracked.visible[:, 0]
    ious = [region_similarity(tracked.masks[t, 0], clip.masks[t, 0]) for t in range(NUM_FRAMES)]
    report = f"visible per frame {visible.astype(int).tolist()}, IoU per frame {np.round(ious, 2).tolist()}"
    assert visible[1:5].all(), report  # followed before the occluder arrives
    assert not visible[list(HIDDEN)].any(), report
    assert visible[list(FREE_AGAIN)].all(), report
    assert min(ious[t] for t in FREE_AGAIN) > 0.5, report
