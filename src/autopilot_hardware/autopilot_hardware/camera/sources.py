"""Frame sources without ROS: an OpenCV device or video file, or a synthetic moving pattern.

Every source fills a caller-owned numpy buffer (``read_into``) so the node can capture straight into
the memory the Image message publishes from: no per-frame allocation, no Python-level copy.

The synthetic source is the test and benchmark camera: frames are produced on a monotonic schedule
(frame k at t0 + k/fps); when the consumer is late, the missed slots are skipped and counted as
dropped, as a real camera's driver would lose them. Its frame counter is drawn into the picture and
also stored machine-readably in the first 8 bytes of the first row (little-endian uint64), so a
subscriber can check order and gaps without OCR.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# OpenCV prints multi-line warnings when a device is missing; we report one line of our own instead.
os.environ.setdefault('OPENCV_LOG_LEVEL', 'ERROR')
os.environ.setdefault('OPENCV_FFMPEG_LOGLEVEL', '-8')  # AV_LOG_QUIET: no "moov atom not found" lines
import cv2  # after the log-level variables, which OpenCV reads on import

COUNTER_BYTES = 8


class SourceError(RuntimeError):
    """A source that cannot be opened or read; the message names the source and the fix."""


@dataclass
class Frame:
    """What one ``read_into`` produced: its index, capture stamps and how many frames were missed before it."""

    index: int
    monotonic_ns: int
    wall_ns: int
    missed: int


def counter_of(frame: np.ndarray) -> int:
    """The synthetic frame counter stored in the first bytes of ``frame`` (see module docstring)."""
    return int.from_bytes(np.ascontiguousarray(frame).reshape(-1)[:COUNTER_BYTES].tobytes(), 'little')


class FrameSource:
    """Base: ``read_into(buf)`` blocks until the next frame is in ``buf`` or returns None at the end."""

    description = ''

    def __init__(self, width: int, height: int, fps: float, channels: int) -> None:
        self.width, self.height, self.fps, self.channels = width, height, fps, channels
        self.period_ns = int(1e9 / fps)
        self._index = 0

    def read_into(self, buf: np.ndarray) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class SyntheticSource(FrameSource):
    """A horizontally scrolling colour pattern with a moving bar and the frame counter, at ``fps``."""

    description = 'synthetic'

    def __init__(self, width: int, height: int, fps: float, channels: int) -> None:
        super().__init__(width, height, fps, channels)
        x = np.arange(2 * width, dtype=np.float32)
        y = np.arange(height, dtype=np.float32)[:, None]
        # Pattern twice as wide as the frame: a frame is a (memcpy) slice of it, no per-pixel work.
        b = (127 + 120 * np.sin(2 * np.pi * x / width * 3)) + 0 * y
        g = (127 + 120 * np.sin(2 * np.pi * (x / width + y / height))) + 0 * y
        r = np.broadcast_to(255 * y / height, (height, 2 * width))
        pattern = np.stack([b, g, r], axis=-1).clip(0, 255).astype(np.uint8)
        self._pattern = pattern if channels == 3 else cv2.cvtColor(pattern, cv2.COLOR_BGR2GRAY)
        self._next_ns = 0
        # First putText loads the font (~20 ms): do it now, not inside frame 0's schedule slot.
        cv2.putText(np.zeros((40, 40), np.uint8), '0', (0, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 255, 2, cv2.LINE_AA)

    def read_into(self, buf: np.ndarray) -> Frame | None:
        now = time.monotonic_ns()
        missed = 0
        if self._index == 0:
            self._next_ns = now
        elif now < self._next_ns:
            time.sleep((self._next_ns - now) / 1e9)
        else:
            # Late by whole periods: those slots are lost, as with a camera that was not read in time.
            missed = (now - self._next_ns) // self.period_ns
            self._next_ns += missed * self.period_ns
        mono = time.monotonic_ns()
        wall = time.time_ns()
        self._next_ns += self.period_ns
        i = self._index + missed
        self._index = i + 1
        shift = (4 * i) % self.width
        np.copyto(buf, self._pattern[:, shift:shift + self.width])
        bar = (8 * i) % self.height
        buf[bar:bar + 6] = 255
        cv2.putText(buf, f'frame {i}', (10, min(40, self.height - 4)), cv2.FONT_HERSHEY_SIMPLEX, 1.0,
                    (255, 255, 255) if self.channels == 3 else 255, 2, cv2.LINE_AA)
        buf.reshape(-1)[:COUNTER_BYTES] = np.frombuffer(i.to_bytes(COUNTER_BYTES, 'little'), np.uint8)
        return Frame(i, mono, wall, int(missed))


class OpenCVSource(FrameSource):
    """A camera (index or /dev path) or a video file via cv2.VideoCapture, scaled to width x height.

    A file is paced at ``fps`` (it would otherwise be read as fast as it decodes); a device runs at its
    own rate and only gaps longer than 1.5 periods count as dropped frames.
    """

    def __init__(self, source: str, width: int, height: int, fps: float, channels: int,
                 loop: bool = False) -> None:
        super().__init__(width, height, fps, channels)
        self.loop = loop
        self.is_device = source.isdigit() or source.startswith('/dev/')
        if self.is_device:
            self.description = f'device {source}'
            dev = int(source) if source.isdigit() else source
            path = f'/dev/video{source}' if source.isdigit() else source
            if not os.path.exists(path):
                raise SourceError(f"camera device {source!r} not found ({path} does not exist): connect the "
                                  f"camera, pick another with -p source:=<index or /dev/videoN>, or run "
                                  f"without one with -p backend:=synthetic")
            self.cap = cv2.VideoCapture(dev, cv2.CAP_V4L2)
            if self.cap.isOpened():
                self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
                self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
                self.cap.set(cv2.CAP_PROP_FPS, fps)
        else:
            self.description = f'file {source}'
            if not Path(source).is_file():
                raise SourceError(f"video file {source!r} does not exist: give an existing file with "
                                  f"-p source:=<path>, a camera index (-p source:=0) or -p backend:=synthetic")
            self.cap = cv2.VideoCapture(source)
        if not self.cap.isOpened():
            why = ('in use by another process or no permission (are you in the video group?); check it with '
                   'v4l2-ctl --list-devices' if self.is_device else
                   'not a video OpenCV can decode (truncated, or an unsupported container); check it with ffprobe')
            raise SourceError(f'cannot open {self.description}: {why}')
        ok, first = self.cap.read()
        if not ok or first is None:
            raise SourceError(f'cannot read a frame from {self.description}: OpenCV opened it but decoded '
                              f'nothing (unsupported codec or empty file); convert it or pick another source')
        self._pending: np.ndarray | None = first
        self._raw: np.ndarray | None = None
        self._last_ns = 0
        self._next_ns = 0

    @property
    def native_size(self) -> tuple[int, int]:
        f = self._pending if self._pending is not None else self._raw
        assert f is not None
        return f.shape[1], f.shape[0]

    def read_into(self, buf: np.ndarray) -> Frame | None:
        if self._pending is not None:
            raw, self._pending = self._pending, None
        else:
            if not self.is_device:
                now = time.monotonic_ns()
                if now < self._next_ns:
                    time.sleep((self._next_ns - now) / 1e9)
            # read(image=...) decodes into the previous raw buffer when its size fits: no allocation.
            ok, raw = self.cap.read(self._raw)
            if not ok and self.loop and not self.is_device:
                self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, raw = self.cap.read(self._raw)
            if not ok:
                return None
        self._raw = raw
        mono, wall = time.monotonic_ns(), time.time_ns()
        if not self.is_device:
            # Next file frame one period after this one's schedule slot; no catch-up burst when late.
            base = self._next_ns if self._index else mono
            self._next_ns = max(base + self.period_ns, mono)
        missed = 0
        if self.is_device and self._last_ns and mono - self._last_ns > 1.5 * self.period_ns:
            missed = round((mono - self._last_ns) / self.period_ns) - 1
        self._last_ns = mono
        self._convert(raw, buf)
        i = self._index + missed
        self._index = i + 1
        return Frame(i, mono, wall, missed)

    def _convert(self, raw: np.ndarray, buf: np.ndarray) -> None:
        src = raw
        if self.channels == 1 and raw.ndim == 3:
            src = cv2.cvtColor(raw, cv2.COLOR_BGR2GRAY)
        elif self.channels == 3 and raw.ndim == 2:
            src = cv2.cvtColor(raw, cv2.COLOR_GRAY2BGR)
        if src.shape[:2] != buf.shape[:2]:
            cv2.resize(src, (self.width, self.height), dst=buf, interpolation=cv2.INTER_AREA)
        else:
            np.copyto(buf, src.reshape(buf.shape))

    def close(self) -> None:
        self.cap.release()


def open_source(backend: str, source: str, width: int, height: int, fps: float, channels: int,
                loop: bool = False) -> FrameSource:
    """The source ``backend`` ('opencv' | 'synthetic') names; SourceError when it cannot deliver frames."""
    if backend == 'synthetic':
        return SyntheticSource(width, height, fps, channels)
    if backend == 'opencv':
        if not source:
            raise SourceError("parameter 'source' is empty: give a camera index (-p source:=0), a device "
                              "path (/dev/video0) or a video file, or use -p backend:=synthetic")
        return OpenCVSource(source, width, height, fps, channels, loop)
    raise SourceError(f"unknown camera backend {backend!r}: use 'opencv' or 'synthetic'")
