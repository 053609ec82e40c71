"""Per-object 3D from depth against analytic ground truth, and colour-depth pairing (no ROS)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rgbd_scenes import BOX_SCENE_DEFAULTS, CAMERA, K, WALL, approaching_disc_clip, box_scene, \
    mask_centroid, project, tilted_plane
from sam2_ros.spatial.camera import CameraModelError, Intrinsics, check_same_view, \
    depth_from_metres, depth_in_metres
from sam2_ros.spatial.estimate import EMPTY_MASK, DepthSettings, dilate, erode, estimate_object, \
    resample_mask
from sam2_ros.spatial.pairing import NearestStampBuffer
from sam2_ros.spatial.throttle import ThrottledWarnings

SETTINGS = DepthSettings()
BOX_LOW, BOX_HIGH, BOX_Z = BOX_SCENE_DEFAULTS["low"], BOX_SCENE_DEFAULTS["high"], BOX_SCENE_DEFAULTS["z"]
BOX_CENTROID = np.array([(BOX_LOW[0] + BOX_HIGH[0]) / 2, (BOX_LOW[1] + BOX_HIGH[1]) / 2, BOX_Z])
BOX_SIZE = np.array([BOX_HIGH[0] - BOX_LOW[0], BOX_HIGH[1] - BOX_LOW[1], 0.0])
CENTROID_TOL, SIZE_TOL = 0.005, 0.01  # metres (the bars)


def measured(mask, depth_m, encoding, camera=CAMERA, settings=SETTINGS, **kwargs):
    depth = depth_in_metres(depth_from_metres(depth_m, encoding), encoding)
    return estimate_object(resample_mask(mask, depth.shape), depth, camera, settings, **kwargs)


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_box_face_before_a_wall(encoding) -> None:
    mask, depth = box_scene(BOX_LOW, BOX_HIGH, BOX_Z)
    result = measured(mask, depth, encoding)
    assert result.valid and result.num_points == mask.sum()
    np.testing.assert_allclose(result.centroid, BOX_CENTROID, atol=CENTROID_TOL)
    np.testing.assert_allclose(result.box_size, BOX_SIZE, atol=SIZE_TOL)
    np.testing.assert_allclose(result.box_center, BOX_CENTROID, atol=CENTROID_TOL)


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_tilted_plane(encoding) -> None:
    mask, depth, centroid, size = tilted_plane(np.radians(35), 1.2, rows=(100, 380), cols=(150, 470))
    assert np.ptp(depth[mask]) > 0.5  # a strongly tilted plane, not nearly face-on
    result = measured(mask, depth, encoding)
    assert result.valid and result.num_points == mask.sum()
    np.testing.assert_allclose(result.centroid, centroid, atol=CENTROID_TOL)
    np.testing.assert_allclose(result.box_size, size, atol=SIZE_TOL)


def flying_pixel_ring(mask: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mask grown by 3 pixels whose new pixels carry the wall's depth (outer two) and a
    depth smeared halfway between object and wall (inner one), as depth edges look."""
    grown1, grown3 = dilate(mask, 1), dilate(mask, 3)
    smeared = depth.copy()
    smeared[grown1 & ~mask] = (BOX_Z + WALL) / 2
    return grown3, smeared


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_flying_pixels_on_the_border_do_not_move_the_centroid(encoding) -> None:
    mask, depth = box_scene(BOX_LOW, BOX_HIGH, BOX_Z)
    clean = measured(mask, depth, encoding)
    leaky_mask, smeared = flying_pixel_ring(mask, depth)
    leaky = measured(leaky_mask, smeared, encoding)
    assert np.abs(leaky.centroid - clean.centroid).max() <= CENTROID_TOL
    np.testing.assert_allclose(leaky.box_size, BOX_SIZE, atol=SIZE_TOL)
    # Without the rejection the same ring moves it by centimetres: the test can fail.
    naive = measured(leaky_mask, smeared, encoding, settings=DepthSettings(outlier_mads=0))
    assert np.abs(naive.centroid - clean.centroid).max() > 0.02


