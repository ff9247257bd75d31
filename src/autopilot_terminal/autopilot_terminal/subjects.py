"""Subjects on the terminal: what protocol, step and parameter overrides each one is at, from its history.

A subject's state is never kept anywhere but its file's ``/subject/history`` (kinds ``created``,
``biography``, ``assign``, ``step``, ``parameters``, ``roster``; ``note`` changes nothing; see
docs/hdf5-layout.md): :func:`state_from_history` replays it, so the file alone says what the subject was doing at any time. Graduations the pilots report
arrive as ``step`` rows through the recorder; a person's decisions come through the terminal's services.

Protocols are files on the terminal (``protocol_dir/<name>.yaml``). :func:`read_protocol` reads what the
terminal records of an assignment (text, hash, step names, with YAML errors named by file and line);
:func:`check_protocol` then validates the whole protocol (tasks, parameters, graduation) with the pilot's own
code (``autopilot_tasks.protocol`` and its task registry: plain Python, no node), so an assignment the
terminal accepts is one the pilot accepts, and the error names the line and field as the pilot's would.

Everything here takes text from service requests: names are bounded before they touch the file system
(they become file names), and :func:`parse_biography` bounds JSON by size and depth before parsing it (a
recursive parser and encoder: 100,000 nested brackets would otherwise end the process). Plain Python, no ROS.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from autopilot_core.checks import InputError, text

#: Paths in requests (data directories, protocol files): at most this long (the OS refuses longer ones).
MAX_PATH = 4096
#: Protocol files larger than this are refused unread (a path may name any file on the terminal's host).
MAX_PROTOCOL_BYTES = 1 << 20
#: The ``name:`` of a protocol is recorded with every assignment and session: at most this long.
MAX_PROTOCOL_NAME = 64
#: A biography: JSON text of at most this many characters, nested at most this deep.
MAX_BIOGRAPHY = 16384
MAX_JSON_DEPTH = 32


class ProtocolFileError(ValueError):
    """A protocol file that cannot be assigned: ``str()`` names the file (and line) and what is wrong."""


@dataclass(frozen=True)
class ProtocolFile:
    """A protocol as the terminal keeps it: its text (sent to the pilot) and step names."""

    name: str
    path: Path
    text: str
    sha256: str
    steps: tuple[str, ...]


@dataclass
class SubjectState:
    """Where a subject is, replayed from its history."""

    subject: str
    protocol: str = ''
    protocol_file: str = ''
    protocol_sha256: str = ''
    steps: list[str] = field(default_factory=list)
    step: int = 0
    step_name: str = ''
    parameters: dict[str, Any] = field(default_factory=dict)
    assigned_ns: int = 0
    changed_ns: int = 0
    pilot: str = ''  # the rig the lab's roster trains it on (history kind roster)

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def state_from_history(subject: str, rows: Sequence[Mapping[str, Any]]) -> SubjectState:
    """Replay ``/subject/history`` rows (oldest first; ``detail`` parsed) into the subject's current state."""
    st = SubjectState(subject)
    for row in rows:
        kind, detail = row['kind'], row.get('detail') or {}
        if kind == 'assign':
            st.protocol, st.step, st.step_name = row['protocol'], int(row['step']), row['step_name']
            st.protocol_file = detail.get('file', '')
            st.protocol_sha256 = detail.get('sha256', '')
            st.steps = list(detail.get('steps', []))
            st.parameters = {}  # overrides belong to the protocol they were set for
            st.assigned_ns = int(row['time_ns'])
        elif kind == 'step' and row['protocol'] == st.protocol:
            st.step, st.step_name = int(row['step']), row['step_name']
        elif kind == 'parameters':
            st.parameters.update(detail.get('set', {}))
            for name in detail.get('removed', []):
                st.parameters.pop(name, None)
        elif kind == 'roster':
            st.pilot = str(detail.get('pilot', ''))
        else:
            continue
        st.changed_ns = int(row['time_ns'])
    return st


def _shown(value: str, limit: int = 80) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else f'{shown[:limit - 20]}... ({len(value)} characters)'


def read_protocol(name: str, protocol_dir: Path | str) -> ProtocolFile:
    """Read a protocol file: its name (``name:`` key or file stem), text, SHA-256 and step names.

    ``name`` is a protocol name in ``protocol_dir`` or the path of a .yaml file, found by the pilots' own lookup
    (:func:`autopilot_tasks.protocol.protocol_path`).
    """
    from autopilot_tasks.protocol import ProtocolError, protocol_path

    try:
        path = protocol_path(name, protocol_dir, allow_path=True)
    except ProtocolError as exc:
        raise ProtocolFileError(str(exc)) from None
    try:
        size = path.stat().st_size
        if size > MAX_PROTOCOL_BYTES:
            raise ProtocolFileError(f'{path}: {size} bytes; a protocol file is at most {MAX_PROTOCOL_BYTES} bytes '
                                    '(is it a protocol?)')
        content = path.read_text(encoding='utf-8')
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolFileError(f'{path}: cannot read: {exc}') from exc
    return parse_protocol(content, path)


