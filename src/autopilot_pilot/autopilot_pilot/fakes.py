"""Fakes for driving tasks without ROS: a manual clock, recording hardware and a rig that pokes.

``FakeClock`` only moves when told (:meth:`FakeClock.advance`), firing due timers in time order, so a
test of a five-second timeout takes microseconds and never flakes. ``FakeHardware`` records every call
as a tuple (``('reward', 'left_valve', 5.0)``) and, given a task class, refuses roles the task did not
declare. ``FakeRig`` wires both to a :class:`~autopilot_pilot.runner.TaskRunner` and turns
``rig.poke('left')`` into the GPIO edges a real rig would send, with ticks from the clock::

    rig = FakeRig(FreeWater, {'port': 'left'})
    rig.start()
    rig.poke('left')
    rig.advance(2.0)
    assert rig.trials[0].fields['rewarded']
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from autopilot_pilot.outputs import check_color, series_command
from autopilot_pilot.runner import TaskRunner, TrialRecord
from autopilot_tasks.task import Input, Output, Sound, Stream, Task, TaskError

__all__ = ['FakeClock', 'FakeHardware', 'FakeRig']


class FakeClock:
    """A clock that only moves on :meth:`advance`; ``call_later`` handles are ints."""

    def __init__(self, start_ns: int = 0) -> None:
        self._now = int(start_ns)
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = itertools.count(1)
        self._cancelled: set[int] = set()

    def now_ns(self) -> int:
        return self._now

    @property
    def now_s(self) -> float:
        return self._now / 1e9

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> int:
        handle = next(self._seq)
        heapq.heappush(self._heap, (self._now + max(0, round(delay_s * 1e9)), handle, fn))
        return handle

    def cancel(self, handle: Any) -> None:
        if any(h == handle for _, h, _ in self._heap):
            self._cancelled.add(handle)

    def pending(self) -> int:
        """Number of calls waiting."""
        return sum(1 for _, h, _ in self._heap if h not in self._cancelled)

    def next_due_ns(self) -> int | None:
        """When the next pending call is due, or None."""
        self._drop_cancelled()
        return self._heap[0][0] if self._heap else None

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, calling every due call in time order (ties: first set, first
        called), including ones set by those calls that fall due within the same interval."""
        if seconds < 0:
            raise ValueError(f'FakeClock.advance({seconds}): time does not go backwards')
        target = self._now + round(seconds * 1e9)
        while True:
            self._drop_cancelled()
            if not self._heap or self._heap[0][0] > target:
                break
            due, _, fn = heapq.heappop(self._heap)
            self._now = due
            fn()
        self._now = target

    def _drop_cancelled(self) -> None:
        heap = self._heap
        while heap and heap[0][1] in self._cancelled:
            self._cancelled.discard(heapq.heappop(heap)[1])


