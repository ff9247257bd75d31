"""Wheel counts -> velocity samples, and the simulated wheel (no ROS: the wheel node's arithmetic).

A backend reports signed counts (a mouse's relative motion on one axis, an encoder's steps); every period
the node takes the counts since the last take and turns them into one :class:`Sample`. Velocity divides by
the *measured* period, so a late sampling thread lowers the rate but never biases the speed.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    """One period of wheel motion, in the units of autopilot_msgs/WheelMotion."""

    counts: int
    velocity_cm_s: float
    distance_cm: float
    period_us: int


class Sampler:
    """Counts per period -> :class:`Sample` (signed by ``invert``), keeping the distance since the start."""

    def __init__(self, cm_per_count: float, invert: bool, start_ns: int) -> None:
        if not (math.isfinite(cm_per_count) and cm_per_count > 0):
            raise ValueError(f'cm_per_count {cm_per_count!r} must be a positive number')
        self.cm_per_count = cm_per_count
        self.sign = -1 if invert else 1
        self.last_ns = start_ns
        self.total = 0

    def sample(self, counts: int, now_ns: int) -> Sample:
        """The period from the last call (or the start) to ``now_ns`` (a monotonic clock, ns)."""
        dt_ns = max(now_ns - self.last_ns, 0)
        self.last_ns = now_ns
        signed = self.sign * int(counts)
        self.total += signed
        velocity = signed * self.cm_per_count / (dt_ns / 1e9) if dt_ns else 0.0
        return Sample(signed, velocity, self.total * self.cm_per_count, min(dt_ns // 1000, 2**32 - 1))


class CountBox:
    """Counts added by a reader thread, taken by the sampling thread: a sum under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = 0

    def add(self, n: int) -> None:
        with self._lock:
            self._counts += n

    def take(self) -> int:
        with self._lock:
            n, self._counts = self._counts, 0
        return n


class SimWheel:
    """A wheel that an animal runs on when told (:meth:`run`), with small motion noise otherwise.

    Counts come from integrating the speed over each taken interval (``take(now_ns)``), with the fractional
    count carried over, so the published distance is the integral of the commanded speed whatever the period.
    The noise is a velocity drawn per take, N(0, ``noise_cm_s``): fidgeting well below a running threshold.
    """

    description = 'simulated wheel'

    def __init__(self, cm_per_count: float, noise_cm_s: float, seed: int, start_ns: int) -> None:
        self.cm_per_count = cm_per_count
        self.noise_cm_s = noise_cm_s
        self.random = random.Random(seed)
        self.last_ns = start_ns
        self.speed = 0.0
        self.until_ns: int | None = None  # None: the speed holds until the next run()
        self.carry = 0.0
        self._lock = threading.Lock()

    def run(self, speed_cm_s: float, now_ns: int, duration_s: float = 0.0) -> None:
        """Run at ``speed_cm_s`` from ``now_ns`` for ``duration_s`` (0: until the next call); 0 cm/s stops."""
        with self._lock:
            self._advance(now_ns)
            self.speed = float(speed_cm_s)
            self.until_ns = now_ns + round(duration_s * 1e9) if duration_s > 0 else None

    def _advance(self, now_ns: int) -> None:
        """Integrate the motion up to ``now_ns`` into ``carry`` (in counts)."""
        start, self.last_ns = self.last_ns, max(now_ns, self.last_ns)
        end = self.last_ns
        running_to = end if self.until_ns is None else min(end, self.until_ns)
        if running_to > start:
            self.carry += self.speed * (running_to - start) / 1e9 / self.cm_per_count
        if self.until_ns is not None and end >= self.until_ns:
            self.speed, self.until_ns = 0.0, None
        if end > start and self.noise_cm_s > 0:
            self.carry += self.random.gauss(0.0, self.noise_cm_s) * (end - start) / 1e9 / self.cm_per_count

    def take(self, now_ns: int) -> int:
        """Whole counts moved since the last take."""
        with self._lock:
            self._advance(now_ns)
            n = math.trunc(self.carry)
            self.carry -= n
            return n

    def close(self) -> None:
        pass
