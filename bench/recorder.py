#!/usr/bin/env python3
"""Recorder throughput: how many small messages/s and camera frames/s the terminal records into HDF5, losing none.

A publisher process acts as a pilot in namespace ``--ns`` (``/bench``): it publishes ``status``
(``autopilot_msgs/PilotStatus``, ``qos.STATUS``) RUNNING with subject ``bench_subject`` and a session id,
waits until ``/terminal/pilots`` shows the session (so the recorder has begun it), then N messages as fast as
it can (``max``) or paced at an offered rate (heartbeat every second), then status IDLE at once, as a pilot
ends a session (the terminal's ``end_grace_s`` covers what is still on its way; ``--end-delay-s`` waits
first). Messages are published **pre-serialized** (``Publisher.publish(bytes)``: one CDR template, the
sequence number and the publish time patched in per message), so the publisher costs little more than Fast
DDS itself. Keep-all flow control: ``publish()`` blocks (100 ms, then raises) while 5000 samples are
unacknowledged; the publisher retries, and gives up after ``--stall-s`` without progress (the receiver
stopped acknowledging), reporting what it sent. Its node has no parameter services, so the terminal's
parameter collection does not wait on a publisher too busy to answer.

==================  ===========================================================================================
stream              what the publisher sends
==================  ===========================================================================================
``gpio/events``     ``autopilot_msgs/GpioEvent`` (60 B CDR), ``qos.EVENTS`` (reliable, keep-all); sequence number
                    in ``tick_us``, publish time in ``header.stamp``. The recorder stores it in the bag **and**
                    decodes it into the session's ``events/gpio`` table (node.py ``EVENT_TOPICS``).
``bench/raw``       the same messages on a topic the recorder only bags (no decoding): the ``terminal-nodecode``
                    rows, which show what the decoding costs end to end.
``camera/image``    ``sensor_msgs/Image`` 640x480 bgr8 (921,600 B of pixels), ``qos.STREAM`` (best effort) as the
                    camera node publishes it, at 30 and 90 frames/s for ``--frame-seconds``; the publisher applies
                    ``autopilot_core.transport.use_large_shm_profile()`` as the camera node does. Sequence number
                    in the first 8 pixel bytes.
==================  ===========================================================================================

Receivers (rows):

``terminal``           the installed ``terminal`` executable (TerminalNode and the real recorder; it receives the
                       record topics in its child process ``autopilot_terminal.receiver``),
                       ``-p data_dir:=<tmp> -p record_topics:=[status, gpio/events, camera/image, bench/raw]``. It finds
                       the pilot by its ``status`` topic, subscribes raw to its record topics, begins the session
                       on the RUNNING heartbeat (the publisher starts only after ``/terminal/pilots`` shows the
                       session) and ends it on IDLE. Counted afterwards in the file with
                       ``autopilot_terminal.storage.SubjectReader``: bag count, unique sequence numbers, rows of
                       ``events/gpio``.
``terminal-nodecode``  the same, publishing on ``bench/raw`` (bag only).
``terminal-video``     frames only: the terminal as configured by default for cameras (``video_topics:=[camera/image]``):
                       each frame encoded into the session's MP4 (OpenCV mp4v, own thread) with a row in its frame
                       table; counted from those rows (``recorded`` = rows, unique = distinct frame stamps; frames
                       the encoder queue refused are ``lost``). The ``terminal`` rows record frames raw in the bag.
``bare``               bare rclpy: a raw subscription (``qos.EVENTS``; ``qos.STREAM`` for frames) on
                       ``rclpy.experimental.EventsExecutor`` (``make_executor('events')``) counting messages.
``writer``             in-process, no DDS: ``Recorder.message()`` from one thread as fast as it goes, the writer
                       thread writing (with and without the gpio decoder): the HDF5 side's own ceiling.

Columns: ``sent`` and ``pub/s`` (what the publisher achieved, first to last publish); ``recorded`` (bag
messages of the session; bare: received), ``events`` (rows in ``events/gpio``), ``lost`` = sent - unique
recorded (and - events rows where decoded); ``rx/s`` = count / (last - first receive time, the recorder's
``recv_ns``); ``rec/s`` = count / (done - first receive), done = the later of the last receive and the last
moment the file was seen incomplete (the orchestrator polls the bag with a SWMR reader from the moment the
publisher finished): the rate **into HDF5**, ``backlog s`` = how long after the last receive the file was
complete (0: complete at the first poll; else to the first complete poll, 0.1 s resolution); ``x bare`` =
rec/s over the bare row's rx/s at the same offered rate; ``CPU`` of the receiving process and its children
(``/proc/<pid>/stat`` utime+stime, all threads) from the publisher's start until the file was complete
(bare: all received), per recorded message and in cores; ``rx us/msg`` the share of the process that takes
the messages from DDS (the terminal's receiving child; bare: all of it); ``RSS`` the peak (VmHWM, summed);
``lag`` = recv_ns - publish time (p50 / max, ms): how far the receiving executor fell behind. Message cases
run ``--rounds`` times (default 3), bare and terminal interleaved; a row is the round with the median rec/s,
its ``lost`` the sum over the rounds; every round is in the JSON (``round_rows``).

Targets (PASS/FAIL lines, exit status 0 either way): (1) the terminal records every message (bag and
``events/gpio``) at an offered >= 30,000 msg/s and keeps up (backlog <= ``--max-backlog-s``); (2) at ``max``
its rec/s >= 0.8x the bare row's rx/s of the same run, losing none.

Run: ``python bench/recorder.py`` (~9 min on 2 cores) or ``--quick`` (smoke run, < 30 s, no claims).
``--profile`` also prints a cProfile of the writer thread (in-process Recorder). JSON (``--out``, default
bench/results/recorder.json): params, machine, versions, rows, targets, per-case details (phase timings,
the terminal's own 'stopped:' counts, exit codes).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from common import ROOT, Child, ChildError, emit, fmt, machine_info, print_table, ros_versions, run

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / 'results' / 'recorder.json'
TERMINAL_EXE = ROOT / 'install' / 'autopilot_terminal' / 'lib' / 'autopilot_terminal' / 'terminal'
PILOT = 'bench'  # the fake pilot's name (last part of its namespace)
SUBJECT = 'bench_subject'
#: stream -> topic relative to the pilot namespace
TOPICS = {'events': 'gpio/events', 'raw': 'bench/raw', 'frames': 'camera/image'}
#: 'status' as in the terminal's default: the session's end is then placed in the recorder's own stream (node.py
#: SessionTable), not at a fixed grace after the terminal saw it.
RECORD_TOPICS = ['status', TOPICS['events'], TOPICS['frames'], TOPICS['raw']]
TARGET_RATE = 30_000.0
TARGET_RATIO = 0.8
CLK_TCK = os.sysconf('SC_CLK_TCK')
#: rclpy's console format: [SEVERITY] [seconds.nanoseconds] [logger]: message
LOG_TIME = re.compile(r'^\[\w+\] \[(\d+)\.(\d+)\] ')
STOPPED = re.compile(r'stopped: (\d+) trials, (\d+) messages recorded, (\d+) lost, (\d+) errors')


# --------------------------------------------------------------------------------------------------
# Message templates (pre-serialized CDR with the places to patch)
# --------------------------------------------------------------------------------------------------

@dataclass
class Template:
    data: bytes
    seq_offset: int  # little-endian uint64 sequence number
    stamp_offset: int  # header.stamp: int32 sec, uint32 nanosec
    tick_offset: int | None = None  # GpioEvent.tick (uint32), kept equal to the low bits of seq


def make_template(stream: str, width: int = 640, height: int = 480) -> Template:
    """One serialized message with marker values, and where the markers landed (CDR offsets are fixed for
    fixed string contents, so patching the bytes is exact)."""
    from rclpy.serialization import serialize_message

    seq_mark, tick_mark, sec_mark = 0x1122334455667788, 0x0A0B0C0D, 0x01020304
    if stream == 'frames':
        from sensor_msgs.msg import Image

        msg: Any = Image(height=height, width=width, encoding='bgr8', step=width * 3)
        pixels = bytearray(width * height * 3)
        pixels[:8] = seq_mark.to_bytes(8, 'little')
        msg.data = bytes(pixels)
        msg.header.frame_id = 'camera'
    else:
        from autopilot_msgs.msg import GpioEvent

        msg = GpioEvent(device='poke_center', pin=17, level=True, tick=tick_mark, tick_us=seq_mark, backend='sim')
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec_mark, 0
    data = bytes(serialize_message(msg))

    def find(value: int, size: int) -> int:
        at = data.find(value.to_bytes(size, 'little'))
        if at < 0 or data.find(value.to_bytes(size, 'little'), at + 1) >= 0:
            raise RuntimeError(f'template: marker {value:#x} not found exactly once')
        return at

    return Template(data, find(seq_mark, 8), find(sec_mark, 4), None if stream == 'frames' else find(tick_mark, 4))


def seq_of(data: bytes, t: Template) -> int:
    return int.from_bytes(data[t.seq_offset:t.seq_offset + 8], 'little')


def stamp_of(data: bytes, t: Template) -> int:
    sec, nsec = struct.unpack_from('<iI', data, t.stamp_offset)
    return sec * 1_000_000_000 + nsec


# --------------------------------------------------------------------------------------------------
# Children
# --------------------------------------------------------------------------------------------------

#: Set by SIGINT/SIGTERM in a child (the orchestrator stops children with SIGINT; PR_SET_PDEATHSIG sends it too).
STOP = threading.Event()


def init_child_ros() -> None:
    """rclpy.init without rclpy's signal handlers: SIGINT/SIGTERM set STOP, loops return, cleanup runs."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, lambda *_: STOP.set())
    signal.signal(signal.SIGTERM, lambda *_: STOP.set())


