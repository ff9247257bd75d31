"""How far each pilot's clock is from the terminal's: NTP-style exchanges over ``<pilot>/clock_sync``, filtered.

Trials and events are stamped on the pilots' clocks and compared on the terminal, so the terminal measures each
pilot's clock. One exchange (``ClockSync``): the terminal sends at t1 (its clock), the pilot's callback receives
at t2 and answers at t3 (the pilot's clock), the answer is back at t4 (the terminal's clock)::

    offset = ((t2 - t1) + (t3 - t4)) / 2      how far the pilot's clock is ahead of the terminal's
    delay  = (t4 - t1) - (t3 - t2)            the round trip, less the pilot's own time

If the two directions of the round trip take different times the offset is wrong by up to ``delay / 2``, which
is the error bound reported with it. Of the last :data:`WINDOW` exchanges the one with the smallest delay is
kept (NTP's clock filter): queueing only ever adds delay, so the fastest exchange is the least disturbed.
A lab runs chrony or timesyncd with the terminal as the pilots' server (``autopilot setup``); this measures
whether that works, says so when it does not (:data:`WARN_MS`), and stores the figure with each session.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

#: Exchanges kept per pilot; the one with the smallest delay is the estimate.
WINDOW = 8
#: An offset past this is worth a warning: GPIO stamps are good to ~0.1 ms, a synced LAN clock to ~1 ms.
WARN_MS = 10.0


@dataclass(frozen=True)
class Sample:
    offset_ns: int
    delay_ns: int
    at_ns: int  # t4: when it was measured (terminal clock)


def sample(t1: int, t2: int, t3: int, t4: int) -> Sample:
    """One exchange's offset and delay (all times ns; t1, t4 terminal clock, t2, t3 pilot clock)."""
    return Sample(offset_ns=((t2 - t1) + (t3 - t4)) // 2, delay_ns=(t4 - t1) - (t3 - t2), at_ns=t4)


class ClockFilter:
    """The last ``window`` exchanges with one pilot, and the estimate from them."""

    def __init__(self, window: int = WINDOW) -> None:
        self.samples: deque[Sample] = deque(maxlen=window)
        self.count = 0

    def add(self, s: Sample) -> bool:
        """Keep ``s``; False (and ignored) when it cannot be a real exchange (a negative delay: a clock stepped
        between t1 and t4, or a forged answer)."""
        if s.delay_ns < 0:
            return False
        self.samples.append(s)
        self.count += 1
        return True

    @property
    def best(self) -> Sample | None:
        return min(self.samples, key=lambda s: s.delay_ns, default=None)

    def summary(self) -> dict[str, float | int]:
        """What is stored with a session: offset, its error bound and round trip in ms, and how many exchanges."""
        b = self.best
        if b is None:
            return {'offset_ms': math.nan, 'error_bound_ms': math.nan, 'delay_ms': math.nan, 'exchanges': 0,
                    'measured_at_ns': 0}
        return {'offset_ms': b.offset_ns / 1e6, 'error_bound_ms': b.delay_ns / 2e6, 'delay_ms': b.delay_ns / 1e6,
                'exchanges': self.count, 'measured_at_ns': b.at_ns}


def describe(pilot: str, best: Sample) -> str:
    """The warning for a pilot whose clock is off by more than :data:`WARN_MS`, with the fix."""
    ms = best.offset_ns / 1e6
    way = 'ahead of' if ms > 0 else 'behind'
    return (f'pilot {pilot}: its clock is {abs(ms):.1f} ms {way} the terminal\'s (+- {best.delay_ns / 2e6:.1f} ms, '
            f'round trip {best.delay_ns / 1e6:.1f} ms): event and trial times of its sessions are shifted by that '
            f'much. Sync it to the terminal with chrony (autopilot setup configures it) and check `chronyc tracking`')
