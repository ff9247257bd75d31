"""The evdev backend: a USB optical mouse (or any relative-axis input device) reading a running wheel's surface.

The device is grabbed (exclusive), so the wheel no longer moves the desktop's pointer. A reader thread waits
on the device's file descriptor and adds each ``EV_REL`` value of the chosen axis to a :class:`CountBox`;
the node's sampling thread takes the sum every period. Relative events carry no absolute position, so a
lost event is lost distance: nothing here drops one (the kernel's buffer holds 64+ events per read).
"""

from __future__ import annotations

import select
import threading
from typing import Any

from autopilot_hardware.wheel.motion import CountBox

AXES = ('REL_Y', 'REL_X')


class WheelDeviceError(RuntimeError):
    """No usable input device; the message lists what was found and the fix."""


def _evdev() -> Any:
    try:
        import evdev
    except ImportError:
        raise WheelDeviceError('backend evdev needs the evdev package: pip install evdev (Linux only)') from None
    return evdev


def find_device(spec: str, axis: str) -> Any:
    """The input device ``spec`` names: a path (``/dev/input/event3``), a part of its name (``Logitech``), or ''
    for the first device with relative ``axis`` motion."""
    evdev = _evdev()
    if spec.startswith('/'):
        try:
            return evdev.InputDevice(spec)
        except PermissionError:
            raise WheelDeviceError(f'{spec}: permission denied: add the user to group "input" '
                                   '(sudo usermod -aG input $USER, then log in again)') from None
        except OSError as exc:
            raise WheelDeviceError(f'{spec}: {exc.strerror or exc}; list devices with python3 -m evdev.evtest') \
                from None
    code = evdev.ecodes.ecodes[axis]
    seen: list[str] = []
    denied = 0
    for path in evdev.list_devices():
        try:
            dev = evdev.InputDevice(path)
        except PermissionError:
            denied += 1
            continue
        except OSError:
            continue
        rel = dev.capabilities().get(evdev.ecodes.EV_REL, [])
        if code in rel and spec.lower() in dev.name.lower():
            return dev
        seen.append(f'{path} ({dev.name})')
        dev.close()
    hint = (f'; {denied} device(s) could not be opened: add the user to group "input"' if denied else '')
    raise WheelDeviceError(f'no input device with {axis} motion{f" named like {spec!r}" if spec else ""}; found: '
                           f'{", ".join(seen) or "none"}{hint}. Plug the mouse in or set the parameter device')


class EvdevWheel:
    """Counts of one relative axis of ``device`` (an ``evdev.InputDevice`` or anything with its ``fd``,
    ``read()``, ``grab()``, ``ungrab()``, ``close()``, ``name`` and ``path``)."""

    def __init__(self, device: Any, axis: str) -> None:
        if axis not in AXES:
            raise WheelDeviceError(f'axis {axis!r}: one of {", ".join(AXES)}')
        evdev = _evdev()
        self.device = device
        self.ev_rel = evdev.ecodes.EV_REL
        self.code = evdev.ecodes.ecodes[axis]
        self.description = f'{device.name} at {device.path}, {axis}'
        self.box = CountBox()
        self.events = 0
        self.error = ''
        self._stop = threading.Event()
        try:
            device.grab()
        except OSError as exc:
            raise WheelDeviceError(f'{device.path}: cannot grab it ({exc}): another program holds it') from None
        self._thread = threading.Thread(target=self._read_loop, name='wheel-evdev', daemon=True)
        self._thread.start()

    def _read_loop(self) -> None:
        dev = self.device
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([dev.fd], [], [], 0.1)
                if not ready:
                    continue
                try:
                    events = list(dev.read())
                except BlockingIOError:
                    continue
                n = 0
                for ev in events:
                    if ev.type == self.ev_rel and ev.code == self.code:
                        n += ev.value
                        self.events += 1
                if n:
                    self.box.add(n)
        except OSError as exc:  # unplugged: the node reports it, samples become zero
            if not self._stop.is_set():
                self.error = f'{self.description}: {exc.strerror or exc} (unplugged?)'

    def take(self, now_ns: int) -> int:
        return self.box.take()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
        try:
            self.device.ungrab()
        except OSError:
            pass
        self.device.close()
