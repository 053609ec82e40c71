"""Procedural clips: determinism, exact masks, occlusion order, leaving and re-entering."""
import time

import numpy as np
import pytest
from PIL import Image

from sam2_ros.train.backgrounds import load_backgrounds, random_crop, synthetic_background
from sam2_ros.train.motion import MotionConfig, Trajectory
from sam2_ros.train.sprites import Pose, Sprite, place, silhouette
from sam2_ros.train.video_gen import Difficulty, Layer, clip_from_layers, clip_strip, generate_clip

SIZE = (64, 80)
# No photometric changes, so frame pixels can be compared with what was drawn.
CLEAN = Difficulty(brightness=0.0, blur_prob=0.0, max_noise=0.0, camera_pan=0.0)


def solid_sprite(h: int, w: int, color: tuple[int, int, int]) -> Sprite:
    return Sprite(alpha=np.ones((h, w), bool), texture=np.broadcast_to(np.uint8(color), (h, w, 3)).copy())


def still(pose: Pose, num_frames: int) -> Trajectory:
    return Trajectory(center=np.tile([pose.cx, pose.cy], (num_frames, 1)).astype(np.float32),
                      angle=np.full(num_frames, pose.angle, np.float32),
                      scale=np.full(num_frames, pose.scale, np.float32))


