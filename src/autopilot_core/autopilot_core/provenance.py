"""What produced the data: software versions, source state, ROS, host.

Collected once per session and stored with it, so a trial can be traced to the exact code that
ran it. Every piece is best effort: a missing git or package gives an explanatory string, never an
exception, because provenance must not stop an experiment.
"""

from __future__ import annotations

import getpass
import os
import platform
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

#: Distributions whose versions are recorded when installed.
TRACKED = (
    'autopilot_core', 'autopilot_msgs', 'autopilot_tasks', 'autopilot_hardware', 'autopilot_pilot', 'autopilot_terminal',
    'rclpy', 'numpy', 'h5py', 'PyYAML', 'rosbags', 'pigpio', 'lgpio', 'sounddevice', 'opencv-python-headless',
    'PyQt5', 'pyqtgraph', 'mcap', 'mcap-ros2-support', 'pynwb',
    'ros-jazzy-rclpy', 'ros-rclpy', 'ros-rmw-fastrtps-cpp', 'ros-fastrtps',
)
#: A diff of local changes larger than this is truncated (and says so): a session file must stay small.
MAX_DIFF_BYTES = 1_000_000


def package_versions(names: tuple[str, ...] = TRACKED) -> dict[str, str]:
    """Installed versions of ``names`` (absent ones omitted); ament packages read from package.xml."""
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    for name in names:
        if name in out or not name.startswith('autopilot_'):
            continue
        version = ament_package_version(name)
        if version:
            out[name] = version
    return out


def ament_package_version(package: str) -> str | None:
    """The <version> of an ament package's installed package.xml, or None."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return None
    try:
        xml = Path(get_package_share_directory(package), 'package.xml').read_text()
    except (PackageNotFoundError, OSError, ValueError):
        return None
    start = xml.find('<version>')
    end = xml.find('</version>')
    return xml[start + 9:end].strip() if start >= 0 and end > start else None


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        proc = subprocess.run(['git', *args], cwd=cwd, text=True, capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_state(path: Path | str | None = None) -> dict[str, Any]:
    """Commit, branch and diff of local changes of the git work tree containing ``path``.

    Defaults to the tree this package was installed from (a colcon --symlink-install points there).
    """
    start = Path(path) if path else Path(__file__).resolve().parent
    top = _git(['rev-parse', '--show-toplevel'], start)
    if top is None:
        return {'available': False, 'reason': f'{start} is not in a git work tree (or git is not installed)'}
    root = Path(top.strip())
    commit = (_git(['rev-parse', 'HEAD'], root) or '').strip()
    diff = _git(['diff', 'HEAD', '--no-color'], root) or ''
    untracked = (_git(['ls-files', '--others', '--exclude-standard'], root) or '').split()
    truncated = len(diff.encode()) > MAX_DIFF_BYTES
    if truncated:
        diff = diff.encode()[:MAX_DIFF_BYTES].decode(errors='ignore') + '\n[diff truncated]\n'
    return {
        'available': True,
        'root': str(root),
        'commit': commit or '(no commits yet)',
        'branch': (_git(['rev-parse', '--abbrev-ref', 'HEAD'], root) or '').strip(),
        'dirty': bool(diff) or bool(untracked),
        'diff': diff,
        'diff_truncated': truncated,
        'untracked': untracked,
    }


def ros_info() -> dict[str, str]:
    """ROS distro, middleware and how ROS was installed."""
    rmw = os.environ.get('RMW_IMPLEMENTATION', '')
    if not rmw:
        try:
            from rclpy.utilities import get_rmw_implementation_identifier
            rmw = get_rmw_implementation_identifier()
        except Exception:  # noqa: BLE001 - rclpy missing or not loadable
            rmw = 'unknown'
    try:
        import rclpy
        rclpy_path = str(Path(rclpy.__file__).parent)
    except ImportError:
        rclpy_path = ''
    venv = os.environ.get('VIRTUAL_ENV', sys.prefix)
    if rclpy_path.startswith('/opt/ros/'):
        how = 'ros-install'
    elif rclpy_path.startswith(venv) or rclpy_path.startswith(sys.prefix):
        how = 'pypi-wheels'
    else:
        how = 'other'
    return {
        'distro': os.environ.get('ROS_DISTRO') or ('jazzy' if how == 'pypi-wheels' else 'unknown'),
        'rmw_implementation': rmw,
        'domain_id': os.environ.get('ROS_DOMAIN_ID', '0'),
        'installed_from': how,
        'rclpy_path': rclpy_path,
        'ament_prefix_path': os.environ.get('AMENT_PREFIX_PATH', ''),
    }


def host_info() -> dict[str, str]:
    return {
        'hostname': socket.gethostname(),
        'user': _user(),
        'platform': platform.platform(),
        'machine': platform.machine(),
        'python': sys.version.split()[0],
        'python_executable': sys.executable,
    }


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return str(os.getuid())


def collect(repo: Path | str | None = None) -> dict[str, Any]:
    """Everything above in one JSON-serialisable dict, with the time it was collected."""
    return {
        'collected_at': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
        'packages': package_versions(),
        'git': git_state(repo),
        'ros': ros_info(),
        'host': host_info(),
        'argv': list(sys.argv),
    }
