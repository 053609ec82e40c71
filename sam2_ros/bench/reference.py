"""Meta's SAM 2 (PyPI `sam2==1.1.0`) built from an official checkpoint and driven causally,
one frame at a time, as its video predictor would on a live stream.

SAM2VideoPredictor loads a whole video and re-propagates after each prompt; on a live stream
only its causal path exists: a prompt applies to the newest frame and shapes later frames.
`CausalReference` replays exactly what the predictor computes on that path, through the
reference's own `SAM2Base` methods:
- a prompt runs `_track_step` with `run_mem_encoder=False`, new objects (and frames an
  object has not been tracked on) as initial conditioning frames, later clicks fed the
  frame's previous logits (clamped to +-32) as `add_new_points_or_box` does;
- its memory is encoded as `propagate_in_video_preflight` does: the low-res logits
  upsampled and binarized (`is_mask_from_pts=True`), moved into the conditioning outputs
  (replacing that frame's non-conditioning output) when the next frame arrives, as with
  `add_all_frames_to_correct_as_cond=True`;
- tracking runs `_track_step` + `_encode_memory_in_output` (the body of `track_step`) on
  every object, on an unbounded output dict (the reference never forgets) with `num_frames`
  unknown (a live stream), so that up to `max_obj_ptrs_in_encoder` pointers are used.
Each frame keeps the fields the predictor keeps (its "compact" output). Memory features stay
float32 (the predictor casts them to bfloat16 for storage only).

`sam2` is imported only when a reference is built or driven: the package runs without it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

LIVE_STREAM_FRAMES = 1 << 30  # `num_frames` of an endless stream
# Per-frame fields the video predictor keeps (`_run_single_frame_inference`'s compact output).
KEPT_FIELDS = ("maskmem_features", "maskmem_pos_enc", "pred_masks", "obj_ptr", "object_score_logits")

REFERENCE_CONFIGS = {
    ("2.1", "tiny"): "configs/sam2.1/sam2.1_hiera_t.yaml",
    ("2.1", "small"): "configs/sam2.1/sam2.1_hiera_s.yaml",
    ("2.1", "base_plus"): "configs/sam2.1/sam2.1_hiera_b+.yaml",
    ("2.1", "large"): "configs/sam2.1/sam2.1_hiera_l.yaml",
    ("2.0", "tiny"): "configs/sam2/sam2_hiera_t.yaml",
    ("2.0", "small"): "configs/sam2/sam2_hiera_s.yaml",
    ("2.0", "base_plus"): "configs/sam2/sam2_hiera_b+.yaml",
    ("2.0", "large"): "configs/sam2/sam2_hiera_l.yaml",
}
SAM2_MISSING = (
    "Meta's reference SAM 2 is not importable: pip install sam2==1.1.0 --no-deps hydra-core iopath tqdm "
    "(scripts/setup.sh does)"
)


def require_sam2() -> None:
    """ImportError saying how to install the reference when it is missing."""
    try:
        import sam2  # noqa: F401
    except ImportError as err:
        raise ImportError(SAM2_MISSING) from err


def reference_overrides(image_size: int, max_conditioning_frames: int) -> list[str]:
    """Hydra overrides for a non-default image size and our conditioning-frame cap."""
    feat = image_size // 16
    return [
        f"++model.image_size={image_size}",
        f"++model.memory_attention.layer.self_attention.feat_sizes=[{feat},{feat}]",
        f"++model.memory_attention.layer.cross_attention.feat_sizes=[{feat},{feat}]",
        f"++model.max_cond_frames_in_attn={max_conditioning_frames}",
    ]


def build_reference_predictor(
    size: str,
    *,
    image_size: int,
    version: str = "2.1",
    checkpoint: str | Path | None,
    device: str | torch.device = "cpu",
    vos_optimized: bool = False,
    max_conditioning_frames: int = 4,
) -> torch.nn.Module:
    """Meta's video predictor as `build_sam2_video_predictor` makes it (its post-processing
    settings included), eval mode; random weights when `checkpoint` is None.
    `vos_optimized`: `SAM2VideoPredictorVOS`, every part torch.compile'd (max-autotune)."""
    if (version, size) not in REFERENCE_CONFIGS:
        raise ValueError(f"no reference config for SAM {version} {size!r}; expected one of {sorted(REFERENCE_CONFIGS)}")
    require_sam2()
    from sam2.build_sam import build_sam2_video_predictor

    return build_sam2_video_predictor(
        REFERENCE_CONFIGS[(version, size)],
        ckpt_path=None if checkpoint is None else str(checkpoint),
        device=str(device),
        hydra_overrides_extra=reference_overrides(image_size, max_conditioning_frames),
        vos_optimized=vos_optimized,
    )