class FakeHardware:
    """Records every call as a tuple in ``calls`` (and the clock time of each in ``times``).

    Tuples: ``('reward', role, volume_ul)``, ``('pulse', role, ms)``, ``('set', role, level)``,
    ``('pwm', role, duty, frequency_hz)``, ``('color', role, color)``, ``('series', role, levels, durations_ms,
    repeat, color)``, ``('load_sound', sound_id, spec)``, ``('play', sound_id, play_id)``, ``('stop_sound',)``. ``play`` returns play ids 1, 2, 3, ...

    ``task``: check calls against its declarations (reward needs a valve Output, play a loaded sound and
    a Sound role); a wrong call raises TaskError, as the real pilot refuses it. ``on_onset``
    (``fn(sound_id, play_id, stamp_ns, ok)``, e.g. ``runner.handle_onset``): deliver each play's onset
    ``onset_latency_s`` later through ``clock`` (at once without a clock).
    """

    def __init__(self, task: type[Task] | None = None, *, clock: FakeClock | None = None,
                 on_onset: Callable[[str, int, int | None, bool], None] | None = None,
                 onset_latency_s: float = 0.0) -> None:
        self.task = task
        self.clock = clock
        self.on_onset = on_onset
        self.onset_latency_s = onset_latency_s
        self.calls: list[tuple] = []
        self.times: list[int | None] = []
        self.sounds: dict[str, dict[str, Any]] = {}
        self.levels: dict[str, bool] = {}
        self._play_ids = itertools.count(1)
        self._roles = task.hardware() if task is not None else None

    # -- the Hardware protocol --

    def reward(self, role: str, volume_ul: float) -> None:
        self._check(role, 'reward', valve=True)
        self._record(('reward', role, volume_ul))

    def pulse(self, role: str, ms: float) -> None:
        self._check(role, 'pulse')
        self._record(('pulse', role, ms))

    def set(self, role: str, level: bool) -> None:
        self._check(role, 'set')
        self.levels[role] = bool(level)
        self._record(('set', role, level))

    def pwm(self, role: str, duty: float, frequency_hz: float = 0) -> None:
        self._check(role, 'pwm')
        self._record(('pwm', role, duty, frequency_hz))

    def color(self, role: str, color: str) -> None:
        self._check(role, 'color', rgb=True)
        self._record(('color', role, check_color(role, color)))

    def series(self, role: str, levels: Sequence[bool | int], durations_ms: Sequence[float], repeat: int = 1,
               color: str = '') -> None:
        self._check(role, 'series')
        steps, _ = series_command(role, levels, durations_ms, repeat)
        if color:
            self._check(role, 'series', rgb=True)
            check_color(role, color)
        self._record(('series', role, steps, list(durations_ms), repeat, color))

    def load_sound(self, sound_id: str, **spec: Any) -> None:
        self._check_sound('load_sound')
        self.sounds[sound_id] = dict(spec)
        self._record(('load_sound', sound_id, dict(spec)))

    def play(self, sound_id: str) -> int:
        self._check_sound('play')
        if self._roles is not None and sound_id not in self.sounds:
            raise TaskError(f'play({sound_id!r}): sound not loaded; loaded: {", ".join(self.sounds) or "(none)"}')
        play_id = next(self._play_ids)
        self._record(('play', sound_id, play_id))
        if self.on_onset is not None:
            on_onset = self.on_onset
            clock = self.clock
            if clock is None:
                on_onset(sound_id, play_id, None, True)
            else:
                clock.call_later(self.onset_latency_s, lambda: on_onset(sound_id, play_id, clock.now_ns(), True))
        return play_id

    def stop_sound(self, play_id: int | None = None) -> None:
        self._check_sound('stop_sound')
        self._record(('stop_sound',) if play_id is None else ('stop_sound', play_id))

    # -- helpers for tests --

    def of(self, kind: str) -> list[tuple]:
        """The recorded calls of one kind, e.g. ``hw.of('reward')``."""
        return [c for c in self.calls if c[0] == kind]

    def clear(self) -> None:
        self.calls.clear()
        self.times.clear()

    def _record(self, call: tuple) -> None:
        self.calls.append(call)
        self.times.append(self.clock.now_ns() if self.clock is not None else None)

    def _check(self, role: str, what: str, valve: bool = False, rgb: bool = False) -> None:
        if self._roles is None:
            return
        decl = self._roles.get(role)
        if not isinstance(decl, Output):
            outputs = [r for r, d in self._roles.items() if isinstance(d, Output)]
            kind = 'an input' if isinstance(decl, Input) else 'not a declared role'
            raise TaskError(f'{what}({role!r}): {kind}; outputs: {", ".join(outputs) or "(none)"}')
        if valve and decl.kind != 'valve':
            raise TaskError(f"reward({role!r}): a {decl.kind} output, reward needs Output(..., kind='valve')")
        if rgb and decl.kind != 'led_rgb':
            raise TaskError(f"{what}({role!r}): a {decl.kind} output; colours need Output(..., kind='led_rgb')")

    def _check_sound(self, what: str) -> None:
        if self._roles is not None and not any(isinstance(d, Sound) for d in self._roles.values()):
            raise TaskError(f'{what}: the task declares no Sound() role')


