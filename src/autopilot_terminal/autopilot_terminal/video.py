"""Camera frames the Terminal receives, recorded as MP4 plus a per-frame timestamp table.

A raw subscription hands the recorder each message as CDR bytes. :func:`decode_frame` reads a
``sensor_msgs/msg/Image`` (bgr8, rgb8, mono8) or ``sensor_msgs/msg/CompressedImage`` (JPEG/PNG) from them
without rclpy's deserialiser, which would copy a 900 KB frame into a Python message: the header, sizes
and strings are read with :mod:`struct` (CDR alignment counted from the end of the 4-byte
encapsulation header) and the pixels are a numpy view of the bytes (no copy; row padding of a ``step``
wider than a row is skipped by the view's strides). Compressed frames are decoded with ``cv2.imdecode``.

:class:`VideoSink` writes one video file: frames go to :class:`autopilot_core.video.Mp4Writer` (mp4v,
own thread), and each encoded frame yields a row ``{frame, stamp_ns, recv_ns}`` (index in the MP4,
header stamp, Terminal receive time) for the subject file (``SubjectFile.add_frames``). The rows, not
the container's constant frame rate, are the truth about when each frame was taken: frames dropped by
the network or refused by a full encoder queue are simply absent (visible as gaps in ``stamp_ns``).

mono8 is written as a gray MP4 (players and ``cv2.VideoCapture`` return it as three equal channels);
rgb8 is converted to the BGR the encoder takes. mp4v (yuv420p) needs even sizes: an odd last
column/row is not encoded (``width``/``height`` stored are the frames').

Format changes: a sink takes frames of the first frame's width, height and encoding only. A frame of
another format raises :class:`FrameFormatError` and is not written; the sink goes on with the original
format. A caller that wants the new format recorded closes the sink and opens the next part
(:func:`next_video_path`), which gets its own table.

Files: ``<data_dir>/<subject>/<session_id>/<name>.mp4`` next to ``<data_dir>/<subject>.h5``, where
``<name>`` is the topic without its leading ``/`` and with ``/`` replaced by ``_``
(``/pilot1/camera/image`` -> ``pilot1_camera_image``), plus ``-<part>`` from the second part on. The
same name keys the session's table ``sessions/<id>/video/<name>``, whose ``path`` attribute is relative to
the subject file's directory (moving the data folder keeps it valid).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autopilot_core.video import CODEC, QUEUE_FRAMES, Mp4Writer, RowBuffer, VideoError, cv2

from . import cdr
from .cdr import CdrReader

IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_TYPE = 'sensor_msgs/msg/CompressedImage'
#: Message types :func:`decode_frame` reads.
VIDEO_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
#: Image encodings recorded, and their channels. mono8 becomes a gray MP4 (decoders return it as 3 equal channels).
ENCODINGS = {'bgr8': 3, 'rgb8': 3, 'mono8': 1}
#: Frame rate written into the container when none was given and the stamps cannot tell (fewer than 2 frames).
DEFAULT_FPS = 30.0
#: Frames held back to estimate the rate from their stamps when no fps is given (~1 s at 30 fps).
ESTIMATE_FRAMES = 30
#: Row columns, as stored by ``SubjectFile.add_frames``.
ROW_COLUMNS = ('frame', 'stamp_ns', 'recv_ns')

class CdrError(VideoError, cdr.CdrError):
    """The bytes are not a well-formed CDR message of the expected type (truncated, bad header or string)."""


class FrameFormatError(VideoError):
    """A frame's encoding is not recordable, or its size/encoding differs from the video being written."""


@dataclass(frozen=True)
class RawImage:
    """The fields of a sensor_msgs/msg/Image; ``data`` is a view of the message bytes."""

    stamp_ns: int
    frame_id: str
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: memoryview


@dataclass(frozen=True)
class RawCompressedImage:
    """The fields of a sensor_msgs/msg/CompressedImage; ``data`` is a view of the message bytes."""

    stamp_ns: int
    frame_id: str
    format: str
    data: memoryview


def read_image(cdr: bytes | bytearray | memoryview) -> RawImage:
    """Parse serialized sensor_msgs/msg/Image fields (any encoding); CdrError if malformed."""
    r = CdrReader(cdr, IMAGE_TYPE, CdrError)
    stamp = r.stamp_ns()
    frame_id = r.string('header.frame_id')
    height, width = r.u32_pair('height/width')
    encoding = r.string('encoding')
    big = r.u8('is_bigendian')
    step = r.u32('step')
    at, n = r.octets('data')
    return RawImage(stamp, frame_id, height, width, encoding, big, step, memoryview(cdr)[at:at + n])


