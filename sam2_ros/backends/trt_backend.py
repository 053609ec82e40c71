"""TensorRT backend: engines built from the exported ONNX parts, cached on disk, run on torch
CUDA tensors.

Engines are built once per (weights, image size, precision, GPU, TensorRT version) with
the TensorRT 10 Python API and cached under `engine_dir`. At run time, input tensors are
bound by address (zero-copy), outputs are allocated from torch's caching allocator (no
cudaMalloc per frame) and each part is enqueued with `execute_async_v3` on torch's current
stream, so it orders with the surrounding torch work without synchronizing.

TensorRT cannot be installed where this was written: the pure pieces (profile shapes, cache
key, dtype mapping) are unit-tested without it; the code that calls TensorRT follows the
documented TensorRT 10 API and is exercised only where `tensorrt` imports.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from sam2_ros.backends import onnx_export, parts
from sam2_ros.backends.base import Backend
from sam2_ros.backends.onnx_export import ExportManifest
from sam2_ros.backends.parts import PartSpec
from sam2_ros.engine.model import SAM2Model

PRECISIONS = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
# TensorRT DataType member name -> torch dtype, for engine I/O.
TRT_DTYPES = {
    "FLOAT": torch.float32,
    "HALF": torch.float16,
    "BF16": torch.bfloat16,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "INT8": torch.int8,
    "UINT8": torch.uint8,
    "BOOL": torch.bool,
}
DEFAULT_ENGINE_DIR = Path.home() / ".cache" / "sam2_ros" / "tensorrt"
Shape = tuple[int, ...]


@dataclass(frozen=True)
class ProfileLimits:
    """Ranges of the dynamic dims the engines accept: objects per batch and prompt points."""

    max_objects: int = 16
    opt_objects: int = 1
    max_points: int = 16
    opt_points: int = 2

    def range(self, dim: str) -> tuple[int, int, int]:
        if dim == parts.BATCH:
            return 1, self.opt_objects, self.max_objects
        if dim == parts.POINTS:
            return 1, self.opt_points, self.max_points
        raise ValueError(f"no profile range for dim {dim!r}; expected {parts.BATCH!r} or {parts.POINTS!r}")


def onnx_input_shapes(path: str | Path) -> dict[str, list[int | str]]:
    """Declared input shapes of an ONNX graph: sizes, or the names of dynamic dims."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return {
        value.name: [d.dim_param if d.dim_param else d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in graph.input
    }


def profile_shapes(
    declared: dict[str, list[int | str]], limits: ProfileLimits
) -> dict[str, tuple[Shape, Shape, Shape]]:
    """(min, opt, max) shapes for every input with a dynamic dim; static inputs are left out."""
    shapes = {}
    for name, dims in declared.items():
        if all(isinstance(d, int) for d in dims):
            continue
        ranges = [limits.range(d) if isinstance(d, str) else (d, d, d) for d in dims]
        shapes[name] = tuple(tuple(r[i] for r in ranges) for i in range(3))
    return shapes


def engine_filename(
    manifest: ExportManifest,
    part: str,
    *,
    precision: str,
    gpu_name: str,
    compute_capability: tuple[int, int],
    trt_version: str,
    limits: ProfileLimits,
    onnx_digest: str,
    int8: bool,
) -> str:
    """Readable and unique: a cached engine is reused only for the same weights, graph,
    size, precision, profile, GPU and TensorRT version."""
    digest = hashlib.sha256(
        repr((manifest.fingerprint, manifest.max_conditioning, onnx_digest, limits, int8)).encode()
    ).hexdigest()[:12]
    gpu = re.sub(r"[^a-z0-9]+", "-", gpu_name.lower()).strip("-")
    major, minor = compute_capability
    quant = "-int8" if int8 else ""
    return (
        f"{part}-{manifest.size}-{manifest.image_size}-v{manifest.version}-{precision}{quant}"
        f"-{gpu}-sm{major}{minor}-trt{trt_version}-{digest}.engine"
    )


def torch_dtype(trt_dtype: object) -> torch.dtype:
    """A `tensorrt.DataType` as a torch dtype."""
    name = getattr(trt_dtype, "name", str(trt_dtype).rsplit(".", 1)[-1])
    if name not in TRT_DTYPES:
        raise ValueError(f"TensorRT dtype {name} has no torch equivalent here; expected one of {list(TRT_DTYPES)}")
    return TRT_DTYPES[name]


