"""The subject file's format: version, table columns and their numpy dtypes, trial schemas (docs/hdf5-layout.md)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from autopilot_core.trial_fields import BOOL, FLOAT64, INT64, STRING, TYPE_NAMES

from .errors import StoreError

FORMAT = 'autopilot-ros subject'
FORMAT_VERSION = 1
#: HDF5 1.10 file format at both bounds: what SWMR needs, readable by any HDF5 >= 1.10 (Ubuntu's python3-h5py).
LIBVER = ('v110', 'v110')

#: Trial field type codes: TrialField.TYPE_*, which are also the codes stored in the file (``type_code``).
TYPE_BOOL, TYPE_INT64, TYPE_FLOAT64, TYPE_STRING = BOOL, INT64, FLOAT64, STRING
#: Type code -> the name stored in the file next to the code.
FIELD_TYPES = TYPE_NAMES
#: Initial width in UTF-8 bytes of a task's string trial field (widened on demand).
FIELD_STRING_BYTES = 64
#: Column code of each trial field type.
_FIELD_CODES = {BOOL: '?', INT64: 'i8', FLOAT64: 'f8', STRING: f'S{FIELD_STRING_BYTES}'}
#: No string column grows beyond this; a longer value raises StoreError (put such data in the bag).
MAX_STRING_BYTES = 65536

HISTORY_KINDS = ('created', 'biography', 'assign', 'step', 'parameters', 'roster', 'note')
EVENT_KINDS = ('gpio', 'sound')
SESSION_STATES = ('running', 'ended', 'aborted', 'interrupted')  # interrupted: its pilot stopped or crashed

#: Column specs: numpy type codes; 'S<n>' is a fixed-width UTF-8 string of n bytes.
#: /structure: one row per structure window, so live readers know to reopen (see reader.SubjectReader).
STRUCTURE_COLUMNS = (('time_ns', 'i8'), ('change', 'S128'))
HISTORY_COLUMNS = (('time_ns', 'i8'), ('kind', 'S16'), ('protocol', 'S64'), ('step', 'u2'),
                   ('step_name', 'S64'), ('detail', 'S1024'))
#: /subject/weights: one row per weighing, created with the first (files without it read as never weighed).
WEIGHT_COLUMNS = (('time_ns', 'i8'), ('grams', 'f8'), ('when', 'S8'), ('session_id', 'S64'))
WEIGHT_WHEN = ('start', 'stop', 'check')  # before a session, after one, any other time
#: A weight in grams is finite and strictly between these.
WEIGHT_RANGE_G = (0.0, 100000.0)
#: A note (history kind ``note``) is at most this many characters.
MAX_NOTE = 1000
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
KEY_COLUMNS = {'structure': 'time_ns', 'history': 'time_ns', 'weights': 'time_ns', 'trials': 'trial_number',
               'steps': 'seq', 'gpio': 'recv_ns', 'sound': 'recv_ns', 'index': 'recv_ns'}
#: sessions/<id>/video/<name>: one row per frame of the MP4 the table describes (see SubjectFile.add_video);
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

Field = tuple[str, int, str]  # (name, type code, unit)


def string_dtype(width: int) -> np.dtype:
    """Fixed-width UTF-8 string of ``width`` bytes (HDF5 cset UTF-8, NUL-padded)."""
    return h5py.string_dtype('utf-8', width)


def string_width(dt: np.dtype) -> int | None:
    """The width in bytes of a fixed-width string dtype, None for any other dtype."""
    info = h5py.check_string_dtype(dt)
    return info.length if info is not None and info.length is not None else None


def table_dtype(columns: Sequence[tuple[str, str]]) -> np.dtype:
    """The compound dtype of a table of ``columns`` (name, numpy code or 'S<n>')."""
    return np.dtype([(name, string_dtype(int(code[1:])) if code[0] == 'S' else np.dtype(code))
                     for name, code in columns])


def trial_dtype(fields: Sequence[Field]) -> np.dtype:
    """The trial table's dtype: the fixed columns, then one per declared field."""
    return table_dtype(list(TRIAL_COLUMNS) + [(name, _FIELD_CODES[kind]) for name, kind, _ in fields])


def check_fields(fields: Sequence[Sequence[Any]], where: str) -> list[Field]:
    """A task's declared trial fields as [(name, type code, unit)]; StoreError naming the first bad one.

    The terminal checks received fields once (``autopilot_core.trial_fields.checked``); this runs once per
    session schema, so it stays as the file's guard against its own callers' bugs (scripts, tests, bench): a
    duplicate or fixed-column name or an unknown type code would otherwise fail deep inside numpy, and a name
    that is not an identifier would break exports that use it as a column name.
    """
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
        if kind not in TYPE_NAMES:
            raise StoreError(f'{where}: trial field {name!r} has type {kind!r}; TrialField types are {TYPE_NAMES}')
        if not isinstance(unit, str):
            raise StoreError(f'{where}: trial field {name!r}: unit must be a str, got {unit!r}')
        out.append((name, int(kind), unit))
    return out


def fields_json(fields: Sequence[Field]) -> str:
    """The ``fields`` attribute of a trial table."""
    return json.dumps([{'name': n, 'type': TYPE_NAMES[k], 'type_code': k, 'unit': u} for n, k, u in fields])


def fields_from_json(text: str) -> list[Field]:
    """A trial table's declared fields, from its ``fields`` attribute."""
    return [(d['name'], int(d['type_code']), d['unit']) for d in json.loads(text)]


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
