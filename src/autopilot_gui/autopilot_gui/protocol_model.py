"""The protocol editor's draft, as plain Python: steps in, the same YAML a person writes out, the pilots' check.

A :class:`Draft` holds what the file says and no more: each step's task *name*, only the parameters that differ
from the task's defaults (overrides), and the graduation rule as its mapping (``{trials: n}``,
``{accuracy: x, window: n}``, ``{sessions: n}`` or None). It may hold wrong values (an opened file can); they are
kept as given so the editor shows them, and :meth:`Draft.problem` says what the pilots would refuse by running
:func:`autopilot_tasks.protocol.load_protocol` on :meth:`Draft.to_yaml`: one check, the pilots' own, naming the
line of that text and the field. No Qt and no ROS here.
"""

from __future__ import annotations

import json
import math
import re
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

import yaml

from autopilot_tasks import registry
from autopilot_tasks.protocol import ProtocolError, load_protocol
from autopilot_tasks.task import Param, Task

#: Graduation rules and their keys, in the order the YAML writes them.
RULES: dict[str, tuple[str, ...]] = {'trials': ('trials',), 'accuracy': ('accuracy', 'window'),
                                     'sessions': ('sessions',)}
#: The terminal's rule for protocol (file) names: it saves ``<protocol_dir>/<name>.yaml``.
NAME_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_-]{0,63}')
_TOP_KEYS = ('name', 'description', 'steps')
_STEP_KEYS = ('name', 'task', 'parameters', 'graduation')


class DraftError(ValueError):
    """A text the editor cannot represent (not a protocol's shape); ``str()`` names the line and field."""


@dataclass
class DraftStep:
    """One step as written: ``parameters`` are the overrides only; ``graduation`` the rule's mapping or None."""

    name: str
    task: str
    parameters: dict[str, Any] = field(default_factory=dict)
    graduation: dict[str, Any] | None = None

    def rule(self) -> str:
        """'trials', 'accuracy', 'sessions' or 'none'."""
        if not self.graduation:
            return 'none'
        return next((r for r in RULES if r in self.graduation), 'none')


@dataclass
class Draft:
    """A protocol being edited; see the module docstring."""

    name: str = ''
    description: str = ''
    steps: list[DraftStep] = field(default_factory=list)

    # -- text ---------------------------------------------------------------------------------------------
    def to_yaml(self) -> str:
        """The protocol as a person writes it: one block per step, parameters one a line in the task's order."""
        lines = []
        if self.name:
            lines.append(f'name: {scalar(self.name)}')
        if self.description:
            lines.append(f'description: {scalar(self.description)}')
        lines.append('steps:' if self.steps else 'steps: []')
        for i, step in enumerate(self.steps):
            if i:
                lines.append('')
            lines.append(f'  - name: {scalar(step.name)}')
            lines.append(f'    task: {scalar(step.task)}')
            if step.parameters:
                lines.append('    parameters:')
                for name in ordered(step.task, step.parameters):
                    lines.append(f'      {scalar(name)}: {scalar(step.parameters[name])}')
            if step.graduation:
                body = ', '.join(f'{scalar(k)}: {scalar(v)}' for k, v in step.graduation.items())
                lines.append(f'    graduation: {{{body}}}')
        return '\n'.join(lines) + '\n'

    @classmethod
    def from_yaml(cls, text: str, name: str = '') -> Draft:
        """The draft of a protocol's text (``name``: its file stem, used when the text has no ``name:``).

        Values are kept as given, right or wrong (:meth:`problem` tells); a text whose shape the editor cannot
        hold (malformed YAML, unknown keys, steps that are not mappings) is a :class:`DraftError` carrying the
        pilots' own message for it.
        """
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            raise DraftError(_pilots_error(text, name) or 'malformed YAML') from None
        shape = _shape_error(data)
        if shape:
            raise DraftError(_pilots_error(text, name) or shape)
        steps = []
        for raw in data.get('steps') or []:
            grad = raw.get('graduation')
            steps.append(DraftStep(name=_text(raw.get('name')), task=_text(raw.get('task')),
                                   parameters=dict(raw.get('parameters') or {}),
                                   graduation=dict(grad) if isinstance(grad, dict) and grad else None))
        return cls(name=_text(data.get('name')) or name, description=_text(data.get('description')), steps=steps)

    # -- checks -------------------------------------------------------------------------------------------
    def problem(self, source: str | None = None) -> ProtocolError | None:
        """What the pilots would refuse in :meth:`to_yaml` (line and field), or None when they would load it."""
        try:
            load_protocol(self.to_yaml(), source=source or f'{self.name or "<new>"}.yaml')
        except ProtocolError as exc:
            return exc
        return None

    def name_problem(self) -> str | None:
        """Why the terminal would refuse ``name`` as a file name, or None."""
        if NAME_RE.fullmatch(self.name):
            return None
        return (f'protocol name {self.name!r} is not valid: use 1-64 letters, digits, "_" or "-", starting with '
                'a letter or digit (it names the file <protocol_dir>/<name>.yaml)')

    def copy(self) -> Draft:
        return deepcopy(self)

    # -- edits the form makes ---------------------------------------------------------------------------------
    def set_parameter(self, index: int, name: str, value: Any) -> None:
        """Set a parameter of step ``index``; a value equal to the task's default is not written."""
        step = self.steps[index]
        param = task_params(step.task).get(name)
        if param is not None and _same(value, param.default):
            step.parameters.pop(name, None)
        else:
            step.parameters[name] = value

    def set_task(self, index: int, task: str) -> None:
        """Change step ``index``'s task; overrides the new task does not declare (or refuses) are dropped."""
        step = self.steps[index]
        step.task = task
        params = task_params(task)
        step.parameters = {k: v for k, v in step.parameters.items()
                           if k in params and params[k].check(v) is None and not _same(v, params[k].default)}

    def set_graduation(self, index: int, rule: str, values: dict[str, Any] | None = None) -> None:
        """Set step ``index``'s rule ('none' or a key of :data:`RULES`) from ``values`` (defaults filled in)."""
        if rule == 'none':
            self.steps[index].graduation = None
            return
        given = values or {}
        defaults = {'trials': 100, 'accuracy': 0.8, 'window': 100, 'sessions': 1}
        self.steps[index].graduation = {k: given.get(k, defaults[k]) for k in RULES[rule]}

    def new_step_name(self, task: str) -> str:
        """A step name not used yet: the task's name, then ``task 2``, ``task 3``..."""
        used = {s.name for s in self.steps}
        name, n = task, 2
        while name in used:
            name, n = f'{task} {n}', n + 1
        return name


