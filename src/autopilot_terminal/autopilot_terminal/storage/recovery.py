"""After a writer died: tell a file it left marked open, repair it with HDF5's ``h5clear``, trim unwritten rows.

A writer that dies (SIGKILL, power cut) leaves two things in the superblock: the consistency flags that say
"open for writing" (HDF5 then refuses every non-SWMR open), and, since a SWMR writer does not rewrite the
superblock on every flush, a stored end-of-allocation that can lag behind chunks its flushed metadata
already uses (the next write there fails with "addr overflow"). ``h5clear -s --increment=0`` (Debian package
``hdf5-tools``) repairs both: it clears the flags and sets the end-of-allocation to the larger of it and the
file's size. Rows of the batch the kill cut read as zeros (their key column is 0): :func:`trim_crashed`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np

from .errors import StoreError, open_error
from .schema import KEY_COLUMNS, VIDEO_KEY

#: What HDF5 says when a non-SWMR open meets the flags a writer sets (and a dead one leaves).
_MARKED = ('already open for write', 'not already open for SWMR writing')
#: What fixes a machine without h5clear.
INSTALL_H5CLEAR = 'apt install hdf5-tools'


def marked_open(path: Path | str) -> bool:
    """True if the superblock says a writer has the file open (or died with it open), as HDF5 itself decides.

    A plain read-only open: HDF5 checks the superblock (checksum included, without the retries of a SWMR
    read) and refuses a file so marked. Any other failure is a StoreError naming the fix. Never writes.
    """
    try:
        with h5py.File(path, 'r', locking=False):
            return False
    except (OSError, RuntimeError) as exc:
        if any(m in str(exc) for m in _MARKED):
            return True
        if 'truncated file' not in str(exc):
            raise open_error(path, exc) from exc
        # HDF5 checks the file's size before its flags. A SWMR writer killed after its metadata promised space it
        # had not written yet leaves a file shorter than the superblock says; HDF5 has verified the superblock's
        # checksum by then, so its status flags (byte 11 of a version 2/3 superblock) tell that case apart.
        with open(path, 'rb') as fh:
            head = fh.read(12)
        if len(head) == 12 and head[8] >= 2 and head[11] != 0:
            return True
        raise open_error(path, exc) from exc


def clear_open_flag(path: Path | str) -> bool:
    """Repair what a writer that died left in the superblock (``h5clear -s --increment=0``); True if it had to.

    Only for a file no process is writing: :meth:`.SubjectFile.open` calls it under the writer lock.
    """
    if not marked_open(path):
        return False
    h5clear = shutil.which('h5clear')
    if h5clear is None:
        raise StoreError(f'{path}: was left open by a writer that stopped, and repairing it needs h5clear, which is '
                         f'not installed: {INSTALL_H5CLEAR} (or run scripts/setup.py), then open it again')
    # HDF5's flock off, as for our own opens: the writer lock held by the caller is what excludes others.
    env = {**os.environ, 'HDF5_USE_FILE_LOCKING': 'FALSE'}
    try:
        done = subprocess.run([h5clear, '-s', '--increment=0', os.fspath(path)], env=env, capture_output=True,
                              text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StoreError(f'{path}: h5clear failed: {exc}') from exc
    if done.returncode != 0 or marked_open(path):
        why = (done.stderr or done.stdout).strip() or f'exit status {done.returncode}'
        raise StoreError(f'{path}: h5clear could not repair it ({why}); the file is damaged: restore it from a '
                         'backup')
    return True


def trim_crashed(f: h5py.File) -> bool:
    """Trim rows a killed writer left unwritten (key column 0) from the ends of the running sessions' tables."""
    trimmed = _trim(f['subject/history'], KEY_COLUMNS['history'])
    if 'weights' in f['subject']:
        trimmed |= _trim(f['subject/weights'], KEY_COLUMNS['weights'])
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
            if tg['data'].shape[0] > end:  # bytes of messages whose index rows were never written
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
