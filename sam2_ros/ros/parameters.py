"""The node's parameters: one dataclass of defaults, one table of descriptions and limits.

`declare_parameters` gives every parameter a descriptor (description, range or choices)
so `ros2 param describe` explains it; `validate` checks the same limits without rclpy,
so a bad params file fails at configure with every problem listed at once.

While the node is configured, the parameters in `LIVE` change at once (`check_update`
validates them and the node applies them); every other one is refused with a reason that
says to reconfigure, since the model, its memory and the subscriptions are built from it.
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
# Parameters that apply while configured (the node reads them per frame or per call).
LIVE = frozenset({"publish_masks", "publish_label_image", "label_image_encoding",
                  "publish_overlay", "publish_markers", "diagnostics_period", "max_objects",
                  "service_timeout", "autostart", "silent_after"})
# A camera name is one ROS name segment: it names the camera's node (~/<camera>/...).
_CAMERA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
    frame_buffer_bytes: int = 128 * 2**20
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
    # Detector-driven tracking (sam2_ros.ros.detections_input).
    detections_topic: str = ""
    detections_enabled: bool = True
    publish_detections: bool = True
    match_iou: float = 0.2
    reprompt_iou: float = 0.5
    min_score: float = 0.5
    classes: tuple[int, ...] = ()
    forget_after: int = 5
    manage_prompted: bool = False
    autostart: bool = True
    # 3D from an aligned depth image (issue #14); off while depth_topic is empty.
    depth_topic: str = ""
    camera_info_topic: str = ""
    depth_sync_tolerance: float = 0.015
    min_depth: float = 0.1
    max_depth: float = 10.0
    depth_erode_pixels: int = 2
    depth_outlier_mads: float = 4.0
    min_depth_points: int = 10
    points_stride: int = 4
    publish_points: bool = True
    publish_detections_3d: bool = True
    # Several cameras, one model (issue #17); empty = the one camera of image_topic.
    cameras: tuple[str, ...] = ()
    worker_threads: int = 0
    encoder_batch_wait: float = 0.0
    silent_after: float = 2.0

    def __post_init__(self) -> None:
        # ROS arrays arrive as lists (an empty YAML list as no value): keep a tuple.
        object.__setattr__(self, "classes", tuple(self.classes or ()))
        object.__setattr__(self, "cameras", tuple(self.cameras or ()))


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
    "frame_buffer_bytes": _Spec("Most bytes of camera pixels kept for stamped prompts (the "
                                "newest frame is always kept): at high resolutions fewer than "
                                "frame_buffer_length frames are kept, never more memory.",
                                int_range=(2**20, 2**36, 1)),
    "feature_cache_bytes": _Spec("Bytes of buffered frames' image features kept so that a "
                                 "stamped prompt's replay skips the image encoder (a frame: "
                                 "~5 MiB at 512 px float32, half in bfloat16; 21 MiB at 1024 "
                                 "float32); 0 = off; below one frame it stays off and says so.",
                                 int_range=(0, 1 << 36, 1)),
    "image_topic": _Spec("sensor_msgs/Image input (remap it or set it here)."),
    "compressed_image_topic": _Spec("Optional sensor_msgs/CompressedImage input, an "
                                    "alternative to image_topic; empty = off. A frame whose "
                                    "stamp is not newer than the last one is dropped, so a "
                                    "camera on both is tracked once."),
    "publish_masks": _Spec("Publish ~/masks (sam2_ros/ObjectMaskArray)."),
    "publish_label_image": _Spec("Publish ~/label_image (pixel = object id, 0 = none)."),
    "label_image_encoding": _Spec("Encoding of ~/label_image.", choices=LABEL_ENCODINGS),
    "publish_overlay": _Spec("Publish ~/overlay (rgb8 frame with coloured masks and ids)."),
    "publish_markers": _Spec("Publish ~/markers (boxes and ids on a virtual image plane)."),
    "diagnostics_period": _Spec("Seconds between /diagnostics messages.",
                                float_range=(0.1, 60.0)),
    "service_timeout": _Spec("Seconds a service call waits for the worker before failing.",
                             float_range=(1.0, 3600.0)),
    "detections_topic": _Spec("vision_msgs/Detection2DArray input whose boxes prompt and "
                              "correct objects (header stamp = the image the detector saw); "
                              "empty = off."),
    "detections_enabled": _Spec("Detector-driven prompting at start; ~/set_detections_enabled "
                                "pauses and resumes it live."),
    "publish_detections": _Spec("Publish ~/detections (vision_msgs/Detection2DArray of the "
                                "tracked objects' mask boxes; needs vision_msgs)."),
    "match_iou": _Spec("Least IoU between a detection and a mask box to pair them.",
                       float_range=(0.01, 1.0)),
    "reprompt_iou": _Spec("A paired object whose mask box has a lower IoU with the detection "
                          "is re-prompted with the box.", float_range=(0.0, 1.0)),
    "min_score": _Spec("Least detection score used.", float_range=(0.0, 1.0)),
    "classes": _Spec("Detection class ids used (integers); empty = every class."),
    "forget_after": _Spec("Detection rounds an object may go unmatched and unseen before it "
                          "is removed.", int_range=(1, 1000, 1)),
    "manage_prompted": _Spec("Also remove service-prompted objects the detector loses."),
    "autostart": _Spec("Configure and activate on start (false: wait for a lifecycle "
                       "manager); read once at start."),
    "depth_topic": _Spec("Optional sensor_msgs/Image depth aligned to the camera image (16UC1 "
                         "millimetres or 32FC1 metres; any size with the same field of view); "
                         "empty = no 3D."),
    "camera_info_topic": _Spec("sensor_msgs/CameraInfo of the depth image; empty = camera_info "
                               "beside depth_topic (.../image_raw -> .../camera_info)."),
    "depth_sync_tolerance": _Spec("Seconds between a camera frame's stamp and the nearest depth "
                                  "frame's for them to pair (under half a 30 Hz period); an "
                                  "unpaired frame gets no 3D.", float_range=(0.0, 1.0)),
    "min_depth": _Spec("Metres; nearer depths are invalid.", float_range=(0.0, 100.0)),
    "max_depth": _Spec("Metres; farther depths are invalid.", float_range=(0.01, 1000.0)),
    "depth_erode_pixels": _Spec("The object's median depth comes from its mask eroded by this "
                                "many depth pixels (away from flying pixels on the border).",
                                int_range=(0, 20, 1)),
    "depth_outlier_mads": _Spec("Points kept: depth within this many robust standard deviations "
                                "(1.4826 MAD) of the median, at least 3 cm; 0 = keep all.",
                                float_range=(0.0, 100.0)),
    "min_depth_points": _Spec("Fewer valid depth pixels in a mask: its 3D is invalid.",
                              int_range=(1, 100000, 1)),
    "points_stride": _Spec("~/points keeps every Nth depth row and column (downsampling).",
                           int_range=(1, 64, 1)),
    "publish_points": _Spec("Publish ~/points (PointCloud2: x, y, z, object_id) when depth is set."),
    "publish_detections_3d": _Spec("Publish ~/detections_3d (vision_msgs/Detection3DArray) when "
                                   "depth is set and vision_msgs is importable."),
    "cameras": _Spec("Camera names (strings) served by one model; empty = one unnamed camera "
                     "(image_topic, ~/masks, ...). Camera c gets a node ~/c with its own "
                     "topics (~/c/masks, ...), services and objects; its inputs are the "
                     "parameters c.image_topic (default c/image), c.compressed_image_topic, "
                     "c.depth_topic, c.camera_info_topic and c.detections_topic."),
    "worker_threads": _Spec("With cameras: threads serving the cameras' frames in turn (never "
                            "two on one camera); 0 = one per camera (CPU: cameras in parallel "
                            "like separate nodes), 1 = one thread for all (one GPU stream); "
                            "each thread's torch ops get cores / threads intra-op threads. "
                            "backend tensorrt needs 1.", int_range=(0, 64, 1)),
    "encoder_batch_wait": _Spec("With cameras and backend torch: seconds a camera's frame waits "
                                "for the other cameras' to run the image encoder on them as one "
                                "batch (with worker_threads above 1); 0 = off.",
                                float_range=(0.0, 1.0)),
    "silent_after": _Spec("Seconds without a frame after which diagnostics call a camera "
                          "silent.", float_range=(0.1, 3600.0)),
}


class ParameterError(ValueError):
    """One or more parameters are out of their documented limits."""


def descriptor(name: str) -> ParameterDescriptor:
    """The ROS descriptor of one parameter: description, constraints and range."""
    spec = SPECS[name]
    when = (" Applies at once." if name in LIVE
            else " Fixed while configured: clean up, set, configure again.")
    result = ParameterDescriptor(name=name, description=spec.description + when)
    if spec.choices:
        result.additional_constraints = f"one of {', '.join(spec.choices)}"
    if spec.int_range is not None:
        low, high, step = spec.int_range
        result.integer_range = [IntegerRange(from_value=low, to_value=high, step=step)]
    if spec.float_range is not None:
        low, high = spec.float_range
        result.floating_point_range = [FloatingPointRange(from_value=low, to_value=high)]
    return result


def field_problems(name: str, value: object) -> list[str]:
    """What is wrong with one parameter's value (empty when it is valid)."""
    spec, problems = SPECS[name], []
    if spec.choices and value not in spec.choices:
        problems.append(f"{name}={value!r}: expected one of {list(spec.choices)}")
    if spec.int_range is not None:
        low, high, step = spec.int_range
        if not (low <= value <= high and (value - low) % step == 0):
            problems.append(f"{name}={value}: expected {low}..{high} in steps of {step}")
    if spec.float_range is not None:
        low, high = spec.float_range
        if not low <= value <= high:
            problems.append(f"{name}={value}: expected {low}..{high}")
    if name == "device" and not _DEVICE.match(value):
        problems.append(f"device={value!r}: expected cpu, cuda, cuda:N or mps")
    if name == "classes" and not all(isinstance(c, int) and not isinstance(c, bool)
                                     for c in value or ()):
        problems.append(f"classes={list(value or ())!r}: expected integer class ids")
    if name == "cameras":
        problems += camera_name_problems(value)
    if name == "image_topic" and not value:
        problems.append("image_topic is empty: the node needs a camera topic")
    return problems


