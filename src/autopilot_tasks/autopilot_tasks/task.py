"""The task API: what a task file imports (no ROS).

A task is a :class:`Task` subclass in one short file. It declares, as class attributes,

* parameters (:class:`Param`: typed by the default, with unit, description, range or choices),
* hardware by role (:class:`Input`, :class:`Output`, :class:`Sound`, :class:`Stream`; each role names a
  default device that the rig configuration may override),
* trial data (:class:`Field`: typed columns, in declaration order),
* ``stages``: the names of its stage methods; the first one starts every trial.

Stage methods take one :class:`Event` (a ``str``, so ``event == 'left_in'`` reads naturally) and call
``self.goto``, ``self.set_timer``, ``self.end_trial`` and ``self.hw``. A :class:`~autopilot_pilot.runner.TaskRunner`
binds an instance to a clock and hardware; the declarations alone (``Task.params()``, ``Task.hardware()``,
``Task.fields()``, ``Task.validate()``) are what the protocol parser, the pilot node and ``autopilot task show``
read. Malformed declarations are a ``TypeError`` at class creation, so a broken task file fails on import
with the task and attribute named, not in the middle of a session.

Two additions to the contract in docs/pilot-internals.md, both optional for a task:

* ``score_excludes``: bool fields that take a trial out of scoring when True (2AFC's correction
  trials). :meth:`Task.score` applies ``score_field`` and ``score_excludes`` to one trial's fields and
  is what accuracy (graduation, "fraction correct") should count: True/False, or None = not scored.
* :meth:`Task.check_params`: rules between parameters (2AFC's two tones must differ), applied by
  :meth:`Task.validate` after the per-parameter checks, so protocols fail at load time too.

And ``plot``: the live plot the Terminal draws (:mod:`autopilot_tasks.plot`), checked against the fields
at class creation; :meth:`Task.plot_spec` is it, or the default built from the fields.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

# The plot elements are part of the task API: a task file imports everything from here (tests/test_house.py).
from autopilot_tasks.plot import Line, Plot, Points, Psychometric, RollingMean, Shade, TrialTimes, default_plot

# So are the stimulus sets and the manager that draws from them.
from autopilot_tasks.stimuli import BiasCorrection, Draw, Stimulus, StimulusManager, StimulusSet

__all__ = [
    'Line', 'Plot', 'Points', 'Psychometric', 'RollingMean', 'Shade', 'TrialTimes',
    'BiasCorrection', 'Draw', 'Stimulus', 'StimulusManager', 'StimulusSet',
    'Event', 'Field', 'Hardware', 'Input', 'Output', 'OutputHandle', 'Param', 'Sound', 'SoundHandle', 'Stimuli',
    'Stream', 'StreamHandle', 'Task',
    'TaskError', 'UNSET', 'UnsetError', 'Var', 'ms_between', 'number_list', 'type_name',
]

_TYPES = (bool, int, float, str)
_TYPE_NAMES = {bool: 'bool', int: 'int', float: 'float', str: 'str'}


class TaskError(Exception):
    """A task that cannot be used as given: bad parameters or trial data, unknown task, error in task code."""


def type_name(tp: type) -> str:
    """'bool', 'int', 'float' or 'str' (the names the API and its messages use)."""
    return _TYPE_NAMES.get(tp, getattr(tp, '__name__', str(tp)))


def _type_of(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _fits(tp: type, value: Any) -> bool:
    """``value`` has type ``tp``; an int is a float, a bool is never an int or float."""
    if type(value) is tp:
        return True
    if tp is float:
        return type(value) is int
    return tp is str and isinstance(value, str)


class Param:
    """A task parameter. Its type is the default's (bool, int, float, str); an int is accepted for a float.

    On a task instance the attribute is this session's value (read-only: change it through the runner's
    ``update_params``, which applies at the next trial start).
    """

    __slots__ = ('default', 'unit', 'description', 'min', 'max', 'choices', 'type', 'name')

    def __init__(self, default: bool | int | float | str, unit: str = '', description: str = '', *,
                 min: float | None = None, max: float | None = None,
                 choices: tuple | list | None = None) -> None:
        if type(default) not in _TYPES:
            raise TypeError(f'Param default must be bool, int, float or str, got {default!r}')
        self.type: type = type(default)
        self.default = default
        self.unit = unit
        self.description = description
        self.min = min
        self.max = max
        self.choices = tuple(choices) if choices is not None else None
        self.name = ''
        if (min is not None or max is not None) and self.type not in (int, float):
            raise TypeError(f'Param {default!r}: min/max need an int or float parameter')
        if self.choices is not None and not all(_fits(self.type, c) for c in self.choices):
            raise TypeError(f'Param choices {self.choices!r} do not all have type {type_name(self.type)}')

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return instance._param_values[self.name]

    def __set__(self, instance: Any, value: Any) -> None:
        raise AttributeError(f"parameter '{self.name}' is read-only in a task; "
                             'change it with update_params (applied at the next trial)')

    def allowed(self) -> str:
        """What values are allowed, as text: ``float in [0.5, 50.0] uL``, ``str one of 'a', 'b'``."""
        parts = [type_name(self.type)]
        if self.min is not None or self.max is not None:
            lo = '-inf' if self.min is None else self.min
            hi = 'inf' if self.max is None else self.max
            parts.append(f'in [{lo}, {hi}]')
        if self.choices is not None:
            parts.append('one of ' + ', '.join(repr(c) for c in self.choices))
        if self.unit:
            parts.append(self.unit)
        return ' '.join(parts)

    def check(self, value: Any) -> str | None:
        """Why ``value`` is not allowed, or None when it is."""
        if not _fits(self.type, value):
            return f'{value!r} has type {_type_of(value)}, expected {self.allowed()}'
        if self.type in (int, float):
            if self.type is float and math.isnan(value):
                return f'NaN is not allowed, expected {self.allowed()}'
            if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
                return f'{value!r} is out of range, allowed {self.allowed()}'
        if self.choices is not None and value not in self.choices:
            return f'{value!r} is not allowed, expected {self.allowed()}'
        return None

    def coerce(self, value: Any) -> Any:
        """The value as stored: an int given for a float parameter becomes a float."""
        if self.type is float and type(value) is int:
            return float(value)
        return value

    def __repr__(self) -> str:
        return f'Param({self.default!r}, {self.unit!r}, {self.description!r})'


class Stimuli(Param):
    """A stimulus set as a parameter (:class:`~autopilot_tasks.stimuli.StimulusSet`'s mapping: groups of stimuli,
    proportions). A protocol gives it as a YAML mapping, a ROS parameter as its JSON text; either is checked
    by ``StimulusSet.from_dict`` and stored as the set's canonical mapping (JSON-safe, so it is recorded with
    the session like any value). In a method, ``StimulusSet.from_dict(self.<name>)`` is the set."""

    __slots__ = ()

    def __init__(self, default: Mapping[str, Any], description: str = '') -> None:
        try:
            canonical = StimulusSet.from_dict(default).to_dict()
        except ValueError as exc:
            raise TypeError(f'Stimuli default: {exc}') from None
        self.type = dict
        self.default = canonical  # type: ignore[assignment]  # the one non-scalar Param
        self.unit = ''
        self.description = description
        self.min = self.max = None
        self.choices = None
        self.name = ''

    def allowed(self) -> str:
        return 'a stimulus set: {groups: {group: [{id: ..., <parameters>}, ...]}, proportions: {group: p}}'

    @staticmethod
    def _parse(value: Any) -> Any:
        if isinstance(value, str):  # a ROS parameter carries it as JSON text
            try:
                return json.loads(value)
            except (ValueError, RecursionError) as exc:  # RecursionError: '[' nested beyond the interpreter's limit
                raise ValueError(f'not JSON ({type(exc).__name__}: {str(exc)[:80]})') from None
        return value

    def check(self, value: Any) -> str | None:
        try:
            StimulusSet.from_dict(self._parse(value))
        except ValueError as exc:
            return f'{str(value)[:80]!r} is not {self.allowed()}: {exc}'
        return None

    def coerce(self, value: Any) -> Any:
        return StimulusSet.from_dict(self._parse(value)).to_dict()

    def describe(self) -> str:
        """The default set in a few words: ``2 sounds in go, nogo``."""
        groups = StimulusSet.from_dict(self.default).groups
        return f'{sum(len(items) for items in groups.values())} sounds in {", ".join(groups)}'

    def __repr__(self) -> str:
        return f'Stimuli({self.default!r}, {self.description!r})'


class _Role:
    """Base of hardware declarations; the role is the attribute name."""

    __slots__ = ('description', 'name')

    def __init__(self, description: str = '') -> None:
        self.description = description
        self.name = ''

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        handle = self._handle(instance)
        instance.__dict__[self.name] = handle  # made once per task instance; later reads skip this
        return handle

    def _handle(self, task: Task) -> Any:
        return self


class Input(_Role):
    """A digital input by role: events ``<role>_in`` on the edge to ``active_level``, ``<role>_out`` on the other.

    Pull-up nose pokes read low when broken, so ``active_level=False`` (the default) means "in" is the
    falling edge.
    """

    __slots__ = ('device', 'active_level')

    def __init__(self, device: str, active_level: bool = False, description: str = '') -> None:
        super().__init__(description)
        self.device = device
        self.active_level = bool(active_level)

    def __repr__(self) -> str:
        return f'Input({self.device!r}, active_level={self.active_level})'


class Output(_Role):
    """A digital output by role: ``kind`` is 'ttl', 'valve' (``reward`` in uL), 'led' (``pwm``) or 'led_rgb'
    (``on(color)``). The rig's device must be of the same kind when either is a valve or an RGB LED."""

    __slots__ = ('device', 'kind')
    KINDS: ClassVar[tuple[str, ...]] = ('ttl', 'valve', 'led', 'led_rgb')

    def __init__(self, device: str, kind: str = 'ttl', description: str = '') -> None:
        if kind not in self.KINDS:
            raise TypeError(f'Output {device!r}: kind {kind!r} is not one of {", ".join(self.KINDS)}')
        super().__init__(description)
        self.device = device
        self.kind = kind

    def _handle(self, task: Task) -> OutputHandle:
        return OutputHandle(task, self.name, self.kind)

    def __repr__(self) -> str:
        return f'Output({self.device!r}, kind={self.kind!r})'


