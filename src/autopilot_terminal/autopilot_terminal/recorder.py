"""The recorder: the one thread that writes subject files, in batches.

Everything the Terminal stores goes through a :class:`Recorder`: trials and step changes (acknowledged to
the pilot only once stored and fsync'd), raw bag messages (appended from the executor thread at the cost of
a list append, written here in batches per topic), hardware events decoded from the bag's GPIO and sound
topics (when the writer is not busy; completed at the session's end and by :meth:`Recorder.flush`), camera
topics as MP4 files with a per-frame table (:mod:`.video`; not in the bag; a frame that reaches an ended
session is counted in :attr:`Stats.frames_late`, never written), session begin/end, provenance, and
subject administration (:meth:`Recorder.call`). One thread owns
every open :class:`~.storage.SubjectFile`, as DESIGN.md requires (one writer per file; Autopilot lost sessions
to several threads sharing a file). Items are processed in the order they were queued, so a session is
always begun before its messages are appended and ended after them.

Plain Python over :mod:`.storage` (:mod:`.cdr` for the event topics), so unit tests and the
benchmark drive it without a node. Failures never stop the thread: the item is logged with the store's
message and counted (:meth:`Recorder.stats`); trials that failed are simply not acknowledged, so the pilot
resends them. A session's begin and provenance, which nobody resends, are kept and applied once the subject's
file can be opened again (e.g. after another writer released it).
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout  # not the builtin before 3.11
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from .cdr import CdrError, ColumnDecoder, Columns, Sample, gpio_columns
from .gaps import END, EventGaps
from .storage import StoreError, SubjectFile, TopicSpec
from .streams import stream_name
from .video import VIDEO_TYPES, Frame, FrameFormatError, VideoSink, decode_frame, next_video_path

T = TypeVar('T')
#: Subject identifiers name files: keep them to characters that are safe everywhere.
SUBJECT_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$')
#: Event messages decoded into event tables per writer cycle when it is not busy.
DECODE_BATCH = 2000
#: Beyond this many waiting event messages they are decoded even under load (bounds the memory they hold).
MAX_UNDECODED = 200_000
#: Longest the writer waits before writing what has arrived (bounds how late a live reader sees data).
INTERVAL_S = 0.05

Log = Callable[[str, str], None]  # (level: 'info' | 'warn' | 'error', text)


@dataclass
class _Item:
    kind: str
    subject: str
    session_id: str = ''
    payload: Any = None
    done: Callable[[Any], None] | None = None


@dataclass
class Stats:
    """Counters of what the writer did (read with :meth:`Recorder.stats`)."""

    messages: int = 0
    bytes: int = 0
    batches: int = 0
    trials: int = 0
    duplicate_trials: int = 0
    conflicts: int = 0  # trials and step changes that contradicted stored ones: kept apart (SubjectFile.add_conflict)
    events: int = 0
    frames: int = 0
    stream_rows: int = 0
    frames_dropped: int = 0
    frames_late: int = 0  # camera frames that reached the recorder after their session's end: not recorded
    events_missing: int = 0  # GPIO events the live stream skipped (a gap in their seq), recovered or not
    events_recovered: int = 0  # of those, fetched from the pilot's journal and appended
    errors: int = 0
    lost_messages: int = 0
    superseded_messages: int = 0  # of keep-last publishers, replaced by newer ones before the recorder got them
    max_pending: int = 0
    write_seconds: float = 0.0
    last_error: str = ''


@dataclass
class Received:
    """How trials or step changes were received (:meth:`Recorder.trials`, :meth:`Recorder.steps`).

    ``create``: make the subject's file when it has none (False: a StoreError instead; the terminal never
    creates a file for what arrives on a topic); ``raw()``: the message's bytes (CDR of ``type_name``), asked
    for only when it is kept as a conflict; ``conflict(number, reason, kept)``: called (on the writer thread) for
    each row that contradicted a stored one, once it was kept (or could not be: ``kept`` False, reason says why).
    """

    create: bool = True
    raw: Callable[[], bytes] | None = None
    type_name: str = ''
    conflict: Callable[[int, str, bool], None] | None = None


@dataclass
class _Open:
    file: SubjectFile
    topics: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # session -> registered topics


@dataclass
class _Video:
    """One MP4 being written for a session's camera topic (see :mod:`.video`)."""

    name: str
    sink: VideoSink
    type_name: str