def read_compressed(cdr: bytes | bytearray | memoryview) -> RawCompressedImage:
    """Parse serialized sensor_msgs/msg/CompressedImage fields; CdrError if malformed."""
    r = CdrReader(cdr, COMPRESSED_TYPE, CdrError)
    stamp = r.stamp_ns()
    frame_id = r.string('header.frame_id')
    fmt = r.string('format')
    at, n = r.octets('data')
    return RawCompressedImage(stamp, frame_id, fmt, memoryview(cdr)[at:at + n])


# --- frames ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Frame:
    """A decoded frame: ``pixels`` is ``height x width x 3`` (bgr8, rgb8) or ``height x width`` (mono8) uint8.

    From an Image the pixels are a read-only view of the message bytes (keep them unchanged while the
    frame is in use; ``bytes`` from a raw subscription are). ``encoding`` is the pixel layout of
    ``pixels``: a JPEG's is what ``cv2.imdecode`` returns (bgr8 or mono8).
    """

    stamp_ns: int
    frame_id: str
    width: int
    height: int
    encoding: str
    pixels: np.ndarray


def decode_image(cdr: bytes | bytearray | memoryview) -> Frame:
    """A sensor_msgs/msg/Image's frame, pixels viewed in place; CdrError / FrameFormatError if unusable."""
    m = read_image(cdr)
    channels = ENCODINGS.get(m.encoding)
    if channels is None:
        raise FrameFormatError(f'{IMAGE_TYPE} encoding {m.encoding!r} cannot be recorded as video (recordable: '
                               f'{", ".join(ENCODINGS)}); publish one of those or record the topic in the bag')
    row = m.width * channels
    if m.width == 0 or m.height == 0:
        raise FrameFormatError(f'{IMAGE_TYPE}: empty image ({m.width}x{m.height})')
    if m.step < row:
        raise CdrError(f'{IMAGE_TYPE}: step {m.step} is less than width x channels = {row} ({m.encoding})')
    if len(m.data) < m.step * m.height:
        raise CdrError(f'{IMAGE_TYPE}: data has {len(m.data)} bytes, expected step x height = '
                       f'{m.step} x {m.height} = {m.step * m.height}')
    # A view: rows of `step` bytes, of which the first width x channels are pixels.
    pixels = np.frombuffer(m.data, np.uint8, m.step * m.height).reshape(m.height, m.step)[:, :row]
    pixels = pixels.reshape(m.height, m.width, channels) if channels == 3 else pixels
    return Frame(m.stamp_ns, m.frame_id, m.width, m.height, m.encoding, pixels)


def decode_compressed(cdr: bytes | bytearray | memoryview) -> Frame:
    """A sensor_msgs/msg/CompressedImage's frame (JPEG, PNG: whatever cv2.imdecode reads), as bgr8 or mono8."""
    m = read_compressed(cdr)
    cv = cv2()
    pixels = cv.imdecode(np.frombuffer(m.data, np.uint8), cv.IMREAD_UNCHANGED) if len(m.data) else None
    if pixels is None:
        raise FrameFormatError(f'{COMPRESSED_TYPE}: cannot decode {len(m.data)} bytes of format {m.format!r} '
                               '(not a JPEG/PNG image, or truncated)')
    if pixels.dtype != np.uint8 or not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3)):
        raise FrameFormatError(f'{COMPRESSED_TYPE}: format {m.format!r} decodes to {pixels.dtype} of shape '
                               f'{pixels.shape}; recordable are 8-bit gray or 3-channel colour images')
    return Frame(m.stamp_ns, m.frame_id, pixels.shape[1], pixels.shape[0], 'mono8' if pixels.ndim == 2 else 'bgr8',
                 pixels)


def decode_frame(cdr: bytes | bytearray | memoryview, type_name: str) -> Frame:
    """Decode a serialized message of ``type_name`` (one of :data:`VIDEO_TYPES`)."""
    if type_name == IMAGE_TYPE:
        return decode_image(cdr)
    if type_name == COMPRESSED_TYPE:
        return decode_compressed(cdr)
    raise FrameFormatError(f'{type_name} is not a video message type (recordable: {", ".join(VIDEO_TYPES)})')