def test_depth_at_half_resolution_scales_the_mask() -> None:
    mask, depth = box_scene(BOX_LOW, BOX_HIGH, BOX_Z)
    half = Intrinsics(fx=CAMERA.fx / 2, fy=CAMERA.fy / 2, cx=(CAMERA.cx + 0.5) / 2 - 0.5,
                      cy=(CAMERA.cy + 0.5) / 2 - 0.5, width=320, height=240)
    _, half_depth = box_scene(BOX_LOW, BOX_HIGH, BOX_Z, camera=half)
    result = measured(mask, half_depth, "16UC1", camera=half)
    assert result.valid
    np.testing.assert_allclose(result.centroid, BOX_CENTROID, atol=CENTROID_TOL)
    np.testing.assert_allclose(result.box_size, BOX_SIZE, atol=SIZE_TOL)


@pytest.mark.parametrize("bad", [0.0, np.nan, np.inf, 0.05, 12.0])
def test_all_invalid_depth_inside_the_mask_gives_invalid_zeros(bad) -> None:
    mask, depth = box_scene(BOX_LOW, BOX_HIGH, BOX_Z)
    depth = np.where(mask, bad, depth)
    result = measured(mask, depth, "32FC1")
    assert not result.valid and result.num_points == 0 and "valid depths" in result.problem
    for values in (result.centroid, result.box_center, result.box_size):
        assert np.isfinite(values).all() and not values.any()


def test_an_empty_mask_has_no_3d() -> None:
    _, depth = box_scene(BOX_LOW, BOX_HIGH, BOX_Z)
    result = measured(np.zeros(depth.shape, bool), depth, "32FC1")
    assert not result.valid and result.problem == EMPTY_MASK and not result.centroid.any()


def test_invalid_pixels_are_left_out() -> None:
    mask, depth = box_scene(BOX_LOW, BOX_HIGH, BOX_Z)
    holes = mask & (np.random.default_rng(0).random(mask.shape) < 0.3)
    depth = np.where(holes, np.nan, depth)
    result = measured(mask, depth, "16UC1")  # NaN -> 0 mm in 16UC1
    assert result.num_points == (mask & ~holes).sum()
    np.testing.assert_allclose(result.centroid, BOX_CENTROID, atol=CENTROID_TOL)


def test_cloud_points_lie_on_a_shared_grid() -> None:
    mask, depth = box_scene(BOX_LOW, BOX_HIGH, BOX_Z)
    result = measured(mask, depth, "32FC1", cloud_stride=4)
    us, vs = project(result.points[:, 0], result.points[:, 1], result.points[:, 2])
    np.testing.assert_allclose(np.round(us) % 4, 0)
    np.testing.assert_allclose(np.round(vs) % 4, 0)
    assert abs(len(result.points) - mask.sum() / 16) < mask.sum() / 16 * 0.1
    assert measured(mask, depth, "32FC1").points.shape == (0, 3)


def test_the_generated_rgbd_clip_matches_the_pinhole_model() -> None:
    """The node test's clip: the disc's measured 3D from its true mask equals the generator's."""
    clip, disc_depth = approaching_disc_clip(num_frames=3)
    assert clip.depth.shape == (3, 480, 640)
    for t in range(3):
        truth = clip.masks[t, 0]
        result = estimate_object(truth, clip.depth[t], CAMERA, SETTINGS)
        np.testing.assert_allclose(result.centroid, mask_centroid(truth, disc_depth[t]), atol=1e-3)
        assert result.box_size[0] == pytest.approx(0.24, abs=0.01)  # the disc's diameter
    assert (clip.depth[0][~clip.masks[0, 0]] >= 1.4).all()


def test_erode_and_resample() -> None:
    mask = np.zeros((9, 9), bool)
    mask[2:7, 1:8] = True
    assert erode(mask, 1).sum() == 3 * 5 and erode(mask, 2).sum() == 1 * 3
    assert erode(np.ones((4, 4), bool), 1).sum() == 4  # outside the array is background
    assert dilate(mask, 1).sum() == 7 * 9 and not dilate(mask, 1)[0].any()
    assert dilate(np.ones((4, 4), bool), 2).all()
    big = np.kron(mask, np.ones((2, 2), bool))  # (18, 18)
    assert (resample_mask(big, (9, 9)) == mask).all()
    assert (resample_mask(mask, (18, 18)) == big).all()


