"""The pilot's durable trial journal: SQLite (WAL, ``synchronous=FULL``), one file per pilot.

A trial is journalled before it is published: :meth:`Journal.append` returns only after the commit is
fsync'd, so whatever the pilot has published (or printed) survives a SIGKILL or a power cut. The Terminal
acknowledges trials by ``(session_id, trial_number)``; everything not acked is returned by
:meth:`Journal.unacked` and resent, byte-identical (the payload is the serialized ``TrialData``), on
reconnect and after a restart. Protocol step changes go through the same cycle (:meth:`Journal.record_step`,
:meth:`Journal.unacked_steps`, :meth:`Journal.ack_steps`).

Tables (schema version :data:`SCHEMA_VERSION` in ``PRAGMA user_version``):

* ``sessions``: session_id (PK), subject, task, protocol, step, step_name, parameters (JSON), started_ns,
  ended_ns (NULL while open), state.
* ``trials``: (session_id, trial_number) PK, payload (CDR bytes), stamp_ns, meta (JSON: e.g. the trial's
  fields, so graduation history can be rebuilt without ROS), acked, acked_ns.
* ``steps``: (session_id, seq) PK, after_trial, from_step, to_step, reason, payload, stamp_ns, acked, acked_ns.
* ``events``: (session_id, run_id, seq) PK, stamp_ns, payload: the GPIO events of each session, which the
  terminal fetches (the pilot's ``journal_events`` service) when its recording of them has a gap; kept
  :data:`EVENT_RETENTION_S` after the session ended.

One pilot owns a journal: the file is opened with ``locking_mode=EXCLUSIVE``, so a second process (another
pilot given the same ``journal_path``, or a sqlite3 shell) gets a :class:`JournalError` saying so instead
of interleaving writes. Inside the process a :class:`Journal` may be shared between threads (one lock
serialises every call). Every SQLite failure becomes a :class:`JournalError` naming the file and the fix.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Written to ``PRAGMA user_version``; bump it and add an entry to ``_MIGRATIONS`` when the schema changes.
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE sessions (
    session_id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    task TEXT NOT NULL,
    protocol TEXT NOT NULL DEFAULT '',
    step INTEGER NOT NULL DEFAULT 0,
    step_name TEXT NOT NULL DEFAULT '',
    parameters TEXT NOT NULL DEFAULT '{}',
    started_ns INTEGER NOT NULL,
    ended_ns INTEGER,
    state TEXT NOT NULL
);
CREATE TABLE trials (
    session_id TEXT NOT NULL REFERENCES sessions(session_id),
    trial_number INTEGER NOT NULL,
    payload BLOB NOT NULL,
    stamp_ns INTEGER NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}',
    acked INTEGER NOT NULL DEFAULT 0,
    acked_ns INTEGER,
    PRIMARY KEY (session_id, trial_number)
) WITHOUT ROWID;
CREATE INDEX trials_unacked ON trials (acked, session_id, trial_number);
CREATE TABLE steps (
    session_id TEXT NOT NULL REFERENCES sessions(session_id),
    seq INTEGER NOT NULL,
    after_trial INTEGER NOT NULL,
    from_step INTEGER NOT NULL,
    to_step INTEGER NOT NULL,
    reason TEXT NOT NULL,
    payload BLOB NOT NULL,
    stamp_ns INTEGER NOT NULL,
    acked INTEGER NOT NULL DEFAULT 0,
    acked_ns INTEGER,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
"""

#: version -> SQL that upgrades a journal of that version to the next one.
_MIGRATIONS: dict[int, str] = {}

#: Indexes for reads, and tables older pilots never touch, created on every open (IF NOT EXISTS): journals
#: written before they were added get them without a schema version bump (which would lock older pilots out).
#: ``events``: the GPIO events of each session (the gpio node's run_id and seq, CDR payload), for the terminal
#: to fetch what it missed (a link loss); pruned to EVENT_RETENTION_S after their session ended.
_INDEXES = """
CREATE INDEX IF NOT EXISTS sessions_history ON sessions (subject, protocol, started_ns);
CREATE TABLE IF NOT EXISTS events (
    session_id TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    stamp_ns INTEGER NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (session_id, run_id, seq)
) WITHOUT ROWID;
"""
#: How long a session's GPIO events stay in the journal after it ended (a terminal away longer misses them).
EVENT_RETENTION_S = 7 * 24 * 3600

