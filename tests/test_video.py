"""Camera frames to MP4: CDR decoding against rclpy's serialiser, the shared writer, VideoSink, the store's tables."""

from __future__ import annotations

import hashlib
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage, Image

from autopilot_core.video import Mp4Writer, RowBuffer, VideoError, cv2
from autopilot_terminal.storage import StoreError, SubjectFile, SubjectReader
from autopilot_terminal.video import (
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    CdrError,
    FrameFormatError,
    VideoSink,
    decode_compressed,
    decode_frame,
    decode_image,
    next_video_path,
    read_image,
    video_name,
    video_path,
)

SID = '6f1c2a8e-3b7d-4e42-9a0f-5d1e2c3b4a59'
TOPIC = '/rig1/camera/image'
S = 1_000_000_000


def level(i: int) -> int:
    """The grey level frame i carries in its left half (distinct for neighbouring frames, far from 0 and 255)."""
    return 20 + (37 * i) % 200


def picture(i: int, width: int, height: int, channels: int = 3) -> np.ndarray:
    """Frame i: left half level(i), right half its complement, the index drawn in as the camera's synthetic one."""
    img = np.empty((height, width, channels) if channels == 3 else (height, width), np.uint8)
    img[:, :width // 2] = level(i)
    img[:, width // 2:] = 255 - level(i)
    cv2().putText(img, f'{i}', (4, height - 6), cv2().FONT_HERSHEY_SIMPLEX, 0.5,
                  (0, 0, 0) if channels == 3 else 0, 1, cv2().LINE_AA)
    return img


def image_msg(pixels: np.ndarray, encoding: str, stamp_ns: int, *, frame_id: str = 'camera', pad: int = 0) -> Image:
    """An Image of ``pixels`` with ``pad`` bytes of padding after every row (step > width x channels)."""
    height, width = pixels.shape[:2]
    row = pixels.reshape(height, -1)
    padded = np.concatenate([row, np.full((height, pad), 0xEE, np.uint8)], axis=1) if pad else row
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=0, step=padded.shape[1],
                data=padded.tobytes())
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, S)
    return msg


def cdr(pixels: np.ndarray, encoding: str = 'bgr8', stamp_ns: int = 5 * S + 7, **kw: Any) -> bytes:
    return serialize_message(image_msg(pixels, encoding, stamp_ns, **kw))


def read_video(path: Path) -> list[np.ndarray]:
    cap = cv2().VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


# --- CDR decoding -------------------------------------------------------------------------------

def test_decode_bgr8_is_a_view_of_the_message() -> None:
    pixels = picture(3, 64, 48)
    data = cdr(pixels, stamp_ns=12 * S + 345, frame_id='cam0')
    frame = decode_image(data)
    assert (frame.stamp_ns, frame.frame_id, frame.width, frame.height, frame.encoding) == (12 * S + 345, 'cam0', 64,
                                                                                         48, 'bgr8')
    assert frame.pixels.shape == (48, 64, 3) and np.array_equal(frame.pixels, pixels)
    assert np.shares_memory(frame.pixels, np.frombuffer(data, np.uint8)), 'pixels were copied'
    assert decode_frame(data, IMAGE_TYPE).stamp_ns == frame.stamp_ns


@pytest.mark.parametrize('encoding, channels', [('mono8', 1), ('rgb8', 3), ('bgr8', 3)])
@pytest.mark.parametrize('width, pad', [(7, 0), (7, 1), (13, 3), (1, 2)])
def test_decode_odd_widths_and_row_padding(encoding: str, channels: int, width: int, pad: int) -> None:
    rng = np.random.default_rng(width * 10 + pad)
    shape = (5, width, channels) if channels == 3 else (5, width)
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    frame = decode_image(cdr(pixels, encoding, frame_id='x' * (width % 4), pad=pad))
    assert frame.encoding == encoding and frame.pixels.shape == shape
    assert np.array_equal(frame.pixels, pixels), 'row padding leaked into the pixels'


@settings(max_examples=150, deadline=None)
@given(frame_id=st.text(st.characters(blacklist_characters='\0', blacklist_categories=('Cs',)), max_size=9),
       encoding=st.text(st.characters(blacklist_characters='\0', blacklist_categories=('Cs',)), max_size=7),
       sec=st.integers(-2**31, 2**31 - 1), nanosec=st.integers(0, 999_999_999),
       width=st.integers(0, 9), height=st.integers(0, 4), pad=st.integers(0, 5), big=st.integers(0, 1),
       extra=st.integers(0, 6))