# -- helpers -----------------------------------------------------------------------------------------------------

def task_class(name: str) -> type[Task] | None:
    """The registered task ``name``, or None when unknown or broken."""
    try:
        return registry.lookup(name)
    except Exception:  # noqa: BLE001 - unknown (TaskError) or a broken package: the pilots' check names it
        return None


def task_params(name: str) -> dict[str, Param]:
    cls = task_class(name)
    return cls.params() if cls is not None else {}


def ordered(task: str, parameters: dict[str, Any]) -> list[str]:
    """Parameter names in the task's declaration order; names it does not declare last, as given."""
    declared = [n for n in task_params(task) if n in parameters]
    return declared + [n for n in parameters if n not in declared]


def scalar(value: Any) -> str:
    """One YAML scalar as PyYAML reads it back (quoted when needed: 'yes', '5', 'a: b')."""
    if isinstance(value, float) and math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return f'{value:.1f}'  # 8.0, not 8.0e+00 or 8
    if isinstance(value, str) and not value.isprintable():
        return json.dumps(value)  # one line with escapes (a JSON string is a YAML double-quoted scalar)
    out = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=1 << 30)
    return out.removesuffix('\n').removesuffix('\n...').strip()


def _same(a: Any, b: Any) -> bool:
    """Equal as the pilots compare parameters: 5 is 5.0, but True is not 1 and '5' is not 5."""
    numbers = (int, float)
    if type(a) in numbers and type(b) in numbers:
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


def _text(value: Any) -> str:
    return '' if value is None else str(value)


def _pilots_error(text: str, name: str) -> str:
    try:
        load_protocol(text, source=f'{name or "<text>"}.yaml', name=name or None)
    except ProtocolError as exc:
        return str(exc)
    return ''


def _shape_error(data: Any) -> str:
    """Why ``data`` is not a protocol's shape the draft can hold, or ''."""
    if not isinstance(data, dict):
        return 'a protocol must be a mapping (name, description, steps)'
    extra = [k for k in data if k not in _TOP_KEYS]
    if extra:
        return f'unknown key {extra[0]!r}'
    if not isinstance(data.get('steps') or [], list):
        return 'steps must be a list'
    for i, raw in enumerate(data.get('steps') or []):
        if not isinstance(raw, dict) or any(k not in _STEP_KEYS for k in raw):
            return f'steps[{i}] must be a mapping of {", ".join(_STEP_KEYS)}'
        if not isinstance(raw.get('parameters') or {}, dict):
            return f'steps[{i}].parameters must be a mapping'
        grad = raw.get('graduation')
        if grad is not None and not isinstance(grad, dict):
            return f'steps[{i}].graduation must be a mapping'
    return ''