_FRESH_HINT = ('move the file aside (keep it: it may hold trials the Terminal has not acknowledged) and restart '
               'the pilot to begin a fresh journal, or set the pilot parameter journal_path to another file')


class JournalError(Exception):
    """A journal that cannot be opened or written; the message names the file and the fix."""


@dataclass(frozen=True)
class Session:
    """One row of ``sessions``."""

    session_id: str
    subject: str
    task: str
    protocol: str
    step: int
    step_name: str
    parameters: dict[str, Any]
    started_ns: int
    ended_ns: int | None
    state: str

    @property
    def ended(self) -> bool:
        return self.ended_ns is not None


@dataclass(frozen=True)
class Trial:
    """One row of ``trials``: ``payload`` is exactly the bytes given to :meth:`Journal.append`."""

    session_id: str
    trial_number: int
    payload: bytes
    stamp_ns: int
    meta: dict[str, Any]
    acked: bool
    acked_ns: int | None


@dataclass(frozen=True)
class StepChange:
    """One row of ``steps``: a protocol step change after trial ``after_trial`` (0: before the first)."""

    session_id: str
    seq: int
    after_trial: int
    from_step: int
    to_step: int
    reason: str
    payload: bytes
    stamp_ns: int
    acked: bool
    acked_ns: int | None


@dataclass(frozen=True)
class JournalStats:
    """Row counts, of the whole journal or of one session."""

    sessions: int
    open_sessions: int
    trials: int
    unacked_trials: int
    steps: int
    unacked_steps: int


_SESSION_COLS = 'session_id, subject, task, protocol, step, step_name, parameters, started_ns, ended_ns, state'
_TRIAL_COLS = 't.session_id, t.trial_number, t.payload, t.stamp_ns, t.meta, t.acked, t.acked_ns'
_STEP_COLS = ('s.session_id, s.seq, s.after_trial, s.from_step, s.to_step, s.reason, s.payload, s.stamp_ns, '
              's.acked, s.acked_ns')


def _session(row: tuple) -> Session:
    return Session(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]), row[7], row[8], row[9])


def _trial(row: tuple) -> Trial:
    return Trial(row[0], row[1], bytes(row[2]), row[3], json.loads(row[4]), bool(row[5]), row[6])


def _step(row: tuple) -> StepChange:
    return StepChange(row[0], row[1], row[2], row[3], row[4], row[5], bytes(row[6]), row[7], bool(row[8]), row[9])


def _json(value: Mapping[str, Any] | None, what: str) -> str:
    try:
        return json.dumps(dict(value or {}))
    except (TypeError, ValueError) as exc:
        raise JournalError(f'{what} must be JSON-serialisable (str, int, float, bool, None, lists, dicts): {exc}') \
            from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float))


def _as_bytes(payload: bytes | bytearray | memoryview) -> bytes:
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise JournalError(f'payload must be bytes (the serialized message), got {type(payload).__name__}')
    return bytes(payload)


