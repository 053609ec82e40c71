"""Behaviour of the shipped nano checkpoint through `StreamingTracker`, as the node runs it.

A prompted moving object is followed on held-out generated clips, and objects hidden by a
passing layer turn `visible=False` and (partly) come back, on held-out hiding clips and in
one hand-built scene. Where the shipped checkpoint falls short,
the test is marked xfail with the measured behaviour rather than weakened; the scene itself is
checked unconditionally.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nano_scenes import FREE_AGAIN, HIDDEN, NUM_FRAMES, occlusion_clip

from sam2_ros.engine import StreamingTracker, build_model, load_checkpoint
from sam2_ros.engine.checkpoint import trained_image_size
from sam2_ros.train.backgrounds import load_backgrounds
from sam2_ros.train.evaluate import HidingTally, heldout_clip, held_still, hiding_clip, track_clip
from sam2_ros.train.metrics import region_similarity
from sam2_ros.train.prompts import PromptKind
from sam2_ros.train.train import BACKGROUNDS

CHECKPOINT = Path(__file__).resolve().parents[1] / "weights" / "sam2_nano.pt"
needs_checkpoint = pytest.mark.skipif(not CHECKPOINT.is_file(), reason=f"{CHECKPOINT} is absent (train it: "
                                      "python -m sam2_ros.train.train)")

IMAGE_SIZE = trained_image_size(CHECKPOINT)  # the size it was trained at (from its .yaml)
NUM_CLIPS = 10  # held-out clips 0..9 of the evaluation, 12 frames each
# "Followed": averaged over the objects of these clips (box prompt on frame 0, scored on frames
# 1..11), J is above MIN_MEAN_J and clearly above holding the true frame-0 mask still. Measured
# here: the shipped checkpoint 0.59; the frame-0 mask held still 0.17; random weights 0.07; the
# previous checkpoint, which marked every object whatever the prompt, 0.09. The bar sits between
# the still mask and the checkpoint, so a model that does not follow the motion fails it.
MIN_MEAN_J = 0.3
STILL_MASK_MARGIN = 2.0  # tracked J must be at least this many times the still mask's
# Hidden and back, on held-out hiding clips 0..9 of the evaluation (14 frames; a larger layer
# passes wholly over one object), mask prompt on frame 0. Measured here: the shipped checkpoint
# flags 71% of the 66 wholly hidden frames and scores J 0.39 once the 8 objects that come back
# are half in view again (3 of them above 0.5); the checkpoint before hiding clips were trained
# on, 27% and 0.19; the frame-0 mask held still, 0% and 0.01. The bars sit between.
HIDING_CLIPS = 10
MIN_HIDDEN_FLAGGED = 0.5
MIN_J_BACK = 0.3
MIN_VISIBLE_KEPT = 0.9  # before the absence, the object must still be reported in view
# The hand scene's motion with the textures and background of seeds 0..19 (the single-scene test
# uses seed 11). The whole behaviour (in view before, every hidden frame flagged, IoU > 0.5 on
# every freed frame) measured here: the shipped checkpoint in 12 of 20, the checkpoint before
# hiding clips were trained on in 7 of 20. The bar: more often than not.
SCENE_SEEDS = 20
HAND_SCENE_NOT_LEARNED = pytest.mark.xfail(
    reason="seed 11, one of the 8 of 20 backgrounds where it fails: the nano checkpoint flags hidden frames "
           "7-9 but not 10, and once the disc slides out from under the square its mask lands on the "
           "background where the disc was on frame 0, not on the disc (measured; see the card's notes)",
    strict=False,
)


@pytest.fixture(scope="module")
def tracker() -> StreamingTracker:
    torch.set_num_threads(1)
    model = build_model("nano", image_size=IMAGE_SIZE)
    load_checkpoint(model, CHECKPOINT)
    return StreamingTracker(model)


@needs_checkpoint
def test_box_prompted_objects_are_followed_on_heldout_clips(tracker):
    rng = np.random.default_rng(0)
    backgrounds = load_backgrounds(BACKGROUNDS)  # as the evaluation: the same clips
    tracked_j, still_j = [], []
    for index in range(NUM_CLIPS):
        clip = heldout_clip(index, num_frames=12, image_size=IMAGE_SIZE, backgrounds=backgrounds)
        tracked = track_clip(tracker, clip, PromptKind.BOX, rng)
        for k in range(clip.masks.shape[1]):
            later = range(1, clip.masks.shape[0])
            tracked_j.append(np.mean([region_similarity(tracked.masks[t, k], clip.masks[t, k]) for t in later]))
            still_j.append(np.mean([region_similarity(clip.masks[0, k], clip.masks[t, k]) for t in later]))
    report = f"tracked J per object {np.round(tracked_j, 2).tolist()}, frame-0 mask held still {np.mean(still_j):.3f}"
    assert np.mean(tracked_j) > MIN_MEAN_J, report
    assert np.mean(tracked_j) > STILL_MASK_MARGIN * np.mean(still_j), report


@needs_checkpoint
def test_objects_hidden_by_a_passing_layer_are_flagged_and_mostly_found_again(tracker):
    backgrounds = load_backgrounds(BACKGROUNDS)
    rng = np.random.default_rng(0)
    tally, still = HidingTally(), HidingTally()
    for index in range(HIDING_CLIPS):
        clip = hiding_clip(index, num_frames=14, image_size=IMAGE_SIZE, backgrounds=backgrounds)
        tally.add(track_clip(tracker, clip, PromptKind.MASK, rng), clip)
        still.add(held_still(clip), clip)
    scores, baseline = tally.summary(), still.summary()
    report = f"tracked {scores}, J once back per object {np.round(tally.j_after, 2).tolist()}; still mask {baseline}"
    assert scores["hidden_frames"] > 20 and scores["objects_back"] >= 5, report  # the clips test what they should
    assert scores["hidden_flagged"] > MIN_HIDDEN_FLAGGED, report
    assert scores["visible_kept"] > MIN_VISIBLE_KEPT, report
    assert scores["J_after"] > MIN_J_BACK and scores["J_after"] > baseline["J_after"] + MIN_J_BACK, report


def test_occlusion_scene_hides_the_object_completely_then_frees_it():
    for seed in range(SCENE_SEEDS):
        clip = occlusion_clip(seed)
        assert clip.visible[:5, 0].all(), seed
        assert not clip.visible[list(HIDDEN), 0].any(), seed
        assert clip.visible[list(FREE_AGAIN), 0].all(), seed
        assert (clip.masks[list(FREE_AGAIN), 0].sum(axis=(1, 2)) == clip.masks[0, 0].sum()).all(), seed  # wholly free


def hides_and_comes_back(tracker: StreamingTracker, seed: int) -> tuple[bool, str]:
    """Track the hand scene of `seed` from its frame-0 mask: is the disc in view on frames 1-4,
    flagged absent on every wholly hidden frame, and back (in view, IoU > 0.5) on every freed one?"""
    clip = occlusion_clip(seed)
    tracked = track_clip(tracker, clip, PromptKind.MASK, np.random.default_rng(0))
    visible = tracked.visible[:, 0]
    ious = [region_similarity(tracked.masks[t, 0], clip.masks[t, 0]) for t in range(NUM_FRAMES)]
    ok = (visible[1:5].all() and not visible[list(HIDDEN)].any() and visible[list(FREE_AGAIN)].all()
          and min(ious[t] for t in FREE_AGAIN) > 0.5)
    return bool(ok), f"seed {seed}: visible per frame {visible.astype(int).tolist()}, IoU {np.round(ious, 2).tolist()}"


@needs_checkpoint
def test_hidden_disc_is_flagged_and_found_again_on_most_backgrounds(tracker):
    outcomes = [hides_and_comes_back(tracker, seed) for seed in range(SCENE_SEEDS)]
    report = "\n".join(text for ok, text in outcomes if not ok)
    assert sum(ok for ok, _ in outcomes) > SCENE_SEEDS / 2, report


@needs_checkpoint
@HAND_SCENE_NOT_LEARNED
def test_occluded_object_turns_invisible_and_comes_back(tracker):
    ok, report = hides_and_comes_back(tracker, seed=11)
    assert ok, report
