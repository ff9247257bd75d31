"""Protocols: YAML files of training steps, each a task with parameters and a graduation rule.

A protocol file::

    name: 2afc_training          # optional; default: the file's stem
    description: ...             # optional
    steps:
      - name: free water                       # unique within the protocol
        task: free_water                       # a task registered in the entry-point group autopilot.tasks
        parameters: {reward_ul: 8.0}           # checked with the task's Task.validate
        graduation: {trials: 50}               # move on after 50 trials in this step
      - name: 2afc
        task: 2afc
        graduation: {accuracy: 0.8, window: 50}

Graduation is one of ``{trials: n}``, ``{accuracy: x, window: n}`` or ``{sessions: n}``; without one a
step is kept until someone moves the subject on. A rule on the last step is allowed but has no step to
move to.

The text is read with PyYAML's node API (compose, not load), so every :class:`ProtocolError` names the line
and the field path: ``protocols/2afc.yaml:7: steps[1].graduation.accuracy: 1.5 is out of range, allowed
float in (0, 1]``. Nothing else escapes :func:`load_protocol`: malformed YAML, wrong types, unknown keys
(with the closest allowed one), unknown tasks and bad parameters all become a ProtocolError.

Accuracy graduation counts only *scored* trials: those whose task's ``score_field`` value is a ``bool``.
Correction trials (a ``bool`` field ``correction`` that is True: the same stimulus repeated after an
error) are left out, so a subject cannot graduate on repeats; so are trials with a True value in any of
the task's ``score_excludes`` fields (as ``Task.score`` does). A task without a ``score_field`` cannot
use accuracy graduation.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from autopilot_tasks import registry
from autopilot_tasks.task import Task, TaskError

__all__ = [
    'AccuracyGraduation', 'Graduation', 'Protocol', 'ProtocolError', 'SessionsGraduation', 'Step',
    'TrialsGraduation', 'find_protocol', 'list_protocols', 'load_protocol', 'load_protocol_file', 'protocol_path',
]

#: File name endings of protocol files in a protocol directory.
SUFFIXES = ('.yaml', '.yml')

TaskLookup = Callable[[str], type[Task]]


class ProtocolError(ValueError):
    """A protocol that cannot be used: ``str()`` is ``SOURCE:LINE: FIELD.PATH: message`` on one line."""

    def __init__(self, message: str, *, source: str = '<string>', line: int = 0, path: str = '') -> None:
        super().__init__(message)
        self.message, self.source, self.line, self.path = message, source, line, path

    def __str__(self) -> str:
        where = f'{self.source}:{self.line}' if self.line else self.source
        return f'{where}: {self.path}: {self.message}' if self.path else f'{where}: {self.message}'


# ------------------------------------------------------------------------------------------- graduation

class Graduation:
    """When a subject leaves a step. ``history``: this step's finished trials (field dicts, oldest first);
    ``sessions_in_step``: this step's sessions that have ended (the running one does not count)."""

    def check(self, history: Sequence[Mapping[str, Any]], sessions_in_step: int) -> str | None:
        """The reason text if the subject graduates now, else None."""
        raise NotImplementedError


@dataclass(frozen=True)
class TrialsGraduation(Graduation):
    """After ``trials`` finished trials in the step (every trial counts, correction trials too)."""

    trials: int

    def check(self, history: Sequence[Mapping[str, Any]], sessions_in_step: int) -> str | None:
        done = len(history)
        return f'{done} trials >= {self.trials} in this step' if done >= self.trials else None

    def __str__(self) -> str:
        return f'after {self.trials} trials'


@dataclass(frozen=True)
class SessionsGraduation(Graduation):
    """After ``sessions`` ended sessions in the step."""

    sessions: int

    def check(self, history: Sequence[Mapping[str, Any]], sessions_in_step: int) -> str | None:
        if sessions_in_step >= self.sessions:
            return f'{sessions_in_step} sessions >= {self.sessions} in this step'
        return None

    def __str__(self) -> str:
        return f'after {self.sessions} sessions'


