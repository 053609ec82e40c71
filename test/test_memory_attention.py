"""Memory attention and 2D RoPE against Meta's reference (fp32 CPU, random weights)."""
from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from reference_sam2 import REF_CONFIGS, build_reference
from sam2_ros.engine.memory_attention import MemoryAttention, MemoryAttentionConfig
from sam2_ros.engine.rope import apply_rope, axial_tables

TOL = 2e-4
PREFIX = "memory_attention."


def prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


@functools.lru_cache(maxsize=None)
def models(image_size: int) -> tuple[torch.nn.Module, MemoryAttention]:
    """(reference memory attention, ours with the same weights), tiny SAM 2.1."""
    full = build_reference("tiny", image_size)
    ours = MemoryAttention(MemoryAttentionConfig()).eval()
    ours.load_state_dict(prefixed(full.state_dict(), PREFIX), strict=True)
    return full.memory_attention, ours


def make_inputs(b: int, side: int, frames: int, ptr_tokens: int, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    hw, m = side * side, frames * side * side + ptr_tokens
    return {
        "curr": torch.randn(b, hw, 256, generator=gen),
        "curr_pos": torch.randn(b, hw, 256, generator=gen),
        "memory": torch.randn(b, m, 64, generator=gen),
        "memory_pos": torch.randn(b, m, 64, generator=gen),
    }


@torch.no_grad()
def run_reference(ref: torch.nn.Module, inp: dict[str, torch.Tensor], ptr_tokens: int) -> torch.Tensor:
    """The reference is sequence-first: (N, B, C) in and out."""
    out = ref(
        curr=[inp["curr"].transpose(0, 1)],
        curr_pos=[inp["curr_pos"].transpose(0, 1)],
        memory=inp["memory"].transpose(0, 1),
        memory_pos=inp["memory_pos"].transpose(0, 1),
        num_obj_ptr_tokens=ptr_tokens,
    )
    return out.transpose(0, 1)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# --- RoPE ---------------------------------------------------------------------------------


@pytest.mark.parametrize("head_dim,side,frames,exclude", [(256, 16, 1, 0), (256, 16, 3, 8), (64, 8, 7, 64), (32, 5, 0, 4)])
def test_rope_matches_complex_reference(head_dim: int, side: int, frames: int, exclude: int) -> None:
    from sam2.modeling.sam.transformer import apply_rotary_enc, compute_axial_cis

    hw = side * side
    q = torch.randn(2, 1, hw, head_dim)
    k = torch.randn(2, 1, frames * hw + exclude, head_dim)
    n_rope = frames * hw
    ref_q, ref_k = q.clone(), k.clone()
    ref_q, ref_k[:, :, :n_rope] = apply_rotary_enc(
        ref_q, ref_k[:, :, :n_rope], freqs_cis=compute_axial_cis(head_dim, side, side), repeat_freqs_k=True
    )
    cos, sin = axial_tables(head_dim, side, 10000.0, q.device)
    ours_q = apply_rope(q, cos, sin)
    ours_k = torch.cat((apply_rope(k[:, :, :n_rope], cos, sin), k[:, :, n_rope:]), dim=-2)
    assert max_diff(ours_q, ref_q) <= 1e-6
    assert max_diff(ours_k, ref_k) <= 1e-6
    assert not torch.equal(ours_q, q)  # the rotation did something


def test_rope_tables_cached_per_size() -> None:
    a = axial_tables(64, 8, 10000.0, torch.device("cpu"))
    assert axial_tables(64, 8, 10000.0, torch.device("cpu")) is a
    b = axial_tables(64, 9, 10000.0, torch.device("cpu"))
    assert b[0].shape == (81, 32) and a[0].shape == (64, 32)


def test_rope_tables_usable_for_autograd_after_inference_mode() -> None:
    with torch.inference_mode():
        cos, sin = axial_tables(16, 3, 123.0, torch.device("cpu"))
    x = torch.randn(9, 16, requires_grad=True)
    apply_rope(x, cos, sin).sum().backward()
    assert x.grad is not None


def test_rope_rejects_bad_shapes() -> None:
    cos, sin = axial_tables(16, 4, 10000.0, torch.device("cpu"))
    with pytest.raises(ValueError, match="multiple of 16 tokens"):
        apply_rope(torch.randn(1, 20, 16), cos, sin)
    with pytest.raises(ValueError, match="head_dim 16"):
        apply_rope(torch.randn(1, 16, 8), cos, sin)
    with pytest.raises(ValueError, match="multiple of 4"):
        axial_tables(18, 4, 10000.0, torch.device("cpu"))


# --- Parity with the reference -------------------------------------------------------------


@pytest.mark.parametrize("image_size", [256, 512])
@pytest.mark.parametrize("b,frames,ptr_tokens", [(1, 1, 0), (3, 2, 4), (1, 7, 64), (3, 4, 16), (1, 0, 8)])
def test_parity(image_size: int, b: int, frames: int, ptr_tokens: int) -> None:
    ref, ours = models(image_size)
    inp = make_inputs(b, image_size // 16, frames, ptr_tokens)
    expected = run_reference(ref, inp, ptr_tokens)
    with torch.no_grad():
        got = ours(**inp, num_obj_ptr_tokens=ptr_tokens)
    assert got.shape == (b, (image_size // 16) ** 2, 256)
    assert max_diff(got, expected) <= TOL


@pytest.mark.parametrize("version,size", sorted(REF_CONFIGS))
def test_official_config_keys_load(version: str, size: str) -> None:
    """Every official config's memory attention has our keys and shapes (the sections are identical)."""
    pytest.importorskip("sam2", reason="reference sam2==1.1.0 not installed")
    import sam2
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(Path(sam2.__file__).parent / REF_CONFIGS[(version, size)])
    ref_state = instantiate(cfg.model.memory_attention).state_dict()
    ours = MemoryAttention(MemoryAttentionConfig())
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref_state.items()}
    ours.load_state_dict(ref_state, strict=True)


def test_eval_is_deterministic_and_training_uses_dropout() -> None:
    _, ours = models(256)
    inp = make_inputs(1, 16, 1, 4)
    with torch.no_grad():
        first, second = ours(**inp, num_obj_ptr_tokens=4), ours(**inp, num_obj_ptr_tokens=4)
        assert torch.equal(first, second)
        ours.train()
        try:
            assert not torch.equal(ours(**inp, num_obj_ptr_tokens=4), first)
        finally:
            ours.eval()


# --- Fixed memory slots with a validity mask ----------------------------------------------


@pytest.mark.parametrize("b,frames,ptr_tokens", [(1, 3, 8), (3, 7, 64)])
def test_all_valid_mask_equals_unmasked(b: int, frames: int, ptr_tokens: int) -> None:
    _, ours = models(256)
    inp = make_inputs(b, 16, frames, ptr_tokens, seed=1)
    mask = torch.ones(b, inp["memory"].shape[1], dtype=torch.bool)
    with torch.no_grad():
        plain = ours(**inp, num_obj_ptr_tokens=ptr_tokens)
        masked = ours(**inp, num_obj_ptr_tokens=ptr_tokens, memory_mask=mask)
    assert max_diff(plain, masked) <= 1e-5


def test_masked_slots_have_no_influence() -> None:
    """Garbage in masked slots (frames and pointer tokens, per batch element) gives what the
    reference gives with those slots removed."""
    ref, ours = models(256)
    side, hw, max_frames, max_ptr = 16, 256, 4, 16
    valid_frames = [[0, 2], [1, 2, 3], [3]]  # which frame slots hold a memory, per batch element
    valid_ptrs = [[0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7], list(range(16))]
    b = len(valid_frames)
    full = make_inputs(b, side, max_frames, max_ptr, seed=2)
    gen = torch.Generator().manual_seed(3)
    memory = 1e3 * torch.randn(full["memory"].shape, generator=gen)  # garbage everywhere ...
    memory_pos = 1e3 * torch.randn(full["memory_pos"].shape, generator=gen)
    memory[0, hw:2 * hw] = float("nan")  # ... including non-finite values
    memory_pos[1, -1] = float("inf")
    mask = torch.zeros(b, max_frames * hw + max_ptr, dtype=torch.bool)
    for i in range(b):
        for f in valid_frames[i]:
            mask[i, f * hw:(f + 1) * hw] = True
        for p in valid_ptrs[i]:
            mask[i, max_frames * hw + p] = True
    # Valid slots get real memories; each element's expected output uses only those.
    real = make_inputs(b, side, max_frames, max_ptr, seed=4)
    memory = torch.where(mask[..., None], real["memory"], memory)
    memory_pos = torch.where(mask[..., None], real["memory_pos"], memory_pos)
    with torch.no_grad():
        got = ours(full["curr"], full["curr_pos"], memory, memory_pos, max_ptr, memory_mask=mask)
    assert torch.isfinite(got).all()
    for i in range(b):
        kept = {
            "curr": full["curr"][i:i + 1],
            "curr_pos": full["curr_pos"][i:i + 1],
            "memory": memory[i:i + 1, mask[i]],
            "memory_pos": memory_pos[i:i + 1, mask[i]],
        }
        expected = run_reference(ref, kept, len(valid_ptrs[i]))
        assert max_diff(got[i:i + 1], expected) <= TOL


def test_input_validation() -> None:
    _, ours = models(256)
    inp = make_inputs(2, 16, 1, 4)
    with pytest.raises(ValueError, match="memory_mask must be bool of shape"):
        ours(**inp, num_obj_ptr_tokens=4, memory_mask=torch.ones(2, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="num_obj_ptr_tokens must be in"):
        ours(**inp, num_obj_ptr_tokens=-1)
    with pytest.raises(ValueError, match="multiple of 256 tokens"):
        ours(**inp, num_obj_ptr_tokens=3)
    bad = make_inputs(1, 16, 1, 0)
    bad["curr"], bad["curr_pos"] = bad["curr"][:, :200], bad["curr_pos"][:, :200]
    with pytest.raises(ValueError, match="square token grid"):
        ours(**bad)


# --- Export ---------------------------------------------------------------------------------


def test_onnx_export_with_mask_matches_eager(tmp_path: Path) -> None:
    """Exports through torch.export (RoPE without complex tensors), runs in onnxruntime, and
    leaves the eager RoPE cache usable (tracing must not fill it with fake tensors)."""
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    pytest.importorskip("onnxscript", reason="onnxscript (torch.onnx dynamo exporter) not installed")
    torch.manual_seed(0)
    cfg = MemoryAttentionConfig(d_model=32, kv_in_dim=16, num_layers=2, dim_feedforward=64, rope_theta=777.0)
    model = MemoryAttention(cfg).eval()
    side, frames, ptr_tokens = 4, 3, 8
    m = frames * side * side + ptr_tokens

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, curr: torch.Tensor, curr_pos: torch.Tensor, memory: torch.Tensor,
                    memory_pos: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
            return self.model(curr, curr_pos, memory, memory_pos, ptr_tokens, memory_mask)

    args = (torch.randn(1, side * side, 32), torch.randn(1, side * side, 32), torch.randn(1, m, 16),
            torch.randn(1, m, 16), torch.rand(1, m) > 0.3)
    path = tmp_path / "memory_attention.onnx"
    torch.onnx.export(Wrapper().eval(), args, str(path), dynamo=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    got = session.run(None, {n: a.numpy() for n, a in zip(names, args)})[0]
    with torch.no_grad():
        eager = Wrapper()(*args)
    assert type(axial_tables(32, side, 777.0, torch.device("cpu"))[0]) is torch.Tensor
    assert max_diff(torch.from_numpy(got), eager) <= 1e-5
