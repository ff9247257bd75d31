#!/usr/bin/env python3
"""The Terminal window under load: one terminal with 10 / 25 / 50 simulated pilots at 10 trials/s each.

Per row (fresh processes every time):

- ``terminal``: the installed ``terminal`` executable, ``data_dir`` and ``protocol_dir`` in a temp dir. It finds
  the simulated pilots by their ``status`` topics and lists them in ``/terminal/pilots``, which is where the window
  learns of them. It refuses to record their sessions (it did not start them) and says so, rate-limited.
- ``pilots``: **simulated pilots, not the real pilot node**: ``--per-process`` (10) lightweight nodes per process,
  namespaces ``/sim00``, ``/sim01``, ... node name ``pilot``. Each publishes its heartbeat ``status``
  (PilotStatus, ``qos.STATUS``, 2 Hz, RUNNING, task ``2afc``, a subject and a session id), a TrialData on
  ``trials`` (``qos.TRIALS``) every 1/``--rate`` s with 2AFC's fields (``TwoAFC.fields()``, random plausible
  values, built with ``autopilot_core.trial_fields``), and ``--gpio-per-trial`` GpioEvents on ``gpio/events``
  (``qos.EVENTS``) half a period after each trial (the next trial's pokes). Pilots are spread over the period.
- ``gui``: the real ``MainWindow`` + ``Bridge`` on Qt's offscreen platform, shown. Once all N pilots are in its
  table, online and plotted, it waits ``--settle-s`` and measures for ``--seconds``:

  * UI-thread blocks: a 5 ms precise QTimer; a block is a firing gap minus 5 ms (max, p99), next to the window's
    own ``longest_drain_s`` (reset at the interval's start);
  * trial-to-plot latency: a subclass of MainWindow records, after each ``_draw`` (``PilotPlots.draw``
    returned: the plot items hold the trial; Qt paints them on its next pass), ROS time now minus the trial's
    ``header.stamp`` (the publisher's ROS time, same host) for every trial drawn for the first time: wire, the
    bridge's queue, the 30 ms drain, the 200 ms per-pilot redraw limit (``PLOT_S``) and the per-drain redraw
    budget (``DRAW_BUDGET_S``) included; a trial received but not drawn ``--grace-s`` after the interval counts
    with its age then (a lower bound), unless its pilot's plots were scrolled out of view (1200 x 900 window):
    the window redraws those only when shown, so their trials are counted apart (``hidden_undrawn``);
  * CPU: process CPU time (all threads: Qt, the bridge's ROS thread, Fast DDS) over wall time; memory: RSS at the
    start and end of the interval (growth) and the process's peak (VmHWM);
  * trials received vs published: per pilot, trials stamped within the interval that reached the bridge (a
    subclass notes them on the ROS thread); published = the span of their
    trial numbers (consecutive per session), so a trial dropped by the best-effort subscriptions is a gap.
- ``bare``: bare rclpy in the same run and interval: a plain process with the bridge's subscriptions (registry,
  subjects, /rosout, each pilot's trials and gpio/events, the same QoS) on ``make_executor()``, no Qt; callbacks
  only count and take the latency. The window's CPU is reported as a ratio of its CPU. A thread of it sleeps 5 ms
  in a loop and takes the same block measure as the window's timer (``bare block``): the share of a block that the
  loaded machine and the GIL alone cause.
- the window's collector pauses in the interval (``gc.callbacks``), per generation, next to its blocks.
- ``machine block``: the same 5 ms measure on a thread of the orchestrator, which only waits on pipes: what the
  loaded machine's scheduler alone costs a thread (neither rclpy nor another thread's GIL in the way).

Diagnosis: while the UI thread is blocked (no timer tick for 0.1 s), a monitor thread samples where it is, every
0.1 s (``ui_blocked_where`` in the JSON).

Targets (PASS/FAIL lines, exit status 0 either way): longest UI-thread block < 50 ms and trial-to-plot p99 <
200 ms, per row. JSON (``--out``, default bench/results/gui.json): params, machine, versions, rows, targets,
per-row details (phase timings, the terminal's and the pilot processes' CPU, exit codes).

Run: ``python bench/gui.py`` (rows 10, 25, 50; ~2 min on 2 cores) or ``--quick`` (10 pilots, 5 s; < 40 s).
"""

from __future__ import annotations

import argparse
import collections
import functools
import gc
import json
import math
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from common import ROOT, Child, ChildError, emit, fmt, machine_info, print_table, ros_versions, run

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / 'results' / 'gui.json'
TERMINAL_EXE = ROOT / 'install' / 'autopilot_terminal' / 'lib' / 'autopilot_terminal' / 'terminal'
TARGET_BLOCK_MS = 50.0
TARGET_P99_MS = 200.0
GRACE_NOTE = 'by --grace-s after the interval'
BLOCK_TIMER_MS = 5
CLK_TCK = os.sysconf('SC_CLK_TCK')
#: Set by SIGINT/SIGTERM in a ROS child (the orchestrator stops children with SIGINT; PR_SET_PDEATHSIG too).
STOP = threading.Event()


