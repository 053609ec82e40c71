"""Hand-built scenes for the nano checkpoint's behavioural tests (tracker and node)."""
from __future__ import annotations

import numpy as np

from sam2_ros.train.backgrounds import synthetic_background
from sam2_ros.train.motion import Trajectory
from sam2_ros.train.sprites import Sprite
from sam2_ros.train.textures import random_texture
from sam2_ros.train.video_gen import Clip, Layer, clip_from_layers

NUM_FRAMES = 16
SCENE_SIZE = 256  # frame side in pixels; the tracker resizes frames to the model's input
# The occlusion scene: the disc is wholly hidden on these frames, then wholly free on these.
HIDDEN = (7, 8, 9, 10)
FREE_AGAIN = (13, 14, 15)


def _disc(rng: np.random.Generator) -> Sprite:
    """A textured disc 60 px across on screen (sprites are drawn at scale 0.5, as the generator's)."""
    alpha = np.hypot(*np.mgrid[-60:60, -60:60] + 0.5) < 60
    return Sprite(alpha=alpha, texture=random_texture(rng, alpha.shape))


def _square(rng: np.random.Generator, side: int) -> Sprite:
    return Sprite(alpha=np.ones((side, side), bool), texture=random_texture(rng, (side, side)))


def _still(n: int) -> np.ndarray:
    return np.zeros(n, np.float32)


def occlusion_clip(seed: int = 11, num_frames: int = NUM_FRAMES, disc_speed: float = 2.0) -> Clip:
    """A disc drifting right, and a larger opaque square sliding over it from the left, hiding it
    completely on frames 7-10, then leaving it free from frame 13 on (at the default `disc_speed`,
    pixels per frame). `seed` draws the background and the textures; the motion is the same for
    every seed."""
    rng = np.random.default_rng(seed)
    background = np.repeat(synthetic_background(rng, (SCENE_SIZE, SCENE_SIZE))[None], num_frames, axis=0)
    t, still = np.arange(num_frames, dtype=np.float32), _still(num_frames)
    target = Layer(_disc(rng), Trajectory(center=np.stack([110 + disc_speed * t, np.full_like(t, 128)], 1), angle=still,
                                          scale=still + 0.5))
    occluder = Layer(_square(rng, 280), Trajectory(center=np.stack([-90 + 26 * t, np.full_like(t, 128)], 1),
                                                   angle=still, scale=still + 0.5), tracked=False)
    return clip_from_layers(background, [target, occluder])


def crossing_clip(seed: int = 0, speed: float = 5.0) -> Clip:
    """A disc moving right across the upper half (tracked) and a spinning square moving left across
    the lower half (an untracked distractor); the disc moves its own width in ~12 frames."""
    rng = np.random.default_rng(seed)
    background = np.repeat(synthetic_background(rng, (SCENE_SIZE, SCENE_SIZE))[None], NUM_FRAMES, axis=0)
    t, still = np.arange(NUM_FRAMES, dtype=np.float32), _still(NUM_FRAMES)
    target = Layer(_disc(rng), Trajectory(center=np.stack([70 + speed * t, np.full_like(t, 90)], 1), angle=still,
                                          scale=still + 0.5))
    distractor = Layer(_square(rng, 100), Trajectory(center=np.stack([190 - speed * t, np.full_like(t, 180)], 1),
                                                     angle=0.3 * t, scale=still + 0.5), tracked=False)
    return clip_from_layers(background, [target, distractor])


def leaving_clip(seed: int = 0, num_frames: int = 24) -> Clip:
    """Object 1, a disc, moves right and leaves the view for good after frame 8; object 2, a
    square drifting slowly in the lower half, stays."""
    rng = np.random.default_rng(seed)
    background = np.repeat(synthetic_background(rng, (SCENE_SIZE, SCENE_SIZE))[None], num_frames, axis=0)
    t, still = np.arange(num_frames, dtype=np.float32), _still(num_frames)
    leaving = Layer(_disc(rng), Trajectory(center=np.stack([100 + 22 * t, np.full_like(t, 80)], 1), angle=still,
                                           scale=still + 0.5))
    staying = Layer(_square(rng, 110), Trajectory(center=np.stack([90 + 2 * t, np.full_like(t, 180)], 1),
                                                  angle=still, scale=still + 0.5))
    return clip_from_layers(background, [leaving, staying])
