"""TaskRunner: runs one task instance on a Clock and a Hardware (no ROS).

The pilot node owns the ROS side (a clock made of ROS timers, hardware made of topics); unit tests use
:mod:`autopilot_pilot.fakes`. Everything here runs on the caller's thread: the pilot calls it from one
executor callback group, so no locks are taken.

Life cycle and states (``runner.state``):

* ``idle`` until :meth:`TaskRunner.start` calls ``setup()`` and begins trial 1 (``start_trial()``, then
  ``entry`` of ``stages[0]``);
* ``running``: events go to the current stage; ``end_trial`` exits the stage, cancels every timer of the
  trial, calls ``on_trial`` and starts the next trial once the handler that ended it has returned (so
  code after ``end_trial`` in a handler never runs inside the next trial);
* ``pausing`` after :meth:`pause` while a trial runs: the trial finishes normally, then ``paused``:
  no trial, events are ignored; :meth:`resume` starts the next trial (or, while ``pausing``, just
  cancels the pause);
* ``error`` when task code raised: timers are cancelled, ``on_error(text)`` reports the task, the
  stage (or hook) and the exception, and nothing more is dispatched; ``stopped`` after :meth:`stop`.

Whenever no trial runs any more (``paused``, ``stopped``, ``error``), the task's LED and TTL outputs are
driven low and its sound stopped, so a stop while a task waits for a poke never leaves a light on.
Valves are left to close by themselves: they only ever open for a timed pulse the gpio node bounds, and
cutting a reward that is being given would give less than the trial recorded.

Timers are per trial: ``end_trial`` cancels them, ``goto`` does not (a timer set in one stage is
delivered to whatever stage is current when it fires, as in pyControl). Events that arrive while task
code is running (a fake or synchronous hardware calling back from ``hw.play``) are queued and delivered
after the running handler returns, so a handler is never re-entered.

The per-event path (``handle_gpio``: a dict lookup, one :class:`Event`, one bound-method call) is kept
free of anything else: it sits inside the closed-loop latency benchmark.
"""

from __future__ import annotations

import math
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from autopilot_tasks.task import Event, Hardware, Input, Output, Sound, Stream, Task, TaskError

__all__ = ['Clock', 'TaskRunner', 'TrialRecord', 'resolve_devices']


class Clock(Protocol):
    """Time and one-shot timers; the pilot's is made of ROS timers, tests use FakeClock."""

    def now_ns(self) -> int:
        """Current time, ns."""

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> Any:
        """Call ``fn()`` once after ``delay_s`` seconds; returns a handle for :meth:`cancel`."""

    def cancel(self, handle: Any) -> None:
        """Cancel a pending call (a no-op if it already ran)."""


@dataclass(slots=True)
class TrialRecord:
    """One finished trial: its number, field values (declaration order), times and stage entries."""

    number: int
    fields: dict[str, Any]
    started_ns: int
    ended_ns: int
    stage_log: list[tuple[str, int]] = field(default_factory=list)


def resolve_devices(task_cls: type[Task], overrides: Mapping[str, str]) -> dict[str, str]:
    """Every hardware role of ``task_cls`` -> its device: ``overrides`` (a device map) over the task's defaults.

    TaskError names a role the task does not have or an empty device; the pilot checks the rig against the
    result before the runner exists, and the runner uses the same map.
    """
    hardware = task_cls.hardware()
    for role, device in overrides.items():
        if role not in hardware:
            raise TaskError(f'{task_cls.__name__}: no hardware role {role!r} to map to device {device!r}; '
                            f'roles: {", ".join(hardware) or "(none)"}')
        if not isinstance(device, str) or not device:
            raise TaskError(f'{task_cls.__name__}: hardware role {role!r}: device must be a non-empty '
                            f'name, got {device!r}')
    return {role: overrides.get(role, decl.device) for role, decl in hardware.items()}


class _Timer:
    __slots__ = ('handle',)

    def __init__(self) -> None:
        self.handle: Any = None


class _Transition(Event):
    """A timed ``goto`` (``target`` a stage) or ``end_trial`` (``target`` None) that has come due; it acts only
    if the stage visit that set it is still current, and is never delivered to a stage method."""

    target: str | None
    visit: int


