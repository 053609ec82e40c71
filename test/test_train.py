"""Training: the rollout learns, a run resumes exactly, the export loads with the official loader.

CPU, the nano size at a small image size, random weights, a few steps each.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sam2_ros.engine.checkpoint import load_checkpoint
from sam2_ros.engine.model import build_model
from sam2_ros.engine.preprocess import preprocess_frame
from sam2_ros.train.losses import LossWeights
from sam2_ros.train.prompts import PromptKind, PromptPlan
from sam2_ros.train.rollout import rollout
from sam2_ros.train.train import TrainConfig, export_weights, load_state, new_state, save_state, train_step
from sam2_ros.train.video_gen import generate_clip

SMALL = TrainConfig(image_size=128, video_frames=2, steps=10, warmup_steps=2, num_objects=(1, 2))
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_training_steps_decrease_the_loss_on_a_fixed_example():
    torch.manual_seed(0)
    model = build_model("nano", image_size=128)
    clip = generate_clip(np.random.default_rng(3), num_frames=3, size=(128, 128), num_objects=(2, 2))
    # A box on frame 0, one corrective click on frame 2: prompting, tracking and correction passes.
    plan = PromptPlan(kind=PromptKind.BOX, prompt_frames=(0,), correction_frames=(0, 2), clicks_per_correction=1)

    def loss(train: bool) -> torch.Tensor:
        model.train(train)
        return rollout(model, clip, plan, np.random.default_rng(5)).total  # the same prompts every time

    with torch.no_grad():
        before = loss(False).item()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(5):
        optimizer.zero_grad()
        loss(True).backward()
        optimizer.step()
    with torch.no_grad():
        after = loss(False).item()
    assert np.isfinite(before) and after < 0.9 * before, (before, after)


def _snapshot(state) -> tuple[dict[str, torch.Tensor], dict, dict, int]:
    params = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
    # Deep copies: a state dict shares its tensors with the live optimizer.
    return params, copy.deepcopy(state.optimizer.state_dict()), copy.deepcopy(state.rng.bit_generator.state), state.step


def _assert_optimizer_states_equal(a: dict, b: dict) -> None:
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for key in a["state"]:
        for name, value in a["state"][key].items():
            assert torch.equal(value, b["state"][key][name]), (key, name)


def test_resume_continues_exactly_where_the_run_stopped(tmp_path):
    state = new_state(SMALL)
    for _ in range(2):
        train_step(state, SMALL, backgrounds=None)
    save_state(state, SMALL, tmp_path / "state.pt")
    saved = _snapshot(state)
    train_step(state, SMALL, backgrounds=None)
    uninterrupted = _snapshot(state)

    torch.manual_seed(123)  # the resumed process starts with another global RNG state
    resumed = load_state(SMALL, tmp_path / "state.pt")
    params, optimizer, rng, step = _snapshot(resumed)
    assert step == saved[3] == 2
    assert rng == saved[2]
    assert all(torch.equal(params[k], saved[0][k]) for k in params)
    _assert_optimizer_states_equal(optimizer, saved[1])

    train_step(resumed, SMALL, backgrounds=None)
    after = _snapshot(resumed)
    assert after[3] == uninterrupted[3] == 3
    assert after[2] == uninterrupted[2]
    differing = [k for k in after[0] if not torch.equal(after[0][k], uninterrupted[0][k])]
    assert not differing, differing
    _assert_optimizer_states_equal(after[1], uninterrupted[1])
    # The step did change the weights, so equality above is not vacuous.
    assert any(not torch.equal(after[0][k], params[k]) for k in params)


def test_resume_refuses_a_state_from_another_config(tmp_path):
    state = new_state(SMALL)
    save_state(state, SMALL, tmp_path / "state.pt")
    with pytest.raises(ValueError, match="saved by a run with config"):
        load_state(dataclasses.replace(SMALL, lr=SMALL.lr * 2), tmp_path / "state.pt")


def test_exported_weights_load_into_the_nano_model_with_the_official_loader(tmp_path):
    state = new_state(SMALL)
    train_step(state, SMALL, backgrounds=None)
    path = tmp_path / "sam2_nano.pt"
    export_weights(state.model, SMALL, state, path)

    assert set(torch.load(path, map_location="cpu")) == {"model"}  # the official layout
    model = build_model("nano", image_size=256)  # the state dict does not depend on the image size
    load_checkpoint(model, path)
    exported = state.model.state_dict()
    assert all(torch.equal(v, exported[k]) for k, v in model.state_dict().items())
    description = yaml.safe_load(path.with_suffix(".yaml").read_text())
    assert description["model"]["size"] == "nano"
    assert description["training"]["steps_done"] == 1


def test_later_stages_start_from_the_given_weights_and_record_the_earlier_ones(tmp_path):
    from sam2_ros.train.card import _stage_lines, training_stages

    first = new_state(SMALL)
    train_step(first, SMALL, backgrounds=None)
    stage1 = tmp_path / "stage1" / "sam2_nano.pt"
    export_weights(first.model, SMALL, first, stage1)

    cfg = dataclasses.replace(SMALL, seed=1, lr=1e-4, init_weights=str(stage1))
    second = new_state(cfg)
    loaded = second.model.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in first.model.state_dict().items())
    train_step(second, cfg, backgrounds=None)
    stage2 = tmp_path / "stage2" / "sam2_nano.pt"
    export_weights(second.model, cfg, second, stage2)
    training = yaml.safe_load(stage2.with_suffix(".yaml").read_text())["training"]
    assert training["init_weights"] == str(stage1) and training["lr"] == 1e-4
    assert training["init_training"]["lr"] == SMALL.lr and training["init_training"]["steps_done"] == 1

    cfg3 = dataclasses.replace(cfg, seed=2, video_frames=3, video_prob=1.0, hide_prob=1.0, init_weights=str(stage2))
    third = new_state(cfg3)
    train_step(third, cfg3, backgrounds=None)
    stage3 = tmp_path / "stage3" / "sam2_nano.pt"
    export_weights(third.model, cfg3, third, stage3)
    training = yaml.safe_load(stage3.with_suffix(".yaml").read_text())["training"]
    assert [stage["seed"] for stage in training_stages(training)] == [SMALL.seed, 1, 2]
    text = "\n".join(_stage_lines(training, SMALL.image_size))
    assert "Stage 3, from stage 2's weights" in text and "--hide-prob 1 " in text
    assert f"--init-weights {stage2} " in text and "--out out/train " in text
    assert f"--out {stage2.parent} --weights {stage2}" in text  # where stage 3 read it from


@pytest.mark.skipif(not (REPO / "weights" / "sam2_nano.pt").is_file(), reason="weights/sam2_nano.pt not trained yet")
def test_shipped_checkpoint_loads_into_nano_at_256():
    path = REPO / "weights" / "sam2_nano.pt"
    assert path.stat().st_size < 16 * 2**20  # a few MB
    model = build_model("nano", image_size=256)
    report = load_checkpoint(model, path)
    assert len(report.loaded) == len(model.state_dict())
    assert report.checkpoint_version == "2.1"


def test_rollout_computes_what_the_tracker_computes():
    """Training must optimise the model the node runs: with dropout off, the rollout's outputs
    on every frame equal `StreamingTracker`'s for the same clip and mask prompts."""
    from sam2_ros.engine.tracker import StreamingTracker

    torch.manual_seed(0)
    model = build_model("nano", image_size=128).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.state_dict().values():  # no zero-initialised part hides a difference
            if p.is_floating_point():
                p.add_(torch.randn(p.shape, generator=gen) * 0.02)
        for layer in model.memory_attention.layers:  # make the memory matter as much as the frame
            layer.cross_attn_image.out_proj.weight.mul_(20.0)
        # Random weights predict "absent" everywhere: make objects score present.
        model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(5.0)
    clip = generate_clip(np.random.default_rng(5), num_frames=9, size=(128, 128), num_objects=(2, 2))
    plan = PromptPlan(kind=PromptKind.MASK, prompt_frames=(0,), correction_frames=(), clicks_per_correction=0)
    outputs = []
    with torch.no_grad():
        rollout(model, clip, plan, np.random.default_rng(0), outputs=outputs)
    tracker = StreamingTracker(model)
    tracker.track(clip.frames[0])
    for k, obj_id in enumerate(clip.obj_ids):
        tracker.add_prompt(int(obj_id), mask=clip.masks[0, k])
    for t in range(1, clip.masks.shape[0]):
        results = tracker.track(clip.frames[t])
        for k, obj_id in enumerate(clip.obj_ids):
            expected = outputs[t].low_res_logits[k, 0].numpy()
            np.testing.assert_allclose(results[int(obj_id)].low_res_logits, expected, atol=1e-5,
                                       err_msg=f"frame {t}, object {obj_id}", rtol=0)
            assert results[int(obj_id)].object_score_logit == pytest.approx(
                float(outputs[t].object_score_logits[k, 0]), abs=1e-4)


