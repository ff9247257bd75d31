#!/usr/bin/env python3
"""Hardware benchmark: device nodes across processes, measured next to bare rclpy in the same run.

Sections (``--sections``, one function each, all returning rows for the common table/JSON writer;
more devices add a function to ``SECTIONS``):

``camera``  640x480 bgr8 ``sensor_msgs/Image`` (921,600 B of pixels) from one process to a subscriber
            process. Rows:

            * ``camera-node``: the installed ``camera`` executable, synthetic source at ``--fps`` target
              (it draws a scrolling pattern, a bar and the frame counter into every frame, then publishes).
            * ``rclpy-bare``: a bare rclpy publisher of the same message size on the same monotonic
              schedule, QoS best effort/keep-last 5 (what ``qos.STREAM`` is), writing only the counter:
              the floor any camera node pays for publishing.

            Each row is run under Fast DDS's built-in transports (``default``; the camera node is told
            ``AUTOPILOT_LARGE_SHM=0``), under autopilot_core's profile whose shared-memory segment is 16 MiB
            instead of the default 512 KiB (smaller than one frame) given to the publisher only
            (``shm16m-pub``: what the camera node does by itself) or to both processes (``shm16m``);
            ``--transports ... large_data`` adds ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA``.
            The subscriber (``autopilot_core`` executor, STREAM QoS) counts frames for ``--seconds`` after a
            warm-up; lost = gaps in the frame counter carried in the first 8 pixel bytes (transport losses plus
            slots the publisher itself missed; ``cam drop`` is the camera's own count since start, from
            ``camera/status``). Latency = receive
            wall time - header stamp (capture time). CPU = utime+stime from ``/proc/<pid>/stat`` of the
            publisher process (and its children) over the window, in cores (1.0 = one core busy).

``gpio``    edge-to-subscriber latency of GPIO events (``autopilot_msgs/GpioEvent``, reliable/keep-all = ``qos.EVENTS``)
            across processes, ``--edges`` edges (after ``--gpio-warmup-edges`` not counted) paced
            ``--gpio-interval-ms`` apart. Rows:

            * ``gpio-node``: the installed ``gpio`` executable (``launch/params/rig_sim.yaml``, sim backend); a
              driver process publishes ``gpio/sim_input`` toggling ``poke_left`` (glitch filter 0, both edges:
              one event per command), a subscriber process receives ``gpio/events``.
            * ``rclpy-bare``: a plain rclpy publisher of GpioEvent (same QoS), stamped just before publish.

            Both rows use the same subscriber: bare rclpy, ``rclpy.experimental.EventsExecutor``. Latency =
            receive ``time.time_ns()`` in the callback - ``header.stamp`` (the edge's time). ``tick_us`` is NOT
            used: it counts microseconds since the node's backend started (``SimBackend._epoch``), not absolute
            CLOCK_MONOTONIC; the node maps it to ``stamp`` (system time) with a ~1 us error for the sim
            (``gpio/ticks.py``), so receive - stamp is the edge-to-callback time for both rows. ``lost`` counts
            all edges sent (warm-up included); ``order`` checks the levels arrive alternating as sent.
            ``pub cores``: CPU of the gpio node (or the bare publisher) while the edges are sent.
            Steady state: the first edge goes ``--gpio-settle-s`` (5 s) after matching. Sent 0.5 s after
            matching, ~40% of gpio-node runs (never the bare row) showed ONE stall of 0.15-0.35 s about 3 s
            after the three processes matched: edges stamped on schedule, then delivered in a burst (the hop
            after the node's publish; also with RMW_FASTRTPS_PUBLICATION_MODE=SYNCHRONOUS). It followed the time
            since matching, not the edge count (a 3 s settle moved it to the first edges), and happened at most
            once in 10 s (2000-edge) runs. JSON rows keep every latency (``lat_us``, arrival order, warm-up
            included), and ``sent`` / ``ended`` / ``waited_s`` to tell an early stop from a loss.

Target (camera): camera-node delivers >= 60 frames/s using < 1 core. Prints a table and PASS/FAIL lines,
writes JSON (``--out``, default bench/results/hardware.json). Exit status 0 even on FAIL (a measurement).

No target for gpio (a measurement next to bare rclpy). Run: ``python bench/hardware.py`` (~1.5 min) or ``--quick`` (smoke run, short windows, no claims).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from common import GPIO_EXE, GPIO_PARAMS, ROOT, Child, ChildError, dist_version, emit, print_table

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / 'results' / 'hardware.json'
CAMERA_EXE = ROOT / 'install' / 'autopilot_hardware' / 'lib' / 'autopilot_hardware' / 'camera'
CLK_TCK = os.sysconf('SC_CLK_TCK')
TARGET_FPS, TARGET_CORES = 60.0, 1.0



# --------------------------------------------------------------------------------------------------
# Common: process CPU, table and JSON
# --------------------------------------------------------------------------------------------------

def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, utime+stime in seconds) of ``pid``, or None when it is gone."""
    try:
        text = Path(f'/proc/{pid}/stat').read_text()
    except OSError:
        return None
    fields = text[text.rindex(')') + 2:].split()  # after "pid (comm) ": state is fields[0]
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user+system, all threads) of ``pid`` and its descendants (a launcher may fork)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st is not None:
                stats[int(entry)] = st
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            total += stats[p][1]
            todo.extend(c for c, (ppid, _) in stats.items() if ppid == p)
    return total


