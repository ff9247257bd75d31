"""Middleware transport settings a process must choose before ``rclpy.init``.

Fast DDS reads its XML profile once, when the process's participant is created, so a node that needs a
different transport (a camera publishing 900 KiB frames) picks it in ``main()`` before rclpy starts.
The profile ships as ``share/autopilot_core/config/fastdds_large_shm.xml``; its comment has the figures.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Fast DDS 2.x (Jazzy: 2.14) reads FASTRTPS_..., Fast DDS 3 (Kilted on) FASTDDS_...; we set both.
PROFILE_VARS = ('FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE')
#: Set to 0 to keep Fast DDS's built-in transports in a node that would apply the profile.
OPT_OUT_VAR = 'AUTOPILOT_LARGE_SHM'
PROFILE_NAME = 'fastdds_large_shm.xml'


def large_shm_profile() -> Path:
    """The installed profile file (the package share), or the source tree's copy when run from src/."""
    try:
        from ament_index_python.packages import get_package_share_directory
        path = Path(get_package_share_directory('autopilot_core')) / 'config' / PROFILE_NAME
        if path.is_file():
            return path
    except (ImportError, LookupError, ValueError):
        pass
    return Path(__file__).resolve().parent.parent / 'config' / PROFILE_NAME


def use_large_shm_profile(environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """Point Fast DDS at the large shared-memory profile unless the user chose otherwise.

    Does nothing when the RMW is not Fast DDS, when a profile file is already set (the user's own wins),
    or when ``AUTOPILOT_LARGE_SHM=0``. Returns a one-line account for the node's startup log.
    """
    rmw = environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
    if not rmw.startswith('rmw_fastrtps'):
        return f'transport: {rmw} (large-sample profile applies to Fast DDS only)'
    if environ.get(OPT_OUT_VAR, '1').strip().lower() in ('0', 'false', 'no', 'off'):
        return f'transport: Fast DDS built-in ({OPT_OUT_VAR}=0)'
    for var in PROFILE_VARS:
        if environ.get(var):
            return f'transport: Fast DDS profile from {var}={environ[var]}'
    path = large_shm_profile()
    if not path.is_file():
        return f'transport: Fast DDS built-in ({PROFILE_NAME} not found; rebuild the workspace)'
    for var in PROFILE_VARS:
        environ[var] = str(path)
    return f'transport: Fast DDS with a 16 MiB shared-memory segment ({path})'
