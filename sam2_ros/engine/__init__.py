"""SAM 2 streaming engine: pure PyTorch + NumPy, no ROS."""
from sam2_ros.engine.checkpoint import load_checkpoint
from sam2_ros.engine.config import SAM2Config, sam2_config
from sam2_ros.engine.model import SAM2Model, build_model
from sam2_ros.engine.tracker import ObjectResult, StreamingTracker, TrackerSnapshot

__all__ = [
    "ObjectResult",
    "SAM2Config",
    "SAM2Model",
    "StreamingTracker",
    "TrackerSnapshot",
    "build_model",
    "load_checkpoint",
    "sam2_config",
]