class Sound(_Role):
    """The sound server, as a role: ``self.speaker.load(...)``, ``.play(sound_id)``, ``.stop()``.

    ``channel`` makes it one speaker of a stereo (or more) output: ``left_speaker = Sound(channel=1)``,
    ``right_speaker = Sound(channel=2)``; what it loads plays on that output channel only. 0: every channel.
    """

    __slots__ = ('channel',)
    device = 'sound'

    def __init__(self, description: str = '', *, channel: int = 0) -> None:
        if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel <= 32:
            raise TypeError(f'Sound channel {channel!r}: 0 (every channel) or an output channel 1-32')
        super().__init__(description)
        self.channel = channel

    def _handle(self, task: Task) -> SoundHandle:
        return SoundHandle(task, self.channel)

    def __repr__(self) -> str:
        return 'Sound()' if not self.channel else f'Sound(channel={self.channel})'


class Stream(_Role):
    """A continuous value on a topic, by role (a running wheel's speed, a lick sensor's level, on this host or a
    child's): ``self.wheel.value`` is the latest sample; after ``self.wheel.threshold(x)`` the events
    ``<role>_above`` (the value rose to ``x`` or past it) and ``<role>_below`` (it fell under ``x`` again).

    ``topic`` is relative to the pilot's hardware namespace (where a child host publishes; the pilot's
    ``device_map`` may name another, absolute topic), ``field`` the message field read (dotted for nested
    ones: ``'twist.linear.x'``), ``msg_type`` the topic's type. A stream silent for ``timeout_s`` ends the
    session with an error: a child that stopped must not turn every later trial into a miss. Samples outside
    ``limits`` (lo, hi), NaN and infinities never reach the task: they are counted and told once.
    """

    __slots__ = ('device', 'field', 'msg_type', 'unit', 'timeout_s', 'limits')

    def __init__(self, topic: str, field: str, msg_type: str, *, unit: str = '', timeout_s: float = 1.0,
                 limits: tuple[float, float] = (-math.inf, math.inf), description: str = '') -> None:
        for what, value in (('topic', topic), ('field', field), ('msg_type', msg_type)):
            if not isinstance(value, str) or not value.strip():
                raise TypeError(f'Stream {what} must be a non-empty string, got {value!r}')
        if msg_type.count('/') != 2:
            raise TypeError(f"Stream msg_type {msg_type!r}: write it as 'package/msg/Type'")
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0.05 <= timeout_s <= 60:
            raise TypeError(f'Stream timeout_s {timeout_s!r}: a number of seconds in [0.05, 60]')
        try:
            lo, hi = (float(x) for x in limits)
        except (TypeError, ValueError):
            raise TypeError(f'Stream limits {limits!r}: a pair (lo, hi) of numbers') from None
        if not lo < hi:
            raise TypeError(f'Stream limits {limits!r}: lo must be below hi')
        super().__init__(description)
        self.device, self.field, self.msg_type = topic, field, msg_type
        self.unit, self.timeout_s, self.limits = unit, float(timeout_s), (lo, hi)

    def _handle(self, task: Task) -> StreamHandle:
        return StreamHandle(self.name)

    def __repr__(self) -> str:
        return f'Stream({self.device!r}, {self.field!r}, {self.msg_type!r})'


