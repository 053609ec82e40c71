"""`python -m sam2_ros.bench.dds` end to end with small frames: the JSON holds the counts
and settings. A count, not a timing: at this size nothing should be lost on loopback."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("sensor_msgs.msg", reason="ROS 2 messages not importable: run bash "
                    "scripts/setup.sh and source scripts/env.sh")

from sam2_ros.bench import dds  # noqa: E402


def test_small_frames_cross_between_processes(tmp_path) -> None:
    out = tmp_path / "dds.json"
    assert dds.main(["--width", "64", "--height", "48", "--frames", "5", "--rate", "20",
                     "--drain", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["width"], result["height"], result["bytes_per_frame"]) == (64, 48, 64 * 48 * 3)
    assert result["frames_sent"] == 5 and result["frames_received"] == 5
    assert result["rate_achieved_hz"] > 0 and "fastdds_profile" in result