def pilot_name(i: int) -> str:
    return f'sim{i:02d}'


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1, nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def rss_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MiB."""
    mem = {k: int(v.split()[0]) / 1024 for k, v in (line.split(':', 1) for line in
                                                     Path('/proc/self/status').read_text().splitlines())
           if k in ('VmRSS', 'VmHWM')}
    return mem.get('VmRSS', 0.0), mem.get('VmHWM', 0.0)


def cpu_s() -> float:
    """CPU time of this process, all threads (user + system)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Received:
    """Trials stamped within the measured interval, per pilot: their numbers and stamps (thread-safe: the window's
    ROS thread adds, its UI thread marks them drawn, a reporter thread reads)."""

    def __init__(self) -> None:
        self.start_ns = 0
        self.end_ns = 0
        self.stamps: dict[str, dict[int, int]] = {}  # pilot -> trial number -> stamp ns
        self.drawn: dict[tuple[str, int], float] = {}  # (pilot, number) -> latency ms
        self.lock = threading.Lock()

    def window(self, start_ns: int, end_ns: int) -> None:
        self.start_ns, self.end_ns = start_ns, end_ns

    def inside(self, stamp_ns: int) -> bool:
        return self.start_ns > 0 and self.start_ns <= stamp_ns <= self.end_ns

    def add(self, pilot: str, number: int, stamp_ns: int) -> None:
        with self.lock:
            self.stamps.setdefault(pilot, {})[number] = stamp_ns

    def draw(self, pilot: str, number: int, latency_ms: float) -> None:
        with self.lock:
            self.drawn.setdefault((pilot, number), latency_ms)

    def counts(self) -> tuple[int, int]:
        """(received, published): published per pilot is the span of the received trial numbers."""
        with self.lock:
            got = sum(len(s) for s in self.stamps.values())
            spans = sum(max(s) - min(s) + 1 for s in self.stamps.values() if s)
        return got, spans

    def latencies(self, now_ns: int, hidden: frozenset[str] = frozenset()) -> tuple[list[float], int, int]:
        """Latency (ms) of every received trial: drawn ones as drawn, the others as ``now_ns`` - stamp (a lower
        bound: not drawn yet); how many were not drawn; and how many of those were left out because their pilot's
        plots were scrolled out of view (the window redraws those only when shown)."""
        with self.lock:
            out = list(self.drawn.values())
            undrawn = [(pilot, (now_ns - ns) / 1e6) for pilot, numbers in self.stamps.items()
                       for n, ns in numbers.items() if (pilot, n) not in self.drawn]
        shown = [ms for pilot, ms in undrawn if pilot not in hidden]
        return out + shown, len(shown), len(undrawn) - len(shown)


def latency_summary(lat: list[float]) -> dict[str, Any]:
    return {'n': len(lat), 'p50_ms': percentile(lat, 0.5), 'p99_ms': percentile(lat, 0.99),
            'max_ms': max(lat) if lat else None}


# --------------------------------------------------------------------------------------------------
# Children
# --------------------------------------------------------------------------------------------------

