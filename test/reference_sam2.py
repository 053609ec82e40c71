"""Meta's reference SAM 2 (PyPI `sam2==1.1.0`), used only as a test oracle.

Builds the reference model at a given size and image size with the settings its video
predictor uses, gives it seeded random weights (every tensor perturbed, so no
zero-initialised part hides a bug), and saves them in the official checkpoint format.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sam2_ros.bench.reference import REFERENCE_CONFIGS as REF_CONFIGS
from sam2_ros.bench.reference import reference_overrides


def build_reference(size: str, image_size: int, version: str = "2.1", seed: int = 0) -> torch.nn.Module:
    """Reference SAM2Base in eval mode with seeded, perturbed random weights."""
    pytest.importorskip("sam2", reason="reference sam2==1.1.0 not installed (scripts/setup.sh installs it)")
    from sam2.build_sam import build_sam2

    overrides = reference_overrides(image_size, max_conditioning_frames=4) + [
        # What SAM2VideoPredictor's builder sets (hole filling needs CUDA: left off).
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
        "++model.binarize_mask_from_pts_for_mem_enc=true",
    ]
    torch.manual_seed(seed)
    model = build_sam2(REF_CONFIGS[(version, size)], ckpt_path=None, device="cpu",
                       hydra_overrides_extra=overrides, apply_postprocessing=False)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.state_dict().values():
            if p.is_floating_point():
                p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    return model.eval()


def save_official(model: torch.nn.Module, path: Path) -> Path:
    """Write `model`'s weights as Meta's checkpoints are laid out: {"model": state_dict}."""
    torch.save({"model": model.state_dict()}, path)
    return path
