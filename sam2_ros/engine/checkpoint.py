"""Load Meta's official SAM 2 / SAM 2.1 checkpoints into our modules.

Our attribute names equal the checkpoint keys, so loading is a plain `load_state_dict`; this
module adds the checks around it, so that a wrong, partial or damaged file fails with a message
that names the file, the keys, and the model sizes and versions involved.
"""
from __future__ import annotations

import os
import pickle
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sam2_ros.engine.config import SIZES, sam2_config

# Official sizes by their Hiera trunk: (stage-1 channels, number of blocks).
# (trunk channels, trunk blocks) -> size name, from the one table of sizes in config.py.
SIZES_BY_TRUNK = {
    (cfg.embed_dim, sum(cfg.stages)): size
    for size in SIZES
    for cfg in [sam2_config(size, image_size=256).image_encoder.trunk]
}
# Parameters that SAM 2.1 added; a SAM 2.0 checkpoint lacks them.
SAM21_ONLY_KEYS = ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight", "obj_ptr_tpos_proj.bias")
FULL_MODEL_KEY = "maskmem_tpos_enc"  # present in every full SAM 2 model, 2.0 and 2.1
PATCH_EMBED_KEY = "image_encoder.trunk.patch_embed.proj.weight"
_TRUNK_BLOCK = re.compile(r"^image_encoder\.trunk\.blocks\.(\d+)\.")
_MAX_LISTED = 30  # keys listed per kind of problem in an error message


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist."""


@dataclass(frozen=True)
class LoadReport:
    """What `load_checkpoint` did."""

    path: Path
    loaded: tuple[str, ...]  # keys copied into the model
    missing: tuple[str, ...]  # model keys left at their current values (strict=False only)
    unexpected: tuple[str, ...]  # checkpoint keys ignored (strict=False only)
    checkpoint_size: str | None  # e.g. "tiny", from the trunk's shape; None without an image encoder
    checkpoint_version: str | None  # "2.0" / "2.1"; None when not a full model
    model_version: str | None
    version_notes: tuple[str, ...]  # SAM 2.0 vs 2.1 differences met while loading

    def summary(self) -> str:
        """One log line."""
        kind = " ".join(p for p in ("SAM", self.checkpoint_version, self.checkpoint_size) if p)
        parts = [f"loaded {len(self.loaded)} tensors ({kind}) from {self.path}"]
        if self.missing:
            parts.append(f"{len(self.missing)} model keys not in the checkpoint")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} checkpoint keys ignored")
        return "; ".join(parts + list(self.version_notes))


def load_checkpoint(model: nn.Module, path: str | os.PathLike, *, strict: bool = True) -> LoadReport:
    """Copy an official checkpoint (`{"model": state_dict}` or a bare state_dict) into `model`.

    Tensors take the model's dtype and device. Mis-shaped keys are always an error; missing and
    unexpected keys are an error when `strict`, and are listed in the report otherwise.
    """
    path = Path(path)
    state = _state_dict_of(_read(path), path)
    expected = model.state_dict()

    missing = tuple(k for k in expected if k not in state)
    unexpected = tuple(k for k in state if k not in expected)
    misshaped = tuple(
        (k, tuple(state[k].shape), tuple(v.shape))
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    )
    if misshaped or (strict and (missing or unexpected)):
        raise CheckpointError(_mismatch_message(path, state, expected, missing, unexpected, misshaped))

    model.load_state_dict(state, strict=strict)
    ckpt_version, model_version = _version(state), _version(expected)
    return LoadReport(
        path=path,
        loaded=tuple(k for k in state if k in expected),
        missing=missing,
        unexpected=unexpected,
        checkpoint_size=_size(state),
        checkpoint_version=ckpt_version,
        model_version=model_version,
        version_notes=_version_notes(ckpt_version, model_version),
    )


def _read(path: Path) -> object:
    """torch.load with weights only; every failure becomes a CheckpointError naming the file."""
    if not path.exists():
        raise CheckpointNotFoundError(_not_found_message(path))
    if path.is_dir():
        raise CheckpointError(f"checkpoint path {path.resolve()} is a directory, not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load reports damage with many exception types
        raise CheckpointError(
            f"cannot read checkpoint {path.resolve()} ({path.stat().st_size} bytes): {_read_failure(err)}"
        ) from None


def _read_failure(err: Exception) -> str:
    """A short cause for a torch.load failure (without its advice to disable weights_only)."""
    text = " ".join(str(err).split())
    if isinstance(err, EOFError) or "zip archive" in text:
        return f"the file is truncated or corrupt ({type(err).__name__}: {text[:120] or 'ended early'})"
    if isinstance(err, pickle.UnpicklingError):
        cause = text.partition("WeightsUnpickler error:")[2].partition("Check the documentation")[0].strip()
        return f"not a PyTorch checkpoint of plain tensors ({cause[:200] or text[:200]})"
    return f"{type(err).__name__}: {text[:200]}"


def _not_found_message(path: Path) -> str:
    where = path.resolve()
    message = f"checkpoint not found: looked for {where}"
    if not path.is_absolute():
        message += f" (relative to the working directory {Path.cwd()})"
    folder = where.parent
    if not folder.is_dir():
        return f"{message}; the folder {folder} does not exist either"
    nearby = sorted(p.name for p in folder.glob("*.pt"))
    return f"{message}; .pt files in {folder}: {', '.join(nearby[:10]) if nearby else 'none'}"


def _state_dict_of(obj: object, path: Path) -> Mapping[str, torch.Tensor]:
    """The tensors of an official file ({"model": ...}) or of a bare state_dict."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, expected a dict of tensors")
    if isinstance(obj.get("model"), Mapping):
        state = obj["model"]
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = obj
    else:
        raise CheckpointError(
            f"checkpoint {path} has no 'model' state dict and is not a state dict itself; "
            f"top-level entries: {_listing(map(str, obj)) or 'none'}"
        )
    not_tensors = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"checkpoint {path} has entries that are not tensors: {_listing(not_tensors)}")
    if not state:
        raise CheckpointError(f"checkpoint {path} holds an empty state dict")
    return state


