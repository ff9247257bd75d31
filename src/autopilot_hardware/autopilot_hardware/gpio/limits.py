"""How long a valve may be open, whatever sequence of commands arrives: the rule, in plain Python.

A valve's ``max_open_ms`` bounds the water of one *opening*, not of one command: a pulse that arrives
while the valve is open extends the same opening, and so does a pulse after a gap too short to count as
closed. The rule (checked on every path -- level, pulse, train, reward, calibration):

* An opening is a run of high intervals; it ends only when the valve has stayed closed at least as long
  as the opening's high time so far. So a valve is never open more than half the time over repeated
  openings, and a train of long pulses with tiny gaps is one opening.
* The high time of one opening never exceeds ``max_open_us``. A level-high or a reward is shortened to
  what is left of the opening (refused when nothing is left); a pulse, train or calibration run that
  would exceed it is refused whole, naming what to change.
* A command replaces what was scheduled on the pin (as every backend does), so only what has already
  happened, plus the new command, counts.

Times are the backend's unwrapped microseconds (``Backend.now_us``). The limiter plans from the command's
time, which is at most microseconds before the backend starts it; high times are summed, never spans,
so that difference cannot let an opening run long.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

#: Longest train (pulses in one command): pigpio holds ~12,000 pulses per wave, and the sim and lgpio
#: would spend their timing thread on it.
MAX_TRAIN_COUNT = 10_000
#: Shortest high or low phase of a timed output: shorter ones are below what the sim and lgpio time
#: (tens of us) and a flood of them starves the timing thread.
MIN_PHASE_US = 50
#: Longest timed output of one command (a train included): one hour.
MAX_SPAN_US = 3_600_000_000


#: Steps in one series (a pattern; repeat it for more).
MAX_SERIES_STEPS = 1000


class LimitError(ValueError):
    """A command that would break a valve's limit or the train bounds; the message names the fix."""


Interval = tuple[int, int]  # (start_us, end_us), end > start
#: One step of a timed output: (level, microseconds).
Step = tuple[bool, int]


def train_steps(high_us: int, low_us: int, count: int) -> list[Step]:
    """A pulse train as one period of steps (repeated ``count`` times); the last low is the series' end."""
    return [(True, high_us), (False, low_us)] if count > 1 else [(True, high_us)]


def series_intervals(start_us: int, steps: Sequence[Step], repeat: int) -> list[Interval]:
    """The high intervals of ``steps`` run ``repeat`` times from ``start_us`` (adjacent high steps joined)."""
    out: list[Interval] = []
    t = start_us
    for _ in range(repeat):
        for level, us in steps:
            if level:
                if out and out[-1][1] == t:
                    out[-1] = (out[-1][0], t + us)
                else:
                    out.append((t, t + us))
            t += us
    return out


def check_series(name: str, levels: Sequence[bool], durations_us: Sequence[int], repeat: int) -> list[Step]:
    """The steps of a series command, within the bounds every timed output obeys; LimitError names the fix."""
    if not 1 <= len(levels) <= MAX_SERIES_STEPS:
        raise LimitError(f'{name}: a series of {len(levels)} steps; 1 to {MAX_SERIES_STEPS} are allowed (repeat a '
                         f'pattern with series_repeat)')
    if len(durations_us) != len(levels):
        raise LimitError(f'{name}: {len(levels)} series levels but {len(durations_us)} durations: give one '
                         f'duration per level')
    if not 1 <= repeat <= MAX_TRAIN_COUNT:
        raise LimitError(f'{name}: series_repeat {repeat}; 1 to {MAX_TRAIN_COUNT} are allowed')
    short = [us for us in durations_us if us < MIN_PHASE_US]
    if short:
        raise LimitError(f'{name}: a series step of {short[0]} us; each step lasts at least {MIN_PHASE_US} us')
    if len(levels) * repeat > 2 * MAX_TRAIN_COUNT:
        raise LimitError(f'{name}: {len(levels)} steps x {repeat} repeats; at most {2 * MAX_TRAIN_COUNT} steps '
                         f'per command')
    span = sum(durations_us) * repeat
    if span > MAX_SPAN_US:
        raise LimitError(f'{name}: the series lasts {span / 1e6:.0f} s; at most {MAX_SPAN_US / 1e6:.0f} s per '
                         f'command')
    return [(bool(level), int(us)) for level, us in zip(levels, durations_us, strict=True)]


