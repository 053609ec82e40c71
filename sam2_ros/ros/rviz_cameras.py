"""The launch file's camera list: parsed and checked, or read from a params file, and an
rviz configuration showing each display of the node's own topics (overlay, label image,
markers, points) once per camera."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from sam2_ros.ros.parameters import camera_name_problems


def parse_cameras(text: str) -> list[str]:
    """`front,rear` -> ["front", "rear"] ("" -> []); ValueError naming each bad name."""
    names = [name.strip() for name in text.split(",")] if text.strip() else []
    problems = camera_name_problems(names)
    if problems:
        raise ValueError(f"cameras:={text!r}: " + "; ".join(problems))
    return names


def params_file_cameras(path: Path) -> list[str]:
    """The `cameras` a params file sets for any node (the first found), or []."""
    document = yaml.safe_load(path.read_text()) or {}
    for section in document.values():
        cameras = ((section or {}).get("ros__parameters") or {}).get("cameras")
        if cameras:
            return [str(name) for name in cameras]
    return []


def camera_rviz_config(base: str, node: str, cameras: list[str]) -> str:
    """`base` (rviz YAML whose displays read `<node>/<topic>`) with every such display
    repeated per camera, reading `<node>/<camera>/<topic>` and named "<camera>: <name>";
    the other displays are kept as they are (and `base` is returned as is without cameras)."""
    if not cameras:
        return base
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