# --- file names --------------------------------------------------------------------------------

def video_name(topic: str, part: int = 0) -> str:
    """The table and file name of ``topic``'s video: ``/pilot1/camera/image`` -> ``pilot1_camera_image``
    (``pilot1_camera_image-1`` for part 1...)."""
    name = topic.strip('/').replace('/', '_')
    if not name:
        raise VideoError(f'topic {topic!r}: no name to give its video')
    return name if part == 0 else f'{name}-{part}'


def video_path(subject_file: str | Path, session_id: str, name: str) -> Path:
    """``<data_dir>/<subject>/<session_id>/<name>.mp4`` for the subject file ``<data_dir>/<subject>.h5``."""
    h5 = Path(subject_file)
    return h5.parent / h5.stem / session_id / f'{name}.mp4'


def next_video_path(subject_file: str | Path, session_id: str, topic: str) -> tuple[str, Path]:
    """The first ``(name, path)`` of ``topic``'s video parts whose file does not exist yet (part 0, 1, ...).

    For a recorder that restarts within a session, or starts a new part after a format change: a
    finished part is never overwritten.
    """
    part = 0
    while True:
        name = video_name(topic, part)
        path = video_path(subject_file, session_id, name)
        if not path.exists():
            return name, path
        part += 1


# --- the sink ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class VideoSummary:
    """A finished video; :meth:`attrs` is what ``SubjectFile.finish_video`` stores."""

    path: Path
    frames: int  # frames in the file (= rows yielded)
    dropped: int  # frames refused: encoder queue full (block=False)
    rejected: int  # frames refused: other size/encoding than the video's
    bytes: int
    sha256: str
    codec: str
    width: int
    height: int
    encoding: str
    fps: float  # the container's nominal rate (the rows are the truth)

    def attrs(self) -> dict[str, Any]:
        d = asdict(self)
        d['path'] = str(self.path)
        return d


def _estimate_fps(stamps: list[int]) -> float:
    """Frames per second from capture stamps (a rate the mp4v time base can express), DEFAULT_FPS if unknown."""
    if len(stamps) < 2 or stamps[-1] <= stamps[0]:
        return DEFAULT_FPS
    fps = (len(stamps) - 1) * 1e9 / (stamps[-1] - stamps[0])
    fps = min(1000.0, max(0.1, fps))
    # MPEG-4 part 2 needs a time base below 2**16: 0.01 fps resolution below 100 fps, whole fps above.
    return round(fps, 2) if fps < 100 else float(round(fps))