class StreamHandle:
    """A stream role on a running task (``self.wheel``): its latest value, and threshold crossings as events.

    Crossings only: arming a threshold while the value is already past it gives no event until the value
    crosses again; read :attr:`value` for where it is now. With ``hysteresis`` h, ``_below`` comes when the
    value falls under ``x - h`` (a noisy signal near ``x`` does not chatter).
    """

    __slots__ = ('role', 'value', 'stamp_ns', 'samples', 'level', 'hysteresis', '_above')

    def __init__(self, role: str) -> None:
        self.role = role
        self.value = math.nan          # latest finite sample; NaN before the first
        self.stamp_ns: int | None = None
        self.samples = 0
        self.level: float | None = None
        self.hysteresis = 0.0
        self._above: bool | None = None

    def threshold(self, level: float | None, hysteresis: float = 0.0) -> None:
        """Deliver ``<role>_above`` / ``<role>_below`` on crossings of ``level`` from now on (None: no more)."""
        for what, x in (('level', level), ('hysteresis', hysteresis)):
            if x is not None and (isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x)):
                raise TaskError(f'{self.role}.threshold({what}={x!r}): a finite number')
        if hysteresis < 0:
            raise TaskError(f'{self.role}.threshold(hysteresis={hysteresis!r}): must be >= 0')
        self.hysteresis = float(hysteresis)
        if level is None:
            self.level = self._above = None
            return
        self.level = float(level)
        self._above = None if math.isnan(self.value) else self.value >= self.level

    def update(self, value: float, stamp_ns: int | None) -> str | None:
        """A new sample (the runner's call); 'above' or 'below' on a crossing, else None."""
        self.value, self.stamp_ns = value, stamp_ns
        self.samples += 1
        level = self.level
        if level is None:
            return None
        was = self._above
        if value >= level:
            self._above = True
        elif value < level - self.hysteresis:
            self._above = False
        if was is None or was == self._above:
            return None
        return 'above' if self._above else 'below'

    def __repr__(self) -> str:
        return f'<stream {self.role} = {self.value:g}>'