def test_read_image_fields_match_rclpy(frame_id: str, encoding: str, sec: int, nanosec: int, width: int,
                                       height: int, pad: int, big: int, extra: int) -> None:
    """Every string length (so every alignment of the fields after it) parses as rclpy wrote it."""
    step = width + pad
    data = bytes((7 * i) % 256 for i in range(step * height + extra))
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=big, step=step, data=data)
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    m = read_image(serialize_message(msg))
    assert (m.stamp_ns, m.frame_id, m.height, m.width, m.encoding, m.is_bigendian, m.step) == (
        sec * S + nanosec, frame_id, height, width, encoding, big, step)
    assert bytes(m.data) == data


@pytest.mark.parametrize('channels', [3, 1])
def test_decode_compressed_jpeg(channels: int) -> None:
    pixels = picture(5, 80, 60, channels)
    ok, jpeg = cv2().imencode('.jpg', pixels, [cv2().IMWRITE_JPEG_QUALITY, 95])
    assert ok
    enc = 'bgr8' if channels == 3 else 'mono8'
    msg = CompressedImage(format=f'{enc}; jpeg compressed {enc}', data=jpeg.tobytes())
    msg.header.frame_id = 'camera_optical'
    msg.header.stamp.sec, msg.header.stamp.nanosec = 3, 500
    frame = decode_frame(serialize_message(msg), COMPRESSED_TYPE)
    assert (frame.stamp_ns, frame.frame_id, frame.width, frame.height, frame.encoding) == (3 * S + 500,
                                                                                         'camera_optical', 80, 60, enc)
    assert frame.pixels.shape == pixels.shape
    assert np.abs(frame.pixels.astype(int) - pixels).mean() < 3


def test_bad_input_gives_clear_errors() -> None:
    good = cdr(picture(1, 8, 4))
    for cut in range(len(good) - 1):  # the last byte is data; shorter data is caught by the size check
        with pytest.raises(CdrError, match='truncated|shorter than|expected step'):
            decode_image(good[:cut])
    with pytest.raises(CdrError, match='encapsulation 0101'):
        decode_image(b'\x01\x01' + good[2:])
    with pytest.raises(FrameFormatError, match=r"encoding '16UC1' cannot be recorded as video \(recordable: bgr8"):
        decode_image(serialize_message(Image(height=2, width=2, encoding='16UC1', step=4, data=bytes(8))))
    with pytest.raises(CdrError, match='data has 5 bytes, expected step x height = 3 x 2 = 6'):
        decode_image(serialize_message(Image(height=2, width=3, encoding='mono8', step=3, data=bytes(5))))
    with pytest.raises(CdrError, match='step 2 is less than width x channels = 9'):
        decode_image(serialize_message(Image(height=1, width=3, encoding='bgr8', step=2, data=bytes(9))))
    with pytest.raises(FrameFormatError, match='cannot decode 4 bytes'):
        decode_compressed(serialize_message(CompressedImage(format='jpeg', data=b'\xff\xd8no')))
    with pytest.raises(FrameFormatError, match='not a video message type'):
        decode_frame(good, 'std_msgs/msg/String')
    # A string length pointing past the end, and a string without its NUL.
    with pytest.raises(CdrError, match='truncated at header.frame_id'):
        decode_image(good[:12] + (10**6).to_bytes(4, 'little') + good[16:])
    with pytest.raises(CdrError, match='not NUL-terminated'):
        decode_image(serialize_message(Image(encoding='mono8')).replace(b'mono8\0', b'mono8x'))


# --- the shared writer --------------------------------------------------------------------------

