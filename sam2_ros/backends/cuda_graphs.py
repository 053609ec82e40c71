"""CUDA graph capture and replay of a part whose input shapes repeat.

While tracking, every frame calls the same parts with the same shapes (static memory slots,
the same number of objects), so launching a recorded graph replaces hundreds of kernel
launches. One graph is captured per input signature, up to a cap; other signatures run
uncaptured. Written against the documented `torch.cuda.graph` API; no GPU was available
where this was written, so it is exercised only where CUDA is.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

WARMUP_RUNS = 3  # on a side stream before capture, as torch's documentation requires
Signature = tuple[tuple[tuple[int, ...], torch.dtype], ...]


class GraphedPart:
    """Calls `fn(*tensors) -> tensor | tuple[tensor, ...]` through captured CUDA graphs.

    Inputs are copied into the graph's static buffers and outputs are cloned out, so results
    stay valid after the next replay (the tracker keeps them as memory). The caller must not
    use autocast's weight cache during capture (`torch.autocast(..., cache_enabled=False)`).
    """

    def __init__(self, fn: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]], *, max_graphs: int = 16) -> None:
        self.fn = fn
        self.max_graphs = max_graphs
        self._graphs: dict[Signature, tuple[torch.cuda.CUDAGraph, list[torch.Tensor], tuple[torch.Tensor, ...]]] = {}
        self._pool: object | None = None  # shared: outputs are cloned before another graph replays

    def __call__(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        signature = tuple((tuple(a.shape), a.dtype) for a in args)
        entry = self._graphs.get(signature)
        if entry is None:
            if len(self._graphs) >= self.max_graphs:
                return _as_tuple(self.fn(*args))
            entry = self._capture(args)
            self._graphs[signature] = entry
        graph, static_inputs, static_outputs = entry
        for buffer, value in zip(static_inputs, args):
            buffer.copy_(value)
        graph.replay()
        return tuple(out.clone() for out in static_outputs)

    def _capture(
        self, args: tuple[torch.Tensor, ...]
    ) -> tuple[torch.cuda.CUDAGraph, list[torch.Tensor], tuple[torch.Tensor, ...]]:
        static_inputs = [torch.empty_like(a, memory_format=torch.contiguous_format).copy_(a) for a in args]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):  # also triggers lazy work (RoPE tables, compilation)
                self.fn(*static_inputs)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            static_outputs = _as_tuple(self.fn(*static_inputs))
        if self._pool is None:
            self._pool = graph.pool()
        return graph, static_inputs, static_outputs


def _as_tuple(out: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)
