"""SWMR writing mechanics: appends flushed batch by batch, and *structure windows* for everything else.

SWMR supports appending to existing datasets only. Creating groups, datasets or attributes runs in a structure
window (:meth:`SwmrWriter._restructure`): close, reopen without SWMR, change, log the change in ``/structure``
(live readers reopen when it grows), reopen, re-enter SWMR: a few milliseconds. :class:`.SubjectFile` builds
the subject file's API on this.

Strings in tables are fixed-width UTF-8. A value longer than its column is never truncated: the column is
widened (the table rewritten in a window) and the value stored whole, up to :data:`.schema.MAX_STRING_BYTES`;
beyond, StoreError.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import h5py
import numpy as np

from . import locking
from .errors import StoreError
from .rows import Columns, Rows, count
from .schema import LIBVER, MAX_STRING_BYTES, string_dtype, string_width

_TABLE_CHUNK_BYTES = 16 * 1024  # small: a subject file holds hundreds of sessions of mostly short tables

F = TypeVar('F', bound=Callable[..., Any])


def create_table(group: h5py.Group, name: str, dtype: np.dtype) -> h5py.Dataset:
    """An empty, appendable, chunked table of ``dtype``."""
    rows = max(1, _TABLE_CHUNK_BYTES // dtype.itemsize)
    return group.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(rows,))


def log_structure(f: h5py.File, change: str) -> None:
    """Append a row to ``/structure``: live readers reopen when it grows."""
    ds = f['structure']
    row = np.zeros(1, dtype=ds.dtype)
    # A log line, so cutting it is fine (on a character boundary: readers decode it).
    row['time_ns'], row['change'] = time.time_ns(), change.encode()[:128].decode('utf-8', 'ignore').encode()
    ds.resize((ds.shape[0] + 1,))
    ds[-1:] = row


def h5_errors(method: F) -> F:
    """Report h5py/OS failures of a writer method as StoreError naming the file."""
    @functools.wraps(method)
    def wrapper(self: SwmrWriter, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except StoreError:
            raise
        except (OSError, RuntimeError, KeyError) as exc:
            raise StoreError(f'{self.path}: {method.__name__} failed: {exc} (disk full, file damaged or gone? '
                             'close this SubjectFile and open the file again)') from exc
    return wrapper  # type: ignore[return-value]


class SwmrWriter:
    """An HDF5 file open for writing in SWMR mode under the writer lock (``lock_fd``), with its structure windows."""

    def __init__(self, path: Path, lock_fd: int, f: h5py.File) -> None:
        self.path = path
        self._lock_fd = lock_fd
        self._key = locking.file_key(path)
        locking.writing(self._key, True)
        self._f: h5py.File | None = f
        self._ds: dict[str, h5py.Dataset] = {}
        self._mtypes: dict[str, h5py.h5t.TypeID] = {}
        #: Structure windows so far and the time they took (SWMR off, change, SWMR on).
        self.restructure_count = 0
        self.restructure_seconds = 0.0

    def close(self) -> None:
        """Flush and close (clears the open mark), then release the writer lock."""
        if self._f is not None:
            try:
                self._f.close()
            finally:
                self._f = None
                self._ds.clear()
                self._mtypes.clear()
                locking.writing(self._key, False)
                os.close(self._lock_fd)

    @property
    def file(self) -> h5py.File:
        """The open h5py file (StoreError once closed)."""
        if self._f is None:
            raise StoreError(f'{self.path}: closed')
        return self._f

    def _dataset(self, path: str) -> h5py.Dataset:
        ds = self._ds.get(path)
        if ds is None:
            ds = self._ds[path] = self.file[path]
        return ds

    def _append(self, path: str, rows: Rows, where: str,
                sync: bool, positive: str | None = None) -> None:
        """Append rows to a table (widening string columns first if needed) and flush.

        ``positive``: a key column that must be > 0 (0 is what a row a crash left unwritten reads as).
        """
        if not count(rows):
            return
        ds = self._dataset(path)
        cols = Columns(ds.dtype, rows, where)
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
                    width = min(MAX_STRING_BYTES, max(needed[name], 2 * (string_width(dt) or 0)))
                    dt = string_dtype(width)
                parts.append((name, dt))
            dtype = np.dtype(parts)
            data = old[()]
            parent, _, leaf = path.rpartition('/')
            group = self.file[parent]
            tmp = create_table(group, leaf + '.widening', dtype)
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
            log_structure(self.file, change)
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