def init_child_ros() -> None:
    """rclpy.init without rclpy's signal handlers: SIGINT/SIGTERM set STOP, loops return, cleanup runs."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, lambda *_: STOP.set())
    signal.signal(signal.SIGTERM, lambda *_: STOP.set())


def trial_values(rng: random.Random) -> dict[str, Any]:
    """One plausible 2AFC trial."""
    target = rng.choice(('left', 'right'))
    response = rng.choices(('left', 'right', 'none'), weights=(45, 45, 10))[0]
    correct = response == target
    return {'target': target, 'response': response, 'correct': correct, 'correction': rng.random() < 0.1,
            'rt_ms': rng.gauss(350.0, 80.0) if response != 'none' else math.nan, 'hold_ms': rng.uniform(50, 300),
            'onset_ms': rng.uniform(2.0, 6.0), 'stim': f'tone_{target}', 'p_left': rng.uniform(0.3, 0.7),
            'reward_given_ul': 5.0 if correct else 0.0}


def child_pilots(a: argparse.Namespace) -> int:
    """``--count`` simulated pilots from ``--first``: heartbeat, trials and GPIO events on a schedule."""
    init_child_ros()
    import rclpy
    from autopilot_msgs.msg import GpioEvent, PilotStatus, TrialData

    from autopilot_core import qos, trial_fields
    from autopilot_tasks.tasks.two_afc import TwoAFC

    declared = {name: (f.type, f.unit) for name, f in TwoAFC.fields().items()}
    period = 1.0 / a.rate
    host = socket.gethostname()
    devices = ('poke_center', 'poke_center', 'poke_left', 'poke_left', 'valve_left', 'valve_left')
    pilots: list[dict[str, Any]] = []
    for k in range(a.count):
        i = a.first + k
        name = pilot_name(i)
        node = rclpy.create_node('pilot', namespace=f'/{name}', start_parameter_services=False)
        status = PilotStatus(pilot=name, state=PilotStatus.STATE_RUNNING, task='2afc', subject=f'mouse{i:02d}',
                             session_id=str(uuid.uuid4()), host=host, ros_distro='jazzy',
                             rmw_implementation=os.environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp'),
                             message='simulated pilot (bench/gui.py)')
        pilots.append({'name': name, 'node': node, 'status': status, 'rng': random.Random(i), 'n': 0, 'seq': 0,
                       'status_pub': node.create_publisher(PilotStatus, 'status', qos.STATUS),
                       'trials_pub': node.create_publisher(TrialData, 'trials', qos.TRIALS),
                       'gpio_pub': node.create_publisher(GpioEvent, 'gpio/events', qos.EVENTS),
                       'offset': (i % 50) / 50 * period})  # spread over the period
    blocked = 0

    def publish(pub: Any, msg: Any) -> None:
        nonlocal blocked
        try:
            pub.publish(msg)
        except Exception:  # noqa: BLE001 - keep-all publish blocked 100 ms (a reliable reader stopped acking)
            blocked += 1

    def stamp(msg_stamp: Any, t_ns: int) -> None:
        msg_stamp.sec, msg_stamp.nanosec = divmod(t_ns, 1_000_000_000)

    # A schedule of (due monotonic, kind, pilot): heartbeat every 0.5 s, trial every period, GPIO half a period later.
    t0 = time.monotonic() + 0.2
    due: list[list[Any]] = []
    for p in pilots:
        due += [[t0 + p['offset'], 'status', p], [t0 + p['offset'], 'trial', p],
                [t0 + p['offset'] + period / 2, 'gpio', p]]
    emit('ready', pilots=[p['name'] for p in pilots])
    c0 = time.process_time()
    try:
        while not STOP.is_set():
            due.sort(key=lambda d: d[0])
            when, kind, p = due[0]
            wait = when - time.monotonic()
            if wait > 0:
                STOP.wait(wait)
                continue
            now_ns = time.time_ns()
            if kind == 'status':
                st = p['status']
                st.trial_count = p['n']
                stamp(st.header.stamp, now_ns)
                publish(p['status_pub'], st)
                due[0][0] = when + 0.5
            elif kind == 'trial':
                p['n'] += 1
                st = p['status']
                msg = TrialData(pilot=p['name'], subject=st.subject, session_id=st.session_id, trial_number=p['n'],
                                task='2afc', step=0, step_name='',
                                fields=trial_fields.from_values(trial_values(p['rng']), declared))
                stamp(msg.start, now_ns - int(period * 0.8e9))
                stamp(msg.header.stamp, now_ns)
                publish(p['trials_pub'], msg)
                due[0][0] = when + period
            else:
                for j in range(a.gpio_per_trial):
                    p['seq'] += 1
                    ev = GpioEvent(device=devices[j % len(devices)], pin=17 + j % len(devices), level=j % 2 == 0,
                                   tick=(now_ns // 1000 + j * 5000) & 0xFFFFFFFF, tick_us=now_ns // 1000 + j * 5000,
                                   backend='sim', run_id=7, seq=p['seq'])
                    stamp(ev.header.stamp, now_ns + j * 5_000_000)
                    publish(p['gpio_pub'], ev)
                due[0][0] = when + period
    finally:
        emit('stopped', trials={p['name']: p['n'] for p in pilots}, blocked=blocked, cpu_s=time.process_time() - c0)
        for p in pilots:
            p['node'].destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


def child_bare(a: argparse.Namespace) -> int:
    """Bare rclpy: the bridge's subscriptions and QoS, no Qt; callbacks count and take the latency."""
    init_child_ros()
    import rclpy
    from autopilot_msgs.msg import GpioEvent, PilotRegistry, SubjectList, TrialData
    from rcl_interfaces.msg import Log

    from autopilot_core import qos
    from autopilot_core.executors import executor_name, make_executor
    from autopilot_gui.bridge import LISTEN, ROSOUT

    node = rclpy.create_node(f'bench_bare_{os.getpid()}')
    ctx = node.context
    rec = Received()
    heard: set[str] = set()
    counts = {'events': 0}

    def on_trial(pilot: str, msg: Any) -> None:
        counts['events'] += 1
        heard.add(pilot)
        st = msg.header.stamp
        stamp_ns = st.sec * 1_000_000_000 + st.nanosec
        if rec.inside(stamp_ns):
            rec.add(pilot, int(msg.trial_number), stamp_ns)
            rec.draw(pilot, int(msg.trial_number), (time.time_ns() - stamp_ns) / 1e6)  # received is all it does

    def count(_msg: Any) -> None:
        counts['events'] += 1

    node.create_subscription(PilotRegistry, '/terminal/pilots', count, qos.STATUS)
    node.create_subscription(SubjectList, '/terminal/subjects', count, qos.STATUS)
    node.create_subscription(Log, '/rosout', count, ROSOUT)
    for i in range(a.pilots):
        name = pilot_name(i)
        node.create_subscription(TrialData, f'/{name}/trials', functools.partial(on_trial, name), LISTEN)
        node.create_subscription(GpioEvent, f'/{name}/gpio/events', count, LISTEN)
    ex = make_executor(context=ctx)
    ex.add_node(node)
    go = threading.Event()
    start: dict[str, Any] = {}

    def read_stdin() -> None:
        for line in sys.stdin:
            if line.startswith('go'):
                start['ns'] = int(line.split()[1])
                go.set()

    threading.Thread(target=read_stdin, daemon=True).start()
    # The same 5 ms block measure as the window's UI timer, on a thread of a process doing the bare work: what the
    # machine and the GIL alone cost (the floor under the window's figure).
    blocks: list[float] = []
    measuring = threading.Event()

    def sleeper() -> None:
        last = time.perf_counter()
        while not STOP.is_set():
            time.sleep(BLOCK_TIMER_MS / 1000)
            now = time.perf_counter()
            if measuring.is_set():
                blocks.append(max((now - last) * 1000 - BLOCK_TIMER_MS, 0.0))
            last = now

    threading.Thread(target=sleeper, name='bare-blocks', daemon=True).start()
    state = 'wait'
    deadline = time.monotonic() + a.timeout
    c0 = w0 = c1 = w1 = 0.0
    e0 = e1 = 0
    try:
        while not STOP.is_set() and ctx.ok():
            ex.spin_once(timeout_sec=0.05)
            now = time.monotonic()
            if state == 'wait':
                if len(heard) >= a.pilots:
                    emit('ready', executor=executor_name(ex))
                    state = 'ready'
                elif now > deadline:
                    emit('error', message=f'bare: trials of {len(heard)}/{a.pilots} pilots within {a.timeout:g} s')
                    return 1
            elif state == 'ready' and go.is_set():
                rec.window(start['ns'], start['ns'] + int(a.seconds * 1e9))
                c0, w0, e0 = cpu_s(), time.perf_counter(), counts['events']
                measuring.set()
                state = 'measuring'
            elif state == 'measuring' and time.perf_counter() - w0 >= a.seconds:
                c1, w1, e1 = cpu_s(), time.perf_counter(), counts['events']
                measuring.clear()
                state = 'grace'
            elif state == 'grace' and time.perf_counter() - w1 >= a.grace_s:  # late trials of the interval
                got, published = rec.counts()
                emit('result', cpu_s=c1 - c0, wall_s=w1 - w0, cpu_pct=100 * (c1 - c0) / (w1 - w0),
                     events=e1 - e0, received=got, published=published, latency=latency_summary(rec.latencies(0)[0]),
                     rss_mb=rss_mb()[0], executor=executor_name(ex), block_max_ms=max(blocks, default=None),
                     block_p99_ms=percentile(blocks, 0.99))
                state = 'done'
    finally:
        ex.shutdown(timeout_sec=1.0)
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


