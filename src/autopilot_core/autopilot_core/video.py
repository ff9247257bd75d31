"""MP4 writing (OpenCV ``mp4v``) on a thread of its own, with each frame's timestamp row sent to a sink.

Shared by the camera node (which records what it captures, rows to a ``.csv`` table next to the video:
:class:`CsvSink`) and the Terminal (which records frames it receives, rows to the subject's HDF5 file:
:class:`RowBuffer`, drained by the thread that owns the file). :class:`Mp4Writer` takes
``write(frame, row)``; its writer thread encodes the frame and then hands ``row`` to the sink, so a
table row exists only for a frame that was given to the encoder, in the same order.

A container's own timestamps assume a constant rate (the ``fps`` given here); the row table is the
truth when the rate varied or frames were lost before they reached the writer.

Encoding runs on the writer thread so it never delays the producer. Its queue is bounded: a full
queue makes ``write`` wait (``block=True``, the camera: the wait then shows as dropped capture frames)
or refuses the frame (``block=False``: counted in :attr:`Mp4Writer.dropped`, no row, no frame).

OpenCV is imported on first use (:func:`cv2`), so importing :mod:`autopilot_core` never needs it.
A killed process leaves an MP4 without its index (``moov`` atom), which players cannot open; the
rows written so far remain (``ffmpeg``'s ``untrunc``-style tools can sometimes rescue the frames).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

#: Frames waiting to be encoded before ``write`` waits (or refuses, ``block=False``): ~2 s at 30 fps.
QUEUE_FRAMES = 64
#: The FourCC written: MPEG-4 Part 2, which every OpenCV build (pip wheels included) can encode.
CODEC = 'mp4v'
_END = None


class VideoError(RuntimeError):
    """A video cannot be opened, written or decoded; the message names the file or input and the fix."""


def cv2() -> ModuleType:
    """OpenCV, imported on first use, quietly (it reads its log-level variables on import)."""
    os.environ.setdefault('OPENCV_LOG_LEVEL', 'ERROR')
    os.environ.setdefault('OPENCV_FFMPEG_LOGLEVEL', '-8')  # AV_LOG_QUIET: no "moov atom not found" lines
    try:
        import cv2 as module
    except ImportError as exc:
        raise VideoError(f'OpenCV is needed to write video ({exc}); install it: pip install opencv-python-headless '
                         '(or apt install python3-opencv)') from exc
    return module


class FrameSink(Protocol):
    """Where an :class:`Mp4Writer` puts each encoded frame's row (called on the writer thread)."""

    def add(self, row: Any) -> None: ...

    def close(self) -> None: ...


class CsvSink:
    """Rows (sequences of numbers) as CSV lines under a header line, buffered (64 KiB)."""

    def __init__(self, path: str | Path, columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.columns = tuple(columns)
        self._fh = open(self.path, 'w', buffering=1 << 16)
        self._fh.write(','.join(self.columns) + '\n')

    def add(self, row: Sequence[Any]) -> None:
        self._fh.write(','.join(map(str, row)) + '\n')

    def close(self) -> None:
        self._fh.close()


class RowBuffer:
    """Rows kept until another thread takes them (:meth:`take`): the writer thread adds, the owner drains."""

    def __init__(self) -> None:
        self._rows: list[Any] = []
        self._lock = threading.Lock()

    def add(self, row: Any) -> None:
        with self._lock:
            self._rows.append(row)

    def take(self) -> list[Any]:
        """The rows added since the last call, oldest first."""
        with self._lock:
            rows, self._rows = self._rows, []
        return rows

    def close(self) -> None:
        pass  # rows stay available to take() after the writer closed


class Mp4Writer:
    """Encode frames of one size to ``path`` (``.mp4``) on a writer thread; rows go to ``sink``.

    ``write(frame, row)`` queues a ``height x width x 3`` BGR frame (``color=True``) or a ``height x
    width`` gray one (``color=False``), uint8; ``close()`` drains the queue, finishes the file and
    closes the sink. A failure on the writer thread (encoder, sink) is raised by the next ``write`` or
    by ``close`` as VideoError; frames queued after it are discarded, so producers never hang.
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: float, *, color: bool = True,
                 sink: FrameSink | None = None, queue_frames: int = QUEUE_FRAMES,
                 thread_name: str = 'mp4-writer') -> None:
        self.path = Path(path)
        self.width, self.height, self.fps, self.color = int(width), int(height), float(fps), bool(color)
        if self.path.suffix.lower() != '.mp4':
            raise VideoError(f'{self.path}: the video path must end in .mp4 (the container written here)')
        if not self.path.parent.is_dir():
            raise VideoError(f'{self.path}: directory {str(self.path.parent)!r} does not exist; create it first')
        if self.width <= 0 or self.height <= 0 or not self.fps > 0:
            raise VideoError(f'{self.path}: width, height and fps must be > 0 (got {width}x{height} at {fps} fps)')
        cv = cv2()
        self._writer = cv.VideoWriter(str(self.path), cv.VideoWriter_fourcc(*CODEC), self.fps,
                                      (self.width, self.height), self.color)
        if not self._writer.isOpened():
            raise VideoError(f'{self.path}: cannot open for writing with the {CODEC} codec: check permissions and '
                             'free space')
        self.shape = (self.height, self.width, 3) if self.color else (self.height, self.width)
        self.sink = sink
        #: Frames encoded (rows given to the sink), frames refused because the queue was full (block=False).
        self.frames = 0
        self.dropped = 0
        self.error: BaseException | None = None
        self._closed = False
        self._queue: queue.Queue[tuple[np.ndarray, Any] | None] = queue.Queue(queue_frames)
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)
        self._thread.start()

    def write(self, frame: np.ndarray, row: Any, *, copy: bool = False, block: bool = True) -> bool:
        """Queue ``frame`` with its ``row``; False if refused (``block=False`` and the queue is full).

        ``copy``: the caller reuses the frame's buffer (a capture buffer); without it the array must stay
        unchanged until encoded (a view of immutable message bytes is fine, and costs no copy here).
        """
        if self._closed:
            raise VideoError(f'{self.path}: writer closed')
        if self.error is not None:
            raise VideoError(f'{self.path}: writing failed: {self.error}') from self.error
        if frame.shape != self.shape or frame.dtype != np.uint8:
            raise VideoError(f'{self.path}: frame of shape {frame.shape} {frame.dtype}, but this video takes '
                             f'{self.shape} uint8')
        item = (frame.copy() if copy else frame, row)
        try:
            self._queue.put(item, block=block)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if self.error is not None:
                continue  # failed already: drain, so producers waiting on the queue go on
            frame, row = item
            try:
                self._writer.write(frame)
                if self.sink is not None:
                    self.sink.add(row)
                self.frames += 1
            except Exception as exc:  # noqa: BLE001 - raised to the producer by write()/close()
                self.error = exc

    def close(self) -> None:
        """Encode what is queued, finish the file, close the sink; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self._queue.put(_END)
            self._thread.join()
        try:
            self._writer.release()
        finally:
            if self.sink is not None:
                self.sink.close()
        if self.error is not None:
            raise VideoError(f'{self.path}: writing failed: {self.error}') from self.error
