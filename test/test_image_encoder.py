"""Image encoder (Hiera + FPN neck) against Meta's reference with identical weights."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from reference_sam2 import build_reference
from sam2_ros.engine.config import sam2_config
from sam2_ros.engine.image_encoder import HieraConfig, ImageEncoder, ImageEncoderConfig

TOL = 2e-4
PREFIX = "image_encoder."


def encoder_like(reference: torch.nn.Module, size: str, device: str) -> ImageEncoder:
    """Our encoder for `size`, holding the reference's image_encoder weights (strict key match)."""
    weights = {k[len(PREFIX):]: v for k, v in reference.state_dict().items() if k.startswith(PREFIX)}
    encoder = ImageEncoder(sam2_config(size).image_encoder)
    encoder.load_state_dict(weights)
    return encoder.eval().to(device)


@pytest.mark.parametrize(
    ("version", "size", "image_size"),
    [
        ("2.1", "tiny", 256),
        ("2.1", "tiny", 512),
        ("2.1", "small", 256),
        ("2.1", "base_plus", 256),  # stage-3 windows of 14 need padding on a 16x16 grid
        pytest.param("2.1", "large", 256, marks=pytest.mark.slow),
        pytest.param("2.1", "tiny", 1024, marks=pytest.mark.slow),
        ("2.0", "tiny", 256),
    ],
)
def test_matches_reference(version: str, size: str, image_size: int, device: str) -> None:
    reference = build_reference(size, image_size, version=version).to(device)
    encoder = encoder_like(reference, size, device)
    images = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(3)).to(device)

    with torch.no_grad():
        expected = reference.image_encoder(images)
        features, pos = encoder(images)

    assert len(features) == len(pos) == 3
    for level, (want, got) in enumerate(zip(expected["backbone_fpn"], features)):
        side = image_size // (4 * 2**level)
        assert got.shape == (2, 256, side, side) == want.shape
        assert (got - want).abs().max().item() <= TOL, f"backbone_fpn level {level}"
    for level, (want, got) in enumerate(zip(expected["vision_pos_enc"], pos)):
        assert got.shape == want.shape
        assert (got - want).abs().max().item() <= TOL, f"pos_enc level {level}"


def test_batch_elements_are_independent(device: str) -> None:
    """Windowing and pooling must never mix images of one batch."""
    reference = build_reference("tiny", 256)
    encoder = encoder_like(reference, "tiny", device)
    images = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(4)).to(device)
    with torch.no_grad():
        batched, _ = encoder(images)
        single, _ = encoder(images[1:])
    for level, (b, s) in enumerate(zip(batched, single)):
        assert (b[1:] - s).abs().max().item() <= TOL, f"level {level}"


@pytest.mark.parametrize(
    ("size", "embed_dim", "blocks"), [("tiny", 96, 12), ("small", 96, 16), ("base_plus", 112, 24), ("large", 144, 48)]
)
def test_presets_have_official_shapes(size: str, embed_dim: int, blocks: int) -> None:
    cfg = sam2_config(size).image_encoder
    assert cfg.trunk.embed_dim == embed_dim
    assert sum(cfg.trunk.stages) == blocks
    assert cfg.backbone_channel_list == (8 * embed_dim, 4 * embed_dim, 2 * embed_dim, embed_dim)


def test_unknown_size_names_the_choices() -> None:
    with pytest.raises(ValueError, match="huge.*base_plus"):
        sam2_config("huge")


def test_rejects_images_that_do_not_tile() -> None:
    encoder = ImageEncoder(sam2_config("tiny").image_encoder)
    with pytest.raises(ValueError, match=r"multiples of 32, got \(1, 3, 240, 256\)"):
        encoder(torch.zeros(1, 3, 240, 256))


def test_neck_channels_must_match_trunk() -> None:
    with pytest.raises(ValueError, match=r"\(768, 384, 192, 96\), got \(896, 448, 224, 112\)"):
        ImageEncoderConfig(trunk=HieraConfig(), backbone_channel_list=(896, 448, 224, 112))


def test_smaller_trunk_runs_at_256() -> None:
    """A custom 'nano' trunk (fewer blocks) is just another config."""
    trunk = dataclasses.replace(HieraConfig(), stages=(1, 1, 2, 1), global_att_blocks=(3,))
    encoder = ImageEncoder(ImageEncoderConfig(trunk=trunk)).eval()
    with torch.no_grad():
        features, pos = encoder(torch.randn(1, 3, 256, 256))
    assert [f.shape[-1] for f in features] == [64, 32, 16]
    assert [p.shape for p in pos] == [f.shape for f in features]
    assert len(encoder.trunk.blocks) == 5
