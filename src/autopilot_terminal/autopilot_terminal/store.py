"""Write one subject's HDF5 file: history, sessions, typed trial tables, events and a bag of raw messages.

The layout and the reasons behind it are ``docs/hdf5-layout.md`` (format :data:`FORMAT`, version
:data:`FORMAT_VERSION`). :class:`SubjectFile` is the only writer of its file: it holds an exclusive
open-file-description lock for its lifetime (the kernel drops it when the process dies), so a second writer
gets a :class:`StoreError` instead of interleaved writes. Readers (:mod:`.reader`) open it with SWMR at any
time, from other processes.

Every batch is written in SWMR mode and flushed, so a SIGKILL keeps every batch whose call returned; calls
whose result the Terminal acknowledges (:meth:`SubjectFile.add_trials`, :meth:`SubjectFile.add_steps`) also
fsync by default. Resent trials and step changes are recognised by number and not written again.

SWMR supports appending to existing datasets only. Creating groups, datasets or attributes (a session, a
trial schema or bag topic learnt after the session started, provenance, the end of a session, a widened
string column) runs in a *structure window*: close, reopen without SWMR, change, log the change in
``/structure`` (live readers reopen when it grows), reopen, re-enter SWMR: a few milliseconds
(:attr:`SubjectFile.restructure_count`, ``restructure_seconds``).

Strings in tables are fixed-width UTF-8. A value longer than its column is never truncated: the column is
widened (the table rewritten) and the value stored whole, up to :data:`MAX_STRING_BYTES`; beyond, StoreError.

Rows a crash left half-written read as zeros; every table has a key column that is never 0 in a stored row
(:data:`KEY_COLUMNS`), by which readers skip them. :meth:`SubjectFile.open` with ``recover=True`` repairs
what a killed writer leaves in the superblock (as ``h5clear -s`` and ``h5clear --increment=0`` would) and
trims such rows. Plain Python on h5py; one thread per :class:`SubjectFile`.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import json
import math
import os
import struct
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import h5py
import numpy as np

FORMAT = 'autopilot-ros subject'
FORMAT_VERSION = 1
#: HDF5 1.10 file format at both bounds: what SWMR needs, readable by any HDF5 >= 1.10 (Ubuntu's python3-h5py).
LIBVER = ('v110', 'v110')

#: TrialField.TYPE_* (autopilot_msgs/msg/TrialField.msg), kept here so the store needs no ROS.
TYPE_BOOL, TYPE_INT64, TYPE_FLOAT64, TYPE_STRING = 1, 2, 3, 4
FIELD_TYPES = {TYPE_BOOL: 'bool', TYPE_INT64: 'int64', TYPE_FLOAT64: 'float64', TYPE_STRING: 'string'}
#: Initial width in UTF-8 bytes of a task's string trial field (widened on demand).
FIELD_STRING_BYTES = 64
#: No string column grows beyond this; a longer value raises StoreError (put such data in the bag).
MAX_STRING_BYTES = 65536

HISTORY_KINDS = ('created', 'biography', 'assign', 'step', 'parameters')
EVENT_KINDS = ('gpio', 'sound')
SESSION_STATES = ('running', 'ended', 'aborted', 'interrupted')  # interrupted: its pilot stopped or crashed

#: Column specs: numpy type codes; 'S<n>' is a fixed-width UTF-8 string of n bytes.
#: /structure: one row per structure window, so live readers know to reopen (see reader.SubjectReader).
STRUCTURE_COLUMNS = (('time_ns', 'i8'), ('change', 'S128'))
HISTORY_COLUMNS = (('time_ns', 'i8'), ('kind', 'S16'), ('protocol', 'S64'), ('step', 'u2'),
                   ('step_name', 'S64'), ('detail', 'S1024'))
TRIAL_COLUMNS = (('trial_number', 'u4'), ('start_ns', 'i8'), ('stamp_ns', 'i8'), ('recv_ns', 'i8'), ('step', 'u2'),
                 ('step_name', 'S64'))
#: Trial columns added after files were first written: a row may leave them out (stored as the default), and
#: a table written before has none (the row's value is dropped there).
LATER_TRIAL_COLUMNS = {'start_ns': 0}
EVENT_COLUMNS = {
    'gpio': (('stamp_ns', 'i8'), ('tick_us', 'u8'), ('device', 'S32'), ('pin', 'u1'), ('level', '?'),
             ('run_id', 'u4'), ('seq', 'u8'), ('recv_ns', 'i8')),
    'sound': (('stamp_ns', 'i8'), ('sound_id', 'S64'), ('play_id', 'u8'), ('source', 'u1'), ('ok', '?'),
              ('latency_ms', 'f8'), ('duration_ms', 'f8'), ('recv_ns', 'i8')),
}
#: Event columns added after format 1 was first written: a table written before them takes rows that have them
#: (dropped), and rows without them (0: not known) go into a table that has them.
OPTIONAL_EVENT_COLUMNS = frozenset({'run_id', 'seq'})


def _optional_columns(rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
                      have: Sequence[str]) -> Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]:
    """``rows`` fitted to a table's columns as far as :data:`OPTIONAL_EVENT_COLUMNS` go."""
    drop = OPTIONAL_EVENT_COLUMNS - set(have)
    if isinstance(rows, Mapping):
        n = _count(rows)
        add = {k: [0] * n for k in OPTIONAL_EVENT_COLUMNS & set(have) if k not in rows}
        return {**{k: v for k, v in rows.items() if k not in drop}, **add}
    fill = {k: 0 for k in OPTIONAL_EVENT_COLUMNS & set(have)}
    return [{**fill, **{k: v for k, v in r.items() if k not in drop}} if isinstance(r, Mapping) else r for r in rows]
