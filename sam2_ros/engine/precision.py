"""The inference context shared by every runner: no autograd, autocast below float32."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def inference_context(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Inference mode, plus autocast to `dtype` on `device` when it is not float32."""
    autocast = (
        torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
    )
    with torch.inference_mode(), autocast:
        yield
