"""The Terminal's recorder (the one thread that writes subject files) and its subject bookkeeping, without ROS.

Driven as the terminal node drives it: trials with an ack callback, raw CDR messages of registered topics,
session begin/end, provenance, and calls run on the writer thread. What it wrote is read back with
:class:`SubjectReader` once the recorder is closed (a process that writes a file cannot also read it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from autopilot_msgs.msg import GpioEvent, PilotStatus, SoundOnset
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image

from autopilot_runtime_py.messages import interface_text
from autopilot_terminal.recorder import Recorder
from autopilot_terminal.routing import DECODERS, EVENT_TOPICS, SessionTable
from autopilot_terminal.storage import (
    TYPE_BOOL,
    TYPE_FLOAT64,
    TYPE_STRING,
    StoreError,
    SubjectFile,
    SubjectReader,
    TopicSpec,
)
from autopilot_terminal.subjects import (
    ProtocolFileError,
    check_step,
    read_protocol,
    state_from_history,
)

SID = '20250101T120000-rig1-0001'
FIELDS = [('correct', TYPE_BOOL, ''), ('rt_ms', TYPE_FLOAT64, 'ms'), ('response', TYPE_STRING, '')]
META = {'pilot': 'rig1', 'task': '2afc', 'protocol': 'demo', 'step': 0, 'step_name': 'easy',
        'started_ns': 1_700_000_000_000_000_000}
TIMEOUT = 10.0


def trial(n: int) -> dict[str, Any]:
    return {'trial_number': n, 'stamp_ns': 1_700_000_000_000_000_000 + n, 'recv_ns': 1_700_000_000_500_000_000 + n,
            'step': 0, 'step_name': 'easy', 'correct': n % 3 != 0, 'rt_ms': 100.0 + n / 8,
            'response': 'left' if n % 2 else 'right'}


def spec(topic: str, type_name: str) -> TopicSpec:
    return TopicSpec(topic, type_name, interface_text(type_name), 'RIHS01_' + '0' * 64,
                     json.dumps({'reliability': 'reliable', 'durability': 'volatile'}))


class Log:
    """The recorder's log callback: (level, text) lines, thread-safe."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, level: str, text: str) -> None:
        with self._lock:
            self.lines.append((level, text))

    def text(self, level: str) -> str:
        with self._lock:
            return '\n'.join(t for lv, t in self.lines if lv == level)


class Acks:
    """An ack callback that also records, on the writer thread, which trials the file held at that moment."""

    def __init__(self, rec: Recorder, subject: str, session_id: str = SID) -> None:
        self.rec, self.subject, self.sid = rec, subject, session_id
        self.calls: list[tuple[list[int], list[int]]] = []  # (acked numbers, trial numbers in the file then)
        self.event = threading.Event()

    def __call__(self, numbers: list[int]) -> None:
        ds = self.rec.open_file(self.subject).file[f'sessions/{self.sid}/trials']
        ds.refresh()
        self.calls.append((list(numbers), sorted(int(n) for n in ds.fields('trial_number')[()])))
        self.event.set()

    @property
    def acked(self) -> list[list[int]]:
        return [c[0] for c in self.calls]


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.fixture
def rec(tmp_path: Path, log: Log):
    r = Recorder(tmp_path / 'data', log=log)
    yield r
    r.close()


def wait_for(condition, timeout: float = TIMEOUT, what: str = '') -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        time.sleep(0.01)


