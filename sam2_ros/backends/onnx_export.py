"""Export the parts of a SAM 2 model to ONNX, with a manifest that ties them to the weights.

Uses torch's default exporter (`torch.onnx.export(..., dynamo=True)`, via torch.export and
onnxscript): the TorchScript exporter mis-infers a shape in Hiera's windowing. Dynamic
dimensions (objects, prompt points) keep the names of `parts.PartSpec`, so onnxruntime and
TensorRT can resolve output shapes and build optimization profiles from them.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from sam2_ros.backends import parts
from sam2_ros.backends.parts import MemorySlots, PartSpec
from sam2_ros.engine.model import SAM2Model

OPSET = 18
MANIFEST = "manifest.json"
DEFAULT_CACHE = Path.home() / ".cache" / "sam2_ros" / "onnx"
MAX_DYNAMIC = 1024  # upper bound given to torch.export for the dynamic dims


@dataclass(frozen=True)
class ExportManifest:
    """What a directory of exported parts was made from."""

    size: str
    version: str
    image_size: int
    max_conditioning: int
    fingerprint: str  # of the configuration and weights (`model_fingerprint`)
    opset: int
    parts: tuple[str, ...]  # file stems

    def save(self, directory: Path) -> None:
        (directory / MANIFEST).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> ExportManifest:
        path = directory / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"no {MANIFEST} in {directory}: export with `python -m sam2_ros.export`")
        data = json.loads(path.read_text())
        data["parts"] = tuple(data["parts"])
        return cls(**data)


def model_fingerprint(model: SAM2Model) -> str:
    """sha256 of the configuration and every weight: exported graphs embed the weights, so a
    directory exported from other weights must not be used with this model."""
    digest = hashlib.sha256(repr(model.cfg).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def expected_manifest(model: SAM2Model, max_conditioning: int) -> ExportManifest:
    cfg = model.cfg
    return ExportManifest(
        size=cfg.size,
        version=cfg.version,
        image_size=cfg.image_size,
        max_conditioning=max_conditioning,
        fingerprint=model_fingerprint(model),
        opset=OPSET,
        parts=tuple(spec.name for spec in parts.all_specs()),
    )


def export_part(spec: PartSpec, model: SAM2Model, slots: MemorySlots, path: Path) -> None:
    """Export one part to `path` and check it with the ONNX checker."""
    import onnx

    module = parts.build_part(spec, model, slots).eval()
    example = parts.example_inputs(spec, model, slots)
    dims: dict[str, torch.export.Dim] = {}
    dynamic_shapes = {
        name: {axis: dims.setdefault(dim, torch.export.Dim(dim, min=1, max=MAX_DYNAMIC))
               for axis, dim in spec.dynamic.get(name, {}).items()} or None
        for name in spec.inputs
    }
    with torch.no_grad(), _quiet_exporter():
        torch.onnx.export(
            module,
            tuple(example[name] for name in spec.inputs),
            str(path),
            input_names=list(spec.inputs),
            output_names=list(spec.outputs),
            dynamic_shapes=dynamic_shapes,
            opset_version=OPSET,
            dynamo=True,
            verbose=False,
        )
    onnx.checker.check_model(str(path))


def export_parts(model: SAM2Model, directory: str | Path, *, max_conditioning: int = 4) -> ExportManifest:
    """Export every part into `directory`; the manifest is written last, so a directory
    with a manifest is complete."""
    if importlib.util.find_spec("onnxscript") is None:
        raise ImportError("exporting to ONNX needs onnxscript (torch's exporter): pip install onnx onnxscript")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MANIFEST).unlink(missing_ok=True)
    slots = MemorySlots.for_model(model, max_conditioning)
    for spec in parts.all_specs():
        export_part(spec, model, slots, directory / spec.filename)
    manifest = expected_manifest(model, max_conditioning)
    manifest.save(directory)
    return manifest


def ensure_exported(model: SAM2Model, directory: str | Path, *, max_conditioning: int = 4) -> ExportManifest:
    """Reuse `directory` if it holds this model's parts with these slots, else export there."""
    directory = Path(directory)
    expected = expected_manifest(model, max_conditioning)
    with contextlib.suppress(FileNotFoundError):
        found = ExportManifest.load(directory)
        if found == expected and all((directory / f"{name}.onnx").is_file() for name in found.parts):
            return found
    return export_parts(model, directory, max_conditioning=max_conditioning)


def check_manifest(model: SAM2Model, directory: str | Path, *, max_conditioning: int) -> ExportManifest:
    """The directory's manifest if it matches this model, else ValueError naming the mismatch."""
    found = ExportManifest.load(Path(directory))
    expected = expected_manifest(model, max_conditioning)
    mismatched = [
        f"{field}: exported {getattr(found, field)!r}, model {getattr(expected, field)!r}"
        for field in ("size", "version", "image_size", "max_conditioning", "opset", "parts")
        if getattr(found, field) != getattr(expected, field)
    ]
    if found.fingerprint != expected.fingerprint:
        mismatched.append("weights differ from the model's (fingerprint)")
    if mismatched:
        raise ValueError(f"ONNX parts in {directory} do not match the model: " + "; ".join(mismatched))
    return found


# Exporter warnings that do not concern our graphs: caches filled while tracing (torch.export
# restores the attributes afterwards), dims merged into the one name we gave, pytree internals.
_HARMLESS_WARNINGS = ("assigned during export", "will not be used, since it shares", "LeafSpec")


def prepare_onnx_dir(
    model: SAM2Model, onnx_dir: str | Path | None, *, max_conditioning: int
) -> tuple[Path, ExportManifest]:
    """A directory of parts for this model: `onnx_dir` checked against the model, or, when
    None, a cache directory keyed by the weights, exported there on first use."""
    if onnx_dir is None:
        directory = DEFAULT_CACHE / model_fingerprint(model)[:16]
        return directory, ensure_exported(model, directory, max_conditioning=max_conditioning)
    return Path(onnx_dir), check_manifest(model, onnx_dir, max_conditioning=max_conditioning)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter also logs every missing torchvision op it could register; we use none."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            for message in _HARMLESS_WARNINGS:
                warnings.filterwarnings("ignore", message=f".*{message}")
            yield
    finally:
        logger.setLevel(level)