class FakeRig:
    """A TaskRunner on a FakeClock and FakeHardware, with pokes by role.

    Ticks are the clock's time in µs plus ``tick_offset_us`` (hardware ticks do not share the ROS
    clock's origin); ``poke(..., tick_us=...)`` and ``edge(...)`` set them explicitly. Onsets come back
    ``onset_latency_s`` after each play.
    """

    def __init__(self, task_cls: type[Task], params: Mapping[str, object] | None = None, *, seed: int = 1,
                 devices: Mapping[str, str] | None = None, onset_latency_s: float = 0.002,
                 tick_offset_us: int = 1_000_000) -> None:
        self.clock = FakeClock()
        self.trials: list[TrialRecord] = []
        self.errors: list[str] = []
        self.stages: list[tuple[str, int]] = []
        self.logs: list[str] = []
        self.hw = FakeHardware(task_cls, clock=self.clock, onset_latency_s=onset_latency_s)
        self.runner = TaskRunner(task_cls, params or {}, self.clock, self.hw, seed=seed,
                                 on_trial=self.trials.append, on_error=self.errors.append,
                                 on_stage=lambda stage, t: self.stages.append((stage, t)),
                                 on_log=self.logs.append, devices=devices)
        self.hw.on_onset = self.runner.handle_onset
        self.tick_offset_us = tick_offset_us
        self._levels: dict[str, bool] = {}

    @property
    def task(self) -> Task:
        return self.runner.task

    @property
    def stage(self) -> str | None:
        return self.runner.stage

    def start(self) -> None:
        self.runner.start()

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def tick_us(self) -> int:
        """The hardware tick now."""
        return self.clock.now_ns() // 1000 + self.tick_offset_us

    def device(self, role: str) -> str:
        return self.runner.devices[role]

    def edge(self, role: str, active: bool, tick_us: int | None = None, stamp_ns: int | None = None) -> None:
        """Input ``role`` goes to its active level (``active``) or away from it, as a GPIO event."""
        decl = self.runner.task_cls.hardware().get(role)
        if not isinstance(decl, Input):
            raise TaskError(f'{role!r} is not an Input role of {self.runner.task_cls.__name__}')
        level = decl.active_level if active else not decl.active_level
        self.runner.handle_gpio(self.device(role), level, self.tick_us() if tick_us is None else tick_us,
                                self.clock.now_ns() if stamp_ns is None else stamp_ns)

    def poke(self, role: str, hold_s: float = 0.1, tick_us: int | None = None) -> None:
        """A nose poke: ``<role>_in`` now, ``<role>_out`` after ``hold_s`` (the clock advances by it)."""
        self.edge(role, True, tick_us)
        if hold_s is not None:
            self.advance(hold_s)
            self.edge(role, False, None if tick_us is None else tick_us + round(hold_s * 1e6))

    def stream(self, role: str, value: float, stamp_ns: int | None = None) -> None:
        """One sample of stream ``role`` (stamped now unless ``stamp_ns``)."""
        if not isinstance(self.runner.task_cls.hardware().get(role), Stream):
            raise TaskError(f'{role!r} is not a Stream role of {self.runner.task_cls.__name__}')
        self.runner.handle_stream(role, float(value), self.clock.now_ns() if stamp_ns is None else stamp_ns)

    def flow(self, role: str, value: float, seconds: float, period_s: float = 0.02) -> None:
        """Samples of ``value`` every ``period_s`` for ``seconds``: the clock advances, a sample ends each period."""
        for _ in range(max(round(seconds / period_s), 1)):
            self.advance(period_s)
            self.stream(role, value)
