"""What launch/sam2.launch.py decides before it starts anything.

Pure functions (no `launch` import), so they are tested where ros2 launch is not installed:
which node parameters the command line overrides, and the rviz config for the node's namespace.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass

from sam2_ros.ros.parameters import SPECS, NodeConfig, validate

# Node parameters settable as launch arguments; unset ("") leaves the params file's value.
PARAMETER_ARGUMENTS = ("model_size", "checkpoint", "image_size", "device", "dtype", "backend",
                       "allow_random_weights")
USE_SIM_TIME = "use_sim_time"  # rclpy's own parameter, not a NodeConfig field
BOOLEAN = ("true", "false")
NODE_NAME = "sam2"
UNSET = ""


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    description: str
    choices: tuple[str, ...] = ()  # empty: any value; otherwise UNSET is one of them


def parameter_arguments() -> list[LaunchArgument]:
    """One launch argument per overridable parameter, described as the node describes it."""
    types = _parameter_types()
    arguments = []
    for name in PARAMETER_ARGUMENTS:
        choices = BOOLEAN if types[name] is bool else SPECS[name].choices
        arguments.append(LaunchArgument(
            name, f"{SPECS[name].description} Unset: the params file's value.",
            (UNSET, *choices) if choices else ()))
    arguments.append(LaunchArgument(
        USE_SIM_TIME, "Use the /clock topic as the node's time. Unset: the params file's value.",
        (UNSET, *BOOLEAN)))
    return arguments


def parameter_overrides(values: Mapping[str, str]) -> dict[str, bool | int | str]:
    """The typed parameters given on the command line; ValueError naming every bad one.

    `values` maps launch argument names to their text (launch configurations); unset
    arguments are left out, so the params file keeps its value for them.
    """
    types = _parameter_types()
    overrides: dict[str, bool | int | str] = {}
    problems = []
    for name in (*PARAMETER_ARGUMENTS, USE_SIM_TIME):
        text = values.get(name, UNSET)
        if text == UNSET:
            continue
        if types[name] is bool:
            if text not in BOOLEAN:
                problems.append(f"{name}:={text!r}: expected true or false")
                continue
            overrides[name] = text == "true"
        elif types[name] is int:
            try:
                overrides[name] = int(text)
            except ValueError:
                problems.append(f"{name}:={text!r}: expected an integer")
        else:
            overrides[name] = text
    if problems:
        raise ValueError("invalid launch arguments: " + "; ".join(problems))
    node_values = {k: v for k, v in overrides.items() if k != USE_SIM_TIME}
    validate(dataclasses.replace(NodeConfig(), **node_values))  # ranges and choices, now
    return overrides


def node_fqn(namespace: str, name: str = NODE_NAME) -> str:
    """'/robot1/sam2' for namespace 'robot1', '/robot1/' or '/robot1'; '/sam2' for ''."""
    stripped = namespace.strip("/")
    return f"/{stripped}/{name}" if stripped else f"/{name}"


# A topic of the shipped config: "Value: /sam2/overlay" (the node's private topics at '/').
_NODE_TOPIC = re.compile(rf"^(\s*Value: )/{NODE_NAME}/", re.MULTILINE)


def rviz_config_for(template: str, namespace: str) -> str:
    """The rviz config with the node's topics (`/sam2/...`) moved under `namespace`."""
    return _NODE_TOPIC.sub(lambda match: f"{match.group(1)}{node_fqn(namespace)}/", template)


def _parameter_types() -> dict[str, type]:
    types = {field.name: type(field.default) for field in dataclasses.fields(NodeConfig)}
    return {**types, USE_SIM_TIME: bool}