@dataclass(frozen=True)
class AccuracyGraduation(Graduation):
    """When the fraction correct over the last ``window`` scored trials is at least ``accuracy``.

    Scored: ``trial[score_field]`` is a bool and none of the ``excludes`` fields is True (the task's
    ``score_excludes``, and always ``correction``).
    """

    accuracy: float
    window: int
    score_field: str = 'correct'
    excludes: tuple[str, ...] = ('correction',)

    def check(self, history: Sequence[Mapping[str, Any]], sessions_in_step: int) -> str | None:
        scored = [t[self.score_field] for t in history if isinstance(t.get(self.score_field), bool)
                  and not any(t.get(name) is True for name in self.excludes)]
        if len(scored) < self.window:
            return None
        correct = sum(scored[-self.window:])
        # Exact: 40/50 must pass accuracy 0.8, which float division does not promise.
        if Fraction(correct, self.window) < Fraction(repr(self.accuracy)):
            return None
        decimals = max(2, len(repr(self.accuracy).partition('.')[2]))
        return (f'accuracy {correct / self.window:.{decimals}f} >= {self.accuracy:.{decimals}f} '
                f'over the last {self.window} scored trials')

    def __str__(self) -> str:
        return f'accuracy >= {self.accuracy} over the last {self.window} scored trials'


# ------------------------------------------------------------------------------------------- protocol

@dataclass(frozen=True)
class Step:
    """One step: ``task`` is the task class, ``parameters`` every parameter's validated value."""

    name: str
    task: type[Task]
    task_name: str
    parameters: dict[str, Any]
    graduation: Graduation | None
    line: int = 0


@dataclass(frozen=True)
class Protocol:
    """A loaded protocol; ``source`` is the file (or ``'<string>'``) it came from."""

    name: str
    steps: tuple[Step, ...]
    description: str = ''
    source: str = '<string>'

    def index(self, step_name: str) -> int:
        """The 0-based index of the step named ``step_name`` (KeyError naming the steps otherwise)."""
        for i, step in enumerate(self.steps):
            if step.name == step_name:
                return i
        raise KeyError(f"protocol '{self.name}' has no step {step_name!r}; steps: "
                       f"{', '.join(repr(s.name) for s in self.steps)}")


# ------------------------------------------------------------------------------------------- parsing

_TOP_KEYS = ('name', 'description', 'steps')
_STEP_KEYS = ('name', 'task', 'parameters', 'graduation')
_RULES = {'trials': ('trials',), 'sessions': ('sessions',), 'accuracy': ('accuracy', 'window')}
_GRADUATION_KEYS = ('trials', 'accuracy', 'window', 'sessions')
_GRADUATION_FORMS = '{trials: n}, {accuracy: x, window: n} or {sessions: n}'


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + '...'


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return 'a mapping'
    if isinstance(node, yaml.SequenceNode):
        return 'a list'
    return f'{node.value!r}' if len(node.value) <= 60 else f'{node.value[:57]!r}...'


