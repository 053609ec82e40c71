"""Compute precision: which dtypes a device runs, the model's cast, and the inference context.

float32 runs everywhere. On CUDA, bfloat16 and float16 run through autocast. On CPU,
bfloat16 runs when the CPU multiplies bf16 natively (AVX512_BF16 or AMX_BF16; oneDNN's bf16
GEMMs then run several times faster than float32): the weights are cast to bf16 once and the
same autocast covers the float32 inputs (pixels, clicks) and the glue. Without those
instructions bf16 is emulated, slower than float32, so it is refused rather than silently
slow. float16 is refused on CPU: no CPU this runs on has fast fp16 matmuls in PyTorch.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

# /proc/cpuinfo flags of the instruction sets that multiply bfloat16 natively.
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")
DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags (Linux `/proc/cpuinfo`); empty where that file is absent."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_bf16_instructions(flags: frozenset[str] | None = None) -> list[str]:
    """The native bf16 instruction sets among `flags` (default: this CPU's)."""
    flags = cpu_flags() if flags is None else flags
    return [flag for flag in CPU_BF16_FLAGS if flag in flags]


def check_dtype(device: torch.device, dtype: torch.dtype, *, flags: frozenset[str] | None = None) -> None:
    """ValueError when `dtype` cannot run (fast) on `device`, saying why and what to use."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {[str(d) for d in DTYPES]}, got {dtype}")
    if device.type == "cuda" or dtype == torch.float32:
        return
    if device.type != "cpu":
        raise ValueError(f"dtype {dtype} is supported on cuda and cpu, not on {device.type}; use torch.float32")
    if dtype == torch.float16:
        raise ValueError(
            "dtype float16 on CPU is refused: PyTorch has no fast float16 matmul on CPUs, so it would run "
            "slower than float32; use bfloat16 (on a CPU with AVX512_BF16 or AMX) or float32"
        )
    if not cpu_bf16_instructions(flags):
        raise ValueError(
            "dtype bfloat16 on CPU needs native bf16 matmuls (the avx512_bf16 or amx_bf16 instruction set); "
            "this CPU has neither (its /proc/cpuinfo flags), so bf16 would be emulated and slower than "
            "float32; use float32"
        )


# Modules whose weights only ever feed a matmul or convolution: the ones cast to bf16.
MATMUL_MODULES = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
# Parts kept in float32 on the CPU bf16 path (run through `run_float32`): the mask decoder's
# two-way transformer. Its bf16 rounding was the largest single error against Meta's float32
# (tiny @ 512, blocks, 8 frames: mask IoU mean 0.9940 in bf16, 0.9967 with it in float32;
# Meta's own bf16 autocast 0.9952), and it is a few ms of a ~300 ms frame.
FLOAT32_PARTS = ("sam_mask_decoder.transformer",)


def prepare_model(model: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """Move `model` (in place) to `device`; on CPU with bfloat16, cast the weights of its
    linear and convolution layers to bf16 once, so that no call pays for casting them.

    Everything else (norms, embeddings added to activations, position encodings) stays
    float32, so that under autocast the residual streams stay float32 as in a float32 model
    run under autocast: only the matmuls and convolutions run in bf16. The `FLOAT32_PARTS`
    keep their float32 weights and run in float32 (`run_float32`).
    """
    model = model.to(device)
    if device.type == "cpu" and dtype == torch.bfloat16:
        kept = {id(m) for name in FLOAT32_PARTS for m in model.get_submodule(name).modules()}
        for module in model.modules():
            if isinstance(module, MATMUL_MODULES) and id(module) not in kept:
                module.to(dtype)
    return model.eval()


def run_float32(module: nn.Module, *inputs: torch.Tensor) -> object:
    """module(*inputs), in float32 with CPU autocast off when autocast is on and the module's
    weights are float32 (a part `prepare_model` keeps at full precision); else a plain call."""
    if not torch.is_autocast_enabled("cpu") or matmul_weights_dtype(module) != torch.float32:
        return module(*inputs)
    with torch.autocast("cpu", enabled=False):
        return module(*(x.float() for x in inputs))


def matmul_weights_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first linear or convolution weight."""
    return next(m.weight.dtype for m in model.modules() if isinstance(m, MATMUL_MODULES))


@contextlib.contextmanager
def inference_context(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Inference mode, plus autocast to `dtype` on `device` when it is not float32."""
    autocast = (
        torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
    )
    with torch.inference_mode(), autocast:
        yield