class OutputHandle:
    """An output role on a running task (``self.left_valve``, ``self.center_led``): what it can do, by kind.

    A valve only ever opens for a bounded time (:meth:`reward`, :meth:`pulse`); ``on()`` is refused for it so no
    task can leave water running.
    """

    __slots__ = ('_task', 'role', 'kind')

    def __init__(self, task: Task, role: str, kind: str) -> None:
        self._task, self.role, self.kind = task, role, kind

    def on(self, color: str = '') -> None:
        """Drive the output to its active level (an LED lights); an RGB LED shows ``color`` (a name such as
        'green', or '#rrggbb'; white when not given)."""
        if self.kind == 'valve':
            raise TaskError(f"{self.role}.on(): '{self.role}' is a valve; open it with reward(ul) or pulse(ms), "
                            'which close it by themselves')
        if self.kind == 'led_rgb':
            self._task.hw.color(self.role, color or 'white')
            return
        self._check_color('on', color)
        self._task.hw.set(self.role, True)

    def off(self) -> None:
        """Drive the output to its inactive level."""
        self._task.hw.set(self.role, False)

    def pulse(self, ms: float, color: str = '') -> None:
        """Active for ``ms`` milliseconds, then inactive (timed by the gpio node, not the task); an RGB LED
        shows ``color`` meanwhile."""
        if color:
            self.series([True], [ms], color=color)
            return
        self._task.hw.pulse(self.role, ms)

    def series(self, levels: Sequence[bool | int], durations_ms: Sequence[float], repeat: int = 1,
               color: str = '') -> None:
        """Each level for its duration, in order, ``repeat`` times, then inactive (a flashing cue:
        ``series([1, 0], [100, 100], repeat=5)``). Timed by the gpio node; a valve's openings count against
        its max_open_ms like any other. An RGB LED shows ``color`` in its active steps."""
        self._check_color('series', color)
        self._task.hw.series(self.role, levels, durations_ms, repeat, color)

    def _check_color(self, what: str, color: str) -> None:
        if color and self.kind != 'led_rgb':
            raise TaskError(f'{self.role}.{what}(color={color!r}): {self.role!r} is a {self.kind} output; colours '
                            "are for Output(..., kind='led_rgb')")

    def pwm(self, duty: float, frequency_hz: float = 0) -> None:
        """PWM at ``duty`` in [0, 1] (LED brightness); frequency 0: the device's default. An RGB LED is
        dimmed by its colour instead: ``on('#404040')``."""
        if self.kind == 'led_rgb':
            raise TaskError(f"{self.role}.pwm(): an RGB LED is dimmed by its colour, e.g. on('#404040')")
        self._task.hw.pwm(self.role, duty, frequency_hz)

    def reward(self, volume_ul: float) -> None:
        """Give ``volume_ul`` of water: open the valve for its calibrated time."""
        if self.kind != 'valve':
            raise TaskError(f"{self.role}.reward(): '{self.role}' is a {self.kind} output, not a valve")
        self._task.hw.reward(self.role, volume_ul)

    def __repr__(self) -> str:
        return f'<{self.kind} {self.role}>'