def name_error(name: object, label: str, valid: str, names: str) -> str | None:
    """Why ``name`` cannot name a file of the terminal's (:data:`SUBJECT_RE`), or None: ``{label} NAME is not
    {valid}: use ... (it names {names})``."""
    if isinstance(name, str) and SUBJECT_RE.match(name):
        return None
    shown = repr(name)
    if len(shown) > 80:
        shown = f'{shown[:60]}... ({len(name) if isinstance(name, str) else len(shown)} characters)'
    return (f'{label} {shown} is not {valid}: use 1-64 letters, digits, "_" or "-", starting with a letter or '
            f'digit (it names {names})')


def subject_error(subject: str) -> str | None:
    """Why ``subject`` cannot be a subject identifier, or None."""
    return name_error(subject, 'subject', 'a valid identifier', "the subject's file")


def _decode_all(decode: ColumnDecoder, chunk: Sequence[Sample]) -> tuple[Columns, str]:
    """Decode a chunk; a malformed message costs only itself: (columns of the good ones, '' or what was bad)."""
    try:
        return decode(chunk), ''
    except CdrError:
        pass
    parts, bad = [], []
    for i, sample in enumerate(chunk):
        try:
            parts.append(decode([sample]))
        except CdrError as exc:
            bad.append((i, exc))
    columns = decode([]) if not parts else {k: [v for p in parts for v in p[k]] for k in parts[0]}
    return columns, f'{len(bad)} of {len(chunk)} messages could not be decoded (first: {bad[0][1]})'


def _write_all(write: Callable[[Columns], int], columns: Columns) -> tuple[int, Columns, str]:
    """Write ``columns`` through ``write``; a row the table refuses (StoreError) costs only itself: (rows written,
    the columns of those rows, '' or what was refused). The whole chunk at once first: row by row is slower."""
    try:
        return write(columns), columns, ''
    except StoreError:
        n = len(next(iter(columns.values()), []))
        if n <= 1:
            raise
    keep, bad, written = [], [], 0
    for i in range(n):
        try:
            written += write({k: [v[i]] for k, v in columns.items()})
            keep.append(True)
        except StoreError as exc:
            keep.append(False)
            bad.append(exc)
    if len(bad) == n:
        raise bad[0]
    return written, _select(columns, keep), f'{len(bad)} of {n} rows refused by the table (first: {bad[0]})'


def _select(columns: Columns, keep: Sequence[bool]) -> Columns:
    """The rows of ``columns`` where ``keep`` is true."""
    return {k: [v for v, ok in zip(vals, keep, strict=True) if ok] for k, vals in columns.items()}


def _n_messages(items: list[Any]) -> int:
    """Queued items, a run of messages (4-tuple, :meth:`Recorder.messages`) counting each of them."""
    return sum(len(i[3]) if type(i) is tuple and len(i) == 4 else 1 for i in items)