class _GatedSink(RowBuffer):
    """Rows held up until ``gate`` opens: makes the writer's queue fill deterministically."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def add(self, row: Any) -> None:
        self.entered.set()
        self.gate.wait(10)
        super().add(row)


def test_writer_refuses_frames_when_full_without_blocking(tmp_path: Path) -> None:
    sink = _GatedSink()
    w = Mp4Writer(tmp_path / 'a.mp4', 32, 16, 30.0, sink=sink, queue_frames=1)
    frame = np.zeros((16, 32, 3), np.uint8)
    assert w.write(frame, 0)
    assert sink.entered.wait(5)  # frame 0 is encoded, its row waits in the sink
    assert w.write(frame, 1, block=False)  # fills the queue of one
    assert not w.write(frame, 2, block=False) and w.dropped == 1
    sink.gate.set()
    w.close()
    assert (w.frames, sink.take()) == (2, [0, 1])
    assert len(read_video(tmp_path / 'a.mp4')) == 2
    with pytest.raises(VideoError, match='writer closed'):
        w.write(frame, 3)


def test_writer_errors(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match='must end in .mp4'):
        Mp4Writer(tmp_path / 'a.avi', 32, 16, 30.0)
    with pytest.raises(VideoError, match='does not exist'):
        Mp4Writer(tmp_path / 'no' / 'a.mp4', 32, 16, 30.0)

    class Broken(RowBuffer):
        def add(self, row: Any) -> None:
            raise OSError('disk full')

    w = Mp4Writer(tmp_path / 'b.mp4', 32, 16, 30.0, color=False, sink=Broken())
    with pytest.raises(VideoError, match=r'frame of shape \(16, 32, 3\) uint8, but this video takes \(16, 32\)'):
        w.write(np.zeros((16, 32, 3), np.uint8), 0)
    w.write(np.zeros((16, 32), np.uint8), 0)
    with pytest.raises(VideoError, match='writing failed: disk full'):
        w.close()


# --- VideoSink ----------------------------------------------------------------------------------

def test_sink_writes_mp4_and_rows(tmp_path: Path) -> None:
    path = video_path(tmp_path / 'mouse1.h5', SID, video_name(TOPIC))
    assert path == tmp_path / 'mouse1' / SID / 'rig1_camera_image.mp4'
    n, t0 = 45, 1_700_000_000 * S
    msgs = [cdr(picture(i, 160, 120), stamp_ns=t0 + i * S // 25, pad=4 if i % 2 else 0) for i in range(n)]
    sink = VideoSink.for_frame(path, decode_image(msgs[0]), topic=TOPIC, block=True)
    rows = []
    for i, m in enumerate(msgs):
        assert sink.write(m, t0 + i * S // 25 + 3_000_000)
        rows += sink.take_rows()
    summary = sink.close()
    rows += sink.take_rows()
    assert [r['frame'] for r in rows] == list(range(n))
    assert [r['stamp_ns'] for r in rows] == [t0 + i * S // 25 for i in range(n)]
    assert all(r['recv_ns'] - r['stamp_ns'] == 3_000_000 for r in rows)
    assert (summary.frames, summary.dropped, summary.rejected, summary.width, summary.height, summary.codec) == (
        n, 0, 0, 160, 120, 'mp4v')
    assert summary.fps == 25.0, 'fps estimated from the header stamps'
    assert summary.bytes == path.stat().st_size > 0
    assert summary.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    frames = read_video(path)
    assert len(frames) == n and frames[0].shape == (120, 160, 3)
    got = [int(round(f[:60, 10:70].mean())) for f in frames]
    assert all(abs(g - level(i)) <= 6 for i, g in enumerate(got)), list(zip(got, map(level, range(n)), strict=True))
    assert sink.close() is summary


def test_sink_mono8_rgb8_and_format_change(tmp_path: Path) -> None:
    gray = VideoSink(tmp_path / 'gray.mp4', 64, 48, 'mono8', fps=30.0, block=True)
    for i in range(5):
        gray.write(cdr(picture(i, 64, 48, 1), 'mono8'), i + 1)
    with pytest.raises(FrameFormatError, match='frame of 64x48 bgr8, but this video is 64x48 mono8'):
        gray.write(cdr(picture(9, 64, 48), 'bgr8'), 99)
    with pytest.raises(FrameFormatError, match='frame of 32x48 mono8'):
        gray.write(cdr(picture(9, 32, 48, 1), 'mono8'), 99)
    gray.write(cdr(picture(5, 64, 48, 1), 'mono8'), 6)  # goes on after the refused frames
    s = gray.close()
    assert (s.frames, s.rejected, s.encoding, s.fps) == (6, 2, 'mono8', 30.0)
    assert [r['frame'] for r in gray.take_rows()] == list(range(6))
    frames = read_video(tmp_path / 'gray.mp4')
    assert len(frames) == 6 and all(abs(int(f[:24, 5:25].mean()) - level(i)) <= 6 for i, f in enumerate(frames))

    red = np.zeros((48, 64, 3), np.uint8)
    red[..., 0] = 255  # red in RGB order
    with VideoSink(tmp_path / 'rgb.mp4', 64, 48, 'rgb8', fps=10.0, block=True) as rgb:
        for i in range(3):
            rgb.write(decode_image(cdr(red, 'rgb8')), i + 1)
    (frame,) = read_video(tmp_path / 'rgb.mp4')[:1]
    b, g, r = (frame[..., c].mean() for c in range(3))
    assert r > 200 and b < 50 and g < 50, 'rgb8 must be converted to the BGR the encoder takes'


def test_sink_paths_are_never_overwritten(tmp_path: Path) -> None:
    h5 = tmp_path / 'mouse1.h5'
    name, path = next_video_path(h5, SID, TOPIC)
    assert name == 'rig1_camera_image'
    with VideoSink(path, 32, 16, 'bgr8', fps=30.0, block=True) as sink:
        sink.write(cdr(picture(0, 32, 16)), 1)
    assert next_video_path(h5, SID, TOPIC) == ('rig1_camera_image-1', path.with_name('rig1_camera_image-1.mp4'))
    with pytest.raises(VideoError, match='exists already'):
        VideoSink(path, 32, 16, 'bgr8')
    with pytest.raises(FrameFormatError, match="encoding '16UC1' cannot be recorded"):
        VideoSink(tmp_path / 'x.mp4', 32, 16, '16UC1')
    empty = VideoSink(tmp_path / 'empty.mp4', 32, 16, 'bgr8').close()
    assert (empty.frames, empty.bytes, empty.sha256) == (0, 0, '') and not (tmp_path / 'empty.mp4').exists()


def test_sink_estimates_fps_from_few_frames(tmp_path: Path) -> None:
    with VideoSink(tmp_path / 'few.mp4', 32, 16, 'bgr8', block=True) as sink:
        for i in range(4):  # closed before ESTIMATE_FRAMES: estimated from these
            sink.write(cdr(picture(i, 32, 16), stamp_ns=S + i * S // 10), 1)
    assert sink.close().fps == 10.0 and sink.close().frames == 4
    assert len(read_video(tmp_path / 'few.mp4')) == 4


# --- the subject file ---------------------------------------------------------------------------

def test_store_round_trip(tmp_path: Path) -> None:
    data = tmp_path / 'data'
    data.mkdir()
    h5 = data / 'mouse1.h5'
    name, path = next_video_path(h5, SID, TOPIC)
    first = decode_image(cdr(picture(0, 64, 48)))
    sink = VideoSink.for_frame(path, first, topic=TOPIC, fps=30.0, block=True)
    with SubjectFile.create(h5, 'mouse1') as f:
        f.begin_session(SID, {'pilot': 'rig1', 'task': 'video'})
        assert f.add_video(SID, name, sink.attrs())
        assert not f.add_video(SID, name, sink.attrs()), 'adding it again (a restarted recorder) changes nothing'
        for i in range(20):
            sink.write(cdr(picture(i, 64, 48), stamp_ns=S + i * S // 30), 2 * S + i)
            if i % 7 == 6:
                f.add_frames(SID, name, sink.take_rows())
        summary = sink.close()
        assert f.add_frames(SID, name, sink.take_rows()) > 0
        f.finish_video(SID, name, summary.attrs())
        f.end_session(SID)
    moved = tmp_path / 'moved'
    shutil.move(data, moved)  # the stored path is relative: moving the data folder keeps it valid
    with SubjectReader(moved / 'mouse1.h5') as r:
        (info,) = r.videos(SID)
        assert (info.name, info.topic, info.relpath, info.codec, info.width, info.height, info.encoding) == (
            name, TOPIC, f'mouse1/{SID}/rig1_camera_image.mp4', 'mp4v', 64, 48, 'bgr8')
        assert (info.state, info.rows, info.frames, info.fps, info.dropped, info.rejected) == (
            'finished', 20, 20, 30.0, 0, 0)
        assert info.path == moved / 'mouse1' / SID / 'rig1_camera_image.mp4' == r.video_path(SID, name)
        assert info.sha256 == hashlib.sha256(info.path.read_bytes()).hexdigest() and info.bytes == summary.bytes
        cols = r.video_frames(SID, name)
        assert cols['frame'].tolist() == list(range(20)) and cols['frame'].dtype == np.uint32
        assert cols['stamp_ns'].tolist() == [S + i * S // 30 for i in range(20)]
        assert cols['recv_ns'].tolist() == [2 * S + i for i in range(20)]
        assert len(read_video(info.path)) == 20
        with pytest.raises(StoreError, match="no video 'other'"):
            r.video(SID, 'other')


def test_store_video_errors(tmp_path: Path) -> None:
    with SubjectFile.create(tmp_path / 'm.h5', 'm') as f:
        f.begin_session(SID, {})
        attrs = {'topic': TOPIC, 'path': str(tmp_path / 'm' / SID / 'v.mp4')}
        with pytest.raises(StoreError, match="attribute 'path' is required"):
            f.add_video(SID, 'v', {'topic': TOPIC})
        with pytest.raises(StoreError, match=r"unknown attributes \['colour'\]"):
            f.add_video(SID, 'v', {**attrs, 'colour': 'yes'})
        with pytest.raises(StoreError, match="attribute 'width' needs int"):
            f.add_video(SID, 'v', {**attrs, 'width': '64'})
        with pytest.raises(StoreError, match='fully qualified'):
            f.add_video(SID, 'v', {**attrs, 'topic': 'camera/image'})
        with pytest.raises(StoreError, match='invalid name'):
            f.add_video(SID, 'a/b', attrs)
        with pytest.raises(StoreError, match='no such video; call add_video first'):
            f.add_frames(SID, 'v', [{'frame': 0, 'stamp_ns': 1, 'recv_ns': 1}])
        assert f.add_video(SID, 'v', attrs)
        with pytest.raises(StoreError, match='exists already for topic'):
            f.add_video(SID, 'v', {**attrs, 'topic': '/other/camera/image'})
        with pytest.raises(StoreError, match='recv_ns must be > 0'):
            f.add_frames(SID, 'v', [{'frame': 0, 'stamp_ns': 1, 'recv_ns': 0}])
        with pytest.raises(StoreError, match=r"missing \['recv_ns'\]"):
            f.add_frames(SID, 'v', [{'frame': 0, 'stamp_ns': 1}])
        with pytest.raises(StoreError, match="attribute 'sha256' is required"):
            f.finish_video(SID, 'v', {'frames': 0, 'bytes': 0})
        with pytest.raises(StoreError, match='was not begun'):
            f.add_video('other', 'v', attrs)
        assert f.add_frames(SID, 'v', [{'frame': 0, 'stamp_ns': 1, 'recv_ns': 5}]) == 1
    with SubjectReader(tmp_path / 'm.h5') as r:
        (info,) = r.videos(SID)
        assert (info.state, info.rows, info.frames, info.relpath) == ('recording', 1, 0, f'm/{SID}/v.mp4')


def test_recover_trims_frame_rows_a_crash_left_unwritten(tmp_path: Path) -> None:
    import h5py
    from test_store import mark_open_by_dead_writer

    path = tmp_path / 'm.h5'
    with SubjectFile.create(path, 'm') as f:
        f.begin_session(SID, {})
        f.add_video(SID, 'v', {'topic': TOPIC, 'path': str(tmp_path / 'v.mp4')})
        f.add_frames(SID, 'v', [{'frame': i, 'stamp_ns': i, 'recv_ns': 10 + i} for i in range(3)])
    with h5py.File(path, 'r+') as raw:  # what a kill mid-batch leaves: rows allocated, never written (zeros)
        raw[f'sessions/{SID}/video/v'].resize((7,))
    mark_open_by_dead_writer(path)
    with SubjectReader(path) as r:
        assert r.video(SID, 'v').rows == 3, 'readers skip the zero rows'
    with SubjectFile.open(path, recover=True) as f:
        f.add_frames(SID, 'v', [{'frame': 3, 'stamp_ns': 3, 'recv_ns': 13}])
    with h5py.File(path, 'r') as raw:
        assert raw[f'sessions/{SID}/video/v'].fields('recv_ns')[()].tolist() == [10, 11, 12, 13]
