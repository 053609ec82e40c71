"""Memory encoder against Meta's reference (fp32 CPU, random weights)."""
from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from reference_sam2 import REF_CONFIGS, build_reference
from sam2_ros.engine.memory_encoder import MemoryEncoder, MemoryEncoderConfig

TOL = 2e-4
PREFIX = "memory_encoder."


@functools.lru_cache(maxsize=None)
def models(image_size: int) -> tuple[torch.nn.Module, MemoryEncoder]:
    """(reference memory encoder, ours with the same weights), tiny SAM 2.1."""
    full = build_reference("tiny", image_size)
    state = {k[len(PREFIX):]: v for k, v in full.state_dict().items() if k.startswith(PREFIX)}
    ours = MemoryEncoder(MemoryEncoderConfig()).eval()
    ours.load_state_dict(state, strict=True)
    return full.memory_encoder, ours


@pytest.mark.parametrize("image_size", [256, 512])
@pytest.mark.parametrize("b", [1, 3])
@pytest.mark.parametrize("skip_mask_sigmoid", [True, False])
def test_parity(image_size: int, b: int, skip_mask_sigmoid: bool) -> None:
    ref, ours = models(image_size)
    h = image_size // 16
    pix_feat = torch.randn(b, 256, h, h)
    masks = 10 * torch.randn(b, 1, image_size, image_size)  # logits, or scaled probabilities as SAM 2 feeds
    with torch.no_grad():
        expected = ref(pix_feat, masks, skip_mask_sigmoid=skip_mask_sigmoid)
        features, pos = ours(pix_feat, masks, skip_mask_sigmoid=skip_mask_sigmoid)
    assert features.shape == pos.shape == (b, 64, h, h)
    assert (features - expected["vision_features"]).abs().max().item() <= TOL
    assert (pos - expected["vision_pos_enc"][0]).abs().max().item() <= TOL


def test_sigmoid_is_skipped_by_default() -> None:
    """SAM 2 applies its own sigmoid scale/bias before the encoder, so the default skips it."""
    _, ours = models(256)
    pix_feat, masks = torch.randn(1, 256, 16, 16), torch.randn(1, 1, 256, 256)
    with torch.no_grad():
        default = ours(pix_feat, masks)[0]
        assert torch.equal(default, ours(pix_feat, masks, skip_mask_sigmoid=True)[0])
        assert not torch.allclose(default, ours(pix_feat, masks, skip_mask_sigmoid=False)[0])


@pytest.mark.parametrize("version,size", sorted(REF_CONFIGS))
def test_official_config_keys_load(version: str, size: str) -> None:
    """Every official config's memory encoder has our keys and shapes (the sections are identical)."""
    pytest.importorskip("sam2", reason="reference sam2==1.1.0 not installed")
    import sam2
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(Path(sam2.__file__).parent / REF_CONFIGS[(version, size)])
    ref_state = instantiate(cfg.model.memory_encoder).state_dict()
    ours = MemoryEncoder(MemoryEncoderConfig())
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref_state.items()}
    ours.load_state_dict(ref_state, strict=True)


def test_rejects_mask_of_wrong_size() -> None:
    _, ours = models(256)
    with pytest.raises(ValueError, match=r"masks must be \(1, 1, 256, 256\)"):
        ours(torch.randn(1, 256, 16, 16), torch.randn(1, 1, 128, 128))
