"""One writer per subject file: the writer's kernel lock, and which files this process writes or reads.

The lock is an open-file-description lock (``F_OFD_SETLK``) on the whole file, held for the writer's lifetime
and dropped by the kernel when the process dies; it is independent of HDF5's own ``flock`` (off for writer
and readers, see docs/hdf5-layout.md). HDF5 shares one open file per process, so this process must not read a
file it writes (the writer could not leave SWMR mode): :func:`writing` and :func:`reading` keep the books.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from pathlib import Path

from .errors import StoreError, open_error

_FLOCK = struct.Struct('hhqqi4x')  # struct flock on Linux (64-bit off_t)

FileKey = tuple[int, int]  # (st_dev, st_ino)

# Files this process writes / reads (with how many readers).
_WRITING: set[FileKey] = set()
_READING: dict[FileKey, int] = {}


def file_key(path: Path | str) -> FileKey:
    """What identifies the file at ``path`` whatever name it is opened by; OSError if it does not exist."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def lock(path: Path) -> int:
    """An exclusive OFD lock on the whole file: the open descriptor holding it (close it to release)."""
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


def writing(key: FileKey, on: bool) -> None:
    """Note that a writer of this process opened (``on``) or closed the file ``key``."""
    if on:
        _WRITING.add(key)
    else:
        _WRITING.discard(key)


def written_here(path: Path | str) -> bool:
    """True if a SubjectFile of this process has ``path`` open."""
    try:
        return file_key(path) in _WRITING
    except OSError:
        return False


def reading(key: FileKey, readers: int) -> None:
    """Note how many readers of this process have the file ``key`` open."""
    if readers > 0:
        _READING[key] = readers
    else:
        _READING.pop(key, None)


def read_here(key: FileKey) -> bool:
    """True if a SubjectReader of this process has the file ``key`` open."""
    return _READING.get(key, 0) > 0
