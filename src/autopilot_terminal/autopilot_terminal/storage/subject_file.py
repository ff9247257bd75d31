"""SubjectFile: the single writer of one subject's HDF5 file (history, sessions, typed trial tables, events,
a bag of raw messages, streams, video frame tables, conflicts).

The layout and the reasons behind it are ``docs/hdf5-layout.md``. A SubjectFile holds the writer lock
(:mod:`.locking`) for its lifetime, so a second writer gets a StoreError instead of interleaved writes; readers
(:mod:`.reader`) open the file with SWMR at any time, from other processes.

Every batch is written in SWMR mode and flushed, so a SIGKILL keeps every batch whose call returned; calls
whose result the Terminal acknowledges (:meth:`SubjectFile.add_trials`, :meth:`SubjectFile.add_steps`) also
fsync by default. Resent trials and step changes are recognised by number and not written again. A new
session, schema, topic, attribute or a widened string column costs a structure window (:mod:`.swmr`).
:meth:`SubjectFile.open` with ``recover=True`` repairs a file a killed writer left (:mod:`.recovery`).
Plain Python on h5py; one thread per :class:`SubjectFile`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from . import locking
from .errors import StoreError, open_error
from .recovery import clear_open_flag, marked_open, trim_crashed
from .rows import Rows, count, new_rows, optional_columns
from .schema import (
    CONFLICT_COLUMNS,
    EVENT_COLUMNS,
    EVENT_KINDS,
    FORMAT,
    FORMAT_VERSION,
    HISTORY_COLUMNS,
    HISTORY_KINDS,
    INDEX_COLUMNS,
    LATER_TRIAL_COLUMNS,
    LIBVER,
    MAX_CONFLICT_BYTES,
    MAX_CONFLICTS,
    MAX_NOTE,
    REQUIRED,
    SESSION_STATES,
    STEP_COLUMNS,
    STRUCTURE_COLUMNS,
    VIDEO_COLUMNS,
    VIDEO_END_ATTRS,
    VIDEO_KEY,
    VIDEO_START_ATTRS,
    VIDEO_STATES,
    WEIGHT_COLUMNS,
    WEIGHT_RANGE_G,
    WEIGHT_WHEN,
    Field,
    check_fields,
    check_format,
    fields_from_json,
    fields_json,
    table_dtype,
    trial_dtype,
)
from .swmr import SwmrWriter, create_table, h5_errors, log_structure

_BAG_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class TopicSpec:
    """What the bag records about a topic (the metadata rosbag2/MCAP need to replay or export it)."""

    topic: str
    type: str  # pkg/msg/Name
    interface_text: str  # full definition with nested types, as `ros2 interface show` prints it
    type_hash: str  # RIHS01_...
    qos_json: str  # the publisher's QoS as JSON text


@dataclass
class _Session:
    fields: list[Field] | None = None
    trial_numbers: set[int] = field(default_factory=set)
    step_seqs: set[int] = field(default_factory=set)
    topics: dict[str, str] = field(default_factory=dict)  # topic -> bag group name


def _valid_key(name: str) -> None:
    if not name or '/' in name or name in ('.', '..') or len(name) > 128:
        raise StoreError(f'invalid session id {name!r}: 1-128 characters, no "/"')


def _valid_table_name(name: Any, where: str) -> None:
    if not isinstance(name, str) or not name or '/' in name or name in ('.', '..') or len(name) > 255:
        raise StoreError(f'{where}: invalid name: 1-255 characters, no "/"')


def _video_attrs(attrs: Mapping[str, Any], spec: Mapping[str, tuple[type, Any]], where: str) -> dict[str, Any]:
    """``attrs`` checked against ``spec`` (name -> (type, default)), defaults filled in."""
    unknown = sorted(set(attrs) - set(spec))
    if unknown:
        raise StoreError(f'{where}: unknown attributes {unknown} (known: {sorted(spec)})')
    out: dict[str, Any] = {}
    for key, (kind, default) in spec.items():
        value = attrs.get(key, default)
        if value is REQUIRED:
            raise StoreError(f'{where}: attribute {key!r} is required')
        if value is None and key not in attrs:
            out[key] = None  # optional in a summary: left as it was
            continue
        ok = (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
              if kind is float else
              isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) if kind is int else
              isinstance(value, str) and '\0' not in value)
        if not ok:
            raise StoreError(f'{where}: attribute {key!r} needs {kind.__name__}, got {value!r:.80}')
        out[key] = kind(value)
    return out


def _video_attr(value: Any) -> Any:
    return np.int64(value) if isinstance(value, int) else np.float64(value) if isinstance(value, float) else value


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f'{what} is not JSON-serialisable: {exc}') from exc


def _topic_spec(given: TopicSpec | Mapping[str, Any]) -> TopicSpec:
    """``given`` as a TopicSpec, checked; StoreError naming what is wrong."""
    if isinstance(given, TopicSpec):
        spec = given
    else:
        try:
            spec = TopicSpec(**given)
        except TypeError as exc:
            raise StoreError(f'bad topic spec {dict(given)!r}: needs topic, type, interface_text, type_hash, '
                             'qos_json') from exc
    for name in ('topic', 'type', 'interface_text', 'type_hash', 'qos_json'):
        if not isinstance(getattr(spec, name), str):
            raise StoreError(f'topic spec {spec.topic!r}: {name} must be a str')
    if not spec.topic.startswith('/'):
        raise StoreError(f'topic {spec.topic!r}: give the fully qualified name (starting with "/")')
    try:
        json.loads(spec.qos_json)
    except ValueError as exc:
        raise StoreError(f'topic {spec.topic!r}: qos_json is not JSON: {exc}') from exc
    return spec


class SubjectFile(SwmrWriter):
    """The single writer of one subject's HDF5 file. Use :meth:`create` or :meth:`open`, then :meth:`close`."""

    def __init__(self, path: Path, lock_fd: int, f: h5py.File) -> None:
        super().__init__(path, lock_fd, f)
        self._sessions: dict[str, _Session] = {}
        #: True when :meth:`open` repaired the file (a writer had died with it open).
        self.recovered = False

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def create(cls, path: Path | str, subject: str, biography: Mapping[str, Any] | None = None,
               created_ns: int | None = None) -> SubjectFile:
        """Create a new subject file; StoreError if ``path`` exists (a subject file is never overwritten)."""
        path = Path(path)
        if not subject or not isinstance(subject, str):
            raise StoreError(f'{path}: subject must be a non-empty str')
        bio_text = _json(dict(biography or {}), f'{path}: biography')
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError as exc:
            raise StoreError(f'{path}: exists already; open it with SubjectFile.open (a subject file is never '
                             'overwritten)') from exc
        except OSError as exc:
            raise StoreError(f'{path}: cannot create: {exc}') from exc
        fd = locking.lock(path)
        created_ns = time.time_ns() if created_ns is None else int(created_ns)
        try:
            f = h5py.File(path, 'w', libver=LIBVER, locking=False)
            f.attrs['format'] = FORMAT
            f.attrs['format_version'] = np.int64(FORMAT_VERSION)
            f.attrs['subject'] = subject
            f.attrs['created_ns'] = np.int64(created_ns)
            f.create_group('subject').attrs['biography'] = bio_text
            create_table(f['subject'], 'history', table_dtype(HISTORY_COLUMNS))
            f.create_group('sessions')
            create_table(f, 'structure', table_dtype(STRUCTURE_COLUMNS))
            log_structure(f, 'create')
            f.swmr_mode = True
        except (OSError, RuntimeError, ValueError) as exc:
            path.unlink(missing_ok=True)  # ours, half-made
            os.close(fd)
            raise StoreError(f'{path}: cannot create: {exc}') from exc
        self = cls(path, fd, f)
        self.add_history('created', detail={'subject': subject, 'biography': dict(biography or {})},
                         time_ns=created_ns)
        return self

    @classmethod
    def open(cls, path: Path | str, *, recover: bool = False) -> SubjectFile:
        """Open an existing subject file for writing.

        A file a writer left marked open (it was killed or crashed) raises StoreError naming the fix unless
        ``recover`` is true: then ``h5clear`` repairs its superblock (:mod:`.recovery`), rows a crash left
        half-written are trimmed from the ends of the tables and :attr:`recovered` is set. Every batch flushed
        before the crash is kept.
        """
        path = Path(path)
        if not path.exists():
            raise open_error(path, FileNotFoundError(path))
        if locking.read_here(locking.file_key(path)):
            raise StoreError(f'{path}: a SubjectReader of this process has it open; close it before writing (HDF5 '
                             'shares one open file per process, which would stop the writer leaving SWMR mode)')
        fd = locking.lock(path)  # from here no other SubjectFile writes it: a set mark is stale
        try:
            stale = marked_open(path)
            if stale and not recover:
                raise StoreError(f'{path}: was left marked open for writing by a writer that stopped without closing '
                                 'it (killed or crashed; every batch it flushed is intact). Recover with '
                                 f'SubjectFile.open(path, recover=True), or `h5clear -s --increment=0 {path}` '
                                 '(package hdf5-tools), then open it again')
            if stale:
                clear_open_flag(path)
            try:  # check what it is before opening it for writing
                with h5py.File(path, 'r', locking=False) as probe:
                    check_format(probe, path)
                f = h5py.File(path, 'r+', libver=LIBVER, locking=False)
            except (OSError, RuntimeError, KeyError) as exc:
                raise open_error(path, exc) from exc
            try:
                if stale:
                    trim_crashed(f)
                    log_structure(f, 'recover')
                    f.close()  # a fresh metadata cache before SWMR: see _restructure
                    f = h5py.File(path, 'r+', libver=LIBVER, locking=False)
                f.swmr_mode = True
            except (OSError, RuntimeError, ValueError) as exc:
                f.close()
                raise StoreError(f'{path}: cannot start writing: {exc}') from exc
        except BaseException:
            os.close(fd)
            raise
        self = cls(path, fd, f)
        self.recovered = stale
        return self

    def __enter__(self) -> SubjectFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- subject ----------------------------------------------------------------------------

    @property
    @h5_errors
    def subject(self) -> str:
        return str(self.file.attrs['subject'])

    @property
    @h5_errors
    def biography(self) -> dict[str, Any]:
        return json.loads(self.file['subject'].attrs['biography'])

    @h5_errors
    def set_biography(self, biography: Mapping[str, Any], time_ns: int | None = None) -> None:
        """Replace the biography (species, sex, dob, genotype, ... free keys) and log it in the history."""
        text = _json(dict(biography), f'{self.path}: biography')
        with self._restructure('biography'):
            self.file['subject'].attrs['biography'] = text
        self.add_history('biography', detail=dict(biography), time_ns=time_ns)

    @h5_errors
    def add_history(self, kind: str, *, protocol: str = '', step: int = 0, step_name: str = '',
                    detail: Mapping[str, Any] | None = None, time_ns: int | None = None, sync: bool = True) -> None:
        """Append one row to /subject/history (kind: one of :data:`HISTORY_KINDS`)."""
        if kind not in HISTORY_KINDS:
            raise StoreError(f'{self.path}: history kind {kind!r} is not one of {HISTORY_KINDS}')
        time_ns = time.time_ns() if time_ns is None else time_ns
        row = {'time_ns': time_ns, 'kind': kind, 'protocol': protocol,
               'step': step, 'step_name': step_name, 'detail': _json(dict(detail or {}), 'history detail')}
        self._append('subject/history', [row], f'{self.path}: history', sync, positive='time_ns')

    @h5_errors
    def add_weight(self, grams: float, when: str = 'check', session_id: str = '', *, time_ns: int | None = None,
                   sync: bool = True) -> None:
        """Append a weighing to /subject/weights (made with the first one: a structure window).

        ``grams``: finite, strictly inside :data:`WEIGHT_RANGE_G`; ``when``: one of :data:`WEIGHT_WHEN`;
        ``session_id``: the session it belongs to ('' for none; not checked: a start weight precedes its session).
        """
        where = f'{self.path}: weight'
        lo, hi = WEIGHT_RANGE_G
        if isinstance(grams, (bool, np.bool_)) or not isinstance(grams, (int, float, np.integer, np.floating)) \
                or not math.isfinite(grams) or not lo < grams < hi:
            raise StoreError(f'{where}: {grams!r:.40} g is not a weight: a finite number of grams in ({lo:g}, {hi:g})')
        if when not in WEIGHT_WHEN:
            raise StoreError(f'{where}: when {when!r:.40} is not one of {WEIGHT_WHEN}')
        if not isinstance(session_id, str) or len(session_id.encode('utf-8', 'replace')) > 64 or '/' in session_id:
            raise StoreError(f'{where}: session id {session_id!r:.80} is not one: at most 64 bytes, no "/"')
        if 'weights' not in self.file['subject']:
            with self._restructure('weights'):
                create_table(self.file['subject'], 'weights', table_dtype(WEIGHT_COLUMNS))
        row = {'time_ns': time.time_ns() if time_ns is None else time_ns, 'grams': float(grams), 'when': when,
               'session_id': session_id}
        self._append('subject/weights', [row], where, sync, positive='time_ns')

    def add_note(self, text: str, session_id: str = '', *, protocol: str = '', step: int = 0, step_name: str = '',
                 time_ns: int | None = None) -> None:
        """A free-text note (at most :data:`MAX_NOTE` characters) as history kind ``note``."""
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_NOTE:
            raise StoreError(f'{self.path}: a note is 1-{MAX_NOTE} characters of text, got '
                             f'{len(text) if isinstance(text, str) else type(text).__name__}')
        self.add_history('note', protocol=protocol, step=step, step_name=step_name,
                         detail={'text': text, 'session_id': session_id}, time_ns=time_ns)

    # -- sessions ---------------------------------------------------------------------------

    @h5_errors
    def begin_session(self, session_id: str, meta: Mapping[str, Any]) -> bool:
        """Create a session's groups and tables; True if new, False if it existed (a restarted recorder).

        ``meta``: pilot, task, protocol, step, step_name, started_ns (session attributes); ``fields``: the
        task's trial fields [(name, TrialField type, unit)]; ``topics``: [TopicSpec | dict] to record;
        ``provenance``: {name: JSON-able}. Whatever is known here is created in this one structure window; a
        schema or topic learnt later costs another (:meth:`set_trial_fields`, :meth:`add_topic`).
        """
        _valid_key(session_id)
        where = f'{self.path}: session {session_id}'
        known = {'pilot', 'task', 'protocol', 'step', 'step_name', 'started_ns', 'fields', 'topics', 'provenance',
                 'steps'}
        if set(meta) - known:
            raise StoreError(f'{where}: unknown meta keys {sorted(set(meta) - known)} (known: {sorted(known)})')
        fields = check_fields(meta['fields'], where) if meta.get('fields') is not None else None
        topics = [_topic_spec(t) for t in meta.get('topics') or ()]
        provenance = {k: _json(v, f'{where}: provenance {k!r}') for k, v in (meta.get('provenance') or {}).items()}
        try:
            step, started_ns = int(meta.get('step', 0)), int(meta.get('started_ns') or time.time_ns())
        except (TypeError, ValueError) as exc:
            raise StoreError(f'{where}: meta step and started_ns must be ints: {exc}') from exc
        attrs: dict[str, Any] = {'pilot': str(meta.get('pilot', '')), 'task': str(meta.get('task', '')),
                                 'protocol': str(meta.get('protocol', '')), 'step': np.int64(step),
                                 'step_name': str(meta.get('step_name', '')), 'started_ns': np.int64(started_ns)}
        if meta.get('steps') is not None:  # the protocol's step names: what the terminal accepts steps against
            steps = meta['steps']
            if isinstance(steps, (str, bytes)) or not all(isinstance(n, str) for n in steps):
                raise StoreError(f'{where}: meta steps must be a list of step names, got {steps!r:.80}')
            attrs['steps'] = _json(list(steps), f'{where}: steps')
        if session_id in self.file['sessions']:
            self._state(session_id)
            if fields is not None:
                self.set_trial_fields(session_id, fields)
            self.add_topics(session_id, topics)
            if provenance:
                self._set_provenance(session_id, provenance)
            return False
        with self._restructure(f'begin_session {session_id}'):
            g = self.file['sessions'].create_group(session_id)
            g.attrs.update(attrs)
            g.attrs['subject'] = self.subject
            g.attrs['ended_ns'] = np.int64(0)
            g.attrs['state'] = 'running'
            events = g.create_group('events')
            for kind in EVENT_KINDS:
                create_table(events, kind, table_dtype(EVENT_COLUMNS[kind]))
            create_table(g, 'steps', table_dtype(STEP_COLUMNS))
            g.create_group('bag')
            g.create_group('provenance').attrs.update(provenance)
            state = _Session()
            if fields is not None:
                self._create_trials(g, fields)
                state.fields = fields
            for spec in topics:
                if spec.topic not in state.topics:
                    state.topics[spec.topic] = self._create_topic(g['bag'], spec)
        self._sessions[session_id] = state
        return True

    @h5_errors
    def set_trial_fields(self, session_id: str, fields: Sequence[Sequence[Any]]) -> None:
        """Declare the trial schema of a session begun without one (a structure window). Fixed once set."""
        where = f'{self.path}: session {session_id}'
        fields = check_fields(fields, where)
        state = self._state(session_id)
        if state.fields is not None:
            if state.fields != fields:
                raise StoreError(f'{where}: trial fields are already {state.fields}; a session keeps one schema '
                                 f'(got {fields}): start a new session for the changed task')
            return
        with self._restructure(f'trial_fields {session_id}'):
            self._create_trials(self.file[f'sessions/{session_id}'], fields)
        state.fields = fields

    @h5_errors
    def trial_fields(self, session_id: str) -> list[Field] | None:
        return self._state(session_id).fields

    @h5_errors
    def add_trials(self, session_id: str, rows: Sequence[Mapping[str, Any]], *, sync: bool = True) -> list[int]:
        """Append trials not stored yet; returns the trial numbers that were new, in order.

        A row: trial_number (>= 1), start_ns (trial start, 0 if not known; may be left out), stamp_ns (its
        end), recv_ns, step, step_name and one key per declared field.
        A trial number already stored (a resent trial) is skipped, so resending is harmless; its content is
        not compared. ``sync``: fsync before returning (the caller acks these numbers).
        """
        where = f'{self.path}: session {session_id}: trials'
        state = self._state(session_id)
        if state.fields is None:
            raise StoreError(f'{where}: no trial schema; pass meta["fields"] to begin_session or call '
                             'set_trial_fields first')
        fresh, numbers = new_rows(rows, 'trial_number', state.trial_numbers, where)
        if fresh:
            path = f'sessions/{session_id}/trials'
            have = set(self._dataset(path).dtype.names or ())
            later = {k: v for k, v in LATER_TRIAL_COLUMNS.items() if k in have}
            gone = set(LATER_TRIAL_COLUMNS) - have
            if later or gone:
                fresh = [{**later, **{k: v for k, v in r.items() if k not in gone}} for r in fresh]
            self._append(path, fresh, where, sync)
            state.trial_numbers.update(numbers)
        return numbers

    @h5_errors
    def add_events(self, session_id: str, kind: str,
                   rows: Rows, *, sync: bool = False) -> int:
        """Append hardware events (kind 'gpio' or 'sound', columns :data:`EVENT_COLUMNS`), given as rows or as
        columns (name -> values, as :mod:`.cdr` decodes them); returns the count."""
        if kind not in EVENT_KINDS:
            raise StoreError(f'{self.path}: event kind {kind!r} is not one of {EVENT_KINDS}')
        self._state(session_id)
        where = f'{self.path}: session {session_id}: events/{kind}'
        path = f'sessions/{session_id}/events/{kind}'
        rows = optional_columns(rows, self._dataset(path).dtype.names or ())
        self._append(path, rows, where, sync, positive='recv_ns')
        return count(rows)

    @h5_errors
    def add_steps(self, session_id: str, rows: Sequence[Mapping[str, Any]], *, sync: bool = True) -> list[int]:
        """Append protocol step changes not stored yet (dedupe by seq >= 1); returns the new seqs.

        Each new change is also appended to /subject/history (kind 'step'), in the same flush.
        """
        where = f'{self.path}: session {session_id}: steps'
        state = self._state(session_id)
        fresh, seqs = new_rows(rows, 'seq', state.step_seqs, where)
        if not fresh:
            return []
        self._append(f'sessions/{session_id}/steps', fresh, where, sync=False)
        state.step_seqs.update(seqs)
        history = [{'time_ns': r['stamp_ns'] if r['stamp_ns'] > 0 else r['recv_ns'], 'kind': 'step',
                    'protocol': r['protocol'], 'step': r['to_step'], 'step_name': r['to_step_name'],
                    'detail': _json({'session_id': session_id, 'seq': r['seq'], 'from_step': r['from_step'],
                                     'from_step_name': r['from_step_name'], 'after_trial': r['after_trial'],
                                     'reason': r['reason']}, 'step detail')} for r in fresh]
        self._append('subject/history', history, f'{self.path}: history', sync, positive='time_ns')
        return seqs

    # -- bag --------------------------------------------------------------------------------

    def add_topic(self, session_id: str, topic: str, type: str, interface_text: str, type_hash: str,
                  qos_json: str) -> str:
        """Register a topic to record; returns its bag group name. Idempotent for the same topic and type."""
        return self.add_topics(session_id, [TopicSpec(topic, type, interface_text, type_hash, qos_json)])[0]

    @h5_errors
    def add_topics(self, session_id: str, specs: Sequence[TopicSpec | Mapping[str, Any]]) -> list[str]:
        """Register several topics in one structure window (only topics not registered yet cost one)."""
        state = self._state(session_id)
        checked = [_topic_spec(s) for s in specs]
        bag = self.file[f'sessions/{session_id}/bag']
        new: list[TopicSpec] = []
        for spec in checked:
            name = state.topics.get(spec.topic)
            if name is not None:
                have = bag[name].attrs['type']
                if have != spec.type:
                    raise StoreError(f'{self.path}: session {session_id}: topic {spec.topic} is recorded as {have}, '
                                     f'cannot add it again as {spec.type}')
            elif spec.topic not in {s.topic for s in new}:
                new.append(spec)
        if new:
            with self._restructure(f'add_topics {session_id} ' + ' '.join(s.topic for s in new)):
                bag = self.file[f'sessions/{session_id}/bag']
                for spec in new:
                    state.topics[spec.topic] = self._create_topic(bag, spec)
        return [state.topics[s.topic] for s in checked]

    @h5_errors
    def append_messages(self, session_id: str, topic: str, messages: Sequence[tuple[int, bytes]], *,
                        sync: bool = False) -> int:
        """Append raw CDR messages [(recv_ns > 0, bytes)] of a registered topic; returns the count.

        The bytes go first and are flushed before their index rows, so a crash never leaves an index row
        pointing at bytes that were not written.
        """
        where = f'{self.path}: session {session_id}: bag {topic}'
        name = self._state(session_id).topics.get(topic)
        if name is None:
            raise StoreError(f'{where}: topic not registered; call add_topic first')
        if not messages:
            return 0
        try:
            recv = np.asarray([m[0] for m in messages])
            payloads = [bytes(m[1]) if not isinstance(m[1], bytes) else m[1] for m in messages]
        except (TypeError, ValueError, OverflowError, IndexError) as exc:
            raise StoreError(f'{where}: messages must be (recv_ns int, bytes) pairs: {exc}') from exc
        if recv.dtype.kind not in 'iu' or recv.ndim != 1:
            raise StoreError(f'{where}: recv_ns must be ints (nanoseconds), got {recv.dtype}')
        recv = recv.astype(np.int64)
        if recv.min() <= 0:
            raise StoreError(f'{where}: recv_ns must be > 0 (got {int(recv.min())})')
        sizes = np.fromiter((len(p) for p in payloads), dtype=np.uint64, count=len(payloads))
        if sizes.max() > 0xFFFFFFFF:
            raise StoreError(f'{where}: a message of {int(sizes.max())} bytes exceeds the 4 GiB index limit')
        base = f'sessions/{session_id}/bag/{name}'
        data, index = self._dataset(f'{base}/data'), self._dataset(f'{base}/index')
        start = data.shape[0]
        offsets = start + np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.uint64)
        rows = np.zeros(len(messages), dtype=index.dtype)
        rows['offset'], rows['size'], rows['recv_ns'] = offsets, sizes, recv
        blob = b''.join(payloads)
        with self._io(where):
            if blob:
                self._write_at_end(f'{base}/data', data, np.frombuffer(blob, dtype=np.uint8))
                self.file.flush()
            self._write_at_end(f'{base}/index', index, rows)
            self._flush(sync)
        return len(messages)

    # -- continuous streams -----------------------------------------------------------------

    @h5_errors
    def add_stream(self, session_id: str, name: str, topic: str, type_name: str,
                   columns: Sequence[tuple[str, str]], skipped: Sequence[str] = (),
                   time_columns: Sequence[str] = ()) -> bool:
        """Create ``sessions/<id>/streams/<name>``: one row per message of a continuous topic (a structure
        window); ``columns`` (name, numpy code; ``recv_ns`` first, 'S<n>' = fixed UTF-8) from
        :class:`~.streams.StreamDecoder`; ``skipped``: fields left out, ``time_columns``: those holding a time in ns.
        True if new; the same again changes nothing."""
        where = f'{self.path}: session {session_id}: stream {name!r}'
        self._state(session_id)
        _valid_table_name(name, where)
        if not columns or columns[0] != ('recv_ns', 'i8'):
            raise StoreError(f'{where}: the first column must be recv_ns i8')
        g = self.file[f'sessions/{session_id}']
        if 'streams' in g and name in g['streams']:
            if str(g['streams'][name].attrs['topic']) != topic:
                raise StoreError(f'{where}: exists already for topic {g["streams"][name].attrs["topic"]}')
            return False
        with self._restructure(f'add_stream {session_id} {name}'):
            g = self.file[f'sessions/{session_id}']
            group = g['streams'] if 'streams' in g else g.create_group('streams')
            ds = create_table(group, name, table_dtype(columns))
            ds.attrs.update({'topic': topic, 'type': type_name, 'skipped': _json(list(skipped), 'skipped fields'),
                             'time_columns': _json(list(time_columns), 'time columns')})
        return True

    @h5_errors
    def add_stream_rows(self, session_id: str, name: str,
                        rows: Rows, *, sync: bool = False) -> int:
        """Append rows (or columns) to a stream table made by :meth:`add_stream`; returns the count."""
        where = f'{self.path}: session {session_id}: stream {name!r}'
        self._state(session_id)
        path = f'sessions/{session_id}/streams/{name}'
        if path not in self.file:
            raise StoreError(f'{where}: not added (add_stream first)')
        self._append(path, rows, where, sync, positive='recv_ns')
        return count(rows)

    # -- video ------------------------------------------------------------------------------

    @h5_errors
    def add_video(self, session_id: str, name: str, attrs: Mapping[str, Any]) -> bool:
        """Start ``sessions/<id>/video/<name>``: the frame table of one MP4 (a structure window); True if new.

        ``name``: the video's name (``autopilot_terminal.video.video_name``: no "/"). ``attrs``: ``topic``
        (fully qualified) and ``path`` of the MP4 (absolute or relative to the working directory; stored
        relative to this file's directory), optionally ``codec``, ``width``, ``height``, ``encoding``, ``fps``
        (:data:`VIDEO_START_ATTRS`; ``VideoSink.attrs()`` gives them all). Adding it again with the same
        topic and path (a restarted recorder) changes nothing and returns False.
        """
        where = f'{self.path}: session {session_id}: video {name!r}'
        self._state(session_id)
        _valid_table_name(name, where)
        values = _video_attrs(attrs, VIDEO_START_ATTRS, where)
        if not values['topic'].startswith('/'):
            raise StoreError(f'{where}: topic {values["topic"]!r}: give the fully qualified name (starting with "/")')
        values['path'] = Path(os.path.relpath(os.path.abspath(values['path']),
                                              os.path.abspath(self.path.parent))).as_posix()
        g = self.file[f'sessions/{session_id}']
        if 'video' in g and name in g['video']:
            have = g['video'][name].attrs
            if (str(have['topic']), str(have['path'])) != (values['topic'], values['path']):
                raise StoreError(f'{where}: exists already for topic {have["topic"]} at {have["path"]}; a video is '
                                 'added once: give the new one another name')
            return False
        with self._restructure(f'add_video {session_id} {name}'):
            g = self.file[f'sessions/{session_id}']
            group = g['video'] if 'video' in g else g.create_group('video')
            ds = create_table(group, name, table_dtype(VIDEO_COLUMNS))
            ds.attrs.update({k: _video_attr(v) for k, v in values.items()})
            ds.attrs.update({'state': VIDEO_STATES[0], 'frames': np.int64(0), 'bytes': np.int64(0), 'sha256': '',
                             'dropped': np.int64(0), 'rejected': np.int64(0)})
        return True

    @h5_errors
    def add_frames(self, session_id: str, name: str, rows: Sequence[Mapping[str, Any]], *,
                   sync: bool = False) -> int:
        """Append frame rows ``{frame, stamp_ns, recv_ns > 0}`` (:data:`VIDEO_COLUMNS`) to a video; the count."""
        where = f'{self.path}: session {session_id}: video {name!r}'
        self._state(session_id)
        _valid_table_name(name, where)
        path = f'sessions/{session_id}/video/{name}'
        try:
            self._dataset(path)
        except KeyError:
            raise StoreError(f'{where}: no such video; call add_video first') from None
        self._append(path, rows, where, sync, positive=VIDEO_KEY)
        return len(rows)

    @h5_errors
    def finish_video(self, session_id: str, name: str, summary: Mapping[str, Any]) -> None:
        """Record a finished video's summary (a structure window): ``frames``, ``bytes``, ``sha256`` and
        optionally ``dropped``, ``rejected``, ``fps``, ``width``, ``height``, ``codec``, ``encoding``
        (:data:`VIDEO_END_ATTRS`; other keys, such as ``VideoSummary.attrs()``'s ``path``, are ignored)."""
        where = f'{self.path}: session {session_id}: video {name!r}'
        self._state(session_id)
        _valid_table_name(name, where)
        values = _video_attrs({k: v for k, v in summary.items() if k in VIDEO_END_ATTRS}, VIDEO_END_ATTRS, where)
        if f'sessions/{session_id}/video/{name}' not in self.file:
            raise StoreError(f'{where}: no such video; call add_video first')
        with self._restructure(f'finish_video {session_id} {name}'):
            ds = self.file[f'sessions/{session_id}/video/{name}']
            ds.attrs.update({k: _video_attr(v) for k, v in values.items() if v is not None})
            ds.attrs['state'] = VIDEO_STATES[1]

    # -- conflicts --------------------------------------------------------------------------

    @h5_errors
    def differences(self, session_id: str, table: str, row: Mapping[str, Any]) -> list[str]:
        """The columns in which ``row`` differs from the stored row of the same key ('trials': trial_number,
        'steps': seq); [] when it is the same (a resend) or no such row is stored. ``recv_ns`` is not compared
        (a resend arrives later), NaN equals NaN (a value not measured)."""
        key = {'trials': 'trial_number', 'steps': 'seq'}.get(table)
        if key is None:
            raise StoreError(f'{self.path}: differences: table {table!r} is not trials or steps')
        self._state(session_id)
        path = f'sessions/{session_id}/{table}'
        if path not in self.file:
            return []
        ds = self._dataset(path)
        at = np.flatnonzero(ds.fields(key)[()] == int(row[key]))
        if not at.size:
            return []
        stored = ds[int(at[0])]
        out = []
        for name in ds.dtype.names or ():
            if name == 'recv_ns' or name not in row:
                continue
            have, got = stored[name], row[name]
            if isinstance(have, bytes):
                have = have.decode('utf-8', 'replace')
            if isinstance(have, np.generic):
                have = have.item()
            if isinstance(have, float) and isinstance(got, float) and math.isnan(have) and math.isnan(got):
                continue
            if have != got:
                out.append(name)
        return out

    @h5_errors
    def add_conflict(self, session_id: str, kind: str, number: int, reason: str, data: bytes, recv_ns: int,
                     type_name: str = '') -> bool:
        """Keep a message that contradicts what the session holds (``kind`` 'trial' or 'step', ``number`` its
        trial number or seq), with its raw bytes (CDR of ``type_name``) and why; counted in the session's
        ``conflicts`` attribute. The same bytes for the same number again change nothing (False). Nothing
        already stored changes; a structure window, then fsync (conflicts are rare, and each one matters)."""
        where = f'{self.path}: session {session_id}: conflicts'
        self._state(session_id)
        if kind not in ('trial', 'step'):
            raise StoreError(f'{where}: kind {kind!r} is not trial or step')
        data = bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        g = self.file[f'sessions/{session_id}']
        if 'conflicts' in g:
            index = g['conflicts/index'][()]
            same = (index['kind'] == kind.encode()) & (index['number'] == number) & \
                (index['sha256'] == digest.encode())
            if same.any():
                return False
            if len(index) >= MAX_CONFLICTS:
                raise StoreError(f'{where}: {len(index)} conflicts kept already; this one is not (a publisher keeps '
                                 'contradicting the pilot: find it with `ros2 topic info -v`)')
        kept = data if len(data) <= MAX_CONFLICT_BYTES else b''
        reason = reason.encode()[:512].decode('utf-8', 'ignore')  # a log line: cut on a character boundary
        with self._restructure(f'conflict {session_id} {kind} {number}'):
            g = self.file[f'sessions/{session_id}']
            if 'conflicts' not in g:
                c = g.create_group('conflicts')
                c.create_dataset('data', shape=(0,), maxshape=(None,), dtype=np.uint8, chunks=(_BAG_CHUNK_BYTES,))
                create_table(c, 'index', table_dtype(CONFLICT_COLUMNS))
                c.attrs['types'] = '{}'
            c = g['conflicts']
            types = json.loads(c.attrs['types'])
            if type_name and types.get(kind) != type_name:
                c.attrs['types'] = _json({**types, kind: type_name}, f'{where}: types')
            blob, index = c['data'], c['index']
            row = np.zeros(1, dtype=index.dtype)
            row['recv_ns'], row['kind'], row['number'], row['sha256'] = recv_ns, kind.encode(), number, digest.encode()
            row['reason'], row['offset'], row['size'] = reason.encode(), blob.shape[0], len(kept)
            blob.resize((blob.shape[0] + len(kept),))
            if kept:
                blob[-len(kept):] = np.frombuffer(kept, dtype=np.uint8)
            index.resize((index.shape[0] + 1,))
            index[-1:] = row
            g.attrs['conflicts'] = np.int64(index.shape[0])
        self._flush(True)
        return True

    @h5_errors
    def set_event_gaps(self, session_id: str, *, missing: int, recovered: int) -> None:
        """Session attrs ``events_missing`` (GPIO events the live stream skipped and the pilot has not given back
        yet) and ``events_recovered`` (given back and appended): a gap is told, never hidden."""
        self._state(session_id)
        with self._restructure(f'event_gaps {session_id}'):
            g = self.file[f'sessions/{session_id}']
            g.attrs['events_missing'] = np.int64(missing)
            g.attrs['events_recovered'] = np.int64(recovered)
        self._flush(True)

    # -- provenance and end -----------------------------------------------------------------

    @h5_errors
    def set_provenance(self, session_id: str, items: Mapping[str, Any]) -> None:
        """Set provenance attributes (JSON text each: packages, git, launch, parameters, hardware, ...)."""
        where = f'{self.path}: session {session_id}'
        self._state(session_id)
        self._set_provenance(session_id, {k: _json(v, f'{where}: provenance {k!r}') for k, v in items.items()})

    @h5_errors
    def end_session(self, session_id: str, *, ended_ns: int | None = None, state: str = 'ended',
                    note: str = '') -> None:
        """Mark a session ended (state 'ended', 'aborted' or 'interrupted') and write the bag's count/first_ns/last_ns attrs;
        ``note``: how the end was learnt when it is not the pilot's own report (attribute ``end_note``)."""
        if state not in SESSION_STATES[1:]:
            raise StoreError(f'{self.path}: session end state {state!r} is not one of {SESSION_STATES[1:]}')
        self._state(session_id)
        with self._restructure(f'end_session {session_id}'):
            g = self.file[f'sessions/{session_id}']
            g.attrs['ended_ns'] = np.int64(time.time_ns() if ended_ns is None else ended_ns)
            g.attrs['state'] = state
            if note:
                g.attrs['end_note'] = note
            for tg in g['bag'].values():
                recv = tg['index'].fields('recv_ns')[()]
                recv = recv[recv != 0]
                tg.attrs['count'] = np.int64(recv.size)
                tg.attrs['first_ns'] = np.int64(recv.min() if recv.size else 0)
                tg.attrs['last_ns'] = np.int64(recv.max() if recv.size else 0)
        self._sessions.pop(session_id, None)

    # -- internals --------------------------------------------------------------------------

    def _state(self, session_id: str) -> _Session:
        state = self._sessions.get(session_id)
        if state is not None:
            return state
        if not isinstance(session_id, str):
            raise StoreError(f'{self.path}: session id must be a str, got {session_id!r}')
        _valid_key(session_id)
        g = self.file['sessions'].get(session_id)
        if g is None:
            raise StoreError(f'{self.path}: session {session_id!r} was not begun; call begin_session first')
        state = _Session()
        if 'trials' in g:
            state.fields = fields_from_json(g['trials'].attrs['fields'])
            state.trial_numbers = _keys(g['trials'], 'trial_number')
        state.step_seqs = _keys(g['steps'], 'seq')
        state.topics = {str(tg.attrs['topic']): name for name, tg in g['bag'].items()}
        self._sessions[session_id] = state
        return state

    def _create_trials(self, g: h5py.Group, fields: list[Field]) -> None:
        ds = create_table(g, 'trials', trial_dtype(fields))
        ds.attrs['fields'] = fields_json(fields)

    def _create_topic(self, bag: h5py.Group, spec: TopicSpec) -> str:
        name = str(len(bag))
        tg = bag.create_group(name)
        tg.attrs.update({'topic': spec.topic, 'type': spec.type, 'interface_text': spec.interface_text,
                         'type_hash': spec.type_hash, 'qos': spec.qos_json, 'serialization': 'cdr',
                         'count': np.int64(0), 'first_ns': np.int64(0), 'last_ns': np.int64(0)})
        tg.create_dataset('data', shape=(0,), maxshape=(None,), dtype=np.uint8, chunks=(_BAG_CHUNK_BYTES,))
        create_table(tg, 'index', table_dtype(INDEX_COLUMNS))
        return name

    def _set_provenance(self, session_id: str, texts: Mapping[str, str]) -> None:
        with self._restructure(f'provenance {session_id}'):
            self.file[f'sessions/{session_id}/provenance'].attrs.update(texts)


def _keys(ds: h5py.Dataset, column: str) -> set[int]:
    keys = ds.fields(column)[()]
    return {int(k) for k in keys[keys != 0]}