class _Parser:
    def __init__(self, source: str, loader: yaml.SafeLoader, lookup_task: TaskLookup) -> None:
        self.source, self.loader, self.lookup_task = source, loader, lookup_task

    def error(self, message: str, node: yaml.Node | None, path: str = '') -> ProtocolError:
        line = node.start_mark.line + 1 if node is not None else 1
        return ProtocolError(message, source=self.source, line=line, path=path)

    def value(self, node: yaml.Node, path: str) -> Any:
        """The Python value of a node (scalars and nested parameter values)."""
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            raise self.error(f'bad value: {exc.problem}', node, path) from None
        except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as exc:
            raise self.error(f'bad value {_kind(node)}: {exc}', node, path) from None

    def mapping(self, node: yaml.Node, path: str, allowed: Sequence[str], what: str,
                noun: str = 'key') -> dict[str, tuple]:
        """``{key: (key_node, value_node)}`` of a mapping with only ``allowed`` keys, in file order."""
        listing = ', '.join(allowed) or '(none)'
        if not isinstance(node, yaml.MappingNode):
            raise self.error(f'{what} must be a mapping ({listing}), got {_kind(node)}', node, path)
        try:
            self.loader.flatten_mapping(node)  # resolves YAML merge keys (<<: *base)
        except yaml.MarkedYAMLError as exc:
            raise self.error(f'bad merge: {exc.problem}', node, path) from None
        out: dict[str, tuple] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node, path) if isinstance(key_node, yaml.ScalarNode) else None
            where = f'{path}.{key}' if path and isinstance(key, str) else (key if isinstance(key, str) else path)
            if not isinstance(key, str) or key not in allowed:
                shown = _short(key) if key is not None else _kind(key_node)
                close = difflib.get_close_matches(str(key), allowed, n=1) if isinstance(key, str) else []
                hint = f"did you mean '{close[0]}'? " if close else ''
                raise self.error(f'unknown {noun} {shown} in {what}: {hint}allowed: {listing}', key_node, path)
            if key in out:
                first = out[key][0].start_mark.line + 1
                raise self.error(f'duplicate key (first at line {first})', key_node, where)
            out[key] = (key_node, value_node)
        return out

    def string(self, node: yaml.Node, path: str, what: str) -> str:
        value = self.value(node, path) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, str) or not value.strip():
            got = 'an empty string' if value == '' else _kind(node)
            raise self.error(f'{what} must be a non-empty string, got {got}', node, path)
        return value

    # ---- the document ----------------------------------------------------------------------

    def protocol(self, root: yaml.Node | None, default_name: str | None) -> Protocol:
        if root is None or (isinstance(root, yaml.ScalarNode) and self.value(root, '') is None):
            raise ProtocolError('empty protocol: it needs at least steps: [...]', source=self.source, line=1)
        top = self.mapping(root, '', _TOP_KEYS, 'a protocol')
        if 'name' in top:
            name = self.string(top['name'][1], 'name', 'the protocol name')
        elif default_name:
            name = default_name
        else:
            raise self.error('a protocol read from a string needs name: ...', root)
        description = ''
        if 'description' in top:
            node = top['description'][1]
            given = self.value(node, 'description') if isinstance(node, yaml.ScalarNode) else None
            if given is None:
                given = ''
            if not isinstance(given, str):
                raise self.error(f'must be a string, got {_kind(node)}', node, 'description')
            description = given
        if 'steps' not in top:
            raise self.error('a protocol needs steps: a list of {name, task, parameters, graduation}', root)
        steps_node = top['steps'][1]
        if not isinstance(steps_node, yaml.SequenceNode) or not steps_node.value:
            raise self.error(f'must be a non-empty list of steps, got {_kind(steps_node)}', steps_node, 'steps')
        steps: list[Step] = []
        for i, node in enumerate(steps_node.value):
            step, name_node = self.step(node, f'steps[{i}]')
            for j, other in enumerate(steps):
                if other.name == step.name:
                    raise self.error(f'{step.name!r} is already the name of steps[{j}] (line {other.line}); '
                                     'step names must be unique', name_node, f'steps[{i}].name')
            steps.append(step)
        return Protocol(name=name, steps=tuple(steps), description=description, source=self.source)

    def step(self, node: yaml.Node, path: str) -> tuple[Step, yaml.Node]:
        keys = self.mapping(node, path, _STEP_KEYS, 'a step')
        for required in ('name', 'task'):
            if required not in keys:
                raise self.error(f"a step needs '{required}' (keys: {', '.join(_STEP_KEYS)})", node, path)
        name = self.string(keys['name'][1], f'{path}.name', 'a step name')
        task_node = keys['task'][1]
        task_name = self.string(task_node, f'{path}.task', 'task (a registered task name)')
        try:
            task = self.lookup_task(task_name)
        except TaskError as exc:
            raise self.error(str(exc), task_node, f'{path}.task') from None
        except Exception as exc:  # noqa: BLE001 - a task package that fails to import: say so, not a traceback
            raise self.error(f'cannot load task {task_name!r}: {type(exc).__name__}: {exc}', task_node,
                             f'{path}.task') from None
        parameters = self.parameters(task, task_name, keys.get('parameters'), f'{path}.parameters', node)
        graduation = None
        if 'graduation' in keys:
            graduation = self.graduation(task, task_name, keys['graduation'][1], f'{path}.graduation')
        return Step(name=name, task=task, task_name=task_name, parameters=parameters, graduation=graduation,
                    line=node.start_mark.line + 1), keys['name'][1]

    def parameters(self, task: type[Task], task_name: str, entry: tuple | None, path: str,
                   step_node: yaml.Node) -> dict[str, Any]:
        declared = task.params()
        overrides: dict[str, Any] = {}
        if entry is not None and not _is_null(entry[1]):
            what = f'the parameters of task {task_name!r}'
            for name, (_, value_node) in self.mapping(entry[1], path, tuple(declared), what, 'parameter').items():
                value = self.value(value_node, f'{path}.{name}')
                # Each value on its own first, so the error points at its line; Task.validate below has
                # the last word (it also checks rules between parameters).
                problem = declared[name].check(value)
                if problem:
                    raise self.error(problem, value_node, f'{path}.{name}')
                overrides[name] = value
        try:
            return task.validate(overrides)
        except TaskError as exc:
            raise self.error(str(exc), entry[1] if entry else step_node, path) from None

    def graduation(self, task: type[Task], task_name: str, node: yaml.Node, path: str) -> Graduation | None:
        if _is_null(node):
            return None
        keys = self.mapping(node, path, _GRADUATION_KEYS, f'graduation ({_GRADUATION_FORMS})')
        rules = [k for k in keys if k in _RULES]
        if len(rules) != 1:
            what = 'has none of trials, accuracy, sessions' if not rules else f'has {" and ".join(rules)}'
            raise self.error(f'{what}; a graduation is exactly one of {_GRADUATION_FORMS}', node, path)
        rule = rules[0]
        for extra in keys:
            if extra not in _RULES[rule]:
                raise self.error(f"'{extra}' does not go with '{rule}'; a graduation is exactly one of "
                                 f'{_GRADUATION_FORMS}', keys[extra][0], f'{path}.{extra}')
        for needed in _RULES[rule]:
            if needed not in keys:
                raise self.error(f"'{rule}' needs '{needed}': write {{accuracy: x, window: n}} "
                                 '(accuracy over the last n scored trials)', node, path)
        if rule == 'trials':
            return TrialsGraduation(self.count(keys['trials'][1], f'{path}.trials'))
        if rule == 'sessions':
            return SessionsGraduation(self.count(keys['sessions'][1], f'{path}.sessions'))
        acc_node = keys['accuracy'][1]
        accuracy = self.value(acc_node, f'{path}.accuracy') if isinstance(acc_node, yaml.ScalarNode) else None
        if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)):
            raise self.error(f'expected a float in (0, 1], got {_kind(acc_node)}', acc_node, f'{path}.accuracy')
        if not 0 < accuracy <= 1:
            raise self.error(f'{accuracy!r} is out of range, allowed float in (0, 1]', acc_node, f'{path}.accuracy')
        window = self.count(keys['window'][1], f'{path}.window')
        if task.score_field is None:
            raise self.error(f"task {task_name!r} does not score its trials (no score_field), so it cannot "
                             'graduate on accuracy; use {trials: n} or {sessions: n}', acc_node, f'{path}.accuracy')
        excludes = tuple(dict.fromkeys(('correction', *getattr(task, 'score_excludes', ()))))
        return AccuracyGraduation(float(accuracy), window, task.score_field, excludes)

    def count(self, node: yaml.Node, path: str) -> int:
        value = self.value(node, path) if isinstance(node, yaml.ScalarNode) else None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f'expected an integer >= 1, got {_kind(node)}', node, path)
        if value < 1:
            raise self.error(f'{value} is out of range, allowed int >= 1', node, path)
        return value


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == 'tag:yaml.org,2002:null'