class SoundHandle:
    """The task's sound role on a running task (``self.speaker``)."""

    __slots__ = ('_task', 'channel')

    def __init__(self, task: Task, channel: int = 0) -> None:
        self._task, self.channel = task, channel

    def load(self, sound_id: str, **spec: Any) -> None:
        """Prepare a sound under ``sound_id`` (kind='tone'|'noise'|..., see docs/tasks.md); do it in setup. A
        speaker role with a channel loads it for that channel (a ``channel`` given here must be the same)."""
        if self.channel:
            given = spec.setdefault('channel', self.channel)
            if given != self.channel:
                raise TaskError(f'load({sound_id!r}, channel={given!r}) on a speaker of channel {self.channel}')
        self._task.hw.load_sound(sound_id, **spec)

    def play(self, sound_id: str) -> int:
        """Play a loaded sound; its onset comes back as event ``sound_onset`` with this play id."""
        return self._task.hw.play(sound_id)

    def stop(self, play_id: int | None = None) -> None:
        """Stop whatever is playing, or only the play ``play_id`` (what :meth:`play` returned); others go on."""
        self._task.hw.stop_sound(play_id)

    def __repr__(self) -> str:
        return '<sound>' if not self.channel else f'<sound channel {self.channel}>'


class _Unset:
    """No default: the value must be set in every trial."""

    def __repr__(self) -> str:
        return 'UNSET'


UNSET: Any = _Unset()


class UnsetError(TaskError, AttributeError):
    """A trial field read before this trial gave it a value (an AttributeError too, so ``hasattr`` works)."""


class Field:
    """A column of trial data: ``type`` in bool, int, float, str; ``unit`` and ``description`` for readers.

    On a task instance the attribute is this trial's value: each trial starts with ``default`` (or unset
    without one), an assignment is type-checked at once, and :meth:`Task.end_trial` records every field.
    """

    __slots__ = ('type', 'unit', 'description', 'default', 'name')

    def __init__(self, type: type, unit: str = '', description: str = '', *, default: Any = UNSET) -> None:
        if type not in _TYPES:
            raise TypeError(f'Field type must be bool, int, float or str, got {type!r}')
        self.type = type
        self.unit = unit
        self.description = description
        self.name = ''
        if default is not UNSET:
            if not _fits(type, default):
                raise TypeError(f'Field default {default!r} has type {_type_of(default)}, expected {type_name(type)}')
            default = float(default) if type is float else default
        self.default = default

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        try:
            return instance._trial[self.name]
        except KeyError:
            raise UnsetError(f"trial field '{self.name}' has no value in this trial yet: set it first, or give "
                             f'it a default (Field(..., default=...))') from None

    def __set__(self, instance: Any, value: Any) -> None:
        problem = self.check(value)
        if problem:
            raise TaskError(f"trial field '{self.name}': {problem}")
        instance._trial[self.name] = float(value) if self.type is float else value

    def check(self, value: Any) -> str | None:
        """Why ``value`` does not fit this field, or None (an int is a float; a bool is not an int)."""
        if _fits(self.type, value):
            return None
        return f'{value!r} has type {_type_of(value)}, expected {type_name(self.type)}'

    def __repr__(self) -> str:
        default = '' if self.default is UNSET else f', default={self.default!r}'
        return f'Field({type_name(self.type)}, {self.unit!r}, {self.description!r}{default})'


class Var:
    """Per-trial state that is not recorded (the centre poke's event, a count of wrong pokes): each trial
    starts with ``default``, or a fresh ``factory()`` for a mutable value (``Var(factory=list)``)."""

    __slots__ = ('default', 'factory', 'description', 'name')

    def __init__(self, default: Any = None, description: str = '', *, factory: Any = None) -> None:
        if factory is not None and default is not None:
            raise TypeError('Var: give a default or a factory, not both')
        if factory is not None and not callable(factory):
            raise TypeError(f'Var factory must be callable (list, dict, ...), got {factory!r}')
        if factory is None and isinstance(default, (list, dict, set, bytearray)):
            raise TypeError(f'Var default {default!r} is mutable and would be shared by every trial; '
                            f'use Var(factory={type(default).__name__})')
        self.default = default
        self.factory = factory
        self.description = description
        self.name = ''

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def initial(self) -> Any:
        return self.factory() if self.factory is not None else self.default

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return instance._trial.get(self.name, self.default)

    def __set__(self, instance: Any, value: Any) -> None:
        instance._trial[self.name] = value

    def __repr__(self) -> str:
        return f'Var({self.default!r})' if self.factory is None else f'Var(factory={self.factory!r})'