def versions() -> dict[str, str]:
    """The versions of those of the distributions that are installed."""
    dists = ('ros-jazzy-rclpy', 'ros-rclpy', 'ros-jazzy-rmw-fastrtps-cpp', 'opencv-python-headless', 'numpy')
    return {d: v for d in dists if (v := dist_version(d)) is not None}


def write_json(path: Path, sections: dict[str, dict[str, Any]], params: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        'benchmark': 'hardware', 'date': datetime.now(timezone.utc).isoformat(timespec='seconds'),
        'params': params, 'sections': sections, 'versions': versions(),
        'machine': {'cpu_count': os.cpu_count(), 'platform': platform.platform(),
                    'python': platform.python_version(), 'processor': platform.processor()},
    }
    path.write_text(json.dumps(doc, indent=2) + '\n')


# --------------------------------------------------------------------------------------------------
# Camera section: child roles
# --------------------------------------------------------------------------------------------------

def child_subscriber(a: argparse.Namespace) -> int:
    """Count frames on ``camera/image`` for ``--seconds`` after ``--warmup``; report one result line."""
    import rclpy
    from autopilot_msgs.msg import CameraStatus
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    from autopilot_core import executors, qos

    rclpy.init()
    node = Node('bench_camera_sub')
    st: dict[str, Any] = {'phase': 'warmup', 'n': 0, 'first': None, 'last': None, 'lat': [], 'bad': 0,
                          't0': 0.0, 'cpu0': 0.0, 'shape': None, 'status': None}

    def on_image(m: Image) -> None:
        now_wall, now = time.time_ns(), time.monotonic()
        if st['phase'] != 'measure':
            return
        counter = int.from_bytes(m.data[:8].tobytes(), 'little')
        if st['first'] is None:
            st['first'] = counter
        st['last'] = counter
        st['n'] += 1
        st['t_last'] = now
        st['lat'].append((now_wall - (m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec)) / 1e6)
        st['shape'] = (m.width, m.height, m.encoding, len(m.data))

    def on_status(s: CameraStatus) -> None:
        st['status'] = {'fps_achieved': s.fps_achieved, 'frames': s.frames, 'dropped': s.dropped}

    sub = node.create_subscription(Image, 'camera/image', on_image, qos.STREAM)
    node.create_subscription(CameraStatus, 'camera/status', on_status, qos.STATUS)
    ex = executors.make_executor(context=node.context)
    got_first: dict[str, bool] = {'v': False}

    def first(m: Image) -> None:
        got_first['v'] = True

    # Wait for the publisher and its first frame (a stalled transport shows here, not as a hang).
    t_start = time.monotonic()
    if not executors.spin(node, ex, until=lambda: sub.get_publisher_count() > 0, timeout_sec=a.timeout):
        emit('error', message=f'no publisher on camera/image within {a.timeout} s')
        return 1
    probe = node.create_subscription(Image, 'camera/image', first, qos.STREAM)
    if not executors.spin(node, ex, until=lambda: got_first['v'], timeout_sec=a.timeout):
        emit('result', n=0, stalled=True, wait_s=time.monotonic() - t_start)
        return 0
    node.destroy_subscription(probe)
    executors.spin(node, ex, timeout_sec=a.warmup)
    st['phase'] = 'measure'
    st['t0'], st['cpu0'] = time.monotonic(), time.process_time()
    emit('window_start', t=st['t0'])
    executors.spin(node, ex, timeout_sec=a.seconds)
    st['phase'] = 'done'
    t1, cpu1 = time.monotonic(), time.process_time()
    emit('window_end', t=t1)
    lat = sorted(st['lat'])
    span = (st['last'] - st['first'] + 1) if st['first'] is not None else 0
    emit('result', n=st['n'], stalled=False, seconds=t1 - st['t0'], fps=st['n'] / (t1 - st['t0']),
         lost=max(0, span - st['n']), lat_p50_ms=statistics.median(lat) if lat else None,
         lat_p99_ms=lat[int(0.99 * (len(lat) - 1))] if lat else None,
         sub_cores=(cpu1 - st['cpu0']) / (t1 - st['t0']), shape=st['shape'], status=st['status'],
         executor=executors.executor_name(ex))
    node.destroy_node()
    rclpy.shutdown()
    return 0


