"""Camera node across processes (synthetic and video-file sources), its recording, its start-up errors,
and `autopilot hardware list`.

The camera runs as its installed executable; the test is another rclpy process on a private domain.
Frame order is checked with the synthetic source's machine-readable counter (first 8 bytes).
"""

from __future__ import annotations

import csv
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from autopilot_msgs.msg import CameraStatus
from sensor_msgs.msg import CompressedImage, Image

from autopilot_core import qos
from autopilot_core.executors import spin
from autopilot_core.transport import PROFILE_VARS, large_shm_profile, use_large_shm_profile
from autopilot_hardware.camera.recorder import Mp4Recorder, table_path
from autopilot_hardware.camera.sources import SyntheticSource, counter_of, cv2

ROOT = Path(__file__).resolve().parent.parent
CAMERA = ROOT / 'install' / 'autopilot_hardware' / 'lib' / 'autopilot_hardware' / 'camera'
_INSTALLED = shutil.which('autopilot')
AUTOPILOT = [_INSTALLED] if _INSTALLED else [sys.executable, '-m', 'autopilot_cli.main']


def camera(*params: str) -> list[str]:
    return [str(CAMERA), '--ros-args', *[a for p in params for a in ('-p', p)]]


def test_synthetic_source_counts_and_skips_missed_slots():
    src = SyntheticSource(64, 48, 50.0, 3)
    buf = np.zeros((48, 64, 3), np.uint8)
    frames = [src.read_into(buf) for _ in range(5)]
    # Indices grow by 1 + the slots missed before each frame (none unless this machine stalls 20 ms).
    assert all(b.index == a.index + 1 + b.missed for a, b in zip(frames, frames[1:], strict=False))
    assert counter_of(buf) == frames[-1].index
    assert all(b.monotonic_ns > a.monotonic_ns for a, b in zip(frames, frames[1:], strict=False))
    src._next_ns -= 3 * src.period_ns  # the next slot is ~1 period ahead: now 2 periods late
    f = src.read_into(buf)
    assert f.missed >= 2 and f.index == frames[-1].index + 1 + f.missed and counter_of(buf) == f.index


def test_large_shm_profile_respects_the_users_choice(tmp_path):
    profile = large_shm_profile()
    assert profile.is_file() and '<segment_size>16777216</segment_size>' in profile.read_text()
    env: dict[str, str] = {}
    assert '16 MiB' in use_large_shm_profile(env)
    assert env == {v: str(profile) for v in PROFILE_VARS}
    own = {'FASTRTPS_DEFAULT_PROFILES_FILE': str(tmp_path / 'mine.xml')}
    assert 'mine.xml' in use_large_shm_profile(own) and own == {'FASTRTPS_DEFAULT_PROFILES_FILE': str(tmp_path / 'mine.xml')}
    off = {'AUTOPILOT_LARGE_SHM': '0'}
    assert 'built-in' in use_large_shm_profile(off) and set(off) == {'AUTOPILOT_LARGE_SHM'}
    other = {'RMW_IMPLEMENTATION': 'rmw_cyclonedds_cpp'}
    assert 'Fast DDS only' in use_large_shm_profile(other) and set(other) == {'RMW_IMPLEMENTATION'}


def test_synthetic_camera_publishes_reports_and_records(procs, node, tmp_path):
    video = tmp_path / 'cam.mp4'
    images: list[tuple[int, int, str, int, int, int, str]] = []
    statuses: list[CameraStatus] = []

    def on_image(m: Image) -> None:
        counter = int.from_bytes(m.data[:8].tobytes(), 'little')
        stamp = m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec
        images.append((counter, stamp, m.encoding, m.width, m.height, len(m.data), m.header.frame_id))

    node.create_subscription(Image, '/rig1/camera/image', on_image, qos.STREAM)
    node.create_subscription(CameraStatus, '/rig1/camera/status', statuses.append, qos.STATUS)
    cam = procs(camera('backend:=synthetic', 'fps:=30.0', 'width:=320', 'height:=240', 'frame_id:=cam0',
                       f'record_path:={video}') + ['-r', '__ns:=/rig1'], name='camera')
    cam.wait_for_output('publishing synthetic 320x240 bgr8 at 30 fps')
    # Out of the box the camera process carries frames in a 16 MiB shared-memory segment (see transport.py).
    cam.wait_for_output('transport: Fast DDS with a 16 MiB shared-memory segment')
    assert spin(node, node.executor_, timeout_sec=20,
                until=lambda: len(images) >= 45 and any(s.frames >= 60 for s in statuses))
    counters = [i[0] for i in images]
    stamps = [i[1] for i in images]
    assert counters == sorted(set(counters)), 'frames out of order or repeated'
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))
    assert {i[2:] for i in images} == {('bgr8', 320, 240, 320 * 240 * 3, 'cam0')}
    # Loose: a 2-core CI machine runs the test, the camera and DDS at once.
    last = statuses[-1]
    assert 18 <= last.fps_achieved <= 40, last
    assert (last.source, last.width, last.height, last.fps_target) == ('synthetic', 320, 240, 30.0)
    assert last.recording_path == str(video)
    assert cam.stop() == 0
    out = cam.output()
    assert 'recorded' in out, out
    rows = list(csv.DictReader(table_path(video).open()))
    assert len(rows) >= 60
    idx = [int(r['frame']) for r in rows]
    mono = [int(r['capture_monotonic_ns']) for r in rows]
    assert idx == sorted(set(idx)) and all(b > a for a, b in zip(mono, mono[1:], strict=False))
    assert {int(r['ros_stamp_ns']) for r in rows} >= set(stamps), 'published stamps missing from the table'
    cap = cv2.VideoCapture(str(video))
    n_read = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (240, 320, 3)
        n_read += 1
    cap.release()
    assert n_read == len(rows)