def child_gui(a: argparse.Namespace) -> int:
    """The real window and bridge, offscreen; measured once all pilots are in its table and plotted.

    Readiness, the interval and the result are taken by a thread of their own, so a UI thread that is saturated (or
    stuck) is measured rather than waited for: a block still running at the end counts with its length so far,
    and a trial received but not drawn yet counts with its age (a lower bound).
    """
    from PyQt5 import QtCore, QtWidgets

    from autopilot_gui.bridge import Bridge, Event
    from autopilot_gui.window import MainWindow

    names = [pilot_name(i) for i in range(a.pilots)]
    rec = Received()
    phase: dict[str, Any] = {'name': 'wait', 'warmup_block_ms': 0.0}
    upto: dict[str, int] = {}  # per pilot, the index of the newest trial drawn
    draws: list[float] = []  # ms per MainWindow._draw (one pilot's redraw) in the interval
    hidden: set[str] = set()  # pilots whose plots were scrolled out of view in the interval (UI thread adds)
    hidden_lock = threading.Lock()

    class BenchBridge(Bridge):
        """Bridge that notes each trial of the interval as it reaches the window (on the ROS thread)."""

        def _put(self, event: Event) -> None:
            if event.kind == 'trial':
                st = event.payload.header.stamp
                stamp_ns = st.sec * 1_000_000_000 + st.nanosec
                if rec.inside(stamp_ns):
                    rec.add(event.pilot, int(event.payload.trial_number), stamp_ns)
            super()._put(event)

    class BenchWindow(MainWindow):
        """MainWindow that notes, after each redraw of a pilot's plots, the latency of the trials newly drawn."""

        def _draw(self, pilot: str, now: float) -> None:
            t0 = time.perf_counter()
            super()._draw(pilot, now)
            if phase['name'] in ('measuring', 'grace'):
                draws.append((time.perf_counter() - t0) * 1000)
            row = self.lab.pilots.get(pilot)
            if row is None or not row.trials or pilot not in self.plots:
                return
            t_ns = time.time_ns()
            last = upto.get(pilot, -1)
            for t in reversed(row.trials):
                if t.index <= last:
                    break
                if rec.inside(t.stamp_ns):
                    rec.draw(pilot, t.number, (t_ns - t.stamp_ns) / 1e6)
            upto[pilot] = row.trials[-1].index

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(['bench-gui'])
    bridge = BenchBridge()
    bridge.start()
    window = BenchWindow(bridge)
    window.show()
    signal.signal(signal.SIGINT, lambda *_: app.quit())
    signal.signal(signal.SIGTERM, lambda *_: app.quit())
    blocks: list[float] = []
    last = [time.perf_counter()]
    marks: dict[str, Any] = {'t0': time.monotonic()}
    code = [0]
    done = threading.Event()

    gc_pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}  # ms per collection in the interval, by generation
    gc_started = [0.0]

    def on_gc(stage: str, info: dict[str, int]) -> None:
        if stage == 'start':
            gc_started[0] = time.perf_counter()
        elif phase['name'] == 'measuring':
            gc_pauses[info['generation']].append((time.perf_counter() - gc_started[0]) * 1000)

    gc.callbacks.append(on_gc)

    def tick() -> None:
        now = time.perf_counter()
        block = (now - last[0]) * 1000 - BLOCK_TIMER_MS
        last[0] = now
        if phase['name'] == 'measuring':
            blocks.append(max(block, 0.0))
        elif phase['name'] in ('wait', 'settle'):
            phase['warmup_block_ms'] = max(phase['warmup_block_ms'], block)

    def all_plotted() -> tuple[int, int]:
        """(pilots in the table, online and plotted; pilots in the table), read from the monitor thread."""
        for _ in range(10):
            try:
                rows, plotted = dict(window.lab.pilots), set(window.plots)
                return sum(1 for n in names if n in rows and rows[n].online and n in plotted), len(rows)
            except RuntimeError:  # changed size during the copy: the UI thread was adding a pilot
                time.sleep(0.01)
        return 0, 0

    def monitor() -> None:
        """Ready, settle, the interval and the result, on a thread of its own (see the docstring)."""
        while True:
            ready, shown = all_plotted()
            if ready == len(names):
                break
            if time.monotonic() - marks['t0'] > a.timeout:
                emit('error', message=f'gui: {ready}/{len(names)} pilots in the table and plotted within '
                                      f'{a.timeout:g} s (in the table: {shown}; connected: {window.connected})')
                code[0] = 1
                done.set()
                return
            time.sleep(0.05)
        emit('ready', setup_s=time.monotonic() - marks['t0'], pilots=ready)
        phase['name'] = 'settle'
        time.sleep(a.settle_s)
        start_ns = time.time_ns()
        rec.window(start_ns, start_ns + int(a.seconds * 1e9))
        window.longest_drain_s = 0.0
        marks.update(cpu=cpu_s(), wall=time.perf_counter(), rss=rss_mb()[0], events=window.events_handled,
                     dropped=bridge.dropped)
        phase['name'] = 'measuring'
        emit('measuring', start_ns=start_ns)
        # A poor man's profiler of the UI thread: every 0.1 s in which it is blocked (no timer tick for 0.1 s), where.
        samples: collections.Counter[str] = collections.Counter()
        end = time.perf_counter() + a.seconds
        ui = threading.main_thread().ident or 0
        while time.perf_counter() < end:
            time.sleep(min(0.1, max(0.0, end - time.perf_counter())))
            frame = sys._current_frames().get(ui)
            if frame is not None and time.perf_counter() - last[0] > 0.1:
                samples[''.join(traceback.format_stack(frame, limit=4)[::-1][:3])] += 1
        wall, cpu = time.perf_counter() - marks['wall'], cpu_s() - marks['cpu']
        open_block = (time.perf_counter() - last[0]) * 1000 - BLOCK_TIMER_MS  # a block still running
        phase['name'] = 'grace'
        measured = [*blocks, max(open_block, 0.0)]
        rss, hwm = rss_mb()
        drain_ms, events, dropped = window.longest_drain_s * 1000, window.events_handled, bridge.dropped
        draw_ms = list(draws)
        time.sleep(a.grace_s)  # trials stamped in the interval still on their way, or waiting for their redraw
        with hidden_lock:
            out_of_view = frozenset(hidden)
        latency, undrawn, hidden_undrawn = rec.latencies(time.time_ns(), out_of_view)
        got, published = rec.counts()
        emit('result', cpu_s=cpu, wall_s=wall, cpu_pct=100 * cpu / wall, rss_start_mb=marks['rss'], rss_end_mb=rss,
             rss_peak_mb=hwm, rss_growth_mb=rss - marks['rss'], longest_drain_ms=drain_ms,
             events=events - marks['events'], bridge_dropped=dropped - marks['dropped'], blocks=len(measured),
             block_max_ms=max(measured), block_p99_ms=percentile(measured, 0.99),
             block_p50_ms=percentile(measured, 0.5), block_open_ms=max(open_block, 0.0),
             warmup_block_ms=phase['warmup_block_ms'], latency=latency_summary(latency), undrawn=undrawn,
             received=got, published=published, plots=len(window.plots), plots_out_of_view=len(out_of_view),
             hidden_undrawn=hidden_undrawn, draws=len(draw_ms),
             draw_p50_ms=percentile(draw_ms, 0.5), draw_max_ms=max(draw_ms, default=None),
             window_latency_ms=latency_summary([x * 1000 for x in list(window.trial_latency_s)[-2000:]]),
             ui_blocked_samples=sum(samples.values()), ui_blocked_where=samples.most_common(6),
             gc={str(g): {'n': len(v), 'max_ms': max(v, default=0.0), 'total_ms': sum(v)} for g, v in gc_pauses.items()})
        done.set()

    def step() -> None:
        if done.is_set():
            app.quit()
        elif phase['name'] in ('measuring', 'grace'):  # pilots whose plots are out of view (not redrawn, by design)
            # The viewport's region: a QGraphicsView's own visibleRegion() is always empty, its viewport covers it.
            out = [p for p, w in list(window.plots.items()) if w.viewport().visibleRegion().isEmpty()]
            with hidden_lock:
                hidden.update(out)

    blocker = QtCore.QTimer()
    blocker.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
    blocker.timeout.connect(tick)
    blocker.start(BLOCK_TIMER_MS)
    stepper = QtCore.QTimer()
    stepper.timeout.connect(step)
    stepper.start(50)
    threading.Thread(target=monitor, name='bench-monitor', daemon=True).start()
    try:
        app.exec_()
    finally:
        blocker.stop()
        stepper.stop()
        window.close()
        bridge.stop()
    return code[0]


