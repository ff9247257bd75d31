#!/usr/bin/env bash
# The container's commands run with ROS 2 and the repo's environment, as in a shell on a configured host.
set -e
# shellcheck disable=SC1091
source /opt/ros/jazzy/setup.bash
# shellcheck disable=SC1091
. /opt/autopilot-ros/scripts/activate.sh
exec "$@"
