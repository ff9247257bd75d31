"""What the terminal and the CLI tell of subjects and protocols: summaries, sessions, history, weights.

Plain Python over an open subject file (``h5py.File``: the writer's, ``SubjectFile.file``, or a reader's,
``SubjectReader.file``), so the terminal reads on its recorder's writer thread through the handle it writes
with (HDF5 keeps one open file per process) and the CLI reads the same way from its own process.
:class:`Catalog` caches what an ended session adds up to (its trials and accuracy), so a refresh of a subject
with hundreds of sessions reads their attributes, not their trial tables. Protocol files are summarised and
validated with the pilots' own code (:func:`.subjects.check_protocol`); saved atomically (:func:`save_protocol`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml

from .recorder import SUBJECT_RE, Recorder, name_error
from .storage import StoreError, fields_from_json, history_rows, weight_rows
from .storage.schema import KEY_COLUMNS
from .subjects import (
    MAX_PROTOCOL_BYTES,
    ProtocolFile,
    ProtocolFileError,
    SubjectState,
    check_protocol,
    parse_protocol,
    state_from_history,
)

#: Failures reading one file: each becomes a problem line, never a failure of the whole listing.
READ_ERRORS = (StoreError, OSError, KeyError, ValueError, RuntimeError, TypeError)


@dataclass(frozen=True)
class SessionInfo:
    """One session of a subject file, with its trial count and accuracy."""

    session_id: str
    pilot: str
    task: str
    protocol: str
    step: int
    step_name: str
    state: str
    started_ns: int
    ended_ns: int
    trials: int
    accuracy: float | None  # fraction correct of the scored trials (correction trials left out); None: not scored


@dataclass
class SubjectInfo:
    """A subject as its file tells it."""

    subject: str
    biography: dict[str, Any]
    state: SubjectState
    history: list[dict[str, Any]]
    sessions: list[SessionInfo]
    weights: list[dict[str, Any]]

    @property
    def trials(self) -> int:
        return sum(s.trials for s in self.sessions)

    @property
    def last(self) -> SessionInfo | None:
        return self.sessions[-1] if self.sessions else None


def accuracy(cols: Mapping[str, np.ndarray]) -> float | None:
    """Fraction correct of the scored trials: ``correct`` (bool) where ``correction`` (bool) is not set, as the
    tasks score (score_excludes) and the summary plot does; None when the task does not score or none counts."""
    correct = cols.get('correct')
    if correct is None or correct.dtype != np.bool_:
        return None
    correction = cols.get('correction')
    scored = ~correction if correction is not None and correction.dtype == np.bool_ else np.ones(len(correct), bool)
    return float(correct[scored].mean()) if scored.any() else None


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _trial_columns(ds: h5py.Dataset) -> dict[str, np.ndarray]:
    """trial_number, correct and correction (those the table has) of the stored rows."""
    ds.refresh()
    names = [n for n in ('trial_number', 'correct', 'correction') if n in (ds.dtype.names or ())]
    arr = ds.fields(names)[()] if len(names) > 1 else None
    if arr is None:
        keys = ds.fields('trial_number')[()]
        return {'trial_number': keys[keys != 0]}
    arr = arr[arr[KEY_COLUMNS['trials']] != 0]
    return {n: arr[n] for n in names}


def read_session(g: h5py.Group, session_id: str) -> SessionInfo:
    """One session group's summary (reads its trial table's key and score columns)."""
    a = g.attrs
    cols = _trial_columns(g['trials']) if 'trials' in g else {}
    n = len(cols['trial_number']) if cols else 0
    return SessionInfo(session_id, _str(a.get('pilot', '')), _str(a.get('task', '')), _str(a.get('protocol', '')),
                       int(a.get('step', 0)), _str(a.get('step_name', '')), _str(a.get('state', '')),
                       int(a.get('started_ns', 0)), int(a.get('ended_ns', 0)), n, accuracy(cols))


#: get_trials answers at most this many trials at once (and 2000 when the caller names no bound).
MAX_TRIALS, DEFAULT_TRIALS = 5000, 2000


@dataclass
class StoredTrials:
    """Stored trials of one session, as :func:`read_trials` finds them."""

    session_id: str
    attrs: dict[str, Any]
    fields: list[tuple[str, int, str]]
    rows: list[dict[str, Any]]
    more: bool


def read_trials(f: h5py.File, session_id: str, first: int, limit: int) -> StoredTrials:
    """Trials ``first``... (trial numbers, at most ``limit``, capped at :data:`MAX_TRIALS`) of ``session_id`` ("" =
    the newest session), in trial-number order; KeyError naming the sessions there when it is unknown."""
    sessions = f['sessions']
    if not session_id:
        if not len(sessions):
            raise KeyError('the subject has no session yet')
        session_id = max(sessions, key=lambda sid: (int(sessions[sid].attrs.get('started_ns', 0)), sid))
    if session_id not in sessions:
        known = ', '.join(sorted(sessions)[-5:]) or 'none'
        raise KeyError(f'no session {session_id!r} (the newest: {known})')
    g = sessions[session_id]
    attrs: dict[str, Any] = {k: _str(g.attrs.get(k, '')) for k in ('pilot', 'task', 'protocol', 'step_name')}
    if 'trials' not in g:
        return StoredTrials(session_id, attrs, [], [], False)
    ds = g['trials']
    ds.refresh()
    fields = fields_from_json(_str(ds.attrs['fields']))
    numbers = ds.fields('trial_number')[()]
    at = np.flatnonzero((numbers != 0) & (numbers >= max(first, 1)))
    at = at[np.argsort(numbers[at], kind='stable')]
    n = min(limit or DEFAULT_TRIALS, MAX_TRIALS)
    chosen = np.sort(at[:n])
    table = ds[chosen] if len(chosen) else ds[:0]
    order = np.argsort(table['trial_number'], kind='stable')
    names = table.dtype.names or ()
    rows = [{name: table[i][name] for name in names} for i in order]
    return StoredTrials(session_id, attrs, fields, rows, len(at) > n)


@dataclass
class Catalog:
    """Reads subjects from open files; keeps the summaries of sessions that ended (they change no more)."""

    #: (file path, session id) -> (trial table rows when read, its summary)
    _ended: dict[tuple[str, str], tuple[int, SessionInfo]] = field(default_factory=dict)

    def sessions(self, f: h5py.File) -> list[SessionInfo]:
        """Every session of the file, oldest first (by start, then id)."""
        out = []
        for sid, g in f['sessions'].items():
            key = (f.filename, sid)
            # A trial resent after the end (a restarted terminal) grows the table: the count tells.
            rows = g['trials'].shape[0] if 'trials' in g else 0
            have = self._ended.get(key)
            if have is not None and have[0] == rows:
                out.append(have[1])
                continue
            info = read_session(g, sid)
            if info.state not in ('running', ''):
                self._ended[key] = (rows, info)
            out.append(info)
        return sorted(out, key=lambda s: (s.started_ns, s.session_id))

    def subject(self, f: h5py.File, subject: str = '') -> SubjectInfo:
        """Everything of one subject file."""
        name = subject or _str(f.attrs['subject'])
        history = history_rows(f)
        return SubjectInfo(name, json.loads(f['subject'].attrs['biography']), state_from_history(name, history),
                           history, self.sessions(f), weight_rows(f))

    def forget(self, path: str) -> None:
        """Drop the cache of one file (it was replaced or removed)."""
        self._ended = {k: v for k, v in self._ended.items() if k[0] != path}


def scan(recorder: Recorder, catalog: Catalog) -> tuple[list[SubjectInfo], list[str]]:
    """Every subject file of the recorder's data_dir, read through the recorder's own handles (run it on the
    writer thread: inside :meth:`.recorder.Recorder.call`): (subjects by name, problems: file, reason, fix)."""
    subjects, problems = [], []
    for path in sorted(recorder.data_dir.glob('*.h5'), key=lambda p: p.stem):
        if not SUBJECT_RE.match(path.stem):
            problems.append(f'{path}: not a subject name (1-64 letters, digits, "_" or "-"); rename or move it')
            continue
        try:
            subjects.append(catalog.subject(recorder.open_file(path.stem).file, path.stem))
        except READ_ERRORS as exc:  # one bad file must not hide the others
            catalog.forget(str(path))
            problems.append(str(exc) if str(path) in str(exc) else f'{path}: {exc}')
    return subjects, problems


# -- protocols ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProtocolInfo:
    """A protocol file of protocol_dir: its steps and tasks, and why the pilots would refuse it ('' if not)."""

    name: str
    path: Path
    sha256: str
    steps: tuple[str, ...]
    tasks: tuple[str, ...]
    error: str
    text: str = ''


def _tasks(text: str) -> tuple[str, ...]:
    doc = yaml.safe_load(text)
    return tuple(str(s.get('task', '')) for s in doc['steps'])


def protocol_info(path: Path, text: str | None = None) -> ProtocolInfo:
    """The summary of a protocol file (or of ``text`` as if it were that file), validated as the pilots would."""
    import hashlib

    name = path.stem
    try:
        if text is None:
            size = path.stat().st_size
            if size > MAX_PROTOCOL_BYTES:
                raise ProtocolFileError(f'{path}: {size} bytes; a protocol file is at most {MAX_PROTOCOL_BYTES} bytes')
            text = path.read_text(encoding='utf-8')
    except (OSError, UnicodeDecodeError) as exc:
        return ProtocolInfo(name, path, '', (), (), f'{path}: cannot read: {exc}')
    except ProtocolFileError as exc:
        return ProtocolInfo(name, path, '', (), (), str(exc))
    digest = hashlib.sha256(text.encode()).hexdigest()
    try:
        parsed: ProtocolFile = parse_protocol(text, path)
    except ProtocolFileError as exc:
        return ProtocolInfo(name, path, digest, (), (), str(exc), text)
    tasks = _tasks(text)
    try:
        checked = check_protocol(parsed)
    except ProtocolFileError as exc:
        return ProtocolInfo(name, path, digest, parsed.steps, tasks, str(exc), text)
    error = '' if parsed.name == name else (f'{path}: name: {parsed.name!r} differs from the file name {name!r}; '
                                           'make them the same (assign_protocol takes the file name)')
    return ProtocolInfo(name, path, digest, checked.steps, tasks, error, text)


def protocol_files(protocol_dir: Path) -> list[Path]:
    """The protocol files of ``protocol_dir`` (``*.yaml``, ``*.yml``), by name; [] when it does not exist."""
    if not protocol_dir.is_dir():
        return []
    return sorted((p for p in protocol_dir.iterdir() if p.suffix in ('.yaml', '.yml') and p.is_file()),
                  key=lambda p: p.stem)


def protocol_name_error(name: str) -> str | None:
    """Why ``name`` cannot name a protocol file (the rule of subject names), or None."""
    return name_error(name, 'protocol name', 'valid', 'the file <protocol_dir>/<name>.yaml')


def find_protocol(protocol_dir: Path, name: str) -> Path:
    """The file of protocol ``name``; ValueError naming the known ones."""
    if (why := protocol_name_error(name)) is not None:
        raise ValueError(why)
    files = protocol_files(protocol_dir)
    for p in files:
        if p.stem == name:
            return p
    known = ', '.join(p.stem for p in files) or 'none'
    raise ValueError(f'unknown protocol {name!r} in {protocol_dir} (known: {known}); save it first '
                     f'(`autopilot protocol save {name} FILE`)')


def save_protocol(protocol_dir: Path, name: str, text: str, overwrite: bool,
                  sync: Callable[[int], None] = os.fsync) -> Path:
    """Write ``text`` as ``<protocol_dir>/<name>.yaml`` once it validates as the pilots would; atomically (a
    temporary file, then a rename: a reader sees the old file or the new one). ValueError naming the line and
    field, or the existing file."""
    if (why := protocol_name_error(name)) is not None:
        raise ValueError(why)
    size = len(text.encode('utf-8', 'surrogatepass'))
    if size > MAX_PROTOCOL_BYTES:
        raise ValueError(f'the protocol is {size} bytes; at most {MAX_PROTOCOL_BYTES} are accepted')
    path = protocol_dir / f'{name}.yaml'
    others = [p for p in protocol_files(protocol_dir) if p.stem == name and p != path]
    if others:
        raise ValueError(f'{others[0]} exists already under that name; remove or rename it first')
    if path.exists() and not overwrite:
        raise ValueError(f'{path} exists already; save with overwrite to replace it')
    info = protocol_info(path, text)
    if info.error:
        raise ValueError(info.error)
    protocol_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=protocol_dir, prefix=f'.{name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as out:
            out.write(text)
            out.flush()
            sync(out.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if the file appeared meanwhile: never replaced unless asked
            os.unlink(tmp)
    except FileExistsError:
        os.unlink(tmp)
        raise ValueError(f'{path} exists already; save with overwrite to replace it') from None
    except BaseException:
        with_tmp = Path(tmp)
        with_tmp.unlink(missing_ok=True)
        raise
    return path


def weight_ratio(weights: list[dict[str, Any]]) -> str:
    """The newest weight against the baseline (the first), as a reply says it."""
    if not weights:
        return 'never weighed'
    base, last = weights[0]['grams'], weights[-1]['grams']
    if len(weights) == 1:
        return f'{last:g} g (the baseline)'
    return f'{last:g} g, {last / base:.0%} of the baseline {base:g} g'