class Event(str):
    """An event a stage method receives: the name as a ``str``, plus where and when it came from.

    ``tick_us``: hardware tick, unwrapped microseconds (differences give response times; None for timers).
    ``stamp_ns``: ROS time of the event. ``device``: the device name ('' for timers and 'entry'/'exit').
    ``level``: the input level for GPIO events. ``data``: extra values (sound onsets: sound_id, play_id, ok).
    'entry', 'exit' and timer events carry the runner clock's time as ``stamp_ns``.
    Positional order: ``Event(name, tick_us, stamp_ns, device, level, data)``.
    """

    # str subclasses cannot have non-empty __slots__; plain attributes are cheap enough here.
    tick_us: int | None
    stamp_ns: int | None
    device: str
    level: bool | None
    data: dict

    def __new__(cls, name: str, tick_us: int | None = None, stamp_ns: int | None = None, device: str = '',
                level: bool | None = None, data: dict | None = None) -> Event:
        self = str.__new__(cls, name)
        self.tick_us = tick_us
        self.stamp_ns = stamp_ns
        self.device = device
        self.level = level
        self.data = {} if data is None else data
        return self

    def __repr__(self) -> str:
        extra = ''.join(f', {k}={v!r}' for k in ('tick_us', 'stamp_ns', 'device', 'level')
                        if (v := getattr(self, k)) not in (None, ''))
        if self.data:
            extra += f', data={self.data!r}'
        return f'Event({str(self)!r}{extra})'


def number_list(text: str, what: str, *, lo: float, hi: float, at_most: int, lo_open: bool = False) -> list[float]:
    """The numbers of a list parameter (``'2 4 8'``, spaces or commas), each in ``[lo, hi]`` (``(lo, hi]`` with
    ``lo_open``); ValueError naming the bad word, or the count (checked first: a 1 MB parameter is refused at once)."""
    words = text.replace(',', ' ').split()
    if not words or len(words) > at_most:
        raise ValueError(f'give 1 to {at_most} {what}, got {len(words)}')
    numbers = []
    for word in words:
        try:
            x = float(word)
        except ValueError:
            raise ValueError(f'{word!r} is not a number') from None
        if not ((lo < x) if lo_open else (lo <= x)) or not x <= hi:  # NaN fails both
            raise ValueError(f'{word} is out of range {"(" if lo_open else "["}{lo:g}, {hi:g}]')
        numbers.append(x)
    return numbers


def ms_between(start: int | None, end: int | None, per_ms: float = 1e6) -> float:
    """Milliseconds from ``start`` to ``end``: event stamps in ns (``per_ms`` 1e6) or ticks in µs (``per_ms``
    1e3); NaN when either is unknown (None: a timer has no tick, a fake onset no stamp)."""
    if start is None or end is None:
        return math.nan
    return (end - start) / per_ms


@runtime_checkable
class Hardware(Protocol):
    """What ``self.hw`` offers a task. Roles are task role names; the pilot resolves them to devices."""

    def reward(self, role: str, volume_ul: float) -> None:
        """Open a valve for the calibrated time that gives ``volume_ul``."""

    def pulse(self, role: str, ms: float) -> None:
        """Drive an output high for ``ms`` milliseconds."""

    def set(self, role: str, level: bool) -> None:
        """Set an output's level."""

    def pwm(self, role: str, duty: float, frequency_hz: float = 0) -> None:
        """PWM an output (LED brightness), duty in [0, 1]; frequency 0 means the device default."""

    def color(self, role: str, color: str) -> None:
        """Show ``color`` (a name or '#rrggbb'; 'off' for dark) on an RGB LED until the next command."""

    def series(self, role: str, levels: Sequence[bool | int], durations_ms: Sequence[float], repeat: int = 1,
               color: str = '') -> None:
        """Each level for its duration in ms, ``repeat`` times, then inactive; ``color`` for an RGB LED."""

    def load_sound(self, sound_id: str, **spec: Any) -> None:
        """Prepare a sound: kind='tone'|'noise'|'gammatone'|'fm_sweep'|'gap'|'wav', frequency_hz, duration_ms,
        amplitude, ramp_ms, seed, path, channel (0: all, 1: left, 2: right)."""

    def play(self, sound_id: str) -> int:
        """Play a loaded sound; returns the play id its ``sound_onset`` event carries."""

    def stop_sound(self, play_id: int | None = None) -> None:
        """Stop whatever is playing, or only the play ``play_id`` (what ``play`` returned)."""