STEP_COLUMNS = (('seq', 'u4'), ('after_trial', 'u4'), ('from_step', 'u2'), ('to_step', 'u2'),
                ('from_step_name', 'S64'), ('to_step_name', 'S64'), ('protocol', 'S64'), ('reason', 'S256'),
                ('stamp_ns', 'i8'), ('recv_ns', 'i8'))
INDEX_COLUMNS = (('offset', 'u8'), ('size', 'u4'), ('recv_ns', 'i8'))
#: sessions/<id>/conflicts/index: one row per message that contradicted a stored trial or step change (a second,
#: different TrialData for a stored trial number, ...); its bytes are in conflicts/data at offset/size.
CONFLICT_COLUMNS = (('recv_ns', 'i8'), ('kind', 'S16'), ('number', 'u4'), ('sha256', 'S64'), ('reason', 'S512'),
                    ('offset', 'u8'), ('size', 'u4'))
#: Conflicts kept per session; beyond, StoreError (a flood of forged messages must not grow the file for ever).
MAX_CONFLICTS = 1000
#: A conflicting message larger than this is not kept (its index row says so with size 0).
MAX_CONFLICT_BYTES = 1 << 20
#: Per table (by its name in the session group, or 'history'/'index'): the column that is never 0 in a stored row.
KEY_COLUMNS = {'structure': 'time_ns', 'history': 'time_ns', 'trials': 'trial_number', 'steps': 'seq',
               'gpio': 'recv_ns', 'sound': 'recv_ns', 'index': 'recv_ns'}
#: sessions/<id>/video/<name>: one row per frame of the MP4 the table describes (see :meth:`SubjectFile.add_video`);
#: its key column (never 0 in a stored row) is :data:`VIDEO_KEY`.
VIDEO_COLUMNS = (('frame', 'u4'), ('stamp_ns', 'i8'), ('recv_ns', 'i8'))
VIDEO_KEY = 'recv_ns'
#: The default of an attribute that must be given.
REQUIRED = object()
#: add_video's attributes: name -> (type, default).
VIDEO_START_ATTRS = {'topic': (str, REQUIRED), 'path': (str, REQUIRED), 'codec': (str, ''), 'width': (int, 0),
                     'height': (int, 0), 'encoding': (str, ''), 'fps': (float, 0.0)}
#: finish_video's summary: name -> (type, default); a default None leaves the attribute as add_video set it.
VIDEO_END_ATTRS = {'frames': (int, REQUIRED), 'bytes': (int, REQUIRED), 'sha256': (str, REQUIRED),
                   'dropped': (int, 0), 'rejected': (int, 0), 'fps': (float, None), 'width': (int, None),
                   'height': (int, None), 'codec': (str, None), 'encoding': (str, None)}
VIDEO_STATES = ('recording', 'finished')

_TABLE_CHUNK_BYTES = 16 * 1024  # small: a subject file holds hundreds of sessions of mostly short tables
_BAG_CHUNK_BYTES = 64 * 1024
_SIGNATURE = b'\x89HDF\r\n\x1a\n'
_FLOCK = struct.Struct('hhqqi4x')  # struct flock on Linux (64-bit off_t)

Field = tuple[str, int, str]  # (name, TrialField.TYPE_*, unit)
F = TypeVar('F', bound=Callable[..., Any])

# Files this process writes / reads, by (st_dev, st_ino). HDF5 shares one open file per process, so a reader
# here would keep the writer's file open across its structure-window reopen (SWMR could not be left).
_WRITING: set[tuple[int, int]] = set()
_READING: dict[tuple[int, int], int] = {}


class StoreError(Exception):
    """A subject file cannot be opened, read or written; the message names the file and the fix."""


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


# --- helpers shared with the reader ------------------------------------------------------------

def string_dtype(width: int) -> np.dtype:
    """Fixed-width UTF-8 string of ``width`` bytes (HDF5 cset UTF-8, NUL-padded)."""
    return h5py.string_dtype('utf-8', width)


def table_dtype(columns: Sequence[tuple[str, str]]) -> np.dtype:
    return np.dtype([(name, string_dtype(int(code[1:])) if code[0] == 'S' else np.dtype(code))
                     for name, code in columns])


def trial_dtype(fields: Sequence[Field]) -> np.dtype:
    codes = {TYPE_BOOL: '?', TYPE_INT64: 'i8', TYPE_FLOAT64: 'f8', TYPE_STRING: f'S{FIELD_STRING_BYTES}'}
    return table_dtype(list(TRIAL_COLUMNS) + [(name, codes[kind]) for name, kind, _ in fields])


def check_format(f: h5py.File, path: Path | str) -> None:
    """Raise StoreError unless ``f`` is a subject file of a format version this code reads."""
    fmt = f.attrs.get('format')
    fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
    if fmt != FORMAT:
        raise StoreError(f'{path}: not an autopilot-ros subject file (root attribute format={fmt!r}, '
                         f'expected {FORMAT!r}); pick the subject file (<data dir>/<subject>.h5)')
    version = int(f.attrs.get('format_version', -1))
    if version > FORMAT_VERSION:
        raise StoreError(f'{path}: subject file format version {version} was written by a newer autopilot-ros '
                         f'(this one reads version {FORMAT_VERSION}); update autopilot-ros')
    if version != FORMAT_VERSION:
        raise StoreError(f'{path}: unknown subject file format version {version} (this code reads '
                         f'{FORMAT_VERSION}); the file is damaged or not ours')


