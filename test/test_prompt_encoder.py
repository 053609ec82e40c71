"""Prompt encoder parity with the reference SAM 2 `sam_prompt_encoder` given the same weights."""
from __future__ import annotations

import copy
import functools

import pytest
import torch
from torch.testing import assert_close

from reference_sam2 import build_reference
from sam2_ros.engine.prompt_encoder import PromptEncoder, PromptEncoderConfig

TOL = 2e-4


@functools.lru_cache(maxsize=2)
def reference_prompt_encoder(size: str, image_size: int, version: str = "2.1") -> torch.nn.Module:
    """The reference's prompt encoder alone, so the rest of the model can be freed."""
    return copy.deepcopy(build_reference(size, image_size, version).sam_prompt_encoder)


def ours_from(reference: torch.nn.Module, image_size: int, device: str) -> PromptEncoder:
    """Our encoder with the reference weights; strict loading checks every key and shape."""
    ours = PromptEncoder(PromptEncoderConfig(image_embedding_size=image_size // 16, input_image_size=image_size))
    ours.load_state_dict(reference.state_dict(), strict=True)
    return ours.to(device).eval()


def prompt_cases(image_size: int, gen: torch.Generator) -> dict[str, tuple]:
    """(points, boxes, masks) per case, in the forms SAM2Base and SAM's predictors pass them."""

    def clicks(b: int, labels: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(labels[0])
        coords = torch.rand(b, n, 2, generator=gen) * image_size  # (B, N, 2) pixels
        return coords, torch.tensor(labels, dtype=torch.int32)

    box = torch.tensor([[0.1, 0.2, 0.7, 0.9]]) * image_size  # (1, 4) x0, y0, x1, y1
    mask = torch.randn(2, 1, image_size // 4, image_size // 4, generator=gen) * 5  # (B, 1, 4h, 4w)
    return {
        "single_click": (clicks(1, [[1]]), None, None),
        "clicks_with_negatives": (clicks(2, [[1, 0, 0, 1], [0, 1, 0, 0]]), None, None),
        "box_as_corner_points": ((box.reshape(1, 2, 2), torch.tensor([[2, 3]], dtype=torch.int32)), None, None),
        "box_argument": (None, box, None),
        "clicks_and_box": (clicks(1, [[1, 0]]), box, None),
        "mask_input": (clicks(2, [[1], [0]]), None, mask),
        "mask_only": (None, None, mask),
        "padding_only": ((torch.zeros(3, 1, 2), -torch.ones(3, 1, dtype=torch.int32)), None, None),
        "no_prompt": (None, None, None),
        "three_objects": (clicks(3, [[1, -1], [1, 0], [3, 2]]), None, None),
    }


def to_device(prompt, device: str):
    if prompt is None:
        return None
    if isinstance(prompt, tuple):
        return tuple(t.to(device) for t in prompt)
    return prompt.to(device)


@pytest.mark.parametrize("image_size", [256, 512])
def test_matches_reference_on_every_prompt_kind(image_size: int, device: str) -> None:
    reference = reference_prompt_encoder("tiny", image_size).to(device)
    ours = ours_from(reference, image_size, device)
    gen = torch.Generator().manual_seed(image_size)
    h = image_size // 16
    with torch.no_grad():
        for name, prompts in prompt_cases(image_size, gen).items():
            points, boxes, masks = (to_device(p, device) for p in prompts)
            sparse, dense = ours(points, boxes, masks)
            ref_sparse, ref_dense = reference(points, boxes, masks)
            assert sparse.shape == ref_sparse.shape, name
            assert dense.shape == ref_dense.shape == (sparse.shape[0], 256, h, h), name
            assert_close(sparse, ref_sparse, atol=TOL, rtol=0, msg=lambda m: f"{name}: {m}")
            assert_close(dense, ref_dense, atol=TOL, rtol=0, msg=lambda m: f"{name}: {m}")
        dense_pe = ours.get_dense_pe()
        assert dense_pe.shape == (1, 256, h, h)
        assert_close(dense_pe, reference.get_dense_pe(), atol=TOL, rtol=0)


def test_points_get_one_padding_token_only_without_box() -> None:
    ours = PromptEncoder(PromptEncoderConfig(image_embedding_size=16, input_image_size=256)).eval()
    coords, labels = torch.rand(2, 3, 2) * 256, torch.ones(2, 3, dtype=torch.int32)
    box = torch.tensor([[10.0, 20.0, 100.0, 200.0]]).expand(2, 4)
    with torch.no_grad():
        padded, _ = ours((coords, labels), None, None)
        with_box, _ = ours((coords, labels), box, None)
    assert padded.shape == (2, 4, 256)
    assert torch.equal(padded[:, 3], ours.not_a_point_embed.weight.expand(2, 256))
    assert with_box.shape == (2, 5, 256)
    assert_close(with_box[:, :3], padded[:, :3], atol=1e-5, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("size", "version"), [("small", "2.1"), ("base_plus", "2.1"), ("large", "2.1"), ("tiny", "2.0")]
)
def test_checkpoint_keys_and_parity_per_size(size: str, version: str, device: str) -> None:
    reference = reference_prompt_encoder(size, 256, version).to(device)
    ours = ours_from(reference, 256, device)
    assert set(ours.state_dict()) == set(reference.state_dict())
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name in ("clicks_with_negatives", "mask_input"):
            points, boxes, masks = (to_device(p, device) for p in prompt_cases(256, gen)[name])
            for got, want in zip(ours(points, boxes, masks), reference(points, boxes, masks)):
                assert_close(got, want, atol=TOL, rtol=0, msg=lambda m: f"{name}: {m}")


def test_wrong_mask_size_is_rejected() -> None:
    ours = PromptEncoder(PromptEncoderConfig(image_embedding_size=16, input_image_size=256))
    with pytest.raises(ValueError, match=r"\(B, 1, 64, 64\), got \(1, 1, 32, 32\)"):
        ours(None, None, torch.zeros(1, 1, 32, 32))


def test_dense_pe_is_cached_and_never_stale() -> None:
    """One grid per size, recomputed when the frequencies change: loaded in place (version
    bump) or replaced; first asked for under inference_mode, it still works with autograd."""
    ours = PromptEncoder(PromptEncoderConfig(image_embedding_size=16, input_image_size=256))
    layer = ours.pe_layer

    def fresh() -> torch.Tensor:
        return layer._compute_grid(16)[None]

    with torch.inference_mode():
        first = ours.get_dense_pe()
    assert not first.is_inference() and torch.equal(first, fresh())
    assert ours.get_dense_pe().data_ptr() == first.data_ptr()  # cached, not rebuilt
    weight = torch.ones(1, requires_grad=True)
    (ours.get_dense_pe() * weight).sum().backward()
    assert weight.grad is not None

    doubled = 2 * layer.positional_encoding_gaussian_matrix
    ours.load_state_dict({**ours.state_dict(), "pe_layer.positional_encoding_gaussian_matrix": doubled})
    loaded = ours.get_dense_pe()
    assert torch.equal(loaded, fresh()) and not torch.equal(loaded, first)

    layer.positional_encoding_gaussian_matrix = torch.randn(2, 128)
    assert torch.equal(ours.get_dense_pe(), fresh()) and not torch.equal(ours.get_dense_pe(), loaded)