def load_protocol(text: str, *, source: str = '<string>', lookup_task: TaskLookup | None = None,
                  name: str | None = None) -> Protocol:
    """Parse and check a protocol; raises :class:`ProtocolError` (only) naming the line and field.

    ``lookup_task(task_name)`` returns the task class or raises TaskError (default:
    :func:`autopilot_tasks.registry.lookup`, the tasks of the entry-point group ``autopilot.tasks``).
    ``name`` is the protocol's name when the text has no ``name:`` (load_protocol_file passes the stem).
    """
    lookup = lookup_task or registry.lookup
    loader: yaml.SafeLoader | None = None
    try:
        try:
            loader = yaml.SafeLoader(text)  # the reader checks the characters here already
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = ' '.join(str(x) for x in (exc.context, exc.problem) if x) or 'cannot parse'
            line, column = (mark.line + 1, f' (column {mark.column + 1})') if mark else (1, '')
            raise ProtocolError(f'malformed YAML: {problem}{column}', source=source, line=line) from None
        except yaml.YAMLError as exc:  # a ReaderError (e.g. a control character) has a character position
            position = getattr(exc, 'position', None)
            line = text.count('\n', 0, position) + 1 if isinstance(position, int) else 1
            raise ProtocolError(f'malformed YAML: {str(exc).splitlines()[0]}', source=source, line=line) from None
        except RecursionError:
            raise ProtocolError('malformed YAML: nested too deeply', source=source, line=1) from None
        return _Parser(source, loader, lookup).protocol(root, name)
    finally:
        if loader is not None:
            loader.dispose()


