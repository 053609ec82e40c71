"""`python -m sam2_ros.bench` end to end with tiny settings: the JSON has every section and
figure, and the figures are finite and positive. Not a timing test: no speed is asserted."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sam2_ros.backends.base import PART_NAMES
from sam2_ros.bench.cli import main
from sam2_ros.bench.stats import LatencyStats
from sam2_ros.engine.precision import cpu_bf16_instructions

pytest.importorskip("sam2", reason="reference sam2==1.1.0 not installed (scripts/setup.sh installs it)")

REPO = Path(__file__).resolve().parents[1]
TINY = ["--model", "tiny", "--image-size", "128", "--frames", "3", "--warmup", "1", "--objects", "1"]
STAT_KEYS = {"n", "median", "p90", "p99", "mean", "min", "fps"}


def positive(value: object, where: str) -> None:
    assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, f"{where}: {value!r}"


def check_latency(stats: dict, n: int, where: str) -> None:
    assert set(stats) == STAT_KEYS, where
    assert stats["n"] == n, where
    for key in STAT_KEYS - {"n"}:
        positive(stats[key], f"{where}.{key}")
    assert stats["min"] <= stats["median"] <= stats["p90"] <= stats["p99"], where


def check_document(doc: dict, command: str, device: str, expected_runners: set[str], parts: bool) -> None:
    assert doc["command"] == command
    machine = doc["machine"]
    for key in ("cpu", "cpu_cores", "device", "device_name", "packages"):
        assert machine[key], key
    assert machine["device"] == device and "torch" in machine["packages"]
    settings = doc["settings"]
    assert (settings["model"], settings["image_size"], settings["timed_frames"]) == ("tiny", 128, 3)
    assert "RANDOM" in settings["weights"]
    if device == "cpu":
        assert any("only meaningful from a GPU" in note for note in doc["notes"])
    [run] = doc["runs"]
    assert run["objects"] == 1
    assert set(run["runners"]) == expected_runners
    for name, runner in run["runners"].items():
        check_latency(runner["frame_ms"], 3, f"{name}.frame_ms")
        assert runner["fps"] == pytest.approx(1e3 / runner["frame_ms"]["mean"])
        positive(runner["memory"]["held_bytes_at_end"], f"{name} held bytes")
        positive(runner["memory"]["held_bytes_after_warmup"], f"{name} held bytes")
        assert (runner["memory"]["cuda_step_peak_bytes"] > 0) == (device == "cuda"), name
        if parts:
            assert set(runner["parts_ms"]) == set(PART_NAMES), name
            for part, stats in runner["parts_ms"].items():
                check_latency(stats, 3, f"{name}.{part}")
        else:
            assert runner["parts_ms"] == {}, name
    positive(run["memory"]["process_peak_rss_bytes"], "peak RSS")
    ours = {n for n in expected_runners if n.startswith("ours:")}
    assert sorted((r["ours"], r["reference"]) for r in run["ratios"]) == sorted((o, "reference:eager") for o in ours)
    for ratio in run["ratios"]:
        for stat in ("median", "p90", "p99"):
            expected = run["runners"][ratio["reference"]]["frame_ms"][stat] / run["runners"][ratio["ours"]]["frame_ms"][stat]
            assert ratio[stat] == pytest.approx(expected)


def test_engine_command(tmp_path: Path, device: str) -> None:
    out = tmp_path / "engine.json"
    proc = subprocess.run(
        [sys.executable, "-m", "sam2_ros.bench", "engine", *TINY, "--device", device, "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "reference:eager / ours:torch: median" in proc.stdout
    check_document(json.loads(out.read_text()), "engine", device, {"ours:torch", "reference:eager"}, parts=False)


def test_backends_command(tmp_path: Path, device: str) -> None:
    out, png = tmp_path / "backends.json", tmp_path / "backends.png"
    argv = ["backends", *TINY, "--device", device, "--onnx-dir", str(tmp_path / "onnx"),
            "--json", str(out), "--plot", str(png)]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    statuses = doc["backends"]
    assert set(statuses) == {"torch", "onnxruntime", "tensorrt"}
    assert statuses["torch"]["status"] == "ok"
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert statuses["tensorrt"]["status"] == "skipped: tensorrt not importable"
    runners = {"reference:eager"} | {f"ours:{name}" for name, s in statuses.items() if s["status"] == "ok"}
    if device == "cpu":  # onnxruntime (CPU provider) and its exporter are requirements here
        assert statuses["onnxruntime"]["status"] == "ok", statuses["onnxruntime"]
    check_document(doc, "backends", device, runners, parts=True)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--reference-mode", "vos"], "--reference-mode vos is Meta's CUDA configuration"),
        (["--dtype", "float16"], "--dtype float16: dtype float16 on CPU is refused"),
        (["--replay", "5,x"], "--replay must be comma-separated integers"),
        (["--replay", "0"], "--replay depths and --replay-rounds must be >= 1"),
        (["--objects", "1,x"], "--objects must be comma-separated integers"),
        (["--objects", "0"], "--objects must be >= 1"),
        (["--video", "/nonexistent/frames"], "frames directory /nonexistent/frames not found"),
    ],
)
def test_bad_settings_fail_before_any_work(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["engine", "--device", "cpu", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(not cpu_bf16_instructions(), reason="this CPU has no native bf16 (avx512_bf16 / amx_bf16)")
def test_engine_bf16_on_cpu_with_replay_and_accuracy(tmp_path: Path) -> None:
    """float32 and bfloat16 of ours and of the reference side by side; the replay and
    accuracy sections are complete and consistent (no speed asserted)."""
    out = tmp_path / "engine_bf16.json"
    argv = ["engine", *TINY, "--device", "cpu", "--dtype", "bfloat16", "--replay", "2", "--replay-rounds", "1",
            "--accuracy-frames", "2", "--accuracy-videos", "bedroom", "--json", str(out)]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    [run] = doc["runs"]
    names = {"ours:torch", "ours:torch+bfloat16", "reference:eager", "reference:eager+autocast"}
    assert set(run["runners"]) == names and doc["settings"]["precisions"] == ["float32", "bfloat16"]
    assert run["runners"]["ours:torch+bfloat16"]["dtype"] == "bfloat16"
    assert {(r["ours"], r["reference"]) for r in run["ratios"]} == {
        (o, ref) for o in ("ours:torch", "ours:torch+bfloat16") for ref in ("reference:eager", "reference:eager+autocast")}
    [accuracy] = doc["accuracy"]
    assert set(accuracy["runners"]) == names - {"reference:eager"} and accuracy["baseline_empty_masks"] == 0
    assert accuracy["runners"]["ours:torch"]["mask_iou_min"] == 1.0  # float32 equals the reference
    for r in accuracy["runners"].values():
        assert 0.9 <= r["mask_iou_min"] <= r["mask_iou_mean"] <= 1.0 and r["masks_compared"] == 2
    assert [r["runner"] for r in doc["replay"]] == ["ours:torch+bfloat16"]
    for replay in doc["replay"]:
        depth = replay["depths"]["2"]
        for name in ("cache_off", "cache_on"):
            check_latency(depth["live_ms"][name], 1, name)
            check_latency(depth["replay_ms"][name], 1, name)
        cache = replay["cache"]
        assert cache["within_budget"] and 0 < cache["held_bytes_at_end"] <= cache["budget_bytes"]
        assert cache["hits"] == 2  # the two frames replayed came from the cache


def test_latency_stats() -> None:
    stats = LatencyStats.of([4.0, 1.0, 3.0, 2.0, 100.0])
    assert (stats.n, stats.median, stats.min, stats.mean) == (5, 3.0, 1.0, 22.0)
    assert 4.0 < stats.p90 < stats.p99 < 100.0
    assert stats.fps == pytest.approx(1e3 / 22.0)
    with pytest.raises(ValueError, match="no latencies"):
        LatencyStats.of([])


def test_cameras_bench_node_params_are_valid_node_parameters(tmp_path: Path) -> None:
    """The params files `bench cameras` starts its nodes with pass the node's validation."""
    import argparse
    import dataclasses

    import yaml

    from sam2_ros.bench.cameras import add_arguments, node_params
    from sam2_ros.ros.parameters import NodeConfig, validate

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--model", "tiny"])
    fields = {field.name for field in dataclasses.fields(NodeConfig)}
    for cameras, path in [(["cam0", "cam1"], tmp_path / "shared.yaml"), (None, tmp_path / "one.yaml")]:
        node_params(args, path, cameras, image_topic="/bench/cam0/image", worker_threads=1, batch_wait=0.01)
        values = yaml.safe_load(path.read_text())["/**"]["ros__parameters"]
        config = validate(NodeConfig(**{k: v for k, v in values.items() if k in fields}))
        assert config.cameras == tuple(cameras or ()) and config.allow_random_weights
        assert {k for k in values if k not in fields} == {f"{c}.image_topic" for c in cameras or ()}