@pytest.mark.skipif(sys.platform != 'linux', reason='per-thread nice values are Linux only')
def test_the_writer_thread_runs_at_a_lower_priority_and_the_callers_do_not(tmp_path: Path, log: Log) -> None:
    import os
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    r = Recorder(tmp_path / 'data', log=log, nice=7)
    try:
        writer = r.call(lambda _r: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result(TIMEOUT)
    finally:
        r.close()
    assert writer == min(19, base + 7)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # only the writer's own thread
    assert os.getpriority(os.PRIO_PROCESS, 0) == base
    assert not log.lines, log.lines


def test_trials_are_acked_once_in_the_file_and_resends_are_stored_once(rec: Recorder, log: Log) -> None:
    rec.call(lambda r: r.create_file('mouse1', {'species': 'Mus musculus'})).result(TIMEOUT)
    rec.begin_session('mouse1', SID, META)
    acks = Acks(rec, 'mouse1')
    rec.trials('mouse1', SID, META, FIELDS, [trial(1), trial(2), trial(3)], acks)
    rec.trials('mouse1', SID, META, FIELDS, [trial(2), trial(3), trial(4)], acks)  # two resent, one new
    rec.trials('mouse1', SID, META, FIELDS, [trial(4)], acks)  # resent again: acked again
    assert rec.flush(TIMEOUT)
    # Each ack came once the trials it names were in the file, and a resend is acked like a new trial.
    assert acks.calls == [([1, 2, 3], [1, 2, 3]), ([2, 3, 4], [1, 2, 3, 4]), ([4], [1, 2, 3, 4])]
    stats = rec.stats()
    assert (stats.trials, stats.duplicate_trials, stats.errors) == (4, 3, 0)
    # A trial the store refuses (here a schema the session does not have) is not acked: the pilot resends it.
    bad = Acks(rec, 'mouse1')
    rec.trials('mouse1', SID, META, FIELDS, [{**trial(5), 'extra': 1}], bad)
    assert rec.flush(TIMEOUT)
    assert bad.calls == [] and rec.stats().errors == 1
    assert f'trials of mouse1/{SID} failed' in log.text('error') and "unknown ['extra']" in log.text('error')
    rec.close()
    with SubjectReader(rec.path_of('mouse1')) as r:
        assert r.trial_rows(SID) == [{**trial(n), 'start_ns': 0} for n in (1, 2, 3, 4)]  # rows without a start
        assert r.session(SID)['pilot'] == 'rig1' and r.session(SID)['state'] == 'running'
        assert r.biography == {'species': 'Mus musculus'}


def test_trials_of_an_unknown_subject_create_its_file_and_say_why(rec: Recorder, log: Log) -> None:
    acks = Acks(rec, 'ghost')
    rec.trials('ghost', SID, META, FIELDS, [trial(1)], acks)
    assert acks.event.wait(TIMEOUT) and acks.acked == [[1]]
    assert "subject 'ghost' has no file: creating" in log.text('warn')
    rec.close()
    with SubjectReader(rec.path_of('ghost')) as r:
        history = r.history()
        assert [h['kind'] for h in history] == ['created', 'biography'] and r.subject == 'ghost'
        # Who created the file and why: a history row (`autopilot subject show` prints it), not the biography.
        assert history[1]['detail'] == {'created_by': 'recorder', 'reason': "trials arrived from pilot 'rig1'"}
        assert r.biography == {}
        assert [t['trial_number'] for t in r.trial_rows(SID)] == [1]
        assert r.session(SID)['task'] == '2afc'


@pytest.mark.parametrize('run', [0, 7], ids=['one-by-one', 'runs'])
def test_messages_are_written_in_batches_per_topic_with_their_bytes(rec: Recorder, run: int) -> None:
    """``run``: 0, each message queued alone (message()); else in runs of that many of one topic (messages(), as
    the receiver hands them on)."""
    topics = ['/rig1/status', '/rig1/trials', '/rig1/gpio/output']
    for t in topics:
        rec.set_topic(spec(t, 'autopilot_msgs/msg/PilotStatus'))
    rec.call(lambda r: r.create_file('mouse1')).result(TIMEOUT)
    rec.begin_session('mouse1', SID, META)
    sent: dict[str, list[tuple[int, bytes]]] = {t: [] for t in topics}
    n = 3000
    t0 = 1_700_000_000_000_000_000
    pending: list[tuple[str, int, bytes]] = []
    for i in range(n):  # interleaved topics, as the executor delivers them
        topic = topics[(i // run if run else i) % 3]
        data = f'{topic} message {i} '.encode() * (1 + i % 5) + bytes([i % 256])
        sent[topic].append((t0 + i, data))
        if not run:
            rec.message('mouse1', SID, topic, t0 + i, data)
            continue
        pending.append((topic, t0 + i, data))
        if len(pending) == run or i == n - 1:
            rec.messages('mouse1', SID, topic, pending)
            pending = []
    rec.end_session('mouse1', SID, t0 + n)
    assert rec.flush(TIMEOUT)
    stats = rec.stats()
    assert stats.messages == n and stats.lost_messages == 0 and stats.errors == 0
    assert stats.bytes == sum(len(d) for msgs in sent.values() for _, d in msgs)
    assert stats.batches < n / 30, f'{stats.batches} batches for {n} messages: not batched'
    rec.close()
    with SubjectReader(rec.path_of('mouse1')) as r:
        infos = {i.topic: i for i in r.topics(SID)}
        assert sorted(infos) == sorted(topics)
        for t in topics:
            assert infos[t].count == len(sent[t]) and infos[t].type == 'autopilot_msgs/msg/PilotStatus'
            assert infos[t].interface_text == interface_text('autopilot_msgs/msg/PilotStatus')
            got = [(m.recv_ns, m.data) for m in r.messages(SID, [t])]
            assert got == sent[t], t
        assert [m.recv_ns for m in r.messages(SID)] == [t0 + i for i in range(n)]  # all topics, in order
        tg = r.file[f'sessions/{SID}/bag']
        assert {int(g.attrs['count']) for g in tg.values()} == {len(m) for m in sent.values()}  # by end_session
        assert r.session(SID)['state'] == 'ended'


def test_gpio_and_sound_messages_fill_the_event_tables(rec: Recorder) -> None:
    gpio_topic, sound_topic = '/rig1/gpio/events', '/rig1/sound/onsets'
    for topic, rel in ((gpio_topic, 'gpio/events'), (sound_topic, 'sound/onsets')):
        kind, cls = EVENT_TOPICS[rel]
        rec.set_topic(spec(topic, f'autopilot_msgs/msg/{cls.__name__}'), (kind, DECODERS[kind]))
    rec.call(lambda r: r.create_file('mouse1')).result(TIMEOUT)
    rec.begin_session('mouse1', SID, META)
    gpio, sound, gpio_cdr = [], [], []
    for i in range(1, 41):
        g = GpioEvent(device=('poke_left', 'poke_center', 'poke_right')[i % 3], pin=(17, 27, 9)[i % 3],
                      level=bool(i % 2), tick=i * 1000, tick_us=2**33 + i * 1000, backend='sim')
        g.header.stamp.sec, g.header.stamp.nanosec = 1_700_000_000 + i, 1000 * i
        gpio.append(g)
        gpio_cdr.append(serialize_message(g))  # once: CDR padding bytes are not zeroed, so bytes may differ
        rec.message('mouse1', SID, gpio_topic, 10_000 + i, gpio_cdr[-1])
        if i % 4 == 0:
            s = SoundOnset(sound_id=f'tone_{i}', play_id=i, duration_ms=30.0, latency_ms=1.5 + i / 100,
                           source=SoundOnset.SOURCE_NULL, ok=i != 8, message='' if i != 8 else 'failed')
            s.header.stamp.sec, s.header.stamp.nanosec = 1_700_000_000 + i, 5
            sound.append(s)
            rec.message('mouse1', SID, sound_topic, 10_000 + i, serialize_message(s))
    assert rec.flush(TIMEOUT)
    assert rec.stats().events == len(gpio) + len(sound) and rec.stats().errors == 0
    rec.close()
    with SubjectReader(rec.path_of('mouse1')) as r:
        ev = r.events(SID, 'gpio')
        assert ev['device'].tolist() == [g.device for g in gpio]
        assert ev['pin'].tolist() == [g.pin for g in gpio]
        assert ev['level'].tolist() == [g.level for g in gpio]
        assert ev['tick_us'].tolist() == [g.tick_us for g in gpio]
        assert ev['stamp_ns'].tolist() == [g.header.stamp.sec * 10**9 + g.header.stamp.nanosec for g in gpio]
        assert ev['recv_ns'].tolist() == [10_000 + i for i in range(1, 41)]
        so = r.events(SID, 'sound')
        assert so['sound_id'].tolist() == [s.sound_id for s in sound]
        assert so['play_id'].tolist() == [s.play_id for s in sound]
        assert so['ok'].tolist() == [s.ok for s in sound] and not so['ok'][1]
        assert so['latency_ms'].tolist() == [s.latency_ms for s in sound]
        assert so['source'].tolist() == [SoundOnset.SOURCE_NULL] * len(sound)
        # ... and the raw messages are in the bag as well.
        assert [m.data for m in r.messages(SID, [gpio_topic])] == gpio_cdr


def test_a_damaged_event_message_costs_only_its_own_row(rec: Recorder, log: Log) -> None:
    topic = '/rig1/gpio/events'
    rec.set_topic(spec(topic, 'autopilot_msgs/msg/GpioEvent'), ('gpio', DECODERS['gpio']))
    rec.call(lambda r: r.create_file('mouse1')).result(TIMEOUT)
    rec.begin_session('mouse1', SID, META)
    good = [serialize_message(GpioEvent(device=f'poke_{i}', pin=i, level=True, tick_us=i, backend='sim'))
            for i in range(1, 6)]
    sent = good[:2] + [good[2][:-9]] + good[3:]  # the third one cut short
    for i, data in enumerate(sent):
        rec.message('mouse1', SID, topic, 1000 + i, data)
    assert rec.flush(TIMEOUT)
    st = rec.stats()
    assert st.events == 4 and st.errors == 1 and st.lost_messages == 0
    assert '1 of 5 messages could not be decoded' in log.text('error')
    assert 'kept in the bag' in log.text('error')
    rec.close()
    with SubjectReader(rec.path_of('mouse1')) as r:
        assert r.events(SID, 'gpio')['device'].tolist() == ['poke_1', 'poke_2', 'poke_4', 'poke_5']
        assert [m.data for m in r.messages(SID, [topic])] == sent


def image(i: int, width: int, height: int) -> bytes:
    """A bgr8 frame whose grey level encodes ``i`` (as the camera's synthetic source draws its counter)."""
    msg = Image(height=height, width=width, encoding='bgr8', step=width * 3)
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1_700_000_000 + i // 30, (i % 30) * 33_000_000
    msg.data = np.full((height, width, 3), (i * 16) % 256, np.uint8).tobytes()
    return serialize_message(msg)


def test_camera_frames_become_mp4_parts_with_frame_tables(rec: Recorder, log: Log) -> None:
    topic = '/rig1/camera/image'
    rec.set_video_topic(spec(topic, 'sensor_msgs/msg/Image'))
    with pytest.raises(ValueError, match='cannot be recorded as video'):
        rec.set_video_topic(spec('/rig1/gpio/events', 'autopilot_msgs/msg/GpioEvent'))
    rec.call(lambda r: r.create_file('mouse1')).result(TIMEOUT)
    rec.begin_session('mouse1', SID, META)
    # 40 frames at 64x48, then the camera is reconfigured to 32x24: a second part, nothing lost.
    for i in range(60):
        rec.message('mouse1', SID, topic, 5_000 + i, image(i, 64, 48) if i < 40 else image(i, 32, 24))
    rec.end_session('mouse1', SID, 1_700_000_010_000_000_000)
    assert rec.flush(TIMEOUT)
    st = rec.stats()
    assert (st.frames, st.frames_dropped, st.lost_messages, st.errors) == (60, 0, 0, 0), st
    assert 'starting a new video part' in log.text('warn')
    rec.close()
    with SubjectReader(rec.path_of('mouse1')) as r:
        videos = r.videos(SID)
        assert [(v.name, v.width, v.height, v.frames, v.state) for v in videos] == [
            ('rig1_camera_image', 64, 48, 40, 'finished'), ('rig1_camera_image-1', 32, 24, 20, 'finished')]
        assert not r.topics(SID), 'video topics do not go into the bag'
        recv = []
        for v in videos:
            frames = r.video_frames(SID, v.name)
            recv += frames['recv_ns'].tolist()
            assert frames['frame'].tolist() == list(range(v.frames))
            cap = cv2.VideoCapture(str(v.path))
            levels = []
            while True:
                ok, img = cap.read()
                if not ok:
                    break
                levels.append(int(round(float(img.mean()))))
            cap.release()
            first = frames['recv_ns'][0] - 5_000
            assert levels == pytest.approx([((first + k) * 16) % 256 for k in range(v.frames)], abs=6)  # mp4v is lossy
        assert recv == [5_000 + i for i in range(60)]


def test_a_frame_after_its_sessions_end_is_counted_late_and_opens_no_part(rec: Recorder, log: Log) -> None:
    """The race of a fresh-clone CI run: the session's video is closed (its end is processed), then a frame of
    that session arrives (the terminal routes an ending session's messages for a grace period). The items are
    processed in queue order, so queueing the end before the frames reproduces it every time."""
    topic, other = '/rig1/camera/image', '/rig1/camera2/image'
    rec.set_video_topic(spec(topic, 'sensor_msgs/msg/Image'))
    rec.set_video_topic(spec(other, 'sensor_msgs/msg/Image'))
    rec.call(lambda r: r.create_file('mouse1')).result(TIMEOUT)
    rec.begin_session('mouse1', SID, META)
    for i in range(5):
        rec.message('mouse1', SID, topic, 5_000 + i, image(i, 32, 24))
    rec.end_session('mouse1', SID, 1_700_000_010_000_000_000)
    rec.message('mouse1', SID, topic, 6_000, image(5, 32, 24))  # one late frame
    rec.messages('mouse1', SID, topic, [(topic, 6_001 + i, image(6 + i, 32, 24)) for i in range(3)])  # a late run
    rec.message('mouse1', SID, topic, 6_010, image(9, 16, 12))  # late, and of another format: still no new part
    rec.message('mouse1', SID, other, 6_020, image(0, 32, 24))  # a camera with no frame in the session: no video
    # The next session of the same subject records from its first frame.
    rec.begin_session('mouse1', 'session-2', META)
    for i in range(3):
        rec.message('mouse1', 'session-2', topic, 7_000 + i, image(i, 32, 24))
    rec.end_session('mouse1', 'session-2', 1_700_000_020_000_000_000)
    assert rec.flush(TIMEOUT)
    st = rec.stats()
    assert (st.frames, st.frames_late, st.lost_messages, st.errors) == (8, 6, 0, 0), st
    assert log.text('info').count('arrived after the session ended') == 2  # once per session and topic
    rec.close()
    with SubjectReader(rec.path_of('mouse1')) as r:
        assert [(v.name, v.frames, v.state) for v in r.videos(SID)] == [('rig1_camera_image', 5, 'finished')]
        assert r.video_frames(SID, 'rig1_camera_image')['recv_ns'].tolist() == [5_000 + i for i in range(5)]
        assert [(v.name, v.frames) for v in r.videos('session-2')] == [('rig1_camera_image', 3)]
    session_dir = rec.data_dir / 'mouse1' / SID
    assert sorted(p.name for p in session_dir.iterdir()) == ['rig1_camera_image.mp4']


class Sink:
    """Stands in for the Recorder behind a SessionTable: which session each routed message went to."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str, int]] = []  # (session, topic, recv_ns)
        self.runs = 0  # calls of messages(): runs routed as one

    def message(self, subject: str, session_id: str, topic: str, recv_ns: int, data: bytes) -> None:
        self.got.append((session_id, topic, recv_ns))

    def messages(self, subject: str, session_id: str, topic: str, run: list[tuple[str, int, bytes]]) -> None:
        self.runs += 1
        self.got.extend((session_id, topic, recv_ns) for _, recv_ns, _ in run)


def heartbeat(session_id: str = '') -> bytes:
    state = PilotStatus.STATE_RUNNING if session_id else PilotStatus.STATE_IDLE
    return serialize_message(PilotStatus(state=state, session_id=session_id))


def test_a_session_ends_where_the_recorders_stream_shows_it_not_when_the_terminal_learns_it() -> None:
    sink, ms = Sink(), 1_000_000
    table = SessionTable(sink, grace_ns=100 * ms)  # type: ignore[arg-type]
    table.start('/rig', 'm1', 's1', started_ns=1000 * ms)
    table.route('/rig', '/rig/gpio/events', 1001 * ms, b'a')
    # The terminal's thread sees the end at t=1002 ms, while the recorder's executor lags behind: what it
    # delivers after that, until the heartbeat that ended the session comes through it, is still s1's.
    table.stop('/rig', 1002 * ms, streamed=True)
    table.route('/rig', '/rig/gpio/events', 1500 * ms, b'b')
    assert not table.closed('/rig', 's1', 5000 * ms)
    table.route_status('/rig', '/rig/status', 1600 * ms, heartbeat())
    table.route('/rig', '/rig/gpio/events', 1650 * ms, b'c')  # in flight on another topic: within the grace
    assert not table.closed('/rig', 's1', 1650 * ms) and table.closed('/rig', 's1', 1701 * ms)
    table.route('/rig', '/rig/gpio/events', 1800 * ms, b'd')  # after: held for a next session, not s1's
    assert sink.got == [('s1', '/rig/gpio/events', 1001 * ms), ('s1', '/rig/gpio/events', 1500 * ms),
                        ('s1', '/rig/status', 1600 * ms), ('s1', '/rig/gpio/events', 1650 * ms)]
    # The next session starts: the held message from just before its start goes to it.
    table.start('/rig', 'm1', 's2', started_ns=1810 * ms)
    assert sink.got[-1] == ('s2', '/rig/gpio/events', 1800 * ms)


def test_runs_of_messages_go_as_one_to_a_running_session_and_one_by_one_around_its_end() -> None:
    sink, ms = Sink(), 1_000_000
    table = SessionTable(sink, grace_ns=100 * ms)  # type: ignore[arg-type]
    topic = '/rig/gpio/events'
    table.route_run('/rig', topic, [(topic, 900 * ms, b'early')])  # no session yet: held
    table.start('/rig', 'm1', 's1', started_ns=950 * ms)
    table.route_run('/rig', topic, [(topic, (1000 + i) * ms, b'x') for i in range(5)])
    assert sink.runs == 1 and [g[2] for g in sink.got] == [900 * ms] + [(1000 + i) * ms for i in range(5)]
    table.stop('/rig', 1010 * ms, streamed=True)
    # One run holding the heartbeat that ends s1: it is read in order, so what follows it is timed against it.
    table.route_status_run('/rig', '/rig/status', [('/rig/status', 1100 * ms, heartbeat('s1')),
                                                   ('/rig/status', 1200 * ms, heartbeat())])
    table.route_run('/rig', topic, [(topic, 1250 * ms, b'in grace'), (topic, 1400 * ms, b'after')])
    assert sink.got[-3:] == [('s1', '/rig/status', 1100 * ms), ('s1', '/rig/status', 1200 * ms),
                             ('s1', topic, 1250 * ms)]
    table.start('/rig', 'm1', 's2', started_ns=1390 * ms)
    assert sink.got[-1] == ('s2', topic, 1400 * ms)  # held, then given to the next session


def test_a_stream_ahead_of_the_terminal_and_topics_without_status_end_by_the_grace() -> None:
    sink, ms = Sink(), 1_000_000
    table = SessionTable(sink, grace_ns=100 * ms)  # type: ignore[arg-type]
    table.start('/rig', 'm1', 's1', started_ns=1000 * ms)
    table.route_status('/rig', '/rig/status', 1100 * ms, heartbeat('s1'))
    table.route_status('/rig', '/rig/status', 1200 * ms, heartbeat())  # the stream saw the end first
    table.stop('/rig', 1250 * ms, streamed=True)
    assert not table.closed('/rig', 's1', 1299 * ms) and table.closed('/rig', 's1', 1301 * ms)
    # Without the status topic recorded, the window is the grace after the terminal saw the end.
    table.start('/other', 'm2', 's3', started_ns=1000 * ms)
    table.stop('/other', 2000 * ms, streamed=False)
    assert not table.closed('/other', 's3', 2099 * ms) and table.closed('/other', 's3', 2101 * ms)
    assert table.closed('/other', 'unknown-session', 0)
    # A damaged heartbeat is recorded like any message and changes nothing.
    table.start('/rig', 'm1', 's4', started_ns=3000 * ms)
    table.route_status('/rig', '/rig/status', 3001 * ms, b'junk')
    assert sink.got[-1] == ('s4', '/rig/status', 3001 * ms)


def test_a_continuous_topic_becomes_a_typed_table_with_a_column_per_field(rec: Recorder, log: Log) -> None:
    from sensor_msgs.msg import Imu

    from autopilot_terminal.streams import StreamDecoder, StreamError

    topic = '/rig1/imu'
    decoder = StreamDecoder('sensor_msgs/msg/Imu')
    rec.set_topic(spec(topic, 'sensor_msgs/msg/Imu'), ('stream', decoder))
    rec.call(lambda r: r.create_file('mouse1')).result(TIMEOUT)
    rec.begin_session('mouse1', SID, META)
    sent = []
    for i in range(1, 31):
        m = Imu()
        m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id = 100 + i, 7, f'imu{i % 2}'
        m.orientation.w, m.angular_velocity.z, m.linear_acceleration.x = 1.0, 0.01 * i, -9.81
        m.orientation_covariance[4] = float(i)
        sent.append(m)
        rec.message('mouse1', SID, topic, 1_000 + i, serialize_message(m))
    rec.message('mouse1', SID, topic, 2_000, b'\x00\x01\x00\x00 not an Imu')  # kept in the bag, no row
    assert rec.flush(TIMEOUT)
    assert rec.stats().stream_rows == 30 and rec.stats().errors == 1
    assert '1 of 31 messages could not be decoded' in log.text('error')
    rec.close()
    with SubjectReader(rec.path_of('mouse1')) as r:
        [(name, attrs)] = r.streams(SID).items()
        assert (name, attrs['topic'], attrs['type'], attrs['skipped']) == ('rig1_imu', topic, 'sensor_msgs/msg/Imu', [])
        assert attrs['time_columns'] == ['header.stamp']
        cols = r.stream(SID, name)
        assert list(cols)[:4] == ['recv_ns', 'header.stamp', 'header.frame_id', 'orientation.x']
        assert cols['recv_ns'].tolist() == [1_000 + i for i in range(1, 31)]
        assert cols['header.stamp'].tolist() == [(100 + i) * 10**9 + 7 for i in range(1, 31)]
        assert cols['header.frame_id'].tolist() == [m.header.frame_id for m in sent]
        assert cols['angular_velocity.z'].tolist() == [m.angular_velocity.z for m in sent]
        assert cols['orientation_covariance.4'].tolist() == [float(i) for i in range(1, 31)]
        assert cols['orientation.w'].dtype == np.float64 and cols['header.stamp'].dtype == np.int64
        assert sum(1 for _ in r.messages(SID, [topic])) == 31  # the bag has every message, the bad one too
    # Sequences stay in the bag only (named as left out); a type with nothing to tabulate is refused.
    assert StreamDecoder('sensor_msgs/msg/JointState').skipped == ['name (sequence<string>)',
                                                                   'position (sequence<double>)',
                                                                   'velocity (sequence<double>)',
                                                                   'effort (sequence<double>)']
    with pytest.raises(StreamError, match='no field fits a table column'):
        StreamDecoder('std_msgs/msg/Empty')


def test_call_hands_the_stores_error_to_the_caller(rec: Recorder) -> None:
    with pytest.raises(StoreError, match=r"unknown subject 'nobody': no file .*nobody\.h5; create it first"):
        rec.call(lambda r: r.open_file('nobody')).result(TIMEOUT)
    with pytest.raises(StoreError, match='not a valid identifier'):
        rec.call(lambda r: r.create_file('../etc/passwd')).result(TIMEOUT)
    rec.call(lambda r: r.create_file('mouse1')).result(TIMEOUT)
    with pytest.raises(StoreError, match=r"subject 'mouse1' exists already \(.*mouse1\.h5\)"):
        rec.call(lambda r: r.create_file('mouse1')).result(TIMEOUT)
    with pytest.raises(ZeroDivisionError):  # whatever the function raises
        rec.call(lambda r: 1 / 0).result(TIMEOUT)
    with pytest.raises(RuntimeError, match='only on the recorder thread: use Recorder.call'):
        rec.open_file('mouse1')
    # The writer goes on.
    assert rec.call(lambda r: r.open_file('mouse1').subject).result(TIMEOUT) == 'mouse1'
    assert rec.stats().errors == 4


def test_a_file_a_killed_writer_left_open_is_repaired_on_open_and_keeps_its_trials(tmp_path: Path, log: Log) -> None:
    from test_store import mark_open_by_dead_writer

    path = tmp_path / 'data' / 'mouse1.h5'
    path.parent.mkdir()
    with SubjectFile.create(path, 'mouse1') as f:
        f.begin_session(SID, {**META, 'fields': FIELDS})
        f.add_trials(SID, [trial(n) for n in range(1, 4)])
    mark_open_by_dead_writer(path)  # as a recorder killed mid-write leaves it
    r = Recorder(tmp_path / 'data', log=log)
    try:
        assert r.call(lambda r: r.open_file('mouse1').recovered).result(TIMEOUT)
        assert 'was left open by a writer that stopped; repaired' in log.text('warn')
        acks = Acks(r, 'mouse1')
        r.trials('mouse1', SID, META, FIELDS, [trial(3), trial(4)], acks)
        assert acks.event.wait(TIMEOUT) and acks.acked == [[3, 4]]
    finally:
        r.close()
    with SubjectReader(path) as reader:
        assert reader.trials(SID)['trial_number'].tolist() == [1, 2, 3, 4]


_HOLDER = textwrap.dedent('''
    import sys
    from autopilot_terminal.storage import SubjectFile
    f = SubjectFile.open(sys.argv[1])
    print('holding', flush=True)
    sys.stdin.readline()
    f.close()
''')


@pytest.mark.parametrize('holder', ['this process', 'another process'])
def test_a_file_another_writer_holds_loses_messages_but_no_trial(tmp_path: Path, log: Log, holder: str) -> None:
    path = tmp_path / 'data' / 'mouse1.h5'
    path.parent.mkdir()
    SubjectFile.create(path, 'mouse1').close()
    if holder == 'this process':
        held = SubjectFile.open(path)
        release = held.close
    else:
        child = subprocess.Popen([sys.executable, '-c', _HOLDER, str(path)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert child.stdout.readline() == 'holding\n', child.stderr.read()

        def release() -> None:
            child.communicate('\n', timeout=30)
            assert child.returncode == 0
    rec = Recorder(tmp_path / 'data', log=log)
    try:
        topic = '/rig1/status'
        rec.set_topic(spec(topic, 'autopilot_msgs/msg/PilotStatus'))
        rec.begin_session('mouse1', SID, {**META, 'step_name': 'from the heartbeat'})
        rec.provenance('mouse1', SID, {'hosts': {'terminal': 'lab'}})
        for i in range(1, 11):
            rec.message('mouse1', SID, topic, i, b'x' * i)
        acks = Acks(rec, 'mouse1')
        rec.trials('mouse1', SID, META, FIELDS, [trial(1), trial(2)], acks)
        assert rec.flush(TIMEOUT)
        assert acks.calls == [], 'trials acked that are not in the file'
        stats = rec.stats()
        assert stats.lost_messages == 10 and stats.messages == 0 and stats.errors >= 4
        errors = log.text('error')
        assert f'{path}: already open for writing by another SubjectFile' in errors
        assert f'trials of mouse1/{SID} failed' in errors and '(10 lost so far; see stats)' in errors
        with pytest.raises(StoreError, match='already open for writing by another SubjectFile'):
            rec.call(lambda r: r.open_file('mouse1')).result(TIMEOUT)
        release()
        # The pilot resends what was not acked: now it is stored, and acked.
        rec.trials('mouse1', SID, META, FIELDS, [trial(1), trial(2)], acks)
        assert acks.event.wait(TIMEOUT)
        assert acks.calls == [([1, 2], [1, 2])]
        rec.message('mouse1', SID, topic, 11, b'after')
        assert rec.flush(TIMEOUT) and rec.stats().messages == 1
        # The session's begin and provenance, which nobody resends, were stored once the file could be opened.
        assert f'recorder: begin of mouse1/{SID} stored (it had failed)' in log.text('info')
        assert f'recorder: provenance of mouse1/{SID} stored (it had failed)' in log.text('info')
    finally:
        rec.close()
        if holder == 'another process' and child.poll() is None:
            child.kill()
    with SubjectReader(path) as r:
        assert [t['trial_number'] for t in r.trial_rows(SID)] == [1, 2]
        assert [m.data for m in r.messages(SID)] == [b'after']
        assert r.session(SID)['step_name'] == 'from the heartbeat'
        assert r.provenance(SID) == {'hosts': {'terminal': 'lab'}}


def test_close_writes_everything_queued(rec: Recorder) -> None:
    topic = '/rig1/gpio/output'
    rec.set_topic(spec(topic, 'autopilot_msgs/msg/DigitalOutput'))
    rec.call(lambda r: r.create_file('mouse1')).result(TIMEOUT)
    acked: list[int] = []
    rec.begin_session('mouse1', SID, META)
    rec.provenance('mouse1', SID, {'git': {'commit': 'abc', 'dirty': False}, 'hosts': {'terminal': 'lab'}})
    for i in range(1, 2001):
        rec.message('mouse1', SID, topic, i, i.to_bytes(4, 'little'))
        if i % 40 == 0:
            rec.trials('mouse1', SID, META, FIELDS, [trial(i // 40)], acked.extend)
    rec.end_session('mouse1', SID, 5000, 'aborted')
    rec.close()  # at once: nothing queued may be dropped
    assert acked == list(range(1, 51))
    assert rec.stats().errors == 0
    with SubjectReader(rec.path_of('mouse1')) as r:
        assert [m.data for m in r.messages(SID)] == [i.to_bytes(4, 'little') for i in range(1, 2001)]
        assert len(r.trial_rows(SID)) == 50
        assert r.provenance(SID) == {'git': {'commit': 'abc', 'dirty': False}, 'hosts': {'terminal': 'lab'}}
        assert (r.session(SID)['state'], r.session(SID)['ended_ns']) == ('aborted', 5000)


# --- subjects: state from history, protocol files ---------------------------------------------------

def test_state_is_replayed_from_the_history() -> None:
    def row(t: int, kind: str, protocol: str = '', step: int = 0, step_name: str = '', **detail: Any):
        return {'time_ns': t, 'kind': kind, 'protocol': protocol, 'step': step, 'step_name': step_name,
                'detail': detail}
    rows = [
        row(1, 'created', subject='m', biography={}),
        row(2, 'assign', 'training', 0, 'free water', file='/p/training.yaml', sha256='aa',
            steps=['free water', '2afc']),
        row(3, 'parameters', 'training', 0, 'free water', set={'reward_ul': 4.0, 'iti_s': 1.0}, removed=[]),
        row(4, 'step', 'training', 1, '2afc', session_id='S', seq=1),  # a graduation the pilot reported
        row(5, 'parameters', 'training', 1, '2afc', set={'iti_s': 2.0}, removed=['reward_ul']),
        row(6, 'step', 'other', 3, 'elsewhere'),  # of another protocol: ignored
        row(7, 'biography', species='Mus musculus'),  # not part of the state
    ]
    st = state_from_history('m', rows)
    assert (st.protocol, st.step, st.step_name, st.steps) == ('training', 1, '2afc', ['free water', '2afc'])
    assert (st.protocol_file, st.protocol_sha256, st.assigned_ns, st.changed_ns) == ('/p/training.yaml', 'aa', 2, 5)
    assert st.parameters == {'iti_s': 2.0}
    assert check_step(st, 0) == 'free water'
    with pytest.raises(ValueError, match=r'step 2 does not exist: the protocol has steps 0..1 \(0: free water, 1: 2afc\)'):
        check_step(st, 2)
    # A new assignment starts over: step and overrides belong to the protocol they were set for.
    st = state_from_history('m', [*rows, row(8, 'assign', 'demo', 0, 'easy', steps=['easy'])])
    assert (st.protocol, st.step, st.step_name, st.parameters, st.steps) == ('demo', 0, 'easy', {}, ['easy'])
    empty = state_from_history('m', rows[:1])
    assert (empty.protocol, empty.steps, empty.changed_ns) == ('', [], 0)
    with pytest.raises(ValueError, match='has no protocol: assign one first'):
        check_step(empty, 0)


def test_protocol_files_are_found_and_their_errors_named(tmp_path: Path) -> None:
    (tmp_path / 'good.yaml').write_text('name: nice\nsteps:\n  - name: one\n    task: 2afc\n  - task: free_water\n')
    (tmp_path / 'broken.yml').write_text('name: broken\nsteps:\n  - name: one\n    task: [2afc\n')
    (tmp_path / 'flat.yaml').write_text('just a string\n')
    (tmp_path / 'nameless.yaml').write_text('steps:\n  - parameters: {}\n')
    (tmp_path / 'notes.txt').write_text('not a protocol')
    proto = read_protocol('good', tmp_path)
    assert (proto.name, proto.steps, proto.path) == ('nice', ('one', 'free_water'), tmp_path / 'good.yaml')
    assert proto.text == (tmp_path / 'good.yaml').read_text() and len(proto.sha256) == 64
    assert read_protocol(str(tmp_path / 'good.yaml'), '/nonexistent').name == 'nice'  # a path works too
    assert check_step(proto, 1) == 'free_water'
    # The line that opened the unclosed bracket (the error itself is found at the end of the file).
    with pytest.raises(ProtocolFileError, match=rf'^{tmp_path / "broken.yml"}:4: not valid YAML'):
        read_protocol('broken', tmp_path)
    with pytest.raises(ProtocolFileError, match=rf'^{tmp_path / "flat.yaml"}: a protocol is a mapping'):
        read_protocol('flat', tmp_path)
    with pytest.raises(ProtocolFileError, match=r'nameless.yaml: steps\[0\]: each step is a mapping with a `task`'):
        read_protocol('nameless', tmp_path)
    with pytest.raises(ProtocolFileError, match=rf"^{tmp_path}: unknown protocol 'nope': available: broken, flat, "
                                                r'good, nameless$'):
        read_protocol('nope', tmp_path)
    with pytest.raises(ProtocolFileError, match=r"unknown protocol 'good': .*missing is not a directory \(set protocol_dir\)"):
        read_protocol('good', tmp_path / 'missing')
    with pytest.raises(ProtocolFileError, match=r"invalid protocol name '\.\./x': .* or the path of a \.yaml file"):
        read_protocol('../x', tmp_path)


def test_dds_losses_count_as_lost_but_samples_a_keep_last_publisher_replaced_do_not(rec: Recorder, log: Log) -> None:
    rec.set_topic(spec('/rig1/gpio/events', 'autopilot_msgs/msg/GpioEvent'))  # reliable keep-all: a real loss
    rec.set_topic(TopicSpec('/rig1/status', 'autopilot_msgs/msg/PilotStatus', interface_text('autopilot_msgs/msg/PilotStatus'),
                            'RIHS01_' + '0' * 64, json.dumps({'history': 'keep_last', 'depth': 1,
                                                              'reliability': 'reliable'})))
    rec.count_lost('/rig1/gpio/events', 3)
    rec.count_lost('/rig1/status', 2)
    rec.count_lost('/rig1/status', 0)
    st = rec.stats()
    assert (st.lost_messages, st.superseded_messages) == (3, 2)
    assert [level for level, _ in log.lines] == ['warn', 'info'], log.lines
    assert '3 messages of /rig1/gpio/events lost' in log.lines[0][1]
    assert 'replaced by newer ones' in log.lines[1][1] and 'last 1 only' in log.lines[1][1]