@dataclass(frozen=True)
class RefResult:
    low_res_logits: np.ndarray  # (S/4, S/4)
    score: float  # predicted IoU of the chosen mask
    object_score_logit: float


@dataclass
class _RefObject:
    output_dict: dict = field(default_factory=lambda: {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}})
    tracked: set[int] = field(default_factory=set)
    pending: dict[int, dict] = field(default_factory=dict)  # prompt outputs of the current frame
    point_inputs: dict | None = None  # clicks given on the current frame


class CausalReference:
    """A reference SAM2Base (or video predictor) on a causal stream."""

    def __init__(self, model: torch.nn.Module, *, max_conditioning_frames: int = 4) -> None:
        model.max_cond_frames_in_attn = max_conditioning_frames
        self.model = model
        self.frame_idx = -1
        self.frame_hw: tuple[int, int] | None = None
        self.objects: dict[int, _RefObject] = {}
        self._features: tuple | None = None

    @torch.inference_mode()
    def track(self, image: torch.Tensor, frame_hw: tuple[int, int]) -> dict[int, RefResult]:
        """image: (1, 3, S, S) preprocessed frame on the model's device."""
        self._commit_prompts()
        self.frame_idx += 1
        self.frame_hw = frame_hw
        backbone_out = self.model.forward_image(image)
        _, feats, pos, sizes = self.model._prepare_backbone_features(backbone_out)
        self._features = (feats, pos, sizes)
        results = {}
        for obj_id, obj in self.objects.items():
            out, ious = self._step(obj, is_init_cond_frame=False, point_inputs=None, mask_inputs=None,
                                   prev_logits=None, run_mem_encoder=True)
            obj.output_dict["non_cond_frame_outputs"][self.frame_idx] = _compact(out)
            obj.tracked.add(self.frame_idx)
            obj.point_inputs = None
            results[obj_id] = self._result(out, ious)
        return results

    @torch.inference_mode()
    def add_prompt(
        self,
        obj_id: int,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        clear_old: bool = True,
    ) -> RefResult:
        """Frame-pixel prompts, converted as `add_new_points_or_box` / `add_new_mask` do."""
        from sam2.utils.misc import concat_points

        model, t = self.model, self.frame_idx
        device = model.device
        h, w = self.frame_hw
        obj = self.objects.setdefault(obj_id, _RefObject())
        is_init = t not in obj.tracked
        prev = obj.pending.get(t) or obj.output_dict["cond_frame_outputs"].get(t) or \
            obj.output_dict["non_cond_frame_outputs"].get(t)
        if mask is not None:
            m = torch.tensor(mask, dtype=torch.bool, device=device)[None, None].float()
            if m.shape[-2:] != (model.image_size, model.image_size):
                m = F.interpolate(m, size=(model.image_size, model.image_size), align_corners=False,
                                  mode="bilinear", antialias=True)
                m = (m >= 0.5).float()
            obj.point_inputs = None
            out, ious = self._step(obj, is_init_cond_frame=is_init, point_inputs=None, mask_inputs=m,
                                   prev_logits=None, run_mem_encoder=False)
        else:
            pts = torch.zeros(1, 0, 2) if points is None else torch.tensor(points, dtype=torch.float32)[None]
            lab = torch.zeros(1, 0, dtype=torch.int32) if labels is None else \
                torch.tensor(labels, dtype=torch.int32)[None]
            if box is not None:
                pts = torch.cat([torch.tensor(box, dtype=torch.float32).reshape(1, 2, 2), pts], dim=1)
                lab = torch.cat([torch.tensor([[2, 3]], dtype=torch.int32), lab], dim=1)
            pts = (pts / torch.tensor([w, h]) * model.image_size).to(device)
            obj.point_inputs = concat_points(None if clear_old else obj.point_inputs, pts, lab.to(device))
            prev_logits = None if prev is None else torch.clamp(prev["pred_masks"], -32.0, 32.0)
            out, ious = self._step(obj, is_init_cond_frame=is_init, point_inputs=obj.point_inputs,
                                   mask_inputs=None, prev_logits=prev_logits, run_mem_encoder=False)
        feats, _, sizes = self._features
        high_res = F.interpolate(out["pred_masks"], size=(model.image_size, model.image_size),
                                 mode="bilinear", align_corners=False)
        out["maskmem_features"], out["maskmem_pos_enc"] = model._encode_new_memory(
            current_vision_feats=feats, feat_sizes=sizes, pred_masks_high_res=high_res,
            object_score_logits=out["object_score_logits"], is_mask_from_pts=True,
        )
        obj.pending[t] = _compact(out)
        return self._result(out, ious)

    def held_bytes(self) -> int:
        """Bytes of the tensors kept for later frames (each storage counted once)."""
        seen: dict[int, int] = {}
        for obj in self.objects.values():
            for outputs in (*obj.output_dict.values(), obj.pending):
                for out in outputs.values():
                    for value in out.values():
                        for tensor in value if isinstance(value, list) else [value]:
                            if isinstance(tensor, torch.Tensor):
                                storage = tensor.untyped_storage()
                                seen[storage.data_ptr()] = storage.nbytes()
        return sum(seen.values())

    def _step(self, obj: _RefObject, *, is_init_cond_frame: bool, point_inputs, mask_inputs, prev_logits,
              run_mem_encoder: bool) -> tuple[dict, torch.Tensor]:
        """`track_step`'s body, keeping the predicted IoUs it drops."""
        feats, pos, sizes = self._features
        current_out, sam_outputs, _, _ = self.model._track_step(
            self.frame_idx, is_init_cond_frame, feats, pos, sizes, point_inputs, mask_inputs,
            obj.output_dict, LIVE_STREAM_FRAMES, False, prev_logits,
        )
        _, _, ious, low_res_masks, high_res_masks, obj_ptr, object_score_logits = sam_outputs
        current_out["pred_masks"] = low_res_masks
        current_out["obj_ptr"] = obj_ptr
        current_out["object_score_logits"] = object_score_logits
        self.model._encode_memory_in_output(feats, sizes, point_inputs, run_mem_encoder, high_res_masks,
                                            object_score_logits, current_out)
        return current_out, ious

    def _commit_prompts(self) -> None:
        """`propagate_in_video_preflight`: prompted frames become conditioning outputs."""
        for obj in self.objects.values():
            for t, out in obj.pending.items():
                obj.output_dict["cond_frame_outputs"][t] = out
                obj.output_dict["non_cond_frame_outputs"].pop(t, None)
            obj.pending.clear()

    @staticmethod
    def _result(out: dict, ious: torch.Tensor) -> RefResult:
        return RefResult(
            low_res_logits=out["pred_masks"][0, 0].float().cpu().numpy(),
            score=float(ious.max(dim=-1).values[0]),
            object_score_logit=float(out["object_score_logits"][0, 0]),
        )


def _compact(out: dict) -> dict:
    return {name: out[name] for name in KEPT_FIELDS}
