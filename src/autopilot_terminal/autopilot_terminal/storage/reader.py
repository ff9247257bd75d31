"""Read a subject file, live while the Terminal writes it (SWMR) or afterwards: for tools and analysis.

:class:`SubjectReader` opens the file with ``swmr=True`` (it never blocks or disturbs the writer) and
returns plain data: tables as dicts of numpy columns (strings decoded to ``str``) or lists of row dicts,
bag topics with their metadata, and the bag's raw messages in receive-time order across topics, which is
what ``autopilot bag play`` republishes and the MCAP export writes.

Live reading: every call refreshes the datasets it reads, so rows appended since are seen. A structure
change by the writer (new session or topic, widened table; each appends a row to ``/structure``) is seen
by reopening the file, which every call does by itself when ``/structure`` grew, and once more if a read
fails midway (the writer was changing the structure at that moment). Rows a crashed writer left
half-written (key column zero, see :mod:`.recovery`) are skipped.

HDF5 keeps one open file per process, so all readers of one file in a process share one handle, and
the process that writes a file (an open :class:`.SubjectFile`) cannot also read it this way (:mod:`.locking`).
"""

from __future__ import annotations

import ctypes
import functools
import heapq
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import h5py
import numpy as np

from . import locking
from .errors import StoreError, open_error
from .schema import KEY_COLUMNS, VIDEO_KEY, Field, check_format, fields_from_json

#: Bytes read from a topic's byte stream at a time while iterating messages.
_BLOCK_BYTES = 1 << 20

T = TypeVar('T')
#: Metadata read attempts of a SWMR reader. HDF5's default (100, with the back-off capped at an hour divided
#: by the attempts) makes a damaged file hang a reader for the best part of an hour; 20 attempts retry a read
#: torn by the writer for about a second (back-off from 1 us, doubling), then fail.
READ_ATTEMPTS = 20
#: What HDF5 says when a SWMR reader opens a file whose writer is, for the moment, not in SWMR mode.
_IN_WINDOW = re.compile('already open for write|not already open for SWMR writing')


@dataclass(frozen=True)
class TopicInfo:
    """A recorded topic; count/first_ns/last_ns are computed from its index (correct while live)."""

    name: str  # bag group name ("0", "1", ...)
    topic: str
    type: str
    interface_text: str
    type_hash: str
    qos: str  # JSON text
    serialization: str
    count: int
    first_ns: int
    last_ns: int


@dataclass(frozen=True)
class VideoInfo:
    """A session's recorded video (``sessions/<id>/video/<name>``); ``rows`` counts its table (correct while live).

    ``path`` is the MP4 resolved against the subject file's directory (``relpath`` is what is stored);
    frames/bytes/sha256/dropped/rejected are the writer's summary, 0/'' while ``state`` is 'recording'.
    """

    name: str
    topic: str
    path: Path
    relpath: str
    codec: str
    width: int
    height: int
    encoding: str
    fps: float
    state: str  # recording | finished
    rows: int
    frames: int
    bytes: int
    sha256: str
    dropped: int
    rejected: int


@dataclass(frozen=True)
class BagMessage:
    recv_ns: int
    topic: str
    data: bytes  # serialized (CDR) message


@dataclass(frozen=True)
class Conflict:
    """A message kept because it contradicted what its session holds (see ``SubjectFile.add_conflict``)."""

    recv_ns: int
    kind: str  # 'trial' or 'step'
    number: int  # its trial number or step change seq
    sha256: str  # of data
    reason: str
    type: str  # the message type data is the CDR of
    data: bytes  # b'' when it was too large to keep


@dataclass
class _Handle:
    """The process's one open h5py file for a subject file, shared by its readers."""

    file: h5py.File | None  # None after a failed reopen: the next call tries again
    structure_rows: int
    users: int = 1


_HANDLES: dict[tuple[int, int], _Handle] = {}


@functools.cache
def _hdf5() -> ctypes.CDLL | None:
    """The HDF5 library h5py runs on (for the one setting h5py does not expose), or None."""
    try:
        with open('/proc/self/maps') as maps:
            paths = {line.split()[-1] for line in maps if '/libhdf5' in line}
    except OSError:
        return None
    for path in sorted(paths):
        if not re.fullmatch(r'libhdf5(_serial)?[-.].*\.so.*', os.path.basename(path)):
            continue
        try:
            lib = ctypes.CDLL(path)  # already loaded by h5py: the same library instance
            major, minor, release = ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint()
            lib.H5get_libversion(ctypes.byref(major), ctypes.byref(minor), ctypes.byref(release))
            if (major.value, minor.value, release.value) != tuple(h5py.version.hdf5_version_tuple):
                continue
            lib.H5Pset_metadata_read_attempts.argtypes = [ctypes.c_int64, ctypes.c_uint]
            return lib
        except (OSError, AttributeError):
            continue
    return None