def build_engine(
    onnx_path: Path,
    *,
    precision: str,
    limits: ProfileLimits,
    int8_calibrator: object | None = None,
    workspace_bytes: int | None = None,
) -> bytes:
    """Parse an ONNX part and build a serialized engine with one optimization profile."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    if workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    elif precision != "fp32":
        raise ValueError(f"precision must be one of {sorted(PRECISIONS.values())}, got {precision!r}")

    network_inputs = {network.get_input(i).name for i in range(network.num_inputs)}
    shapes = {n: s for n, s in profile_shapes(onnx_input_shapes(onnx_path), limits).items() if n in network_inputs}
    profile = None
    if shapes:
        profile = builder.create_optimization_profile()
        for name, (smallest, optimal, largest) in shapes.items():
            profile.set_shape(name, smallest, optimal, largest)
        config.add_optimization_profile(profile)
    if int8_calibrator is not None:
        # Layers INT8 cannot serve fall back to FP16 rather than FP32.
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)
        config.int8_calibrator = int8_calibrator
        if profile is not None:
            config.set_calibration_profile(profile)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    return bytes(serialized)


def make_int8_calibrator(batches: Iterable[dict[str, torch.Tensor]], cache_path: str | Path) -> object:
    """An entropy calibrator fed with named CUDA input tensors, one dict per calibration batch
    (the hook for INT8: pass `int8_calibrators={part name: calibrator}` to the backend)."""
    import tensorrt as trt

    class TensorCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches = iter(batches)
            self._current: dict[str, torch.Tensor] = {}  # kept alive while TensorRT reads it
            self._cache = Path(cache_path)

        def get_batch_size(self) -> int:
            return 1  # explicit-batch networks: shapes come from the calibration profile

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self._batches, None)
            if batch is None:
                return None
            self._current = {n: batch[n].cuda().contiguous() for n in names}
            return [self._current[n].data_ptr() for n in names]

        def read_calibration_cache(self) -> bytes | None:
            return self._cache.read_bytes() if self._cache.is_file() else None

        def write_calibration_cache(self, cache: bytes) -> None:
            self._cache.write_bytes(bytes(cache))

    return TensorCalibrator()


def ensure_engines(
    onnx_dir: Path,
    manifest: ExportManifest,
    engine_dir: Path,
    *,
    precision: str,
    limits: ProfileLimits,
    device: torch.device,
    int8_calibrators: dict[str, object] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Build (or reuse from `engine_dir`) one engine per exported part -> paths by part name."""
    import tensorrt as trt

    engine_dir.mkdir(parents=True, exist_ok=True)
    gpu_name = torch.cuda.get_device_name(device)
    capability = torch.cuda.get_device_capability(device)
    paths = {}
    for part in manifest.parts:
        onnx_path = onnx_dir / f"{part}.onnx"
        calibrator = (int8_calibrators or {}).get(part)
        path = engine_dir / engine_filename(
            manifest,
            part,
            precision=precision,
            gpu_name=gpu_name,
            compute_capability=capability,
            trt_version=trt.__version__,
            limits=limits,
            onnx_digest=hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
            int8=calibrator is not None,
        )
        if not path.is_file():
            log(f"building TensorRT engine {path.name} (minutes on a Jetson)")
            engine = build_engine(onnx_path, precision=precision, limits=limits, int8_calibrator=calibrator)
            partial = path.with_suffix(".partial")
            partial.write_bytes(engine)
            partial.rename(path)  # a crash mid-write never leaves a truncated engine behind
        paths[part] = path
    return paths


class TensorRTBackend(Backend):
    """`dtype` picks the engines' precision (float16 by default; float32 and bfloat16 too);
    `int8_calibrators` ({part name: calibrator}, see `make_int8_calibrator`) adds INT8 to
    those parts. `onnx_dir` as for the onnxruntime backend; `engine_dir` caches engines."""

    name = "tensorrt"

    def __init__(
        self,
        model: SAM2Model,
        *,
        dtype: torch.dtype = torch.float16,
        max_conditioning: int = 4,
        onnx_dir: str | Path | None = None,
        engine_dir: str | Path | None = None,
        limits: ProfileLimits = ProfileLimits(),
        int8_calibrators: dict[str, object] | None = None,
    ) -> None:
        import tensorrt as trt

        super().__init__(model, max_conditioning=max_conditioning)
        if self.device.type != "cuda":
            raise ValueError(f"the TensorRT backend needs the model on CUDA; it is on {self.device.type}")
        if dtype not in PRECISIONS:
            raise ValueError(f"dtype must be one of {list(PRECISIONS)}, got {dtype}")
        self.limits = limits
        onnx_dir, manifest = onnx_export.prepare_onnx_dir(model, onnx_dir, max_conditioning=max_conditioning)
        self.engine_paths = ensure_engines(
            onnx_dir,
            manifest,
            Path(engine_dir) if engine_dir is not None else DEFAULT_ENGINE_DIR,
            precision=PRECISIONS[dtype],
            limits=limits,
            device=self.device,
            int8_calibrators=int8_calibrators,
        )
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engines = {}
        self._contexts = {}
        self._io: dict[str, dict[str, torch.dtype]] = {}  # part -> tensor name -> dtype
        for part, path in self.engine_paths.items():
            engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                raise RuntimeError(f"TensorRT could not deserialize {path}; delete it to rebuild")
            self._engines[part] = engine
            self._contexts[part] = engine.create_execution_context()
            self._io[part] = {
                engine.get_tensor_name(i): torch_dtype(engine.get_tensor_dtype(engine.get_tensor_name(i)))
                for i in range(engine.num_io_tensors)
            }
        self._input_mode = trt.TensorIOMode.INPUT

    def _run(self, spec: PartSpec, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        engine, context, io = self._engines[spec.name], self._contexts[spec.name], self._io[spec.name]
        # Bound inputs must stay allocated until the work is enqueued; after that torch's
        # stream-ordered allocator cannot hand their memory out before the stream reaches it.
        kept = []
        for name in spec.inputs:
            if name not in io:
                continue  # the parser dropped an input the graph does not use
            tensor = inputs[name].to(self.device, io[name]).contiguous()
            kept.append(tensor)
            context.set_input_shape(name, tuple(tensor.shape))
            context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for name in spec.outputs:
            if engine.get_tensor_mode(name) == self._input_mode:
                raise RuntimeError(f"{spec.name}: {name!r} is an input of the engine, expected an output")
            out = torch.empty(tuple(context.get_tensor_shape(name)), dtype=io[name], device=self.device)
            context.set_tensor_address(name, out.data_ptr())
            outputs[name] = out
        stream = torch.cuda.current_stream(self.device)
        if not context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"TensorRT failed to run {spec.name}")
        return outputs