def check_train(name: str, high_us: int, low_us: int, count: int) -> None:
    """Bounds every timed output obeys, valve or not (count, phase lengths, total span)."""
    if not 1 <= count <= MAX_TRAIN_COUNT:
        raise LimitError(f'{name}: train of {count} pulses; 1 to {MAX_TRAIN_COUNT} are allowed per command')
    if high_us < MIN_PHASE_US:
        raise LimitError(f'{name}: high time of {high_us} us; at least {MIN_PHASE_US} us')
    if count > 1 and low_us < MIN_PHASE_US:
        raise LimitError(f'{name}: low time of {low_us} us between pulses; at least {MIN_PHASE_US} us')
    span = count * high_us + (count - 1) * max(low_us, 0)
    if span > MAX_SPAN_US:
        raise LimitError(f'{name}: the train lasts {span / 1e6:.0f} s; at most {MAX_SPAN_US / 1e6:.0f} s per command')


@dataclass
class ValveLimit:
    """The planned high intervals of one valve and the opening rule above."""

    name: str
    max_open_us: int
    #: High intervals from the start of the current opening on (sorted, disjoint); older ones no longer matter.
    plan: list[Interval] = field(default_factory=list)

    def _past(self, now_us: int) -> list[Interval]:
        """What has happened by ``now_us`` (a new command cancels the rest of the plan)."""
        out = []
        for s, e in self.plan:
            if s >= now_us:
                break
            out.append((s, min(e, now_us)))
        return out

    def _openings(self, intervals: Sequence[Interval]) -> list[tuple[int, int, int]]:
        """(first start, last end, high time) of each opening."""
        out: list[tuple[int, int, int]] = []
        for s, e in intervals:
            if out and s - out[-1][1] < out[-1][2]:  # closed for less than it was open: the same opening
                first, _, high = out[-1]
                out[-1] = (first, e, high + (e - s))
            else:
                out.append((s, e, e - s))
        return out

    def open_so_far_us(self, now_us: int) -> int:
        """High time of the opening a command at ``now_us`` would extend (0: it would start a new one)."""
        past = self._past(now_us)
        if not past:
            return 0
        first, last, high = self._openings(past)[-1]
        return high if now_us - last < high else 0

    def closed_until_us(self, now_us: int) -> int:
        """When a new opening may start (``now_us`` if it may now)."""
        past = self._past(now_us)
        if not past:
            return now_us
        _, last, high = self._openings(past)[-1]
        return max(now_us, last + high)

    def allow(self, now_us: int, intervals: Sequence[Interval]) -> None:
        """Raise LimitError when ``intervals`` (a command at ``now_us``) would break the rule."""
        limit = self.max_open_us
        for _first, last, high in self._openings([*self._past(now_us), *intervals]):
            if high > limit and last > now_us:  # only openings the command takes part in
                so_far = self.open_so_far_us(now_us)
                held = f'; it is open {so_far / 1000:g} ms of this opening already' if so_far else ''
                raise LimitError(
                    f'{self.name}: this would keep the valve open {high / 1000:g} ms in one opening, over its '
                    f'max_open_ms of {limit / 1000:g} ms{held}. An opening ends when the valve has been closed as long '
                    f'as it was open: wait, shorten the pulses or lengthen the gaps')

    def remaining_us(self, now_us: int) -> int:
        """High time a command at ``now_us`` may still add to the current (or a new) opening."""
        return self.max_open_us - self.open_so_far_us(now_us)

    def commit(self, now_us: int, intervals: Sequence[Interval]) -> None:
        """The command ran: the plan is what happened plus it; openings over before the last past one are dropped
        (no later command can extend them), so the plan stays as short as one command."""
        past = self._past(now_us)
        openings = self._openings(past)
        if openings:
            past = [iv for iv in past if iv[0] >= openings[-1][0]]
        self.plan = [*past, *intervals]

    def close(self, now_us: int) -> None:
        """Driven low now (level low, all-low): nothing more is scheduled."""
        self.commit(now_us, [])