def spin_until(ex: Any, ctx: Any, cond: Callable[[], bool], timeout: float) -> bool:
    """Spin ``ex`` in short timed slices (the EventsExecutor never without a timeout) until ``cond``, timeout
    or STOP."""
    from rclpy.task import Future

    deadline = time.monotonic() + timeout
    while not cond():
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not ctx.ok() or STOP.is_set():
            return cond()
        ex.spin_until_future_complete(Future(), timeout_sec=min(0.05, remaining))
    return True


def child_pub(a: argparse.Namespace) -> int:
    """The fake pilot: status RUNNING, N pre-serialized messages (paced or as fast as possible), status IDLE."""
    transport = 'Fast DDS built-in transports'
    if a.stream == 'frames':
        from autopilot_core.transport import use_large_shm_profile

        transport = use_large_shm_profile()  # before rclpy.init, as the camera node does
    init_child_ros()
    import rclpy
    from autopilot_msgs.msg import GpioEvent, PilotRegistry, PilotStatus
    from rclpy.duration import Duration
    from rclpy.experimental import EventsExecutor
    from sensor_msgs.msg import Image

    from autopilot_core import qos

    node = rclpy.create_node('pilot', namespace=a.ns, start_parameter_services=False)
    ctx = node.context
    status_pub = node.create_publisher(PilotStatus, 'status', qos.STATUS)
    frames = a.stream == 'frames'
    pub = node.create_publisher(Image if frames else GpioEvent, TOPICS[a.stream], qos.STREAM if frames else qos.EVENTS)
    t = make_template(a.stream, a.width, a.height)
    status = PilotStatus(pilot=PILOT, task='bench', host=socket.gethostname(), ros_distro='jazzy',
                         rmw_implementation=os.environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp'))

    def send_status(state: int) -> None:
        running = state == PilotStatus.STATE_RUNNING
        status.state = state
        status.subject, status.session_id = (SUBJECT, a.session) if running else ('', '')
        status.header.stamp.sec, status.header.stamp.nanosec = divmod(time.time_ns(), 1_000_000_000)
        status_pub.publish(status)

    seen: dict[str, Any] = {'registry': None}
    node.create_subscription(PilotRegistry, '/terminal/pilots', lambda m: seen.__setitem__('registry', m), qos.STATUS)
    ex = EventsExecutor(context=ctx)
    ex.add_node(node)
    code = 0
    try:
        send_status(PilotStatus.STATE_IDLE)
        if not spin_until(ex, ctx, lambda: pub.get_subscription_count() > 0, a.timeout):
            emit('error', message=f'no subscriber on {a.ns}/{TOPICS[a.stream]} within {a.timeout:g} s')
            return 1
        emit('matched')
        send_status(PilotStatus.STATE_RUNNING)

        def recording() -> bool:
            reg = seen['registry']
            return reg is not None and any(e.pilot == PILOT and e.last_status.session_id == a.session
                                           and e.last_status.state == PilotStatus.STATE_RUNNING for e in reg.pilots)

        if a.mode == 'terminal' and not spin_until(ex, ctx, recording, a.timeout):
            emit('error', message=f'/terminal/pilots did not show session {a.session} running within {a.timeout:g} s')
            return 1
        buf = bytearray(t.data)
        seq_at, stamp_at, tick_at = t.seq_offset, t.stamp_offset, t.tick_offset
        pack_q, pack_ii, pack_i = struct.Struct('<Q').pack_into, struct.Struct('<iI').pack_into, \
            struct.Struct('<I').pack_into
        publish, now_ns = pub.publish, time.time_ns
        rate, n = a.rate, a.n
        chunk = 1 if frames else 64
        blocked = 0
        gave_up = False
        c0 = time.process_time()
        t0 = time.monotonic()
        next_beat = t0 + 1.0
        first_ns = last_ns = 0
        last_progress = t0
        i = 0
        emit('started', t_ns=time.time_ns())
        while i < n and not STOP.is_set() and not gave_up:
            now = time.monotonic()
            if rate > 0:
                due = min(n, int((now - t0) * rate) + 1)
                if due <= i:
                    time.sleep(max(0.0, t0 + i / rate - now))
                    continue
            else:
                due = min(n, i + chunk)
            while i < due:
                pack_q(buf, seq_at, i)
                if tick_at is not None:
                    pack_i(buf, tick_at, i & 0xFFFFFFFF)
                stamp = now_ns()
                pack_ii(buf, stamp_at, *divmod(stamp, 1_000_000_000))
                try:
                    publish(bytes(buf))
                except Exception:  # noqa: BLE001 - RCLError after 100 ms blocked (keep-all, 5000 unacked): retry
                    blocked += 1
                    # The reader stopped acknowledging: report what was sent instead of failing the case.
                    gave_up = time.monotonic() - last_progress > a.stall_s
                    break
                last_ns = stamp
                if i == 0:
                    first_ns = stamp
                i += 1
                last_progress = time.monotonic()
            if now >= next_beat:  # a pilot heartbeats at 1 Hz
                send_status(PilotStatus.STATE_RUNNING)
                next_beat = now + 1.0
        pub_cpu = time.process_time() - c0
        emit('sent', sent=i, first_ns=first_ns, last_ns=last_ns, blocked=blocked, gave_up=gave_up, cpu_s=pub_cpu,
             rate=(i - 1) / ((last_ns - first_ns) / 1e9) if i > 1 and last_ns > first_ns else None)
        # As a pilot ends a session: IDLE right after the last message (the terminal's end_grace_s covers messages
        # still on their way); --end-delay-s waits first. Then the acknowledgements, for the report.
        if a.end_delay_s > 0:
            time.sleep(a.end_delay_s)
        send_status(PilotStatus.STATE_IDLE)
        idle_ns = time.time_ns()
        t_ack = time.monotonic()
        acked = True if frames else pub.wait_for_all_acked(Duration(seconds=a.ack_timeout))
        ack_s = time.monotonic() - t_ack
        status_pub.wait_for_all_acked(Duration(seconds=5.0))
        emit('result', acked=acked, ack_s=ack_s, idle_ns=idle_ns, transport=transport)
        spin_until(ex, ctx, lambda: False, 24 * 3600.0)  # until SIGINT: a pilot does not vanish at session end
    finally:
        ex.shutdown(timeout_sec=1.0)
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code


def child_bare(a: argparse.Namespace) -> int:
    """Bare rclpy: a raw subscription on an EventsExecutor counting messages (and first/last receive time)."""
    init_child_ros()
    import rclpy
    from autopilot_msgs.msg import GpioEvent
    from sensor_msgs.msg import Image

    from autopilot_core import qos
    from autopilot_core.executors import executor_name, make_executor

    frames = a.stream == 'frames'
    node = rclpy.create_node('bench_bare_sub')
    ctx = node.context
    count = [0, 0, 0]  # n, first_ns, last_ns

    def on_msg(_data: bytes) -> None:
        t = time.time_ns()
        if not count[0]:
            count[1] = t
        count[0] += 1
        count[2] = t

    node.create_subscription(Image if frames else GpioEvent, f'{a.ns.rstrip("/")}/{TOPICS[a.stream]}', on_msg,
                             qos.STREAM if frames else qos.EVENTS, raw=True)
    ex = make_executor('events', context=ctx)
    ex.add_node(node)
    try:
        emit('ready', executor=executor_name(ex))
        publisher_done = threading.Event()  # the orchestrator writes a line when the publisher has finished

        def read_stdin() -> None:
            for _line in sys.stdin:
                publisher_done.set()

        threading.Thread(target=read_stdin, daemon=True).start()
        last = [0, time.monotonic()]

        def finished() -> bool:
            # All received; or, once the publisher is done (its samples acknowledged, so in our reader's history),
            # nothing new for idle_s. Not before: Fast DDS repairs after a drop can pause delivery for seconds.
            if count[0] >= a.n:
                return True
            if count[0] != last[0]:
                last[0], last[1] = count[0], time.monotonic()
            return publisher_done.is_set() and time.monotonic() - last[1] > a.idle_s

        spin_until(ex, ctx, finished, a.budget)
        emit('done', received=count[0], first_ns=count[1], last_ns=count[2])
        spin_until(ex, ctx, lambda: False, 24 * 3600.0)  # until SIGINT (the orchestrator reads /proc first)
    finally:
        ex.shutdown(timeout_sec=1.0)
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


def child_writer(a: argparse.Namespace) -> int:
    """In-process Recorder (no DDS): queue N gpio events as fast as one thread can, wait until written.

    Runs with and without the gpio decoder; with ``--profile`` each runs a second time under cProfile (the
    measured run is not profiled) and the writer thread's profile is returned as text.
    """
    import cProfile
    import io
    import pstats

    from autopilot_runtime_py.messages import interface_text
    from autopilot_terminal.recorder import Recorder
    from autopilot_terminal.routing import DECODERS
    from autopilot_terminal.storage import TopicSpec

    class ProfiledRecorder(Recorder):
        profile: cProfile.Profile | None = None

        def _run(self) -> None:
            if self.profile is not None:
                self.profile.enable()
            try:
                super()._run()
            finally:
                if self.profile is not None:
                    self.profile.disable()

    t = make_template('events')
    data = t.data
    type_name = 'autopilot_msgs/msg/GpioEvent'
    topic = f'{a.ns.rstrip("/")}/{TOPICS["events"]}'

    def run(decode: bool, prof: cProfile.Profile | None) -> dict[str, Any]:
        tmp = Path(tempfile.mkdtemp(prefix='bench-recorder-writer-', dir=a.log_dir))
        ProfiledRecorder.profile = prof
        r = ProfiledRecorder(tmp)
        r.set_topic(TopicSpec(topic, type_name, interface_text(type_name), 'RIHS01_bench', '{}'),
                    ('gpio', DECODERS['gpio']) if decode else None)
        r.begin_session(SUBJECT, 'writer', {'pilot': PILOT, 'started_ns': time.time_ns()}, create_reason='bench')
        r.flush()
        c0, t0 = time.process_time(), time.perf_counter()
        message, now_ns = r.message, time.time_ns
        for _ in range(a.n):
            message(SUBJECT, 'writer', topic, now_ns(), data)
        t_fed = time.perf_counter()
        ok = r.flush(timeout=600.0)
        t1, c1 = time.perf_counter(), time.process_time()
        st = r.stats()
        r.close()
        shutil.rmtree(tmp, ignore_errors=True)
        return {'decode': decode, 'n': a.n, 'flushed': ok, 'messages': st.messages, 'events': st.events,
                'lost': st.lost_messages, 'errors': st.errors, 'batches': st.batches, 'max_pending': st.max_pending,
                'write_s': st.write_seconds, 'feed_s': t_fed - t0, 'total_s': t1 - t0, 'cpu_s': c1 - c0,
                'profile': ''}

    results = []
    for decode in (True, False):
        res = run(decode, None)  # measured without the profiler (it slows Python code several-fold)
        if a.profile:  # a second run under cProfile, for where the writer thread's time goes
            prof = cProfile.Profile()
            run(decode, prof)
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats('tottime').print_stats(14)
            res['profile'] = out.getvalue()
            print(f'--- writer thread profile, decode={decode} ---\n{res["profile"]}', flush=True)
        results.append(res)
    emit('result', results=results)
    return 0


# --------------------------------------------------------------------------------------------------
# Orchestrator: measuring processes and files
# --------------------------------------------------------------------------------------------------

@dataclass
class Case:
    config: str  # 'bare' | 'terminal' | 'terminal-nodecode' | 'terminal-video'
    stream: str  # 'events' | 'raw' | 'frames'
    rate: float  # offered messages (frames) per second; 0 = as fast as the publisher goes
    n: int
    round: int = 0

    @property
    def section(self) -> str:
        return 'frames' if self.stream == 'frames' else 'messages'

    @property
    def offered(self) -> str:
        if self.stream == 'frames':
            return f'{self.rate:g} fps'
        return 'max' if self.rate <= 0 else f'{self.rate / 1000:g}k/s'


def _descendants(pid: int) -> list[int]:
    """Live child processes of ``pid``, recursively (the terminal's receiving process), by their parent pid."""
    parents: dict[int, list[int]] = {}
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            ppid = int(stat.read_text().rsplit(')', 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def proc_sample(pid: int) -> dict[str, Any] | None:
    """CPU seconds (utime+stime, all threads), RSS and peak RSS (MiB) of a live process and its children (summed),
    with the time taken."""
    total: dict[str, Any] = {'t': time.monotonic(), 'cpu_s': 0.0, 'rss_mb': 0.0, 'hwm_mb': 0.0}
    for i, p in enumerate([pid, *_descendants(pid)]):
        try:
            stat = Path(f'/proc/{p}/stat').read_text()
            status = Path(f'/proc/{p}/status').read_text()
        except OSError:
            if i == 0:
                return None
            continue
        fields = stat.rsplit(')', 1)[1].split()
        mem = {k: int(v.split()[0]) / 1024 for k, v in (line.split(':', 1) for line in status.splitlines())
               if k in ('VmRSS', 'VmHWM')}
        total['cpu_s'] += (int(fields[11]) + int(fields[12])) / CLK_TCK
        if i == 0:
            total['own_cpu_s'] = total['cpu_s']
        total['rss_mb'] += mem.get('VmRSS', 0.0)
        total['hwm_mb'] += mem.get('VmHWM', 0.0)
    return total


def log_line(child: Child, text: str) -> str | None:
    try:
        for line in child.log_path.read_text(errors='replace').splitlines():
            if text in line:
                return line
    except OSError:
        pass
    return None


def line_ns(line: str | None) -> int | None:
    m = LOG_TIME.match(line or '')
    return int(m.group(1)) * 1_000_000_000 + int(m.group(2).ljust(9, '0')[:9]) if m else None


def bag_count(path: Path, session: str, topic: str, video: bool = False) -> tuple[int | None, str | None]:
    """(messages of ``topic`` in the session's bag, or rows of its video tables, and the session state) read live
    (SWMR); (None, None) if unreadable."""
    from autopilot_terminal.storage import SubjectReader

    try:
        with SubjectReader(path, timeout=0.5) as r:
            if video:
                count = sum(v.rows for v in r.videos(session) if v.topic == topic)
            else:
                count = next((i.count for i in r.topics(session) if i.topic == topic), 0)
            return count, str(r.session(session).get('state', ''))
    except Exception:  # noqa: BLE001 - not created yet, or inside a structure window: poll again
        return None, None


def read_bag(path: Path, session: str, topic: str, stream: str, a: argparse.Namespace) -> dict[str, Any]:
    """After the terminal stopped: the session's bag for ``topic`` (count, unique sequence numbers, receive span,
    lag) and its events/gpio table."""
    import numpy as np

    from autopilot_terminal.storage import SubjectReader

    t = make_template(stream, a.width, a.height)
    out: dict[str, Any] = {}
    with SubjectReader(path) as r:
        info = next((i for i in r.topics(session) if i.topic == topic), None)
        out['topics'] = [i.topic for i in r.topics(session)]
        out['session'] = r.session(session)
        videos = [v for v in r.videos(session) if v.topic == topic]
        if videos:  # terminal-video: the MP4s' frame tables (frame stamps are unique per sent frame)
            cols = [r.video_frames(session, v.name) for v in videos]
            stamps = np.concatenate([c['stamp_ns'] for c in cols])
            recv = np.concatenate([c['recv_ns'] for c in cols])
            lags = recv - stamps
            out.update(recorded=int(stamps.size), unique=int(np.unique(stamps).size),
                       first_ns=int(recv.min()) if recv.size else None, last_ns=int(recv.max()) if recv.size else None,
                       lag_p50_ms=float(np.median(lags)) / 1e6 if recv.size else None,
                       lag_max_ms=float(lags.max()) / 1e6 if recv.size else None,
                       videos=[{'name': v.name, 'frames': v.frames, 'dropped': v.dropped, 'bytes': v.bytes,
                                'codec': v.codec} for v in r.videos(session)])
            return out
        if info is None:
            return {**out, 'recorded': 0, 'unique': 0, 'first_ns': None, 'last_ns': None}
        seqs = np.empty(info.count, dtype=np.int64)
        lags = np.empty(info.count, dtype=np.int64)
        k = 0
        for m in r.messages(session, [topic]):
            seqs[k] = seq_of(m.data, t)
            lags[k] = m.recv_ns - stamp_of(m.data, t)
            k += 1
        seqs, lags = seqs[:k], lags[:k]
        out.update(recorded=k, unique=int(np.unique(seqs).size), first_ns=info.first_ns, last_ns=info.last_ns,
                   max_seq=int(seqs.max()) if k else None, qos=json.loads(info.qos),
                   lag_p50_ms=float(np.median(lags)) / 1e6 if k else None,
                   lag_max_ms=float(lags.max()) / 1e6 if k else None)
        if stream == 'events':
            ev = r.events(session, 'gpio')
            ticks = ev['tick_us']
            out.update(events=int(ticks.size), events_unique=int(np.unique(ticks).size))
        out['structure'] = [{'time_ns': int(s['time_ns']), 'change': str(s['change'])} for s in r.structure()]
    return out


def child_cmd(a: argparse.Namespace, role: str, *extra: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), '--child', role, '--parent', str(os.getpid()),
            '--ns', a.ns, '--timeout', str(a.timeout), '--log-dir', str(a.log_dir), '--width', str(a.width),
            '--height', str(a.height), *extra]


def known_session(data_dir: Path, session: str) -> None:
    """The bench's session in a subject file, as a terminal that started it would have left it: the terminal
    records only sessions it started or finds in a file (records change only through their owners), and the
    bench's publisher plays a pilot without the session action."""
    from autopilot_terminal.storage import SubjectFile

    with SubjectFile.create(data_dir / f'{SUBJECT}.h5', SUBJECT) as f:
        f.begin_session(session, {'pilot': PILOT, 'task': 'bench', 'started_ns': time.time_ns()})


def run_case(case: Case, index: int, a: argparse.Namespace, env: dict[str, str], live: list[Child]) -> dict[str, Any]:
    """Start the receiver and the publisher of one case, measure, stop them; one result dict."""
    tag = f'{index:02d}-{case.config}-{case.stream}-{case.offered.replace("/", "").replace(" ", "")}'
    session = f'bench-{os.getpid()}-{index}'
    topic = f'{a.ns.rstrip("/")}/{TOPICS[case.stream]}'
    data_dir = a.log_dir / f'{tag}-data'
    res: dict[str, Any] = {'section': case.section, 'offered': case.offered, 'config': case.config,
                           'stream': case.stream, 'topic': topic, 'rate': case.rate, 'n': case.n, 'round': case.round,
                           'error': None}
    children: list[Child] = []

    def start(name: str, cmd: list[str], stdin: bool = False) -> Child:
        child = Child(f'{tag}-{name}', cmd, env, a.log_dir, stdin=stdin)
        children.append(child)
        live.append(child)
        return child

    t_start = time.monotonic()
    pub_budget = (case.n / case.rate if case.rate > 0 else case.n / 2000) * 2 + a.timeout + 30
    receiver: Child | None = None
    try:
        if case.config == 'bare':
            receiver = start('bare', child_cmd(a, 'bare', '--stream', case.stream, '--n', str(case.n),
                                               '--budget', str(pub_budget + a.timeout * 3 + 60)), stdin=True)
        else:
            data_dir.mkdir(parents=True, exist_ok=True)
            known_session(data_dir, session)
            receiver = start('terminal', [sys.executable, str(Path(__file__).resolve()), '--child', 'exec',
                                          '--parent', str(os.getpid()), '--', str(a.terminal), '--ros-args',
                                          '-p', f'data_dir:={data_dir}', '-p', f'protocol_dir:={data_dir}',
                                          *terminal_topics(case.config)])
        pub = start('pub', child_cmd(a, 'pub', '--stream', case.stream, '--n', str(case.n), '--rate', str(case.rate),
                                     '--session', session, '--mode', 'bare' if case.config == 'bare' else 'terminal',
                                     '--ack-timeout', str(a.ack_timeout), '--stall-s', str(a.stall_s),
                                     '--end-delay-s', str(a.end_delay_s)))
        if case.config == 'bare':
            res['executor'] = receiver.expect('ready', a.timeout + 15)['executor']
        pub.expect('matched', a.timeout * 2 + 15)
        started = pub.expect('started', a.timeout + 15)
        s0 = proc_sample(receiver.popen.pid)
        res['setup_s'] = round(time.monotonic() - t_start, 2)
        sent = pub.expect('sent', pub_budget)
        res['pub'] = {k: v for k, v in sent.items() if k != 'ev'}
        res['pub']['started_ns'] = started['t_ns']
        if case.config == 'bare':
            res['pub'].update({k: v for k, v in pub.expect('result', a.ack_timeout + 15).items() if k != 'ev'})
            if receiver.alive():
                receiver.send('publisher done')
            done = receiver.expect('done', a.drain_timeout)
            s1 = proc_sample(receiver.popen.pid)
            res.update(recorded=done['received'], unique=done['received'], first_ns=done['first_ns'],
                       last_ns=done['last_ns'])
            res['done_ns'] = done['last_ns']
        else:
            path = data_dir / f'{SUBJECT}.h5'
            # (time ns, bag count, /proc sample) while the writer drains; CPU is taken at the first complete poll
            polls: list[tuple[int, int, dict[str, Any] | None]] = []
            final = None
            deadline = time.monotonic() + a.drain_timeout + a.ack_timeout + 15
            ended_text = f'session {session} of {SUBJECT} on {PILOT}: ended'
            while time.monotonic() < deadline:
                t_poll, sample = time.time_ns(), proc_sample(receiver.popen.pid)
                count, state = bag_count(path, session, topic, video=case.config == 'terminal-video')
                if count is not None:
                    polls.append((t_poll, count, sample))
                if state == 'ended' and log_line(receiver, ended_text):
                    final = count
                    break
                if not receiver.alive():
                    raise ChildError(f'terminal exited ({receiver.popen.returncode}); log: {receiver.log_tail()}')
                time.sleep(a.poll_s)
            if final is None:
                raise ChildError(f'session {session} not ended in the file within the drain timeout; '
                                 f'log: {receiver.log_tail()}')
            res['pub'].update({k: v for k, v in pub.expect('result', a.ack_timeout + 15).items() if k != 'ev'})
            incomplete = [t for t, c, _ in polls if c < final]
            complete = [(t, p) for t, c, p in polls if c >= final]
            res['polls'] = len(polls)
            res['t_incomplete_ns'] = max(incomplete) if incomplete else None
            res['t_complete_ns'] = complete[0][0] if complete else None
            res['t_first_poll_ns'] = polls[0][0] if polls else None
            s1 = complete[0][1] if complete else proc_sample(receiver.popen.pid)
            res['ended_log_ns'] = line_ns(log_line(receiver, ended_text))
        res['proc'] = {'start': s0, 'end': s1}
    except ChildError as exc:
        res['error'] = str(exc)
    finally:
        for c in sorted(children, key=lambda c: c is receiver):  # the publisher first, the terminal last
            code = c.stop(grace=60.0 if c is receiver and case.config != 'bare' else 5.0)
            live.remove(c)
            res.setdefault('exit_codes', {})[c.name] = code
    if case.config != 'bare' and receiver is not None:
        stopped = STOPPED.search(receiver.log_path.read_text(errors='replace'))
        res['terminal_stopped'] = ({'trials': int(stopped[1]), 'messages': int(stopped[2]), 'lost': int(stopped[3]),
                                    'errors': int(stopped[4])} if stopped else None)
        errors = [line for line in receiver.log_path.read_text(errors='replace').splitlines()
                  if line.startswith(('[ERROR]', '[FATAL]')) or 'Traceback' in line]
        res['terminal_errors'] = errors[:10]
        path = data_dir / f'{SUBJECT}.h5'
        if res['error'] is None or path.exists():
            try:
                bag = read_bag(path, session, topic, case.stream, a)
                res.update({k: v for k, v in bag.items() if k != 'structure'})
                end = [s['time_ns'] for s in bag.get('structure', []) if s['change'] == f'end_session {session}']
                res['end_written_ns'] = end[0] if end else None
                last = res.get('last_ns') or 0
                res['done_ns'] = max(last, res.get('t_incomplete_ns') or 0) if last else None
            except Exception as exc:  # noqa: BLE001 - a file we cannot read is a finding, reported in the row
                res['error'] = (res['error'] + '; ' if res['error'] else '') + f'reading {path}: {exc}'
        if not a.keep_data:
            shutil.rmtree(data_dir, ignore_errors=True)
    res['case_s'] = round(time.monotonic() - t_start, 1)
    return res


def finish_row(res: dict[str, Any]) -> dict[str, Any]:
    """The table row of a case: rates, loss, CPU and memory."""
    pub = res.get('pub') or {}
    sent = pub.get('sent')
    rec = res.get('recorded')
    unique = res.get('unique')
    first, last, done = res.get('first_ns'), res.get('last_ns'), res.get('done_ns')
    lost = None
    if sent is not None and unique is not None:
        lost = sent - unique
        if res['stream'] == 'events' and res.get('events') is not None:
            lost = max(lost, sent - res['events_unique'])
    rx = rec / ((last - first) / 1e9) if rec and first and last and last > first else None
    recs = rec / ((done - first) / 1e9) if rec and first and done and done > first else None
    backlog = None
    if res['config'] != 'bare' and res.get('t_complete_ns') and last:
        # Seen incomplete after the last receive: the writer was behind until the first complete poll. Complete at
        # the first poll (taken once the publisher finished): it kept up (0; the poll's delay is only a bound).
        incomplete = res.get('t_incomplete_ns')
        backlog = max(0.0, (res['t_complete_ns'] - last) / 1e9) if incomplete and incomplete > last else 0.0
    p = res.get('proc') or {}
    s0, s1 = p.get('start'), p.get('end')
    cpu = s1['cpu_s'] - s0['cpu_s'] if s0 and s1 else None
    # The terminal receives in a child process (autopilot_terminal.receiver): its share, next to bare's whole.
    rx_cpu = (cpu - (s1['own_cpu_s'] - s0['own_cpu_s']) if res['config'] != 'bare' else cpu) if cpu is not None else None
    wall = s1['t'] - s0['t'] if s0 and s1 else None
    return {'section': res['section'], 'offered': res['offered'], 'config': res['config'], 'stream': res['stream'],
            'round': res.get('round', 0), 'sent': sent, 'pub_rate': pub.get('rate'), 'blocked': pub.get('blocked'), 'gave_up': pub.get('gave_up'),
            'acked': pub.get('acked'), 'recorded': rec,
            'unique': unique, 'events': res.get('events'), 'lost': lost,
            'rx_rate': rx, 'rec_rate': recs if res['config'] != 'bare' else rx, 'backlog_s': backlog,
            'x_bare': None, 'cpu_s': cpu, 'cpu_us_per_msg': cpu / rec * 1e6 if cpu is not None and rec else None,
            'rx_cpu_us_per_msg': rx_cpu / rec * 1e6 if rx_cpu is not None and rec else None,
            'cores': cpu / wall if cpu is not None and wall else None,
            'rss_start_mb': s0.get('rss_mb') if s0 else None, 'rss_peak_mb': s1.get('hwm_mb') if s1 else None,
            'lag_p50_ms': res.get('lag_p50_ms'), 'lag_max_ms': res.get('lag_max_ms'),
            'terminal_stopped': res.get('terminal_stopped'), 'error': res['error']}


def writer_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for w in result['results']:
        rate = w['messages'] / w['total_s'] if w['total_s'] else None
        rows.append({'section': 'writer', 'offered': 'max', 'config': 'Recorder' + ('' if w['decode'] else '-nodecode'),
                     'stream': 'events' if w['decode'] else 'raw', 'sent': w['n'], 'pub_rate': w['n'] / w['feed_s'],
                     'blocked': None, 'recorded': w['messages'], 'unique': w['messages'],
                     'events': w['events'] if w['decode'] else None, 'lost': w['n'] - w['messages'] + w['lost'],
                     'rx_rate': None, 'rec_rate': rate, 'backlog_s': None, 'x_bare': None, 'cpu_s': w['cpu_s'],
                     'cpu_us_per_msg': w['cpu_s'] / w['n'] * 1e6, 'cores': w['cpu_s'] / w['total_s'],
                     'rss_start_mb': None, 'rss_peak_mb': None, 'lag_p50_ms': None, 'lag_max_ms': None,
                     'write_us_per_msg': w['write_s'] / w['n'] * 1e6, 'max_pending': w['max_pending'],
                     'terminal_stopped': None, 'error': None if w['flushed'] else 'writer did not finish'})
    return rows


def median_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (section, offered, config): the round with the median rec/s; ``lost`` summed over the rounds
    and the first error kept (a loss in any round counts), every round's rate in ``round_rates``."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r['section'], r['offered'], r['config']), []).append(r)
    out = []
    for group in groups.values():
        ranked = sorted(group, key=lambda r: r['rec_rate'] or 0.0)
        row = dict(ranked[(len(ranked) - 1) // 2])  # the lower median: an even count does not flatter
        if len(group) > 1:
            losses = [r['lost'] for r in group]
            row['lost'] = None if None in losses else sum(losses)
            row['error'] = next((r['error'] for r in group if r['error']), None)
            row['rounds'] = len(group)
            row['round_rates'] = [r['rec_rate'] for r in group]
        out.append(row)
    return out


def add_ratios(rows: list[dict[str, Any]]) -> None:
    bare = {(r['section'], r['offered']): r for r in rows if r['config'] == 'bare'}
    for r in rows:
        b = bare.get((r['section'], r['offered']))
        if r['config'] != 'bare' and b and b['rx_rate'] and r['rec_rate']:
            r['x_bare'] = r['rec_rate'] / b['rx_rate']


def check_targets(rows: list[dict[str, Any]], a: argparse.Namespace) -> list[dict[str, Any]]:
    term = [r for r in rows if r['section'] == 'messages' and r['config'] == 'terminal']
    targets = []
    if term:
        def sustained(r: dict[str, Any]) -> bool:
            # A publisher paced at R delivers R only to its pacing granularity: 1 % tolerance on the rate.
            return (r['error'] is None and r['lost'] == 0 and r['backlog_s'] is not None
                    and r['backlog_s'] <= a.max_backlog_s and (r['rec_rate'] or 0) >= 0.99 * TARGET_RATE)
        ok = [r for r in term if sustained(r)]
        best = max(ok, key=lambda r: r['rec_rate'] or 0) if ok else None
        targets.append({'target': f'terminal records >= {TARGET_RATE:,.0f} msg/s (1 % tolerance), every message '
                                  f'(bag and events/gpio), keeping up (backlog <= {a.max_backlog_s:g} s)',
                        'passed': best is not None, 'row': best['offered'] if best else None,
                        'value': best['rec_rate'] if best else None,
                        'note': None if best else 'rows: ' + ', '.join(
                            f'{r["offered"]}: {fmt(r["rec_rate"], ",.0f")} msg/s, lost {r["lost"]}, backlog '
                            f'{fmt(r["backlog_s"], ".2f")} s' for r in term)})
    mx = next((r for r in term if r['offered'] == 'max'), None)
    bare = next((r for r in rows if r['section'] == 'messages' and r['config'] == 'bare' and r['offered'] == 'max'),
                None)
    if mx and bare:
        ratio = mx['x_bare']
        targets.append({'target': f'terminal at max >= {TARGET_RATIO:g}x bare rclpy (EventsExecutor) of the same run, '
                                  'losing none',
                        'passed': bool(ratio is not None and ratio >= TARGET_RATIO and mx['lost'] == 0
                                       and mx['error'] is None),
                        'row': 'max', 'value': ratio,
                        'note': f'terminal {fmt(mx["rec_rate"], ",.0f")} msg/s (lost {mx["lost"]}), bare '
                                f'{fmt(bare["rx_rate"], ",.0f")} msg/s (lost {bare["lost"]})'})
    return targets


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------

COLUMNS = (('section', 'section', ''), ('offered', 'offered', ''), ('config', 'config', ''), ('sent', 'sent', 'd'),
           ('pub_rate', 'pub/s', ',.0f'), ('recorded', 'recorded', 'd'), ('events', 'events', 'd'),
           ('lost', 'lost', 'd'), ('rx_rate', 'rx/s', ',.0f'), ('rec_rate', 'rec/s', ',.0f'),
           ('x_bare', 'x bare', '.2f'), ('backlog_s', 'backlog s', '.2f'), ('cpu_us_per_msg', 'CPU us/msg', '.1f'),
           ('rx_cpu_us_per_msg', 'rx us/msg', '.1f'), ('cores', 'cores', '.2f'), ('rss_peak_mb', 'RSS MiB', '.0f'), ('lag_p50_ms', 'lag p50 ms', '.1f'),
           ('lag_max_ms', 'lag max ms', '.0f'))


def print_report(rows: list[dict[str, Any]], targets: list[dict[str, Any]]) -> None:
    print_table(rows, COLUMNS, left=3, group='section')
    rounds = max((r.get('rounds', 1) for r in rows), default=1)
    if rounds > 1:
        print(f'(messages rows: the median of {rounds} rounds by rec/s, bare and terminal interleaved; lost: the sum '
              'over the rounds)')
    print('(rx/s: first to last receive; rec/s: into HDF5, first receive to file complete; x bare: rec/s over the '
          'bare row\'s rx/s at the same offer; CPU: the receiving process, all threads, with its children; rx: the '
          'process that takes the messages from DDS (the terminal\'s receiving child); writer rows: in-process '
          'Recorder, no DDS)')
    for r in rows:
        notes = []
        if r.get('gave_up'):
            notes.append(f'publisher GAVE UP after {r["sent"]} messages: publish() blocked for the stall limit (the '
                         'receiver stopped acknowledging)')
        elif r.get('blocked'):
            notes.append(f'publisher blocked {r["blocked"]}x (keep-all: 5000 unacknowledged, 100 ms each)')
        if r.get('acked') is False:
            notes.append('not all acknowledged after status IDLE')
        ts = r.get('terminal_stopped')
        if ts and (ts['lost'] or ts['errors']):
            notes.append(f'terminal says {ts["lost"]} lost, {ts["errors"]} errors')
        if r['error']:
            notes.append('ERROR: ' + r['error'].splitlines()[0][:300])
        if notes:
            print(f'  {r["section"]} {r["offered"]} {r["config"]}: ' + '; '.join(notes))
    for t in targets:
        note = f' ({t["note"]})' if t['note'] else ''
        value = fmt(t['value'], ',.0f' if t['value'] is None or t['value'] > 10 else '.2f')
        print(f'{"PASS" if t["passed"] else "FAIL"}: {t["target"]}: {value} at {t["row"] or "-"}{note}')


def versions() -> dict[str, Any]:
    out = ros_versions('h5py', 'numpy', 'autopilot-terminal')
    # The code measured: the commit, and whether the recorder's package differs from it (read-only git calls).
    for key, cmd in (('git_head', ['git', 'rev-parse', '--short', 'HEAD']),
                     ('git_changed_terminal', ['git', 'status', '--porcelain', '--', 'src/autopilot_terminal'])):
        try:
            out[key] = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out[key] = None
    return out


def plan(a: argparse.Namespace) -> list[Case]:
    cases = []
    # Rounds interleave bare and terminal, so a slow spell of this shared machine hits both alike.
    for k in range(a.rounds):
        for rate in a.rates:
            n = a.max_n if rate <= 0 else max(1, int(rate * a.seconds))
            cases += [Case('bare', 'events', rate, n, k), Case('terminal', 'events', rate, n, k)]
            if rate in a.nodecode_rates:
                cases.append(Case('terminal-nodecode', 'raw', rate, n, k))
    for fps in a.fps:
        n = max(1, int(fps * a.frame_seconds))
        cases += [Case('bare', 'frames', fps, n), Case('terminal', 'frames', fps, n),
                  Case('terminal-video', 'frames', fps, n)]
    return cases


def terminal_topics(config: str) -> list[str]:
    """The terminal's record_topics/video_topics parameters: camera frames raw into the bag (``terminal``), or
    encoded to MP4 with a frame table (``terminal-video``, the terminal's default for camera/image)."""
    if config == 'terminal-video':
        record = [t for t in RECORD_TOPICS if t != TOPICS['frames']]
        return ['-p', f'record_topics:={json.dumps(record)}', '-p', f'video_topics:={json.dumps([TOPICS["frames"]])}']
    return ['-p', f'record_topics:={json.dumps(RECORD_TOPICS)}', '-p', 'video_topics:=[""]']


def orchestrate(a: argparse.Namespace) -> int:
    env = dict(os.environ, ROS_DOMAIN_ID=str(a.domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
               PYTHONUNBUFFERED='1', RCUTILS_COLORIZED_OUTPUT='0')
    for var in ('ROS_STATIC_PEERS', 'FASTRTPS_DEFAULT_PROFILES_FILE', 'FASTDDS_DEFAULT_PROFILES_FILE',
                'FASTDDS_BUILTIN_TRANSPORTS', 'AUTOPILOT_EXECUTOR'):
        env.pop(var, None)  # the terminal as deployed; the frame publisher picks the large-SHM profile itself
    if not a.terminal.exists():
        sys.exit(f'{a.terminal} is missing: run `python scripts/setup.py` first')
    started_wall, started = datetime.now(timezone.utc), time.monotonic()
    machine = machine_info()
    cases = plan(a)
    print(f'recorder benchmark: domain {a.domain_id}, {len(cases)} cases, rates '
          f'{", ".join(c.offered for c in cases if c.config == "terminal")}', flush=True)

    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    live: list[Child] = []
    results: list[dict[str, Any]] = []
    writer: dict[str, Any] | None = None
    try:
        if a.writer_n > 0:
            print(f'  writer: in-process Recorder, {a.writer_n} gpio events, decode on / off ...', flush=True)
            child = Child('writer', child_cmd(a, 'writer', '--n', str(a.writer_n))
                          + (['--profile'] if a.profile else []), env, a.log_dir)
            live.append(child)
            try:
                writer = {k: v for k, v in child.expect('result', 900).items() if k != 'ev'}
            except ChildError as exc:
                writer = {'results': [], 'error': str(exc)}
                print(f'    ERROR: {exc}', flush=True)
            finally:
                child.stop(natural=10.0)
                live.remove(child)
        for i, case in enumerate(cases):
            res = run_case(case, i, a, env, live)
            results.append(res)
            row = finish_row(res)
            status = 'ok' if res['error'] is None else 'ERROR'
            label = f' round {case.round + 1}' if a.rounds > 1 and case.section == 'messages' else ''
            print(f'  [{i + 1}/{len(cases)}] {case.section} {case.offered} {case.config}{label}: {status}, '
                  f'sent {row["sent"]}, recorded {row["recorded"]}, lost {row["lost"]}, '
                  f'rec/s {fmt(row["rec_rate"], ",.0f")} ({res["case_s"]} s)', flush=True)
    finally:
        for c in list(live):
            c.stop(grace=1.0)
    round_rows = [finish_row(r) for r in results]
    rows = median_rows(round_rows) + (writer_rows(writer) if writer else [])
    add_ratios(rows)
    targets = check_targets(rows, a)
    machine['loadavg_end'] = list(os.getloadavg())
    print()
    print_report(rows, targets)
    if a.profile and writer:
        for w in writer['results']:
            print(f'\nwriter thread profile (decode={w["decode"]}, {w["n"]} messages), by own time:\n{w["profile"]}')
    params = {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()
              if k not in ('child', 'out', 'parent', 'cmd', 'session', 'stream', 'n', 'rate', 'mode', 'budget')}
    doc = {'benchmark': 'recorder', 'started': started_wall.isoformat(timespec='seconds'), 'terminal': str(a.terminal),
           'duration_s': round(time.monotonic() - started, 1), 'command': sys.argv, 'params': params,
           'machine': machine, 'versions': versions(), 'record_topics': RECORD_TOPICS,
           'rows': rows, 'round_rows': round_rows, 'targets': targets, 'cases': results,
           'writer': {k: v for k, v in (writer or {}).items()}}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=1, default=str) + '\n')
    print(f'JSON: {a.out}   child logs: {a.log_dir}')
    return 0


def parse_rate(text: str) -> float:
    text = text.strip().lower()
    if text == 'max':
        return 0.0
    return float(text[:-1]) * 1000 if text.endswith('k') else float(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or '').split('\n')[0])
    ap.add_argument('--quick', action='store_true', help='smoke run (< 30 s): 10k/s for 1 s and max for 20k messages, '
                    '30 fps for 1 s, a small writer run; no claims')
    ap.add_argument('--rates', nargs='+', type=parse_rate, default=None,
                    help='offered message rates (e.g. 10k 30000 max; default 10k 30k 60k max)')
    ap.add_argument('--rounds', type=int, default=None,
                    help='rounds of the message cases, bare and terminal interleaved; rows show the median '
                         '(default 3; quick 1)')
    ap.add_argument('--seconds', type=float, default=None, help='length of a paced message case (default 5; quick 1)')
    ap.add_argument('--max-n', type=int, default=None, help='messages of a max case (default 200000; quick 20000)')
    ap.add_argument('--nodecode-rates', nargs='*', type=parse_rate, default=None,
                    help='rates with a terminal-nodecode row (bench/raw: bag only; default max; quick none)')
    ap.add_argument('--fps', nargs='*', type=float, default=None, help='frame rates (default 30 90; quick 30)')
    ap.add_argument('--frame-seconds', type=float, default=None, help='length of a frame case (default 5; quick 1)')
    ap.add_argument('--width', type=int, default=640)
    ap.add_argument('--height', type=int, default=480)
    ap.add_argument('--writer-n', type=int, default=None,
                    help='messages of the in-process writer rows (default 200000; quick 20000; 0: skip)')
    ap.add_argument('--profile', action='store_true', help='cProfile the writer thread in the writer rows')
    ap.add_argument('--max-backlog-s', type=float, default=0.25,
                    help='target 1: the file must be complete this soon after the last receive')
    ap.add_argument('--end-delay-s', type=float, default=0.0,
                    help='publisher waits this long after its last message was acknowledged before status IDLE')
    ap.add_argument('--ack-timeout', type=float, default=None,
                    help='publisher waits this long for all acks after status IDLE (s; default 15, quick 3)')
    ap.add_argument('--stall-s', type=float, default=None, help='publisher gives up when publish() has been blocked '
                    'this long (the reader stopped acknowledging; default 10, quick 3)')
    ap.add_argument('--drain-timeout', type=float, default=120.0,
                    help='how long the terminal may take to have the session ended in the file (s)')
    ap.add_argument('--poll-s', type=float, default=0.1, help='bag polling interval while the writer drains (s)')
    ap.add_argument('--terminal', type=Path, default=TERMINAL_EXE,
                    help='the terminal executable (default: the installed one; another to try a change)')
    ap.add_argument('--ns', default='/bench', help='the fake pilot\'s namespace')
    ap.add_argument('--domain-id', type=int, default=int(os.environ.get('ROS_DOMAIN_ID') or
                                                         os.environ.get('BENCH_DOMAIN_ID') or 168))
    ap.add_argument('--timeout', type=float, default=20.0, help='discovery timeout per phase (s)')
    ap.add_argument('--out', type=Path, default=DEFAULT_OUT)
    ap.add_argument('--log-dir', type=Path, default=None, help='children\'s logs and data (default: a temp dir)')
    ap.add_argument('--keep-data', action='store_true', help='keep the subject files (frames: ~90 MB per s)')
    ap.add_argument('--child', choices=('pub', 'bare', 'writer', 'exec'), help=argparse.SUPPRESS)
    ap.add_argument('--parent', type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument('--stream', choices=tuple(TOPICS), default='events', help=argparse.SUPPRESS)
    ap.add_argument('--n', type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument('--rate', type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument('--session', default='', help=argparse.SUPPRESS)
    ap.add_argument('--mode', choices=('terminal', 'bare'), default='terminal', help=argparse.SUPPRESS)
    ap.add_argument('--budget', type=float, default=600.0, help=argparse.SUPPRESS)
    ap.add_argument('--idle-s', type=float, default=2.0, help=argparse.SUPPRESS)
    ap.add_argument('cmd', nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.cmd and a.cmd[0] == '--':
        a.cmd = a.cmd[1:]
    if a.cmd and a.child != 'exec':
        ap.error(f'unexpected arguments: {" ".join(a.cmd)}')
    q = a.quick
    a.rates = a.rates if a.rates is not None else ([10_000.0, 0.0] if q else [10_000.0, 30_000.0, 60_000.0, 0.0])
    a.seconds = a.seconds or (1.0 if q else 5.0)
    a.rounds = max(1, a.rounds or (1 if q else 3))
    a.max_n = a.max_n or (20_000 if q else 200_000)
    a.nodecode_rates = a.nodecode_rates if a.nodecode_rates is not None else ([] if q else [0.0])
    a.fps = a.fps if a.fps is not None else ([30.0] if q else [30.0, 90.0])
    a.frame_seconds = a.frame_seconds or (1.0 if q else 5.0)
    a.writer_n = a.writer_n if a.writer_n is not None else (20_000 if q else 200_000)
    a.ack_timeout = a.ack_timeout or (3.0 if q else 15.0)
    a.stall_s = a.stall_s or (3.0 if q else 10.0)
    return a


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv), {'pub': child_pub, 'bare': child_bare, 'writer': child_writer}, orchestrate, 'bench-recorder-')


if __name__ == '__main__':
    sys.exit(main())