class TaskRunner:
    """Runs ``task_cls`` with ``params`` (validated here) on ``clock`` and ``hw``.

    ``on_trial(record)`` is called synchronously by ``end_trial``; ``on_stage(stage, t_ns)`` on every
    stage entry; ``on_error(text)`` once when task code fails; ``on_log(text)`` for ``self.log``.
    ``devices`` maps roles to device names, overriding the task's defaults (unknown roles are an error).
    ``seed`` seeds the task's ``self.random``.
    """

    def __init__(self, task_cls: type[Task], params: Mapping[str, object], clock: Clock, hw: Hardware, *,
                 seed: int, on_trial: Callable[[TrialRecord], None],
                 on_stage: Callable[[str, int], None] | None = None,
                 devices: Mapping[str, str] | None = None,
                 on_error: Callable[[str], None] | None = None,
                 on_log: Callable[[str], None] | None = None) -> None:
        if not task_cls.stages:
            raise TaskError(f'{task_cls.__name__}: has no stages; set stages = (first_stage, ...)')
        self.task_cls = task_cls
        self.clock = clock
        self.hw = hw
        self.on_trial = on_trial
        self.on_stage = on_stage
        self.on_error = on_error
        self.on_log = on_log
        self.error: TaskError | None = None
        self.devices = resolve_devices(task_cls, devices or {})
        # device -> (event when it goes to its active level, event on the other edge, active level)
        self._gpio: dict[str, tuple[str, str, bool]] = {}
        for role, decl in task_cls.hardware().items():
            if isinstance(decl, Input):
                self._gpio[self.devices[role]] = (f'{role}_in', f'{role}_out', decl.active_level)

        self._streams = {role for role, decl in task_cls.hardware().items() if isinstance(decl, Stream)}
        self.task = task_cls(params, seed=seed)
        self.task._runner = self
        self.task.hw = hw
        self._methods: dict[str, Callable[[Event], None]] = {s: getattr(self.task, s) for s in task_cls.stages}
        self._fields = task_cls.fields()
        self._pending_params: dict[str, Any] | None = None

        self.state = 'idle'
        self.stage: str | None = None
        self._fn: Callable[[Event], None] | None = None  # the current stage's method; None: no events
        self._in_trial = False
        self._exiting = False
        self._next_due = False
        self._start_paused = False
        self._setup_done = False
        self._busy = False
        self._where = ''
        self._queue: deque[Event] = deque()
        self._timers: dict[str, _Timer] = {}
        self._transition: _Timer | None = None  # the pending timed goto/end_trial of this stage visit
        self._visit = 0  # stage entries so far: a due transition of an earlier visit is stale
        self._started_ns = 0
        self._stage_log: list[tuple[str, int]] = []

    # ---- properties ---------------------------------------------------------------------------

    @property
    def trial_number(self) -> int:
        """Number of the running (or last) trial, 1-based; 0 before the first."""
        return self.task.trial_number

    @property
    def params(self) -> dict[str, Any]:
        """Parameter values of the running trial."""
        return dict(self.task._param_values)

    @property
    def pending_params(self) -> dict[str, Any] | None:
        """Values from update_params waiting for the next trial start, or None."""
        return None if self._pending_params is None else dict(self._pending_params)

    # ---- control ------------------------------------------------------------------------------

    def start(self) -> None:
        """Call ``setup()`` and begin trial 1 (or hold in ``paused`` if :meth:`pause` came first)."""
        if self.state != 'idle':
            raise TaskError(f'{self.task_cls.__name__}: start() in state {self.state!r}; a runner starts once')
        self.state = 'running'
        self._guarded(self._start)

    def _start(self) -> None:
        self._where = 'setup'
        self._setup_done = True
        self.task.setup()
        if self._start_paused:
            self.state = 'paused'
        else:
            self._begin_trial()

    def stop(self) -> None:
        """Cancel timers and call ``teardown()``; the running trial is abandoned (not reported)."""
        if self.state == 'stopped':
            return
        was_error = self.state == 'error'
        self._cancel_timers()
        self._fn = None
        self.stage = None
        self._in_trial = False
        self._queue.clear()
        self.state = 'stopped'
        if self._setup_done:
            self._where = 'teardown'
            try:
                self.task.teardown()
            except Exception as exc:  # noqa: BLE001 - reported, never raised into the caller's executor
                if not was_error:
                    self._report(exc)
                self.state = 'stopped'
        if not was_error:  # _fail did it already
            self.outputs_low()

    def outputs_low(self) -> None:
        """Drive the task's LED and TTL outputs low and stop its sound (never valves: see the module doc)."""
        for role, decl in self.task_cls.hardware().items():
            try:
                if isinstance(decl, Output) and decl.kind != 'valve':
                    self.hw.set(role, False)
                elif isinstance(decl, Sound):
                    self.hw.stop_sound()
            except Exception as exc:  # noqa: BLE001 - one output failing must not keep the others on
                if self.on_log is not None:
                    self.on_log(f'could not drive {role} low: {type(exc).__name__}: {exc}')
        try:
            self.task.outputs_reset()
        except Exception as exc:  # noqa: BLE001 - the outputs are low whatever the hook does
            if self.on_log is not None:
                self.on_log(f'{self.task_cls.__name__}.outputs_reset: {type(exc).__name__}: {exc}')

    def pause(self) -> None:
        """Finish the running trial, then hold until :meth:`resume`."""
        if self.state == 'running':
            self.state = 'pausing' if self._in_trial else 'paused'
            if self.state == 'paused':
                self.outputs_low()
        elif self.state == 'idle':
            self._start_paused = True

    def resume(self) -> None:
        """Leave a pause: start the next trial (or keep going if the trial had not finished yet)."""
        if self.state == 'pausing':
            self.state = 'running'
        elif self.state == 'paused':
            self.state = 'running'
            self._guarded(self._begin_trial)
        elif self.state == 'idle':
            self._start_paused = False

    def update_params(self, mapping: Mapping[str, object]) -> dict[str, Any]:
        """Validate ``mapping`` over the current values (TaskError if bad); applied at the next trial start."""
        base = self._pending_params if self._pending_params is not None else self.task._param_values
        self._pending_params = self.task_cls.validate({**base, **mapping})
        return dict(self._pending_params)

    # ---- input --------------------------------------------------------------------------------

    def handle_gpio(self, device: str, level: bool, tick_us: int | None, stamp_ns: int | None) -> None:
        """A device edge -> ``<role>_in`` (to the role's active level) or ``<role>_out``; other devices ignored."""
        spec = self._gpio.get(device)
        if spec is None:
            return
        self.handle_event(Event(spec[0] if bool(level) == spec[2] else spec[1], tick_us, stamp_ns, device,
                                bool(level)))

    def handle_stream(self, role: str, value: float, stamp_ns: int | None) -> None:
        """A finite sample of stream ``role`` -> its handle's value; a threshold crossing -> event
        ``<role>_above`` or ``<role>_below`` carrying ``data['value']`` and the sample's stamp."""
        if role not in self._streams:
            return
        crossing = getattr(self.task, role).update(value, stamp_ns)
        if crossing is not None:
            self.handle_event(Event(f'{role}_{crossing}', None, stamp_ns, self.devices[role], None, {'value': value}))

    def handle_onset(self, sound_id: str, play_id: int, stamp_ns: int | None, ok: bool = True) -> None:
        """A sound started (or failed: ``ok`` False) -> event ``sound_onset``."""
        self.handle_event(Event('sound_onset', None, stamp_ns, 'sound', None,
                                {'sound_id': sound_id, 'play_id': play_id, 'ok': ok}))

    def handle_event(self, event: Event) -> None:
        """Deliver ``event`` to the current stage (ignored when no trial runs)."""
        if self._busy:
            self._queue.append(event)
            return
        self._dispatch(event)
        while self._queue and not self._busy:
            self._dispatch(self._queue.popleft())

    def _dispatch(self, event: Event) -> None:
        fn = self._fn
        if fn is None:
            return
        self._busy = True
        try:
            if type(event) is _Transition:
                self._transit(event)
            else:
                fn(event)
            if self._next_due:
                self._advance()
        except Exception as exc:  # noqa: BLE001 - task errors are reported, never raised into the clock
            self._fail(exc, event)
        finally:
            self._busy = False

    def _guarded(self, fn: Callable[[], None]) -> None:
        """Run runner-internal work that calls task hooks: same error handling and queueing as events."""
        self._busy = True
        try:
            fn()
            if self._next_due:
                self._advance()
        except Exception as exc:  # noqa: BLE001
            self._fail(exc, None)
        finally:
            self._busy = False
        while self._queue and not self._busy:
            self._dispatch(self._queue.popleft())

    # ---- called by the task (through Task.goto etc.) ---------------------------------------------

    def now_ns(self) -> int:
        return self.clock.now_ns()

    def log(self, text: str) -> None:
        if self.on_log is not None:
            self.on_log(f'{self.task_cls.__name__}: {text}')

    def goto(self, stage: str, after_s: float | None = None) -> None:
        fn = self._methods.get(stage)
        if fn is None:
            raise TaskError(f"{self.task_cls.__name__}: goto('{stage}'): no such stage; "
                            f"stages: {', '.join(self.task_cls.stages)}")
        if self._exiting:
            raise TaskError(f"{self.task_cls.__name__}: goto('{stage}') in an 'exit' handler; "
                            'go to the next stage from the event that leaves this one')
        if not self._in_trial:
            raise TaskError(f"{self.task_cls.__name__}: goto('{stage}') after end_trial; the next trial starts "
                            f"in '{self.task_cls.stages[0]}' by itself")
        if after_s is not None:
            self._schedule(f"goto('{stage}', after_s={after_s!r})", after_s, stage)
            return
        if self.stage is not None:
            self._exit()
        self._enter(stage, fn)

    def _schedule(self, what: str, after_s: float, target: str | None) -> None:
        """A timed transition of this stage visit (replacing any earlier one of it)."""
        if self.stage is None:
            raise TaskError(f'{self.task_cls.__name__}: {what} in start_trial; a timed transition leaves a stage, '
                            'so set it in one')
        if isinstance(after_s, bool) or not isinstance(after_s, (int, float)) or not 0 <= after_s < math.inf:
            raise TaskError(f'{self.task_cls.__name__}: {what}: after_s must be a number of seconds >= 0')
        self._cancel_transition()
        timer = _Timer()
        self._transition = timer
        visit = self._visit

        def fire() -> None:
            if self._transition is timer:  # not cancelled meanwhile (ROS timers can race a cancel)
                self._transition = None
                event = _Transition('transition', None, self.clock.now_ns())
                event.target, event.visit = target, visit
                self.handle_event(event)

        timer.handle = self.clock.call_later(float(after_s), fire)

    def _transit(self, event: _Transition) -> None:
        if event.visit != self._visit or not self._in_trial:
            return
        if event.target is None:
            self.end_trial(None)
        else:
            self.goto(event.target)

    def _cancel_transition(self) -> None:
        if self._transition is not None:
            self.clock.cancel(self._transition.handle)
            self._transition = None

    def set_timer(self, name: str, seconds: float) -> None:
        if not self._in_trial:
            raise TaskError(f"{self.task_cls.__name__}: set_timer('{name}') outside a trial (after end_trial); "
                            'timers belong to a trial and end_trial cancels them')
        if not seconds >= 0:  # also catches NaN
            raise TaskError(f"{self.task_cls.__name__}: set_timer('{name}', {seconds!r}): seconds must be >= 0")
        timers = self._timers
        old = timers.get(name)
        if old is not None:
            self.clock.cancel(old.handle)
        timer = _Timer()
        timers[name] = timer

        def fire() -> None:
            # A cancel that races with a firing timer (ROS timers) must not deliver a stale event.
            if timers.get(name) is timer:
                del timers[name]
                self.handle_event(Event(name, None, self.clock.now_ns()))

        timer.handle = self.clock.call_later(float(seconds), fire)

    def cancel_timer(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            self.clock.cancel(timer.handle)

    def end_trial(self, fields: dict[str, Any] | None, after_s: float | None = None) -> None:
        """Record the trial with ``fields`` (None: the task's own field values) and start the next one; with
        ``after_s``, as a timed transition of the current stage visit."""
        name = self.task_cls.__name__
        if not self._in_trial:
            raise TaskError(f'{name}: end_trial called twice in trial {self.task.trial_number}')
        if self._exiting:
            raise TaskError(f"{name}: end_trial in an 'exit' handler; end the trial from an event instead")
        if after_s is not None:
            self._schedule(f'end_trial(after_s={after_s!r})', after_s, None)
            return
        if self.stage is not None:
            self._exit()  # first: what its 'exit' sets is part of the trial
        if fields is None:
            fields = self.task.trial_values()
        declared = self._fields
        if fields.keys() != declared.keys():
            unknown = [k for k in fields if k not in declared]
            missing = [k for k in declared if k not in fields]
            parts = []
            if missing:
                parts.append('missing ' + ', '.join(missing) + ' (set them in the trial, or give their Field a '
                             'default)')
            if unknown:
                parts.append('undeclared ' + ', '.join(unknown))
            raise TaskError(f'{name}: end_trial: {"; ".join(parts)} (declared fields: {", ".join(declared)})')
        record_fields: dict[str, Any] = {}
        for key, spec in declared.items():
            value = fields[key]
            if type(value) is not spec.type:
                problem = spec.check(value)
                if problem:
                    raise TaskError(f"{name}: trial field '{key}': {problem}")
                if spec.type is float:
                    value = float(value)  # an int for a float field: store what was declared
            record_fields[key] = value
        self._in_trial = False
        self._fn = None
        self.stage = None
        self._cancel_timers()
        record = TrialRecord(self.task.trial_number, record_fields, self._started_ns, self.clock.now_ns(),
                             self._stage_log)
        self.task.history.append(dict(record_fields))
        self._where = 'on_trial'
        self.on_trial(record)
        self._where = ''
        if self.state == 'pausing':
            self.state = 'paused'
            self.outputs_low()
        elif self.state == 'running':
            self._next_due = True
            if not self._busy:
                self._guarded(lambda: None)

    # ---- internals ----------------------------------------------------------------------------

    def _advance(self) -> None:
        # A task whose first stage ends the trial on entry would loop here; that is a task bug that
        # shows as a hung session, like an infinite loop in any handler.
        while self._next_due and self.state == 'running':
            self._next_due = False
            self._begin_trial()

    def _begin_trial(self) -> None:
        task = self.task
        if self._pending_params is not None:
            task._param_values = self._pending_params
            self._pending_params = None
        task.trial_number += 1
        self._started_ns = self.clock.now_ns()
        self._stage_log = []
        self._in_trial = True
        self._where = 'start_trial'
        task.new_trial()
        task.start_trial()
        if self._in_trial and self.stage is None:
            first = task.stages[0]
            self._enter(first, self._methods[first])

    def _enter(self, stage: str, fn: Callable[[Event], None]) -> None:
        now = self.clock.now_ns()
        self._visit += 1
        self.stage = stage
        self._fn = fn
        self._where = ''
        self._stage_log.append((stage, now))
        if self.on_stage is not None:
            self.on_stage(stage, now)
        fn(Event('entry', None, now))

    def _exit(self) -> None:
        self._cancel_transition()
        self._exiting = True
        try:
            self._fn(Event('exit', None, self.clock.now_ns()))  # type: ignore[misc]
        finally:
            self._exiting = False

    def _cancel_timers(self) -> None:
        self._cancel_transition()
        if self._timers:
            for timer in self._timers.values():
                self.clock.cancel(timer.handle)
            self._timers.clear()

    def _fail(self, exc: BaseException, event: Event | None) -> None:
        if self.state in ('error', 'stopped'):
            return
        where = self._where or (f"stage '{self.stage}'" if self.stage else 'between trials')
        if not self._where and event is not None:
            where += f", event '{event}'"
        self._where = where
        self._cancel_timers()
        self._fn = None
        self._in_trial = False
        self._next_due = False
        self._queue.clear()
        self.state = 'error'
        self._report(exc)
        self.outputs_low()

    def _report(self, exc: BaseException) -> None:
        name = self.task_cls.__name__
        if isinstance(exc, TaskError):
            detail = str(exc).removeprefix(f'{name}: ')
        else:
            detail = f'{type(exc).__name__}: {exc}'
            frames = traceback.extract_tb(exc.__traceback__)
            if frames:
                last = frames[-1]
                detail += f' (at {last.filename.rsplit("/", 1)[-1]}:{last.lineno})'
        text = f'{name}: {self._where}, trial {self.task.trial_number}: {detail}'
        self.error = TaskError(text)
        if self.on_error is not None:
            try:
                self.on_error(text)
            except Exception:  # noqa: BLE001 - the reporter failing must not raise into the clock either
                traceback.print_exc()
