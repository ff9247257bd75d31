"""Live plots a task declares: what the Terminal draws from its trial fields (plain data, no Qt).

A task sets ``plot = Plot(...)``; the Terminal draws it per pilot, one x position per trial:

* :class:`Points`: one point per trial (a ``str`` field at fixed heights, e.g. sides; coloured by a field);
* :class:`RollingMean`: the mean of a bool or number over the last ``window`` trials, with a chance line;
* :class:`Line`: a number per trial (response time; the unit comes from the Field);
* :class:`Shade`: a band behind the trials where a bool field is True (correction trials);
* :class:`Psychometric`: fraction of ``choice == positive`` per value of a stimulus ``level``;
* :class:`TrialTimes`: each trial's duration and the time since the previous one (every TrialData has them).

Autopilot's task ``PLOT`` dict is the idea; here the elements are typed, checked against the task's fields
when the class is created (:meth:`Plot.check`), and travel as JSON (:meth:`Plot.to_dict` /
:meth:`Plot.from_dict`, which checks hostile input). A task without a ``plot`` gets :func:`default_plot`,
which reads only (name, type, unit) triples, so the Terminal can build it for a task it has not installed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

__all__ = ['Element', 'Line', 'Plot', 'Points', 'Psychometric', 'RollingMean', 'Shade', 'TrialTimes',
           'default_plot', 'kind_of']

MAX_ELEMENTS = 32
MAX_NAME = 64      # as a TrialField name (autopilot_core.trial_fields.checked)
MAX_TITLE = 200
MAX_CATEGORIES = 64
MAX_WINDOW = 100_000

# Field kinds: a Task Field's Python type, a TrialField type code (autopilot_msgs/TrialField TYPE_*), or the
# names the recorder stores all map to one of 'bool', 'int', 'float', 'str'.
_KINDS: dict[Any, str] = {bool: 'bool', int: 'int', float: 'float', str: 'str', 1: 'bool', 2: 'int', 3: 'float',
                          4: 'str', 'bool': 'bool', 'int64': 'int', 'float64': 'float', 'string': 'str'}
_NUMBER = ('int', 'float')
_TIME_UNITS = frozenset({'ns', 'us', 'µs', 'ms', 's', 'min'})


def kind_of(tp: object) -> str | None:
    """'bool', 'int', 'float' or 'str' for a Python type, TrialField type code or stored type name; else None."""
    if isinstance(tp, bool):
        return None  # True == 1 would read as TYPE_BOOL
    try:
        return _KINDS.get(tp)
    except TypeError:  # unhashable
        return None


def _name(what: str, value: object, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.isidentifier() or len(value) > MAX_NAME:
        raise TypeError(f'{what} must be a field name (a Python identifier, at most {MAX_NAME} characters), '
                        f'got {value!r}')


def _number(what: str, value: object) -> float:
    try:  # float() of a huge int (JSON allows them) overflows
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:
        number = math.nan
    if not math.isfinite(number):
        raise TypeError(f'{what} must be a finite number, got {value!r}')
    return number


def _count(what: str, value: object, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
        raise TypeError(f'{what} must be an int in [1, {hi}], got {value!r}')


@dataclass(frozen=True)
class Element:
    """Base of plot elements: ``uses()`` says which fields it reads and which kinds fit."""

    kind: ClassVar[str] = ''

    def uses(self) -> list[tuple[str, str | None, tuple[str, ...]]]:
        """``[(argument, field name or None, kinds that fit)]``."""
        return []

    def problem(self, kinds: Mapping[str, str]) -> str | None:
        """What does not fit the fields (``{name: kind}``), or None."""
        for arg, name, fits in self.uses():
            if name is None:
                continue
            if name not in kinds:
                known = ', '.join(kinds) or '(none)'
                return f"{self!r}: {arg} '{name}' is not a trial field; fields: {known}"
            if kinds[name] not in fits:
                return f"{self!r}: {arg} '{name}' has type {kinds[name]}, needs {' or '.join(fits)}"
        return None

    def __repr__(self) -> str:
        values = self.to_dict()
        del values['kind']
        args = [repr(values.pop(f.name)) for f in dataclasses.fields(self)[:1]]
        args += [f'{f.name}={values[f.name]!r}' for f in dataclasses.fields(self)[1:]
                 if values[f.name] != f.default]
        return f'{type(self).__name__}({", ".join(args)})'

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: ``{'kind': ..., <arguments>}``."""
        out: dict[str, Any] = {'kind': self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = dict(value) if isinstance(value, Mapping) else value
        return out


@dataclass(frozen=True, repr=False)
class Points(Element):
    """One point per trial at the field's value: ``y`` maps a str field's values to heights (e.g. sides);
    without it a str field's values take heights in order of appearance, a bool is 0/1. ``color_by``: a
    bool or str field the colour follows (True green, False red)."""

    field: str
    y: Mapping[str, float] | None = dataclasses.field(default=None, hash=False)
    color_by: str | None = None
    kind: ClassVar[str] = 'points'

    def __post_init__(self) -> None:
        _name('Points field', self.field)
        _name('Points color_by', self.color_by, optional=True)
        if self.y is not None:
            if not isinstance(self.y, Mapping) or not 1 <= len(self.y) <= MAX_CATEGORIES:
                raise TypeError(f'Points y must map 1 to {MAX_CATEGORIES} values to heights, got {self.y!r}')
            heights = {}
            for key, height in self.y.items():
                if not isinstance(key, str) or len(key) > MAX_NAME:
                    raise TypeError(f'Points y: keys are the str field\'s values, got {key!r}')
                heights[key] = _number(f'Points y[{key!r}]', height)
            object.__setattr__(self, 'y', MappingProxyType(heights))

    def uses(self) -> list[tuple[str, str | None, tuple[str, ...]]]:
        return [('field', self.field, ('str',) if self.y is not None else ('bool', 'int', 'float', 'str')),
                ('color_by', self.color_by, ('bool', 'str'))]


@dataclass(frozen=True, repr=False)
class RollingMean(Element):
    """Mean of a bool (fraction True) or number over the last ``window`` trials; ``chance`` draws a line;
    trials where the bool field ``skip`` is True are left out (correction trials, as ``score_excludes``)."""

    field: str
    window: int = 20
    chance: float | None = None
    skip: str | None = None
    kind: ClassVar[str] = 'rolling_mean'

    def __post_init__(self) -> None:
        _name('RollingMean field', self.field)
        _name('RollingMean skip', self.skip, optional=True)
        _count('RollingMean window', self.window, MAX_WINDOW)
        if self.chance is not None:
            object.__setattr__(self, 'chance', _number('RollingMean chance', self.chance))

    def uses(self) -> list[tuple[str, str | None, tuple[str, ...]]]:
        return [('field', self.field, ('bool', 'int', 'float')), ('skip', self.skip, ('bool',))]

    def problem(self, kinds: Mapping[str, str]) -> str | None:
        problem = super().problem(kinds)
        if problem is None and kinds[self.field] == 'bool' and self.chance is not None and not 0 <= self.chance <= 1:
            problem = f'{self!r}: chance of a bool field is a fraction in [0, 1]'
        return problem


@dataclass(frozen=True, repr=False)
class Line(Element):
    """A number per trial, joined by a line (e.g. ``rt_ms``; the axis shows the Field's unit)."""

    field: str
    kind: ClassVar[str] = 'line'

    def __post_init__(self) -> None:
        _name('Line field', self.field)

    def uses(self) -> list[tuple[str, str | None, tuple[str, ...]]]:
        return [('field', self.field, _NUMBER)]


@dataclass(frozen=True, repr=False)
class Shade(Element):
    """A band behind every trial where the bool field is True (correction trials, timeouts)."""

    field: str
    kind: ClassVar[str] = 'shade'

    def __post_init__(self) -> None:
        _name('Shade field', self.field)

    def uses(self) -> list[tuple[str, str | None, tuple[str, ...]]]:
        return [('field', self.field, ('bool',))]


@dataclass(frozen=True, repr=False)
class Psychometric(Element):
    """Fraction of trials with ``choice == positive`` per value of the stimulus ``level`` (its own axes)."""

    level: str
    choice: str = 'response'
    positive: str | bool = 'right'
    kind: ClassVar[str] = 'psychometric'

    def __post_init__(self) -> None:
        _name('Psychometric level', self.level)
        _name('Psychometric choice', self.choice)
        if not isinstance(self.positive, (str, bool)) or (isinstance(self.positive, str)
                                                           and len(self.positive) > MAX_NAME):
            raise TypeError(f'Psychometric positive must be a str or bool choice value, got {self.positive!r}')

    def uses(self) -> list[tuple[str, str | None, tuple[str, ...]]]:
        return [('level', self.level, _NUMBER), ('choice', self.choice, ('str', 'bool'))]

    def problem(self, kinds: Mapping[str, str]) -> str | None:
        problem = super().problem(kinds)
        if problem is None and kinds[self.choice] != ('bool' if isinstance(self.positive, bool) else 'str'):
            problem = f"{self!r}: positive {self.positive!r} is not a value of the {kinds[self.choice]} field " \
                      f"'{self.choice}'"
        return problem


@dataclass(frozen=True, repr=False)
class TrialTimes(Element):
    """Each trial's duration (start -> end) and the time from the previous trial's end, in s: TrialData's own
    stamps, so it fits every task."""

    kind: ClassVar[str] = 'trial_times'


_ELEMENTS: dict[str, type[Element]] = {c.kind: c for c in (Points, RollingMean, Line, Shade, Psychometric,
                                                            TrialTimes)}


@dataclass(frozen=True, init=False)
class Plot:
    """A task's live plot: its elements drawn over the last ``window`` trials, under ``title``."""

    elements: tuple[Element, ...]
    title: str = ''
    window: int = 100

    def __init__(self, *elements: Element, title: str = '', window: int = 100) -> None:
        if not 1 <= len(elements) <= MAX_ELEMENTS:
            raise TypeError(f'Plot takes 1 to {MAX_ELEMENTS} elements, got {len(elements)}')
        for element in elements:
            if not isinstance(element, Element) or type(element) is Element:
                raise TypeError(f'Plot elements are {", ".join(c.__name__ for c in _ELEMENTS.values())}; '
                                f'got {element!r}')
        if not isinstance(title, str) or len(title) > MAX_TITLE:
            raise TypeError(f'Plot title must be a str of at most {MAX_TITLE} characters, got {title!r}')
        _count('Plot window', window, MAX_WINDOW)
        object.__setattr__(self, 'elements', tuple(elements))
        object.__setattr__(self, 'title', title)
        object.__setattr__(self, 'window', window)

    def __repr__(self) -> str:
        args = [repr(e) for e in self.elements]
        args += [f'title={self.title!r}'] if self.title else []
        args += [f'window={self.window}'] if self.window != 100 else []
        return f'Plot({", ".join(args)})'

    def check(self, fields: Mapping[str, object]) -> str | None:
        """What in this plot does not fit the trial fields (``{name: type}``, type as :func:`kind_of` reads
        it), or None."""
        kinds = {name: kind for name, tp in fields.items() if (kind := kind_of(tp)) is not None}
        for element in self.elements:
            problem = element.problem(kinds)
            if problem:
                return problem
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: ``{'title', 'window', 'elements': [{'kind': ..., <arguments>}]}``."""
        return {'title': self.title, 'window': self.window, 'elements': [e.to_dict() for e in self.elements]}

    @classmethod
    def from_dict(cls, data: object) -> Plot:
        """The Plot ``to_dict`` gave, from untrusted input: ValueError naming what is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError(f'a plot is a mapping, got {type(data).__name__}')
        unknown = set(data) - {'title', 'window', 'elements'}
        if unknown:
            raise ValueError(f'plot: unknown keys {sorted(map(repr, unknown))}')
        raw = data.get('elements')
        if not isinstance(raw, (list, tuple)) or len(raw) > MAX_ELEMENTS:
            raise ValueError(f'plot elements must be a list of at most {MAX_ELEMENTS}, got {type(raw).__name__}')
        elements = []
        for i, item in enumerate(raw):
            if not isinstance(item, Mapping):
                raise ValueError(f'plot element {i} is a mapping, got {type(item).__name__}')
            kind = item.get('kind')
            element_cls = _ELEMENTS.get(kind) if isinstance(kind, str) else None
            if element_cls is None:
                raise ValueError(f'plot element {i}: unknown kind {kind!r}; kinds: {", ".join(_ELEMENTS)}')
            args = {k: v for k, v in item.items() if k != 'kind'}
            allowed = {f.name for f in dataclasses.fields(element_cls)}
            if not set(args) <= allowed:
                raise ValueError(f'plot element {i} ({kind}): unknown keys {sorted(map(repr, set(args) - allowed))}')
            try:
                elements.append(element_cls(**args))
            except TypeError as exc:  # missing arguments or a constructor's check
                raise ValueError(f'plot element {i} ({kind}): {exc}') from None
        try:
            return cls(*elements, title=data.get('title', ''), window=data.get('window', 100))
        except TypeError as exc:
            raise ValueError(f'plot: {exc}') from None


_SIDE_FIELDS = ('response', 'choice', 'side', 'target', 'port')
_SCORE_FIELDS = ('correct', 'rewarded', 'hit', 'success')
_SHADE_FIELDS = ('correction', 'timeout', 'timed_out', 'catch', 'probe')


def default_plot(fields: Iterable[tuple[str, object, str]], title: str = '') -> Plot:
    """A plot from trial fields alone, ``(name, type, unit)`` as TrialData carries them (type code, Python type
    or stored name; fields of unknown type are left out): points of the side (``response``, ``choice``, ...)
    or of the score (``correct``, ``rewarded``, ...) coloured by the score, its rolling mean, shaded
    ``correction``/``timeout`` trials, a line per timed number (unit s, ms, us...), and trial times."""
    kinds: dict[str, str] = {}
    units: dict[str, str] = {}
    for name, tp, unit in fields:
        kind = kind_of(tp)
        if kind is not None and isinstance(name, str) and name.isidentifier() and len(name) <= MAX_NAME:
            kinds[name], units[name] = kind, unit if isinstance(unit, str) else ''
    side = next((n for n in _SIDE_FIELDS if kinds.get(n) == 'str'), None)
    score = next((n for n in _SCORE_FIELDS if kinds.get(n) == 'bool'), None)
    elements: list[Element] = []
    if side is not None:
        elements.append(Points(side, color_by=score))
    elif score is not None:
        elements.append(Points(score, color_by=score))
    shades = [n for n in _SHADE_FIELDS if kinds.get(n) == 'bool']
    if score is not None:
        elements.append(RollingMean(score, skip='correction' if 'correction' in shades else None))
    elements += [Shade(n) for n in shades]
    numbers = [n for n, k in kinds.items() if k in _NUMBER]
    timed = [n for n in numbers if units[n] in _TIME_UNITS]
    elements += [Line(n) for n in (timed if timed or elements else numbers)[:3]]
    elements.append(TrialTimes())
    return Plot(*elements, title=title)