def child_bare_publisher(a: argparse.Namespace) -> int:
    """Bare rclpy: publish width x height bgr8 Images on a monotonic schedule, counter in the first bytes."""
    from array import array

    import numpy as np
    import rclpy
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node('bench_bare_camera')
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.BEST_EFFORT,
                     durability=DurabilityPolicy.VOLATILE)
    pub = node.create_publisher(Image, 'camera/image', qos)
    msg = Image(height=a.height, width=a.width, encoding='bgr8', step=a.width * 3)
    msg.data = array('B', bytes(a.width * a.height * 3))
    view = np.frombuffer(msg.data, np.uint8)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    period = 1.0 / a.fps
    nxt = time.monotonic()
    i = 0
    emit('ready')
    while not stop.is_set():
        now = time.monotonic()
        if now < nxt:
            time.sleep(nxt - now)
        elif now - nxt > period:
            i += int((now - nxt) / period)  # missed slots, as the camera node counts them
            nxt += int((now - nxt) / period) * period
        nxt += period
        view[:8] = np.frombuffer(i.to_bytes(8, 'little'), np.uint8)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 1_000_000_000)
        pub.publish(msg)
        i += 1
    node.destroy_node()
    rclpy.shutdown()
    return 0


# --------------------------------------------------------------------------------------------------
# Camera section: orchestration
# --------------------------------------------------------------------------------------------------

