"""sam2_ros: streaming SAM 2 video segmentation for ROS 2."""
# Merge with the colcon-installed copy so the generated `sam2_ros.msg`/`sam2_ros.srv`
# import beside this source tree when running from the repository root.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