# --------------------------------------------------------------------------------------------------
# Orchestrator
# --------------------------------------------------------------------------------------------------

class Sleeper:
    """The 5 ms block measure on a thread that sleeps for ``seconds`` (the orchestrator's: it only waits on pipes)."""

    def __init__(self, seconds: float) -> None:
        self.blocks: list[float] = []
        self.thread = threading.Thread(target=self._run, args=(seconds,), name='machine-blocks', daemon=True)
        self.thread.start()

    def _run(self, seconds: float) -> None:
        last = start = time.perf_counter()
        while last - start < seconds:
            time.sleep(BLOCK_TIMER_MS / 1000)
            now = time.perf_counter()
            self.blocks.append(max((now - last) * 1000 - BLOCK_TIMER_MS, 0.0))
            last = now

    def result(self) -> tuple[float | None, float | None]:
        self.thread.join(timeout=5.0)
        return max(self.blocks, default=None), percentile(self.blocks, 0.99)


def proc_cpu_s(pid: int) -> float | None:
    """CPU seconds (utime + stime, all threads) of a live process."""
    try:
        fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def child_cmd(a: argparse.Namespace, role: str, *extra: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), '--child', role, '--parent', str(os.getpid()),
            '--timeout', str(a.timeout), '--seconds', str(a.seconds), '--settle-s', str(a.settle_s),
            '--grace-s', str(a.grace_s), '--log-dir', str(a.log_dir), *extra]


