"""What is timed: our tracker on a backend, and Meta's reference driven causally, behind one
small interface so that both see the same frames and prompts and do the same work per frame
(preprocess, every object's mask at frame resolution as a numpy array)."""
from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from sam2_ros.backends.base import Backend, PartTimer
from sam2_ros.bench.reference import CausalReference
from sam2_ros.engine import StreamingTracker
from sam2_ros.engine.model import SAM2Model
from sam2_ros.engine.preprocess import logits_to_frame_mask, preprocess_frame
from sam2_ros.engine.precision import inference_context

POSITIVE = np.array([1], dtype=np.int64)


class Runner(ABC):
    """A stream processor under test. `start` begins a fresh stream; `timer` records the
    four parts (image encoder, memory attention, decoder, memory encoder) when enabled."""

    name: str
    timer: PartTimer

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def step(self, frame: np.ndarray) -> list[np.ndarray]:
        """Track every object into `frame`; their (H, W) bool masks."""

    @abstractmethod
    def prompt(self, obj_id: int, click: np.ndarray) -> None:
        """A positive click (1, 2) x, y on the current frame starts object `obj_id`."""

    @abstractmethod
    def held_bytes(self) -> int:
        """Bytes of state kept for later frames (all objects)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]: ...


class OursRunner(Runner):
    """Our `StreamingTracker` on `backend`; `dtype` is the backend's precision (the tracker
    autocasts its glue to it on CUDA)."""

    def __init__(self, model: SAM2Model, backend: Backend, *, dtype: torch.dtype, max_conditioning_frames: int) -> None:
        self.model = model
        self.backend = backend
        self.dtype = dtype
        self.max_conditioning_frames = max_conditioning_frames
        self.timer = backend.timer
        flags = [flag for flag in ("compile", "cuda_graphs") if getattr(backend, flag, False)]
        precision = [] if dtype == torch.float32 else [str(dtype).removeprefix("torch.")]
        self.name = "+".join([f"ours:{backend.name}", *flags, *precision])
        self.tracker: StreamingTracker | None = None

    def start(self) -> None:
        self.tracker = StreamingTracker(
            self.model,
            max_conditioning_frames=self.max_conditioning_frames,
            device=self.backend.device,
            dtype=self.dtype,
            backend=self.backend,
        )

    def step(self, frame: np.ndarray) -> list[np.ndarray]:
        return [result.mask for result in self._tracker.track(frame).values()]

    def prompt(self, obj_id: int, click: np.ndarray) -> None:
        self._tracker.add_prompt(obj_id, points=click, labels=POSITIVE)

    def held_bytes(self) -> int:
        return sum(stats.bytes for stats in self._tracker.memory_stats().values())

    def describe(self) -> dict[str, Any]:
        return {"kind": "ours", "backend": self.backend.name, "dtype": str(self.dtype).removeprefix("torch."),
                "compile": bool(getattr(self.backend, "compile", False)),
                "cuda_graphs": bool(getattr(self.backend, "cuda_graphs", False))}

    @property
    def _tracker(self) -> StreamingTracker:
        if self.tracker is None:
            raise RuntimeError(f"{self.name}: call start() before streaming")
        return self.tracker


class ReferenceRunner(Runner):
    """Meta's predictor (`reference.build_reference_predictor`) through `CausalReference`.

    mode "eager": the plain predictor at `dtype` (autocast below float32, as Meta's notebooks
    run it). mode "vos": the VOS-optimized, compiled predictor under bfloat16 autocast, as
    Meta's own benchmark script runs it.
    """

    def __init__(self, predictor: torch.nn.Module, *, mode: str, dtype: torch.dtype, max_conditioning_frames: int) -> None:
        if mode not in ("eager", "vos"):
            raise ValueError(f"reference mode must be 'eager' or 'vos', got {mode!r}")
        self.predictor = predictor
        self.mode = mode
        self.dtype = torch.bfloat16 if mode == "vos" else dtype
        self.device = predictor.device
        self.max_conditioning_frames = max_conditioning_frames
        self.name = f"reference:{mode}" if mode == "vos" or dtype == torch.float32 else f"reference:{mode}+autocast"
        self.timer = PartTimer()
        _time_parts(predictor, self.timer)
        self.reference: CausalReference | None = None

    def start(self) -> None:
        self.reference = CausalReference(self.predictor, max_conditioning_frames=self.max_conditioning_frames)

    def step(self, frame: np.ndarray) -> list[np.ndarray]:
        hw = (frame.shape[0], frame.shape[1])
        with inference_context(self.device, self.dtype):
            image = preprocess_frame(frame, self.predictor.image_size, device=self.device)  # (1, 3, S, S)
            results = self._reference.track(image, hw)
            return [
                logits_to_frame_mask(torch.from_numpy(r.low_res_logits).to(self.device)[None, None], hw)[0].cpu().numpy()
                for r in results.values()
            ]

    def prompt(self, obj_id: int, click: np.ndarray) -> None:
        with inference_context(self.device, self.dtype):
            self._reference.add_prompt(obj_id, points=click, labels=POSITIVE)

    def held_bytes(self) -> int:
        return self._reference.held_bytes()

    def describe(self) -> dict[str, Any]:
        return {"kind": "reference", "mode": self.mode, "predictor": type(self.predictor).__name__,
                "dtype": str(self.dtype).removeprefix("torch."), "compile": self.mode == "vos"}

    @property
    def _reference(self) -> CausalReference:
        if self.reference is None:
            raise RuntimeError(f"{self.name}: call start() before streaming")
        return self.reference


def _time_parts(predictor: torch.nn.Module, timer: PartTimer) -> None:
    """Route the predictor's four parts through `timer` (instance attributes, so compiled
    forwards stay inside): the image encoder with the decoder's high-res projections
    (`forward_image`), memory attention, prompt encoder + mask decoder + pointer head
    (`_forward_sam_heads`), and the memory encoder with its mask preparation
    (`_encode_new_memory`) -- the same cuts as our backends' parts, except that Meta's decoder
    upsamples its masks to the image size, which our memory encoder does instead."""
    device = predictor.device

    def timed(part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            with timer.measure(part, device):
                return fn(*args, **kwargs)

        return call

    predictor.forward_image = timed("image_encoder", predictor.forward_image)
    predictor.memory_attention.forward = timed("memory_attention", predictor.memory_attention.forward)
    predictor._forward_sam_heads = timed("decoder", predictor._forward_sam_heads)
    predictor._encode_new_memory = timed("memory_encoder", predictor._encode_new_memory)
