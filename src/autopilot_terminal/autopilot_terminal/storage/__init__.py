"""Subject files: one HDF5 file per subject, one writer (SubjectFile), live SWMR readers (SubjectReader).

Modules by job: :mod:`.schema` (format, columns, dtypes), :mod:`.rows` (rows checked into a table's dtype),
:mod:`.locking` (one writer per file), :mod:`.recovery` (a file a killed writer left: ``h5clear``, trimming),
:mod:`.subject_file` (the writer), :mod:`.reader` (readers), :mod:`.errors` (StoreError). The layout is
docs/hdf5-layout.md.
"""

from .errors import StoreError
from .reader import BagMessage, Conflict, SubjectReader, TopicInfo, VideoInfo, history_rows, weight_rows
from .recovery import clear_open_flag, marked_open
from .schema import (
    EVENT_COLUMNS,
    EVENT_KINDS,
    FIELD_STRING_BYTES,
    FIELD_TYPES,
    FORMAT,
    FORMAT_VERSION,
    HISTORY_KINDS,
    KEY_COLUMNS,
    MAX_NOTE,
    MAX_STRING_BYTES,
    SESSION_STATES,
    TRIAL_COLUMNS,
    TYPE_BOOL,
    TYPE_FLOAT64,
    TYPE_INT64,
    TYPE_STRING,
    VIDEO_COLUMNS,
    WEIGHT_COLUMNS,
    WEIGHT_RANGE_G,
    WEIGHT_WHEN,
    Field,
    fields_from_json,
)
from .subject_file import SubjectFile, TopicSpec

__all__ = [
    'EVENT_COLUMNS', 'EVENT_KINDS', 'FIELD_STRING_BYTES', 'FIELD_TYPES', 'FORMAT', 'FORMAT_VERSION', 'HISTORY_KINDS',
    'KEY_COLUMNS', 'MAX_NOTE', 'MAX_STRING_BYTES', 'SESSION_STATES', 'TRIAL_COLUMNS', 'TYPE_BOOL', 'TYPE_FLOAT64',
    'TYPE_INT64', 'TYPE_STRING', 'VIDEO_COLUMNS', 'WEIGHT_COLUMNS', 'WEIGHT_RANGE_G', 'WEIGHT_WHEN', 'BagMessage',
    'Conflict', 'Field', 'StoreError', 'SubjectFile', 'SubjectReader', 'TopicInfo', 'TopicSpec', 'VideoInfo',
    'clear_open_flag', 'fields_from_json', 'history_rows', 'marked_open', 'weight_rows',
]