def run_row(n: int, a: argparse.Namespace, env: dict[str, str], live: list[Child]) -> dict[str, Any]:
    """One row: terminal, pilot processes, bare and gui children for ``n`` pilots; measure; stop them."""
    res: dict[str, Any] = {'pilots': n, 'error': None, 'processes': math.ceil(n / a.per_process)}
    children: list[Child] = []
    tag = f'{n:02d}pilots'

    def start(name: str, cmd: list[str], child_env: dict[str, str] = env, stdin: bool = False) -> Child:
        child = Child(f'{tag}-{name}', cmd, child_env, a.log_dir, stdin=stdin)
        children.append(child)
        live.append(child)
        return child

    t_start = time.monotonic()
    data_dir = a.log_dir / f'{tag}-data'
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        terminal = start('terminal', [sys.executable, str(Path(__file__).resolve()), '--child', 'exec', '--parent',
                                      str(os.getpid()), '--', str(a.terminal), '--ros-args', '-p',
                                      f'data_dir:={data_dir}', '-p', f'protocol_dir:={data_dir}'])
        pilots = [start(f'pilots{k}', child_cmd(a, 'pilots', '--first', str(first), '--count',
                                                 str(min(a.per_process, n - first)), '--rate', str(a.rate),
                                                 '--gpio-per-trial', str(a.gpio_per_trial)))
                  for k, first in enumerate(range(0, n, a.per_process))]
        for p in pilots:
            p.expect('ready', a.timeout)
        bare = start('bare', child_cmd(a, 'bare', '--pilots', str(n)), stdin=True)
        gui = start('gui', child_cmd(a, 'gui', '--pilots', str(n)),
                    dict(env, QT_QPA_PLATFORM='offscreen'))
        res['bare_executor'] = bare.expect('ready', a.timeout + 15)['executor']
        deadline = time.monotonic() + a.timeout + 15
        while 'ready' not in gui.seen:  # a terminal that dies at start is reported at once, not as the gui's timeout
            if not terminal.alive():
                raise ChildError(f'terminal exited ({terminal.popen.returncode}); log: {terminal.log_tail()}')
            try:
                res['gui_setup_s'] = round(gui.expect('ready', min(2.0, max(0.0, deadline - time.monotonic())))
                                           ['setup_s'], 2)
            except ChildError:
                if not gui.alive() or 'error' in gui.seen:
                    raise
                if time.monotonic() >= deadline:
                    raise ChildError(f'gui: not ready within {a.timeout + 15:g} s; log: {gui.log_tail()}') from None
        started = gui.expect('measuring', a.settle_s + 15)
        if bare.alive():
            bare.send(f'go {started["start_ns"]}')
        machine = Sleeper(a.seconds)  # the machine alone: a thread of this process, no rclpy, no GIL contention
        others = [terminal, *pilots]
        cpu0 = [proc_cpu_s(c.popen.pid) for c in others]
        w0 = time.monotonic()
        res['gui'] = {k: v for k, v in gui.expect('result', a.seconds + a.grace_s + 15).items() if k != 'ev'}
        res['machine_block_max_ms'], res['machine_block_p99_ms'] = machine.result()
        w1 = time.monotonic()
        cpu1 = [proc_cpu_s(c.popen.pid) for c in others]
        res['bare'] = {k: v for k, v in bare.expect('result', a.grace_s + 15).items() if k != 'ev'}
        used = [y - x if x is not None and y is not None else None for x, y in zip(cpu0, cpu1, strict=True)]
        res['terminal_cpu_pct'] = 100 * used[0] / (w1 - w0) if used[0] is not None else None
        res['pilots_cpu_pct'] = 100 * sum(u for u in used[1:] if u is not None) / (w1 - w0)
    except ChildError as exc:
        res['error'] = str(exc)
    finally:
        stopped = {}
        for c in children[::-1]:  # the gui (it quits by itself after its result) and bare first, the terminal last
            stopped[c.name] = c.stop(grace=5.0, natural=5.0 if c.name.endswith('-gui') else 0.0)
            live.remove(c)
        res['exit_codes'] = stopped
        pub = [last_event(c, 'stopped') for c in children if '-pilots' in c.name]
        res['publish_blocked'] = sum(p['blocked'] for p in pub if p)
        res['row_s'] = round(time.monotonic() - t_start, 1)
        if not a.keep_data:
            subprocess.run(['rm', '-rf', str(data_dir)], check=False)
    return res


def last_event(child: Child, ev: str) -> dict[str, Any] | None:
    """The last ``ev`` a stopped child sent that no :meth:`Child.expect` took."""
    found = child.seen.get(ev)
    while not child.events.empty():
        event = child.events.get_nowait()
        if event is not None and event.get('ev') == ev:
            found = event
    return found


