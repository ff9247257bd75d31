"""StoreError, and the translation of h5py/OS errors on opening a subject file into one that names the fix."""

from __future__ import annotations

from pathlib import Path


class StoreError(Exception):
    """A subject file cannot be opened, read or written; the message names the file and the fix."""


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
                          f'`h5clear -s --increment=0 {path}` (package hdf5-tools), or '
                          'SubjectFile.open(path, recover=True)')
    if 'unable to lock file' in text:
        return StoreError(f'{path}: another program holds the file open for writing; close it (HDFView, a '
                          'script) and retry')
    if 'truncated file' in text or 'bad object header' in text or 'checksum' in text.lower():
        return StoreError(f'{path}: damaged HDF5 file ({text}); restore it from a backup')
    return StoreError(f'{path}: cannot open: {text}')
