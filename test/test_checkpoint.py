"""Loading official-format checkpoints, and the errors for files that do not fit."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from reference_sam2 import build_reference, save_official
from sam2_ros.engine.checkpoint import CheckpointError, CheckpointNotFoundError, load_checkpoint
from sam2_ros.engine.config import sam2_config
from sam2_ros.engine.image_encoder import ImageEncoder


class EncoderOnly(nn.Module):
    """Stand-in for the full model: just its `image_encoder` child."""

    def __init__(self, size: str = "tiny") -> None:
        super().__init__()
        self.image_encoder = ImageEncoder(sam2_config(size).image_encoder)


@pytest.fixture(scope="module")
def reference() -> nn.Module:
    return build_reference("tiny", 256)


@pytest.fixture(scope="module")
def encoder_file(reference: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An official-format file holding only the image encoder's weights."""
    weights = {k: v for k, v in reference.state_dict().items() if k.startswith("image_encoder.")}
    path = tmp_path_factory.mktemp("ckpt") / "encoder.pt"
    torch.save({"model": weights}, path)
    return path


def assert_same_weights(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key].to(value.dtype)), key


def test_round_trip_official_file(reference: nn.Module, encoder_file: Path) -> None:
    model = EncoderOnly()
    report = load_checkpoint(model, encoder_file)
    assert_same_weights(model, reference.state_dict())
    assert set(report.loaded) == set(model.state_dict())
    assert report.missing == report.unexpected == ()
    assert report.checkpoint_size == "tiny"
    assert "tiny" in report.summary() and str(encoder_file) in report.summary()


def test_bare_state_dict(reference: nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "bare.pt"
    torch.save({k: v for k, v in reference.state_dict().items() if k.startswith("image_encoder.")}, path)
    model = EncoderOnly()
    load_checkpoint(model, path)
    assert_same_weights(model, reference.state_dict())


def test_full_reference_file_non_strict_reports_the_rest(reference: nn.Module, tmp_path: Path) -> None:
    path = save_official(reference, tmp_path / "sam2.1_tiny.pt")
    model = EncoderOnly()
    report = load_checkpoint(model, path, strict=False)
    assert_same_weights(model, reference.state_dict())
    assert "sam_mask_decoder.iou_token.weight" in report.unexpected
    assert not any(k.startswith("image_encoder.") for k in report.unexpected)
    assert report.checkpoint_version == "2.1" and report.model_version is None


def test_loads_into_model_dtype(encoder_file: Path, reference: nn.Module) -> None:
    model = EncoderOnly().to(torch.bfloat16)
    load_checkpoint(model, encoder_file)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert_same_weights(model, reference.state_dict())


def test_missing_file_says_where_it_looked(tmp_path: Path) -> None:
    (tmp_path / "sam2.1_hiera_small.pt").write_bytes(b"")
    with pytest.raises(CheckpointNotFoundError, match="sam2.1_hiera_tiny.pt") as info:
        load_checkpoint(EncoderOnly(), tmp_path / "sam2.1_hiera_tiny.pt")
    assert str(tmp_path) in str(info.value) and "sam2.1_hiera_small.pt" in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("kept", [0.0, 0.5, 0.999])
def test_truncated_file(encoder_file: Path, tmp_path: Path, kept: float) -> None:
    data = encoder_file.read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: int(len(data) * kept)])
    with pytest.raises(CheckpointError, match="cut.pt.*truncated or corrupt"):
        load_checkpoint(EncoderOnly(), path)


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.pt"
    path.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
                     .numpy().tobytes())
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*noise.pt"):
        load_checkpoint(EncoderOnly(), path)


def test_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"optimizer": [1, 2], "epoch": 3}, path)
    with pytest.raises(CheckpointError, match="no 'model' state dict.*optimizer, epoch"):
        load_checkpoint(EncoderOnly(), path)


def edited(encoder_file: Path, tmp_path: Path, edit) -> Path:
    weights = torch.load(encoder_file, weights_only=True)["model"]
    edit(weights)
    path = tmp_path / "edited.pt"
    torch.save({"model": weights}, path)
    return path


