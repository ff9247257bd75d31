"""The pilot's ``device_map`` parameter: task roles -> rig devices, for whichever task a session runs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from autopilot_pilot.runner import resolve_devices
from autopilot_tasks.task import Task


def parse_device_map(entries: Iterable[str]) -> dict[str, str]:
    """``['center:poke_3']`` -> ``{'center': 'poke_3'}``; ValueError naming a malformed entry."""
    out: dict[str, str] = {}
    for entry in entries:
        if not entry:
            continue
        role, sep, device = entry.partition(':')
        if not sep or not role.strip() or not device.strip():
            raise ValueError(f"device_map entry {entry!r}: write it as 'role:device', e.g. 'center:poke_center'")
        out[role.strip()] = device.strip()
    return out


def devices_for(task_cls: type[Task], device_map: Mapping[str, str]) -> dict[str, str]:
    """Every role of ``task_cls`` -> its device: the map's entries for the task's roles (the map may cover several
    tasks' roles) over the task's defaults."""
    roles = task_cls.hardware()
    return resolve_devices(task_cls, {r: d for r, d in device_map.items() if r in roles})