def finish_row(res: dict[str, Any]) -> dict[str, Any]:
    """The table's flat row from one row's results."""
    g, b = res.get('gui') or {}, res.get('bare') or {}
    lat, blat = g.get('latency') or {}, b.get('latency') or {}
    ratio = g['cpu_pct'] / b['cpu_pct'] if g.get('cpu_pct') is not None and b.get('cpu_pct') else None
    return {'pilots': res['pilots'], 'error': res['error'], 'block_max_ms': g.get('block_max_ms'),
            'block_p99_ms': g.get('block_p99_ms'), 'drain_max_ms': g.get('longest_drain_ms'),
            'warmup_block_ms': g.get('warmup_block_ms'), 'lat_p50_ms': lat.get('p50_ms'),
            'lat_p99_ms': lat.get('p99_ms'), 'lat_max_ms': lat.get('max_ms'), 'lat_n': lat.get('n'),
            'bare_lat_p50_ms': blat.get('p50_ms'), 'bare_lat_p99_ms': blat.get('p99_ms'),
            'bare_block_max_ms': b.get('block_max_ms'), 'bare_block_p99_ms': b.get('block_p99_ms'),
            'machine_block_max_ms': res.get('machine_block_max_ms'),
            'machine_block_p99_ms': res.get('machine_block_p99_ms'),
            'gc_max_ms': max((v['max_ms'] for v in (g.get('gc') or {}).values()), default=None),
            'cpu_pct': g.get('cpu_pct'), 'bare_cpu_pct': b.get('cpu_pct'), 'cpu_ratio': ratio,
            'rss_peak_mb': g.get('rss_peak_mb'), 'rss_growth_mb': g.get('rss_growth_mb'),
            'received': g.get('received'), 'published': g.get('published'),
            'bare_received': b.get('received'), 'bare_published': b.get('published'),
            'received_of': f'{g["received"]}/{g["published"]}' if g.get('published') is not None else None,
            'bare_received_of': f'{b["received"]}/{b["published"]}' if b.get('published') is not None else None,
            'terminal_cpu_pct': res.get('terminal_cpu_pct'), 'pilots_cpu_pct': res.get('pilots_cpu_pct'),
            'bridge_dropped': g.get('bridge_dropped'), 'publish_blocked': res.get('publish_blocked'),
            'undrawn': g.get('undrawn'), 'plots_out_of_view': g.get('plots_out_of_view'),
            'hidden_undrawn': g.get('hidden_undrawn'), 'draws': g.get('draws'), 'draw_p50_ms': g.get('draw_p50_ms'),
            'draw_max_ms': g.get('draw_max_ms'), 'gui_setup_s': res.get('gui_setup_s')}


def check_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    targets = []
    for r in rows:
        targets.append({'target': f'longest UI-thread block < {TARGET_BLOCK_MS:g} ms', 'row': r['pilots'],
                        'value': r['block_max_ms'], 'unit': 'ms',
                        'passed': r['error'] is None and r['block_max_ms'] is not None
                        and r['block_max_ms'] < TARGET_BLOCK_MS})
        targets.append({'target': f'trial-to-plot latency p99 < {TARGET_P99_MS:g} ms', 'row': r['pilots'],
                        'value': r['lat_p99_ms'], 'unit': 'ms',
                        'passed': r['error'] is None and r['lat_p99_ms'] is not None and r['lat_p99_ms'] < TARGET_P99_MS})
    return targets


COLUMNS = (('pilots', 'pilots', 'd'), ('block_max_ms', 'block max ms', '.1f'), ('block_p99_ms', 'block p99', '.1f'),
           ('bare_block_max_ms', 'bare block', '.1f'), ('machine_block_max_ms', 'machine block', '.1f'), ('drain_max_ms', 'drain max', '.1f'),
           ('gc_max_ms', 'gc max', '.1f'), ('draw_p50_ms', 'draw ms', '.1f'), ('lat_p50_ms', 'lat p50 ms', '.0f'), ('lat_p99_ms', 'lat p99', '.0f'),
           ('bare_lat_p50_ms', 'bare p50', '.1f'), ('cpu_pct', 'CPU %', '.1f'), ('bare_cpu_pct', 'bare CPU %', '.1f'),
           ('cpu_ratio', 'x bare', '.1f'), ('rss_peak_mb', 'RSS MiB', '.0f'), ('rss_growth_mb', 'RSS +MiB', '.1f'),
           ('received_of', 'received/published', ''), ('bare_received_of', 'bare rx/pub', ''),
           ('terminal_cpu_pct', 'terminal %', '.0f'), ('pilots_cpu_pct', 'sim pilots %', '.0f'))


def print_report(rows: list[dict[str, Any]], targets: list[dict[str, Any]]) -> None:
    print_table(rows, COLUMNS)
    print('(block: 5 ms timer gap - 5 ms on the UI thread; bare block: the same on a 5 ms sleeper thread of the bare '
          'rclpy process (the machine\'s and the GIL\'s share); machine block: the same on a thread of the benchmark\'s own '
          'process, which only waits (the machine\'s share alone); gc max: the longest collector pause in the window; drain: the window\'s own longest drain; draw: one pilot\'s '
          'redraw (MainWindow._draw), p50; lat: trial stamp '
          '(publisher) -> its plot updated; bare: bare rclpy, same subscriptions, same interval; CPU %: of one core, '
          'all threads; RSS: peak, and growth over the interval; received/published: trials stamped in the interval)')
    for r in rows:
        notes = []
        if r.get('undrawn'):
            notes.append(f'{r["undrawn"]} trials received but not drawn {GRACE_NOTE} (their latency: age so far)')
        if r.get('plots_out_of_view'):
            notes.append(f'{r["plots_out_of_view"]} pilots\' plots out of view (redrawn when scrolled to: '
                         f'{r["hidden_undrawn"]} of their trials not drawn, left out of the latency)')
        if r.get('bridge_dropped'):
            notes.append(f'bridge dropped {r["bridge_dropped"]} events (its queue was full)')
        if r.get('publish_blocked'):
            notes.append(f'sim pilots\' publish blocked {r["publish_blocked"]}x (a reliable reader lagged)')
        if r['error']:
            notes.append('ERROR: ' + r['error'].splitlines()[0][:300])
        if notes:
            print(f'  {r["pilots"]} pilots: ' + '; '.join(notes))
    for t in targets:
        print(f'{"PASS" if t["passed"] else "FAIL"}: {t["target"]}: {fmt(t["value"], ".1f")} ms at {t["row"]} pilots')