def open_error(path: Path | str, exc: BaseException) -> StoreError:
    """Turn an h5py/OS error on opening ``path`` into a StoreError that names the fix."""
    text = str(exc)
    if isinstance(exc, FileNotFoundError) or 'No such file' in text:
        return StoreError(f'{path}: no such subject file; create it with SubjectFile.create(path, subject)')
    if 'file signature not found' in text:
        return StoreError(f'{path}: not an HDF5 file (or its header is damaged); restore it from a backup or '
                          'move it away')
    if 'already open for write' in text or 'not already open for SWMR writing' in text:
        return StoreError(f'{path}: marked open for writing (non-SWMR): either a writer is changing its structure '
                          'right now (retry in a moment) or one crashed while doing so. If no writer runs: '
                          f'`h5clear -s {path}` and `h5clear --increment=0 {path}` (package hdf5-tools), or '
                          'SubjectFile.open(path, recover=True)')
    if 'unable to lock file' in text:
        return StoreError(f'{path}: another program holds the file open for writing; close it (HDFView, a '
                          'script) and retry')
    if 'truncated file' in text or 'bad object header' in text or 'checksum' in text.lower():
        return StoreError(f'{path}: damaged HDF5 file ({text}); restore it from a backup')
    return StoreError(f'{path}: cannot open: {text}')


# --- the superblock: detect and clear a flag left by a writer that died -----------------------

_M32 = 0xFFFFFFFF


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _M32


def _lookup3(data: bytes) -> int:
    """Bob Jenkins' lookup3 ``hashlittle`` with initval 0: the checksum of HDF5 metadata."""
    n = len(data)
    a = b = c = (0xDEADBEEF + n) & _M32
    i = 0
    while n - i > 12:
        a = (a + int.from_bytes(data[i:i + 4], 'little')) & _M32
        b = (b + int.from_bytes(data[i + 4:i + 8], 'little')) & _M32
        c = (c + int.from_bytes(data[i + 8:i + 12], 'little')) & _M32
        for r1, r2, r3 in ((4, 6, 8), (16, 19, 4)):  # mix()
            a = ((a - c) & _M32) ^ _rot(c, r1)
            c = (c + b) & _M32
            b = ((b - a) & _M32) ^ _rot(a, r2)
            a = (a + c) & _M32
            c = ((c - b) & _M32) ^ _rot(b, r3)
            b = (b + a) & _M32
        i += 12
    if n == i:
        return c
    tail = data[i:].ljust(12, b'\0')
    a = (a + int.from_bytes(tail[0:4], 'little')) & _M32
    b = (b + int.from_bytes(tail[4:8], 'little')) & _M32
    c = (c + int.from_bytes(tail[8:12], 'little')) & _M32
    c = ((c ^ b) - _rot(b, 14)) & _M32  # final()
    a = ((a ^ c) - _rot(c, 11)) & _M32
    b = ((b ^ a) - _rot(a, 25)) & _M32
    c = ((c ^ b) - _rot(b, 16)) & _M32
    a = ((a ^ c) - _rot(c, 4)) & _M32
    b = ((b ^ a) - _rot(a, 14)) & _M32
    c = ((c ^ b) - _rot(b, 24)) & _M32
    return c


def check_superblock(path: Path | str) -> int:
    """The HDF5 superblock version at offset 0; StoreError if it is not HDF5 or (version >= 2) damaged."""
    path = Path(path)
    try:
        with open(path, 'rb') as fh:
            head = fh.read(9)
    except OSError as exc:
        raise open_error(path, exc) from exc
    if head[:8] != _SIGNATURE or len(head) < 9:
        raise StoreError(f'{path}: not an HDF5 file (or its header is damaged); restore it from a backup or '
                         'move it away')
    if head[8] >= 2:
        _superblock(path)
    return head[8]


def _superblock(path: Path) -> tuple[bytearray, int]:
    """The superblock (version >= 2) at offset 0 and where its checksum starts; StoreError otherwise."""
    with open(path, 'rb') as fh:
        head = bytearray(fh.read(12 + 4 * 8 + 4))
    if head[:8] != _SIGNATURE:
        raise StoreError(f'{path}: not an HDF5 file (or its header is damaged); restore it from a backup or '
                         'move it away')
    if head[8] < 2:
        raise StoreError(f'{path}: HDF5 file of an older format (superblock version {head[8]}), not a subject file '
                         'written by autopilot-ros; pick the subject file (<data dir>/<subject>.h5)')
    end = 12 + 4 * head[9]  # four addresses of head[9] bytes each, then the checksum
    if len(head) < end + 4 or int.from_bytes(head[end:end + 4], 'little') != _lookup3(bytes(head[:end])):
        raise StoreError(f'{path}: damaged HDF5 superblock (checksum mismatch); restore it from a backup')
    return head[:end + 4], end


def open_flags(path: Path | str) -> int:
    """HDF5's file-consistency flags: nonzero while a writer has the file open (or died holding it)."""
    return _superblock(Path(path))[0][11]


def clear_open_flag(path: Path | str) -> bool:
    """Repair what a writer that died leaves in the superblock; True if the file needed it.

    What ``h5clear -s`` and ``h5clear --increment=0`` do together: clear the consistency flags, and raise the
    stored end-of-allocation to the file's size. A SWMR writer does not rewrite the superblock on every
    flush, so after a kill the stored end can lag behind chunks its flushed metadata already uses; the next
    write there would fail with "addr overflow". Only for a file no process is writing:
    :meth:`SubjectFile.open` calls it under the writer lock.
    """
    path = Path(path)
    head, end = _superblock(path)
    size = path.stat().st_size
    width = head[9]
    at = 12 + 2 * width  # base address, superblock extension address, then end-of-file address
    eoa = int.from_bytes(head[at:at + width], 'little')
    if head[11] == 0 and eoa >= size:
        return False
    head[11] = 0
    head[at:at + width] = max(eoa, size).to_bytes(width, 'little')
    head[end:end + 4] = _lookup3(bytes(head[:end])).to_bytes(4, 'little')
    with open(path, 'r+b') as fh:
        if size < eoa:  # the superblock promises more than the file holds: hand HDF5 the zeros it expects
            fh.truncate(eoa)
        fh.write(head)
        fh.flush()
        os.fsync(fh.fileno())
    return True


