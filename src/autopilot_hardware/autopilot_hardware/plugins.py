"""Device plugins: how a device node describes itself to ``autopilot hardware list``.

Every device node module exports ``DEVICE = DeviceInfo(...)`` and registers it in the entry-point
group ``autopilot.hardware`` (see this package's setup.py); third-party packages do the same for their
own devices, so the suite lists them without importing anything by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from autopilot_core.params import ParamSpec

GROUP = 'autopilot.hardware'


@dataclass(frozen=True)
class DeviceInfo:
    """What a device node is: name, kind, backends, the executable that runs it and its parameters."""

    name: str                      # short name, e.g. "gpio"
    kind: str                      # what it is for, e.g. "digital I/O", "sound", "camera"
    package: str                   # ROS package holding the executable
    executable: str                # `ros2 run <package> <executable>`
    backends: tuple[str, ...]      # values of its `backend` parameter, e.g. ("pigpio", "lgpio", "sim")
    description: str               # one line
    parameters: tuple[ParamSpec, ...] = field(default_factory=tuple)