def run_camera_case(source: str, transport: str, a: argparse.Namespace, env: dict[str, str],
                    log_dir: Path, profile: Path) -> dict[str, Any]:
    row: dict[str, Any] = {'section': 'camera', 'source': source, 'transport': transport, 'fps_target': a.fps,
                           'width': a.width, 'height': a.height, 'error': None}
    # The camera node applies the large-SHM profile itself unless told not to: rows say which it got.
    env = dict(env, AUTOPILOT_LARGE_SHM='0')
    pub_env = env
    if transport == 'shm16m':
        env['FASTRTPS_DEFAULT_PROFILES_FILE'] = str(profile)
    elif transport == 'shm16m-pub':
        # Only the camera's process gets the profile, as rig.launch.yaml does: the segment is the writer's.
        pub_env = dict(env, FASTRTPS_DEFAULT_PROFILES_FILE=str(profile))
    elif transport == 'large_data':
        env['FASTDDS_BUILTIN_TRANSPORTS'] = 'LARGE_DATA'  # Fast DDS >= 2.13: SHM + TCP for large samples
    tag = f'{source}-{transport}'
    if source == 'camera-node':
        pub_cmd = [str(CAMERA_EXE), '--ros-args', '-p', 'backend:=synthetic', '-p', f'fps:={a.fps}',
                   '-p', f'width:={a.width}', '-p', f'height:={a.height}']
    else:
        pub_cmd = [sys.executable, __file__, '--child', 'bare-pub', '--fps', str(a.fps), '--width', str(a.width),
                   '--height', str(a.height)]
    sub_cmd = [sys.executable, __file__, '--child', 'sub', '--seconds', str(a.seconds), '--warmup', str(a.warmup),
               '--timeout', str(a.timeout)] + (['--status'] if source == 'camera-node' else [])
    pub = Child(f'{tag}-pub', pub_cmd, pub_env, log_dir)
    sub = Child(f'{tag}-sub', sub_cmd, env, log_dir)
    try:
        sub.expect('window_start', a.timeout * 2 + a.warmup + 5)
        cpu0, t0 = tree_cpu_seconds(pub.popen.pid), time.monotonic()
        sub.expect('window_end', a.seconds + 10)
        cpu1, t1 = tree_cpu_seconds(pub.popen.pid), time.monotonic()
        res = sub.expect('result', 10)
        row.update(frames=res['n'], fps=res['fps'], lost=res['lost'], lat_p50_ms=res['lat_p50_ms'],
                   lat_p99_ms=res['lat_p99_ms'], pub_cores=(cpu1 - cpu0) / (t1 - t0), sub_cores=res['sub_cores'],
                   shape=res['shape'], executor=res['executor'], stalled=False)
        if res.get('status'):
            row.update(node_fps=res['status']['fps_achieved'], node_dropped=res['status']['dropped'])
    except ChildError as exc:
        row['error'] = str(exc)
    finally:
        for c in (sub, pub):
            c.stop()
    # A window that never started because no frame arrived: report it as a stall, not as an error.
    if row['error'] and sub.seen.get('result', {}).get('stalled'):
        row.update(stalled=True, frames=0, fps=0.0, error=None)
    return row


def bench_camera(a: argparse.Namespace, env: dict[str, str], log_dir: Path) -> dict[str, Any]:
    from autopilot_core.transport import large_shm_profile
    profile = large_shm_profile()
    rows = []
    for transport in a.transports:
        for source in ('camera-node', 'rclpy-bare'):
            print(f'  camera: {source} / {transport} ...', flush=True)
            rows.append(run_camera_case(source, transport, a, env, log_dir, profile))
    targets = []
    for r in rows:
        if a.quick or r['source'] != 'camera-node' or r['error'] or r.get('stalled'):
            continue
        ok = r['fps'] >= TARGET_FPS and r['pub_cores'] < TARGET_CORES
        targets.append({'transport': r['transport'], 'fps': r['fps'], 'pub_cores': r['pub_cores'],
                        'pass': ok})
    return {'rows': rows, 'targets': targets,
            'notes': {'fastdds_profile_shm16m': profile.read_text(),
                      'target': f'camera-node >= {TARGET_FPS:g} frames/s delivered, publisher < {TARGET_CORES:g} core'}}


CAMERA_COLUMNS = [('source', 'row', ''), ('transport', 'fastdds', ''), ('fps_target', 'target', '.0f'),
                  ('fps', 'rx fps', '.1f'), ('lost', 'lost', 'd'), ('node_dropped', 'cam drop', 'd'),
                  ('lat_p50_ms', 'lat p50 ms', '.2f'), ('lat_p99_ms', 'lat p99 ms', '.2f'),
                  ('pub_cores', 'pub cores', '.2f'), ('sub_cores', 'sub cores', '.2f'), ('note', 'note', '')]


