"""One image-encoder call for frames of several cameras that arrive together.

Several trackers (one per camera) share a backend; with a thread per camera their frames
often reach the image encoder at the same moment. `BatchingBackend` wraps the shared backend
so that such calls run as one batch: the first caller waits up to `wait` seconds for the
others (at most `max_batch` frames), runs the encoder once on all of them and hands each
caller its own frame's features. Everything else goes to the wrapped backend unchanged.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import torch

from sam2_ros.backends.base import Backend
from sam2_ros.engine.model import FrameFeatures


@dataclass
class _Batch:
    images: list[torch.Tensor] = field(default_factory=list)  # each (1, 3, S, S)
    full: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    features: list[FrameFeatures] = field(default_factory=list)
    error: BaseException | None = None


class BatchingBackend:
    """A backend whose `encode_image` batches concurrent calls (see the module docstring)."""

    def __init__(self, backend: Backend, *, max_batch: int, wait: float) -> None:
        if max_batch < 1 or wait < 0:
            raise ValueError(f"max_batch must be >= 1 and wait >= 0, got {max_batch}, {wait}")
        self.wrapped = backend
        self.max_batch = max_batch
        self.wait = wait
        self.batches = 0  # encoder calls made
        self.frames = 0  # frames encoded
        self._lock = threading.Lock()
        self._open: _Batch | None = None

    def __getattr__(self, name: str):
        return getattr(self.wrapped, name)

    def encode_image(self, image: torch.Tensor) -> FrameFeatures:
        """image (1, 3, S, S) normalized -> this frame's features, maybe encoded in a batch."""
        with self._lock:
            batch, leader = self._open, self._open is None
            if leader:
                batch = self._open = _Batch()
            batch.images.append(image)
            index = len(batch.images) - 1
            if len(batch.images) >= self.max_batch:
                batch.full.set()
        if not leader:
            batch.done.wait()
            if batch.error is not None:
                raise RuntimeError(f"the batched image encoder failed: {batch.error!r}")
            return batch.features[index]
        batch.full.wait(self.wait)
        with self._lock:
            self._open = None  # later callers start the next batch
        try:
            images = torch.cat(batch.images) if len(batch.images) > 1 else batch.images[0]
            together = self.wrapped.encode_image(images)  # (B, ...) each
            batch.features = [_one(together, row) for row in range(len(batch.images))]
            self.batches, self.frames = self.batches + 1, self.frames + len(batch.images)
        except BaseException as error:
            batch.error = error
            raise
        finally:
            batch.done.set()
        return batch.features[index]


def _one(features: FrameFeatures, row: int) -> FrameFeatures:
    """Row `row` of batched features, batch 1 (views)."""
    def pick(tensor: torch.Tensor) -> torch.Tensor:  # a batch-1 tensor is shared by all
        return tensor[row:row + 1] if tensor.shape[0] > 1 else tensor

    return FrameFeatures(pix_feat=pick(features.pix_feat), pix_pos=pick(features.pix_pos),
                         high_res=(pick(features.high_res[0]), pick(features.high_res[1])))
