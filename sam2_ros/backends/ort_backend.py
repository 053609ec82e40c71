"""onnxruntime backend: the exported parts, run through I/O binding on torch tensors.

Inputs are bound by pointer (no copies beyond making them contiguous) and outputs are
written into torch tensors allocated here, on CPU or, with the CUDA provider, on the GPU,
so the rest of the tracker keeps working on torch tensors. Output shapes come from the
graph's declared shapes, whose dynamic dims carry the names of `parts.PartSpec`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sam2_ros.backends import onnx_export
from sam2_ros.backends.base import Backend
from sam2_ros.backends.parts import PartSpec
from sam2_ros.engine.model import SAM2Model

# ONNX tensor type -> (torch dtype, numpy dtype), for the types our graphs use.
ONNX_TYPES = {
    "tensor(float)": (torch.float32, np.float32),
    "tensor(float16)": (torch.float16, np.float16),
    "tensor(int32)": (torch.int32, np.int32),
    "tensor(int64)": (torch.int64, np.int64),
    "tensor(bool)": (torch.bool, np.bool_),
}


def resolve_shape(declared: list[int | str | None], dims: dict[str, int], what: str) -> tuple[int, ...]:
    """A declared output shape with named dims replaced by their bound sizes."""
    shape = []
    for d in declared:
        if isinstance(d, int):
            shape.append(d)
        elif isinstance(d, str) and d in dims:
            shape.append(dims[d])
        else:
            raise ValueError(f"cannot resolve dim {d!r} of {what} from the bound dims {dims}")
    return tuple(shape)


def bound_dims(spec: PartSpec, inputs: dict[str, torch.Tensor]) -> dict[str, int]:
    """Named dynamic dims -> sizes, from the inputs; inconsistent sizes raise ValueError."""
    dims: dict[str, int] = {}
    for name, axes in spec.dynamic.items():
        for axis, dim in axes.items():
            size = int(inputs[name].shape[axis])
            if dims.setdefault(dim, size) != size:
                raise ValueError(f"{spec.name}: dim {dim!r} is {dims[dim]} elsewhere but {size} in {name!r}")
    return dims


class OrtBackend(Backend):
    """`onnx_dir`: a directory written by `python -m sam2_ros.export` for this model (its
    manifest is checked against the weights); None exports into a cache directory keyed by
    the weights. `providers`: onnxruntime execution providers; default CUDA when the model
    is on CUDA, else CPU."""

    name = "onnxruntime"

    def __init__(
        self,
        model: SAM2Model,
        *,
        dtype: torch.dtype = torch.float32,
        max_conditioning: int = 4,
        onnx_dir: str | Path | None = None,
        providers: list[str] | None = None,
    ) -> None:
        import onnxruntime as ort

        super().__init__(model, max_conditioning=max_conditioning)
        if dtype != torch.float32:
            raise ValueError(f"the onnxruntime backend runs float32 graphs; got dtype {dtype}")
        self.onnx_dir, _ = onnx_export.prepare_onnx_dir(model, onnx_dir, max_conditioning=max_conditioning)
        if providers is None:
            providers = ["CUDAExecutionProvider"] if self.device.type == "cuda" else ["CPUExecutionProvider"]
        missing = [p for p in providers if p not in ort.get_available_providers()]
        if missing:
            raise ValueError(
                f"onnxruntime providers {missing} are not available (available: {ort.get_available_providers()}); "
                "for CUDA install onnxruntime-gpu"
            )
        self.providers = providers
        # Where the session wants its tensors: the GPU with the CUDA provider, else the CPU.
        self.io_device = self.device if providers[0] == "CUDAExecutionProvider" else torch.device("cpu")
        self._ort = ort
        self._sessions: dict[str, object] = {}

    def _session(self, spec: PartSpec) -> object:
        session = self._sessions.get(spec.name)
        if session is None:
            options = self._ort.SessionOptions()
            options.log_severity_level = 3  # errors only
            # No busy-waiting: onnxruntime's pool threads otherwise spin after each run and
            # starve torch (the tracker's glue, other runners) of the cores they need next.
            options.intra_op_num_threads = torch.get_num_threads()
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
            session = self._ort.InferenceSession(
                str(self.onnx_dir / spec.filename), sess_options=options, providers=self.providers
            )
            self._sessions[spec.name] = session
        return session

    def _run(self, spec: PartSpec, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        session = self._session(spec)
        binding = session.io_binding()
        device_type = self.io_device.type
        device_id = self.io_device.index or 0
        kept = []  # bound tensors must outlive the run
        for arg in session.get_inputs():
            torch_dtype, np_dtype = ONNX_TYPES[arg.type]
            tensor = inputs[arg.name].to(self.io_device, torch_dtype).contiguous()
            kept.append(tensor)
            binding.bind_input(arg.name, device_type, device_id, np_dtype, tuple(tensor.shape), tensor.data_ptr())
        dims = bound_dims(spec, inputs)
        outputs = {}
        for out in session.get_outputs():
            torch_dtype, np_dtype = ONNX_TYPES[out.type]
            shape = resolve_shape(out.shape, dims, f"{spec.name}:{out.name}")
            tensor = torch.empty(shape, dtype=torch_dtype, device=self.io_device)
            binding.bind_output(out.name, device_type, device_id, np_dtype, shape, tensor.data_ptr())
            outputs[out.name] = tensor
        if device_type == "cuda":
            torch.cuda.current_stream().synchronize()  # inputs written by torch must be ready
        session.run_with_iobinding(binding)
        return {name: t.to(self.device) for name, t in outputs.items()}