def _fapl() -> h5py.h5p.PropFAID:
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    # HDF5's flock is off, as for the writer: exclusion is the writer's lock plus the superblock flags.
    fapl.set_file_locking(False, True)
    lib = _hdf5()
    if lib is not None:
        lib.H5Pset_metadata_read_attempts(fapl.id, READ_ATTEMPTS)
    return fapl


def _open(path: Path, timeout: float) -> h5py.File:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ, fapl=_fapl())
            f = h5py.File(fid)
            break
        except (OSError, RuntimeError) as exc:
            # The writer leaves SWMR for about a millisecond to add structure: opening then fails; retry.
            if _IN_WINDOW.search(str(exc)) and time.monotonic() < deadline:
                time.sleep(0.01)
                continue
            raise open_error(path, exc) from exc
    try:
        check_format(f, path)
        if 'structure' not in f:
            raise StoreError(f'{path}: subject file without /structure; the file is damaged')
        _structure_rows(f)
    except (KeyError, OSError, RuntimeError, ValueError) as exc:
        f.close()
        raise StoreError(f'{path}: damaged subject file ({exc}); restore it from a backup') from exc
    except BaseException:
        f.close()
        raise
    return f


def _structure_rows(f: h5py.File) -> int:
    ds = f['structure']
    ds.refresh()
    return ds.shape[0]


