# Source me: the venv, the colcon install of our msg/srv, and DDS kept on loopback.
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "${SAM2_ROS_VENV:-$_root/.venv}/bin/activate"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export AMENT_PREFIX_PATH="$_root/install/sam2_ros:$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
_site="$_root/install/sam2_ros/lib/python3.11/site-packages"
[ -d "$_site" ] && export PYTHONPATH="$_root:$_site${PYTHONPATH:+:$PYTHONPATH}"
# The generated msg/srv C libraries, loaded by the Python type support.
export LD_LIBRARY_PATH="$_root/install/sam2_ros/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Large camera images between processes need a bigger shared-memory segment (see README).
export FASTDDS_DEFAULT_PROFILES_FILE="$_root/config/fastdds_local_large_data.xml"
export RMW_FASTRTPS_USE_QOS_FROM_XML=0
unset _root _site
