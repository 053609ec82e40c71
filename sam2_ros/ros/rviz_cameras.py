"""An rviz configuration for a node with several cameras: each display of the node's own
topics (overlay, label image, markers, points) once per camera (used by the launch file)."""
from __future__ import annotations

import copy

import yaml


def camera_rviz_config(base: str, node: str, cameras: list[str]) -> str:
    """`base` (rviz YAML whose displays read `<node>/<topic>`) with every such display
    repeated per camera, reading `<node>/<camera>/<topic>` and named "<camera>: <name>";
    the other displays are kept as they are."""
    document = yaml.safe_load(base)
    manager = document["Visualization Manager"]
    prefix = node.rstrip("/") + "/"
    displays = []
    for display in manager["Displays"]:
        topic = display.get("Topic", {})
        value = topic.get("Value", "") if isinstance(topic, dict) else ""
        if not value.startswith(prefix):
            displays.append(display)
            continue
        for camera in cameras:
            copied = copy.deepcopy(display)
            copied["Name"] = f"{camera}: {display['Name']}"
            copied["Topic"]["Value"] = f"{prefix}{camera}/{value[len(prefix):]}"
            displays.append(copied)
    manager["Displays"] = displays
    return yaml.safe_dump(document, sort_keys=False)
