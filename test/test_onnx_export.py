"""ONNX export of the four parts: valid graphs, dynamic objects/points, onnxruntime equal to
torch fp32, and a manifest that refuses other weights."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from backend_helpers import MAX_CONDITIONING, exported_dir, make_model
from sam2_ros.backends import parts
from sam2_ros.backends.onnx_export import ExportManifest, check_manifest, ensure_exported
from sam2_ros.backends.parts import MemorySlots

ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
onnx = pytest.importorskip("onnx", reason="onnx not installed")

TOLERANCE = 1e-3  # max |difference| of any output, fp32 onnxruntime vs eager torch


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return make_model()


@pytest.fixture(scope="module")
def onnx_dir(model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return exported_dir(model, tmp_path_factory)


def test_every_part_is_a_valid_graph_with_the_spec_names(onnx_dir: Path) -> None:
    manifest = ExportManifest.load(onnx_dir)
    assert manifest.parts == tuple(spec.name for spec in parts.all_specs())
    for spec in parts.all_specs():
        path = onnx_dir / spec.filename
        onnx.checker.check_model(str(path))
        graph = onnx.load(str(path), load_external_data=False).graph
        assert tuple(i.name for i in graph.input) == spec.inputs
        assert tuple(o.name for o in graph.output) == spec.outputs
        for value in graph.input:
            declared = {i: d.dim_param for i, d in enumerate(value.type.tensor_type.shape.dim) if d.dim_param}
            assert declared == spec.dynamic.get(value.name, {}), value.name


@pytest.mark.parametrize("spec", parts.all_specs(), ids=lambda s: s.name)
def test_onnxruntime_part_equals_torch(spec: parts.PartSpec, model: torch.nn.Module, onnx_dir: Path) -> None:
    """Other batch and point counts than the export's example, so the dims are truly dynamic."""
    slots = MemorySlots.for_model(model, MAX_CONDITIONING)
    module = parts.build_part(spec, model, slots).eval()
    session = ort.InferenceSession(str(onnx_dir / spec.filename), providers=["CPUExecutionProvider"])
    for batch, points in ((1, 1), (3, 5)):
        inputs = parts.example_inputs(spec, model, slots, batch=batch, points=points)
        got = session.run(None, {name: t.numpy() for name, t in inputs.items()})
        with torch.no_grad():
            expected = module(*inputs.values())
        expected = expected if isinstance(expected, tuple) else (expected,)
        assert len(got) == len(expected) == len(spec.outputs)
        for name, g, e in zip(spec.outputs, got, expected):
            assert g.shape == tuple(e.shape), name
            assert np.abs(g - e.numpy()).max() <= TOLERANCE, f"{spec.name}:{name} batch={batch}"


def test_export_is_reused_for_the_same_weights(model: torch.nn.Module, onnx_dir: Path) -> None:
    stamps = {p.name: p.stat().st_mtime_ns for p in onnx_dir.iterdir()}
    ensure_exported(model, onnx_dir, max_conditioning=MAX_CONDITIONING)
    assert {p.name: p.stat().st_mtime_ns for p in onnx_dir.iterdir()} == stamps


def test_manifest_refuses_other_weights_and_slots(model: torch.nn.Module, onnx_dir: Path) -> None:
    check_manifest(model, onnx_dir, max_conditioning=MAX_CONDITIONING)
    with pytest.raises(ValueError, match="max_conditioning: exported 4, model 5"):
        check_manifest(model, onnx_dir, max_conditioning=5)
    other = make_model()
    with torch.no_grad():
        other.no_obj_ptr.add_(1.0)
    with pytest.raises(ValueError, match="weights differ"):
        check_manifest(other, onnx_dir, max_conditioning=MAX_CONDITIONING)


def test_missing_manifest_names_the_export_command(tmp_path: Path, model: torch.nn.Module) -> None:
    with pytest.raises(FileNotFoundError, match="python -m sam2_ros.export"):
        check_manifest(model, tmp_path, max_conditioning=MAX_CONDITIONING)


def test_export_cli_arguments() -> None:
    from sam2_ros.export import parse_args

    args = parse_args(["--model", "tiny", "--image-size", "256", "--out", "x"])
    assert (args.model, args.image_size, args.out, args.tensorrt) == ("tiny", 256, Path("x"), False)
    with pytest.raises(SystemExit):
        parse_args(["--model", "huge", "--out", "x"])
