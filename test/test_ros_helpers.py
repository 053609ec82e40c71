"""The ROS layer's pure helpers: no rclpy.init(), no model (except model loading)."""
from __future__ import annotations

import dataclasses
import importlib.util
import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image as PILImage

pytest.importorskip("sam2_ros.msg", reason="msg/srv not built: run bash scripts/setup.sh and "
                    "source scripts/env.sh")

from geometry_msgs.msg import Point  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from sam2_ros.ros import conversions, model_loading, parameters, services, visualization  # noqa: E402,E501
from sam2_ros.ros.diagnostics import (SessionFigures, TrackingStats,  # noqa: E402
                                       diagnostic_status)
from sam2_ros.ros.frame_buffer import FrameBuffer, FrameNotBufferedError  # noqa: E402
from sam2_ros.ros.worker import Worker  # noqa: E402
from sam2_ros.srv import AddPrompt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)


def raw_image(rgb: np.ndarray, encoding: str, *, pad: int = 0) -> Image:
    """Build a camera message the way a driver would (optionally with row padding)."""
    pixels = {
        "rgb8": rgb, "bgr8": rgb[:, :, ::-1],
        "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]),
        "bgra8": np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 7, np.uint8)]),
        "mono8": rgb[:, :, :1],
    }[encoding]
    height, width, channels = pixels.shape
    rows = np.zeros((height, width * channels + pad), np.uint8)
    rows[:, :width * channels] = pixels.reshape(height, -1)
    return Image(height=height, width=width, encoding=encoding, step=rows.shape[1],
                 data=rows.tobytes())