def test_evaluation_and_card_run_end_to_end(tmp_path):
    """The evaluation's JSON holds J, F, the all-objects J and visibility for every prompt kind,
    and the card renders from it and the checkpoint's .yaml."""
    from sam2_ros.train import card, evaluate

    state = new_state(SMALL)
    weights = tmp_path / "sam2_nano.pt"
    export_weights(state.model, SMALL, state, weights)
    out = tmp_path / "eval"
    evaluate.main(["--checkpoint", str(weights), "--clips", "1", "--frames", "3", "--hiding-clips", "2",
                   "--hiding-frames", "6", "--out", str(out)])
    results = json.loads((out / "results.json").read_text())
    for name in ("trained", "random"):
        for kind in ("mask", "box", "click"):
            scores = results[name]["synthetic"][kind]
            assert 0.0 <= scores["J"] <= 1.0 and 0.0 <= scores["J_vs_all_objects"] <= 1.0
            assert 0.0 <= scores["visibility_accuracy"] <= 1.0
            hiding = results[name]["hiding"][kind]
            assert hiding["hidden_frames"] > 0 and 0.0 <= hiding["hidden_flagged"] <= 1.0
    card_path = tmp_path / "CARD.md"
    card.main(["--weights", str(weights), "--eval", str(out), "--card", str(card_path)])
    text = card_path.read_text()
    assert "| jittered box | trained |" in text and f"--max-objects {SMALL.num_objects[1]}" in text
    assert "| jittered box | trained | " in text.split("### Hidden")[1]  # the hiding table