class Recorder:
    """Writes subject files in ``data_dir`` (``<subject>.h5``) on its own thread; see the module docstring."""

    def __init__(self, data_dir: Path | str, *, log: Log | None = None, interval_s: float = INTERVAL_S,
                 nice: int = 0) -> None:
        """``nice``: raise the writer thread's nice value by this much (Linux): under CPU contention the processes
        receiving messages go first, and the writer, ~10x faster than receiving, catches up in larger batches."""
        self.data_dir = Path(data_dir).expanduser()
        self._nice = int(nice)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = log or (lambda level, text: None)
        self._interval = interval_s
        self._cv = threading.Condition()
        self._items: list[Any] = []
        self._stop = False
        self._files: dict[str, _Open] = {}
        self._specs: dict[str, TopicSpec] = {}
        self._decoders: dict[str, tuple[str, ColumnDecoder]] = {}
        self._video_topics: set[str] = set()
        self._videos: dict[tuple[str, str, str], _Video] = {}  # (subject, session, topic) -> its current part
        self._stream_tables: set[tuple[str, str, str]] = set()  # (subject, session, topic) with its table made
        # Sessions ended here: their videos are final, so a late frame must not open another part (the
        # terminal routes messages to an ending session for a grace period; a camera never stops publishing).
        self._ended: set[tuple[str, str]] = set()
        self._late_logged: set[tuple[str, str, str]] = set()  # (subject, session, topic) whose late frames were logged
        # Event-topic messages already in the bag, waiting to be decoded into their event table.
        self._undecoded: dict[tuple[str, str, str], list[tuple[int, bytes]]] = {}
        self._n_undecoded = 0
        self._failed: set[tuple[str, ...]] = set()  # (subject, session[, topic]) whose messages failed: logged once
        self._retry: dict[tuple[str, str], list[_Item]] = {}  # begin/provenance that failed, by (subject, session)
        self._stats = Stats()
        self._gaps = EventGaps()
        #: ``on_gap(subject, session, topic, run_id, first_seq, last_seq)``, from the writer thread: GPIO events
        #: of a session the live stream did not bring (a tail request at its end: last_seq = gaps.END).
        self.on_gap: Callable[[str, str, str, int, int, int], None] | None = None
        self._thread = threading.Thread(target=self._run, name='recorder', daemon=True)
        self._thread.start()

    # -- queueing (any thread) ----------------------------------------------------------------

    def message(self, subject: str, session_id: str, topic: str, recv_ns: int, data: bytes) -> None:
        """Queue one raw message of a topic registered with :meth:`set_topic` (the hot path: one append)."""
        with self._cv:
            self._items.append((subject, session_id, topic, recv_ns, data))

    def messages(self, subject: str, session_id: str, topic: str, run: Sequence[tuple[str, int, bytes]]) -> None:
        """Queue consecutive messages of one topic, as (topic, recv_ns, data): :meth:`message` for a run."""
        with self._cv:
            self._items.append((subject, session_id, topic, run))

    def set_topic(self, spec: TopicSpec, event: tuple[str, ColumnDecoder] | None = None) -> None:
        """Make a topic recordable; ``event``: (kind 'gpio'|'sound', decoder) to also fill that event table, or
        ('stream', :class:`~.streams.StreamDecoder`) to also fill the session's stream table of the topic."""
        with self._cv:
            self._specs[spec.topic] = spec
            if event is not None:
                self._decoders[spec.topic] = event

    def set_video_topic(self, spec: TopicSpec) -> None:
        """Record a camera topic (``sensor_msgs/msg/Image`` or ``CompressedImage``) as MP4 + frame table instead
        of raw bytes in the bag (900 KB per 640x480 frame)."""
        if spec.type not in VIDEO_TYPES:
            raise ValueError(f'{spec.topic}: {spec.type} cannot be recorded as video (only {", ".join(VIDEO_TYPES)})')
        with self._cv:
            self._specs[spec.topic] = spec
            self._video_topics.add(spec.topic)

    def begin_session(self, subject: str, session_id: str, meta: Mapping[str, Any],
                      create_reason: str = '') -> None:
        """Begin a session (meta as :meth:`.storage.SubjectFile.begin_session`; topics are added as they come).

        ``create_reason``: create the subject's file if missing (trials must never be dropped), saying why.
        """
        self._put(_Item('begin', subject, session_id, (dict(meta), create_reason)))

    def trials(self, subject: str, session_id: str, meta: Mapping[str, Any], fields: Sequence[Sequence[Any]],
               rows: Sequence[Mapping[str, Any]], done: Callable[[list[int]], None],
               how: Received | None = None) -> None:
        """Store trials (creating the session, and the file unless ``how.create`` is False, if needed);
        ``done(numbers)`` once durably stored.

        ``numbers`` are every trial number of ``rows`` now in the file, resent duplicates included: the pilot
        needs their ack as much as the new ones'. Not called when storing failed (so the pilot resends).
        A row whose number is stored already with other values, or whose fields are not the session's, is kept
        as a conflict (``how``, :class:`Received`) and acknowledged too: it is durably in the file, and what
        was stored first is never replaced.
        """
        self._put(_Item('trials', subject, session_id, (dict(meta), list(fields), list(rows), how or Received()),
                        done))

    def steps(self, subject: str, session_id: str, meta: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
              done: Callable[[list[int]], None], how: Received | None = None) -> None:
        """Store protocol step changes (deduplicated by seq); ``done(seqs)`` once durably stored."""
        self._put(_Item('steps', subject, session_id, (dict(meta), list(rows), how or Received()), done))

    def provenance(self, subject: str, session_id: str, items: Mapping[str, Any]) -> None:
        self._put(_Item('provenance', subject, session_id, dict(items)))

    def end_session(self, subject: str, session_id: str, ended_ns: int, state: str = 'ended', note: str = '') -> None:
        self._put(_Item('end', subject, session_id, (ended_ns, state, note)))

    def recovered_events(self, subject: str, session_id: str, topic: str, run_id: int,
                         samples: Sequence[tuple[int, bytes]]) -> None:
        """GpioEvents (``(recv_ns, CDR)``) the pilot's journal gave for a gap: those still missing are appended."""
        self._put(_Item('recovered', subject, session_id, (topic, run_id, list(samples))))

    def call(self, fn: Callable[[Recorder], T]) -> Future[T]:
        """Run ``fn(self)`` on the writer thread (where :meth:`open_file`/:meth:`create_file` may be used)."""
        fut: Future[T] = Future()
        self._put(_Item('call', '', '', (fn, fut)))
        return fut

    def _put(self, item: _Item) -> None:
        with self._cv:
            self._items.append(item)
            self._cv.notify()

    # -- writer-thread API (inside call()) ------------------------------------------------------

    def path_of(self, subject: str) -> Path:
        return self.data_dir / f'{subject}.h5'

    def open_file(self, subject: str) -> SubjectFile:
        """The subject's open file; StoreError naming the fix if it does not exist or cannot be opened."""
        self._on_writer_thread()
        if (why := subject_error(subject)) is not None:
            raise StoreError(why)
        have = self._files.get(subject)
        if have is not None:
            return have.file
        path = self.path_of(subject)
        if not path.exists():
            raise StoreError(f'unknown subject {subject!r}: no file {path}; create it first '
                             f'(`autopilot subject create {subject}`)')
        f = SubjectFile.open(path, recover=True)  # a writer killed with it open: repaired
        if f.recovered:
            self._log('warn', f'{path}: was left open by a writer that stopped; repaired (rows it had flushed are '
                              'kept, half-written ones trimmed)')
        self._files[subject] = _Open(f)
        return f

    def create_file(self, subject: str, biography: Mapping[str, Any] | None = None,
                    detail: Mapping[str, Any] | None = None) -> SubjectFile:
        self._on_writer_thread()
        if (why := subject_error(subject)) is not None:
            raise StoreError(why)
        if subject in self._files or self.path_of(subject).exists():
            raise StoreError(f'subject {subject!r} exists already ({self.path_of(subject)})')
        f = SubjectFile.create(self.path_of(subject), subject, biography or {})
        if detail:
            f.add_history('biography', detail=dict(detail))
        self._files[subject] = _Open(f)
        return f

    def count_lost(self, topic: str, n: int) -> None:
        """``n`` messages of ``topic`` lost before they reached the recorder (DDS told: a reader queue overflowed
        or a sample was refused); counted in :attr:`Stats.lost_messages` and logged."""
        if n <= 0:
            return
        with self._cv:
            spec = self._specs.get(topic)
            try:
                qos = json.loads(spec.qos_json) if spec else {}
                depth = int(qos['depth']) if qos.get('history') == 'keep_last' else 0
            except (ValueError, KeyError, TypeError):
                depth = 0
            if depth:
                self._stats.superseded_messages += n
            else:
                self._stats.lost_messages += n
                total = self._stats.lost_messages
        if depth:  # the publisher keeps only its newest: what it replaced was never meant to be delivered late
            self._log('info', f'recorder: {n} messages of {topic} were replaced by newer ones before the recorder got '
                              f'them (its publisher keeps the last {depth} only)')
            return
        self._log('warn', f'recorder: {n} messages of {topic} lost before the recorder got them ({total} lost in '
                          'all); the machine or the network cannot keep up with what is recorded')

    def stats(self) -> Stats:
        with self._cv:
            return Stats(**vars(self._stats))

    def pending(self) -> int:
        """Messages and other items queued and not yet taken by the writer."""
        with self._cv:
            return _n_messages(self._items)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued before this call is written; False on timeout."""
        try:
            self.call(lambda r: r._decode(None)).result(timeout)
            return True
        except FutureTimeout:
            return False

    def close(self, timeout: float = 120.0) -> None:
        """Write what is queued, close every file and stop the thread."""
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():  # never close files under a writer that is still writing
            self._log('error', f'recorder: still writing after {timeout:.0f} s; files left open (the next start '
                               'repairs them)')
            return
        for (subject, sid), items in self._retry.items():
            self._log('error', f'recorder: {subject}/{sid}: {", ".join(i.kind for i in items)} never stored (the '
                               'file could not be opened)')
        for opened in self._files.values():
            try:
                opened.file.close()
            except Exception as exc:  # noqa: BLE001 - closing must go on for the other files
                self._log('error', f'{opened.file.path}: close failed: {exc}')
        self._files.clear()

    def _on_writer_thread(self) -> None:
        if threading.current_thread() is not self._thread:
            raise RuntimeError('subject files are written only on the recorder thread: use Recorder.call')

    # -- the writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        if self._nice and sys.platform == 'linux':  # per thread on Linux only (elsewhere it is the whole process)
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._nice)
            except OSError as exc:
                self._log('warn', f'recorder: writer thread priority not lowered (nice {self._nice}): {exc}')
        while True:
            with self._cv:
                if not self._items and not self._stop:
                    self._cv.wait(self._interval)
                items, self._items = self._items, []
                stop = self._stop
            n = _n_messages(items)
            self._stats.max_pending = max(self._stats.max_pending, n)
            t0 = time.perf_counter()
            if items:
                self._process(items)
            for key, video in list(self._videos.items()):
                self._store_frames(key, video)
            # Event tables are filled from the bag when the writer has time: decoding (~4 us a message, .cdr) on
            # a busy writer takes the GIL from the executor thread, and DDS then blocks the publisher. Under
            # load it waits (bounded), and a session's end or flush() completes it.
            if n < DECODE_BATCH or self._n_undecoded > MAX_UNDECODED:
                self._decode(DECODE_BATCH)
            if stop and not items:
                self._decode(None)
                for key in list(self._videos):  # sessions still running: their MP4s must be playable
                    self._finish_video(key)
                return
            self._stats.write_seconds += time.perf_counter() - t0
            if not items:
                continue
            # A small batch: give the executor a moment to queue more, so batches stay large.
            if n < 64 and not stop:
                time.sleep(min(self._interval, 0.01))

    def _process(self, items: list[Any]) -> None:
        batch: dict[tuple[str, str, str], list[tuple[int, bytes]]] = {}
        for item in items:
            if isinstance(item, tuple):
                if len(item) == 5:
                    subject, sid, topic, recv_ns, data = item
                    batch.setdefault((subject, sid, topic), []).append((recv_ns, data))
                else:  # a run (messages())
                    subject, sid, topic, run = item
                    batch.setdefault((subject, sid, topic), []).extend([(m[1], m[2]) for m in run])
                continue
            if batch:
                self._write_messages(batch)
                batch = {}
            self._control(item)
        if batch:
            self._write_messages(batch)

    def _control(self, item: _Item) -> None:
        try:
            result = getattr(self, f'_do_{item.kind}')(item)
        except Exception as exc:  # noqa: BLE001 - every failure is logged and counted, the thread goes on
            self._stats.errors += 1
            self._stats.last_error = str(exc)
            if item.kind == 'call':  # the caller gets the exception
                item.payload[1].set_exception(exc)
                return
            self._log('error', f'recorder: {item.kind} of {item.subject}/{item.session_id} failed: {exc}')
            if item.kind in ('begin', 'provenance'):  # nobody resends these: applied once the file opens (_replay)
                self._retry.setdefault((item.subject, item.session_id), []).append(item)
            return
        if item.done is not None:
            try:
                item.done(result)
            except Exception as exc:  # noqa: BLE001 - a failing ack callback must not stop the writer
                self._log('error', f'recorder: callback after {item.kind} failed: {exc}')

    def _replay(self, subject: str, session_id: str) -> None:
        """Apply a session's begin and provenance that failed earlier (its file could not be opened then, e.g.
        another writer held it): trials are resent by the pilot, these would be lost. What still fails is kept
        for the next try (the caller's own write then says why)."""
        items = self._retry.pop((subject, session_id), [])
        for i, item in enumerate(items):
            try:
                getattr(self, f'_do_{item.kind}')(item)
            except Exception:  # noqa: BLE001 - logged when it first failed
                self._retry[(subject, session_id)] = items[i:]
                return
            self._log('info', f'recorder: {item.kind} of {subject}/{session_id} stored (it had failed)')

    def _ensure_session(self, subject: str, session_id: str, meta: Mapping[str, Any], create_reason: str) -> SubjectFile:
        self._replay(subject, session_id)
        if subject not in self._files and not self.path_of(subject).exists() and create_reason:
            self._log('warn', f'subject {subject!r} has no file: creating {self.path_of(subject)} ({create_reason})')
            f = self.create_file(subject, detail={'created_by': 'recorder', 'reason': create_reason})
        else:
            f = self.open_file(subject)
        if session_id not in f.file['sessions']:
            f.begin_session(session_id, meta)
        return f

    def _do_begin(self, item: _Item) -> None:
        meta, create_reason = item.payload
        self._ended.discard((item.subject, item.session_id))  # begun again on purpose: its frames are wanted
        self._ensure_session(item.subject, item.session_id, meta, create_reason)

    def _do_trials(self, item: _Item) -> list[int]:
        meta, fields, rows, how = item.payload
        f = self._ensure_session(item.subject, item.session_id, meta,
                                 f'trials arrived from pilot {meta.get("pilot", "?")!r}' if how.create else '')
        numbers = sorted({int(r['trial_number']) for r in rows})
        have = f.trial_fields(item.session_id)
        if have is None:
            f.set_trial_fields(item.session_id, fields)
        elif [tuple(x) for x in fields] != [tuple(x) for x in have]:
            # Not this session's trials (a task's schema never changes within a session): kept apart.
            why = (f'its fields {[x[0] for x in fields]} are not the session\'s {[x[0] for x in have]}'
                   if [x[0] for x in fields] != [x[0] for x in have] else
                   'its fields\' types or units are not the session\'s')
            return [n for n in numbers if self._conflict(f, item, how, 'trial', n, why)]
        new = f.add_trials(item.session_id, rows)
        self._stats.trials += len(new)
        return self._kept(f, item, how, 'trial', rows, new)

    def _do_steps(self, item: _Item) -> list[int]:
        meta, rows, how = item.payload
        f = self._ensure_session(item.subject, item.session_id, meta,
                                 f'step changes arrived from pilot {meta.get("pilot", "?")!r}' if how.create else '')
        return self._kept(f, item, how, 'step', rows, f.add_steps(item.session_id, rows))

    def _kept(self, f: SubjectFile, item: _Item, how: Received, kind: str, rows: Sequence[Mapping[str, Any]],
              new: Sequence[int]) -> list[int]:
        """The numbers of ``rows`` (trials or step changes) now durably in the file, to acknowledge: those just
        stored (``new``), repeats of stored ones, and contradicting ones kept apart as conflicts."""
        table, key, label = ('trials', 'trial_number', 'trial') if kind == 'trial' else ('steps', 'seq', 'step change')
        fresh, kept = set(new), set(new)
        for row in rows:
            n = int(row[key])
            if n in fresh:  # the row just stored (a later row of the same number is compared with it)
                fresh.discard(n)
                continue
            differ = f.differences(item.session_id, table, row)
            if not differ:
                if kind == 'trial':
                    self._stats.duplicate_trials += 1
                kept.add(n)
            elif self._conflict(f, item, how, kind, n, f'{label} {n} is stored already with other values of '
                                                       f'{", ".join(differ)}'):
                kept.add(n)
        return sorted(kept)

    def _conflict(self, f: SubjectFile, item: _Item, how: Received, kind: str, number: int, why: str) -> bool:
        """Keep a contradicting message in the session's conflicts (the stored one stays); True when it is kept."""
        try:
            data = how.raw() if how.raw is not None else b''
            if not f.add_conflict(item.session_id, kind, number, why, data, time.time_ns(), how.type_name):
                return True  # these very bytes were kept before (a resend): told then
        except Exception as exc:  # noqa: BLE001 - told like the conflict itself, never stops the writer
            self._stats.errors += 1
            self._stats.last_error = str(exc)
            why = f'{why}; not kept: {exc}'
            kept = False
        else:
            self._stats.conflicts += 1
            kept = True
        if how.conflict is not None:
            try:
                how.conflict(number, why, kept)
            except Exception as exc:  # noqa: BLE001 - a failing callback must not stop the writer
                self._log('error', f'recorder: conflict callback failed: {exc}')
        else:
            self._log('warn', f'recorder: {item.subject}/{item.session_id}: {why}' +
                      ('; kept as a conflict' if kept else ''))
        return kept

    def _do_provenance(self, item: _Item) -> None:
        self.open_file(item.subject).set_provenance(item.session_id, item.payload)

    def _do_end(self, item: _Item) -> None:
        # First: whatever fails below, this session's videos are closed for good.
        self._ended.add((item.subject, item.session_id))
        self._replay(item.subject, item.session_id)
        self._decode(None, (item.subject, item.session_id))
        for key in [k for k in self._videos if k[:2] == (item.subject, item.session_id)]:
            self._finish_video(key)
        self._stream_tables = {k for k in self._stream_tables if k[:2] != (item.subject, item.session_id)}
        ended_ns, state, note = item.payload
        f = self.open_file(item.subject)
        if item.session_id in f.file['sessions']:
            f.end_session(item.session_id, ended_ns=ended_ns, state=state, note=note)
            self._store_gaps(f, item.subject, item.session_id)
        self._files[item.subject].topics.pop(item.session_id, None)
        # Whatever the live stream did not bring after the last event recorded (a link lost at the end).
        for topic, run_id, first in self._gaps.tails(item.subject, item.session_id):
            self._gap((item.subject, item.session_id, topic), run_id, first, END, count=False)

    def _gap(self, key: tuple[str, str, str], run_id: int, first: int, last: int, count: bool = True) -> None:
        if count:
            self._stats.events_missing += last - first + 1
            self._log('warn', f'recorder: {key[0]}/{key[1]}: {last - first + 1} {key[2]} events missing from the '
                              f'live stream (seq {first}..{last} of gpio run {run_id}): asking the pilot\'s journal')
        if self.on_gap is not None:
            try:
                self.on_gap(*key, run_id, first, last)
            except Exception as exc:  # noqa: BLE001 - the gap stays counted; the terminal logs why
                self._log('error', f'recorder: cannot ask for missing events: {exc}')

    def _store_gaps(self, f: SubjectFile, subject: str, sid: str) -> None:
        counts = self._gaps.counts(subject, sid)
        if counts is not None and (counts[0] or counts[1]):
            f.set_event_gaps(sid, missing=counts[0], recovered=counts[1])

    def _do_recovered(self, item: _Item) -> None:
        topic, run_id, samples = item.payload
        key = (item.subject, item.session_id, topic)
        columns, bad = _decode_all(gpio_columns, samples)
        if bad:
            self._log('error', f'recorder: {item.subject}/{item.session_id}: recovered events: {bad}')
        columns = _select(columns, [r == run_id for r in columns['run_id']])
        keep = self._gaps.fill(key, run_id, columns['seq'])
        if not any(keep):
            return
        columns = _select(columns, keep)
        f = self.open_file(item.subject)
        n = f.add_events(item.session_id, 'gpio', columns)
        self._stats.events += n
        self._stats.events_recovered += n
        self._store_gaps(f, item.subject, item.session_id)
        self._log('info', f'recorder: {item.subject}/{item.session_id}: {n} {topic} events recovered from the '
                          "pilot's journal")

    def _write_frames(self, subject: str, sid: str, topic: str, messages: list[tuple[int, bytes]]) -> None:
        """Camera frames into the session's MP4 (a new part when the format changes); their rows into its table."""
        key = (subject, sid, topic)
        if key not in self._videos and (subject, sid) in self._ended:
            self._count_late(key, len(messages))
            return
        spec = self._specs[topic]
        for recv_ns, data in messages:
            try:
                video = self._videos.get(key)
                if video is None:
                    video = self._start_video(key, decode_frame(data, spec.type), spec.type)
                try:
                    video.sink.write(data, recv_ns, spec.type)
                except FrameFormatError as exc:
                    self._log('warn', f'recorder: {subject}/{sid}: {topic}: {exc}; starting a new video part')
                    self._finish_video(key)
                    self._start_video(key, decode_frame(data, spec.type), spec.type).sink.write(data, recv_ns,
                                                                                               spec.type)
            except Exception as exc:  # noqa: BLE001 - counted as lost, said once per session
                self._stats.lost_messages += 1
                self._stats.errors += 1
                self._stats.last_error = str(exc)
                if key not in self._failed:
                    self._failed.add(key)
                    self._log('error', f'recorder: {subject}/{sid}: frames of {topic} not recorded (see stats): {exc}')
        if key in self._videos:
            self._store_frames(key, self._videos[key])

    def _count_late(self, key: tuple[str, str, str], n: int) -> None:
        """``n`` frames of ``key`` arrived after its session ended: counted, logged once per session and topic."""
        self._stats.frames_late += n
        if key not in self._late_logged:
            self._late_logged.add(key)
            self._log('info', f'recorder: {key[0]}/{key[1]}: frames of {key[2]} arrived after the session ended; '
                              'not recorded (counted in stats().frames_late)')

    def _start_video(self, key: tuple[str, str, str], frame: Frame, type_name: str) -> _Video:
        subject, sid, topic = key
        self._replay(subject, sid)
        f = self.open_file(subject)
        name, path = next_video_path(f.path, sid, topic)
        path.parent.mkdir(parents=True, exist_ok=True)
        sink = VideoSink.for_frame(path, frame, topic=topic)
        try:
            f.add_video(sid, name, sink.attrs())
        except Exception:
            sink.close()
            raise
        video = self._videos[key] = _Video(name, sink, type_name)
        self._log('info', f'recorder: {subject}/{sid}: recording {topic} to {path}')
        return video

    def _store_frames(self, key: tuple[str, str, str], video: _Video) -> None:
        """Rows of the frames encoded so far into the video's table."""
        rows = video.sink.take_rows()
        if rows:
            try:
                self.open_file(key[0]).add_frames(key[1], video.name, rows)
                self._stats.frames += len(rows)
            except Exception as exc:  # noqa: BLE001 - the MP4 has them; the table says what it misses
                self._stats.errors += 1
                self._stats.last_error = str(exc)
                self._log('error', f'recorder: {key[0]}/{key[1]}: {len(rows)} frame rows of {video.name} not '
                                   f'stored: {exc}')

    def _finish_video(self, key: tuple[str, str, str]) -> None:
        video = self._videos.pop(key)
        try:
            summary = video.sink.close()
        finally:
            self._store_frames(key, video)  # the rows of the last frames encoded
        self._stats.frames_dropped += summary.dropped
        try:
            self.open_file(key[0]).finish_video(key[1], video.name, summary.attrs())
        except Exception as exc:  # noqa: BLE001 - logged and counted; the MP4 and its rows are there
            self._stats.errors += 1
            self._stats.last_error = str(exc)
            self._log('error', f'recorder: {key[0]}/{key[1]}: video {video.name} not finished in the file: {exc}')

    def _decode(self, limit: int | None, session: tuple[str, str] | None = None) -> None:
        """Decode up to ``limit`` (None: all) waiting event messages (of ``session`` only, if given)."""
        for key in list(self._undecoded):
            if session is not None and key[:2] != session:
                continue
            subject, sid, topic = key
            pending = self._undecoded[key]
            chunk = pending if limit is None else pending[:limit]
            try:
                kind, decode = self._decoders[topic]
                columns, bad = _decode_all(decode, chunk)
                if bad:
                    self._stats.errors += 1
                    self._stats.last_error = bad
                    self._log('error', f'recorder: {subject}/{sid}: {bad} (kept in the bag, not in the {kind} '
                                       'event table)')
                f = self.open_file(subject)
                if kind == 'stream':
                    name = stream_name(topic)
                    if key not in self._stream_tables:  # once per session and topic, not per chunk
                        f.add_stream(sid, name, topic, decode.type_name, decode.spec,  # type: ignore[attr-defined]
                                     decode.skipped, decode.time_columns)  # type: ignore[attr-defined]
                        self._stream_tables.add(key)
                    rows, _, refused = _write_all(partial(f.add_stream_rows, sid, name), columns)
                    self._stats.stream_rows += rows
                else:
                    rows, columns, refused = _write_all(partial(f.add_events, sid, kind), columns)
                    self._stats.events += rows
                    if 'seq' in columns:
                        for gap in self._gaps.observe(key, columns['run_id'], columns['seq']):
                            self._gap(key, *gap)
                if refused:
                    self._stats.errors += 1
                    self._stats.last_error = refused
                    self._log('error', f'recorder: {subject}/{sid}: {topic}: {refused} (kept in the bag)')
            except Exception as exc:  # noqa: BLE001 - the bag keeps them; the table misses them, said once
                self._stats.errors += 1
                self._stats.last_error = str(exc)
                self._log('error', f'recorder: {subject}/{sid}: {len(chunk)} {topic} events not written to the '
                                   f'event table (they are in the bag): {exc}')
            del pending[:len(chunk)]
            self._n_undecoded -= len(chunk)
            if not pending:
                del self._undecoded[key]
            if limit is not None:
                limit -= len(chunk)
                if limit <= 0:
                    return

    def _do_call(self, item: _Item) -> None:
        fn, fut = item.payload
        fut.set_result(fn(self))

    def _write_messages(self, batch: dict[tuple[str, str, str], list[tuple[int, bytes]]]) -> None:
        by_session: dict[tuple[str, str], list[str]] = defaultdict(list)
        for subject, sid, topic in batch:
            by_session[(subject, sid)].append(topic)
        for (subject, sid), topics in by_session.items():
            videos = [t for t in topics if t in self._video_topics]
            for topic in videos:
                self._write_frames(subject, sid, topic, batch[(subject, sid, topic)])
            topics = [t for t in topics if t not in self._video_topics]
            if not topics:
                continue
            try:
                self._replay(subject, sid)
                f = self.open_file(subject)
                opened = self._files[subject]
                known = opened.topics[sid]
                new = [t for t in topics if t not in known]
                if new:
                    f.add_topics(sid, [self._specs[t] for t in new])
                    known.update(new)
                for topic in topics:
                    messages = batch[(subject, sid, topic)]
                    f.append_messages(sid, topic, messages)
                    self._stats.messages += len(messages)
                    self._stats.bytes += sum(len(m[1]) for m in messages)
                    if topic in self._decoders:
                        self._undecoded.setdefault((subject, sid, topic), []).extend(messages)
                        self._n_undecoded += len(messages)
                self._stats.batches += 1
            except Exception as exc:  # noqa: BLE001 - counted as lost and reported once per session
                lost = sum(len(batch[(subject, sid, t)]) for t in topics)
                self._stats.lost_messages += lost
                self._stats.errors += 1
                self._stats.last_error = str(exc)
                if (subject, sid) not in self._failed:
                    self._failed.add((subject, sid))
                    self._log('error', f'recorder: could not record messages of {subject}/{sid} ({lost} lost so '
                                       f'far; see stats): {exc}')