class SubjectReader:
    """Read-only view of a subject file. ``timeout``: how long to retry while the writer changes structure."""

    def __init__(self, path: Path | str, *, timeout: float = 2.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        if locking.written_here(self.path):
            raise StoreError(f'{self.path}: this process writes it (an open SubjectFile); HDF5 shares one open file '
                             'per process, so a reader here would stop the writer changing its structure. Read it '
                             'from another process, or after SubjectFile.close()')
        try:
            self._key = locking.file_key(self.path)
        except OSError as exc:
            raise open_error(self.path, exc) from exc
        handle = _HANDLES.get(self._key)
        if handle is None:
            f = _open(self.path, timeout)
            handle = _HANDLES[self._key] = _Handle(f, _structure_rows(f), users=0)
        handle.users += 1
        locking.reading(self._key, handle.users)
        self._closed = False

    def refresh(self) -> None:
        """Reopen the file (for every reader of it in this process): see everything created since."""
        handle = self._handle()
        if handle.file is not None:
            handle.file.close()
            handle.file = None
        handle.file = _open(self.path, self.timeout)
        handle.structure_rows = _structure_rows(handle.file)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        handle = _HANDLES.get(self._key)
        if handle is None:
            return
        handle.users -= 1
        locking.reading(self._key, handle.users)
        if handle.users <= 0:
            if handle.file is not None:
                handle.file.close()
            del _HANDLES[self._key]

    def __enter__(self) -> SubjectReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _handle(self) -> _Handle:
        handle = _HANDLES.get(self._key)
        if self._closed or handle is None:
            raise StoreError(f'{self.path}: reader closed')
        return handle

    @property
    def file(self) -> h5py.File:
        handle = self._handle()
        if handle.file is None:
            self.refresh()
        assert handle.file is not None
        return handle.file

    def _call(self, what: str, fn: Callable[[h5py.File], T]) -> T:
        """Run ``fn`` on a current view: reopen first if the structure changed, and retry once on failure."""
        try:
            f = self.file
            if _structure_rows(f) != self._handle().structure_rows:
                self.refresh()
            return fn(self.file)
        except (KeyError, OSError, RuntimeError, ValueError):
            self.refresh()  # the writer may have changed the structure just then
        try:
            return fn(self.file)
        except KeyError as exc:
            if 'checksum' in str(exc):
                raise StoreError(f'{self.path}: reading {what} failed: {exc}; the file is damaged') from exc
            raise StoreError(f'{self.path}: no {what}') from exc
        except (OSError, RuntimeError, ValueError) as exc:  # ValueError: bad UTF-8 or JSON in damaged data
            raise StoreError(f'{self.path}: reading {what} failed: {exc} (the file may be damaged)') from exc

    # -- subject ----------------------------------------------------------------------------

    @property
    def subject(self) -> str:
        return self._call('subject', lambda f: _str(f.attrs['subject']))

    @property
    def created_ns(self) -> int:
        return self._call('created_ns', lambda f: int(f.attrs['created_ns']))

    @property
    def format_version(self) -> int:
        return self._call('format_version', lambda f: int(f.attrs['format_version']))

    @property
    def biography(self) -> dict[str, Any]:
        return self._call('biography', lambda f: json.loads(f['subject'].attrs['biography']))

    def history(self) -> list[dict[str, Any]]:
        """/subject/history rows, oldest first, ``detail`` parsed from JSON."""
        return self._call('history', history_rows)

    def weights(self) -> list[dict[str, Any]]:
        """/subject/weights rows (time_ns, grams, when, session_id), oldest first; [] when never weighed."""
        return self._call('weights', weight_rows)

    def structure(self) -> list[dict[str, Any]]:
        """The writer's structure changes (time_ns, change), oldest first."""
        return self._call('structure', lambda f: _rows(_table(f['structure'], KEY_COLUMNS['structure'])))

    # -- sessions ---------------------------------------------------------------------------

    def sessions(self) -> list[str]:
        """Session ids, by start time."""
        def read(f: h5py.File) -> list[str]:
            groups = f['sessions']
            return sorted(groups, key=lambda sid: (int(groups[sid].attrs.get('started_ns', 0)), sid))
        return self._call('sessions', read)

    def session(self, session_id: str) -> dict[str, Any]:
        """A session's attributes: pilot, task, protocol, step, step_name, started_ns, ended_ns, state, ..."""
        return self._call(f'session {session_id!r}',
                          lambda f: {k: _plain(v) for k, v in _group(f, session_id).attrs.items()})

    def trial_fields(self, session_id: str) -> list[Field] | None:
        """The task's declared trial fields [(name, TrialField type, unit)], or None if not declared."""
        def read(f: h5py.File) -> list[Field] | None:
            g = _group(f, session_id)
            return fields_from_json(g['trials'].attrs['fields']) if 'trials' in g else None
        return self._call(f'session {session_id!r}', read)

    def trials(self, session_id: str) -> dict[str, np.ndarray]:
        """The trial table as columns ({} while the session has no trial schema)."""
        def read(f: h5py.File) -> dict[str, np.ndarray]:
            g = _group(f, session_id)
            return _columns(_table(g['trials'], KEY_COLUMNS['trials'])) if 'trials' in g else {}
        return self._call(f'trials of session {session_id!r}', read)

    def trial_rows(self, session_id: str) -> list[dict[str, Any]]:
        """The trials as row dicts of Python values."""
        def read(f: h5py.File) -> list[dict[str, Any]]:
            g = _group(f, session_id)
            return _rows(_table(g['trials'], KEY_COLUMNS['trials'])) if 'trials' in g else []
        return self._call(f'trials of session {session_id!r}', read)

    def events(self, session_id: str, kind: str) -> dict[str, np.ndarray]:
        """events/<kind> ('gpio' or 'sound') as columns."""
        return self._call(f'{kind} events of session {session_id!r}',
                          lambda f: _columns(_table(_group(f, session_id)['events'][kind], KEY_COLUMNS[kind])))

    def steps(self, session_id: str) -> dict[str, np.ndarray]:
        """The session's protocol step changes as columns."""
        return self._call(f'steps of session {session_id!r}',
                          lambda f: _columns(_table(_group(f, session_id)['steps'], KEY_COLUMNS['steps'])))

    def provenance(self, session_id: str) -> dict[str, Any]:
        """Provenance items, parsed from their JSON text."""
        return self._call(f'provenance of session {session_id!r}',
                          lambda f: {k: json.loads(v) for k, v in _group(f, session_id)['provenance'].attrs.items()})

    def conflicts(self, session_id: str) -> list[Conflict]:
        """Messages kept because they contradicted the session's stored trials or step changes, oldest first."""
        def read(f: h5py.File) -> list[Conflict]:
            g = _group(f, session_id)
            if 'conflicts' not in g:
                return []
            c = g['conflicts']
            c['data'].refresh()
            types = json.loads(c.attrs['types'])
            data = c['data']
            return [Conflict(int(r['recv_ns']), _str(r['kind']), int(r['number']), _str(r['sha256']),
                             _str(r['reason']), str(types.get(_str(r['kind']), '')),
                             data[int(r['offset']):int(r['offset']) + int(r['size'])].tobytes())
                    for r in _table(c['index'], 'recv_ns')]
        return self._call(f'conflicts of session {session_id!r}', read)

    # -- bag --------------------------------------------------------------------------------

    def topics(self, session_id: str) -> list[TopicInfo]:
        """The session's recorded topics, in registration order."""
        def read(f: h5py.File) -> list[TopicInfo]:
            bag = _group(f, session_id)['bag']
            out = []
            for name in sorted(bag, key=int):
                tg = bag[name]
                recv = _table(tg['index'], 'recv_ns')['recv_ns']
                a = {k: _plain(v) for k, v in tg.attrs.items()}
                out.append(TopicInfo(name, a['topic'], a['type'], a['interface_text'], a['type_hash'], a['qos'],
                                     a['serialization'], int(recv.size), int(recv.min()) if recv.size else 0,
                                     int(recv.max()) if recv.size else 0))
            return out
        return self._call(f'bag of session {session_id!r}', read)

    def messages(self, session_id: str, topics: Iterable[str] | None = None, *, start_ns: int | None = None,
                 end_ns: int | None = None) -> Iterator[BagMessage]:
        """Messages of ``topics`` (default all) with start_ns <= recv_ns < end_ns, by receive time.

        Ties keep topic registration order, then append order. The indexes are read when this is called
        (later appends are not included); bytes are read in blocks of about a megabyte per topic.
        """
        wanted = set(topics) if topics is not None else None

        def read(f: h5py.File) -> list[Iterator[tuple[int, int, int, str, bytes]]]:
            bag = _group(f, session_id)['bag']
            streams = []
            for pos, name in enumerate(sorted(bag, key=int)):
                tg = bag[name]
                topic = _str(tg.attrs['topic'])
                if wanted is not None and topic not in wanted:
                    continue
                index = _table(tg['index'], 'recv_ns')
                keep = np.ones(index.size, dtype=bool)
                if start_ns is not None:
                    keep &= index['recv_ns'] >= start_ns
                if end_ns is not None:
                    keep &= index['recv_ns'] < end_ns
                # Append order is receive order except for jitter between callbacks: sort, stably.
                index = index[keep][np.argsort(index['recv_ns'][keep], kind='stable')]
                data = tg['data']
                data.refresh()
                streams.append(_stream(pos, topic, index, _Bytes(data, self.path, topic)))
            return streams

        streams = self._call(f'bag of session {session_id!r}', read)
        for recv_ns, _, _, topic, data in heapq.merge(*streams):
            yield BagMessage(recv_ns, topic, data)

    # -- continuous streams -----------------------------------------------------------------

    def streams(self, session_id: str) -> dict[str, dict[str, Any]]:
        """The session's stream tables: name -> attributes (topic, type, skipped: fields left out, time_columns)."""
        def read(f: h5py.File) -> dict[str, dict[str, Any]]:
            g = _group(f, session_id)
            if 'streams' not in g:
                return {}
            out = {}
            for name, ds in g['streams'].items():
                a = {k: _plain(v) for k, v in ds.attrs.items()}
                a['skipped'] = json.loads(a.get('skipped') or '[]')
                a['time_columns'] = json.loads(a.get('time_columns') or '[]')
                out[name] = a
            return out
        return self._call(f'streams of session {session_id!r}', read)

    def stream(self, session_id: str, name: str) -> dict[str, np.ndarray]:
        """A stream table as columns: recv_ns, then the message's fields by dotted path."""
        return self._call(f'stream {name!r} of session {session_id!r}',
                          lambda f: _columns(_table(_group(f, session_id)['streams'][name], 'recv_ns')))

    # -- video ------------------------------------------------------------------------------

    def videos(self, session_id: str) -> list[VideoInfo]:
        """The session's recorded videos, by name ([] if none)."""
        def read(f: h5py.File) -> list[VideoInfo]:
            g = _group(f, session_id)
            if 'video' not in g:
                return []
            return [_video_info(self.path, name, g['video'][name]) for name in sorted(g['video'])]
        return self._call(f'videos of session {session_id!r}', read)

    def video(self, session_id: str, name: str) -> VideoInfo:
        """One recorded video's metadata (StoreError if there is no such video)."""
        return self._call(f'video {name!r} of session {session_id!r}',
                          lambda f: _video_info(self.path, name, _group(f, session_id)['video'][name]))

    def video_frames(self, session_id: str, name: str) -> dict[str, np.ndarray]:
        """A video's frame table as columns: frame (index in the MP4), stamp_ns (header stamp), recv_ns."""
        return self._call(f'video {name!r} of session {session_id!r}',
                          lambda f: _columns(_table(_group(f, session_id)['video'][name], VIDEO_KEY)))

    def video_path(self, session_id: str, name: str) -> Path:
        """Where the video's MP4 is: its stored path, relative to the subject file's directory, resolved."""
        return self.video(session_id, name).path


def _video_info(h5: Path, name: str, ds: h5py.Dataset) -> VideoInfo:
    a = {k: _plain(v) for k, v in ds.attrs.items()}
    rel = str(a['path'])
    return VideoInfo(name, str(a['topic']), h5.parent / rel, rel, str(a.get('codec', '')), int(a.get('width', 0)),
                     int(a.get('height', 0)), str(a.get('encoding', '')), float(a.get('fps', 0.0)),
                     str(a.get('state', '')), int(_table(ds, VIDEO_KEY).size), int(a.get('frames', 0)),
                     int(a.get('bytes', 0)), str(a.get('sha256', '')), int(a.get('dropped', 0)),
                     int(a.get('rejected', 0)))


def history_rows(f: h5py.File) -> list[dict[str, Any]]:
    """/subject/history of an open subject file (the writer's or a reader's), ``detail`` parsed from JSON."""
    rows = _rows(_table(f['subject/history'], KEY_COLUMNS['history']))
    for row in rows:
        row['detail'] = json.loads(row['detail']) if row['detail'] else {}
    return rows


def weight_rows(f: h5py.File) -> list[dict[str, Any]]:
    """/subject/weights of an open subject file (the writer's or a reader's), oldest first; [] without it."""
    subject = f['subject']
    return _rows(_table(subject['weights'], KEY_COLUMNS['weights'])) if 'weights' in subject else []


class _Bytes:
    """Reads slices of a topic's byte stream through a block buffer."""

    def __init__(self, ds: h5py.Dataset, path: Path, topic: str) -> None:
        self._ds, self._path, self._topic = ds, path, topic
        self._lo, self._buf = 0, b''

    def read(self, offset: int, size: int) -> bytes:
        lo = offset - self._lo
        if lo < 0 or lo + size > len(self._buf):
            end = min(self._ds.shape[0], offset + max(size, _BLOCK_BYTES))
            try:
                self._buf = self._ds[offset:end].tobytes() if end > offset else b''
            except (OSError, RuntimeError) as exc:
                raise StoreError(f'{self._path}: bag {self._topic}: reading bytes failed: {exc}') from exc
            self._lo, lo = offset, 0
            if size > len(self._buf):
                raise StoreError(f'{self._path}: bag {self._topic}: message at byte {offset} ({size} bytes) runs '
                                 'past the stored bytes; the file is damaged')
        return self._buf[lo:lo + size]


def _stream(pos: int, topic: str, index: np.ndarray, data: _Bytes) -> Iterator[tuple[int, int, int, str, bytes]]:
    for i, (offset, size, recv) in enumerate(zip(index['offset'].tolist(), index['size'].tolist(),
                                                 index['recv_ns'].tolist(), strict=True)):
        yield recv, pos, i, topic, data.read(offset, size)


def _group(f: h5py.File, session_id: str) -> h5py.Group:
    if not isinstance(session_id, str) or not session_id or '/' in session_id:
        raise KeyError(session_id)
    return f['sessions'][session_id]


def _table(ds: h5py.Dataset, key: str) -> np.ndarray:
    ds.refresh()
    arr = ds[()]
    return arr[arr[key] != 0]


def _columns(arr: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    for name in arr.dtype.names or ():
        col = arr[name]
        out[name] = np.char.decode(col, 'utf-8') if col.dtype.kind == 'S' else col
    return out


def _rows(arr: np.ndarray) -> list[dict[str, Any]]:
    cols = {name: values.tolist() for name, values in _columns(arr).items()}
    return [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