def test_missing_keys_are_named(encoder_file: Path, tmp_path: Path) -> None:
    path = edited(encoder_file, tmp_path, lambda w: w.pop("image_encoder.neck.convs.2.conv.bias"))
    with pytest.raises(CheckpointError, match=r"1 missing keys .*image_encoder\.neck\.convs\.2\.conv\.bias"):
        load_checkpoint(EncoderOnly(), path)
    report = load_checkpoint(EncoderOnly(), path, strict=False)
    assert report.missing == ("image_encoder.neck.convs.2.conv.bias",)


def test_unexpected_keys_are_named(encoder_file: Path, tmp_path: Path) -> None:
    path = edited(encoder_file, tmp_path, lambda w: w.update({"image_encoder.extra.weight": torch.zeros(3)}))
    with pytest.raises(CheckpointError, match=r"1 unexpected keys .*image_encoder\.extra\.weight"):
        load_checkpoint(EncoderOnly(), path)


def test_misshaped_keys_name_both_shapes_even_when_not_strict(encoder_file: Path, tmp_path: Path) -> None:
    path = edited(encoder_file, tmp_path, lambda w: w.update({"image_encoder.trunk.pos_embed": torch.zeros(1, 96, 14, 14)}))
    for strict in (True, False):
        with pytest.raises(CheckpointError, match=r"trunk\.pos_embed checkpoint \[1, 96, 14, 14\] vs model \[1, 96, 7, 7\]"):
            load_checkpoint(EncoderOnly(), path, strict=strict)


def test_tiny_file_in_large_model_names_both_sizes(encoder_file: Path) -> None:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(EncoderOnly("large"), encoder_file)
    message = str(info.value)
    assert "checkpoint is SAM tiny (trunk: 96 channels, 12 blocks)" in message
    assert "model is SAM large (trunk: 144 channels, 48 blocks)" in message
    assert "image_encoder.trunk.patch_embed.proj.weight checkpoint [96, 3, 7, 7] vs model [144, 3, 7, 7]" in message


def test_sam20_file_in_sam21_model_names_versions(tmp_path: Path) -> None:
    """Full models (reference as stand-in for ours): the 2.1-only keys are named."""
    model_21 = build_reference("tiny", 256, version="2.1")
    path = save_official(build_reference("tiny", 256, version="2.0"), tmp_path / "sam2_tiny.pt")
    with pytest.raises(CheckpointError, match="build the model as SAM 2.0") as info:
        load_checkpoint(model_21, path)
    assert "3 missing keys" in str(info.value) and "no_obj_embed_spatial" in str(info.value)
    report = load_checkpoint(model_21, path, strict=False)
    assert (report.checkpoint_version, report.model_version) == ("2.0", "2.1")
    assert set(report.missing) == {"no_obj_embed_spatial", "obj_ptr_tpos_proj.weight", "obj_ptr_tpos_proj.bias"}
    assert "SAM 2.0 checkpoint in a SAM 2.1 model" in report.version_notes[0]


@pytest.mark.parametrize("version", ["2.1", "2.0"])
def test_full_model_round_trip(version: str, tmp_path: Path) -> None:
    model_module = pytest.importorskip("sam2_ros.engine.model", reason="full model (engine/model.py) not written yet")
    reference = build_reference("tiny", 256, version=version)
    path = save_official(reference, tmp_path / f"sam{version}_tiny.pt")
    model = model_module.build_model("tiny", 256, version)
    report = load_checkpoint(model, path)
    assert_same_weights(model, reference.state_dict())
    assert set(report.loaded) == set(reference.state_dict())
    assert (report.checkpoint_version, report.model_version, report.checkpoint_size) == (version, version, "tiny")
    assert report.version_notes == ()


def test_full_model_of_another_size_names_both(tmp_path: Path, reference: nn.Module) -> None:
    model_module = pytest.importorskip("sam2_ros.engine.model", reason="full model (engine/model.py) not written yet")
    path = save_official(reference, tmp_path / "sam2.1_tiny.pt")
    with pytest.raises(CheckpointError, match=r"checkpoint is SAM 2\.1 tiny .*model is SAM 2\.1 small"):
        load_checkpoint(model_module.build_model("small", 256, "2.1"), path)
