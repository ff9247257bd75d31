"""The camera's MP4 recording: :class:`autopilot_core.video.Mp4Writer` with a ``.csv`` timestamp table.

Next to ``video.mp4`` goes ``video.csv`` with one row per written frame: ``frame`` (the capture index,
so gaps show dropped frames), ``capture_monotonic_ns`` (CLOCK_MONOTONIC at capture) and
``ros_stamp_ns`` (the Image header stamp). A container's own timestamps assume a constant rate; the
table is the truth when the rate varied. Encoding runs on the writer's thread so it never delays
capture; its queue is bounded and a full queue makes the capture thread wait (those waits then show up
as dropped frames in camera/status, rather than frames silently missing from the file).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autopilot_core.video import QUEUE_FRAMES, CsvSink, Mp4Writer, VideoError

__all__ = ['QUEUE_FRAMES', 'TABLE_COLUMNS', 'Mp4Recorder', 'RecorderError', 'table_path']

TABLE_COLUMNS = ('frame', 'capture_monotonic_ns', 'ros_stamp_ns')


class RecorderError(VideoError):
    """The recording cannot be opened; the message names the path and the fix."""


def table_path(video: str | Path) -> Path:
    """The timestamp table that goes with ``video``."""
    return Path(video).with_suffix('.csv')


class Mp4Recorder(Mp4Writer):
    """``write(frame, index, mono_ns, ros_ns)`` queues a frame (copied); ``close()`` drains and closes."""

    def __init__(self, path: str, width: int, height: int, fps: float, color: bool) -> None:
        p = Path(path)
        # Checked here too, to name the camera parameter in the fix.
        if p.suffix.lower() != '.mp4':
            raise RecorderError(f"record_path {path!r} must end in .mp4 (the container OpenCV writes here)")
        if not p.parent.is_dir():
            raise RecorderError(f"record_path {path!r}: directory {str(p.parent)!r} does not exist; "
                                f"create it or choose another -p record_path:=<dir>/<name>.mp4")
        try:
            super().__init__(p, width, height, fps, color=color, thread_name='camera-recorder')
        except VideoError as exc:
            raise RecorderError(f'record_path {path!r}: {exc}') from exc
        try:
            self.sink = CsvSink(table_path(p), TABLE_COLUMNS)
        except OSError:
            self.close()
            raise

    def write(self, frame: np.ndarray, index: int, mono_ns: int, ros_ns: int) -> None:  # type: ignore[override]
        # A copy: the capture buffer is reused for the next frame while this one waits to be encoded.
        super().write(frame, (index, mono_ns, ros_ns), copy=True)
