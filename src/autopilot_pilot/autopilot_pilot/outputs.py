"""A task's colour and series commands, checked by the gpio node's own rules before they leave the pilot.

The gpio node checks every command again (it is the authority, and other clients reach it too); checking
here as well makes a task's mistake a TaskError in the task, where its author sees it, and not only a
refusal in the gpio node's log. The real pilot (:mod:`.hardware`) and the fake rig (:mod:`.fakes`) both
call these, so a task tested on the fake rig fails the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from autopilot_hardware.gpio.colors import ColorError, parse_color
from autopilot_hardware.gpio.limits import MAX_SERIES_STEPS, LimitError, check_series
from autopilot_tasks.task import TaskError

#: Longest step a DigitalOutput can carry: series_us is uint32 microseconds.
MAX_STEP_MS = (2**32 - 1) / 1000


def check_color(role: str, color: str) -> str:
    """``color`` if an RGB LED can show it, else a TaskError naming the choices."""
    try:
        parse_color(color)
    except ColorError as exc:
        raise TaskError(f'{role}: {exc}') from None
    return color


def series_command(role: str, levels: Sequence[bool | int], durations_ms: Sequence[float],
                   repeat: int) -> tuple[list[bool], list[int]]:
    """(levels, durations in us) of a series, within the gpio node's bounds; TaskError otherwise."""
    if isinstance(repeat, bool) or not isinstance(repeat, int):
        raise TaskError(f'{role}.series(): repeat {repeat!r} is not a whole number')
    try:
        levels, durations_ms = list(levels), list(durations_ms)
    except TypeError:
        raise TaskError(f'{role}.series(): give levels and durations_ms as lists') from None
    out_levels: list[bool] = []
    for level in levels[:MAX_SERIES_STEPS + 1]:  # check_series refuses a longer list by its length
        if level not in (0, 1):  # True/False and 0/1; 0.5 or 'on' is a mistake
            raise TaskError(f'{role}.series(): level {level!r} is not 0/1 or False/True')
        out_levels.append(bool(level))
    out_us: list[int] = []
    for ms in durations_ms[:MAX_SERIES_STEPS + 1]:
        number = isinstance(ms, (int, float)) and not isinstance(ms, bool)
        if not number or not math.isfinite(ms) or not 0 < ms <= MAX_STEP_MS:
            raise TaskError(f'{role}.series(): duration {ms!r} ms is not a positive number of milliseconds')
        out_us.append(round(ms * 1000))
    try:
        check_series(role, out_levels + [False] * (len(levels) - len(out_levels)),
                     out_us + [0] * (len(durations_ms) - len(out_us)), repeat)
    except LimitError as exc:
        raise TaskError(f'{role}.series(): {exc}') from None
    return out_levels, out_us