def test_feature_scale_term_adds_the_weighted_mean_square_of_the_features():
    torch.manual_seed(0)
    model = build_model("nano", image_size=128)
    clip = generate_clip(np.random.default_rng(3), num_frames=2, size=(128, 128), num_objects=(1, 1))
    plan = PromptPlan(kind=PromptKind.BOX, prompt_frames=(0,), correction_frames=(), clicks_per_correction=0)
    plain = rollout(model, clip, plan, np.random.default_rng(0), weights=LossWeights(feature_scale=0.0))
    scaled = rollout(model, clip, plan, np.random.default_rng(0), weights=LossWeights(feature_scale=0.5))
    assert plain.feature_scale == 0.0 and scaled.feature_scale > 0.0
    assert scaled.total.item() == pytest.approx(plain.total.item() + 0.5 * scaled.feature_scale, rel=1e-5)


def test_memory_prior_makes_the_memory_depend_more_on_the_mask():
    """The prior's purpose, measured as the card measures it: memories written from a mask and
    from the same mask moved differ more, relative to their spread."""
    from sam2_ros.train.train import memory_prior_init

    clip = generate_clip(np.random.default_rng(3), num_frames=1, size=(128, 128), num_objects=(1, 1))
    mask = torch.from_numpy(clip.masks[0, :1]).float()[None]  # (1, 1, S, S)

    def mask_share(model):
        with torch.no_grad():
            feats = model.encode_image(preprocess_frame(clip.frames[0], 128))
            mems = [model.encode_memory(feats.pix_feat, model.mask_as_output(feats, m).low_res_logits,
                                        torch.ones(1, 1), binarize=True)[0]
                    for m in (mask, torch.roll(mask, 40, dims=-1))]
        return ((mems[0] - mems[1]).std() / mems[0].std()).item()

    torch.manual_seed(0)
    default = build_model("nano", image_size=128).eval()
    torch.manual_seed(0)
    primed = build_model("nano", image_size=128).eval()
    memory_prior_init(primed, mask_gain=5.0, locality_bias=3.0)
    assert mask_share(primed) > 1.1 * mask_share(default)  # measured 0.32 vs 0.27
    layer = primed.memory_attention.layers[0].cross_attn_image
    assert torch.equal(layer.q_proj.bias, torch.full_like(layer.q_proj.bias, 3.0))
    assert torch.equal(layer.q_proj.bias, layer.k_proj.bias)


