# Source me: the venv, the colcon install of our msg/srv, and DDS kept on loopback.
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "${SAM2_ROS_VENV:-$_root/.venv}/bin/activate"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export PYTHONPATH="$_root${PYTHONPATH:+:$PYTHONPATH}"
# Every package colcon built here (sam2_ros; vision_msgs when vendored): its prefix, its
# Python package and its generated msg/srv C libraries (loaded by the Python type support).
for _pkg in "$_root"/install/*/; do
  _pkg="${_pkg%/}"
  [ -d "$_pkg/share" ] || continue
  export AMENT_PREFIX_PATH="$_pkg:$AMENT_PREFIX_PATH"
  _site="$_pkg/lib/python3.11/site-packages"
  [ -d "$_site" ] && export PYTHONPATH="$PYTHONPATH:$_site"
  export LD_LIBRARY_PATH="$_pkg/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
unset _pkg
# Large camera images between processes need a bigger shared-memory segment (see README).
export FASTDDS_DEFAULT_PROFILES_FILE="$_root/config/fastdds_local_large_data.xml"
export RMW_FASTRTPS_USE_QOS_FROM_XML=0
unset _root _site
