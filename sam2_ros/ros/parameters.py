"""The node's parameters: one dataclass of defaults, one table of descriptions and limits.

`declare_parameters` gives every parameter a descriptor (description, range or choices)
so `ros2 param describe` explains it; `validate` checks the same limits without rclpy,
so a bad params file fails at configure with every problem listed at once.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node

BACKENDS = ("torch", "onnxruntime", "tensorrt")
DTYPES = ("float32", "float16", "bfloat16")
LABEL_ENCODINGS = ("mono16", "mono8")
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


@dataclass(frozen=True)
class NodeConfig:
    """Everything the node reads from its parameters (read on configure)."""

    model_size: str = "tiny"
    checkpoint: str = ""
    allow_random_weights: bool = False
    image_size: int = 1024
    device: str = "cpu"
    dtype: str = "float32"
    backend: str = "torch"
    max_objects: int = 16
    max_conditioning_frames: int = 4
    frame_buffer_length: int = 30
    feature_cache_bytes: int = 0
    image_topic: str = "image"
    compressed_image_topic: str = ""
    publish_masks: bool = True
    publish_label_image: bool = True
    label_image_encoding: str = "mono16"
    publish_overlay: bool = True
    publish_markers: bool = True
    diagnostics_period: float = 1.0
    service_timeout: float = 60.0
    autostart: bool = True


@dataclass(frozen=True)
class _Spec:
    description: str
    choices: tuple[str, ...] = ()
    int_range: tuple[int, int, int] | None = None  # from, to, step
    float_range: tuple[float, float] | None = None


SPECS: dict[str, _Spec] = {
    "model_size": _Spec("SAM 2 size: tiny, small, base_plus or large (or a size the "
                        "engine adds)."),
    "checkpoint": _Spec("Path of the .pt checkpoint; empty = weights/sam2.1_hiera_<size>.pt "
                        "in the package share, the working directory or the source tree."),
    "allow_random_weights": _Spec("Start with random weights when no checkpoint is found "
                                  "(tests and demos only: the masks are meaningless)."),
    "image_size": _Spec("Square model input side in pixels (1024 for the official weights).",
                        int_range=(64, 2048, 32)),
    "device": _Spec("Torch device: cpu, cuda, cuda:N or mps."),
    "dtype": _Spec("Compute dtype: float32; on CUDA bfloat16 or float16; on CPU bfloat16 "
                   "where the CPU has native bf16 (avx512_bf16 or amx_bf16; else configure "
                   "fails saying so), float16 refused.", choices=DTYPES),
    "backend": _Spec("Inference backend.", choices=BACKENDS),
    "max_objects": _Spec("Most objects tracked at once; further new ids are refused.",
                         int_range=(1, 255, 1)),
    "max_conditioning_frames": _Spec("Most prompted frames the memory attends to per object.",
                                     int_range=(2, 64, 1)),
    "frame_buffer_length": _Spec("Recent frames kept for stamped prompts (each tracked one "
                                 "keeps a snapshot of the memory; a prompt re-tracks at most "
                                 "this many).",
                                 int_range=(1, 300, 1)),
    "feature_cache_bytes": _Spec("Bytes of buffered frames' image features kept so that a "
                                 "stamped prompt's replay skips the image encoder (a frame: "
                                 "~5 MiB at 512 px float32, half in bfloat16; 21 MiB at 1024 "
                                 "float32); 0 = off; below one frame it stays off and says so.",
                                 int_range=(0, 1 << 36, 1)),
    "image_topic": _Spec("sensor_msgs/Image input (remap it or set it here)."),
    "compressed_image_topic": _Spec("Optional sensor_msgs/CompressedImage input; empty = off."),
    "publish_masks": _Spec("Publish ~/masks (sam2_ros/ObjectMaskArray)."),
    "publish_label_image": _Spec("Publish ~/label_image (pixel = object id, 0 = none)."),
    "label_image_encoding": _Spec("Encoding of ~/label_image.", choices=LABEL_ENCODINGS),
    "publish_overlay": _Spec("Publish ~/overlay (rgb8 frame with coloured masks and ids)."),
    "publish_markers": _Spec("Publish ~/markers (boxes and ids on a virtual image plane)."),
    "diagnostics_period": _Spec("Seconds between /diagnostics messages.",
                                float_range=(0.1, 60.0)),
    "service_timeout": _Spec("Seconds a service call waits for the worker before failing.",
                             float_range=(1.0, 3600.0)),
    "autostart": _Spec("Configure and activate on start (false: wait for a lifecycle "
                       "manager); read once at start."),
}


class ParameterError(ValueError):
    """One or more parameters are out of their documented limits."""


def descriptor(name: str) -> ParameterDescriptor:
    """The ROS descriptor of one parameter: description, constraints and range."""
    spec = SPECS[name]
    result = ParameterDescriptor(name=name, description=spec.description)
    if spec.choices:
        result.additional_constraints = f"one of {', '.join(spec.choices)}"
    if spec.int_range is not None:
        low, high, step = spec.int_range
        result.integer_range = [IntegerRange(from_value=low, to_value=high, step=step)]
    if spec.float_range is not None:
        low, high = spec.float_range
        result.floating_point_range = [FloatingPointRange(from_value=low, to_value=high)]
    return result


def validate(config: NodeConfig) -> NodeConfig:
    """Return config unchanged, or raise ParameterError listing every bad value."""
    problems = []
    for field in dataclasses.fields(config):
        spec, value = SPECS[field.name], getattr(config, field.name)
        if spec.choices and value not in spec.choices:
            problems.append(f"{field.name}={value!r}: expected one of {list(spec.choices)}")
        if spec.int_range is not None:
            low, high, step = spec.int_range
            if not (low <= value <= high and (value - low) % step == 0):
                problems.append(f"{field.name}={value}: expected {low}..{high} in steps of {step}")
        if spec.float_range is not None:
            low, high = spec.float_range
            if not low <= value <= high:
                problems.append(f"{field.name}={value}: expected {low}..{high}")
    if not _DEVICE.match(config.device):
        problems.append(f"device={config.device!r}: expected cpu, cuda, cuda:N or mps")
    if not config.image_topic:
        problems.append("image_topic is empty: the node needs a camera topic")
    if problems:
        raise ParameterError("invalid parameters: " + "; ".join(problems))
    return config


def declare_parameters(node: Node) -> None:
    """Declare every NodeConfig field on the node with its default and descriptor."""
    for field in dataclasses.fields(NodeConfig):
        node.declare_parameter(field.name, field.default, descriptor(field.name))


def read_config(node: Node) -> NodeConfig:
    """The node's current parameter values, validated."""
    values = {field.name: node.get_parameter(field.name).value
              for field in dataclasses.fields(NodeConfig)}
    return validate(NodeConfig(**values))