def report_camera(result: dict[str, Any]) -> None:
    rows = []
    for r in result['rows']:
        r = dict(r)
        r['note'] = 'STALLED: no frame arrived' if r.get('stalled') else (r['error'] or '')[:80]
        rows.append(r)
    print_table(rows, CAMERA_COLUMNS)
    if not result['targets']:
        print('(no target check: quick run, or no camera-node row completed)')
    for t in result['targets']:
        print(f"{'PASS' if t['pass'] else 'FAIL'} camera ({t['transport']}): {t['fps']:.1f} frames/s delivered "
              f"(target >= {TARGET_FPS:g}), camera process {t['pub_cores']:.2f} cores (target < {TARGET_CORES:g})")


# --------------------------------------------------------------------------------------------------
# GPIO section: child roles
# --------------------------------------------------------------------------------------------------

def _events_qos() -> Any:
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    return QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)  # what qos.EVENTS is, spelt out for bare rclpy


def _wait_count(count: Callable[[], int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while count() == 0:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _paced(total: int, interval_s: float, stop: threading.Event) -> Any:
    """Yield 0..total-1 on a monotonic schedule ``interval_s`` apart (late slots are not made up twice)."""
    nxt = time.monotonic()
    for i in range(total):
        if stop.is_set():
            return
        now = time.monotonic()
        if now < nxt:
            time.sleep(nxt - now)
        nxt = max(nxt + interval_s, time.monotonic())
        yield i


def child_gpio_subscriber(a: argparse.Namespace) -> int:
    """Bare rclpy EventsExecutor subscriber of ``gpio/events``: latency = receive wall time - header stamp."""
    import rclpy
    from autopilot_msgs.msg import GpioEvent
    from rclpy.experimental import EventsExecutor
    from rclpy.task import Future

    rclpy.init()
    node = rclpy.create_node('bench_gpio_sub')
    total = a.edges + a.gpio_warmup_edges
    lat_ns: list[int] = []
    levels: list[bool] = []
    done: Future = Future()

    def on_event(m: GpioEvent) -> None:
        now = time.time_ns()
        if m.device != a.gpio_device:
            return
        lat_ns.append(now - (m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec))
        levels.append(m.level)
        if len(lat_ns) >= total and not done.done():
            done.set_result(True)

    sub = node.create_subscription(GpioEvent, 'gpio/events', on_event, _events_qos())
    ex = EventsExecutor(context=node.context)
    ex.add_node(node)
    if not _wait_count(sub.get_publisher_count, a.timeout):
        emit('error', message=f'no publisher on gpio/events within {a.timeout} s')
        return 1
    emit('ready')
    t_ready = time.monotonic()
    deadline = t_ready + a.timeout + a.gpio_settle_s + 2 * total * a.gpio_interval_ms / 1000
    while not done.done() and rclpy.ok(context=node.context):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ex.spin_until_future_complete(done, timeout_sec=min(1.0, remaining))  # 1 s slices: never hangs
    measured = sorted(x / 1e6 for x in lat_ns[a.gpio_warmup_edges:])
    # Sent levels alternate starting low (pull-up input at rest high; the bare publisher does the same).
    order_ok = all(lv == bool(i % 2) for i, lv in enumerate(levels))

    def pct(q: float) -> float | None:
        return measured[int(q * (len(measured) - 1))] if measured else None

    emit('result', received=len(lat_ns), delivered=len(measured), lost=max(0, total - len(lat_ns)),
         order_ok=order_ok, lat_p50_ms=statistics.median(measured) if measured else None,
         lat_p90_ms=pct(0.90), lat_p99_ms=pct(0.99), lat_max_ms=measured[-1] if measured else None,
         lat_mean_ms=statistics.fmean(measured) if measured else None, executor=type(ex).__name__,
         lat_us=[round(x / 1000) for x in lat_ns], waited_s=time.monotonic() - t_ready,
         ended='all' if done.done() else 'deadline' if time.monotonic() >= deadline else 'shutdown')  # every edge in arrival order, warm-up included
    ex.shutdown(timeout_sec=1.0)
    node.destroy_node()
    rclpy.shutdown()
    return 0


def _publish_paced(a: argparse.Namespace, node_name: str, msg_type: Any, topic: str,
                   fill: Callable[[Any, int], None]) -> int:
    """Wait for a matched subscriber, then publish ``edges + warm-up`` messages ``--gpio-interval-ms`` apart."""
    import rclpy
    from rclpy.duration import Duration

    rclpy.init()
    node = rclpy.create_node(node_name)
    pub = node.create_publisher(msg_type, topic, _events_qos())
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if not _wait_count(pub.get_subscription_count, a.timeout):
        emit('error', message=f'no subscriber on {topic} within {a.timeout} s')
        return 1
    time.sleep(a.gpio_settle_s)  # let both ends finish matching (volatile: nothing sent before a match is kept)
    emit('started')
    sent = 0
    for i in _paced(a.edges + a.gpio_warmup_edges, a.gpio_interval_ms / 1000, stop):
        msg = msg_type()
        fill(msg, i)
        pub.publish(msg)
        sent += 1
    pub.wait_for_all_acked(Duration(seconds=5.0))
    emit('done', sent=sent)
    node.destroy_node()
    rclpy.shutdown()
    return 0


def child_gpio_driver(a: argparse.Namespace) -> int:
    """Drive the gpio node's sim input: one SimInput per edge, levels alternating low/high (hold 0)."""
    from autopilot_msgs.msg import SimInput

    def fill(m: SimInput, i: int) -> None:
        m.device, m.level, m.hold_us = a.gpio_device, bool(i % 2), 0
        m.header.stamp.sec, m.header.stamp.nanosec = divmod(time.time_ns(), 1_000_000_000)

    return _publish_paced(a, 'bench_gpio_driver', SimInput, 'gpio/sim_input', fill)


def child_gpio_bare_publisher(a: argparse.Namespace) -> int:
    """Bare rclpy: GpioEvent with tick_us = monotonic us and stamp = wall time, both just before publish."""
    from autopilot_msgs.msg import GpioEvent

    def fill(m: GpioEvent, i: int) -> None:
        m.device, m.pin, m.level, m.backend = a.gpio_device, 17, bool(i % 2), 'bare'
        m.tick_us = time.monotonic_ns() // 1000
        m.tick = m.tick_us % (1 << 32)
        m.header.stamp.sec, m.header.stamp.nanosec = divmod(time.time_ns(), 1_000_000_000)

    return _publish_paced(a, 'bench_gpio_bare', GpioEvent, 'gpio/events', fill)


# --------------------------------------------------------------------------------------------------
# GPIO section: orchestration
# --------------------------------------------------------------------------------------------------

def run_gpio_case(source: str, a: argparse.Namespace, env: dict[str, str], log_dir: Path) -> dict[str, Any]:
    row: dict[str, Any] = {'section': 'gpio', 'source': source, 'edges': a.edges, 'warmup_edges': a.gpio_warmup_edges,
                           'interval_ms': a.gpio_interval_ms, 'device': a.gpio_device, 'error': None}
    common = ['--edges', str(a.edges), '--gpio-warmup-edges', str(a.gpio_warmup_edges), '--gpio-interval-ms',
              str(a.gpio_interval_ms), '--gpio-device', a.gpio_device, '--gpio-settle-s', str(a.gpio_settle_s), '--timeout', str(a.timeout)]
    me = [sys.executable, __file__, '--child']
    children: list[Child] = []
    total = a.edges + a.gpio_warmup_edges
    try:
        if source == 'gpio-node':
            children.append(Child('gpio-node', [str(GPIO_EXE), '--ros-args', '--params-file', str(a.gpio_params),
                                                '-p', f'calibration_file:={log_dir / "gpio_calibration.jsonl"}'],
                                  env, log_dir))
            sub = Child('gpio-node-sub', me + ['gpio-sub'] + common, env, log_dir)
            children.insert(0, sub)
            sub.expect('ready', a.timeout + 10)  # the driver starts once the events subscriber is matched
            pub = Child('gpio-node-driver', me + ['gpio-drive'] + common, env, log_dir)
        else:
            sub = Child('rclpy-bare-sub', me + ['gpio-sub'] + common, env, log_dir)
            children.insert(0, sub)
            pub = Child('rclpy-bare-pub', me + ['gpio-bare-pub'] + common, env, log_dir)
        children.insert(1, pub)
        pub.expect('started', a.timeout + 10)
        cpu0, t0 = tree_cpu_seconds(children[-1].popen.pid), time.monotonic()
        row['sent'] = pub.expect('done', 2 * total * a.gpio_interval_ms / 1000 + 15)['sent']
        cpu1, t1 = tree_cpu_seconds(children[-1].popen.pid), time.monotonic()
        res = sub.expect('result', a.timeout + 10)
        row.update({k: res[k] for k in ('received', 'delivered', 'lost', 'order_ok', 'lat_p50_ms', 'lat_p90_ms',
                                        'lat_p99_ms', 'lat_max_ms', 'lat_mean_ms', 'executor', 'lat_us', 'waited_s', 'ended')})
        row['pub_cores'] = (cpu1 - cpu0) / (t1 - t0)  # the gpio node / the bare publisher, while sending
    except ChildError as exc:
        row['error'] = str(exc)
    finally:
        for c in children:
            c.stop()
    return row


def bench_gpio(a: argparse.Namespace, env: dict[str, str], log_dir: Path) -> dict[str, Any]:
    rows = []
    for source in ('gpio-node', 'rclpy-bare'):
        print(f'  gpio: {source} ...', flush=True)
        rows.append(run_gpio_case(source, a, env, log_dir))
    by = {r['source']: r for r in rows if not r['error'] and r.get('delivered')}
    added = None
    if 'gpio-node' in by and 'rclpy-bare' in by:
        added = {k: by['gpio-node'][k] - by['rclpy-bare'][k] for k in ('lat_p50_ms', 'lat_p99_ms')}
    return {'rows': rows, 'gpio_node_minus_bare_ms': added,
            'notes': {'params_file': str(a.gpio_params),
                      'latency': 'subscriber receive time.time_ns() - header.stamp (edge time); tick_us counts '
                                 'from the backend start, not absolute CLOCK_MONOTONIC, so it is not used',
                      'subscriber': 'bare rclpy EventsExecutor, reliable/keep-all/volatile for both rows'}}


GPIO_COLUMNS = [('source', 'row', ''), ('edges', 'edges', 'd'), ('interval_ms', 'every ms', 'g'),
                ('delivered', 'rx', 'd'), ('lost', 'lost', 'd'), ('order', 'order', ''),
                ('lat_p50_ms', 'lat p50 ms', '.3f'), ('lat_p99_ms', 'lat p99 ms', '.3f'),
                ('lat_max_ms', 'lat max ms', '.3f'), ('pub_cores', 'pub cores', '.2f'), ('note', 'note', '')]


def report_gpio(result: dict[str, Any]) -> None:
    rows = []
    for r in result['rows']:
        r = dict(r)
        r['order'] = None if r.get('order_ok') is None else ('ok' if r['order_ok'] else 'BAD')
        r['note'] = (r['error'] or '')[:80]
        rows.append(r)
    print_table(rows, GPIO_COLUMNS)
    added = result.get('gpio_node_minus_bare_ms')
    if added:
        print(f"gpio node adds {added['lat_p50_ms']:+.3f} ms at p50, {added['lat_p99_ms']:+.3f} ms at p99 "
              f"over bare rclpy (edge -> subscriber callback)")


#: name -> (measure(args, env, log_dir) -> section result, report(section result)). Add devices here.
SECTIONS: dict[str, tuple[Callable[[argparse.Namespace, dict[str, str], Path], dict[str, Any]],
                          Callable[[dict[str, Any]], None]]] = {
    'camera': (bench_camera, report_camera),
    'gpio': (bench_gpio, report_gpio),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--quick', action='store_true', help='smoke run: short windows, 30 fps target')
    ap.add_argument('--sections', nargs='+', default=list(SECTIONS), choices=list(SECTIONS))
    ap.add_argument('--out', type=Path, default=DEFAULT_OUT)
    ap.add_argument('--domain-id', type=int, default=None, help='ROS_DOMAIN_ID for the children (default: 57)')
    ap.add_argument('--log-dir', type=Path, default=None)
    ap.add_argument('--fps', type=float, default=None, help='camera target frame rate (default 90; quick 30)')
    ap.add_argument('--width', type=int, default=640)
    ap.add_argument('--height', type=int, default=480)
    ap.add_argument('--seconds', type=float, default=None, help='measurement window (default 5; quick 1.5)')
    ap.add_argument('--warmup', type=float, default=None, help='warm-up before the window (default 2; quick 0.5)')
    ap.add_argument('--timeout', type=float, default=15.0, help='discovery / first-frame timeout')
    ap.add_argument('--transports', nargs='+', default=['default', 'shm16m-pub'], choices=['default', 'shm16m', 'shm16m-pub', 'large_data'],
                    help='Fast DDS transport setups to run each row under (large_data: FASTDDS_BUILTIN_TRANSPORTS)')
    ap.add_argument('--edges', type=int, default=None, help='gpio edges measured per row (default 500; quick 100)')
    ap.add_argument('--gpio-warmup-edges', type=int, default=None, help='gpio edges sent first, not counted '
                    '(default 20; quick 10)')
    ap.add_argument('--gpio-interval-ms', type=float, default=5.0, help='gpio: time between edges')
    ap.add_argument('--gpio-settle-s', type=float, default=None, help='gpio: wait after matching before the first '
                    'edge (default 5: past the one-off ~0.3 s discovery stall, see the docstring; quick 0.5)')
    ap.add_argument('--gpio-device', default='poke_left', help='gpio input driven (glitch 0, both edges)')
    ap.add_argument('--gpio-params', type=Path, default=GPIO_PARAMS, help='params file of the gpio node')
    ap.add_argument('--child', choices=['sub', 'bare-pub', 'gpio-sub', 'gpio-drive', 'gpio-bare-pub'],
                    help=argparse.SUPPRESS)
    ap.add_argument('--status', action='store_true', help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.edges = a.edges or (100 if a.quick else 500)
    a.gpio_warmup_edges = a.gpio_warmup_edges if a.gpio_warmup_edges is not None else (10 if a.quick else 20)
    a.gpio_settle_s = a.gpio_settle_s if a.gpio_settle_s is not None else (0.5 if a.quick else 5.0)
    if a.child:
        try:
            return {'sub': child_subscriber, 'bare-pub': child_bare_publisher, 'gpio-sub': child_gpio_subscriber,
                    'gpio-drive': child_gpio_driver, 'gpio-bare-pub': child_gpio_bare_publisher}[a.child](a)
        except Exception as exc:  # noqa: BLE001 - reported to the orchestrator as one line
            emit('error', message=f'{type(exc).__name__}: {exc}')
            return 1
    a.fps = a.fps or (30.0 if a.quick else 90.0)
    a.seconds = a.seconds or (1.5 if a.quick else 5.0)
    a.warmup = a.warmup if a.warmup is not None else (0.5 if a.quick else 2.0)
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST', PYTHONUNBUFFERED='1',
               RCUTILS_COLORIZED_OUTPUT='0')
    env['ROS_DOMAIN_ID'] = str(a.domain_id if a.domain_id is not None else env.get('ROS_DOMAIN_ID', '57'))
    env.pop('FASTRTPS_DEFAULT_PROFILES_FILE', None)
    env.pop('FASTDDS_BUILTIN_TRANSPORTS', None)
    log_dir = a.log_dir or Path(tempfile.mkdtemp(prefix='bench-hardware-'))
    log_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    for name in a.sections:
        measure, report = SECTIONS[name]
        print(f'{name}:', flush=True)
        results[name] = measure(a, env, log_dir)
        report(results[name])
    params = {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()
              if k not in ('child', 'status', 'out', 'log_dir')}
    write_json(a.out, results, params)
    print(f'JSON: {a.out}   child logs: {log_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