def load_protocol_file(path: str | Path, *, lookup_task: TaskLookup | None = None) -> Protocol:
    """Load a protocol file; its name defaults to the file's stem."""
    path = Path(path)
    try:
        text = path.read_text(encoding='utf-8')
    except UnicodeDecodeError as exc:
        raise ProtocolError(f'not UTF-8 text: {exc}', source=str(path)) from None
    except OSError as exc:
        raise ProtocolError(f'cannot read protocol file: {exc.strerror}', source=str(path)) from None
    return load_protocol(text, source=str(path), lookup_task=lookup_task, name=path.stem)


#: A protocol's name: its file name without .yaml.
_NAME = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}')
#: Longest path accepted for a protocol file.
MAX_PATH = 4096


def list_protocols(directory: str | Path) -> dict[str, Path]:
    """``{name: path}`` of the protocol files (``<name>.yaml`` / ``.yml``) in ``directory``, sorted by name."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        return {}
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix in SUFFIXES and path.is_file() and _NAME.fullmatch(path.stem):
            found.setdefault(path.stem, path)
    return found


def protocol_path(name: str, directory: str | Path, *, allow_path: bool = False) -> Path:
    """The file of protocol ``name`` in ``directory`` (``<name>.yaml`` or ``.yml``); with ``allow_path``, ``name``
    may also be the path of a .yaml file. ProtocolError naming the protocols there (and the closest) if none.

    The one lookup of protocol files: pilots take names only (``allow_path`` is for the operator's terminal).
    """
    where = str(directory)
    given = 'the file name without .yaml' + (' or the path of a .yaml file' if allow_path else '')
    if not isinstance(name, str) or not name or '\0' in name:
        raise ProtocolError(f'invalid protocol name {str(name)[:80]!r}: give {given}', source=where)
    if len(name) > MAX_PATH:
        raise ProtocolError(f'the protocol is {len(name)} characters long; at most {MAX_PATH}: give {given}',
                            source=where)
    if allow_path:
        try:
            direct = Path(name).expanduser()
            if direct.suffix in SUFFIXES and direct.is_file():
                return direct
        except (OSError, RuntimeError) as exc:  # a path the OS refuses; ~user of no user
            raise ProtocolError(f'protocol file {name[:80]!r}: {getattr(exc, "strerror", None) or exc}',
                                source=where) from None
    if not _NAME.fullmatch(name):
        raise ProtocolError(f'invalid protocol name {name[:80]!r}: use 1-64 letters, digits, _ . - (the file name '
                            'without .yaml)' + (' or the path of a .yaml file' if allow_path else ''), source=where)
    if not Path(directory).expanduser().is_dir():
        raise ProtocolError(f'unknown protocol {name!r}: {directory} is not a directory (set protocol_dir)',
                            source=where)
    available = list_protocols(directory)
    if name not in available:
        close = difflib.get_close_matches(name, available, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ''
        listing = ', '.join(available) or 'none (no *.yaml files)'
        raise ProtocolError(f'unknown protocol {name!r}: {hint}available: {listing}', source=where)
    return available[name]


def find_protocol(name: str, directory: str | Path, *, lookup_task: TaskLookup | None = None) -> Protocol:
    """Load the protocol ``name`` from ``directory`` (:func:`protocol_path`)."""
    return load_protocol_file(protocol_path(name, directory), lookup_task=lookup_task)