def parse_protocol(content: str, path: Path) -> ProtocolFile:
    """``content`` read as the protocol file ``path`` (step names checked, not the tasks: :func:`check_protocol`);
    ProtocolFileError naming the file and line otherwise."""
    try:
        doc = yaml.safe_load(content)
    except yaml.MarkedYAMLError as exc:
        # An unclosed bracket is found at the end of the file: point at where it was opened instead.
        mark = exc.context_mark or exc.problem_mark
        line = f':{mark.line + 1}' if mark is not None else ''
        raise ProtocolFileError(f'{path}{line}: not valid YAML: {exc.problem}') from exc
    except yaml.YAMLError as exc:
        raise ProtocolFileError(f'{path}: not valid YAML: {exc}') from exc
    except RecursionError:
        raise ProtocolFileError(f'{path}: not valid YAML: nested too deeply') from None
    if not isinstance(doc, dict) or not isinstance(doc.get('steps'), list) or not doc['steps']:
        raise ProtocolFileError(f'{path}: a protocol is a mapping with a non-empty list `steps` (see '
                                'protocols/2afc_training.yaml)')
    steps = []
    for i, step in enumerate(doc['steps']):
        if not isinstance(step, dict) or not isinstance(step.get('name', step.get('task')), str):
            raise ProtocolFileError(f'{path}: steps[{i}]: each step is a mapping with a `task` (and a `name`)')
        steps.append(str(step.get('name', step.get('task'))))
    proto_name = str(doc.get('name', path.stem))
    if not 0 < len(proto_name) <= MAX_PROTOCOL_NAME or not proto_name.isprintable():
        raise ProtocolFileError(f'{path}: name: {_shown(proto_name)} is not a protocol name: 1-{MAX_PROTOCOL_NAME} '
                                'printable characters')
    return ProtocolFile(proto_name, path, content, hashlib.sha256(content.encode()).hexdigest(), tuple(steps))


def check_protocol(proto: ProtocolFile) -> ProtocolFile:
    """``proto`` checked as the pilot checks it when the terminal loads it there (its tasks, parameters and
    graduation rules, by the pilot's own :func:`autopilot_tasks.protocol.load_protocol` and task registry);
    ProtocolFileError with the pilot's message (file, line and field) otherwise. The step names are the
    pilot's. The terminal's host needs the same task packages as the pilots (entry-point group autopilot.tasks).
    """
    try:
        from autopilot_tasks import registry
        from autopilot_tasks.protocol import ProtocolError, load_protocol
    except ImportError as exc:  # the terminal checks protocols with the pilot's code: it must be installed
        raise ProtocolFileError(f'cannot check {proto.path}: the pilot package is not installed on the terminal '
                                f'host ({exc}); install autopilot_tasks there too') from None
    try:
        loaded = load_protocol(proto.text, source=str(proto.path), lookup_task=registry.lookup, name=proto.name)
    except ProtocolError as exc:
        raise ProtocolFileError(str(exc)) from None
    return replace(proto, steps=tuple(step.name for step in loaded.steps))


def json_depth(value: str) -> int:
    """How deeply brackets nest in JSON text, outside its strings: one linear pass, no recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for c in value:
        if in_string:
            if escaped:
                escaped = False
            elif c == '\\':
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in '[{':
            depth += 1
            deepest = max(deepest, depth)
        elif c in ']}':
            depth -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise InputError(f'biography_json: {name} is not a JSON number; write null for a value not known')


def _int(literal: str) -> int:
    if len(literal) > 40:  # Python converts long digit strings in quadratic time
        raise InputError(f'biography_json: an integer of {len(literal)} digits; write it as a string')
    return int(literal)


def _finite(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise InputError(f'biography_json: {literal[:40]} is too large for a number (a double)')
    return value


def parse_biography(value: str) -> dict[str, Any]:
    """A biography (a JSON object, "" for none) from a request; InputError naming the limit otherwise."""
    text('biography_json', value, MAX_BIOGRAPHY)
    if not value.strip():
        return {}
    if (depth := json_depth(value)) > MAX_JSON_DEPTH:
        raise InputError(f'biography_json is nested {depth} levels deep; at most {MAX_JSON_DEPTH} are accepted')
    try:
        bio = json.loads(value, parse_constant=_no_constant, parse_float=_finite, parse_int=_int)
    except json.JSONDecodeError as exc:
        raise InputError(f'biography_json is not valid JSON: {exc}') from None
    if not isinstance(bio, dict):
        raise InputError('biography_json must be a JSON object, e.g. {"species": "Mus musculus"}')
    return bio


def check_biography_size(bio: Mapping[str, Any]) -> None:
    """InputError when a biography (e.g. one merged from updates) would be larger than :data:`MAX_BIOGRAPHY`."""
    size = len(json.dumps(bio, ensure_ascii=False, allow_nan=True))
    if size > MAX_BIOGRAPHY:
        raise InputError(f'the biography would be {size} characters of JSON; at most {MAX_BIOGRAPHY} are accepted '
                         '(remove keys: set them to null)')


def check_step(protocol: ProtocolFile | SubjectState, step: int) -> str:
    """The name of ``step`` of a protocol; ValueError naming the allowed range."""
    steps = protocol.steps
    if not steps:
        raise ValueError('the subject has no protocol: assign one first (`autopilot subject assign SUBJECT '
                         'PROTOCOL`)')
    if not 0 <= step < len(steps):
        raise ValueError(f'step {step} does not exist: the protocol has steps 0..{len(steps) - 1} '
                         f'({", ".join(f"{i}: {s}" for i, s in enumerate(steps))})')
    return steps[step]
