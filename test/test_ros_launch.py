"""The launch file parses and wires the node as documented (needs launch_ros)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_launch_file_describes_the_node_and_rviz() -> None:
    pytest.importorskip("launch_ros", reason="launch_ros is not on PyPI; it comes with a ROS 2 "
                        "install (the launch file is for real ROS workspaces)")
    from launch.actions import DeclareLaunchArgument
    from launch_ros.actions import Node

    spec = importlib.util.spec_from_file_location("sam2_launch", ROOT / "launch" / "sam2.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    arguments = {a.name for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    assert arguments == {"image", "params_file", "namespace", "rviz", "rviz_config"}
    nodes = [e for e in description.entities if isinstance(e, Node)]
    assert [n.node_executable for n in nodes] == ["sam2_node", "rviz2"]
    assert nodes[0].node_package == "sam2_ros"
    assert nodes[1].condition is not None  # rviz only on request