def _trunk(state: Mapping[str, torch.Tensor]) -> tuple[int, int] | None:
    """(stage-1 channels, number of blocks) of the Hiera trunk, if the weights hold one."""
    if PATCH_EMBED_KEY not in state:
        return None
    blocks = {int(m.group(1)) for k in state if (m := _TRUNK_BLOCK.match(k))}
    return state[PATCH_EMBED_KEY].shape[0], max(blocks, default=-1) + 1


def _size(state: Mapping[str, torch.Tensor]) -> str | None:
    trunk = _trunk(state)
    if trunk is None:
        return None
    return SIZES_BY_TRUNK.get(trunk, "unofficial size")


def _describe(state: Mapping[str, torch.Tensor]) -> str:
    """E.g. 'SAM 2.1 tiny (trunk: 96 channels, 12 blocks)'."""
    version, trunk = _version(state), _trunk(state)
    name = " ".join(p for p in ("SAM", version, _size(state)) if p)
    if trunk is None:
        return f"{name} (no image encoder trunk)"
    return f"{name} (trunk: {trunk[0]} channels, {trunk[1]} blocks)"


def _version(state: Mapping[str, torch.Tensor]) -> str | None:
    """'2.1' if any 2.1-only parameter is present, '2.0' for a full model without them, else None."""
    if any(k in state for k in SAM21_ONLY_KEYS):
        return "2.1"
    return "2.0" if FULL_MODEL_KEY in state else None


def _version_notes(checkpoint: str | None, model: str | None) -> tuple[str, ...]:
    if checkpoint is None or model is None or checkpoint == model:
        return ()
    if checkpoint == "2.0":
        return (f"SAM 2.0 checkpoint in a SAM 2.1 model: {', '.join(SAM21_ONLY_KEYS)} keep their initial values",)
    return (f"SAM 2.1 checkpoint in a SAM 2.0 model: {', '.join(SAM21_ONLY_KEYS)} are not used",)


def _mismatch_message(
    path: Path,
    state: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    missing: tuple[str, ...],
    unexpected: tuple[str, ...],
    misshaped: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...],
) -> str:
    lines = [f"checkpoint {path} does not fit the model"]
    ckpt, model = _describe(state), _describe(expected)
    if ckpt != model:
        lines.append(f"  the checkpoint is {ckpt}; the model is {model}")
        ckpt_version, model_version = _version(state), _version(expected)
        if ckpt_version and model_version and ckpt_version != model_version:
            lines.append(f"  build the model as SAM {ckpt_version} to load this file")
    if misshaped:
        shapes = [f"{k} checkpoint {list(given)} vs model {list(want)}" for k, given, want in misshaped]
        lines.append(f"  {len(misshaped)} mis-shaped keys: {_listing(shapes)}")
    if missing:
        lines.append(f"  {len(missing)} missing keys (in the model, not in the checkpoint): {_listing(missing)}")
    if unexpected:
        lines.append(f"  {len(unexpected)} unexpected keys (in the checkpoint, not in the model): {_listing(unexpected)}")
    return "\n".join(lines)


def _listing(items: Iterable[str]) -> str:
    items = list(items)
    shown = ", ".join(items[:_MAX_LISTED])
    return shown if len(items) <= _MAX_LISTED else f"{shown}, ... and {len(items) - _MAX_LISTED} more"


def trained_image_size(checkpoint: Path, default: int = 256) -> int:
    """The input size a checkpoint was trained at, from the .yaml written next to it."""
    import yaml

    description = checkpoint.with_suffix(".yaml")
    if not description.is_file():
        return default
    return int(yaml.safe_load(description.read_text())["model"]["image_size"])
