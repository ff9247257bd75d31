"""MP4 recording (OpenCV ``mp4v``) with a per-frame timestamp table, written on its own thread.

Next to ``video.mp4`` goes ``video.csv`` with one row per written frame: ``frame`` (the capture index,
so gaps show dropped frames), ``capture_monotonic_ns`` (CLOCK_MONOTONIC at capture) and
``ros_stamp_ns`` (the Image header stamp). A container's own timestamps assume a constant rate; the
table is the truth when the rate varied. Encoding runs on a writer thread so it never delays capture;
its queue is bounded and a full queue makes the capture thread wait (those waits then show up as
dropped frames in camera/status, rather than frames silently missing from the file).
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import numpy as np

from autopilot_hardware.camera.sources import cv2

QUEUE_FRAMES = 64
_END = None


class RecorderError(RuntimeError):
    """The recording cannot be opened; the message names the path and the fix."""


def table_path(video: str | Path) -> Path:
    """The timestamp table that goes with ``video``."""
    return Path(video).with_suffix('.csv')


class Mp4Recorder:
    """``write(frame, index, mono_ns, ros_ns)`` queues a frame (copied); ``close()`` drains and closes."""

    def __init__(self, path: str, width: int, height: int, fps: float, color: bool) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() != '.mp4':
            raise RecorderError(f"record_path {path!r} must end in .mp4 (the container OpenCV writes here)")
        if not self.path.parent.is_dir():
            raise RecorderError(f"record_path {path!r}: directory {str(self.path.parent)!r} does not exist; "
                                f"create it or choose another -p record_path:=<dir>/<name>.mp4")
        self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*'mp4v'), fps, (width, height),
                                       color)
        if not self._writer.isOpened():
            raise RecorderError(f'cannot open {path!r} for writing with the mp4v codec: check permissions '
                                f'and free space')
        self._table = open(table_path(self.path), 'w', buffering=1 << 16)
        self._table.write('frame,capture_monotonic_ns,ros_stamp_ns\n')
        self.frames = 0
        self._queue: queue.Queue[tuple[np.ndarray, int, int, int] | None] = queue.Queue(QUEUE_FRAMES)
        self._thread = threading.Thread(target=self._run, name='camera-recorder', daemon=True)
        self._thread.start()

    def write(self, frame: np.ndarray, index: int, mono_ns: int, ros_ns: int) -> None:
        # A copy: the capture buffer is reused for the next frame while this one waits to be encoded.
        self._queue.put((frame.copy(), index, mono_ns, ros_ns))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _END:
                break
            frame, index, mono_ns, ros_ns = item
            self._writer.write(frame)
            self._table.write(f'{index},{mono_ns},{ros_ns}\n')
            self.frames += 1

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_END)
            self._thread.join()
        self._writer.release()
        self._table.close()
