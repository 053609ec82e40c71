"""From the node's parameters to a ready StreamingTracker: backend, weights, device, dtype.

Missing weights are the first thing a new user meets, so the error names the file,
every place searched and the command that downloads it.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from sam2_ros.ros.parameters import NodeConfig

SOURCE_ROOT = Path(__file__).resolve().parents[2]
WEIGHTS_ENV = "SAM2_ROS_WEIGHTS_DIR"


class ModelLoadError(RuntimeError):
    """The tracker cannot be built as configured; the message says what to change."""


# Sizes whose checkpoint ships with the package (weights/, installed to share/sam2_ros/weights)
# instead of being downloaded from Meta.
BUNDLED_CHECKPOINTS = {"nano": "sam2_nano.pt"}


def checkpoint_name(model_size: str) -> str:
    """The file a checkpoint of this size is looked for as."""
    return BUNDLED_CHECKPOINTS.get(model_size, f"sam2.1_hiera_{model_size}.pt")


def weights_dirs() -> list[Path]:
    """Where a checkpoint named only by model size is looked for, in order."""
    dirs = [Path(os.environ[WEIGHTS_ENV])] if os.environ.get(WEIGHTS_ENV) else []
    dirs.append(Path.cwd() / "weights")
    try:
        from ament_index_python.packages import (PackageNotFoundError,
                                                 get_package_share_directory)
        try:
            dirs.append(Path(get_package_share_directory("sam2_ros")) / "weights")
        except (PackageNotFoundError, OSError):  # not installed, or no AMENT_PREFIX_PATH
            pass
    except ImportError:
        pass
    dirs.append(SOURCE_ROOT / "weights")
    unique: list[Path] = []
    for folder in dirs:
        if folder.resolve() not in [seen.resolve() for seen in unique]:
            unique.append(folder)
    return unique


def fetch_hint(model_size: str, dest: Path) -> str:
    """How to get the checkpoint of this size: the download command, or where it ships."""
    if model_size in BUNDLED_CHECKPOINTS:
        return (f"{BUNDLED_CHECKPOINTS[model_size]} ships in the package's weights/ folder; "
                f"rebuild sam2_ros (colcon build) to restore it")
    script = next((folder / "download.py" for folder in weights_dirs()
                   if (folder / "download.py").is_file()), Path("weights/download.py"))
    return f"Download it with: python3 {script} {model_size} --dest {dest}"


def find_checkpoint(config: NodeConfig) -> Path:
    """The checkpoint to load; ModelLoadError with the search and download hint if absent."""
    if config.checkpoint:
        path = Path(config.checkpoint).expanduser()
        if path.is_file():
            return path
        raise ModelLoadError(
            f"checkpoint {str(path)!r} (parameter 'checkpoint') does not exist. "
            f"{fetch_hint(config.model_size, path.parent)}")
    name = checkpoint_name(config.model_size)
    searched = weights_dirs()
    for folder in searched:
        if (folder / name).is_file():
            return folder / name
    raise ModelLoadError(
        f"no checkpoint for model_size {config.model_size!r}: {name} is in none of "
        f"{[str(folder) for folder in searched]}. "
        f"{fetch_hint(config.model_size, searched[0])} -- or set the 'checkpoint' "
        f"parameter, or set allow_random_weights:=true for a test run (meaningless masks).")


def build_tracker(config: NodeConfig, *, info: Callable[[str], None],
                  warn: Callable[[str], None]):
    """Build, load and place the tracker the parameters describe."""
    import torch

    from sam2_ros.engine import StreamingTracker, build_model, load_checkpoint
    from sam2_ros.engine.checkpoint import trained_image_size

    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device {config.device!r} requested but CUDA is not available "
                             f"to torch {torch.__version__}; use device:=cpu")
    torch.manual_seed(0)  # random weights (when allowed) are the same on every run
    try:
        model = build_model(config.model_size, image_size=config.image_size)
    except ValueError as error:
        raise ModelLoadError(f"cannot build the model: {error}") from error
    try:
        path = find_checkpoint(config)
        report = load_checkpoint(model, path)
        info(report.summary())
        # Our checkpoints record their training size in the .yaml beside them.
        trained = (trained_image_size(path, default=config.image_size)
                   if path.name in BUNDLED_CHECKPOINTS.values() else config.image_size)
        if trained != config.image_size:
            warn(f"{path.name} was trained at image_size {trained}, running at "
                 f"{config.image_size}: expect worse masks (set image_size:={trained})")
    except ModelLoadError as error:
        if not config.allow_random_weights:
            raise
        warn(f"{error}\nallow_random_weights is true: starting with RANDOM weights; the "
            f"masks are meaningless (fine for tests and demos).")
    except ValueError as error:  # CheckpointError: wrong, partial or damaged file
        raise ModelLoadError(f"cannot load the checkpoint: {error}") from error
    try:
        return StreamingTracker(model, max_conditioning_frames=config.max_conditioning_frames,
                                device=config.device, dtype=getattr(torch, config.dtype),
                                backend=config.backend)
    except ImportError as error:  # the backend's packages are missing (BackendUnavailable)
        raise ModelLoadError(f"backend {config.backend!r} is unavailable: {error}; "
                             f"or use backend:=torch") from error
    except ValueError as error:  # e.g. a reduced dtype on CPU
        raise ModelLoadError(f"cannot start the tracker: {error}") from error