def versions() -> dict[str, Any]:
    out = ros_versions('PyQt5', 'pyqtgraph', 'numpy', 'autopilot-gui', 'autopilot-terminal')
    try:
        from PyQt5.QtCore import PYQT_VERSION_STR, QT_VERSION_STR

        out['qt'], out['pyqt'] = QT_VERSION_STR, PYQT_VERSION_STR
    except ImportError:
        pass
    for key, cmd in (('git_head', ['git', 'rev-parse', '--short', 'HEAD']),
                     ('git_changed_gui', ['git', 'status', '--porcelain', '--', 'src/autopilot_gui'])):
        try:
            out[key] = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out[key] = None
    return out


def orchestrate(a: argparse.Namespace) -> int:
    env = dict(os.environ, ROS_DOMAIN_ID=str(a.domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
               PYTHONUNBUFFERED='1', RCUTILS_COLORIZED_OUTPUT='0')
    for var in ('ROS_STATIC_PEERS', 'FASTRTPS_DEFAULT_PROFILES_FILE', 'FASTDDS_DEFAULT_PROFILES_FILE',
                'FASTDDS_BUILTIN_TRANSPORTS', 'AUTOPILOT_EXECUTOR'):
        env.pop(var, None)  # as deployed
    if not a.terminal.exists():
        sys.exit(f'{a.terminal} is missing: run `python scripts/setup.py` first')
    started_wall, started = datetime.now(timezone.utc), time.monotonic()
    machine = machine_info()
    print(f'gui benchmark: domain {a.domain_id}, rows {a.pilots} pilots, {a.rate:g} trials/s each, '
          f'{a.seconds:g} s measured per row', flush=True)

    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    live: list[Child] = []
    results: list[dict[str, Any]] = []
    try:
        for n in a.pilots:
            res = run_row(n, a, env, live)
            results.append(res)
            row = finish_row(res)
            print(f'  {n} pilots: {"ok" if res["error"] is None else "ERROR"}, block max '
                  f'{fmt(row["block_max_ms"], ".1f")} ms, latency p99 {fmt(row["lat_p99_ms"], ".0f")} ms, '
                  f'CPU {fmt(row["cpu_pct"], ".0f")} % ({res["row_s"]} s)', flush=True)
    finally:
        for c in list(live):
            c.stop(grace=1.0)
    rows = [finish_row(r) for r in results]
    targets = check_targets(rows)
    machine['loadavg_end'] = list(os.getloadavg())
    print()
    print_report(rows, targets)
    params = {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()
              if k not in ('child', 'out', 'parent', 'cmd', 'first', 'count')}
    doc = {'benchmark': 'gui', 'started': started_wall.isoformat(timespec='seconds'), 'terminal': str(a.terminal),
           'duration_s': round(time.monotonic() - started, 1), 'command': sys.argv, 'params': params,
           'machine': machine, 'versions': versions(), 'targets_ms': {'block': TARGET_BLOCK_MS, 'p99': TARGET_P99_MS},
           'rows': rows, 'targets': targets, 'details': results}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=1, default=str) + '\n')
    print(f'JSON: {a.out}   child logs: {a.log_dir}')
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or '').split('\n')[0])
    ap.add_argument('--quick', action='store_true', help='smoke run (< 40 s): 10 pilots, 5 s measured; no claims')
    ap.add_argument('--pilots', nargs='+', type=int, default=None, help='rows: simulated pilots (default 10 25 50)')
    ap.add_argument('--rate', type=float, default=10.0, help='trials/s of each pilot')
    ap.add_argument('--gpio-per-trial', type=int, default=4, help='GpioEvents each pilot publishes per trial')
    ap.add_argument('--per-process', type=int, default=10, help='simulated pilots per process')
    ap.add_argument('--seconds', type=float, default=None, help='measured interval per row (default 20; quick 5)')
    ap.add_argument('--settle-s', type=float, default=None,
                    help='wait after all pilots are plotted before measuring (default 3; quick 1)')
    ap.add_argument('--grace-s', type=float, default=1.0, help='trials stamped in the interval are counted this long '
                    'after it (late deliveries)')
    ap.add_argument('--terminal', type=Path, default=TERMINAL_EXE, help='the terminal executable')
    ap.add_argument('--domain-id', type=int, default=int(os.environ.get('BENCH_DOMAIN_ID', 173)))
    ap.add_argument('--timeout', type=float, default=60.0, help='discovery/setup timeout per phase (s)')
    ap.add_argument('--out', type=Path, default=DEFAULT_OUT)
    ap.add_argument('--log-dir', type=Path, default=None, help='children\'s logs and data (default: a temp dir)')
    ap.add_argument('--keep-data', action='store_true', help='keep the terminal\'s data directories')
    ap.add_argument('--child', choices=('pilots', 'bare', 'gui', 'exec'), help=argparse.SUPPRESS)
    ap.add_argument('--parent', type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument('--first', type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument('--count', type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument('cmd', nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.cmd and a.cmd[0] == '--':
        a.cmd = a.cmd[1:]
    if a.cmd and a.child != 'exec':
        ap.error(f'unexpected arguments: {" ".join(a.cmd)}')
    q = a.quick
    if a.child in ('bare', 'gui'):  # one row's pilot count
        a.pilots = a.pilots[0] if a.pilots else 0
    else:
        a.pilots = a.pilots or ([10] if q else [10, 25, 50])
    a.seconds = a.seconds or (5.0 if q else 20.0)
    a.settle_s = a.settle_s if a.settle_s is not None else (1.0 if q else 3.0)
    return a


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv), {'pilots': child_pilots, 'bare': child_bare, 'gui': child_gui}, orchestrate,
               'bench-gui-')


if __name__ == '__main__':
    sys.exit(main())
