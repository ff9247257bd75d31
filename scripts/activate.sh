# Source this (bash/zsh) to use the workspace: the same as `. .venv/bin/activate`, and on a ROS 2
# install it sources /opt/ros/$ROS_DISTRO/setup.bash first when that is not done yet.
_ap_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
if [ -n "${ROS_DISTRO:-}" ] && [ -f "/opt/ros/${ROS_DISTRO}/setup.bash" ] && [ -z "${AMENT_PREFIX_PATH:-}" ]; then
    . "/opt/ros/${ROS_DISTRO}/setup.bash"
fi
. "$_ap_root/.venv/bin/activate"
unset _ap_root
