"""The small interface through which the streaming tracker runs SAM 2's four heavy parts.

A backend's public methods have the signatures of the `SAM2Model` methods they replace
(`encode_image`, `condition_on_memory`, `run_heads`, `encode_memory`, `mask_as_output`), so
the tracker calls `backend.x(...)` where it called `model.x(...)`. The model keeps the glue
(memory token layout, temporal encodings, memory selection lives in the tracker's bank).

Every backend executes the same parts (`parts.py`) by I/O name through one method, `_run`:
eager or compiled modules (torch), onnxruntime sessions or TensorRT engines. Everything
around `_run` (padding memory into static slots, the tracking padding point, turning named
outputs back into the engine's dataclasses, timing) is shared here, so the backends that
cannot be tested on every machine differ from the tested ones only in `_run`.
"""
from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator
from typing import ClassVar

import torch

from sam2_ros.backends import parts
from sam2_ros.backends.parts import MemorySlots, PartSpec
from sam2_ros.engine.model import FrameFeatures, HeadOutput, MemoryTokens, SAM2Model, padding_points

# Names under which per-part latencies are recorded.
PART_NAMES = ("image_encoder", "memory_attention", "decoder", "memory_encoder")
TIMING_WINDOW = 10_000  # latencies kept per part: bounded, so a forgotten timer cannot grow


class PartTimer:
    """Wall time of each part call in milliseconds, when enabled.

    CUDA work is asynchronous, so while enabled the device is synchronized before and after
    each part: the numbers are the part's own latency (at the cost of pipelining).
    """

    def __init__(self) -> None:
        self.enabled = False
        self.times_ms: dict[str, deque[float]] = {name: deque(maxlen=TIMING_WINDOW) for name in PART_NAMES}

    def reset(self) -> None:
        for times in self.times_ms.values():
            times.clear()

    @contextlib.contextmanager
    def measure(self, part: str, device: torch.device) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        sync()
        start = time.perf_counter()
        yield
        sync()
        self.times_ms[part].append((time.perf_counter() - start) * 1e3)


class Backend(ABC):
    """Runs SAM 2's image encoder, memory attention, decoder and memory encoder for a model.

    `model` supplies the configuration and the glue computed in eager PyTorch; it must live
    on the device the tracker uses. `max_conditioning` sizes the static memory slots (the
    tracker's `max_conditioning_frames`).
    """

    name: ClassVar[str]

    def __init__(self, model: SAM2Model, *, max_conditioning: int = 4) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.slots = MemorySlots.for_model(model, max_conditioning)
        self.timer = PartTimer()

    @abstractmethod
    def _run(self, spec: PartSpec, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Execute one part: inputs and outputs by the spec's names, on `self.device`."""

    def encode_image(self, image: torch.Tensor) -> FrameFeatures:
        """image (1, 3, S, S) normalized -> the frame's features."""
        with self.timer.measure("image_encoder", self.device):
            return parts.frame_features(self._run(parts.IMAGE_ENCODER, {"image": image}))

    def condition_on_memory(self, feats: FrameFeatures, memory: MemoryTokens | None) -> torch.Tensor:
        """Features fused with the memory -> (B, C, h, w); without memory the model adds its
        no-memory embedding (no attention runs)."""
        if memory is None:
            with self._eager_context():
                return self.model.condition_on_memory(feats, None)
        with self.timer.measure("memory_attention", self.device):
            return self._attend_memory(feats, memory)

    def _attend_memory(self, feats: FrameFeatures, memory: MemoryTokens) -> torch.Tensor:
        tokens, pos, mask = parts.pad_memory(memory, self.slots)  # (B, M, Cm) x2, (B, M)
        inputs = {
            "pix_feat": feats.pix_feat,
            "pix_pos": feats.pix_pos,
            "memory": tokens,
            "memory_pos": pos,
            "memory_mask": mask,
        }
        return self._run(parts.MEMORY_ATTENTION, inputs)["conditioned"]

    def run_heads(
        self,
        pix_feat: torch.Tensor,
        high_res: tuple[torch.Tensor, torch.Tensor],
        *,
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask_logits: torch.Tensor | None = None,
        multimask: bool,
    ) -> HeadOutput:
        """As `SAM2Model.run_heads`: prompt encoder + mask decoder + pointer head for B objects."""
        b = pix_feat.shape[0]
        if point_coords is None or point_labels is None:
            point_coords, point_labels = padding_points(b, pix_feat.device, torch.float32)
        spec = parts.decoder_spec(multimask=multimask, has_mask=mask_logits is not None)
        inputs = {
            "pix_feat": pix_feat,
            "high_res_0": high_res[0],
            "high_res_1": high_res[1],
            "point_coords": point_coords,
            "point_labels": point_labels,
        }
        if mask_logits is not None:
            inputs["mask_logits"] = mask_logits
        with self.timer.measure("decoder", self.device):
            out = self._run(spec, inputs)
        return HeadOutput(
            low_res_logits=out["low_res_logits"],
            iou=out["iou"],
            obj_ptr=out["obj_ptr"],
            object_score_logits=out["object_score_logits"],
        )

    def mask_as_output(self, feats: FrameFeatures, mask: torch.Tensor) -> HeadOutput:
        """A mask prompt taken as the output. Runs eagerly in the model: it is a one-off per
        prompt, and `SAM2Model.mask_as_output` calls its own decoder internally."""
        with self.timer.measure("decoder", self.device), self._eager_context():
            return self.model.mask_as_output(feats, mask)

    def _eager_context(self) -> contextlib.AbstractContextManager[None]:
        """Context for the model code run in eager PyTorch (a backend's precision)."""
        return contextlib.nullcontext()

    def encode_memory(
        self,
        pix_feat: torch.Tensor,
        low_res_logits: torch.Tensor,
        object_score_logits: torch.Tensor,
        *,
        binarize: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As `SAM2Model.encode_memory` -> (features, pos), each (B, Cm, h, w)."""
        inputs = {
            "pix_feat": pix_feat,
            "low_res_logits": low_res_logits,
            "object_score_logits": object_score_logits,
        }
        with self.timer.measure("memory_encoder", self.device):
            out = self._run(parts.memory_encoder_spec(binarize=binarize), inputs)
        return out["memory_features"], out["memory_pos"]