def camera_name_problems(names: tuple[str, ...] | list[str]) -> list[str]:
    """What is wrong with a list of camera names (empty when each is a distinct ROS name
    segment)."""
    problems = []
    for index, name in enumerate(names):
        if not isinstance(name, str) or not name:
            problems.append(f"cameras[{index}]={name!r}: a camera name must not be empty")
        elif not _CAMERA_NAME.match(name):
            problems.append(f"cameras[{index}]={name!r}: expected a ROS name segment (letters, "
                            f"digits and _, not starting with a digit)")
        elif name in names[:index]:
            problems.append(f"cameras[{index}]={name!r}: the name is used twice")
    return problems


def validate(config: NodeConfig) -> NodeConfig:
    """Return config unchanged, or raise ParameterError listing every bad value."""
    problems = [problem for field in dataclasses.fields(config)
                for problem in field_problems(field.name, getattr(config, field.name))]
    if config.cameras and config.backend == "tensorrt" and config.worker_threads != 1:
        problems.append(f"worker_threads={config.worker_threads} with backend tensorrt: "
                        f"expected 1 (an engine's context runs one call at a time)")
    if config.min_depth >= config.max_depth:
        problems.append(f"min_depth={config.min_depth} must be below max_depth={config.max_depth}")
    if problems:
        raise ParameterError("invalid parameters: " + "; ".join(problems))
    return config


