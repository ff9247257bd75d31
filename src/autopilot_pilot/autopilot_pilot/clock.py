"""RosClock: the task runner's Clock on one-shot timers made by a node's ``create_timer``.

It takes the three callables it needs (``create_timer``, ``destroy_timer``, ``now_ns``), not the node, so a
unit test drives it with plain objects and nothing here can reach any other part of the node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CreateTimer = Callable[[float, Callable[[], None]], Any]


class RosClock:
    """One-shot timers on periodic ROS timers: cancelled in their callback, destroyed afterwards.

    A timer is never destroyed inside its own callback (rclpy would destroy a handle it is executing), so
    fired and cancelled ones wait in a list for the next ``call_later`` or :meth:`collect`; :meth:`close`
    destroys whatever is left when the runner is done, so no timer outlives its session step.
    """

    def __init__(self, create_timer: CreateTimer, destroy_timer: Callable[[Any], object],
                 now_ns: Callable[[], int]) -> None:
        self._create = create_timer
        self._destroy = destroy_timer
        self._now = now_ns
        self._spent: list[Any] = []
        self._live: set[Any] = set()

    def now_ns(self) -> int:
        return self._now()

    @property
    def live(self) -> int:
        """Timers created and not destroyed yet (pending, fired or cancelled)."""
        return len(self._live)

    def collect(self) -> None:
        """Destroy the timers that fired or were cancelled (never from inside their own callback)."""
        while self._spent:
            timer = self._spent.pop()
            self._live.discard(timer)
            self._destroy(timer)

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> Any:
        self.collect()
        holder: list[Any] = []

        def fire() -> None:
            timer = holder[0]
            timer.cancel()
            self._spent.append(timer)
            fn()
        holder.append(self._create(max(delay_s, 0.0), fire))
        self._live.add(holder[0])
        return holder[0]

    def cancel(self, handle: Any) -> None:
        handle.cancel()
        if handle not in self._spent:  # cancelled twice: destroy once
            self._spent.append(handle)

    def close(self) -> None:
        """Destroy every timer of this clock (the runner has stopped: none may fire any more)."""
        self._spent = list(self._live)
        self.collect()
