"""Software timing for outputs: a thread that runs actions at microsecond times, and step series on it.

Used where no hardware timing exists: the sim backend's every edge, lgpio's series, and an RGB LED's timed
colours (three PWM channels switched together). The thread waits on a condition until ~1 ms before an action
is due, then polls the clock until it is due, so an action runs within tens of microseconds of its time on an
idle machine (a loaded one can add the scheduler's latency, ~1 ms). Steps are scheduled from their nominal
start, so errors never accumulate over a series, and only the next step of a series is queued at a time (a
long series costs no memory and never crowds another output's step out).

Actions run outside the scheduler's lock: an action may take its owner's lock, and the owner may schedule
while holding it, without the two locks ever being taken in opposite orders.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Sequence

from autopilot_hardware.gpio.limits import Step


class Scheduler:
    """Runs ``action(now_us)`` at ``due_us`` on the clock ``now_us`` (microseconds), on its own thread."""

    def __init__(self, now_us: Callable[[], int], name: str) -> None:
        self.now_us = now_us
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[tuple[int, int, Callable[[int], None]]] = []
        self._seq = itertools.count()
        self._running = True
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def at(self, due_us: int, action: Callable[[int], None]) -> None:
        with self._cond:
            heapq.heappush(self._queue, (due_us, next(self._seq), action))
            self._cond.notify()

    def _next(self) -> Callable[[int], None] | None:
        """The next due action, waiting for it; None once closed."""
        with self._cond:
            while self._running:
                if not self._queue:
                    self._cond.wait(0.5)
                    continue
                wait_us = self._queue[0][0] - self.now_us()
                if wait_us > 1500:
                    self._cond.wait((wait_us - 1000) / 1e6)
                    continue  # re-check: an earlier action may have been added
                if wait_us > 0:
                    due = self._queue[0][0]
                    self._cond.release()
                    try:
                        while self.now_us() < due:
                            time.sleep(0)  # poll the last ~1 ms; yields the GIL to other threads
                    finally:
                        self._cond.acquire()
                    continue
                return heapq.heappop(self._queue)[2]
            return None

    def _run(self) -> None:
        while (action := self._next()) is not None:
            action(self.now_us())

    def close(self) -> None:
        with self._cond:
            self._running = False
            self._queue.clear()
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=1.0)


def run_series(scheduler: Scheduler, t0_us: int, steps: Sequence[Step], repeat: int,
               apply: Callable[[bool, int], bool]) -> None:
    """Step ``k`` of ``steps`` (``repeat`` times) at its nominal time from ``t0_us``, then level low at the end.

    ``apply(level, now_us)`` sets the level and returns False when a newer command has replaced the series
    (the rest is then dropped). The first step is applied by the caller at ``t0_us``; this schedules the rest.
    """
    steps = list(steps)
    n = len(steps)
    period = sum(us for _, us in steps)
    starts = list(itertools.accumulate((us for _, us in steps), initial=0))
    total = n * repeat

    def due(k: int) -> int:
        """Nominal time of step ``k`` (``total``: the end)."""
        return t0_us + k // n * period + starts[k % n]

    def step(k: int) -> Callable[[int], None]:
        def action(now_us: int) -> None:
            if not apply(steps[k % n][0] if k < total else False, now_us):
                return
            if k < total:
                scheduler.at(due(k + 1), step(k + 1))
        return action

    scheduler.at(due(1), step(1))

