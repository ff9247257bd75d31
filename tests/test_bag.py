"""`autopilot bag info|play|export` on a real subject file holding the CDR of real messages.

The file is written with SubjectFile as the recorder would (interface text, RIHS01 hash from the installed
type descriptions, QoS JSON); the export is read back with mcap-ros2-support and rosbags, play is received
by raw subscriptions of a node in this process on the test's own ROS_DOMAIN_ID.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import time
from pathlib import Path
from typing import Any

import h5py
import pytest
import yaml
from autopilot_msgs.msg import GpioEvent
from conftest import AUTOPILOT, cli, cli_many, error_line, ok
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import String

from autopilot_terminal import bag, qos_record
from autopilot_terminal.storage import BagMessage, SubjectFile, TopicSpec

T0 = 1_700_000_000 * 10**9  # Nov 14 2023 22:13:20 UTC
SEC = 10**9
QOS_EVENTS = {'reliability': 'reliable', 'durability': 'volatile', 'history': 'keep_all'}
QOS_STATUS = {'reliability': 'reliable', 'durability': 'transient_local', 'history': 'keep_last', 'depth': 5}
QOS_STREAM = {'reliability': 'best_effort', 'durability': 'volatile', 'history': 'keep_last', 'depth': 2}
#: A type that is installed nowhere: play skips it, export still decodes it from the stored definition.
ALIEN = 'alien_msgs/msg/Probe'


def _spec(name: str, topic: str, qos: dict[str, Any]) -> TopicSpec:
    """What the recorder stores for a topic: full interface text and the installed RIHS01 hash."""
    from autopilot_runtime_py.messages import interface_text

    type_hash = bag.installed_type_hash(name)
    assert type_hash and type_hash.startswith('RIHS01_')
    return TopicSpec(topic, name, interface_text(name), type_hash, json.dumps(qos))


def _gpio(i: int) -> GpioEvent:
    msg = GpioEvent(device=f'poke_{i}', pin=17 + i, level=bool(i % 2), tick=1000 * i, tick_us=1000 * i, backend='sim')
    msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = 100 + i, 7 * i, 'rig1'
    return msg


def _image() -> Image:
    img = Image(height=2, width=3, encoding='mono8', is_bigendian=0, step=3, data=bytes(range(6)))
    img.header.frame_id = 'camera'
    return img


def _probe(x: int) -> bytes:
    return b'\x00\x01\x00\x00' + struct.pack('<i', x)  # CDR little-endian header, then one int32


def _cdr(value: Any) -> bytes:
    return value if isinstance(value, bytes) else serialize_message(value)


def _session(*items: tuple[float, str, Any]) -> list[tuple[float, str, Any, bytes]]:
    """(recv offset in s, topic, message, its CDR). Serialised once: rclpy does not zero CDR padding, so
    serialising a message again can give other bytes (seen with sensor_msgs/Image)."""
    return [(offset, topic, value, _cdr(value)) for offset, topic, value in items]


#: The last session (S2): what play and export use by default.
S2 = _session(
    (0.0, '/chat', String(data='hello 0')), (0.5, '/rig1/gpio/events', _gpio(0)), (1.0, '/chat', String(data='hello 1')),
    (1.2, '/alien', _probe(-5)), (1.5, '/camera/image', _image()), (2.0, '/chat', String(data='ünïcödé 2')),
    (2.5, '/rig1/gpio/events', _gpio(1)), (3.0, '/chat', String(data='hello 3')),
)
S1 = _session((0.0, '/chat', String(data='old 0')), (1.0, '/chat', String(data='old 1')))
S1_T0 = T0 - 3600 * SEC


@pytest.fixture(scope='module')
def subject(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp('bag') / 'mouse1.h5'
    with SubjectFile.create(path, 'mouse1', {'species': 'Mus musculus'}) as s:
        s.begin_session('S1', {'pilot': 'rig1', 'task': 'free_water', 'started_ns': T0 - 3600 * SEC,
                               'topics': [_spec('std_msgs/msg/String', '/chat', QOS_EVENTS)]})
        s.append_messages('S1', '/chat', [(S1_T0 + round(offset * SEC), cdr) for offset, _, _, cdr in S1])
        s.end_session('S1', ended_ns=T0 - 3000 * SEC)
        s.begin_session('S2', {'pilot': 'rig1', 'task': '2afc', 'started_ns': T0 - SEC, 'topics': [
            _spec('std_msgs/msg/String', '/chat', QOS_EVENTS),
            _spec('autopilot_msgs/msg/GpioEvent', '/rig1/gpio/events', QOS_STATUS),
            _spec('sensor_msgs/msg/Image', '/camera/image', QOS_STREAM),
            TopicSpec('/alien', ALIEN, '# a probe\nint32 x\n', 'RIHS01_' + '0' * 64, json.dumps(QOS_EVENTS))],
            'provenance': {'ros': {'distro': 'jazzy', 'rmw': 'rmw_fastrtps_cpp'}}})
        for offset, topic, _, cdr in S2:
            s.append_messages('S2', topic, [(T0 + round(offset * SEC), cdr)])
        s.end_session('S2', ended_ns=T0 + 4 * SEC)
    return path


# --- plain logic --------------------------------------------------------------------------------

def test_qos_json_is_read_leniently() -> None:
    assert qos_record.parse(json.dumps(QOS_EVENTS)) == qos_record.Qos(history='keep_all', depth=0)
    assert qos_record.parse('{}') == qos_record.Qos()  # rclpy's defaults: keep-last 10, reliable, volatile
    q = qos_record.parse(json.dumps([{'history': 1, 'depth': 3, 'reliability': 'BEST_EFFORT',
                                   'durability': 'QoSDurabilityPolicy.TRANSIENT_LOCAL',
                                   'deadline': {'sec': 1, 'nsec': 5}, 'lifespan_ns': 7}]))
    assert q == qos_record.Qos(history='keep_last', depth=3, reliability='best_effort', durability='transient_local',
                        deadline_ns=1_000_000_005, lifespan_ns=7)
    assert q.rosbag2()['reliability'] == 2 and q.rosbag2()['deadline'] == {'sec': 1, 'nsec': 5}
    infinite = 2**63 - 1  # what rclpy reports for an unbounded duration; rosbag2 spells it {9223372036, 854775807}
    recorded = {'history': 'keep_last', 'depth': 1, 'reliability': 'reliable', 'durability': 'transient_local',
                'deadline_ns': infinite, 'lifespan_ns': infinite, 'liveliness': 'automatic',
                'liveliness_lease_ns': infinite}  # the Terminal's recorder (qos_record.describe)
    q = qos_record.parse(json.dumps(recorded))
    assert (q.depth, q.durability, q.liveliness, q.liveliness_lease_duration_ns) == (
        1, 'transient_local', 'automatic', infinite)
    assert q.rosbag2()['lifespan'] == {'sec': 9223372036, 'nsec': 854775807} and q.rosbag2()['liveliness'] == 1
    for bad, message in (('{"reliability": "sometimes"}', 'reliability .* is not one of'), ('[1]', 'JSON object'),
                         ('{"depth": -1}', 'depth'), ('nope', 'not JSON')):
        with pytest.raises(qos_record.QosError, match=message):
            qos_record.parse(bad, '/x')


def test_recorded_qos_round_trips_through_the_one_module() -> None:
    from autopilot_core import qos

    for name, profile in qos.PROFILES.items():
        back = qos_record.parse(qos_record.describe(profile), name).to_rclpy()
        assert (back.history, back.reliability, back.durability) == (
            profile.history, profile.reliability, profile.durability), name
        assert back.depth == profile.depth or profile.history.name == 'KEEP_ALL', name


def test_schema_is_flattened_for_mcap() -> None:
    text = ('# top\nstd_msgs/Header header  # when\n\tbuiltin_interfaces/Time stamp\n\t\tint32 sec\n\t\tuint32 nanosec\n'
            '\tstring frame_id\nbuiltin_interfaces/Time t2\n\tint32 sec\n\tuint32 nanosec\nstd_msgs/Empty e\n'
            'string s "# not a comment"\nEmbedded[] local\n\tint8 X=1\n\tint8 y\n')
    assert bag.mcap_schema('pkg/msg/Top', text) == (
        '# top\nstd_msgs/Header header  # when\nbuiltin_interfaces/Time t2\nstd_msgs/Empty e\n'
        'string s "# not a comment"\nEmbedded[] local\n'
        + '=' * 80 + '\nMSG: std_msgs/Header\nbuiltin_interfaces/Time stamp\nstring frame_id\n'
        + '=' * 80 + '\nMSG: builtin_interfaces/Time\nint32 sec\nuint32 nanosec\n'
        + '=' * 80 + '\nMSG: std_msgs/Empty\n'
        + '=' * 80 + '\nMSG: pkg/Embedded\nint8 X=1\nint8 y\n')
    flat = bag.mcap_schema('pkg/msg/Top', text)
    assert bag.mcap_schema('pkg/msg/Top', flat) == flat  # already flat: unchanged


def test_pace_keeps_the_recorded_rhythm_scaled() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(round(s, 6))
        now[0] += s

    msgs = [BagMessage(T0 + ns, '/x', b'') for ns in (0, SEC, 3 * SEC, 3 * SEC)]
    assert list(bag.pace(msgs, 10.0, clock=lambda: now[0], sleep=sleep)) == msgs
    assert slept == [0.1, 0.2]  # 1 s and 2 s gaps at rate 10; equal times: no sleep
    with pytest.raises(bag.BagError, match='rate'):
        list(bag.pace(msgs, 0))
    assert bag.parse_remaps(['/a:=/b', 'c:=d']) == {'/a': '/b', 'c': 'd'}
    with pytest.raises(bag.BagError, match='old_topic:=new_topic'):
        bag.parse_remaps(['/a=/b'])


# --- info -----------------------------------------------------------------------------------------

def test_info_prints_ros2_bag_info_layout_per_session(subject: Path) -> None:
    env = dict(os.environ, TZ='UTC')
    with SubjectFile.open(subject) as f:  # gaps are told (issue 18 item 5): what the live stream skipped
        f.set_event_gaps('S2', missing=3, recovered=5)
    out = ok(cli(env, 'bag', 'info', str(subject)))
    lines = out.splitlines()
    assert lines[0] == '' and lines[1] == f'Files:             {subject}'
    assert lines[2].startswith('Bag size:          ') and lines[2].endswith('KiB')
    assert lines[3:] == [
        'Storage id:        hdf5 (autopilot-ros subject)',
        'Subject:           mouse1',
        'Sessions:          2',
        '',
        'Session:           S1 | Pilot: rig1 | Task: free_water | State: ended',
        'ROS Distro:        unknown',
        'Duration:          1.000s',
        'Start:             Nov 14 2023 21:13:20.000 (1699996400.000)',
        'End:               Nov 14 2023 21:13:21.000 (1699996401.000)',
        'Messages:          2',
        'Topic information: Topic: /chat | Type: std_msgs/msg/String | Count: 2 | Serialization Format: cdr',
        'Gaps:              GPIO events missing: 0 | recovered from the pilot: 0 | conflicts kept apart: 0',
        '',
        'Session:           S2 | Pilot: rig1 | Task: 2afc | State: ended',
        'ROS Distro:        jazzy',
        'Duration:          3.000s',
        'Start:             Nov 14 2023 22:13:20.000 (1700000000.000)',
        'End:               Nov 14 2023 22:13:23.000 (1700000003.000)',
        'Messages:          8',
        'Topic information: Topic: /chat | Type: std_msgs/msg/String | Count: 4 | Serialization Format: cdr',
        '                   Topic: /rig1/gpio/events | Type: autopilot_msgs/msg/GpioEvent | Count: 2 | '
        'Serialization Format: cdr',
        '                   Topic: /camera/image | Type: sensor_msgs/msg/Image | Count: 1 | Serialization Format: cdr',
        f'                   Topic: /alien | Type: {ALIEN} | Count: 1 | Serialization Format: cdr',
        'Gaps:              GPIO events missing: 3 | recovered from the pilot: 5 | conflicts kept apart: 0',
    ]
    one = ok(cli(env, 'bag', 'info', str(subject), '--session', 'S1')).splitlines()
    assert 'Sessions:          1' in one and not any('S2' in line for line in one)
    data = bag.info(subject, 'S2')
    assert [t['count'] for t in data['sessions'][0]['topics']] == [4, 2, 1, 1]


# --- export ---------------------------------------------------------------------------------------

def _expected(session: list[tuple[float, str, Any, bytes]], topics: set[str] | None = None,
              t0: int = T0) -> list[tuple[str, int, bytes]]:
    return [(topic, t0 + round(offset * SEC), cdr) for offset, topic, _, cdr in session
            if topics is None or topic in topics]


def test_export_mcap_reads_back_with_mcap_ros2_and_rosbags(subject: Path, tmp_path: Path) -> None:
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    from rosbags.highlevel import AnyReader
    from rosbags.interfaces import QosDurability, QosHistory, QosReliability

    out = tmp_path / 'S2.mcap'
    printed = ok(cli(None, 'bag', 'export', str(subject), '--to', 'mcap', '-o', str(out)))
    assert 'Exported session S2: 8 messages' in printed and str(out) in printed
    expected = _expected(S2)

    with open(out, 'rb') as fh:  # the stored bytes, as they were, with the receive times
        reader = make_reader(fh)
        summary = reader.get_summary()
        assert reader.get_header().profile == 'ros2'
        raw = [(ch.topic, m.log_time, m.data) for _, ch, m in reader.iter_messages(log_time_order=True)]
        assert raw == expected
        assert all(m.publish_time == m.log_time for _, _, m in reader.iter_messages())
        assert {s.encoding for s in summary.schemas.values()} == {'ros2msg'}
        channels = {c.topic: c for c in summary.channels.values()}
        assert {c.message_encoding for c in channels.values()} == {'cdr'}
        qos = yaml.safe_load(channels['/camera/image'].metadata['offered_qos_profiles'])
        assert qos[0]['reliability'] == 2 and qos[0]['history'] == 1 and qos[0]['depth'] == 2  # best effort
        assert channels['/chat'].metadata['topic_type_hash'] == bag.installed_type_hash('std_msgs/msg/String')
        meta = {m.name: m.metadata for m in reader.iter_metadata()}
        rosbag2 = yaml.safe_load(meta['rosbag2']['serialized_metadata'])
        assert rosbag2['message_count'] == 8 and rosbag2['version'] == 8 and rosbag2['ros_distro'] == 'jazzy'
        assert meta['autopilot_session']['session_id'] == 'S2' and 'provenance.ros' in meta['autopilot_session']

    # mcap-ros2-support decodes with the exported schemas only (its read_ros2_messages is deprecated for this).
    with open(out, 'rb') as fh:
        decoded = [(c.topic, m.log_time, msg) for _, c, m, msg in
                   make_reader(fh, decoder_factories=[DecoderFactory()]).iter_decoded_messages(log_time_order=True)]
    assert [(t, ns) for t, ns, _ in decoded] == [(t, ns) for t, ns, _ in expected]
    for (_, _, m), (_, topic, value, _) in zip(decoded, S2, strict=True):
        if topic == '/alien':
            assert m.x == -5
        elif topic == '/camera/image':
            assert (m.height, m.width, m.encoding, bytes(m.data), m.header.frame_id) == (
                2, 3, 'mono8', bytes(range(6)), 'camera')
        elif topic == '/chat':
            assert m.data == value.data
        else:
            fields = ('device', 'pin', 'level', 'tick', 'tick_us', 'backend')
            assert [getattr(m, f) for f in fields] == [getattr(value, f) for f in fields]
            assert (m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id) == (
                value.header.stamp.sec, value.header.stamp.nanosec, value.header.frame_id)

    with AnyReader([out]) as ar:  # rosbags: registers the types from the schemas, reads QoS
        conns = {c.topic: c for c in ar.connections}
        assert conns['/rig1/gpio/events'].msgtype == 'autopilot_msgs/msg/GpioEvent'
        gpio_qos = conns['/rig1/gpio/events'].ext.offered_qos_profiles[0]
        assert (gpio_qos.reliability, gpio_qos.durability, gpio_qos.history, gpio_qos.depth) == (
            QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL, QosHistory.KEEP_LAST, 5)
        got = [(c.topic, ts, ar.deserialize(data, c.msgtype)) for c, ts, data in ar.messages()]
    assert [(t, ts) for t, ts, _ in got] == [(t, ns) for t, ns, _ in expected]
    gpio = [m for t, _, m in got if t == '/rig1/gpio/events']
    assert [(m.device, m.pin, m.header.frame_id) for m in gpio] == [('poke_0', 17, 'rig1'), ('poke_1', 18, 'rig1')]
    assert [m.data for t, _, m in got if t == '/chat'] == ['hello 0', 'hello 1', 'ünïcödé 2', 'hello 3']


def test_export_selects_session_and_topics_and_never_overwrites_by_accident(subject: Path, tmp_path: Path) -> None:
    from mcap.reader import make_reader

    first, second = cli_many(
        None, ('bag', 'export', str(subject), '--session', 'S1', '-o', str(tmp_path)),
        ('bag', 'export', str(subject), '--topics', '/rig1/gpio/events', '/camera/image', '-o',
         str(tmp_path / 'sub.mcap'), '--compression', 'lz4'))
    ok(first)
    ok(second)
    with open(tmp_path / 'mouse1_S1.mcap', 'rb') as fh:  # default name, in the directory given
        got = [(c.topic, m.log_time, m.data) for _, c, m in make_reader(fh).iter_messages(log_time_order=True)]
    assert got == _expected(S1, t0=S1_T0)
    with open(tmp_path / 'sub.mcap', 'rb') as fh:
        got = [(c.topic, m.log_time, m.data) for _, c, m in make_reader(fh).iter_messages(log_time_order=True)]
    assert got == _expected(S2, {'/rig1/gpio/events', '/camera/image'})
    before = (tmp_path / 'sub.mcap').read_bytes()
    exists, subject_itself, forced = cli_many(
        None, ('bag', 'export', str(subject), '-o', str(tmp_path / 'sub.mcap')),
        ('bag', 'export', str(subject), '-o', str(subject), '--force'),
        ('bag', 'export', str(subject), '-o', str(tmp_path / 'mouse1_S1.mcap'), '--force'))
    assert 'exists; pass --force' in error_line(exists)
    assert (tmp_path / 'sub.mcap').read_bytes() == before
    assert 'is the subject file itself' in error_line(subject_itself)
    ok(forced)
    with open(tmp_path / 'mouse1_S1.mcap', 'rb') as fh:
        assert len(list(make_reader(fh).iter_messages())) == 8
    assert not list(tmp_path.glob('.*partial'))


# --- play -----------------------------------------------------------------------------------------

def test_play_republishes_the_bytes_in_order_with_recorded_qos_and_scaled_timing(
        subject: Path, node: Any, procs: Any) -> None:
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from autopilot_core.executors import spin

    received: list[tuple[str, float, bytes]] = []
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    best_effort = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
    for cls, topic, qos in ((String, '/chat2', reliable), (GpioEvent, '/rig1/gpio/events', reliable),
                            (Image, '/camera/image', best_effort)):
        node.create_subscription(cls, topic, lambda data, t=topic: received.append((t, time.monotonic(), data)),
                                 qos, raw=True)
    player = procs([*AUTOPILOT, 'bag', 'play', str(subject), '--rate', '10', '--remap', '/chat:=/chat2',
                    '-w', '1', '--max-wait-time-secs', '25', '--delay', '0.5'], name='play')
    offered: dict[str, Any] = {}

    def done() -> bool:
        for topic in ('/rig1/gpio/events', '/camera/image'):
            infos = node.get_publishers_info_by_topic(topic)
            if infos and topic not in offered:
                offered[topic] = infos[0].qos_profile
        return player.popen.poll() is not None and len(received) >= 7

    assert spin(node, node.executor_, until=done, timeout_sec=40), player.output()
    assert player.wait() == 0, player.output()
    log = player.output()
    assert f'skipping /alien: its type {ALIEN} cannot be imported' in log and 'source the workspace' in log
    assert 'Published 7 messages' in log

    # The stored bytes, in recorded order. Fast DDS pads a raw (pre-serialised) sample to a multiple of 4
    # bytes, which CDR readers ignore; a message object published normally arrives unpadded, so a real
    # recording stores the unpadded form. rosbag2's play publishes serialised data the same way.
    expected = [('/chat2' if t == '/chat' else t, cdr + b'\0' * (-len(cdr) % 4)) for _, t, _, cdr in S2 if t != '/alien']
    assert [(t, data) for t, _, data in received] == expected
    assert deserialize_message(received[-1][2], String).data == 'hello 3'
    times = [at for _, at, _ in received]
    span = times[-1] - times[0]
    assert 0.15 < span < 2.0, span  # 3 s recorded at rate 10: ~0.3 s
    recorded = [offset for offset, t, _, _ in S2 if t != '/alien']
    for i in range(1, len(times)):  # every gap shrank about tenfold (generous: scheduling, discovery jitter)
        assert times[i] - times[i - 1] < (recorded[i] - recorded[i - 1]) / 10 + 0.4
    assert offered['/camera/image'].reliability == ReliabilityPolicy.BEST_EFFORT
    assert offered['/rig1/gpio/events'].durability == DurabilityPolicy.TRANSIENT_LOCAL


def test_play_stops_cleanly_on_ctrl_c(subject: Path, procs: Any) -> None:
    player = procs([*AUTOPILOT, 'bag', 'play', str(subject), '--rate', '0.01'], name='play-slow')
    player.wait_for_output('Playing session S2')
    time.sleep(0.3)
    player.signal(signal.SIGINT)
    assert player.wait(10) == 130, player.output()
    assert 'Traceback' not in player.output()


# --- bad input ------------------------------------------------------------------------------------

def test_bad_input_is_one_clear_line(subject: Path, tmp_path: Path) -> None:
    junk = tmp_path / 'junk.h5'
    junk.write_bytes(b'not hdf5 at all' * 100)
    plain = tmp_path / 'plain.h5'
    with h5py.File(plain, 'w', libver=('v110', 'v110')) as f:
        f['x'] = [1, 2, 3]
    empty = tmp_path / 'empty.h5'
    SubjectFile.create(empty, 'mouse2').close()
    s = str(subject)
    cases = {
        ('bag', 'info', str(tmp_path / 'missing.h5')): 'missing.h5: no such file',
        ('bag', 'info', str(tmp_path)): 'is a directory',
        ('bag', 'info', str(junk)): 'not an HDF5 file',
        ('bag', 'export', str(plain)): 'not an autopilot-ros subject file',
        ('bag', 'info', s, '--session', 'S9'): "no session 'S9'; sessions in this file: S1, S2",
        ('bag', 'export', s, '--session', 'S9', '-o', str(tmp_path / 'x.mcap')): "no session 'S9'",
        ('bag', 'export', s, '--topics', '/nope', '-o', str(tmp_path / 'x.mcap')):
            "did not record '/nope'; recorded topics: /alien, /camera/image, /chat, /rig1/gpio/events",
        ('bag', 'play', s, '--topics', '/nope'): "did not record '/nope'",
        ('bag', 'play', s, '--remap', '/chat=/x'): "invalid remap '/chat=/x'",
        ('bag', 'play', s, '--topics', '/alien'): 'nothing to play',
        ('bag', 'play', str(empty)): 'has no sessions yet',
        ('bag', 'export', s, '-o', str(tmp_path / 'no' / 'dir.mcap')): 'does not exist',
    }
    results = cli_many(None, *cases)
    for args, result in zip(cases, results, strict=True):
        line = error_line(result) if args[-1] != '/alien' else _last_line(result)
        assert cases[args] in line, (args, line)
    assert not (tmp_path / 'x.mcap').exists()

    # A writer that died while changing the file's structure leaves it marked open: the fix is named.
    locked = tmp_path / 'locked.h5'
    locked.write_bytes(subject.read_bytes())
    with h5py.File(locked, 'r+', libver=('v110', 'v110'), locking=False):
        line = error_line(cli(None, 'bag', 'info', str(locked)))
    assert 'marked open for writing' in line and 'h5clear -s' in line


def _last_line(result: Any) -> str:
    """play of an unimportable type: a warning per skipped topic, then the error."""
    assert result.returncode == 1 and 'Traceback' not in result.stderr, result.stderr
    assert 'WARNING: skipping /alien' in result.stderr
    return result.stderr.strip().splitlines()[-1]