def test_intrinsics_are_checked() -> None:
    assert Intrinsics.from_k(K, width=640, height=480) == CAMERA
    with pytest.raises(CameraModelError, match="all zeros"):
        Intrinsics.from_k([0.0] * 9, width=640, height=480)
    with pytest.raises(CameraModelError, match="positive"):
        Intrinsics.from_k([-525.0, 0, 319.5, 0, 525.0, 239.5, 0, 0, 1], width=640, height=480)
    with pytest.raises(CameraModelError, match="9 values"):
        Intrinsics.from_k([1.0] * 4, width=640, height=480)
    with pytest.raises(CameraModelError, match="640x480"):
        CAMERA.check_image(320, 240)
    with pytest.raises(CameraModelError, match="aspect"):
        check_same_view((480, 640), (480, 480))
    check_same_view((480, 640), (240, 320))
    with pytest.raises(CameraModelError, match="encoding"):
        depth_in_metres(np.zeros((2, 2), np.uint8), "8UC1")


# Pairing: colour at 30 Hz; the node pairs each frame with the nearest depth within 15 ms.
PERIOD_NS, TOLERANCE_NS = 33_333_333, 15_000_000
COLOUR = [1_000_000_000 + i * PERIOD_NS for i in range(30)]


def pair(depth_stamps: list[int]) -> list[int | None]:
    """Which depth stamp each colour frame pairs with, the depth frames having arrived first."""
    buffer: NearestStampBuffer[int] = NearestStampBuffer(capacity=30)
    for stamp in depth_stamps:
        buffer.add(stamp, stamp)
    return [None if (m := buffer.match(c, TOLERANCE_NS)) is None else m.value for c in COLOUR]


def test_depth_10_ms_late_pairs_with_its_own_frame() -> None:
    late = [c + 10_000_000 for c in COLOUR]
    assert pair(late) == late
    early = [c - 10_000_000 for c in COLOUR]
    assert pair(early) == early


def test_depth_missing_every_other_frame_leaves_those_frames_unpaired() -> None:
    kept = COLOUR[::2]
    assert pair(kept) == [c if i % 2 == 0 else None for i, c in enumerate(COLOUR)]


def test_a_constant_offset_beyond_the_tolerance() -> None:
    # Depth on another clock (5 s off): nothing pairs.
    assert pair([c + 5_000_000_000 for c in COLOUR]) == [None] * len(COLOUR)
    # Half a period off: every colour frame is 16.7 ms from two depth frames, beyond 15 ms.
    assert pair([c + PERIOD_NS // 2 for c in COLOUR]) == [None] * len(COLOUR)
    # 20 ms late: the previous frame's depth is only 13.3 ms early, so each frame pairs with
    # it (the nearest stamp within the tolerance); the first frame has none.
    late = [c + 20_000_000 for c in COLOUR]
    assert pair(late) == [None] + late[:-1]


def test_the_buffer_forgets_the_oldest_and_prefers_the_newer_on_a_tie() -> None:
    buffer: NearestStampBuffer[str] = NearestStampBuffer(capacity=2)
    for stamp, value in [(0, "a"), (10, "b"), (20, "c")]:
        buffer.add(stamp, value)
    assert len(buffer) == 2 and buffer.nearest(0).value == "b"
    assert buffer.nearest(15).value == "c"
    assert buffer.match(40, 10) is None and buffer.match(30, 10).value == "c"


def test_warnings_are_throttled_per_kind_and_counted() -> None:
    said, now = [], [0.0]
    warnings = ThrottledWarnings(said.append, kinds=("a", "b", "c"), period=5.0,
                                 clock=lambda: now[0])
    for step in range(10):
        now[0] = step
        warnings.warn("a", f"a{step}")
        warnings.warn("b", f"b{step}")
    assert said == ["a0", "b0", "a5", "b5"]
    assert warnings.snapshot() == {"a": 10, "b": 10, "c": 0}


def test_bench_depth_command(tmp_path, capsys) -> None:
    from sam2_ros.bench.cli import main

    out = tmp_path / "depth.json"
    assert main(["depth", "--iterations", "3", "--warmup", "1", "--json", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["command"] == "depth" and document["settings"]["valid_objects"] == 4
    assert set(document["runners"]) == {"ours", "ours+cloud", "reference"}
    for runner in document["runners"].values():
        assert runner["wall_ms"]["n"] == 3 and runner["wall_ms"]["median"] > 0
        assert runner["cpu_ms"]["n"] == 3
    wall = {name: r["wall_ms"]["median"] for name, r in document["runners"].items()}
    assert document["ratios"]["ours"] == pytest.approx(wall["reference"] / wall["ours"])
    assert "median" in capsys.readouterr().out
    assert main(["depth", "--objects", "0"]) == 2
    assert "--objects >= 1" in capsys.readouterr().err