class Journal:
    """A pilot's trial journal at ``path`` (created with its parent directories if missing).

    ``timeout`` is how long opening waits for another process to let go of the file (a pilot that is
    still shutting down) before raising :class:`JournalError`.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 2.0) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        is_new = not self.path.exists()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f'cannot create the directory of journal {self.path}: {exc.strerror}; '
                               'set the pilot parameter journal_path to a writable location') from None
        if self.path.is_dir():
            raise JournalError(f'journal {self.path} is a directory; set journal_path to a file path '
                               f'such as {self.path / "journal.sqlite"}')
        try:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT) below.
            db = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._error(exc, 'open') from None
        try:
            # EXCLUSIVE before the first access: no shared-memory index, and the file stays locked
            # against every other process until close().
            db.execute('PRAGMA locking_mode=EXCLUSIVE')
            mode = db.execute('PRAGMA journal_mode=WAL').fetchone()[0]
            if mode.lower() != 'wal':
                raise JournalError(f'journal {self.path}: SQLite refused WAL mode (got {mode!r}); '
                                   'put the journal on a local file system')
            db.execute('PRAGMA synchronous=FULL')
            db.execute('PRAGMA foreign_keys=ON')
            self._db = db
            self._setup()
        except sqlite3.Error as exc:
            db.close()
            self._db = None
            raise self._error(exc, 'open') from None
        except BaseException:
            db.close()
            self._db = None
            raise
        if is_new:
            self._sync_dir()

    # ----------------------------------------------------------------------------------------- plumbing

    def _error(self, exc: sqlite3.Error, doing: str) -> JournalError:
        code = getattr(exc, 'sqlite_errorname', '')
        if code.startswith(('SQLITE_BUSY', 'SQLITE_LOCKED')):
            return JournalError(f'journal {self.path} is locked by another process (another pilot using the same '
                                'journal_path?): stop that process, or give this pilot its own journal_path')
        if code.startswith(('SQLITE_NOTADB', 'SQLITE_CORRUPT')):
            return JournalError(f'journal {self.path} is corrupt or not a journal ({exc}): {_FRESH_HINT}')
        if code.startswith('SQLITE_FULL'):
            return JournalError(f'journal {self.path}: the disk is full ({doing} failed, nothing was written): '
                                'free space on the disk')
        if code.startswith(('SQLITE_CANTOPEN', 'SQLITE_READONLY', 'SQLITE_PERM', 'SQLITE_IOERR', 'SQLITE_AUTH')):
            return JournalError(f'journal {self.path}: cannot {doing} ({exc}): check the file and its directory '
                                'are writable by the pilot, or set journal_path to a writable location')
        return JournalError(f'journal {self.path}: {doing} failed: {exc}')

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise JournalError(f'journal {self.path} is closed')
        return self._db

    def _sync_dir(self) -> None:
        # A new file's directory entry is only durable once the directory itself is fsync'd.
        try:
            fd = os.open(self.path.parent, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _setup(self) -> None:
        db = self._conn()
        db.execute('BEGIN IMMEDIATE')  # takes the lock now, so a second pilot fails here, not later
        try:
            version = db.execute('PRAGMA user_version').fetchone()[0]
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if version == 0 and not tables:
                # One statement at a time: executescript() would COMMIT the transaction half-way.
                for statement in filter(str.strip, _SCHEMA.split(';')):
                    db.execute(statement)
                db.execute(f'PRAGMA user_version={SCHEMA_VERSION}')
                version = SCHEMA_VERSION
            elif version > SCHEMA_VERSION:
                raise JournalError(f'journal {self.path} has schema version {version}, written by a newer '
                                   f'autopilot_pilot (this one reads up to {SCHEMA_VERSION}): update this '
                                   'pilot, or set journal_path to another file')
            elif version == 0 or not {'sessions', 'trials', 'steps'} <= tables:
                raise JournalError(f'{self.path} is an SQLite database but not a pilot journal '
                                   f'(tables: {", ".join(sorted(tables)) or "none"}): {_FRESH_HINT}')
            while version < SCHEMA_VERSION:
                for statement in filter(str.strip, _MIGRATIONS[version].split(';')):
                    db.execute(statement)
                version += 1
                db.execute(f'PRAGMA user_version={version}')
            for statement in filter(str.strip, _INDEXES.split(';')):
                db.execute(statement)
            db.execute('COMMIT')
        except BaseException:
            db.execute('ROLLBACK')
            raise
        check = [r[0] for r in db.execute('PRAGMA quick_check')]
        if check != ['ok']:
            raise JournalError(f'journal {self.path} is corrupt ({"; ".join(check[:3])}): {_FRESH_HINT}')

    def _write(self, doing: str, fn: Any) -> Any:
        """Run ``fn(db)`` in one write transaction, committed (fsync'd) before returning."""
        with self._lock:
            db = self._conn()
            try:
                db.execute('BEGIN IMMEDIATE')
                try:
                    result = fn(db)
                    db.execute('COMMIT')
                except BaseException:
                    if db.in_transaction:
                        db.execute('ROLLBACK')
                    raise
            except sqlite3.Error as exc:
                raise self._error(exc, doing) from None
            return result

    def _read(self, doing: str, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._conn().execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc, doing) from None

    def close(self) -> None:
        """Close the file (checkpointing the WAL into it); further calls raise JournalError."""
        with self._lock:
            if self._db is not None:
                db, self._db = self._db, None
                try:
                    db.close()
                except sqlite3.Error as exc:
                    raise self._error(exc, 'close') from None

    @property
    def closed(self) -> bool:
        return self._db is None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f'Journal({str(self.path)!r}{", closed" if self.closed else ""})'

    # ----------------------------------------------------------------------------------------- sessions

    def begin_session(self, session_id: str, *, subject: str, task: str, protocol: str = '', step: int = 0,
                      step_name: str = '', parameters: Mapping[str, Any] | None = None,
                      started_ns: int | None = None, state: str = 'running') -> Session:
        """Record a new session. Beginning one that exists with the same subject, task and protocol returns
        it unchanged (a retry after a crash); with different ones it is a JournalError."""
        params = _json(parameters, 'parameters')
        started = time.time_ns() if started_ns is None else int(started_ns)

        def run(db: sqlite3.Connection) -> Session:
            row = db.execute(f'SELECT {_SESSION_COLS} FROM sessions WHERE session_id=?', (session_id,)).fetchone()
            if row is not None:
                old = _session(row)
                if (old.subject, old.task, old.protocol) != (subject, task, protocol):
                    raise JournalError(
                        f'journal {self.path}: session {session_id!r} already exists for subject {old.subject!r}, '
                        f'task {old.task!r}, protocol {old.protocol!r}; session ids must be unique')
                return old
            db.execute(f'INSERT INTO sessions ({_SESSION_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)',
                       (session_id, subject, task, protocol, int(step), step_name, params, started, state))
            return Session(session_id, subject, task, protocol, int(step), step_name, json.loads(params), started,
                           None, state)

        return self._write('begin a session', run)

    def update_session(self, session_id: str, *, step: int | None = None, step_name: str | None = None,
                       parameters: Mapping[str, Any] | None = None, state: str | None = None) -> Session:
        """Change the given columns of an existing session."""
        changes: dict[str, Any] = {}
        if step is not None:
            changes['step'] = int(step)
        if step_name is not None:
            changes['step_name'] = step_name
        if parameters is not None:
            changes['parameters'] = _json(parameters, 'parameters')
        if state is not None:
            changes['state'] = state

        def run(db: sqlite3.Connection) -> Session:
            self._require_session(db, session_id)
            if changes:
                sets = ', '.join(f'{k}=?' for k in changes)
                db.execute(f'UPDATE sessions SET {sets} WHERE session_id=?', (*changes.values(), session_id))
            return _session(db.execute(f'SELECT {_SESSION_COLS} FROM sessions WHERE session_id=?',
                                       (session_id,)).fetchone())

        return self._write('update a session', run)

    def end_session(self, session_id: str, *, state: str = 'ended', ended_ns: int | None = None) -> bool:
        """Mark a session ended; False if it already was (the first end time is kept)."""
        ended = time.time_ns() if ended_ns is None else int(ended_ns)

        def run(db: sqlite3.Connection) -> bool:
            self._require_session(db, session_id)
            cur = db.execute('UPDATE sessions SET ended_ns=?, state=? WHERE session_id=? AND ended_ns IS NULL',
                             (ended, state, session_id))
            return cur.rowcount > 0

        return self._write('end a session', run)

    def session(self, session_id: str) -> Session | None:
        rows = self._read('read a session', f'SELECT {_SESSION_COLS} FROM sessions WHERE session_id=?', (session_id,))
        return _session(rows[0]) if rows else None

    def sessions(self) -> list[Session]:
        """Every session, oldest first."""
        return [_session(r) for r in self._read('read sessions',
                                                f'SELECT {_SESSION_COLS} FROM sessions ORDER BY started_ns, rowid')]

    def open_sessions(self) -> list[Session]:
        """Sessions not ended (what a restarted pilot resumes or closes), oldest first."""
        return [_session(r) for r in self._read(
            'read sessions', f'SELECT {_SESSION_COLS} FROM sessions WHERE ended_ns IS NULL ORDER BY started_ns, rowid')]

    def step_history(self, subject: str, protocol: str, step: int) -> tuple[list[dict[str, Any]], int]:
        """What graduation at ``protocol`` step ``step`` counts for ``subject``.

        Returns the ``fields`` of every trial whose meta has them and says it ran at ``step`` (oldest session
        first, then by trial number), and how many ended sessions of the subject at this protocol are at
        ``step``. Both are indexed reads (``sessions_history``, then the trials' primary key).
        """
        with self._lock:  # one lock for both reads: no write lands between them
            rows = self._read(
                'read the step history',
                'SELECT t.meta FROM sessions s JOIN trials t USING (session_id) '
                'WHERE s.subject=? AND s.protocol=? '
                'ORDER BY s.started_ns, s.rowid, t.trial_number', (subject, protocol))
            n_sessions = self._read(
                'read the step history',
                'SELECT COUNT(*) FROM sessions WHERE subject=? AND protocol=? AND step=? AND ended_ns IS NOT NULL',
                (subject, protocol, int(step)))[0][0]
        # The step is matched here, not with SQLite's json_extract: trial meta holds NaN (a miss's reaction
        # time), which Python's json writes and reads but SQLite rejects as malformed JSON.
        metas = (json.loads(r[0]) for r in rows)
        return [m['fields'] for m in metas if 'fields' in m and _is_number(m.get('step')) and m['step'] == step], \
            n_sessions

    def _require_session(self, db: sqlite3.Connection, session_id: str) -> None:
        if db.execute('SELECT 1 FROM sessions WHERE session_id=?', (session_id,)).fetchone() is None:
            raise JournalError(f'journal {self.path}: unknown session {session_id!r}; call begin_session first')

    # ----------------------------------------------------------------------------------------- trials

    def append(self, session_id: str, trial_number: int, payload: bytes | bytearray | memoryview,
               meta: Mapping[str, Any] | None = None, *, stamp_ns: int | None = None) -> bool:
        """Journal one trial; durable (fsync'd) when this returns.

        Returns True if it was written, False if exactly this payload is already journalled under this
        number (a retry). A different payload under an existing number is a JournalError: trial numbers
        are never reused. ``meta`` (JSON-able, e.g. the trial's fields) is stored alongside.
        """
        data = _as_bytes(payload)
        meta_text = _json(meta, 'meta')
        number = int(trial_number)
        if number < 1:
            raise JournalError(f'trial_number must be >= 1, got {trial_number}')
        stamp = time.time_ns() if stamp_ns is None else int(stamp_ns)

        def run(db: sqlite3.Connection) -> bool:
            row = db.execute('SELECT payload FROM trials WHERE session_id=? AND trial_number=?',
                             (session_id, number)).fetchone()
            if row is not None:
                if bytes(row[0]) == data:
                    return False
                raise JournalError(f'journal {self.path}: trial {number} of session {session_id!r} is already '
                                   'journalled with a different payload; trial numbers must not be reused '
                                   f'(next free: {self._last(db, session_id) + 1})')
            self._require_session(db, session_id)
            db.execute('INSERT INTO trials (session_id, trial_number, payload, stamp_ns, meta) VALUES (?, ?, ?, ?, ?)',
                       (session_id, number, data, stamp, meta_text))
            return True

        return self._write('append a trial', run)

    @staticmethod
    def _last(db: sqlite3.Connection, session_id: str) -> int:
        return db.execute('SELECT COALESCE(MAX(trial_number), 0) FROM trials WHERE session_id=?',
                          (session_id,)).fetchone()[0]

    def last_trial_number(self, session_id: str) -> int:
        """The highest journalled trial number of the session, 0 if none."""
        with self._lock:
            try:
                return self._last(self._conn(), session_id)
            except sqlite3.Error as exc:
                raise self._error(exc, 'read trials') from None

    def next_trial_number(self, session_id: str) -> int:
        return self.last_trial_number(session_id) + 1

    def trial(self, session_id: str, trial_number: int) -> Trial | None:
        rows = self._read('read a trial', f'SELECT {_TRIAL_COLS} FROM trials t WHERE session_id=? AND trial_number=?',
                          (session_id, int(trial_number)))
        return _trial(rows[0]) if rows else None

    def trials(self, session_id: str, *, after: int = 0) -> list[Trial]:
        """The session's trials numbered above ``after``, in order."""
        return [_trial(r) for r in self._read(
            'read trials', f'SELECT {_TRIAL_COLS} FROM trials t WHERE session_id=? AND trial_number>? '
            'ORDER BY trial_number', (session_id, int(after)))]

    def unacked(self, limit: int | None = None) -> list[Trial]:
        """Trials the Terminal has not acknowledged: by session (oldest first), then by number."""
        return [_trial(r) for r in self._read(
            'read unacked trials', f'SELECT {_TRIAL_COLS} FROM trials t JOIN sessions s USING (session_id) '
            'WHERE t.acked=0 ORDER BY s.started_ns, s.rowid, t.trial_number LIMIT ?',
            (-1 if limit is None else int(limit),))]

    def ack(self, session_id: str, numbers: Iterable[int], *, acked_ns: int | None = None) -> int:
        """Mark trials acknowledged; returns how many were not acked before (unknown numbers are ignored)."""
        nums = sorted({int(n) for n in numbers})
        stamp = time.time_ns() if acked_ns is None else int(acked_ns)

        def run(db: sqlite3.Connection) -> int:
            cur = db.executemany('UPDATE trials SET acked=1, acked_ns=? WHERE session_id=? AND trial_number=? '
                                 'AND acked=0', [(stamp, session_id, n) for n in nums])
            return cur.rowcount

        return self._write('ack trials', run) if nums else 0

    # ----------------------------------------------------------------------------------------- step changes

    def record_step(self, session_id: str, *, after_trial: int, from_step: int, to_step: int, reason: str,
                    payload: bytes | bytearray | memoryview = b'', step_name: str | None = None,
                    parameters: Mapping[str, Any] | None = None, stamp_ns: int | None = None) -> int:
        """Journal a protocol step change and move the session to ``to_step`` in one durable transaction.

        Returns the change's ``seq`` (1, 2, ... per session): the Terminal acks step changes by it.
        """
        data = _as_bytes(payload)
        params = None if parameters is None else _json(parameters, 'parameters')
        stamp = time.time_ns() if stamp_ns is None else int(stamp_ns)

        def run(db: sqlite3.Connection) -> int:
            self._require_session(db, session_id)
            seq = db.execute('SELECT COALESCE(MAX(seq), 0) + 1 FROM steps WHERE session_id=?',
                             (session_id,)).fetchone()[0]
            db.execute('INSERT INTO steps (session_id, seq, after_trial, from_step, to_step, reason, payload, '
                       'stamp_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
                       (session_id, seq, int(after_trial), int(from_step), int(to_step), reason, data, stamp))
            db.execute('UPDATE sessions SET step=? WHERE session_id=?', (int(to_step), session_id))
            if step_name is not None:
                db.execute('UPDATE sessions SET step_name=? WHERE session_id=?', (step_name, session_id))
            if params is not None:
                db.execute('UPDATE sessions SET parameters=? WHERE session_id=?', (params, session_id))
            return seq

        return self._write('record a step change', run)

    def steps(self, session_id: str) -> list[StepChange]:
        return [_step(r) for r in self._read(
            'read step changes', f'SELECT {_STEP_COLS} FROM steps s WHERE session_id=? ORDER BY seq', (session_id,))]

    def unacked_steps(self, limit: int | None = None) -> list[StepChange]:
        """Step changes not acknowledged: by session (oldest first), then by seq."""
        return [_step(r) for r in self._read(
            'read unacked step changes', f'SELECT {_STEP_COLS} FROM steps s JOIN sessions x USING (session_id) '
            'WHERE s.acked=0 ORDER BY x.started_ns, x.rowid, s.seq LIMIT ?', (-1 if limit is None else int(limit),))]

    def ack_steps(self, session_id: str, seqs: Iterable[int], *, acked_ns: int | None = None) -> int:
        """Mark step changes acknowledged; returns how many were not acked before."""
        nums = sorted({int(n) for n in seqs})
        stamp = time.time_ns() if acked_ns is None else int(acked_ns)

        def run(db: sqlite3.Connection) -> int:
            return db.executemany('UPDATE steps SET acked=1, acked_ns=? WHERE session_id=? AND seq=? AND acked=0',
                                  [(stamp, session_id, n) for n in nums]).rowcount

        return self._write('ack step changes', run) if nums else 0

    # ----------------------------------------------------------------------------------------- events

    def add_events(self, session_id: str, rows: Iterable[tuple[int, int, int, bytes]]) -> int:
        """Journal GPIO events ``(run_id, seq, stamp_ns, payload)`` of a session (repeats ignored); returns how
        many were new."""
        values = [(session_id, int(r), int(q), int(t), bytes(p)) for r, q, t, p in rows]

        def run(db: sqlite3.Connection) -> int:
            return db.executemany('INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?)', values).rowcount

        return self._write('journal GPIO events', run) if values else 0

    def events(self, session_id: str, run_id: int, first_seq: int, last_seq: int, limit: int) -> list[tuple[int, bytes]]:
        """``(seq, payload)`` of a session's journalled GPIO events of one gpio run in [first_seq, last_seq]."""
        return [(int(q), bytes(p)) for q, p in self._read(
            'read GPIO events', 'SELECT seq, payload FROM events WHERE session_id=? AND run_id=? AND seq BETWEEN ? AND ? '
            'ORDER BY seq LIMIT ?', (session_id, int(run_id), int(first_seq), min(int(last_seq), 2**63 - 1), int(limit)))]

    def prune_events(self, now_ns: int | None = None) -> int:
        """Drop the events of sessions that ended more than EVENT_RETENTION_S ago; returns how many went."""
        cutoff = (time.time_ns() if now_ns is None else now_ns) - EVENT_RETENTION_S * 1_000_000_000

        def run(db: sqlite3.Connection) -> int:
            return db.execute('DELETE FROM events WHERE session_id IN (SELECT session_id FROM sessions WHERE '
                              'ended_ns IS NOT NULL AND ended_ns < ?)', (cutoff,)).rowcount

        return self._write('prune GPIO events', run)

    # ----------------------------------------------------------------------------------------- stats

    def stats(self, session_id: str | None = None) -> JournalStats:
        """Counts over the journal, or over one session."""
        where, args = ('WHERE session_id=?', (session_id,)) if session_id is not None else ('', ())
        with self._lock:
            try:
                db = self._conn()
                sessions, open_ = db.execute(f'SELECT COUNT(*), COUNT(*) - COUNT(ended_ns) FROM sessions {where}',
                                             args).fetchone()
                trials, t_unacked = db.execute(f'SELECT COUNT(*), COALESCE(SUM(acked=0), 0) FROM trials {where}',
                                               args).fetchone()
                steps, s_unacked = db.execute(f'SELECT COUNT(*), COALESCE(SUM(acked=0), 0) FROM steps {where}',
                                              args).fetchone()
            except sqlite3.Error as exc:
                raise self._error(exc, 'count rows') from None
        return JournalStats(sessions, open_, trials, t_unacked, steps, s_unacked)

    def integrity_check(self) -> list[str]:
        """``PRAGMA integrity_check``: ``['ok']`` for a sound file."""
        return [r[0] for r in self._read('check integrity', 'PRAGMA integrity_check')]
