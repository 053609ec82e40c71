"""PyTorch backend: the parts in eager mode, with opt-in CUDA fast paths.

- `dtype` bfloat16/float16: autocast on CUDA (attention already runs through fused SDPA);
  bfloat16 on a CPU with native bf16, the weights cast beforehand (`precision.prepare_model`)
  and attention through bf16 matmuls (`common.dot_product_attention`).
- `static_memory`: memory attention over fixed slots plus a validity mask (as the exported
  graph does) instead of a memory whose length changes with the stream; implied by the two
  options below, which need repeatable shapes.
- `compile`: `torch.compile` of each part (shapes repeat frame to frame, so each part
  compiles once per object count).
- `cuda_graphs`: each part replays a captured CUDA graph per input shape (`GraphedPart`).

Objects that share a memory layout arrive batched (the tracker groups them); static memory
gives every object the same layout. The CUDA paths cannot be exercised on CPU machines:
they are guarded so that CPU runs never reach them.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from sam2_ros.backends import parts
from sam2_ros.backends.base import Backend
from sam2_ros.backends.cuda_graphs import GraphedPart
from sam2_ros.backends.parts import PartSpec
from sam2_ros.engine.model import FrameFeatures, MemoryTokens, SAM2Model
from sam2_ros.engine.precision import check_dtype, matmul_weights_dtype

class TorchBackend(Backend):
    name = "torch"

    def __init__(
        self,
        model: SAM2Model,
        *,
        dtype: torch.dtype = torch.float32,
        max_conditioning: int = 4,
        static_memory: bool = False,
        compile: bool = False,
        cuda_graphs: bool = False,
    ) -> None:
        super().__init__(model, max_conditioning=max_conditioning)
        check_dtype(self.device, dtype)
        on_cuda = self.device.type == "cuda"
        weights = matmul_weights_dtype(model)
        if not on_cuda and weights != dtype:
            raise ValueError(
                f"on CPU the model's linear and convolution weights must already be {dtype} (cast once: "
                f"sam2_ros.engine.precision.prepare_model); they are {weights}"
            )
        if cuda_graphs and not on_cuda:
            raise ValueError(f"cuda_graphs needs the model on CUDA; it is on {self.device.type}")
        self.dtype = dtype
        self.compile = compile
        self.cuda_graphs = cuda_graphs
        self.static_memory = static_memory or compile or cuda_graphs
        self._parts: dict[str, Callable[..., torch.Tensor | tuple[torch.Tensor, ...]]] = {}

    def _part(self, spec: PartSpec) -> Callable[..., torch.Tensor | tuple[torch.Tensor, ...]]:
        """The part's module, compiled and/or graphed as configured, built on first use."""
        fn = self._parts.get(spec.name)
        if fn is None:
            fn = parts.build_part(spec, self.model, self.slots).eval()
            if self.compile:
                fn = torch.compile(fn)
            if self.cuda_graphs:
                fn = GraphedPart(fn)
            self._parts[spec.name] = fn
        return fn

    @contextlib.contextmanager
    def _eager_context(self) -> Iterator[None]:
        if self.dtype == torch.float32:
            yield
            return
        # Graph capture must not hold autocast's cached weight casts.
        with torch.autocast(self.device.type, dtype=self.dtype, cache_enabled=not self.cuda_graphs):
            yield

    def _run(self, spec: PartSpec, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with self._eager_context():
            out = self._part(spec)(*(inputs[name] for name in spec.inputs))
        outs = out if isinstance(out, tuple) else (out,)
        return dict(zip(spec.outputs, outs))

    def _attend_memory(self, feats: FrameFeatures, memory: MemoryTokens) -> torch.Tensor:
        if self.static_memory:
            return super()._attend_memory(feats, memory)
        with self._eager_context():
            return self.model.condition_on_memory(feats, memory)