def test_file_source_mono8_and_jpeg(procs, node, tmp_path):
    video = tmp_path / 'in.mp4'
    rec = Mp4Recorder(str(video), 160, 120, 30.0, color=True)
    src, buf = SyntheticSource(160, 120, 1000.0, 3), np.zeros((120, 160, 3), np.uint8)
    for _ in range(30):
        f = src.read_into(buf)
        rec.write(buf, f.index, f.monotonic_ns, f.wall_ns)
    rec.close()
    images: list[Image] = []
    jpegs: list[CompressedImage] = []
    node.create_subscription(Image, '/camera/image', images.append, qos.STREAM)
    node.create_subscription(CompressedImage, '/camera/image/compressed', jpegs.append, qos.STREAM)
    cam = procs(camera(f'source:={video}', 'encoding:=mono8', 'width:=80', 'height:=60', 'fps:=50.0',
                       'publish_compressed:=true', 'loop:=true'), name='camera')
    cam.wait_for_output('publishing file')
    assert spin(node, node.executor_, until=lambda: len(images) >= 5 and len(jpegs) >= 5, timeout_sec=20)
    img = images[-1]
    assert (img.encoding, img.width, img.height, img.step, len(img.data)) == ('mono8', 80, 60, 80, 80 * 60)
    decoded = cv2.imdecode(np.frombuffer(jpegs[-1].data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.shape == (60, 80) and 'jpeg' in jpegs[-1].format


@pytest.mark.parametrize('params, expected', [
    (('source:=/dev/video99',), "camera device '/dev/video99' not found"),
    (('source:=/nonexistent/clip.mp4',), "video file '/nonexistent/clip.mp4' does not exist"),
    (('backend:=synthetic', 'fps:=0.0'), "parameter 'fps'"),
    (('backend:=synthetic', 'encoding:=rgb8'), "parameter 'encoding'"),
    (('backend:=synthetic', 'record_path:=/nonexistent/x.mp4'), "directory '/nonexistent' does not exist"),
])
def test_startup_errors_exit_1_with_one_line(ros_env, params, expected):
    res = subprocess.run(camera(*params), env=ros_env, capture_output=True, text=True, timeout=30)
    assert res.returncode == 1, res
    fatal = [line for line in (res.stdout + res.stderr).splitlines() if line.startswith('[FATAL]')]
    assert len(fatal) == 1 and expected in fatal[0], res.stdout + res.stderr


def test_unreadable_file_is_named(ros_env, tmp_path):
    bad = tmp_path / 'broken.mp4'
    bad.write_bytes(b'not a video')
    res = subprocess.run(camera(f'source:={bad}'), env=ros_env, capture_output=True, text=True, timeout=30)
    assert res.returncode == 1
    assert f'cannot open file {bad}' in res.stderr and res.stderr.count('\n') == 1, res.stderr


def test_hardware_list_shows_camera_and_survives_broken_plugins():
    res = subprocess.run([*AUTOPILOT, 'hardware', 'list'], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert 'camera [camera]  backends: opencv, synthetic' in out
    assert 'executable: ros2 run autopilot_hardware camera' in out
    assert 'fps                 double   30.0      Hz    [0.1, 1000.0]' in out
    assert 'Traceback' not in out + res.stderr
    # Every registered entry is either a device or one BROKEN line (gpio/sound may be work in progress).
    for line in out.splitlines():
        if 'BROKEN' in line:
            assert line.split(':')[0] in ('gpio', 'sound'), line
    show = subprocess.run([*AUTOPILOT, 'hardware', 'show', 'camera'], capture_output=True, text=True, timeout=30)
    assert show.returncode == 0 and 'Target frame rate' in show.stdout
    missing = subprocess.run([*AUTOPILOT, 'hardware', 'show', 'nope'], capture_output=True, text=True, timeout=30)
    assert missing.returncode == 1 and "no device plugin 'nope'" in missing.stderr


def test_template_device_is_a_working_unregistered_node(procs, node):
    from std_msgs.msg import Float64

    from autopilot_hardware.plugins import DeviceInfo, load_plugins
    spec = importlib.util.spec_from_file_location('template_device', ROOT / 'docs' / 'examples' / 'template_device.py')
    assert spec is not None and spec.loader is not None
    template = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(template)
    DEVICE = template.DEVICE

    assert isinstance(DEVICE, DeviceInfo) and 'template' not in {p.name for p in load_plugins()}
    values: list[Float64] = []
    node.create_subscription(Float64, '/template/value', values.append, qos.STREAM)
    procs([sys.executable, str(ROOT / 'docs' / 'examples' / 'template_device.py'), '--ros-args', '-p', 'rate_hz:=50.0'],
          name='template')
    assert spin(node, node.executor_, until=lambda: len(values) >= 3, timeout_sec=20)
