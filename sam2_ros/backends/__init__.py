"""Backends that run SAM 2's heavy parts for the streaming tracker: eager/compiled PyTorch,
onnxruntime, TensorRT. `make_backend` picks one by name."""
from __future__ import annotations

import importlib
import importlib.util

from sam2_ros.backends.base import PART_NAMES, Backend, PartTimer
from sam2_ros.engine.model import SAM2Model

# name -> (module, class, packages it needs, how to get them)
_BACKENDS = {
    "torch": ("torch_backend", "TorchBackend", (), ""),
    "onnxruntime": (
        "ort_backend",
        "OrtBackend",
        ("onnxruntime", "onnx"),
        "pip install onnxruntime onnx onnxscript (onnxruntime-gpu instead of onnxruntime for CUDA)",
    ),
    "tensorrt": (
        "trt_backend",
        "TensorRTBackend",
        ("tensorrt", "onnx"),
        "TensorRT 10 Python bindings: on Jetson they come with JetPack (python3-libnvinfer), on x86 "
        "from NVIDIA (pip install tensorrt --extra-index-url https://pypi.nvidia.com); plus pip "
        "install onnx onnxscript",
    ),
}
BACKEND_NAMES = tuple(_BACKENDS)


class BackendUnavailable(ImportError):
    """A backend's packages are not installed."""


def make_backend(name: str, model: SAM2Model, **options: object) -> Backend:
    """The backend `name` for `model` (already on its device); options go to its constructor
    (all take `dtype` and `max_conditioning`)."""
    if name not in _BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {BACKEND_NAMES}")
    module_name, class_name, packages, install = _BACKENDS[name]
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise BackendUnavailable(f"backend {name!r} needs {missing}, which are not importable: {install}")
    module = importlib.import_module(f"sam2_ros.backends.{module_name}")
    return getattr(module, class_name)(model, **options)


__all__ = ["BACKEND_NAMES", "PART_NAMES", "Backend", "BackendUnavailable", "PartTimer", "make_backend"]