class _Unbound:
    """Stand-in for the runner before a task is bound: every API call says what is wrong."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith('__'):
            raise AttributeError(name)  # copy, pickle and friends probe dunders
        raise TaskError('this task is not running: create it through TaskRunner to use goto, timers, '
                        'end_trial and hw')


class Task:
    """Base class of tasks. See the module docstring and docs/tasks.md."""

    stages: ClassVar[tuple[str, ...]] = ()
    # The bool field that "fraction correct" and accuracy graduation use; None for tasks that do not score.
    # The default 'correct' silently becomes None on a task that has no 'correct' field.
    score_field: ClassVar[str | None] = 'correct'
    # Bool fields that take a trial out of scoring when True (2AFC: 'correction'); see Task.score().
    score_excludes: ClassVar[tuple[str, ...]] = ()
    # The live plot (autopilot_tasks.plot.Plot); None: default_plot of the fields.
    plot: ClassVar[Plot | None] = None

    _params: ClassVar[dict[str, Param]] = {}
    _hardware: ClassVar[dict[str, _Role]] = {}
    _fields: ClassVar[dict[str, Field]] = {}
    _vars: ClassVar[dict[str, Var]] = {}
    _field_defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        params: dict[str, Param] = {}
        hardware: dict[str, _Role] = {}
        fields: dict[str, Field] = {}
        trial_vars: dict[str, Var] = {}
        # Base classes first, so a derived task extends (or overrides) its base's declarations in order.
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                for table in (params, hardware, fields, trial_vars):
                    table.pop(name, None)  # a redefinition replaces (or removes) the base's declaration
                if isinstance(value, Param):
                    params[name] = value
                elif isinstance(value, _Role):
                    hardware[name] = value
                elif isinstance(value, Field):
                    fields[name] = value
                elif isinstance(value, Var):
                    trial_vars[name] = value
        cls._params, cls._hardware, cls._fields, cls._vars = params, hardware, fields, trial_vars
        cls._field_defaults = {n: f.default for n, f in fields.items() if f.default is not UNSET}
        where = cls.__name__
        for name in (*params, *hardware, *fields, *trial_vars):
            if name in _RESERVED:
                raise TypeError(f'{where}: {name!r} is a Task attribute; rename this declaration')
        for name in params:
            problem = params[name].check(params[name].default)
            if problem:
                raise TypeError(f"{where}: parameter '{name}': default {problem}")
        if isinstance(cls.stages, str) or not all(isinstance(s, str) for s in cls.stages):
            raise TypeError(f'{where}: stages must be a tuple of method names, got {cls.stages!r}')
        for stage in cls.stages:
            if not callable(getattr(cls, stage, None)):
                raise TypeError(f"{where}: stage '{stage}' has no method {stage}(self, event)")
        if cls.score_field is not None:
            field = fields.get(cls.score_field)
            if field is None and cls.score_field == 'correct' and 'score_field' not in vars(cls):
                cls.score_field = None
            elif field is None or field.type is not bool:
                raise TypeError(f"{where}: score_field '{cls.score_field}' must name a bool Field")
        for name in cls.score_excludes:
            if name not in fields or fields[name].type is not bool:
                raise TypeError(f"{where}: score_excludes entry '{name}' must name a bool Field")
        if cls.plot is not None:
            if not isinstance(cls.plot, Plot):
                raise TypeError(f'{where}: plot must be a Plot(...) of autopilot_tasks.plot, got {cls.plot!r}')
            problem = cls.plot.check({name: f.type for name, f in fields.items()})
            if problem:
                raise TypeError(f'{where}: plot element {problem}')

    # ---- declarations -------------------------------------------------------------------------

    @classmethod
    def params(cls) -> dict[str, Param]:
        """``{name: Param}`` in declaration order."""
        return dict(cls._params)

    @classmethod
    def hardware(cls) -> dict[str, Input | Output | Sound | Stream]:
        """``{role: Input | Output | Sound | Stream}`` in declaration order."""
        return dict(cls._hardware)  # type: ignore[arg-type]

    @classmethod
    def fields(cls) -> dict[str, Field]:
        """``{name: Field}`` in declaration order (the order of every trial's data)."""
        return dict(cls._fields)

    @classmethod
    def plot_spec(cls) -> Plot:
        """The declared ``plot``, or :func:`~autopilot_tasks.plot.default_plot` of the trial fields."""
        if cls.plot is not None:
            return cls.plot
        return default_plot(((name, f.type, f.unit) for name, f in cls._fields.items()), title=cls.__name__)

    @classmethod
    def description(cls) -> str:
        """The docstring's first line."""
        doc = (cls.__doc__ or '').strip()
        return doc.split('\n')[0].strip() if doc else ''

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every parameter's default."""
        return {name: p.default for name, p in cls._params.items()}

    @classmethod
    def score(cls, fields: Mapping[str, Any]) -> bool | None:
        """What accuracy counts for one finished trial: its ``score_field`` value, or None when the trial
        does not count (the task does not score, or a ``score_excludes`` field is True)."""
        if cls.score_field is None:
            return None
        for name in cls.score_excludes:
            if fields.get(name):
                return None
        value = fields.get(cls.score_field)
        return value if isinstance(value, bool) else None

    @classmethod
    def check_params(cls, values: dict[str, Any]) -> str | None:
        """Override for rules between parameters; return what is wrong (TaskError text) or None."""
        return None

    @classmethod
    def validate(cls, overrides: Mapping[str, object] | None = None) -> dict[str, object]:
        """Every parameter's value (defaults updated with ``overrides``) or TaskError naming what is wrong.

        Errors read ``TwoAFC: parameter 'reward_ul': 99 is out of range, allowed float in [0.5, 50.0] uL``;
        an unknown name lists the known ones.
        """
        if overrides is None:
            overrides = {}
        if not isinstance(overrides, Mapping):
            raise TaskError(f'{cls.__name__}: parameters must be a mapping of name to value, '
                            f'got {_type_of(overrides)} {overrides!r}')
        values = cls.defaults()
        for name, value in overrides.items():
            param = cls._params.get(name) if isinstance(name, str) else None
            if param is None:
                known = ', '.join(cls._params) or '(none)'
                raise TaskError(f'{cls.__name__}: unknown parameter {name!r}; known parameters: {known}')
            problem = param.check(value)
            if problem:
                raise TaskError(f"{cls.__name__}: parameter '{name}': {problem}")
            values[name] = param.coerce(value)
        problem = cls.check_params(values)
        if problem:
            raise TaskError(f'{cls.__name__}: {problem}')
        return values

    # ---- instance -----------------------------------------------------------------------------

    def __init__(self, params: Mapping[str, object] | None = None, *, seed: int | None = None) -> None:
        self._trial: dict[str, Any] = {}  # this trial's Field and Var values (see new_trial)
        self._param_values: dict[str, Any] = self.validate(params)
        self._runner: Any = _Unbound()
        self.hw: Hardware = _Unbound()
        self.random = random.Random(seed)
        self.trial_number = 0
        self.history: list[dict[str, Any]] = []

    def goto(self, stage: str, after_s: float | None = None) -> None:
        """Leave the current stage ('exit'), enter ``stage`` ('entry'); with ``after_s``, that many seconds from
        now unless the stage has been left before (a waiting stage needs no timer event of its own)."""
        self._runner.goto(stage, after_s)

    def set_timer(self, name: str, seconds: float) -> None:
        """Deliver event ``name`` after ``seconds`` (one-shot; setting it again replaces it)."""
        self._runner.set_timer(name, seconds)

    def cancel_timer(self, name: str) -> None:
        """Cancel timer ``name`` if it is pending."""
        self._runner.cancel_timer(name)

    def end_trial(self, after_s: float | None = None, **fields: Any) -> None:
        """Finish the trial, recording every declared field (``fields`` given here are set first); the next trial
        starts in ``stages[0]`` right after. With ``after_s``, that many seconds from now unless the stage has
        been left before; the fields are recorded as they are then."""
        declared = self._fields
        for name, value in fields.items():
            if name not in declared:
                raise TaskError(f'{type(self).__name__}: end_trial: undeclared {name} '
                                f'(declared fields: {", ".join(declared)})')
            setattr(self, name, value)
        self._runner.end_trial(None, after_s)

    def new_trial(self) -> None:
        """Every Field back to its default (unset without one) and every Var to its initial value; the runner
        calls it before ``start_trial``."""
        trial = dict(self._field_defaults)
        for name, var in self._vars.items():
            trial[name] = var.initial()
        self._trial = trial

    def trial_values(self) -> dict[str, Any]:
        """This trial's field values that are set, in declaration order."""
        trial = self._trial
        return {name: trial[name] for name in self._fields if name in trial}

    def now_ns(self) -> int:
        """The runner's clock, ns."""
        return self._runner.now_ns()

    def log(self, text: str) -> None:
        """A line for the session log."""
        self._runner.log(text)

    # Optional hooks.
    def setup(self) -> None:
        """Once at session start (load sounds here)."""

    def start_trial(self) -> None:
        """Before each trial's first stage entry."""

    def teardown(self) -> None:
        """Once at session end."""

    def outputs_reset(self) -> None:
        """After the runner drove the task's LEDs and TTLs low and stopped its sounds (a pause, the session's
        end, an error): a task that keeps a sound going across trials notes here that it must start it again."""


_RESERVED = frozenset(name for name in dir(Task) if not name.startswith('__')) | {
    'hw', 'random', 'trial_number', 'history', 'stages', 'score_field', '_trial'}
