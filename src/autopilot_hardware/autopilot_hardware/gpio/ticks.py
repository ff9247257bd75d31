"""Hardware ticks: unwrapping pigpio's 32-bit microsecond tick and mapping ticks to ROS time.

pigpio reports edges with a 32-bit microsecond tick that wraps every 2^32 us (71.6 min). ``TickUnwrapper``
turns it into a 64-bit count by taking the *signed* 32-bit difference from the last tick seen, so a tick a
little older than the last one (a ``get_current_tick`` read racing a callback) does not count as a wrap.
It needs one tick at least every 2^31 us (35.8 min); the node reads the current tick every few seconds.

``TickClock`` maps unwrapped ticks to ROS time (``stamp`` of GpioEvent). Tick and system clock cannot be
read at the same instant, so it reads ``ros, tick, ros`` several times and keeps the read with the smallest
bracket: offset = midpoint - tick. The error of a mapped stamp is at most half that bracket (pigpio over
its socket: ~0.1-0.3 ms on a Pi; the sim's in-process monotonic clock: ~1 us) plus the drift between the
two clocks since the last sync (the Pi's 1 MHz timer vs NTP-disciplined system time: < 50 ppm, i.e.
< 0.5 ms over the default 10 s resync); each resync may step stamps by that much. ``tick_us``
differences never carry this error: use them for response times, ``stamp`` only to align with other
hosts. tests/test_gpio_logic.py bounds it with a fake pigpio tick source and measures it for the sim
(a few microseconds here); tests/test_gpio.py checks stamps against tick_us across processes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from autopilot_core import stamps

WRAP = 1 << 32
HALF = 1 << 31


class TickUnwrapper:
    """32-bit wrapping microsecond ticks -> monotonic 64-bit microseconds since ``first`` (thread-safe)."""

    def __init__(self, first: int) -> None:
        self._last32 = first % WRAP
        self._last = 0
        self._lock = threading.Lock()

    def __call__(self, tick: int) -> int:
        with self._lock:
            delta = ((tick - self._last32 + HALF) % WRAP) - HALF
            value = self._last + delta
            if delta > 0:
                self._last32, self._last = tick % WRAP, value
            return value


class TickClock:
    """Maps unwrapped tick microseconds to ROS time nanoseconds by a bracketed offset measurement."""

    def __init__(self, read_tick_us: Callable[[], int], read_ros_ns: Callable[[], int], samples: int = 5) -> None:
        self._read_tick = read_tick_us
        self._read_ros = read_ros_ns
        self.samples = samples
        self.offset_ns = 0
        #: Half the smallest bracket of the last sync: the bound of the mapping error at sync time.
        self.error_ns = 0
        self.sync()

    def sync(self) -> None:
        tick_minus_ros, bracket = stamps.bracketed_offset_ns(self._read_ros, lambda: self._read_tick() * 1000,
                                                             tries=self.samples)
        self.error_ns = bracket // 2
        self.offset_ns = -tick_minus_ros

    def to_ros_ns(self, tick_us: int) -> int:
        return tick_us * 1000 + self.offset_ns


def monotonic_us() -> int:
    return time.monotonic_ns() // 1000
