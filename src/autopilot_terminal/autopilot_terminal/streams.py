"""Continuous streams: any message topic flattened into a typed table of the session, one row per message.

A topic in the terminal's ``stream_topics`` (a running wheel's encoder, a lick sensor's samples, an IMU) is
kept raw in the session's bag like every recorded topic, and its messages are also written as rows of
``sessions/<id>/streams/<name>`` so that an analysis reads columns straight from HDF5 (h5py, pandas)
without deserialising. The columns come from the message definition (rosidl introspection), depth first:

* ``recv_ns`` (the terminal's receive time) first; then every field by its dotted path (``twist.linear.x``);
* numbers and booleans as their numpy type (``int32`` -> ``i4``, ``float64`` -> ``f8``, ``boolean`` -> ``?``);
* ``builtin_interfaces/Time`` and ``Duration`` as one int64 of nanoseconds (``header.stamp`` -> ``header.stamp``);
* strings as fixed UTF-8 (64 bytes at first; the store widens a column when a longer value comes);
* fixed-size numeric arrays up to :data:`MAX_ARRAY` as one column per element (``orientation_covariance.0``);
* sequences and longer arrays are left out (named in the table's ``skipped`` attribute): they stay in the bag.

Decoding uses rclpy's deserialiser (streams run at up to ~1 kHz, not at the event topics' rates) when the
recorder's writer is idle, as for the event tables.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from rclpy.serialization import deserialize_message

from autopilot_core import stamps
from autopilot_runtime_py.messages import get_message

from .cdr import CdrError

#: Fixed-size arrays with at most this many elements get a column per element.
MAX_ARRAY = 36
STRING_BYTES = 64
_NUMBERS = {'boolean': '?', 'octet': 'u1', 'byte': 'u1', 'int8': 'i1', 'uint8': 'u1', 'int16': 'i2',
            'uint16': 'u2', 'int32': 'i4', 'uint32': 'u4', 'int64': 'i8', 'uint64': 'u8', 'float': 'f4',
            'double': 'f8', 'float32': 'f4', 'float64': 'f8'}
_TIMES = ('builtin_interfaces/Time', 'builtin_interfaces/Duration')
_ARRAY = re.compile(r'^(?P<base>[\w/]+)\[(?P<n>\d+)\]$')


class StreamError(ValueError):
    """A message type that cannot be flattened into a table (no field fits a column)."""


@dataclass(frozen=True)
class Column:
    name: str
    code: str  # numpy type code; 'S<n>' = fixed UTF-8
    get: Callable[[Any], Any]
    time: bool = False  # a builtin_interfaces Time/Duration in ns


def _item(get: Callable[[Any], Any], i: int, m: Any) -> Any:
    return get(m)[i]


def _ns(get: Callable[[Any], Any], m: Any) -> int:
    return stamps.to_ns(get(m))


def _walk(cls: Any, prefix: str, get: Callable[[Any], Any], cols: list[Column], skipped: list[str]) -> None:
    for field, type_name in cls.get_fields_and_field_types().items():
        path = f'{prefix}{field}'

        def child(m: Any, get: Callable[[Any], Any] = get, field: str = field) -> Any:
            return getattr(get(m), field)
        base = type_name.split('<')[0]  # bounded strings: string<=10
        array = _ARRAY.match(type_name)
        if type_name in ('byte', 'octet'):  # bytes of length 1 in Python
            cols.append(Column(path, 'u1', partial(_item, child, 0)))
        elif type_name in _NUMBERS:
            cols.append(Column(path, _NUMBERS[type_name], child))
        elif base in ('string', 'wstring'):
            cols.append(Column(path, f'S{STRING_BYTES}', child))
        elif type_name in _TIMES:
            cols.append(Column(path, 'i8', partial(_ns, child), time=True))
        elif array and array['base'] in _NUMBERS and array['base'] not in ('byte', 'octet') \
                and int(array['n']) <= MAX_ARRAY:
            code = _NUMBERS[array['base']]
            for i in range(int(array['n'])):
                cols.append(Column(f'{path}.{i}', code, partial(_item, child, i)))
        elif '/' in type_name and not array and not type_name.startswith('sequence'):
            _walk(get_message(type_name), f'{path}.', child, cols, skipped)
        else:
            skipped.append(f'{path} ({type_name})')


class StreamDecoder:
    """Decodes one message type's CDR samples into the columns of its stream table (see the module doc)."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name
        self.cls = get_message(type_name)
        cols: list[Column] = []
        self.skipped: list[str] = []
        _walk(self.cls, '', lambda m: m, cols, self.skipped)
        if not cols:
            raise StreamError(f'{type_name}: no field fits a table column (left out: {", ".join(self.skipped)}); '
                              'record it in the bag only (record_topics)')
        self.columns = cols

    @property
    def time_columns(self) -> list[str]:
        """The columns holding a Time or Duration (int64 ns): not quantities to plot or average."""
        return [c.name for c in self.columns if c.time]

    @property
    def spec(self) -> list[tuple[str, str]]:
        """(column, numpy code) of the table, ``recv_ns`` first."""
        return [('recv_ns', 'i8')] + [(c.name, c.code) for c in self.columns]

    def __call__(self, samples: Sequence[tuple[int, bytes]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {'recv_ns': [recv for recv, _ in samples]}
        try:
            msgs = [deserialize_message(data, self.cls) for _, data in samples]
        except Exception as exc:  # rclpy raises several types for bytes that are not this message
            raise CdrError(f'{self.type_name}: {exc}') from exc
        for c in self.columns:
            out[c.name] = [c.get(m) for m in msgs]
        return out


def stream_name(topic: str) -> str:
    """The table name of a topic: without the leading "/", "/" -> "_" (``/rig_1/wheel`` -> ``rig_1_wheel``)."""
    return topic.strip('/').replace('/', '_')