def box_mask(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros(SIZE, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_same_seed_same_clip_and_different_seed_differs():
    a = generate_clip(np.random.default_rng(7), num_frames=4, size=SIZE)
    b = generate_clip(np.random.default_rng(7), num_frames=4, size=SIZE)
    c = generate_clip(np.random.default_rng(8), num_frames=4, size=SIZE)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert not np.array_equal(a.frames, c.frames)


@pytest.mark.parametrize("seed", range(6))
def test_clip_layout_and_disjoint_masks(seed):
    clip = generate_clip(np.random.default_rng(seed), num_frames=5, size=SIZE, num_objects=(2, 3))
    num_objects = clip.masks.shape[1]
    assert clip.frames.shape == (5, *SIZE, 3) and clip.frames.dtype == np.uint8
    assert clip.masks.shape == (5, num_objects, *SIZE) and clip.masks.dtype == bool
    assert 2 <= num_objects <= 3
    np.testing.assert_array_equal(clip.obj_ids, np.arange(1, num_objects + 1))
    np.testing.assert_array_equal(clip.visible, clip.masks.any(axis=(2, 3)))
    assert clip.masks.sum(axis=1).max() <= 1, "a pixel belongs to two objects"
    first_area = clip.masks[0].sum(axis=(1, 2))
    assert first_area.min() >= Difficulty().min_first_area * SIZE[0] * SIZE[1]


def test_known_rectangle_is_exact():
    background = np.zeros((3, *SIZE, 3), np.uint8)
    clip = clip_from_layers(background, [Layer(solid_sprite(20, 30, (200, 10, 50)), still(Pose(40, 30), 3))])
    expected = box_mask(20, 40, 25, 55)  # centre (x=40, y=30), 30 wide, 20 tall
    for t in range(3):
        np.testing.assert_array_equal(clip.masks[t, 0], expected)
        assert (clip.frames[t][expected] == [200, 10, 50]).all()
        assert (clip.frames[t][~expected] == 0).all()


def test_rotation_and_scale_are_exact():
    sprite = solid_sprite(10, 16, (255, 255, 255))
    turned = place(sprite, Pose(40, 30, angle=np.pi / 2), SIZE)
    rows, cols, alpha, _ = turned
    assert alpha.all() and alpha.shape == (16, 10)  # a quarter turn swaps width and height
    rows, cols, alpha, _ = place(sprite, Pose(40, 30, scale=2.0), SIZE)
    mask = np.zeros(SIZE, bool)
    mask[rows, cols] = alpha
    np.testing.assert_array_equal(mask, box_mask(20, 40, 24, 56))


def test_top_layer_wins_where_objects_overlap():
    background = np.zeros((1, *SIZE, 3), np.uint8)
    bottom = Layer(solid_sprite(20, 20, (255, 0, 0)), still(Pose(30, 30), 1))
    top = Layer(solid_sprite(20, 20, (0, 0, 255)), still(Pose(40, 30), 1))
    clip = clip_from_layers(background, [bottom, top])
    bottom_box, top_box = box_mask(20, 40, 20, 40), box_mask(20, 40, 30, 50)
    np.testing.assert_array_equal(clip.masks[0, 1], top_box)
    np.testing.assert_array_equal(clip.masks[0, 0], bottom_box & ~top_box)
    assert (clip.frames[0][bottom_box & top_box] == [0, 0, 255]).all()


def test_untracked_layer_occludes_but_is_not_an_object():
    background = np.zeros((1, *SIZE, 3), np.uint8)
    tracked = Layer(solid_sprite(20, 20, (255, 0, 0)), still(Pose(30, 30), 1))
    hiding = Layer(solid_sprite(30, 30, (0, 255, 0)), still(Pose(30, 30), 1), tracked=False)
    clip = clip_from_layers(background, [tracked, hiding])
    assert clip.masks.shape[1] == 1 and not clip.visible[0, 0]


@pytest.mark.parametrize("seed", range(8))
def test_objects_leave_and_come_back_when_forced(seed):
    difficulty = Difficulty(leave_prob=1.0, occlusion_prob=0.0, num_distractors=(0, 0))
    clip = generate_clip(np.random.default_rng(seed), num_frames=8, size=SIZE, num_objects=(1, 1),
                         difficulty=difficulty)
    visible = clip.visible[:, 0]
    assert visible[0] and visible[-1], visible
    assert not visible.all(), visible


def test_objects_stay_in_view_when_leaving_is_off():
    difficulty = Difficulty(leave_prob=0.0, occlusion_prob=0.0, num_distractors=(0, 0))
    for seed in range(8):
        clip = generate_clip(np.random.default_rng(seed), num_frames=8, size=SIZE, num_objects=(1, 2),
                             difficulty=difficulty)
        assert clip.visible.all()


def test_a_hider_wholly_covers_the_object_then_mostly_frees_it():
    """hide_prob=1: an untracked layer passes over the one object, which is in view on frame 0,
    wholly hidden on a later frame, and (in most clips) in view again afterwards."""
    difficulty = Difficulty(leave_prob=0.0, occlusion_prob=0.0, num_distractors=(0, 0), hide_prob=1.0)
    back = 0
    for seed in range(10):
        clip = generate_clip(np.random.default_rng(seed), num_frames=10, size=SIZE, num_objects=(1, 1),
                             difficulty=difficulty)
        visible = clip.visible[:, 0]
        assert clip.masks.shape[1] == 1  # the hider is not an object
        assert visible[0] and not visible.all(), visible
        back += bool(visible[int(np.argmin(visible)):].any())
    assert back >= 6, back


def test_objects_move_rotate_and_scale():
    clip = generate_clip(np.random.default_rng(3), num_frames=8, size=SIZE, num_objects=(1, 1),
                         difficulty=Difficulty(motion=MotionConfig(max_speed=0.1), leave_prob=0.0))
    assert not np.array_equal(clip.masks[0], clip.masks[-1])


def test_single_frame_clips_for_image_training():
    clip = generate_clip(np.random.default_rng(0), num_frames=1, size=SIZE,
                         difficulty=Difficulty(leave_prob=1.0))
    assert clip.frames.shape[0] == 1 and clip.visible.all()


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_frames"):
        generate_clip(np.random.default_rng(0), num_frames=0, size=SIZE)
    with pytest.raises(ValueError, match="poses"):
        clip_from_layers(np.zeros((2, *SIZE, 3), np.uint8),
                         [Layer(solid_sprite(4, 4, (1, 1, 1)), still(Pose(5, 5), 3))])


@pytest.mark.parametrize("kind", ["ellipse", "polygon", "star", "rounded_rect", "glyph"])
def test_every_silhouette_kind_draws_something(kind):
    mask = silhouette(np.random.default_rng(0), 48, kind)
    assert mask.shape == (48, 48) and 0 < mask.mean() < 1


def test_photo_backgrounds_are_used(tmp_path):
    photo = np.zeros((90, 120, 3), np.uint8)
    photo[..., 1] = 120
    Image.fromarray(photo).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("not an image")
    photos = load_backgrounds(tmp_path)
    assert len(photos) == 1 and photos[0].shape == (90, 120, 3)
    difficulty = Difficulty(photo_prob=1.0, num_distractors=(0, 0), brightness=0.0, blur_prob=0.0, max_noise=0.0)
    clip = generate_clip(np.random.default_rng(0), num_frames=2, size=SIZE, backgrounds=photos,
                         difficulty=difficulty)
    background = clip.frames[~clip.masks.any(axis=1)]  # (N, 3)
    # Only the constant colour tint remains: the whole background is the photo's one colour.
    colors = np.unique(background, axis=0)
    assert colors.shape[0] == 1, colors
    red, green, blue = colors[0]
    assert red == 0 and blue == 0 and abs(int(green) - 120) <= 0.05 * 120 + 1


def test_random_crop_keeps_content_and_size():
    rng = np.random.default_rng(0)
    ramp = np.tile(np.arange(200, dtype=np.uint8)[None, :, None], (100, 1, 3))  # brightens left to right
    crop = random_crop(rng, ramp, (32, 48))
    assert crop.shape == (32, 48, 3)
    row = crop[16, :, 0].astype(int)
    assert (np.diff(row) >= 0).all() or (np.diff(row) <= 0).all()  # mirrored or not, still monotonic
    assert synthetic_background(rng, (32, 48)).shape == (32, 48, 3)
    with pytest.raises(FileNotFoundError):
        load_backgrounds("/nonexistent/folder")


def test_generation_speed(capsys):
    rng = np.random.default_rng(0)
    generate_clip(rng)  # warm caches (font loading)
    count, start = 10, time.perf_counter()
    clips = [generate_clip(rng, num_frames=8, size=(256, 256)) for _ in range(count)]
    rate = count / (time.perf_counter() - start)
    assert clip_strip(clips[0]).shape == (512, 8 * 256, 3)
    with capsys.disabled():
        print(f"\ngenerate_clip 256x256x8: {rate:.1f} clips/s")