class VideoSink:
    """Frames of one topic into one MP4 at ``path``, rows out for the subject file's table.

    ``width``/``height``/``encoding``: the first frame's (:meth:`for_frame` takes them from it); every
    frame must match (else :class:`FrameFormatError`, frame not written). ``fps``: the container's nominal
    rate; None: estimated from the header stamps of the first :data:`ESTIMATE_FRAMES` frames (held back
    until then, so the file is created then). ``block``: when the encoder's queue is full, wait (True) or
    refuse the frame (False, default: the Terminal's writer thread must not stall; counted in ``dropped``).

    Call :meth:`write` per message, :meth:`take_rows` to collect rows of encoded frames (for
    ``SubjectFile.add_frames``), :meth:`close` at the end (then :meth:`take_rows` once more). One thread
    calls these; encoding runs on the writer's own thread.
    """

    def __init__(self, path: str | Path, width: int, height: int, encoding: str, *, fps: float | None = None,
                 topic: str = '', block: bool = False, queue_frames: int = QUEUE_FRAMES) -> None:
        self.path = Path(path)
        if encoding not in ENCODINGS:
            raise FrameFormatError(f'{self.path}: encoding {encoding!r} cannot be recorded (recordable: '
                                   f'{", ".join(ENCODINGS)})')
        if self.path.exists():
            raise VideoError(f'{self.path}: exists already (a recorded video is never overwritten); take another '
                             'name, e.g. next_video_path()')
        if fps is not None and not 0 < fps <= 1000:
            raise VideoError(f'{self.path}: fps must be in (0, 1000], got {fps}')
        self.width, self.height, self.encoding, self.topic = int(width), int(height), encoding, topic
        self.fps = fps
        self.block, self.queue_frames = block, queue_frames
        self.rejected = 0
        self._rows = RowBuffer()
        self._writer: Mp4Writer | None = None
        self._pending: list[tuple[np.ndarray, dict[str, int]]] = []
        self._stamps: list[int] = []
        self._next = 0  # index in the MP4 of the next frame queued
        self._summary: VideoSummary | None = None

    @classmethod
    def for_frame(cls, path: str | Path, frame: Frame, **kwargs: Any) -> VideoSink:
        """A sink for frames like ``frame`` (not written: pass it to :meth:`write`)."""
        return cls(path, frame.width, frame.height, frame.encoding, **kwargs)

    @property
    def color(self) -> bool:
        return ENCODINGS[self.encoding] == 3

    def attrs(self) -> dict[str, Any]:
        """What ``SubjectFile.add_video`` stores about this video when it starts."""
        return {'topic': self.topic, 'path': str(self.path), 'codec': CODEC, 'width': self.width,
                'height': self.height, 'encoding': self.encoding, 'fps': float(self.fps or 0.0)}

    def write(self, frame: Frame | bytes | bytearray | memoryview, recv_ns: int, type_name: str = IMAGE_TYPE) -> bool:
        """Queue one frame (a :class:`Frame`, or CDR bytes of ``type_name``); False if the queue refused it.

        Raises CdrError / FrameFormatError for a message that cannot be recorded here (nothing written),
        VideoError if the file cannot be written.
        """
        if self._summary is not None:
            raise VideoError(f'{self.path}: sink closed')
        if not isinstance(frame, Frame):
            frame = decode_frame(frame, type_name)
        if (frame.width, frame.height, frame.encoding) != (self.width, self.height, self.encoding):
            self.rejected += 1
            raise FrameFormatError(f'{self.path}: frame of {frame.width}x{frame.height} {frame.encoding}, but this '
                                   f'video is {self.width}x{self.height} {self.encoding}; a video keeps one format: '
                                   'close it and record the new format as the next part (next_video_path)')
        pixels = frame.pixels
        if frame.encoding == 'rgb8':
            pixels = cv2().cvtColor(pixels, cv2().COLOR_RGB2BGR)  # a new array: the encoder takes BGR
        row = {'frame': 0, 'stamp_ns': frame.stamp_ns, 'recv_ns': int(recv_ns)}
        if self._writer is None:
            self._pending.append((pixels, row))
            self._stamps.append(frame.stamp_ns)
            if self.fps is None and len(self._pending) < ESTIMATE_FRAMES:
                return True
            self._open()
            return True
        return self._queue(pixels, row)

    def take_rows(self) -> list[dict[str, int]]:
        """Rows ``{frame, stamp_ns, recv_ns}`` of the frames encoded since the last call, in file order."""
        return self._rows.take()

    @property
    def frames(self) -> int:
        """Frames queued for the file so far (encoded or waiting)."""
        return self._next + len(self._pending)

    @property
    def dropped(self) -> int:
        return self._writer.dropped if self._writer is not None else 0

    def close(self) -> VideoSummary:
        """Encode what is queued, finish the file and return its summary (safe to call twice).

        A sink that never got a frame creates no file (summary with frames 0, bytes 0, sha256 '').
        """
        if self._summary is not None:
            return self._summary
        if self._pending:
            self._open()
        frames = dropped = 0
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                frames, dropped = self._writer.frames, self._writer.dropped
        size, digest = 0, ''
        if self.path.exists():
            size, digest = self.path.stat().st_size, _sha256(self.path)
        self._summary = VideoSummary(self.path, frames, dropped, self.rejected, size, digest, CODEC, self.width,
                                     self.height, self.encoding, float(self.fps or 0.0))
        return self._summary

    def __enter__(self) -> VideoSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        if self.fps is None:
            self.fps = _estimate_fps(self._stamps)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = Mp4Writer(self.path, self.width, self.height, self.fps, color=self.color, sink=self._rows,
                                 queue_frames=self.queue_frames, thread_name='video-sink')
        pending, self._pending, self._stamps = self._pending, [], []
        for pixels, row in pending:
            # Held-back frames go in whatever the queue's state: they were accepted already.
            self._queue(pixels, row, block=True)

    def _queue(self, pixels: np.ndarray, row: dict[str, int], block: bool | None = None) -> bool:
        assert self._writer is not None
        row['frame'] = self._next
        if not self._writer.write(pixels, row, block=self.block if block is None else block):
            return False
        self._next += 1
        return True


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
