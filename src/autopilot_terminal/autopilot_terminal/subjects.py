"""Subjects on the terminal: what protocol, step and parameter overrides each one is at, from its history.

A subject's state is never kept anywhere but its file's ``/subject/history`` (kinds ``created``,
``biography``, ``assign``, ``step``, ``parameters``; see docs/hdf5-layout.md): :func:`state_from_history`
replays it, so the file alone says what the subject was doing at any time. Graduations the pilots report
arrive as ``step`` rows through the recorder; a person's decisions come through the terminal's services.

Protocols are files on the terminal (``protocol_dir/<name>.yaml``). The terminal reads only what it needs
to record an assignment (the step names, with YAML errors named by file and line); the pilot validates the
whole protocol (tasks, parameters, graduation) when the terminal loads it there at session start, and its
error names the line and field. Plain Python, no ROS.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SUFFIXES = ('.yaml', '.yml')


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
        else:
            continue
        st.changed_ns = int(row['time_ns'])
    return st


def find_protocol_file(name: str, protocol_dir: Path | str) -> Path:
    """The file of protocol ``name`` (a file stem in ``protocol_dir``, or a path); ProtocolFileError if none."""
    direct = Path(name).expanduser()
    if direct.suffix in SUFFIXES and direct.is_file():
        return direct
    base = Path(protocol_dir).expanduser()
    for suffix in SUFFIXES:
        path = base / f'{name}{suffix}'
        if path.is_file():
            return path
    known = sorted(p.stem for p in base.glob('*') if p.suffix in SUFFIXES) if base.is_dir() else []
    where = f'in {base}' if base.is_dir() else f'({base} is not a directory: set the terminal\'s protocol_dir)'
    raise ProtocolFileError(f'protocol {name!r} not found {where}; known: {", ".join(known) or "none"}')


def read_protocol(name: str, protocol_dir: Path | str) -> ProtocolFile:
    """Read a protocol file: its name (``name:`` key or file stem), text, SHA-256 and step names."""
    path = find_protocol_file(name, protocol_dir)
    try:
        text = path.read_text(encoding='utf-8')
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolFileError(f'{path}: cannot read: {exc}') from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        # An unclosed bracket is found at the end of the file: point at where it was opened instead.
        mark = exc.context_mark or exc.problem_mark
        line = f':{mark.line + 1}' if mark is not None else ''
        raise ProtocolFileError(f'{path}{line}: not valid YAML: {exc.problem}') from exc
    except yaml.YAMLError as exc:
        raise ProtocolFileError(f'{path}: not valid YAML: {exc}') from exc
    if not isinstance(doc, dict) or not isinstance(doc.get('steps'), list) or not doc['steps']:
        raise ProtocolFileError(f'{path}: a protocol is a mapping with a non-empty list `steps` (see '
                                'protocols/2afc_training.yaml)')
    steps = []
    for i, step in enumerate(doc['steps']):
        if not isinstance(step, dict) or not isinstance(step.get('name', step.get('task')), str):
            raise ProtocolFileError(f'{path}: steps[{i}]: each step is a mapping with a `task` (and a `name`)')
        steps.append(str(step.get('name', step.get('task'))))
    proto_name = doc.get('name', path.stem)
    return ProtocolFile(str(proto_name), path, text, hashlib.sha256(text.encode()).hexdigest(), tuple(steps))


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