def test_decoder_prior_makes_a_click_attend_to_its_own_cell():
    """With the prior, the click token's first look at the image (its positional encoding
    against the image's, on a blank image) peaks at or next to the clicked cell."""
    from sam2_ros.train.train import decoder_prior_init

    def hits(model) -> float:
        encoder, attention = model.sam_prompt_encoder, model.sam_mask_decoder.transformer.layers[0].cross_attn_token_to_image
        cells = torch.stack(torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij"), -1).reshape(-1, 2)  # (64, 2) row, col
        clicks = (cells.flip(-1).float() * 16 + 8)[:, None]  # (64, 1, 2) x, y at each cell's centre
        with torch.no_grad():
            sparse, _ = encoder(points=(clicks, torch.ones(64, 1, dtype=torch.int32)), boxes=None, masks=None)
            image_pe = encoder.get_dense_pe().flatten(2).transpose(1, 2)  # (1, 64, C)
            q = attention.q_proj(2 * sparse[:, :1])  # layer 0: the token is its own positional term
            k = attention.k_proj(image_pe)
            best = (q @ k.transpose(1, 2))[:, 0].argmax(-1)  # (64,) best image cell per click
        off = (cells[best] - cells).abs().max(-1).values  # cells between the peak and the click
        return (off <= 1).float().mean().item()

    torch.manual_seed(0)
    before = hits(build_model("nano", image_size=128).eval())
    after = {}
    for aligned in (False, True):
        torch.manual_seed(0)
        model = build_model("nano", image_size=128).eval()
        decoder_prior_init(model, gain=2.0, seed=0, aligned=aligned)
        layer = model.sam_mask_decoder.transformer.layers[1].cross_attn_image_to_token
        assert torch.equal(layer.q_proj.weight, layer.k_proj.weight)
        after[aligned] = hits(model)
    # Share of clicks whose peak is within one cell: measured 0.22 at PyTorch's init, 0.53 with
    # random orthonormal rows, 0.89 with each head on its own frequencies.
    assert after[False] > before + 0.2 and after[True] > 0.85, (before, after)


def test_hiding_tally_scores_a_perfect_tracker_and_a_still_mask():
    """Truth as the prediction scores 1 everywhere; the frame-0 mask held still and always
    visible flags no hidden frame and scores J 0 once the moved object is back."""
    from sam2_ros.train.evaluate import HidingTally, TrackedClip, held_still, hiding_clip

    clip = hiding_clip(0, num_frames=14, image_size=128, backgrounds=None)
    assert not clip.visible.all()  # something is wholly hidden
    perfect = HidingTally()
    perfect.add(TrackedClip(masks=clip.masks, visible=clip.visible), clip)
    best = perfect.summary()
    assert best["hidden_frames"] > 0 and best["hidden_flagged"] == 1.0 and best["visible_kept"] == 1.0
    still = HidingTally()
    still.add(held_still(clip), clip)
    worst = still.summary()
    assert worst["hidden_flagged"] == 0.0 and worst["visible_kept"] == 1.0
    assert best["objects_back"] > 0 and best["J_after"] == 1.0 and worst["J_after"] < best["J_after"]
