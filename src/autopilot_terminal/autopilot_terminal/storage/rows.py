"""Rows (or columns) checked and converted into a table's numpy dtype; the file refuses what it cannot hold."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .errors import StoreError
from .schema import MAX_STRING_BYTES, OPTIONAL_EVENT_COLUMNS, string_width

#: What the append methods take: a list of row mappings, or a mapping column name -> values.
Rows = Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]


def count(rows: Sequence[Any] | Mapping[str, Sequence[Any]]) -> int:
    """Rows in a list of rows or in a mapping of columns."""
    if isinstance(rows, Mapping):
        return len(next(iter(rows.values()), ()))
    return len(rows)


def optional_columns(rows: Rows, have: Sequence[str]) -> Rows:
    """``rows`` fitted to a table's columns as far as :data:`OPTIONAL_EVENT_COLUMNS` go."""
    drop = OPTIONAL_EVENT_COLUMNS - set(have)
    if isinstance(rows, Mapping):
        n = count(rows)
        add = {k: [0] * n for k in OPTIONAL_EVENT_COLUMNS & set(have) if k not in rows}
        return {**{k: v for k, v in rows.items() if k not in drop}, **add}
    fill = {k: 0 for k in OPTIONAL_EVENT_COLUMNS & set(have)}
    return [{**fill, **{k: v for k, v in r.items() if k not in drop}} if isinstance(r, Mapping) else r for r in rows]


def new_rows(rows: Sequence[Mapping[str, Any]], key: str, stored: set[int],
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
    if arr.dtype.kind in 'fO' and dt.kind in 'iu' and arr.ndim == 1 and \
            all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in values):
        # Python ints numpy could not hold in one int64/uint64 array (a uint64 of 2**63 or more beside small
        # ones becomes float64, which rounds): exact, through the column's own type, after a range check.
        arr = np.asarray(values, dtype=object)
    elif arr.dtype.kind not in allowed or arr.ndim != 1:  # the slow path only when something is wrong
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
        if arr.dtype.kind == 'O':
            return np.array([int(v) for v in values], dtype=dt)
    return arr.astype(dt, copy=False)


class Columns:
    """Rows (mappings) or columns (a mapping name -> values) checked and converted for one table dtype.

    A wrong type, a missing or unknown column, an out-of-range number or a NUL in a string raises StoreError
    naming the row and column: numpy would otherwise wrap, truncate or cast it silently into the file.
    """

    def __init__(self, dtype: np.dtype, rows: Rows, where: str) -> None:
        names = dtype.names or ()
        if isinstance(rows, Mapping):  # already columns (name -> values), as event decoders give them
            by_name = self._check_columns(rows, names, where)
        else:
            by_name = self._check_rows(rows, names, where)
        self.values: dict[str, Any] = {}
        self.needed: dict[str, int] = {}  # string column -> bytes needed, where wider than the table's
        for name in names:
            values = by_name(name)
            dt = dtype.fields[name][0] if dtype.fields else dtype
            width = string_width(dt)
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
        """The rows as one array of ``dtype`` (the table's, widened if :attr:`needed` asked for it)."""
        n = len(next(iter(self.values.values()))) if self.values else 0
        arr = np.zeros(n, dtype=dtype)
        for name, values in self.values.items():
            arr[name] = values
        return arr