def file_key(path: Path | str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def written_here(path: Path | str) -> bool:
    """True if a SubjectFile of this process has ``path`` open."""
    try:
        return file_key(path) in _WRITING
    except OSError:
        return False


def _lock(path: Path) -> int:
    """An exclusive OFD lock on the whole file; independent of HDF5's own flock() (readers keep theirs)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as exc:
        raise open_error(path, exc) from exc
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise StoreError(f'{path}: already open for writing by another SubjectFile (the Terminal\'s recorder, '
                             'in this or another process); only one writer per subject file: stop the other '
                             'one, or read the file with SubjectReader') from exc
        raise StoreError(f'{path}: cannot lock for writing: {exc}') from exc
    return fd


# --- row conversion ----------------------------------------------------------------------------

def _string_width(dt: np.dtype) -> int | None:
    info = h5py.check_string_dtype(dt)
    return info.length if info is not None and info.length is not None else None


def _encode_strings(values: list[Any], column: str, where: str) -> tuple[list[bytes], int]:
    try:
        if all(isinstance(v, str) for v in values):
            out = [v.encode('utf-8') for v in values]
            if not any(b'\0' in b for b in out):
                return out, max(map(len, out), default=0)
    except UnicodeEncodeError:
        pass
    for i, v in enumerate(values):  # something is wrong: find the row and say what
        if not isinstance(v, str):
            raise StoreError(f'{where}: row {i}: column {column!r} needs a str, got {type(v).__name__} {v!r:.80}')
        try:
            b = v.encode('utf-8')
        except UnicodeEncodeError as exc:
            raise StoreError(f'{where}: row {i}: column {column!r} is not valid Unicode ({exc})') from exc
        if b'\0' in b:
            raise StoreError(f'{where}: row {i}: column {column!r} contains a NUL character, which fixed-width '
                             'HDF5 strings cannot hold (ROS strings cannot carry it either)')
    raise AssertionError('unreachable')


def _numbers(values: list[Any], dt: np.dtype, column: str, where: str) -> np.ndarray:
    try:
        arr = np.asarray(values)
    except (OverflowError, ValueError, TypeError):
        arr = np.asarray(values, dtype=object)
    allowed = {'b': 'b', 'i': 'iu', 'u': 'iu', 'f': 'iuf'}[dt.kind]
    if arr.dtype.kind not in allowed or arr.ndim != 1:
        want = {'b': 'bool', 'i': 'int', 'u': 'int', 'f': 'float'}[dt.kind]
        ok = {'b': (bool, np.bool_), 'i': (int, np.integer), 'u': (int, np.integer),
              'f': (int, float, np.integer, np.floating)}[dt.kind]
        bad = next(((i, v) for i, v in enumerate(values)
                    if not isinstance(v, ok) or (dt.kind != 'b' and isinstance(v, (bool, np.bool_)))),
                   (None, values[0] if values else None))
        raise StoreError(f'{where}: row {bad[0]}: column {column!r} needs {want} ({dt}), got {bad[1]!r:.80}'
                         + (' (out of range)' if isinstance(bad[1], int) else ''))
    if dt.kind in 'iu' and arr.size:
        info = np.iinfo(dt)
        lo, hi = int(arr.min()), int(arr.max())
        if lo < info.min or hi > info.max:
            raise StoreError(f'{where}: column {column!r} ({dt}) value out of range [{info.min}, {info.max}]: '
                             f'{lo if lo < info.min else hi}')
    return arr.astype(dt, copy=False)


def _count(rows: Sequence[Any] | Mapping[str, Sequence[Any]]) -> int:
    """Rows in a list of rows or in a mapping of columns."""
    if isinstance(rows, Mapping):
        return len(next(iter(rows.values()), ()))
    return len(rows)


class _Columns:
    """Rows (mappings) or columns (a mapping name -> values) checked and converted for one table dtype."""

    def __init__(self, dtype: np.dtype, rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
                 where: str) -> None:
        names = dtype.names or ()
        if isinstance(rows, Mapping):  # already columns (name -> values), as event decoders give them
            by_name = self._check_columns(rows, names, where)
        else:
            by_name = self._check_rows(rows, names, where)
        self.values: dict[str, Any] = {}
        self.needed: dict[str, int] = {}  # string column -> bytes needed, where wider than the table's
        for name in names:
            values = by_name(name)
            dt = dtype.fields[name][0]
            width = _string_width(dt)
            if width is not None:
                self.values[name], longest = _encode_strings(values, name, where)
                if longest > width:
                    if longest > MAX_STRING_BYTES:
                        raise StoreError(f'{where}: column {name!r}: a value of {longest} UTF-8 bytes is longer '
                                         f'than the largest string column ({MAX_STRING_BYTES} bytes); record '
                                         'such data as a bag topic instead')
                    self.needed[name] = longest
            else:
                self.values[name] = _numbers(values, dt, name, where)

    @staticmethod
    def _check_columns(cols: Mapping[str, Sequence[Any]], names: Sequence[str],
                       where: str) -> Callable[[str], list[Any]]:
        if cols.keys() != set(names):
            missing, extra = sorted(set(names) - set(cols)), sorted(set(cols) - set(names))
            raise StoreError(f'{where}: ' + '; '.join(([f'missing columns {missing}'] if missing else [])
                                                     + ([f'unknown columns {extra}'] if extra else []))
                             + f' (columns: {list(names)})')
        lengths = {name: len(cols[name]) for name in names}
        if len(set(lengths.values())) > 1:
            raise StoreError(f'{where}: columns of different lengths {lengths}')
        return lambda name: list(cols[name])

    @staticmethod
    def _check_rows(rows: Sequence[Mapping[str, Any]], names: Sequence[str],
                    where: str) -> Callable[[str], list[Any]]:
        wanted = set(names)
        for i, row in enumerate(rows):
            try:
                keys = row.keys()
            except AttributeError:
                raise StoreError(f'{where}: row {i} is a {type(row).__name__}, not a mapping of column -> '
                                 'value') from None
            if keys != wanted:
                missing, extra = sorted(wanted - set(row)), sorted(set(row) - wanted)
                raise StoreError(f'{where}: row {i}: ' + '; '.join(
                    ([f'missing {missing}'] if missing else []) + ([f'unknown {extra}'] if extra else []))
                    + f' (columns: {list(names)})')
        return lambda name: [row[name] for row in rows]

    def array(self, dtype: np.dtype) -> np.ndarray:
        n = len(next(iter(self.values.values()))) if self.values else 0
        arr = np.zeros(n, dtype=dtype)
        for name, values in self.values.items():
            arr[name] = values
        return arr


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


def _chunk_rows(dtype: np.dtype) -> int:
    return max(1, _TABLE_CHUNK_BYTES // dtype.itemsize)


def _create_table(group: h5py.Group, name: str, dtype: np.dtype) -> h5py.Dataset:
    return group.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(_chunk_rows(dtype),))


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f'{what} is not JSON-serialisable: {exc}') from exc


def _fields(fields: Sequence[Sequence[Any]], where: str) -> list[Field]:
    out: list[Field] = []
    fixed = {name for name, _ in TRIAL_COLUMNS}
    for f in fields:
        try:
            name, kind, unit = f
        except (TypeError, ValueError) as exc:
            raise StoreError(f'{where}: a trial field must be (name, TrialField type, unit), got {f!r}') from exc
        if not isinstance(name, str) or not name.isidentifier():
            raise StoreError(f'{where}: trial field name {name!r} is not a Python identifier')
        if name in fixed or name in {o[0] for o in out}:
            raise StoreError(f'{where}: trial field {name!r} is declared twice or clashes with the fixed columns '
                             f'{sorted(fixed)}; rename it in the task')
        if kind not in FIELD_TYPES:
            raise StoreError(f'{where}: trial field {name!r} has type {kind!r}; TrialField types are '
                             f'{FIELD_TYPES}')
        if not isinstance(unit, str):
            raise StoreError(f'{where}: trial field {name!r}: unit must be a str, got {unit!r}')
        out.append((name, int(kind), unit))
    return out


def _fields_json(fields: Sequence[Field]) -> str:
    return json.dumps([{'name': n, 'type': FIELD_TYPES[k], 'type_code': k, 'unit': u} for n, k, u in fields])


def fields_from_json(text: str) -> list[Field]:
    return [(d['name'], int(d['type_code']), d['unit']) for d in json.loads(text)]


def _topic_spec(spec: TopicSpec | Mapping[str, Any]) -> TopicSpec:
    if isinstance(spec, Mapping):
        try:
            spec = TopicSpec(**spec)
        except TypeError as exc:
            raise StoreError(f'bad topic spec {dict(spec)!r}: needs topic, type, interface_text, type_hash, '
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


# --- the writer --------------------------------------------------------------------------------

def _h5_errors(method: F) -> F:
    """Report h5py/OS failures of a SubjectFile method as StoreError naming the file."""
    @functools.wraps(method)
    def wrapper(self: SubjectFile, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except StoreError:
            raise
        except (OSError, RuntimeError, KeyError) as exc:
            raise StoreError(f'{self.path}: {method.__name__} failed: {exc} (disk full, file damaged or gone? '
                             'close this SubjectFile and open the file again)') from exc
    return wrapper  # type: ignore[return-value]


class SubjectFile:
    """The single writer of one subject's HDF5 file. Use :meth:`create` or :meth:`open`, then :meth:`close`."""

    def __init__(self, path: Path, lock_fd: int, f: h5py.File) -> None:
        self.path = path
        self._lock_fd = lock_fd
        self._key = file_key(path)
        _WRITING.add(self._key)
        self._f: h5py.File | None = f
        self._ds: dict[str, h5py.Dataset] = {}
        self._mtypes: dict[str, h5py.h5t.TypeID] = {}
        self._sessions: dict[str, _Session] = {}
        #: Structure windows so far and the time they took (SWMR off, change, SWMR on).
        self.restructure_count = 0
        self.restructure_seconds = 0.0

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
        fd = _lock(path)
        created_ns = time.time_ns() if created_ns is None else int(created_ns)
        try:
            f = h5py.File(path, 'w', libver=LIBVER, locking=False)
            f.attrs['format'] = FORMAT
            f.attrs['format_version'] = np.int64(FORMAT_VERSION)
            f.attrs['subject'] = subject
            f.attrs['created_ns'] = np.int64(created_ns)
            f.create_group('subject').attrs['biography'] = bio_text
            _create_table(f['subject'], 'history', table_dtype(HISTORY_COLUMNS))
            f.create_group('sessions')
            _create_table(f, 'structure', table_dtype(STRUCTURE_COLUMNS))
            _log_structure(f, 'create')
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
        ``recover`` is true: then the mark is cleared (what ``h5clear -s`` does) and rows a crash left
        half-written are trimmed from the ends of the tables. Every batch flushed before the crash is kept.
        """
        path = Path(path)
        if not path.exists():
            raise open_error(path, FileNotFoundError(path))
        if _READING.get(file_key(path)):
            raise StoreError(f'{path}: a SubjectReader of this process has it open; close it before writing (HDF5 '
                             'shares one open file per process, which would stop the writer leaving SWMR mode)')
        fd = _lock(path)  # from here no other SubjectFile writes it: a set flag is stale
        try:
            head, _ = _superblock(path)
            stale = head[11] != 0
            if stale and not recover:
                raise StoreError(f'{path}: was left marked open for writing by a writer that stopped without closing '
                                 'it (killed or crashed; every batch it flushed is intact). Recover with '
                                 f'SubjectFile.open(path, recover=True), or `h5clear -s {path}` and `h5clear '
                                 f'--increment=0 {path}` (package hdf5-tools), then open it again')
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
                    _trim_crashed(f)
                    _log_structure(f, 'recover')
                    f.close()  # a fresh metadata cache before SWMR: see _restructure
                    f = h5py.File(path, 'r+', libver=LIBVER, locking=False)
                f.swmr_mode = True
            except (OSError, RuntimeError, ValueError) as exc:
                f.close()
                raise StoreError(f'{path}: cannot start writing: {exc}') from exc
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, f)

    def close(self) -> None:
        """Flush and close (clears the open mark), then release the writer lock."""
        if self._f is not None:
            try:
                self._f.close()
            finally:
                self._f = None
                self._ds.clear()
                self._mtypes.clear()
                _WRITING.discard(self._key)
                os.close(self._lock_fd)

    def __enter__(self) -> SubjectFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def file(self) -> h5py.File:
        if self._f is None:
            raise StoreError(f'{self.path}: closed')
        return self._f

    # -- subject ----------------------------------------------------------------------------

    @property
    @_h5_errors
    def subject(self) -> str:
        return str(self.file.attrs['subject'])

    @property
    @_h5_errors
    def biography(self) -> dict[str, Any]:
        return json.loads(self.file['subject'].attrs['biography'])

    @_h5_errors
    def set_biography(self, biography: Mapping[str, Any], time_ns: int | None = None) -> None:
        """Replace the biography (species, sex, dob, genotype, ... free keys) and log it in the history."""
        text = _json(dict(biography), f'{self.path}: biography')
        with self._restructure('biography'):
            self.file['subject'].attrs['biography'] = text
        self.add_history('biography', detail=dict(biography), time_ns=time_ns)

    @_h5_errors
    def add_history(self, kind: str, *, protocol: str = '', step: int = 0, step_name: str = '',
                    detail: Mapping[str, Any] | None = None, time_ns: int | None = None, sync: bool = True) -> None:
        """Append one row to /subject/history (kind: one of :data:`HISTORY_KINDS`)."""
        if kind not in HISTORY_KINDS:
            raise StoreError(f'{self.path}: history kind {kind!r} is not one of {HISTORY_KINDS}')
        time_ns = time.time_ns() if time_ns is None else time_ns
        row = {'time_ns': time_ns, 'kind': kind, 'protocol': protocol,
               'step': step, 'step_name': step_name, 'detail': _json(dict(detail or {}), 'history detail')}
        self._append('subject/history', [row], f'{self.path}: history', sync, positive='time_ns')

    # -- sessions ---------------------------------------------------------------------------

    @_h5_errors
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
        fields = _fields(meta['fields'], where) if meta.get('fields') is not None else None
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
                _create_table(events, kind, table_dtype(EVENT_COLUMNS[kind]))
            _create_table(g, 'steps', table_dtype(STEP_COLUMNS))
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

    @_h5_errors
    def set_trial_fields(self, session_id: str, fields: Sequence[Sequence[Any]]) -> None:
        """Declare the trial schema of a session begun without one (a structure window). Fixed once set."""
        where = f'{self.path}: session {session_id}'
        fields = _fields(fields, where)
        state = self._state(session_id)
        if state.fields is not None:
            if state.fields != fields:
                raise StoreError(f'{where}: trial fields are already {state.fields}; a session keeps one schema '
                                 f'(got {fields}): start a new session for the changed task')
            return
        with self._restructure(f'trial_fields {session_id}'):
            self._create_trials(self.file[f'sessions/{session_id}'], fields)
        state.fields = fields

    @_h5_errors
    def trial_fields(self, session_id: str) -> list[Field] | None:
        return self._state(session_id).fields

    @_h5_errors
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
        fresh, numbers = _new_rows(rows, 'trial_number', state.trial_numbers, where)
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

    @_h5_errors
    def add_events(self, session_id: str, kind: str,
                   rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]], *, sync: bool = False) -> int:
        """Append hardware events (kind 'gpio' or 'sound', columns :data:`EVENT_COLUMNS`), given as rows or as
        columns (name -> values, as :mod:`.cdr` decodes them); returns the count."""
        if kind not in EVENT_KINDS:
            raise StoreError(f'{self.path}: event kind {kind!r} is not one of {EVENT_KINDS}')
        self._state(session_id)
        where = f'{self.path}: session {session_id}: events/{kind}'
        path = f'sessions/{session_id}/events/{kind}'
        rows = _optional_columns(rows, self._dataset(path).dtype.names or ())
        self._append(path, rows, where, sync, positive='recv_ns')
        return _count(rows)

    @_h5_errors
    def add_steps(self, session_id: str, rows: Sequence[Mapping[str, Any]], *, sync: bool = True) -> list[int]:
        """Append protocol step changes not stored yet (dedupe by seq >= 1); returns the new seqs.

        Each new change is also appended to /subject/history (kind 'step'), in the same flush.
        """
        where = f'{self.path}: session {session_id}: steps'
        state = self._state(session_id)
        fresh, seqs = _new_rows(rows, 'seq', state.step_seqs, where)
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

    @_h5_errors
    def add_topics(self, session_id: str, specs: Sequence[TopicSpec | Mapping[str, Any]]) -> list[str]:
        """Register several topics in one structure window (only topics not registered yet cost one)."""
        state = self._state(session_id)
        specs = [_topic_spec(s) for s in specs]
        bag = self.file[f'sessions/{session_id}/bag']
        new = []
        for spec in specs:
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
        return [state.topics[s.topic] for s in specs]

    @_h5_errors
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

    @_h5_errors
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
            ds = _create_table(group, name, table_dtype(columns))
            ds.attrs.update({'topic': topic, 'type': type_name, 'skipped': _json(list(skipped), 'skipped fields'),
                             'time_columns': _json(list(time_columns), 'time columns')})
        return True

    @_h5_errors
    def add_stream_rows(self, session_id: str, name: str,
                        rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]], *, sync: bool = False) -> int:
        """Append rows (or columns) to a stream table made by :meth:`add_stream`; returns the count."""
        where = f'{self.path}: session {session_id}: stream {name!r}'
        self._state(session_id)
        path = f'sessions/{session_id}/streams/{name}'
        if path not in self.file:
            raise StoreError(f'{where}: not added (add_stream first)')
        self._append(path, rows, where, sync, positive='recv_ns')
        return _count(rows)

    # -- video ------------------------------------------------------------------------------

    @_h5_errors
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
            ds = _create_table(group, name, table_dtype(VIDEO_COLUMNS))
            ds.attrs.update({k: _video_attr(v) for k, v in values.items()})
            ds.attrs.update({'state': VIDEO_STATES[0], 'frames': np.int64(0), 'bytes': np.int64(0), 'sha256': '',
                             'dropped': np.int64(0), 'rejected': np.int64(0)})
        return True

    @_h5_errors
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

    @_h5_errors
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

    @_h5_errors
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

    @_h5_errors
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
                _create_table(c, 'index', table_dtype(CONFLICT_COLUMNS))
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

    @_h5_errors
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

    @_h5_errors
    def set_provenance(self, session_id: str, items: Mapping[str, Any]) -> None:
        """Set provenance attributes (JSON text each: packages, git, launch, parameters, hardware, ...)."""
        where = f'{self.path}: session {session_id}'
        self._state(session_id)
        self._set_provenance(session_id, {k: _json(v, f'{where}: provenance {k!r}') for k, v in items.items()})

    @_h5_errors
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
        ds = _create_table(g, 'trials', trial_dtype(fields))
        ds.attrs['fields'] = _fields_json(fields)

    def _create_topic(self, bag: h5py.Group, spec: TopicSpec) -> str:
        name = str(len(bag))
        tg = bag.create_group(name)
        tg.attrs.update({'topic': spec.topic, 'type': spec.type, 'interface_text': spec.interface_text,
                         'type_hash': spec.type_hash, 'qos': spec.qos_json, 'serialization': 'cdr',
                         'count': np.int64(0), 'first_ns': np.int64(0), 'last_ns': np.int64(0)})
        tg.create_dataset('data', shape=(0,), maxshape=(None,), dtype=np.uint8, chunks=(_BAG_CHUNK_BYTES,))
        _create_table(tg, 'index', table_dtype(INDEX_COLUMNS))
        return name

    def _set_provenance(self, session_id: str, texts: Mapping[str, str]) -> None:
        with self._restructure(f'provenance {session_id}'):
            self.file[f'sessions/{session_id}/provenance'].attrs.update(texts)

    def _dataset(self, path: str) -> h5py.Dataset:
        ds = self._ds.get(path)
        if ds is None:
            ds = self._ds[path] = self.file[path]
        return ds

    def _append(self, path: str, rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]], where: str,
                sync: bool, positive: str | None = None) -> None:
        """Append rows to a table (widening string columns first if needed) and flush.

        ``positive``: a key column that must be > 0 (0 is what a row a crash left unwritten reads as).
        """
        if not _count(rows):
            return
        ds = self._dataset(path)
        cols = _Columns(ds.dtype, rows, where)
        if positive is not None and cols.values[positive].min() <= 0:
            raise StoreError(f'{where}: {positive} must be > 0 (0 marks a row a crash left unwritten)')
        if cols.needed:
            self._widen(path, cols.needed)
            ds = self._dataset(path)
        arr = cols.array(ds.dtype)
        with self._io(where):
            self._write_at_end(path, ds, arr)
            self._flush(sync)

    def _write_at_end(self, path: str, ds: h5py.Dataset, arr: np.ndarray) -> None:
        """Append ``arr`` (of ``ds``'s dtype) to ``ds``: h5py's ``ds[n:] = arr`` without its per-call type
        setup, which costs two thirds of a one-row append."""
        mtype = self._mtypes.get(path)
        if mtype is None:
            mtype = self._mtypes[path] = h5py.h5t.py_create(arr.dtype)
        n0 = ds.shape[0]
        ds.resize((n0 + len(arr),))
        fspace = ds.id.get_space()
        fspace.select_hyperslab((n0,), (len(arr),))
        ds.id.write(h5py.h5s.create_simple((len(arr),)), fspace, np.ascontiguousarray(arr), mtype)

    def _widen(self, path: str, needed: Mapping[str, int]) -> None:
        """Rewrite a table with wider string columns (a structure window; old rows copied as they are)."""
        with self._restructure(f'widen {path} ' + ' '.join(f'{k}={v}' for k, v in needed.items())):
            old = self.file[path]
            parts = []
            for name in old.dtype.names or ():
                dt = old.dtype.fields[name][0]
                if name in needed:
                    width = min(MAX_STRING_BYTES, max(needed[name], 2 * (_string_width(dt) or 0)))
                    dt = string_dtype(width)
                parts.append((name, dt))
            dtype = np.dtype(parts)
            data = old[()]
            parent, _, leaf = path.rpartition('/')
            group = self.file[parent]
            tmp = _create_table(group, leaf + '.widening', dtype)
            tmp.resize((len(data),))
            if len(data):
                tmp[:] = data.astype(dtype)
            tmp.attrs.update(dict(old.attrs))
            del group[leaf]
            group.move(leaf + '.widening', leaf)

    @contextmanager
    def _restructure(self, change: str) -> Iterator[None]:
        """Leave SWMR (close, reopen read-write), change the structure, reopen again, re-enter SWMR.

        The second reopen matters: a change that frees file space (a deleted table, an overwritten attribute)
        followed by SWMR writes in the same open fails in HDF5 2.0 with "duplicate entry in cache" (a freed
        address reused while its old cache entry lingers). After a reopen the cache is fresh and the space
        freed is not reused.
        """
        t0 = time.perf_counter()
        self._reopen()
        try:
            yield
            _log_structure(self.file, change)
            self._reopen()
        finally:
            try:
                if self._f is not None and not self._f.swmr_mode:
                    self._f.swmr_mode = True
            finally:
                self.restructure_count += 1
                self.restructure_seconds += time.perf_counter() - t0

    def _reopen(self) -> None:
        self._ds.clear()
        self._mtypes.clear()
        f = self.file
        try:
            f.close()
            self._f = h5py.File(self.path, 'r+', libver=LIBVER, locking=False)
        except (OSError, RuntimeError) as exc:
            self._f = None
            raise StoreError(f'{self.path}: cannot reopen to change its structure: {exc}') from exc
        if self._f.swmr_mode:  # the close did not close: another handle of this process holds the file
            raise StoreError(f'{self.path}: another h5py handle in this process keeps the file open, so the writer '
                             'cannot leave SWMR mode to change its structure; close it (read from another '
                             'process)')

    @contextmanager
    def _io(self, where: str) -> Iterator[None]:
        try:
            yield
        except (OSError, RuntimeError) as exc:
            raise StoreError(f'{where}: write failed: {exc} (disk full? file system gone?)') from exc

    def _flush(self, sync: bool) -> None:
        self.file.flush()
        if sync:
            os.fsync(self._lock_fd)  # fsync is per file, whichever descriptor asks


def _new_rows(rows: Sequence[Mapping[str, Any]], key: str, stored: set[int],
              where: str) -> tuple[list[Mapping[str, Any]], list[int]]:
    """The rows whose ``key`` (an int >= 1) is neither stored nor earlier in ``rows``, and their keys."""
    fresh, keys, seen = [], [], set()
    for i, row in enumerate(rows):
        try:
            k = row[key]
        except (KeyError, TypeError, IndexError):
            k = None
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= 0xFFFFFFFF:
            raise StoreError(f'{where}: row {i}: {key} must be an int in [1, 2**32), got {k!r}')
        k = int(k)
        if k in stored or k in seen:
            continue
        seen.add(k)
        fresh.append(row)
        keys.append(k)
    return fresh, keys


def _keys(ds: h5py.Dataset, column: str) -> set[int]:
    keys = ds.fields(column)[()]
    return {int(k) for k in keys[keys != 0]}


def _log_structure(f: h5py.File, change: str) -> None:
    ds = f['structure']
    row = np.zeros(1, dtype=ds.dtype)
    # A log line, so cutting it is fine (on a character boundary: readers decode it).
    row['time_ns'], row['change'] = time.time_ns(), change.encode()[:128].decode('utf-8', 'ignore').encode()
    ds.resize((ds.shape[0] + 1,))
    ds[-1:] = row


def _trim_crashed(f: h5py.File) -> bool:
    """Trim rows a killed writer left unwritten (key column 0) from the ends of the running sessions' tables."""
    trimmed = _trim(f['subject/history'], KEY_COLUMNS['history'])
    for g in f['sessions'].values():
        if g.attrs.get('state') != 'running':
            continue
        for name in ('trials', 'steps', 'events/gpio', 'events/sound'):
            if name in g:
                trimmed |= _trim(g[name], KEY_COLUMNS[name.rpartition('/')[2]])
        for vt in (g['video'].values() if 'video' in g else ()):
            trimmed |= _trim(vt, VIDEO_KEY)
        for st in (g['streams'].values() if 'streams' in g else ()):
            trimmed |= _trim(st, 'recv_ns')
        for tg in g['bag'].values():
            index = tg['index']
            trimmed |= _trim(index, 'recv_ns')
            rows = index[()]
            rows = rows[rows['recv_ns'] != 0]
            end = int((rows['offset'] + rows['size']).max()) if rows.size else 0
            if tg['data'].shape[0] > end:
                tg['data'].resize((end,))
                trimmed = True
    return trimmed


def _trim(ds: h5py.Dataset, key: str) -> bool:
    keys = ds.fields(key)[()]
    nonzero = np.flatnonzero(keys)
    end = int(nonzero[-1]) + 1 if nonzero.size else 0
    if end < ds.shape[0]:
        ds.resize((end,))
        return True
    return False
