"""Streaming SAM 2: one frame in, every object's mask out, with a bounded memory.

Semantics are those of Meta's SAM2VideoPredictor on the causal path: a prompt applies to
the current (last tracked) frame and only affects later frames (to prompt a past frame,
restore a snapshot taken before it and track forward again: see `TrackerSnapshot`). A
prompt for a new object segments it like an image; a prompt for a known object is a
correction conditioned on its memory (with its current mask logits as a dense prompt).
Every prompted frame becomes a conditioning memory (the predictor's
`add_all_frames_to_correct_as_cond=True`).
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from sam2_ros.engine.feature_cache import FeatureCache, frame_feature_bytes
from sam2_ros.engine.memory_bank import MemoryBank, MemoryEntry, MemorySelection, MemoryStats
from sam2_ros.engine.model import FrameFeatures, HeadOutput, MemoryTokens, SAM2Model
from sam2_ros.engine.precision import check_dtype, inference_context, prepare_model
from sam2_ros.engine.preprocess import (
    check_frame,
    logits_to_frame_mask,
    mask_to_model,
    points_to_model,
    preprocess_frame,
)

if TYPE_CHECKING:
    from sam2_ros.backends import Backend

BOX_LABELS = (2, 3)  # a box enters the decoder as its two corners with these labels
PREV_LOGITS_CLAMP = 32.0  # previous logits fed back with a correction are clamped to +-this


@dataclass(frozen=True)
class ObjectResult:
    """One object on one frame."""

    mask: np.ndarray  # (H, W) bool at frame resolution
    low_res_logits: np.ndarray  # (S/4, S/4) float32 model logits, before any resizing
    score: float  # predicted IoU of the chosen mask
    object_score_logit: float
    visible: bool  # object_score_logit > 0


@dataclass
class _ObjectState:
    bank: MemoryBank
    frame_points: tuple[torch.Tensor, torch.Tensor] | None  # clicks given on the current frame (model pixels)
    frame_logits: torch.Tensor  # (1, 1, S/4, S/4) the current frame's latest logits

    def copy(self) -> _ObjectState:
        """Independent containers over the same (never written) tensors."""
        return _ObjectState(bank=self.bank.copy(), frame_points=self.frame_points, frame_logits=self.frame_logits)

    def tensors(self) -> Iterator[torch.Tensor]:
        for entry in self.bank.entries():
            if entry.features is not None:
                yield entry.features
            yield entry.obj_ptr
        yield from self.frame_points or ()
        yield self.frame_logits


@dataclass(frozen=True)
class TrackerSnapshot:
    """A `StreamingTracker`'s state between two frames, for `restore`.

    Cheap: stored memories are immutable, so the snapshot shares their tensors and copies only
    the containers and scalars. It leaves out the current frame's image features (large at
    1024 px), so after `restore` a prompt needs a `track` first. To prompt a past frame k
    exactly: restore the snapshot taken before frame k, `track` frame k again (the same
    result), prompt, then `track` frames k+1.. again.

    Bounded: a snapshot references only what the banks held when it was taken, O(1) per
    object (see `MemoryBank`). Keeping the snapshots of the last n frames keeps alive at
    most n frames' memories and logits per object beyond what the tracker holds itself
    (`memory_bytes(snapshots)` counts them): memory grows with n, never with the stream.
    """

    frame_index: int  # the last tracked frame then (-1 before the first)
    frame_hw: tuple[int, int] | None
    memory_pos: torch.Tensor | None  # (1, Cm, h, w)
    objects: dict[int, _ObjectState]  # private copies: restore copies them again

    @property
    def object_ids(self) -> list[int]:
        return list(self.objects)

    def memory_stats(self) -> dict[int, MemoryStats]:
        """Frames and bytes referenced per object (shared with the tracker, not extra)."""
        return {obj_id: state.bank.stats() for obj_id, state in self.objects.items()}


@dataclass(frozen=True)
class _Prompt:
    """A validated prompt in model coordinates: clicks (box corners first) or a mask."""

    coords: torch.Tensor | None  # (1, N, 2)
    labels: torch.Tensor | None  # (1, N) int32
    mask: torch.Tensor | None  # (1, 1, S, S) 0/1


class StreamingTracker:
    """Tracks any number of objects through a live stream with SAM 2.

    `model` is moved to `device` (in place). `dtype` float32 (the default); bfloat16/float16
    on CUDA through autocast; bfloat16 on a CPU with native bf16 (the model's weights are then
    cast to bf16 in place, once: see `sam2_ros.engine.precision`). `max_conditioning_frames` caps the prompted
    frames each object remembers (the most recent are kept). `backend` runs the heavy parts:
    "torch", "onnxruntime", "tensorrt" (see `sam2_ros.backends.make_backend`) or a backend
    made for this model. `feature_cache_bytes` > 0 keeps the image features of recent frames
    passed to `track` with a `key`, within that budget, so re-tracking them (a stamped
    prompt's replay) skips the image encoder (see `FeatureCache`; its `status` says whether
    one frame fits).
    """

    def __init__(
        self,
        model: SAM2Model,
        *,
        max_conditioning_frames: int = 4,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        backend: str | Backend = "torch",
        feature_cache_bytes: int = 0,
    ) -> None:
        self.device = torch.device(device)
        check_dtype(self.device, dtype)
        if max_conditioning_frames < 2:
            raise ValueError(f"max_conditioning_frames must be >= 2, got {max_conditioning_frames}")
        backend_name = backend if isinstance(backend, str) else backend.name
        if dtype != torch.float32 and self.device.type == "cpu" and backend_name != "torch":
            # Checked before the weights are cast: a refused tracker leaves the model as it was.
            raise ValueError(f"dtype {dtype} on CPU runs on the torch backend only, got backend {backend_name!r}")
        self.model = prepare_model(model, self.device, dtype)
        if isinstance(backend, str):
            from sam2_ros.backends import make_backend  # here: the backends import the engine

            backend = make_backend(backend, self.model, dtype=dtype, max_conditioning=max_conditioning_frames)
        elif backend.model is not self.model or backend.device != next(self.model.parameters()).device:
            raise ValueError(
                f"backend {backend.name!r} runs another model or device ({backend.device}); "
                f"make it with this tracker's model on {self.device}"
            )
        self.backend = backend  # runs the heavy parts; the model supplies the glue
        self.dtype = dtype
        self.max_conditioning_frames = max_conditioning_frames
        self._objects: dict[int, _ObjectState] = {}
        self._frame_idx = -1
        self._frame_hw: tuple[int, int] | None = None
        self._features: FrameFeatures | None = None  # of the current frame, for prompts
        self._memory_pos: torch.Tensor | None = None  # (1, Cm, h, w), the same for every memory
        self.feature_cache = FeatureCache(feature_cache_bytes, frame_feature_bytes(self.model, dtype))

    @property
    def object_ids(self) -> list[int]:
        return list(self._objects)

    @property
    def frame_index(self) -> int:
        """Index of the current frame in the stream (-1 before the first)."""
        return self._frame_idx

    def memory_stats(self) -> dict[int, MemoryStats]:
        """Frames and bytes held per object."""
        return {obj_id: state.bank.stats() for obj_id, state in self._objects.items()}

    def memory_bytes(self, snapshots: Iterable[TrackerSnapshot] = ()) -> int:
        """Bytes of per-object state kept alive by the tracker and `snapshots` of it together,
        each storage counted once (snapshots share most of theirs with the tracker)."""
        storages: dict[int, int] = {}
        for objects in [self._objects, *(snapshot.objects for snapshot in snapshots)]:
            for state in objects.values():
                for tensor in state.tensors():
                    storage = tensor.untyped_storage()
                    storages[storage.data_ptr()] = storage.nbytes()
        return sum(storages.values())

    def reset(self) -> None:
        """Forget every object and frame."""
        self._objects.clear()
        self._frame_idx = -1
        self._frame_hw = None
        self._features = None
        self._memory_pos = None
        self.feature_cache.clear()

    def snapshot(self) -> TrackerSnapshot:
        """The current state, less the current frame's image features (see TrackerSnapshot)."""
        return TrackerSnapshot(
            frame_index=self._frame_idx,
            frame_hw=self._frame_hw,
            memory_pos=self._memory_pos,
            objects={obj_id: state.copy() for obj_id, state in self._objects.items()},
        )

    def restore(self, snapshot: TrackerSnapshot) -> None:
        """Return to the state `snapshot` (taken from this tracker) was taken in. Prompts wait
        for the next `track`: the snapshot has no image features of its frame."""
        self._objects = {obj_id: state.copy() for obj_id, state in snapshot.objects.items()}
        self._frame_idx = snapshot.frame_index
        self._frame_hw = snapshot.frame_hw
        self._features = None
        self._memory_pos = snapshot.memory_pos

    def remove_object(self, obj_id: int) -> None:
        if obj_id not in self._objects:
            raise KeyError(f"unknown object id {obj_id!r}; tracked ids: {self.object_ids}")
        del self._objects[obj_id]

    def track(self, frame: np.ndarray, key: Hashable | None = None) -> dict[int, ObjectResult]:
        """Encode `frame` (H, W, 3) uint8 RGB once and propagate every object to it.

        `key` names the frame for the feature cache (the same key must always mean the same
        image, e.g. a sequence number): a frame tracked again under its key reuses the
        features computed the first time instead of running the image encoder.
        """
        frame = check_frame(frame)
        frame_hw = (frame.shape[0], frame.shape[1])
        t = self._frame_idx + 1
        with inference_context(self.device, self.dtype):
            feats = None if key is None else self.feature_cache.get(key)
            if feats is None:
                feats = self.backend.encode_image(
                    preprocess_frame(frame, self.model.image_size, device=self.device)
                )
            selections = {obj_id: state.bank.select(t) for obj_id, state in self._objects.items()}
            groups: dict[tuple[tuple[int, ...], int], list[int]] = {}
            for obj_id, selection in selections.items():
                groups.setdefault(selection.layout, []).append(obj_id)
            outputs: dict[int, tuple[HeadOutput, torch.Tensor, int]] = {}
            for ids in groups.values():
                batch = feats.expand(len(ids))
                memory = self._memory_tokens([selections[i] for i in ids])
                heads = self.backend.run_heads(
                    self.backend.condition_on_memory(batch, memory), batch.high_res, multimask=True
                )
                memory_features, _ = self.backend.encode_memory(
                    batch.pix_feat, heads.low_res_logits, heads.object_score_logits, binarize=False
                )
                for row, obj_id in enumerate(ids):
                    outputs[obj_id] = (heads, memory_features, row)

        self._frame_idx, self._frame_hw, self._features = t, frame_hw, feats
        if key is not None:
            self.feature_cache.put(key, feats)
        results = {}
        for obj_id, (heads, memory_features, row) in outputs.items():
            state = self._objects[obj_id]
            state.bank.add(self._entry(t, heads, memory_features, row), conditioning=False)
            state.frame_points = None
            state.frame_logits = heads.low_res_logits[row : row + 1]
            results[obj_id] = self._result(heads, row)
        return results

    def add_prompt(
        self,
        obj_id: int,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        clear_old: bool = True,
    ) -> ObjectResult:
        """Prompt `obj_id` on the current frame; the frame becomes a conditioning memory.

        points (N, 2) x, y frame pixels with labels (N,) 1 positive / 0 negative; box (4,)
        x0, y0, x1, y1 frame pixels; mask (H, W) bool. Points and a box may be combined; a
        mask replaces them. `clear_old=False` adds the clicks to those already given on this
        frame for this object.
        """
        if self._features is None or self._frame_hw is None:
            state = "no frame yet" if self._frame_idx < 0 else "restored state without the frame's features"
            raise ValueError(f"{state}: call track(frame) before add_prompt")
        if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)):
            raise ValueError(f"obj_id must be an int, got {type(obj_id).__name__}")
        obj_id = int(obj_id)
        prompt = self._validate_prompt(points, labels, box, mask, clear_old)
        state = self._objects.get(obj_id)
        t, feats = self._frame_idx, self._features
        bank = state.bank if state is not None else self._new_bank()

        with inference_context(self.device, self.dtype):
            if prompt.mask is not None:
                heads = self.backend.mask_as_output(feats, prompt.mask)
                frame_points = None
            else:
                coords, labels_t = prompt.coords, prompt.labels
                if not clear_old and state is not None and state.frame_points is not None:
                    coords = torch.cat([state.frame_points[0], coords], dim=1)
                    labels_t = torch.cat([state.frame_points[1], labels_t], dim=1)
                frame_points = (coords, labels_t)
                selection = bank.select(t)
                memory = None if selection is None else self._memory_tokens([selection])
                previous = None
                if state is not None:
                    previous = state.frame_logits.clamp(-PREV_LOGITS_CLAMP, PREV_LOGITS_CLAMP)
                heads = self.backend.run_heads(
                    self.backend.condition_on_memory(feats, memory),
                    feats.high_res,
                    point_coords=coords,
                    point_labels=labels_t,
                    mask_logits=previous,
                    multimask=coords.shape[1] <= self.model.cfg.multimask_max_points,
                )
            # A prompted mask is trusted: the memory sees it binarized.
            memory_features, memory_pos = self.backend.encode_memory(
                feats.pix_feat, heads.low_res_logits, heads.object_score_logits, binarize=True
            )

        if self._memory_pos is None:
            self._memory_pos = memory_pos[:1]
        bank.add(self._entry(t, heads, memory_features, 0), conditioning=True)
        self._objects[obj_id] = _ObjectState(
            bank=bank, frame_points=frame_points, frame_logits=heads.low_res_logits
        )
        return self._result(heads, 0)

    def _validate_prompt(
        self,
        points: np.ndarray | None,
        labels: np.ndarray | None,
        box: np.ndarray | None,
        mask: np.ndarray | None,
        clear_old: bool,
    ) -> _Prompt:
        """Check a prompt against the current frame and convert it to model coordinates."""
        assert self._frame_hw is not None
        h, w = self._frame_hw
        size = self.model.image_size
        if (points is None) != (labels is None):
            raise ValueError("points and labels must be given together")
        if mask is not None:
            if points is not None or box is not None:
                raise ValueError("give either a mask or points/box, not both")
            if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
                raise ValueError(f"mask must be a bool numpy array, got {getattr(mask, 'dtype', type(mask).__name__)}")
            if mask.shape != (h, w):
                raise ValueError(f"mask must have the frame's shape {(h, w)}, got {mask.shape}")
            mask_t = mask_to_model(torch.from_numpy(mask).to(self.device), size)
            return _Prompt(coords=None, labels=None, mask=mask_t)
        if points is None and box is None:
            raise ValueError("a prompt needs points with labels, a box, or a mask")
        if box is not None and not clear_old:
            raise ValueError("a box must come first on a frame: use clear_old=True with a box")

        coords = np.zeros((0, 2), dtype=np.float64)
        label_list = np.zeros((0,), dtype=np.int64)
        if box is not None:
            box = np.asarray(box, dtype=np.float64)
            if box.shape != (4,):
                raise ValueError(f"box must be (4,) as x0, y0, x1, y1, got shape {box.shape}")
            if box[0] > box[2] or box[1] > box[3]:
                raise ValueError(f"box must have x0 <= x1 and y0 <= y1, got {box.tolist()}")
            coords = box.reshape(2, 2)
            label_list = np.array(BOX_LABELS, dtype=np.int64)
        if points is not None:
            pts = np.asarray(points, dtype=np.float64)
            lab = np.asarray(labels)
            if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] == 0:
                raise ValueError(f"points must be (N, 2) x, y with N >= 1, got shape {pts.shape}")
            if lab.shape != (pts.shape[0],):
                raise ValueError(f"labels must be ({pts.shape[0]},) to match the points, got shape {lab.shape}")
            if not np.isin(lab, (0, 1)).all():
                raise ValueError(f"labels must be 1 (positive) or 0 (negative), got {np.unique(lab).tolist()}")
            coords = np.concatenate([coords, pts])
            label_list = np.concatenate([label_list, lab.astype(np.int64)])
        if not np.isfinite(coords).all():
            raise ValueError(f"prompt coordinates must be finite, got {coords.tolist()}")
        outside = (coords[:, 0] < 0) | (coords[:, 0] > w) | (coords[:, 1] < 0) | (coords[:, 1] > h)
        if outside.any():
            raise ValueError(
                f"prompt coordinates must lie in the frame (0 <= x <= {w}, 0 <= y <= {h}), "
                f"got {coords[outside].tolist()}"
            )
        model_coords = points_to_model(coords, (h, w), size)
        return _Prompt(
            coords=torch.from_numpy(model_coords)[None].to(self.device),  # (1, N, 2)
            labels=torch.from_numpy(label_list.astype(np.int32))[None].to(self.device),  # (1, N)
            mask=None,
        )

    def _new_bank(self) -> MemoryBank:
        cfg = self.model.cfg
        return MemoryBank(
            max_conditioning=self.max_conditioning_frames,
            num_maskmem=cfg.num_maskmem,
            max_obj_ptrs=cfg.max_obj_ptrs_in_encoder,
        )

    def _memory_tokens(self, selections: list[MemorySelection]) -> MemoryTokens:
        """Batch the memories of objects that share one layout."""
        assert self._memory_pos is not None  # set by the first memory ever encoded
        return self.model.memory_tokens(
            features=torch.stack([torch.stack(s.features) for s in selections]),  # (B, K, Cm, h, w)
            feature_pos=self._memory_pos.expand(len(selections), -1, -1, -1),
            tpos_indices=selections[0].tpos_indices,
            obj_ptrs=torch.stack([torch.stack(s.obj_ptrs) for s in selections]),  # (B, P, C)
            ptr_distances=torch.tensor([s.ptr_distances for s in selections], device=self.device),  # (B, P)
        )

    def _entry(self, t: int, heads: HeadOutput, memory_features: torch.Tensor, row: int) -> MemoryEntry:
        return MemoryEntry(
            frame_idx=t,
            features=memory_features[row].clone(),  # own storage: the batch can be freed
            obj_ptr=heads.obj_ptr[row].clone(),
            object_score_logit=float(heads.object_score_logits[row, 0]),
        )

    def _result(self, heads: HeadOutput, row: int) -> ObjectResult:
        assert self._frame_hw is not None
        logits = heads.low_res_logits[row : row + 1]  # (1, 1, S/4, S/4)
        score_logit = float(heads.object_score_logits[row, 0])
        return ObjectResult(
            mask=logits_to_frame_mask(logits, self._frame_hw)[0].cpu().numpy(),
            low_res_logits=logits[0, 0].float().cpu().numpy(),
            score=float(heads.iou[row]),
            object_score_logit=score_logit,
            visible=score_logit > 0,
        )
