"""Mask decoder (with the two-way transformer) parity with the reference SAM 2 `sam_mask_decoder`.

Prompts go through each side's own prompt encoder, so the pair is checked end to end as
SAM2Base uses it; the high-resolution features go through each side's conv_s0 / conv_s1.
"""
from __future__ import annotations

import copy
import dataclasses
import functools

import pytest
import torch
from torch.testing import assert_close

from reference_sam2 import build_reference
from sam2_ros.engine.mask_decoder import MaskDecoder, MaskDecoderConfig, stability_scores
from sam2_ros.engine.prompt_encoder import PromptEncoder, PromptEncoderConfig
from test_prompt_encoder import prompt_cases, to_device

TOL = 2e-4
OUTPUTS = ("masks", "iou_pred", "sam_tokens_out", "object_score_logits")


@functools.lru_cache(maxsize=2)
def reference_heads(size: str, image_size: int, version: str = "2.1") -> tuple[torch.nn.Module, torch.nn.Module]:
    """The reference's (prompt encoder, mask decoder), so the rest of the model can be freed."""
    model = build_reference(size, image_size, version)
    return copy.deepcopy(model.sam_prompt_encoder), copy.deepcopy(model.sam_mask_decoder)


def ours_from(
    reference: tuple[torch.nn.Module, torch.nn.Module], image_size: int, device: str, **decoder_overrides
) -> tuple[PromptEncoder, MaskDecoder]:
    """Our (prompt encoder, decoder) with the reference weights, loaded strictly (every key, every shape)."""
    ref_prompt, ref_decoder = reference
    prompt = PromptEncoder(PromptEncoderConfig(image_embedding_size=image_size // 16, input_image_size=image_size))
    prompt.load_state_dict(ref_prompt.state_dict(), strict=True)
    decoder = MaskDecoder(dataclasses.replace(MaskDecoderConfig(), **decoder_overrides))
    decoder.load_state_dict(ref_decoder.state_dict(), strict=True)
    return prompt.to(device).eval(), decoder.to(device).eval()


def image_features(batch: int, image_size: int, gen: torch.Generator) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Random lowest FPN level (B, 256, h, w) and the two raw high-resolution levels."""
    h = image_size // 16
    levels = [torch.randn(batch, 256, h * s, h * s, generator=gen) for s in (1, 4, 2)]
    return levels[0], levels[1:]


def run_both(
    ours: tuple[PromptEncoder, MaskDecoder],
    reference: tuple[torch.nn.Module, torch.nn.Module],
    prompts: tuple,
    image_embeddings: torch.Tensor,
    fpn: list[torch.Tensor],
    *,
    multimask_output: bool,
    repeat_image: bool = False,
) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    prompt, decoder = ours
    ref_prompt, ref_decoder = reference
    with torch.no_grad():
        got = decoder(
            image_embeddings,
            prompt.get_dense_pe(),
            *prompt(*prompts),
            multimask_output,
            repeat_image,
            decoder.project_high_res(fpn),
        )
        want = ref_decoder(
            image_embeddings,
            ref_prompt.get_dense_pe(),
            *ref_prompt(*prompts),
            multimask_output=multimask_output,
            repeat_image=repeat_image,
            high_res_features=[ref_decoder.conv_s0(fpn[0]), ref_decoder.conv_s1(fpn[1])],
        )
    return got, want


def assert_outputs_close(got: tuple, want: tuple, case: str) -> None:
    for name, g, w in zip(OUTPUTS, got, want):
        assert g.shape == w.shape, f"{case} {name}: {tuple(g.shape)} vs {tuple(w.shape)}"
        assert_close(g, w, atol=TOL, rtol=0, msg=lambda m: f"{case} {name}: {m}")


@pytest.mark.parametrize("multimask_output", [True, False])
@pytest.mark.parametrize("image_size", [256, 512])
def test_matches_reference_on_every_prompt_kind(image_size: int, multimask_output: bool, device: str) -> None:
    reference = tuple(m.to(device) for m in reference_heads("tiny", image_size))
    ours = ours_from(reference, image_size, device)
    gen = torch.Generator().manual_seed(image_size + multimask_output)
    h = image_size // 16
    m = 3 if multimask_output else 1
    for case, prompts in prompt_cases(image_size, gen).items():
        prompts = tuple(to_device(p, device) for p in prompts)
        batch = ours[0](*prompts)[0].shape[0]
        image_embeddings, fpn = image_features(batch, image_size, gen)
        got, want = run_both(
            ours, reference, prompts, image_embeddings.to(device), [f.to(device) for f in fpn],
            multimask_output=multimask_output,
        )
        assert_outputs_close(got, want, case)
        masks, iou_pred, sam_tokens_out, object_score_logits = got
        assert masks.shape == (batch, m, 4 * h, 4 * h)
        assert iou_pred.shape == (batch, m)
        assert sam_tokens_out.shape == (batch, m, 256)  # multimask tokens feed the object pointer
        assert object_score_logits.shape == (batch, 1)


@pytest.mark.parametrize("multimask_output", [True, False])
def test_three_objects_share_one_image_with_repeat_image(multimask_output: bool, device: str) -> None:
    reference = tuple(m.to(device) for m in reference_heads("tiny", 256))
    ours = ours_from(reference, 256, device)
    gen = torch.Generator().manual_seed(7)
    prompts = tuple(to_device(p, device) for p in prompt_cases(256, gen)["three_objects"])
    image_embeddings, fpn = image_features(1, 256, gen)
    got, want = run_both(
        ours, reference, prompts, image_embeddings.to(device), [f.to(device) for f in fpn],
        multimask_output=multimask_output, repeat_image=True,
    )
    assert_outputs_close(got, want, "three_objects")
    assert got[0].shape[0] == 3
    # Different prompts on the same image must give different masks.
    assert (got[0][0] - got[0][1]).abs().max() > 1e-3


def test_stability_picks_single_mask_when_stable_else_best_multimask(device: str) -> None:
    """A batch where object 0's single mask is stable and objects 1..3's are not.

    Shrinking the single-mask hypernetwork output puts most single-mask logits inside the
    +-0.05 band (unstable); scaling object 0's finest features by 1e3 pushes its logits back
    out of the band (stable).
    """
    ref_prompt, ref_decoder = (copy.deepcopy(m).to(device) for m in reference_heads("tiny", 256))
    with torch.no_grad():
        last = ref_decoder.output_hypernetworks_mlps[0].layers[-1]
        last.weight.mul_(1e-2)
        last.bias.mul_(1e-2)
    prompt, decoder = ours_from((ref_prompt, ref_decoder), 256, device)
    gen = torch.Generator().manual_seed(11)
    coords = (torch.rand(4, 1, 2, generator=gen) * 256).to(device)
    labels = torch.ones(4, 1, dtype=torch.int32, device=device)
    image_embeddings, fpn = image_features(4, 256, gen)
    image_embeddings, fpn = image_embeddings.to(device), [f.to(device) for f in fpn]
    scale = torch.tensor([1e3, 1.0, 1.0, 1.0], device=device).view(4, 1, 1, 1)
    with torch.no_grad():
        sparse, dense = prompt((coords, labels), None, None)
        feat_s0, feat_s1 = decoder.project_high_res(fpn)
        high_res = [feat_s0 * scale, feat_s1]
        dense_pe = prompt.get_dense_pe()
        got = decoder(image_embeddings, dense_pe, sparse, dense, False, False, high_res)
        want = ref_decoder(image_embeddings, dense_pe, sparse, dense, False, False, high_res)
        all_masks, all_iou, _, _ = decoder.predict_masks(image_embeddings, dense_pe, sparse, dense, False, high_res)
        ref_scores = ref_decoder._get_stability_scores(all_masks[:, :1])[:, 0]  # the reference's own rule
    assert_outputs_close(got, want, "stability")

    stable = ref_scores >= 0.98
    assert stable.tolist() == [True, False, False, False], ref_scores
    assert_close(stability_scores(all_masks[:, :1], 0.05)[:, 0], ref_scores, atol=0, rtol=0)
    masks, iou_pred = got[0][:, 0], got[1][:, 0]
    best = all_iou[:, 1:].argmax(dim=1) + 1  # (B,)
    for i in range(4):
        chosen = 0 if stable[i] else int(best[i])
        assert torch.equal(masks[i], all_masks[i, chosen]), i
        assert torch.equal(iou_pred[i], all_iou[i, chosen]), i
        if not stable[i]:
            assert not torch.allclose(masks[i], all_masks[i, 0], atol=1e-3), i


@pytest.mark.parametrize("setting", ["training", "dynamic_off", "single_token_for_obj_ptr"])
def test_selection_settings_match_reference(setting: str, device: str) -> None:
    ref_prompt, ref_decoder = (copy.deepcopy(m).to(device) for m in reference_heads("tiny", 256))
    overrides = {}
    if setting == "dynamic_off":
        ref_decoder.dynamic_multimask_via_stability = False
        overrides["dynamic_multimask_via_stability"] = False
    if setting == "single_token_for_obj_ptr":
        ref_decoder.use_multimask_token_for_obj_ptr = False
        overrides["use_multimask_token_for_obj_ptr"] = False
    ours = ours_from((ref_prompt, ref_decoder), 256, device, **overrides)
    if setting == "training":  # dropout is 0, so only the mask selection changes
        ours[1].train()
        ref_decoder.train()
    gen = torch.Generator().manual_seed(5)
    prompts = tuple(to_device(p, device) for p in prompt_cases(256, gen)["clicks_with_negatives"])
    image_embeddings, fpn = image_features(2, 256, gen)
    image_embeddings, fpn = image_embeddings.to(device), [f.to(device) for f in fpn]
    multimask_output = setting == "single_token_for_obj_ptr"
    got, want = run_both(
        ours, (ref_prompt, ref_decoder), prompts, image_embeddings, fpn, multimask_output=multimask_output
    )
    assert_outputs_close(got, want, setting)
    with torch.no_grad():
        all_masks, _, all_tokens, _ = ours[1].predict_masks(
            image_embeddings, ours[0].get_dense_pe(), *ours[0](*prompts), False, ours[1].project_high_res(fpn)
        )
    assert_close(got[2], all_tokens[:, :1], atol=1e-6, rtol=0)
    if not multimask_output:  # always the single-mask token's mask, whatever its stability
        assert_close(got[0], all_masks[:, :1], atol=1e-6, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("size", "version"), [("small", "2.1"), ("base_plus", "2.1"), ("large", "2.1"), ("tiny", "2.0")]
)
def test_checkpoint_keys_and_parity_per_size(size: str, version: str, device: str) -> None:
    reference = tuple(m.to(device) for m in reference_heads(size, 256, version))
    ours = ours_from(reference, 256, device)
    assert set(ours[1].state_dict()) == set(reference[1].state_dict())
    gen = torch.Generator().manual_seed(3)
    prompts = tuple(to_device(p, device) for p in prompt_cases(256, gen)["mask_input"])
    image_embeddings, fpn = image_features(2, 256, gen)
    for multimask_output in (True, False):
        got, want = run_both(
            ours, reference, prompts, image_embeddings.to(device), [f.to(device) for f in fpn],
            multimask_output=multimask_output,
        )
        assert_outputs_close(got, want, f"{size} {version} multimask={multimask_output}")


def test_inconsistent_inputs_are_rejected() -> None:
    prompt = PromptEncoder(PromptEncoderConfig(image_embedding_size=16, input_image_size=256))
    decoder = MaskDecoder(MaskDecoderConfig()).eval()
    gen = torch.Generator().manual_seed(0)
    image_embeddings, fpn = image_features(2, 256, gen)
    sparse, dense = prompt((torch.zeros(3, 1, 2), torch.ones(3, 1, dtype=torch.int32)), None, None)
    high_res = decoder.project_high_res(fpn)
    dense_pe = prompt.get_dense_pe()
    with pytest.raises(ValueError, match="repeat_image needs one image embedding, got 2"):
        decoder(image_embeddings, dense_pe, sparse, dense, True, True, high_res)
    with pytest.raises(ValueError, match="batch 2 != prompt batch 3"):
        decoder(image_embeddings, dense_pe, sparse, dense, True, False, high_res)
    with pytest.raises(ValueError, match="got 1"):
        decoder(image_embeddings[:1], dense_pe, sparse, dense, True, True, high_res[:1])
    with pytest.raises(ValueError, match="got 1 level"):
        decoder.project_high_res(fpn[:1])
