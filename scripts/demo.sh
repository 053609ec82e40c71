#!/usr/bin/env bash
# The demo on a bare machine: sets everything up (idempotent), then runs the real node on
# the bundled video and writes overlays to out/demo/. Extra arguments go to the demo
# (`bash scripts/demo.sh --help`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
. "$ROOT/scripts/env.sh"
# Our own DDS domain, kept on loopback (env.sh), so other ROS graphs are not disturbed.
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$((50 + $$ % 50))}"
cd "$ROOT"
exec python -m sam2_ros.demo "$@"