# conversions ---------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", conversions.SUPPORTED_ENCODINGS)
@pytest.mark.parametrize("pad", [0, 5])
def test_image_to_rgb_every_encoding(encoding: str, pad: int) -> None:
    rgb = RNG.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    out = conversions.image_to_rgb(raw_image(rgb, encoding, pad=pad))
    expected = np.repeat(rgb[:, :, :1], 3, axis=2) if encoding == "mono8" else rgb
    assert out.shape == (7, 9, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("change, message", [
    (dict(encoding="yuv422"), "unsupported encoding 'yuv422'"),
    (dict(encoding="16UC1"), "unsupported encoding '16UC1'"),
    (dict(data=bytes(7 * 27 - 1)), "data has 188 bytes; expected step * height = 27 * 7 = 189"),
    (dict(step=20), "step 20 is shorter than a rgb8 row of width 9 (27 bytes)"),
    (dict(width=0, height=0, step=0, data=b""), "empty image: 0x0"),
    (dict(width=20000, height=2, step=60000, data=b""), "image too large: 20000x2"),
])
def test_image_to_rgb_rejects_bad_messages(change: dict, message: str) -> None:
    msg = raw_image(np.zeros((7, 9, 3), np.uint8), "rgb8")
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(conversions.ImageConversionError, match=message.replace("*", r"\*")
                       .replace("(", r"\(").replace(")", r"\)")):
        conversions.image_to_rgb(msg)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_compressed_to_rgb(fmt: str) -> None:
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[4:12, 6:18] = (200, 30, 90)
    buffer = io.BytesIO()
    PILImage.fromarray(rgb).save(buffer, format=fmt)
    out = conversions.compressed_to_rgb(CompressedImage(format=fmt.lower(),
                                                        data=buffer.getvalue()))
    assert out.shape == (16, 24, 3)
    error = np.abs(out.astype(int) - rgb)
    if fmt == "PNG":
        assert error.max() == 0
    else:  # lossy: chroma subsampling blurs edges, the inside keeps its colour
        assert error.mean() < 10 and error[7:9, 10:14].max() < 25


def test_compressed_to_rgb_rejects_garbage_and_empty() -> None:
    with pytest.raises(conversions.ImageConversionError, match="cannot decode"):
        conversions.compressed_to_rgb(CompressedImage(format="jpeg", data=b"not a jpeg"))
    with pytest.raises(conversions.ImageConversionError, match="empty compressed image"):
        conversions.compressed_to_rgb(CompressedImage(format="jpeg", data=b""))


def test_mask_round_trip_and_mono16_layout() -> None:
    mask = RNG.random((5, 6)) > 0.5
    msg = conversions.mask_to_image(mask, header=Header(frame_id="cam"))
    assert (msg.encoding, msg.step, msg.header.frame_id) == ("mono8", 6, "cam")
    np.testing.assert_array_equal(conversions.image_to_mask(msg), mask)
    labels = np.array([[0, 1], [300, 65535]], np.uint16)
    msg = conversions.array_to_image(labels, encoding="mono16", header=Header())
    assert msg.step == 4 and msg.is_bigendian == 0
    np.testing.assert_array_equal(np.frombuffer(msg.data, "<u2").reshape(2, 2), labels)
    with pytest.raises(conversions.ImageConversionError, match=r"mono16 needs a \(H, W\) uint16"):
        conversions.array_to_image(labels.astype(np.int32), encoding="mono16", header=Header())
    with pytest.raises(conversions.ImageConversionError, match="unsupported encoding 'rgb8'"):
        conversions.image_to_mask(raw_image(np.zeros((2, 2, 3), np.uint8), "rgb8"))


# visualization -------------------------------------------------------------------------
def test_bounding_box_and_label_image() -> None:
    first = np.zeros((10, 12), bool)
    first[2:5, 3:9] = True
    second = np.zeros((10, 12), bool)
    second[4:8, 7:11] = True
    assert visualization.bounding_box(first) == (3, 2, 8, 4)
    assert visualization.bounding_box(np.zeros((3, 3), bool)) is None
    labels = visualization.label_image({7: second, 2: first}, height=10, width=12)
    assert labels.dtype == np.uint16
    assert labels[3, 4] == 2 and labels[4, 8] == 7 and labels[0, 0] == 0  # larger id wins
    assert set(np.unique(labels)) == {0, 2, 7}
    with pytest.raises(ValueError, match="object id 300 does not fit a uint8 label image"):
        visualization.label_image({300: first}, height=10, width=12, dtype=np.uint8)


def test_overlay_tints_only_the_masks() -> None:
    frame = np.full((40, 50, 3), 100, np.uint8)
    mask = np.zeros((40, 50), bool)
    mask[10:30, 10:40] = True
    out = visualization.overlay(frame, {3: mask})
    colour = np.asarray(visualization.object_colour(3))
    np.testing.assert_allclose(out[20, 25], np.round(0.5 * 100 + 0.5 * colour), atol=1)
    np.testing.assert_array_equal(out[0:5, 0:5], frame[0:5, 0:5])  # far from the box
    assert visualization.object_colour(3) != visualization.object_colour(4)


def test_box_markers() -> None:
    header = Header(frame_id="cam")
    markers = visualization.box_markers(header, {1: (0, 0, 99, 49), 4: (10, 10, 20, 20)},
                                        width=100, height=50).markers
    assert markers[0].action == Marker.DELETEALL
    assert [m.type for m in markers[1:]] == [Marker.LINE_STRIP, Marker.TEXT_VIEW_FACING] * 2
    outline = markers[1]
    assert outline.header.frame_id == "cam" and len(outline.points) == 5
    assert outline.points[0].x == pytest.approx(-0.5) and outline.points[2].x == pytest.approx(0.49)
    assert markers[2].text == "1" and markers[4].text == "4"


# parameters ----------------------------------------------------------------------------
def test_yaml_defaults_cover_every_parameter_and_validate() -> None:
    document = yaml.safe_load((ROOT / "config" / "sam2.yaml").read_text())
    values = document["/**"]["ros__parameters"]
    names = [field.name for field in dataclasses.fields(parameters.NodeConfig)]
    assert sorted(values) == sorted(names)
    assert sorted(parameters.SPECS) == sorted(names)
    config = parameters.validate(parameters.NodeConfig(**values))
    assert config == parameters.NodeConfig()  # the YAML states the code's defaults


def test_validate_lists_every_problem() -> None:
    bad = parameters.NodeConfig(backend="tensorflow", dtype="int8", image_size=100,
                                device="gpu0", frame_buffer_length=0, image_topic="")
    with pytest.raises(parameters.ParameterError) as caught:
        parameters.validate(bad)
    message = str(caught.value)
    for part in ["backend='tensorflow': expected one of ['torch', 'onnxruntime', 'tensorrt']",
                 "dtype='int8'", "image_size=100: expected 64..2048 in steps of 32",
                 "device='gpu0'", "frame_buffer_length=0", "image_topic is empty"]:
        assert part in message


def test_descriptor_carries_ranges_and_choices() -> None:
    size = parameters.descriptor("image_size")
    assert size.integer_range[0].from_value == 64 and size.integer_range[0].step == 32
    assert "torch" in parameters.descriptor("backend").additional_constraints
    assert parameters.descriptor("service_timeout").floating_point_range[0].to_value == 3600.0


# services ------------------------------------------------------------------------------
def prompt_request(**fields) -> AddPrompt.Request:
    request = AddPrompt.Request(object_id=1, points=[Point(x=3.0, y=4.0)], labels=[1])
    for key, value in fields.items():
        setattr(request, key, value)
    return request


def test_prompt_from_request_good() -> None:
    request = prompt_request(box=[1.0, 2.0, 5.0, 6.0])
    request.stamp.sec, request.stamp.nanosec = 12, 5
    prompt = services.prompt_from_request(request, max_object_id=65535)
    np.testing.assert_array_equal(prompt.points, [[3.0, 4.0]])
    np.testing.assert_array_equal(prompt.labels, [1])
    np.testing.assert_array_equal(prompt.box, [1, 2, 5, 6])
    assert prompt.mask is None and prompt.clear_old and prompt.stamp_ns == 12_000_000_005


@pytest.mark.parametrize("fields, message", [
    (dict(object_id=0), "object_id must be in 1..65535"),
    (dict(object_id=70000), "object_id must be in 1..65535"),
    (dict(labels=[1, 0]), "need one label per point: 1 points, 2 labels"),
    (dict(labels=[2]), "labels must be 1 .* or 0"),
    (dict(points=[Point(x=float("nan"), y=1.0)]), "points contain NaN"),
    (dict(box=[1.0, 2.0, 3.0]), "box needs 4 values"),
    (dict(box=[1.0, 2.0, float("inf"), 3.0]), "box contains NaN or infinity"),
    (dict(points=[], labels=[]), "empty prompt"),
    (dict(box=[0.0, 0.0, 2.0, 2.0], clear_old=False), "use clear_old=true with a box"),
])
def test_prompt_from_request_rejects(fields: dict, message: str) -> None:
    with pytest.raises(services.RequestError, match=message):
        services.prompt_from_request(prompt_request(**fields), max_object_id=65535)


def test_prompt_mask_checks() -> None:
    mask = conversions.mask_to_image(np.eye(4, dtype=bool), header=Header())
    prompt = services.prompt_from_request(prompt_request(points=[], labels=[], mask=mask),
                                          max_object_id=255)
    np.testing.assert_array_equal(prompt.mask, np.eye(4, dtype=bool))
    with pytest.raises(services.RequestError, match="either a mask or points/box"):
        services.prompt_from_request(prompt_request(mask=mask), max_object_id=255)
    bad = conversions.mask_to_image(np.eye(4, dtype=bool), header=Header())
    bad.data = bytes(3)
    with pytest.raises(conversions.ImageConversionError, match="data has 3 bytes"):
        services.prompt_from_request(prompt_request(points=[], labels=[], mask=bad),
                                     max_object_id=255)
    with pytest.raises(services.RequestError, match="1..255"):
        services.prompt_from_request(prompt_request(object_id=256), max_object_id=255)


# frame buffer --------------------------------------------------------------------------
def header_at(sec: int) -> Header:
    header = Header(frame_id="cam")
    header.stamp.sec = sec
    return header


def test_frame_buffer_lookup_and_eviction() -> None:
    frames = FrameBuffer(capacity=3, max_bytes=2**20)
    for sec in range(1, 6):
        frames.append(header_at(sec), np.full((2, 2, 3), sec, np.uint8), received=float(sec))
    assert len(frames) == 3 and frames.newest().stamp_ns == 5_000_000_000
    assert frames.find(4_000_000_000).rgb[0, 0, 0] == 4
    assert frames.oldest_seq() == frames.find(3 * 10**9).seq and frames.nbytes == 3 * 12
    with pytest.raises(FrameNotBufferedError,
                       match=r"stamp 1.000000000; the buffer holds 3 frames with stamps "
                             r"3.000000000 .. 5.000000000"):
        frames.find(1_000_000_000)


def test_frame_buffer_is_bounded_in_bytes_at_any_resolution() -> None:
    """A 4000x3000 camera fills the byte budget, not frame_buffer_length: 36 MB frames
    under a 100 MB budget keep 2 frames; the newest is kept even when it alone is over."""
    big = np.zeros((3000, 4000, 3), np.uint8)  # one shared array: no 36 MB per frame here
    frames = FrameBuffer(capacity=30, max_bytes=100 * 10**6)
    for sec in range(1, 11):
        frames.append(header_at(sec), big, received=float(sec))
    assert len(frames) == 2 and frames.nbytes == 2 * big.nbytes <= 100 * 10**6
    assert frames.newest().stamp_ns == 10 * 10**9
    tiny = FrameBuffer(capacity=30, max_bytes=10)
    tiny.append(header_at(1), big, received=1.0)
    assert len(tiny) == 1 and tiny.newest().rgb is big


def test_frame_buffer_drops_frames_whose_stamp_is_not_newer() -> None:
    """Both image inputs set: each frame comes twice with one stamp; the copy is refused
    (before decoding, by `accepts`), as is an out-of-order one. Unstamped frames and a
    stamp far back (a looped bag) are accepted."""
    frames = FrameBuffer(capacity=30, max_bytes=2**20)
    rgb = np.zeros((2, 2, 3), np.uint8)
    for sec in (1, 2, 3):
        assert frames.accepts(header_at(sec))
        frames.append(header_at(sec), rgb, received=0.0)
        assert not frames.accepts(header_at(sec))  # the compressed copy
    assert frames.append(header_at(2), rgb, received=0.0) is None  # out of order
    assert frames.stale == 4 and len(frames) == 3
    late = header_at(3)
    late.stamp.nanosec = 1
    assert frames.append(late, rgb, received=0.0) is not None  # newer by 1 ns
    for _ in range(2):
        assert frames.append(Header(), rgb, received=0.0) is not None  # unstamped
    assert frames.append(header_at(1), rgb, received=0.0) is not None  # 2 s back: restart
    assert frames.stale == 4 and len(frames) == 7
    assert frames.find(10**9).seq == frames.newest().seq  # the newest frame with the stamp


# worker --------------------------------------------------------------------------------
def test_worker_runs_jobs_before_frames_and_counts_drops() -> None:
    handled: list[int] = []
    errors: list[BaseException] = []
    gate = threading.Event()

    def handle(item: int) -> None:
        gate.wait(5)
        if item < 0:
            raise RuntimeError("bad frame")
        handled.append(item)

    worker: Worker[int] = Worker(handle_item=handle, on_error=errors.append)
    worker.start()
    try:
        worker.offer(1)  # taken at once; blocks on the gate
        time.sleep(0.2)
        worker.offer(2)
        worker.offer(3)  # replaces 2
        job = worker.submit(lambda: handled.copy())
        failing = worker.submit(lambda: 1 / 0)
        gate.set()
        assert job.result(timeout=5) == [1]  # the job ran before frame 3
        with pytest.raises(ZeroDivisionError):
            failing.result(timeout=5)
        worker.offer(-1)
        deadline = time.monotonic() + 5
        while not errors and time.monotonic() < deadline:
            time.sleep(0.01)
        assert handled == [1, 3] and worker.dropped == 1
        assert [str(e) for e in errors] == ["bad frame"]
    finally:
        worker.stop()
    with pytest.raises(RuntimeError, match="not running"):
        worker.submit(lambda: None).result(timeout=1)


def test_worker_stop_with_a_cancelled_job_fails_the_others() -> None:
    """A service call that timed out cancels its queued job; stop() must skip it (it raised
    InvalidStateError) and still fail every job queued behind it."""
    gate = threading.Event()
    worker: Worker[int] = Worker(handle_item=lambda item: None, on_error=lambda error: None)
    worker.start()
    running = worker.submit(lambda: gate.wait(10))
    cancelled, behind = worker.submit(lambda: 1), worker.submit(lambda: 2)
    assert cancelled.cancel()
    threading.Timer(0.3, gate.set).start()
    worker.stop()
    assert running.result(timeout=1) is True and cancelled.cancelled()
    with pytest.raises(RuntimeError, match="the node is shutting down"):
        behind.result(timeout=1)


def test_shared_worker_serves_lanes_in_turn_so_a_fast_camera_cannot_starve_a_slow_one() -> None:
    """Camera "fast" offers a frame every time the worker is busy; "slow" offers one frame.
    The slow frame is handled right after the frame in progress, not after the fast ones."""
    handled: list[tuple[str, int]] = []
    started = threading.Event()
    worker: Worker[int] = Worker(name="test_lanes")

    def handler(camera: str):
        def handle(item: int) -> None:
            handled.append((camera, item))
            started.set()
            time.sleep(0.05)
        return handle

    fast = worker.lane("fast", handle_item=handler("fast"), on_error=lambda error: None)
    slow = worker.lane("slow", handle_item=handler("slow"), on_error=lambda error: None)
    with pytest.raises(ValueError, match="already has a lane 'fast'"):
        worker.lane("fast", handle_item=handler("x"), on_error=lambda error: None)
    worker.start()
    try:
        fast.offer(0)
        assert started.wait(5)
        slow.offer(100)  # waits behind the frame in progress only
        for item in range(1, 6):  # the fast camera keeps replacing its own waiting frame
            fast.offer(item)
        deadline = time.monotonic() + 5
        while len(handled) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert handled[:3] == [("fast", 0), ("slow", 100), ("fast", 5)]
        assert (fast.dropped, slow.dropped, worker.dropped) == (4, 0, 4)
        # Closing one lane fails its queued jobs only; the other goes on.
        gate = threading.Event()
        blocker = fast.submit(lambda: gate.wait(5))
        queued_slow, queued_fast = slow.submit(lambda: "slow"), fast.submit(lambda: "fast")
        closer = threading.Thread(target=slow.stop)
        closer.start()
        closer.join(0.5)
        gate.set()
        closer.join(5)
        assert blocker.result(timeout=5) is True and queued_fast.result(timeout=5) == "fast"
        with pytest.raises(RuntimeError, match="shutting down"):
            queued_slow.result(timeout=1)
        slow.offer(7)  # a frame in flight after the camera stopped: ignored
        with pytest.raises(RuntimeError, match="not running"):
            slow.submit(lambda: None).result(timeout=1)
        fast.offer(9)
        deadline = time.monotonic() + 5
        while handled[-1] != ("fast", 9) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert handled[-1] == ("fast", 9) and ("slow", 7) not in handled
    finally:
        worker.stop()


def test_worker_threads_serve_lanes_in_parallel_never_one_lane_twice() -> None:
    active: dict[str, int] = {"a": 0, "b": 0}
    overlaps, most_at_once, lock = [], [0], threading.Lock()

    def handler(camera: str):
        def handle(item: int) -> None:
            with lock:
                active[camera] += 1
                overlaps.append(active[camera] > 1)
                most_at_once[0] = max(most_at_once[0], sum(active.values()))
            time.sleep(0.02)
            with lock:
                active[camera] -= 1
        return handle

    worker: Worker[int] = Worker(name="test_threads", threads=3)
    lanes = [worker.lane(camera, handle_item=handler(camera), on_error=lambda error: None)
             for camera in active]
    worker.start()
    try:
        for item in range(40):
            for lane in lanes:
                lane.offer(item)
                if item % 5 == 0:
                    lane.submit(lambda: time.sleep(0.005))  # jobs are the lane's too
            time.sleep(0.01)
        assert all(lane.submit(lambda: True).result(timeout=5) for lane in lanes)
    finally:
        worker.stop()
    assert len(overlaps) > 5 and not any(overlaps)
    assert most_at_once[0] == 2  # both lanes at once, on two of the three threads


def test_worker_runs_on_thread_start_first_in_each_of_its_threads() -> None:
    started: list[str] = []
    handled: list[tuple[str, bool]] = []

    def handle(item: int) -> None:
        handled.append((threading.current_thread().name, threading.current_thread().name in started))

    worker: Worker[int] = Worker(handle_item=handle, name="test_start", threads=2,
                                 on_thread_start=lambda: started.append(threading.current_thread().name))
    worker.start()
    try:
        worker.offer(1)
        assert worker.submit(lambda: True).result(timeout=5)
        deadline = time.monotonic() + 5
        while not handled and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        worker.stop()
    assert sorted(started) == ["test_start_0", "test_start_1"]
    assert handled and all(ready for _, ready in handled)


# diagnostics ---------------------------------------------------------------------------
def test_stats_and_status() -> None:
    stats = TrackingStats(window=100)
    for index in range(11):
        stats.record(finished=100.0 + index * 0.1, latency=0.01 * (index + 1))
    snapshot = stats.snapshot(now=101.0)
    assert snapshot.fps == pytest.approx(10.0)
    assert snapshot.latency_p50 == pytest.approx(0.06)
    assert snapshot.latency_p99 == pytest.approx(0.109)  # linear interpolation
    status = diagnostic_status(name="sam2", hardware_id="cpu", stats=snapshot, dropped=4,
                               figures=SessionFigures(objects=2, memory_bytes=1234))
    values = {kv.key: kv.value for kv in status.values}
    assert values["frames_dropped"] == "4" and values["memory_bytes"] == "1234"
    assert values["objects"] == "2" and values["frames_failed"] == "0"
    assert values["fps"] == "10.00" and status.level == status.OK
    idle = diagnostic_status(name="sam2", hardware_id="cpu", stats=stats.snapshot(now=500.0),
                             dropped=0, figures=SessionFigures())
    assert idle.level == idle.WARN and idle.message == "no frames tracked recently"


@pytest.mark.parametrize("rate", [30, 60, 90, 240])
def test_stats_measure_any_frame_rate(rate: int) -> None:
    """The rate once the 5 s horizon is full (it was capped at 40 fps: 200 frames / 5 s)."""
    stats = TrackingStats()
    for index in range(rate * 20):
        stats.record(finished=index / rate, latency=0.01)
    assert stats.snapshot(now=20.0).fps == pytest.approx(rate, rel=0.01)
    assert stats.snapshot(now=26.0).fps == 0.0  # the camera stopped


def test_failing_frames_make_the_status_an_error() -> None:
    stats = TrackingStats()
    for index in range(50):
        stats.record(finished=index / 10, latency=0.01)
    stats.record_failure(at=5.0, error="RuntimeError('CUDA out of memory')")
    status = diagnostic_status(name="sam2", hardware_id="cpu", stats=stats.snapshot(now=5.1),
                               dropped=0, figures=SessionFigures())
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == status.ERROR and values["frames_failed"] == "1"
    assert status.message == ("1 frames failed to track in the last 5 s: "
                              "RuntimeError('CUDA out of memory')")
    later = diagnostic_status(name="sam2", hardware_id="cpu", stats=stats.snapshot(now=10.5),
                              dropped=0, figures=SessionFigures())
    assert later.level == later.WARN  # the failure left the horizon; no frames either


# model loading -------------------------------------------------------------------------
def test_missing_weights_message_names_file_places_and_command(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(model_loading.WEIGHTS_ENV, str(tmp_path / "mine"))
    config = parameters.NodeConfig(model_size="small")
    with pytest.raises(model_loading.ModelLoadError) as caught:
        model_loading.find_checkpoint(config)
    message = str(caught.value)
    assert "sam2.1_hiera_small.pt" in message
    assert str(tmp_path / "mine") in message and str(tmp_path / "weights") in message
    assert "download.py small --dest" in message and "allow_random_weights" in message
    explicit = parameters.NodeConfig(checkpoint=str(tmp_path / "nope.pt"))
    with pytest.raises(model_loading.ModelLoadError, match="nope.pt.*does not exist"):
        model_loading.find_checkpoint(explicit)


def test_nano_is_found_by_size_and_warns_at_another_image_size(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(model_loading.WEIGHTS_ENV, str(tmp_path))
    config = parameters.NodeConfig(model_size="nano", image_size=256)
    assert model_loading.find_checkpoint(config).name == "sam2_nano.pt"  # install or source tree
    infos: list[str] = []
    warnings: list[str] = []
    model_loading.build_tracker(config, info=infos.append, warn=warnings.append)
    assert "(SAM 2.1 nano)" in infos[0]
    assert warnings == ["sam2_nano.pt was trained at image_size 128, running at 256: expect "
                        "worse masks (set image_size:=128)"]
    warnings.clear()
    model_loading.build_tracker(dataclasses.replace(config, image_size=128), info=infos.append,
                                warn=warnings.append)
    assert warnings == []
    monkeypatch.setattr(model_loading, "SOURCE_ROOT", tmp_path)
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    with pytest.raises(model_loading.ModelLoadError,
                       match="sam2_nano.pt ships in the package's weights/ folder; rebuild"):
        model_loading.find_checkpoint(config)


def test_build_tracker_refuses_without_weights_and_unknown_backend(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(model_loading.WEIGHTS_ENV, str(tmp_path))
    monkeypatch.setattr(model_loading, "SOURCE_ROOT", tmp_path)
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    logs: list[str] = []
    config = parameters.NodeConfig(image_size=256)
    with pytest.raises(model_loading.ModelLoadError, match="no checkpoint for model_size"):
        model_loading.build_tracker(config, info=logs.append, warn=logs.append)
    if importlib.util.find_spec("tensorrt") is None:  # never on CPU machines like CI
        with pytest.raises(model_loading.ModelLoadError,
                           match=r"backend 'tensorrt' is unavailable: .*'tensorrt'.*backend:=torch"):
            model_loading.build_tracker(dataclasses.replace(config, backend="tensorrt",
                                                            allow_random_weights=True),
                                        info=logs.append, warn=logs.append)
    with pytest.raises(model_loading.ModelLoadError, match="float16 on CPU is refused"):
        model_loading.build_tracker(dataclasses.replace(config, dtype="float16",
                                                        allow_random_weights=True),
                                    info=logs.append, warn=logs.append)
    tracker = model_loading.build_tracker(dataclasses.replace(config, allow_random_weights=True),
                                          info=logs.append, warn=logs.append)
    assert "RANDOM weights" in logs[-2] and tracker.object_ids == []
    assert logs[-1].startswith("feature cache off (budget 0)")
    warnings: list[str] = []
    tracker = model_loading.build_tracker(
        dataclasses.replace(config, allow_random_weights=True, feature_cache_bytes=1000),
        info=logs.append, warn=warnings.append)
    assert warnings[-1].startswith("feature cache off: its budget of 1000 bytes is smaller than one frame")
    assert not tracker.feature_cache.enabled


def test_build_tracker_loads_a_checkpoint(tmp_path) -> None:
    import torch

    from sam2_ros.engine import build_model

    model = build_model("tiny", image_size=256)
    path = tmp_path / "tiny.pt"
    torch.save({"model": model.state_dict()}, path)
    logs: list[str] = []
    config = parameters.NodeConfig(checkpoint=str(path), image_size=256)
    tracker = model_loading.build_tracker(config, info=logs.append, warn=logs.append)
    assert str(path) in logs[-2] and "loaded" in logs[-2]
    loaded = tracker.model.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded[key], value), key
    torch.save({"model": {"bogus": torch.zeros(1)}}, path)
    with pytest.raises(model_loading.ModelLoadError, match="cannot load the checkpoint"):
        model_loading.build_tracker(config, info=logs.append, warn=logs.append)


# demo ----------------------------------------------------------------------------------
def test_demo_prefers_official_then_nano_then_random(tmp_path, monkeypatch) -> None:
    from sam2_ros import demo

    monkeypatch.setattr(demo, "NANO_CHECKPOINT", tmp_path / "sam2_nano.pt")
    monkeypatch.setattr(demo, "OFFICIAL_TINY", tmp_path / "sam2.1_hiera_tiny.pt")
    weights = demo.pick_weights()
    assert weights.checkpoint == "" and "RANDOM weights" in weights.note
    command = demo.node_command(weights, 256)
    assert "allow_random_weights:=true" in command and "image_size:=256" in command
    (tmp_path / "sam2_nano.pt").touch()
    nano = demo.pick_weights()
    assert (nano.checkpoint, nano.model_size) == (str(tmp_path / "sam2_nano.pt"),
                                                  demo.NANO_MODEL_SIZE)
    (tmp_path / "sam2.1_hiera_tiny.pt").touch()
    assert demo.pick_weights().checkpoint == str(tmp_path / "sam2.1_hiera_tiny.pt")
    assert "allow_random_weights:=true" not in demo.node_command(nano, 512)
