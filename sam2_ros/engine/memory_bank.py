"""One object's memory, bounded by construction.

SAM 2 attends to (a) the conditioning (prompted) frames, the `max_conditioning` most recent
ones, (b) the spatial memory of the last `num_maskmem - 1` frames and (c) object pointers
of up to `max_obj_ptrs - 1` frames back. Conditioning frames beyond the cap are treated as
ordinary frames, as SAM 2 treats unselected conditioning frames. The bank keeps exactly
what a future step on this stream can still attend to, so its size is O(1) in the stream
length: at most `max_conditioning + 1` conditioning frames (the extra one while the current
frame is itself a prompt, so that a further prompt on it still sees the `max_conditioning`
before it), `num_maskmem` spatial memories and `max_obj_ptrs` pointers.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class MemoryEntry:
    """What one frame leaves in the memory of one object.

    Immutable (its tensors are never written either), so copies of a bank can share entries.
    """

    frame_idx: int
    features: torch.Tensor | None  # (Cm, h, w) spatial memory; None once too old to attend
    obj_ptr: torch.Tensor  # (C,) object pointer
    object_score_logit: float

    @property
    def nbytes(self) -> int:
        spatial = 0 if self.features is None else self.features.nbytes
        return spatial + self.obj_ptr.nbytes


@dataclass(frozen=True)
class MemorySelection:
    """The memory one step attends to, in SAM 2's token order."""

    features: list[torch.Tensor]  # K spatial memories, (Cm, h, w) each: conditioning first, then oldest to newest
    tpos_indices: list[int]  # K slots of the temporal encoding
    obj_ptrs: list[torch.Tensor]  # P pointers, (C,) each: conditioning first, then newest to oldest
    ptr_distances: list[int]  # P frame distances (current minus the pointer's frame)

    @property
    def layout(self) -> tuple[tuple[int, ...], int]:
        """Objects whose selections share a layout can be batched together."""
        return tuple(self.tpos_indices), len(self.obj_ptrs)


@dataclass(frozen=True)
class MemoryStats:
    """What one object's memory holds."""

    conditioning_frames: int
    spatial_frames: int  # non-conditioning frames whose spatial memory is kept
    object_pointers: int  # frames (of either kind) whose pointer is kept
    bytes: int


class MemoryBank:
    """Conditioning and recent-frame memories of one object."""

    def __init__(self, *, max_conditioning: int, num_maskmem: int, max_obj_ptrs: int) -> None:
        if max_conditioning < 2:
            # SAM 2 needs room for the conditioning frames before and after a frame.
            raise ValueError(f"max_conditioning_frames must be >= 2, got {max_conditioning}")
        self.max_conditioning = max_conditioning
        self.num_maskmem = num_maskmem
        self.max_obj_ptrs = max_obj_ptrs
        self.conditioning: dict[int, MemoryEntry] = {}  # frame index -> entry, in insertion order
        self.recent: dict[int, MemoryEntry] = {}  # non-conditioning frames still in the window

    def copy(self) -> MemoryBank:
        """An independent bank sharing this one's (immutable) entries: only the dicts are new."""
        bank = MemoryBank(max_conditioning=self.max_conditioning, num_maskmem=self.num_maskmem,
                          max_obj_ptrs=self.max_obj_ptrs)
        bank.conditioning = dict(self.conditioning)
        bank.recent = dict(self.recent)
        return bank

    def add(self, entry: MemoryEntry, *, conditioning: bool) -> None:
        """Store the memory of the newest frame; a prompted frame replaces what tracking left there."""
        t = entry.frame_idx
        if conditioning:
            self.recent.pop(t, None)
            self.conditioning[t] = entry
        else:
            self.recent[t] = entry
        self._evict(latest=t)

    def select(self, frame_idx: int) -> MemorySelection | None:
        """Memory for a step on `frame_idx` from the frames before it; None if there is none
        (the object's first frame: it is segmented like an image)."""
        earlier = sorted(t for t in self.conditioning if t < frame_idx)
        if not earlier:
            return None
        chosen = earlier[-self.max_conditioning :]  # the most recent ones
        # Unchosen conditioning frames still count as ordinary frames when recent enough.
        ordinary = {**self.recent, **{t: self.conditioning[t] for t in earlier[: -self.max_conditioning]}}
        cond = [self.conditioning[t] for t in chosen]

        features = [e.features for e in cond]
        tpos = [self.num_maskmem - 1] * len(cond)
        for back in range(self.num_maskmem - 1, 0, -1):  # oldest first
            e = ordinary.get(frame_idx - back)
            if e is not None and e.features is not None:
                features.append(e.features)
                tpos.append(back - 1)  # the previous frame gets slot 0

        ptrs = [(frame_idx - e.frame_idx, e.obj_ptr) for e in cond]
        for back in range(1, self.max_obj_ptrs):  # newest first
            e = ordinary.get(frame_idx - back)
            if e is not None:
                ptrs.append((back, e.obj_ptr))
        return MemorySelection(
            features=features,
            tpos_indices=tpos,
            obj_ptrs=[p for _, p in ptrs],
            ptr_distances=[d for d, _ in ptrs],
        )

    def _evict(self, latest: int) -> None:
        """Forget what no step on frame `latest` (a prompt) or later can attend to."""
        earlier = sorted(t for t in self.conditioning if t < latest)
        for t in earlier[: -self.max_conditioning]:
            self.recent[t] = self.conditioning.pop(t)
        for t in list(self.recent):
            if t <= latest - self.max_obj_ptrs:
                del self.recent[t]
            elif t < latest - (self.num_maskmem - 1) and self.recent[t].features is not None:
                # Only its pointer is still reachable; a new entry, as copies may share the old one.
                self.recent[t] = replace(self.recent[t], features=None)

    def entries(self) -> list[MemoryEntry]:
        return [*self.conditioning.values(), *self.recent.values()]

    def stats(self) -> MemoryStats:
        entries = self.entries()
        return MemoryStats(
            conditioning_frames=len(self.conditioning),
            spatial_frames=sum(e.features is not None for e in self.recent.values()),
            object_pointers=len(entries),
            bytes=sum(e.nbytes for e in entries),
        )
