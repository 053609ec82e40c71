"""Image features of recent frames, kept under a byte budget so a replay skips the encoder.

A stamped prompt re-tracks the buffered frames after it; each would pay the image encoder
again, the dearest part of a frame. Features depend on the frame alone, so the tracker can
keep those of the last few frames by a caller's key (the node's frame sequence number) and
reuse them: a replay then runs only the per-object parts. The cached tensors are the very
ones the live frame used, so a replay from the cache is bit-identical to one without it.

Bounded by construction: entries are evicted least recently used first until the bytes held
(each storage counted once: every frame shares one position encoding) fit the budget. A
budget smaller than one frame's features leaves the cache off, and `status` says so.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable

import torch

from sam2_ros.engine.model import FrameFeatures, SAM2Model

MIB = 1 << 20


def feature_tensors(feats: FrameFeatures) -> tuple[torch.Tensor, ...]:
    return (feats.pix_feat, feats.pix_pos, *feats.high_res)


def storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the storages behind `tensors`, each counted once."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def frame_feature_bytes(model: SAM2Model, dtype: torch.dtype) -> int:
    """Bytes one frame's features take when computed at `dtype`: the lowest level and its
    position encoding (C x h x w each) and the two high-resolution levels (C/8 x 4h x 4w,
    C/4 x 2h x 2w), all in `dtype` (checked against real frames in test_cpu_bf16)."""
    c, side = model.cfg.hidden_dim, model.image_size // 16
    cells = side * side
    element = torch.finfo(dtype).bits // 8
    return (2 * c + (c // 8) * 16 + (c // 4) * 4) * cells * element


class FeatureCache:
    """Features by key, least recently used evicted first, within `budget_bytes`.

    `frame_bytes` is the size of one frame's features (`frame_feature_bytes`): a budget below
    it disables the cache. Budget 0 is off (the default everywhere).
    """

    def __init__(self, budget_bytes: int, frame_bytes: int) -> None:
        if budget_bytes < 0:
            raise ValueError(f"feature cache budget must be >= 0 bytes, got {budget_bytes}")
        self.budget_bytes = budget_bytes
        self.frame_bytes = frame_bytes
        self.enabled = budget_bytes >= frame_bytes > 0
        self._entries: OrderedDict[Hashable, FrameFeatures] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def status(self) -> str:
        """One line for the log: on (how many frames fit) or off, and why."""
        need = f"one frame's features take {self.frame_bytes / MIB:.2f} MiB"
        if self.budget_bytes == 0:
            return "feature cache off (budget 0): replays of stamped prompts re-encode every frame"
        if not self.enabled:
            return (f"feature cache off: its budget of {self.budget_bytes} bytes is smaller than one frame "
                    f"({need}); replays re-encode every frame")
        return (f"feature cache on: {self.budget_bytes / MIB:.2f} MiB, about "
                f"{self.budget_bytes // self.frame_bytes} frames ({need})")

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[Hashable]:
        """Cached keys, least recently used first."""
        return list(self._entries)

    def nbytes(self) -> int:
        """Bytes held now, each storage counted once."""
        return storage_bytes(t for feats in self._entries.values() for t in feature_tensors(feats))

    def get(self, key: Hashable) -> FrameFeatures | None:
        feats = self._entries.get(key) if self.enabled else None
        if feats is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return feats

    def put(self, key: Hashable, feats: FrameFeatures) -> None:
        """Keep `feats` under `key` (batch 1), evicting the least recently used beyond the budget."""
        if not self.enabled:
            return
        if feats.pix_feat.shape[0] != 1:
            raise ValueError(f"the cache keeps one frame's features (batch 1), got batch {feats.pix_feat.shape[0]}")
        self._entries[key] = feats
        self._entries.move_to_end(key)
        while self._entries and self.nbytes() > self.budget_bytes:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