def check_update(config: NodeConfig | None, changes: dict[str, object]) -> NodeConfig | None:
    """The configuration after `changes` (names of NodeConfig fields only), or
    ParameterError saying why not. `config` is the running one (None: unconfigured, when
    any valid value is accepted and read at the next configure)."""
    problems = [problem for name, value in changes.items()
                for problem in field_problems(name, value)]
    if config is not None:
        problems += [f"{name} cannot change while the node is configured (it shapes the "
                     f"model, its memory or the subscriptions): deactivate and clean up the "
                     f"node, set it, then configure again"
                     for name in changes if name not in LIVE]
    if problems:
        raise ParameterError("; ".join(problems))
    return None if config is None else dataclasses.replace(config, **changes)


def declare_parameters(node: Node) -> None:
    """Declare every NodeConfig field on the node with its default and descriptor."""
    for field in dataclasses.fields(NodeConfig):
        spec = descriptor(field.name)
        default = field.default
        if isinstance(default, tuple):  # an empty list would fix the type to a byte array
            default, spec.dynamic_typing = list(default), True
        node.declare_parameter(field.name, default, spec)


def read_config(node: Node) -> NodeConfig:
    """The node's current parameter values, validated."""
    values = {field.name: node.get_parameter(field.name).value
              for field in dataclasses.fields(NodeConfig)}
    return validate(NodeConfig(**values))
