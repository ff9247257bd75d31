#!/usr/bin/env python3
"""Closed-loop latency: sim GPIO input edge -> gpio event -> task decision -> output command -> output applied.

The loop is the rig's real path: the ``gpio`` node (sim backend, ``launch/params/rig_sim.yaml``) and the
``pilot`` node running the ``echo`` task (tasks/echo.py: poke in -> ``hw.set('out', True)``, poke out ->
low). A bench process drives the sim input and timestamps every hop from the messages themselves:

=====  ==========================================================================================  ==========
stamp  what                                                                                        taken by
=====  ==========================================================================================  ==========
t0     the bench publishes ``gpio/sim_input`` (SimInput, level alternating, hold 0)                 bench
t1     ``header.stamp`` of the input's GpioEvent: when the sim backend changed the level            gpio node
       (the edge's tick mapped to ROS time, ``gpio/ticks.py``)
t2     ``header.stamp`` of the DigitalOutput command: when the task decided (``RosHardware._stamp``)  pilot node
       (the bench also subscribes to ``gpio/output`` to see it)
t3     ``header.stamp`` of the output's GpioEvent: when the backend applied the level              gpio node
t4     the bench receives that output event                                                        bench
=====  ==========================================================================================  ==========

All are ROS time = system time on one machine, so they compare across processes. Hops reported:
``input`` t1-t0 (DDS hop to the gpio node + its callback), ``decide`` t2-t1 (gpio publish, DDS hop, pilot
callback, runner, task), ``apply`` t3-t2 (pilot publish, DDS hop, gpio callback, controller, backend
write), ``observe`` t4-t3 (DDS hop to the bench), ``LOOP`` t3-t1 (edge -> output applied: the headline) and
``cmd->out`` t3-t0. Every edge is one sample: poke in (output high) and poke out (output low) alternate,
``--interval-ms`` apart; a sample waits for the previous one to close (or ``--sample-timeout``: lost).

Configurations (rows):

``processes``         the installed ``gpio`` and ``pilot`` executables, one process each (their own
                      ``run_node``/``make_executor``), plus the bench process.
``one-process``       GpioNode and PilotNode built in one rclpy context and spun by ONE executor
                      (``autopilot_core.executors.make_executor``, EventsExecutor by default), plus the bench.
                      Between them ``gpio/events`` and ``gpio/output`` go intra-process
                      (``autopilot_core.intra``); the bench still reads both over DDS.
``one-process-dds``   the same with ``AUTOPILOT_INTRA_PROCESS=0``: the two nodes talk over DDS (as before intra).
``bare-processes``    reference: bare rclpy, two processes; A publishes a GpioEvent stamped just before
                      publish (t1), B's callback stamps a DigitalOutput (t2) and publishes it, A's callback
                      stamps its arrival (t3). Same types, same QoS (``qos.EVENTS``), EventsExecutor, same
                      pacing: t3-t1 is the round trip the ``processes`` loop cannot beat. A third process
                      (the "tap") also reads both topics, as the bench reads the input event and the
                      command in the rig rows, so every publish has the same number of readers.
``bare-one-process``  the same two bare nodes in one process, one EventsExecutor (plus the tap process).

Ratios: ``decide``, ``apply`` and ``LOOP`` of a closed-loop row against the same hops of its bare row
(both one-process rows against ``bare-one-process``).
Targets (the issue): ``processes`` LOOP p50 < 1 ms and p99 < 3 ms; ``one-process`` LOOP p50 < 0.3 ms;
a row with lost samples fails. PASS/FAIL lines; exit status 0 either way (a measurement).

Trial ends: the echo task ends a trial every ``--pokes-per-trial`` pokes (on the out edge), and the
pilot then journals the trial (SQLite + fsync, on its executor thread) and publishes it; the bench acks
trials like a terminal. Those samples are flagged ``trial_end`` and summarised apart in the JSON. The
default input is ``poke_left`` (glitch filter 0) through the pilot's ``device_map``: ``poke_center``
(the task's default) has a 200 us glitch filter, which by design reports an edge 200 us after it
happened (``--poke-device poke_center`` measures that).

Observer: reading the command (t2) makes the bench one more reader of the pilot's publish;
``--no-command-tap`` drops it (and the tap's pong reader) and reports LOOP without decide/apply.

Steady state: the first sample goes ``--settle-s`` (5 s) after the bench matched the rig (the gpio
node showed a one-off 0.15-0.35 s stall ~3 s after matching, bench/hardware.py), then ``--warmup``
samples are not counted. Every row runs ``--rounds`` times (default 2, the order reversed every other
round; fresh processes each time) and pools its samples. The machine's load moves everything: compare
rows of one run.

Run: ``python bench/closed_loop.py`` (~2 min) or ``--quick`` (smoke run, one round, ~25 s, no claims).
JSON (``--out``, default bench/results/closed_loop.json): params, machine, versions, rows, targets and
per configuration its summaries, its runs (phase timings, exit codes, trials) and every sample's hops
in microseconds (``samples_us``, as columns).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from common import (
    GPIO_EXE,
    GPIO_PARAMS,
    ROOT,
    Child,
    ChildError,
    emit,
    fmt,
    machine_info,
    print_table,
    ros_versions,
    run,
)

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / 'results' / 'closed_loop.json'
PILOT_EXE = ROOT / 'install' / 'autopilot_pilot' / 'lib' / 'autopilot_pilot' / 'pilot'
OUT_DEVICE = 'led_center'  # the echo task's `out` role on the sim rig
CONFIGS = ('processes', 'bare-processes', 'one-process', 'one-process-dds', 'bare-one-process')
BARE_OF = {'processes': 'bare-processes', 'one-process': 'bare-one-process', 'one-process-dds': 'bare-one-process'}
#: (key, stamps, label): hops computed from every sample's t0..t4; bare rows have only t1..t3.
HOPS = (
    ('input', ('t0', 't1'), 't1-t0 input: sim_input publish -> edge'),
    ('decide', ('t1', 't2'), 't2-t1 edge -> task decision'),
    ('apply', ('t2', 't3'), 't3-t2 command -> output applied'),
    ('observe', ('t3', 't4'), 't4-t3 output event -> bench'),
    ('loop', ('t1', 't3'), 't3-t1 LOOP edge -> output applied'),
    ('cmd_out', ('t0', 't3'), 't3-t0 sim_input publish -> output applied'),
)
BARE_LABELS = {'decide': 't2-t1 A publish -> B callback', 'apply': 't3-t2 B publish -> A callback',
               'loop': 't3-t1 LOOP round trip A -> B -> A'}
RATIO_HOPS = ('decide', 'apply', 'loop')
#: (config, statistic, limit in ms)
TARGETS = (('processes', 'p50', 1.0), ('processes', 'p99', 3.0), ('one-process', 'p50', 0.3))


# --------------------------------------------------------------------------------------------------
# Statistics; child start-up
# --------------------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted ``values`` (as bench/hardware.py), None when empty."""
    return values[int(q * (len(values) - 1))] if values else None


def summary(values_us: list[float]) -> dict[str, Any]:
    """n, p50/p90/p99/max/min/mean in ms of a list of microsecond values."""
    v = sorted(x / 1000 for x in values_us)
    if not v:
        return {'n': 0, 'p50': None, 'p90': None, 'p99': None, 'max': None, 'min': None, 'mean': None}
    return {'n': len(v), 'p50': statistics.median(v), 'p90': percentile(v, 0.90), 'p99': percentile(v, 0.99),
            'max': v[-1], 'min': v[0], 'mean': statistics.fmean(v)}


#: Set by SIGINT/SIGTERM in a child (the orchestrator stops children with SIGINT; PR_SET_PDEATHSIG sends it too).
STOP = threading.Event()


def init_child_ros(args: list[str] | None = None) -> None:
    """rclpy.init without rclpy's signal handlers: SIGINT/SIGTERM set STOP, every spin loop returns, cleanup runs."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, lambda *_: STOP.set())
    signal.signal(signal.SIGTERM, lambda *_: STOP.set())


def spin_until(ex: Any, ctx: Any, cond: Callable[[], bool], timeout: float) -> bool:
    """Spin ``ex`` in short timed slices (EventsExecutor never without a timeout) until ``cond``, timeout or STOP."""
    from rclpy.task import Future

    deadline = time.monotonic() + timeout
    while not cond():
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not ctx.ok() or STOP.is_set():
            return cond()
        ex.spin_until_future_complete(Future(), timeout_sec=min(0.05, remaining))
    return True


# --------------------------------------------------------------------------------------------------
# Children: the sampler, shared by the closed-loop bench process and the bare pinger
# --------------------------------------------------------------------------------------------------

class Sampler:
    """Starts sample k+1 on the first timer tick after sample k closed (or timed out); done after ``total``.

    ``send(sample)`` fills ``t0``/``t1`` and publishes; message callbacks fill the rest through :meth:`fill`,
    which only accepts values for the sample in flight with the expected levels (late ones are ``stray``).
    """

    def __init__(self, node: Any, total: int, interval_s: float, timeout_s: float, needed: tuple[str, ...],
                 send: Callable[[dict[str, Any]], None]) -> None:
        from rclpy.task import Future

        self.total, self.timeout_s, self.needed, self.send = total, timeout_s, needed, send
        self.samples: list[dict[str, Any]] = []
        self.cur: dict[str, Any] | None = None
        self.started = 0.0
        self.stray = 0
        self.done = Future()
        self.timer = node.create_timer(interval_s, self.tick)

    def tick(self) -> None:
        cur = self.cur
        if cur is not None and not cur['complete']:
            if time.monotonic() - self.started < self.timeout_s:
                return  # still in flight: this slot is skipped
            cur['lost'] = True
        if len(self.samples) >= self.total:
            self.timer.cancel()
            if not self.done.done():
                self.done.set_result(True)
            return
        k = len(self.samples)
        # Even k: poke in (input low: pull-up, active low), odd k: poke out. The output follows: in -> high.
        self.cur = {'k': k, 'in_level': bool(k % 2), 'out_level': not k % 2, 'complete': False, 'lost': False}
        self.samples.append(self.cur)
        self.started = time.monotonic()
        self.send(self.cur)

    def fill(self, key: str, value: int, out_level: bool, **extra: Any) -> None:
        cur = self.cur
        if cur is None or cur['complete'] or cur['out_level'] != out_level or key in cur:
            self.stray += 1
            return
        cur[key] = value
        cur.update(extra)
        if all(k in cur for k in self.needed):
            cur['complete'] = True


def stamp_ns(msg: Any) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def set_stamp(msg: Any, ns: int) -> None:
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(ns, 1_000_000_000)


def child_driver(a: argparse.Namespace) -> int:
    """The bench process: start an echo session on the pilot, drive the sim input, stamp every hop."""
    import rclpy
    from autopilot_msgs.action import RunSession
    from autopilot_msgs.msg import DigitalOutput, GpioEvent, PilotStatus, SimInput, TrialAck, TrialData
    from rclpy.action import ActionClient
    from rclpy.experimental import EventsExecutor
    from rclpy.parameter import Parameter

    from autopilot_core import qos

    init_child_ros()
    node = rclpy.create_node('bench_closed_loop')
    ctx = node.context
    ns = a.ns
    st: dict[str, Any] = {'status': None, 'acks': 0, 'trials': 0, 'sampler': None}

    def on_event(m: GpioEvent) -> None:
        now = time.time_ns()
        s = st['sampler']
        if s is None:
            return
        if m.device == a.poke_device:
            s.fill('t1', stamp_ns(m), not m.level, t1_rx=now)  # input low -> output high
        elif m.device == OUT_DEVICE:
            s.fill('t3', stamp_ns(m), m.level, t4=now)

    def on_output(m: DigitalOutput) -> None:
        now = time.time_ns()
        s = st['sampler']
        if s is not None and m.device == OUT_DEVICE:
            s.fill('t2', stamp_ns(m), m.level, t2_rx=now)

    def on_trial(m: TrialData) -> None:  # ack like a terminal, so the pilot does not resend
        st['trials'] += 1
        ack = TrialAck(pilot=m.pilot, session_id=m.session_id, trial_numbers=[m.trial_number])
        set_stamp(ack, time.time_ns())
        ack_pub.publish(ack)
        st['acks'] += 1

    def on_status(m: PilotStatus) -> None:
        st['status'] = m

    sim_pub = node.create_publisher(SimInput, f'{ns}/gpio/sim_input', qos.EVENTS)
    ev_sub = node.create_subscription(GpioEvent, f'{ns}/gpio/events', on_event, qos.EVENTS)
    # The command tap (t2) is one more reader of the pilot's publish: --no-command-tap measures without it.
    out_sub = None if a.no_command_tap else \
        node.create_subscription(DigitalOutput, f'{ns}/gpio/output', on_output, qos.EVENTS)
    out_readers = 1 if a.no_command_tap else 2  # gpio (+ bench)
    node.create_subscription(TrialData, f'{ns}/trials', on_trial, qos.TRIALS)
    ack_pub = node.create_publisher(TrialAck, f'{ns}/trial_acks', qos.TRIALS)
    node.create_subscription(PilotStatus, f'{ns}/status', on_status, qos.STATUS)
    session = ActionClient(node, RunSession, f'{ns}/session')
    ex = EventsExecutor(context=ctx)
    ex.add_node(node)

    def fail(what: str) -> int:
        status = st['status']
        extra = f'; pilot status: {status.message!r}' if status is not None and status.message else ''
        emit('error', message=f'{what}{extra}')
        return 1

    t_begin = time.monotonic()
    if not spin_until(ex, ctx, lambda: sim_pub.get_subscription_count() > 0 and session.server_is_ready()
                      and node.count_publishers(f'{ns}/gpio/output') > 0 and ev_sub.get_publisher_count() > 0,
                      a.timeout):
        return fail(f'rig not found under {ns} within {a.timeout:g} s (gpio sim_input subscribers '
                    f'{sim_pub.get_subscription_count()}, session server {session.server_is_ready()}, '
                    f'gpio/output publishers {node.count_publishers(f"{ns}/gpio/output")})')
    t_found = time.monotonic()
    goal = RunSession.Goal(subject='bench', task='echo',
                           parameters=[Parameter('pokes_per_trial', value=a.pokes_per_trial).to_parameter_msg()])
    sent = session.send_goal_async(goal)
    if not spin_until(ex, ctx, sent.done, a.timeout):
        return fail(f'no answer to the session goal within {a.timeout:g} s')
    handle = sent.result()
    if handle is None or not handle.accepted:
        return fail('session goal rejected')
    result_future = handle.get_result_async()

    def running() -> bool:
        s = st['status']
        return s is not None and s.state == PilotStatus.STATE_RUNNING and s.task == 'echo' and bool(s.session_id)

    if not spin_until(ex, ctx, lambda: running() or result_future.done(), a.timeout) or not running():
        return fail(f'session not running within {a.timeout:g} s')
    # Both rig nodes see each other too (graph counts: pilot + bench on events, gpio + bench on output).
    if not spin_until(ex, ctx, lambda: node.count_subscribers(f'{ns}/gpio/events') >= 2
                      and node.count_subscribers(f'{ns}/gpio/output') >= out_readers
                      and (out_sub is None or out_sub.get_publisher_count() > 0), a.timeout):
        return fail('pilot and gpio node did not discover each other')
    t_matched = time.monotonic()
    emit('matched', found_s=t_found - t_begin, running_s=t_matched - t_found)
    spin_until(ex, ctx, lambda: False, a.settle_s)  # past the discovery stall; acks etc. keep running

    def send(sample: dict[str, Any]) -> None:
        msg = SimInput(device=a.poke_device, level=sample['in_level'], hold_us=0)
        t0 = time.time_ns()
        set_stamp(msg, t0)
        sample['t0'] = t0
        sim_pub.publish(msg)

    total = a.warmup + a.samples
    needed = ('t1', 't3') if a.no_command_tap else ('t1', 't2', 't3')
    sampler = Sampler(node, total, a.interval_ms / 1000, a.sample_timeout, needed, send)
    st['sampler'] = sampler
    emit('started')
    budget = total * (a.interval_ms / 1000 + 0.05) + a.sample_timeout + 30
    finished = spin_until(ex, ctx, sampler.done.done, budget)
    st['sampler'] = None
    cancel = handle.cancel_goal_async()
    spin_until(ex, ctx, lambda: cancel.done() and result_future.done(), 10.0)
    res = result_future.result().result if result_future.done() else None
    emit('result', samples=sampler.samples, warmup=a.warmup, stray=sampler.stray, finished=finished,
         n_trials=res.n_trials if res is not None else None, session_message=res.message if res else None,
         trials_seen=st['trials'], acks=st['acks'], bench_executor=type(ex).__name__)
    ex.shutdown(timeout_sec=1.0)
    node.destroy_node()
    rclpy.shutdown()
    return 0


def child_rig(a: argparse.Namespace) -> int:
    """One process: GpioNode + PilotNode in one rclpy context, ONE executor (as a combined launch would)."""
    import rclpy

    ros_args = ['bench_rig', '--ros-args', '--params-file', str(a.gpio_params), '-r', f'__ns:={a.ns}',
                '-p', f'calibration_file:={a.log_dir}/one-process-calibration.jsonl',
                '-p', f'journal_path:={a.journal}', '-p', f'device_map:=["poke:{a.poke_device}"]']
    init_child_ros(ros_args)
    from autopilot_core import executors, intra, params
    from autopilot_hardware.gpio.node import GpioNode
    from autopilot_pilot.node import PilotNode

    with params.composed():  # the -p above reach both nodes: each key is known to one of them
        gpio = GpioNode()
        pilot = PilotNode()
    ex = executors.make_executor(context=gpio.context)
    emit('ready', executor=executors.executor_name(ex), nodes=[gpio.get_fully_qualified_name(),
                                                              pilot.get_fully_qualified_name()],
         intra_process=intra.enabled())
    try:
        executors.spin([gpio, pilot], ex, stop=STOP)
    finally:
        pilot.destroy_node()
        gpio.close()
        gpio.destroy_node()
        rclpy.shutdown()
    return 0


def make_bare_echo(node: Any) -> None:
    """B of the bare loop: on a GpioEvent, stamp a DigitalOutput now and publish it (the 'decision')."""
    from autopilot_msgs.msg import DigitalOutput, GpioEvent

    from autopilot_core import qos

    pub = node.create_publisher(DigitalOutput, 'bench/pong', qos.EVENTS)

    def on_ping(m: GpioEvent) -> None:
        out = DigitalOutput(device=OUT_DEVICE, mode=DigitalOutput.MODE_LEVEL, level=not m.level)
        set_stamp(out, time.time_ns())
        pub.publish(out)

    node.create_subscription(GpioEvent, 'bench/ping', on_ping, qos.EVENTS)


def bare_ping(a: argparse.Namespace, node: Any, ex: Any) -> int:
    """A of the bare loop: GpioEvent stamped just before publish (t1), DigitalOutput stamp (t2), arrival (t3)."""
    from autopilot_msgs.msg import DigitalOutput, GpioEvent

    from autopilot_core import qos

    ctx = node.context
    st: dict[str, Any] = {'sampler': None}

    def on_pong(m: DigitalOutput) -> None:
        now = time.time_ns()
        s = st['sampler']
        if s is not None:
            s.fill('t3', now, m.level, t2=stamp_ns(m))

    pub = node.create_publisher(GpioEvent, 'bench/ping', qos.EVENTS)
    sub = node.create_subscription(DigitalOutput, 'bench/pong', on_pong, qos.EVENTS)
    pong_readers = 1 if a.no_command_tap else 2  # A (+ the tap)
    if not spin_until(ex, ctx, lambda: pub.get_subscription_count() >= 2 and sub.get_publisher_count() > 0
                      and node.count_subscribers(f'{a.ns}/bench/pong') >= pong_readers, a.timeout):
        emit('error', message=f'bare echo and tap not matched within {a.timeout:g} s')
        return 1
    emit('matched')
    spin_until(ex, ctx, lambda: False, a.settle_s)

    def send(sample: dict[str, Any]) -> None:
        msg = GpioEvent(device=a.poke_device, pin=17, level=sample['in_level'], backend='bare')
        msg.tick_us = time.monotonic_ns() // 1000
        msg.tick = msg.tick_us % (1 << 32)
        t1 = time.time_ns()
        set_stamp(msg, t1)
        sample['t1'] = t1
        pub.publish(msg)

    total = a.warmup + a.samples
    sampler = Sampler(node, total, a.interval_ms / 1000, a.sample_timeout, ('t3',), send)
    st['sampler'] = sampler
    emit('started')
    finished = spin_until(ex, ctx, sampler.done.done, total * (a.interval_ms / 1000 + 0.05) + a.sample_timeout + 30)
    st['sampler'] = None
    emit('result', samples=sampler.samples, warmup=a.warmup, stray=sampler.stray, finished=finished,
         bench_executor=type(ex).__name__)
    return 0


def make_bare_tap(node: Any, command_tap: bool) -> None:
    """The bare rows' stand-in for the bench's reading: one more reader of ping (as the bench reads the input
    GpioEvent) and, unless --no-command-tap, of pong (as the bench reads the DigitalOutput command)."""
    from autopilot_msgs.msg import DigitalOutput, GpioEvent

    from autopilot_core import qos

    seen = {'ping': 0, 'pong': 0}

    def count(key: str) -> Callable[[Any], None]:
        return lambda _m: seen.__setitem__(key, seen[key] + 1)

    node.create_subscription(GpioEvent, 'bench/ping', count('ping'), qos.EVENTS)
    if command_tap:
        node.create_subscription(DigitalOutput, 'bench/pong', count('pong'), qos.EVENTS)


def child_bare(a: argparse.Namespace) -> int:
    """Bare rclpy: ``echo`` (B alone) or ``tap`` (until SIGINT), ``ping`` (A, measures) or ``one`` (A and B,
    one executor)."""
    import rclpy
    from rclpy.experimental import EventsExecutor

    init_child_ros(['bench_bare', '--ros-args', '-r', f'__ns:={a.ns}'])
    ex = EventsExecutor()
    nodes = []
    code = 0
    try:
        if a.child in ('bare-echo', 'bare-one'):
            echo = rclpy.create_node('bench_bare_echo')
            make_bare_echo(echo)
            ex.add_node(echo)
            nodes.append(echo)
        if a.child == 'bare-tap':
            tap = rclpy.create_node('bench_bare_tap')
            make_bare_tap(tap, not a.no_command_tap)
            ex.add_node(tap)
            nodes.append(tap)
            emit('ready')
            spin_until(ex, tap.context, lambda: False, 24 * 3600.0)  # until SIGINT sets STOP
        elif a.child == 'bare-echo':
            emit('ready')
            spin_until(ex, echo.context, lambda: False, 24 * 3600.0)  # until SIGINT sets STOP
        else:
            ping = rclpy.create_node('bench_bare_ping')
            ex.add_node(ping)
            nodes.append(ping)
            code = bare_ping(a, ping, ex)
    finally:
        ex.shutdown(timeout_sec=1.0)
        for n in nodes:
            n.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code


# --------------------------------------------------------------------------------------------------
# Orchestrator
# --------------------------------------------------------------------------------------------------

def child_cmd(a: argparse.Namespace, role: str, ns: str, *extra: str) -> list[str]:
    common = ['--child', role, '--parent', str(os.getpid()), '--ns', ns, '--timeout', str(a.timeout),
              '--settle-s', str(a.settle_s), '--warmup', str(a.warmup), '--samples', str(a.samples),
              '--interval-ms', str(a.interval_ms), '--sample-timeout', str(a.sample_timeout),
              '--poke-device', a.poke_device, '--pokes-per-trial', str(a.pokes_per_trial),
              '--gpio-params', str(a.gpio_params), '--log-dir', str(a.log_dir)]
    if a.no_command_tap:
        common.append('--no-command-tap')
    return [sys.executable, str(Path(__file__).resolve()), *common, *extra]


def exec_cmd(ns: str, cmd: list[str]) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), '--child', 'exec', '--parent', str(os.getpid()),
            '--ns', ns, '--', *cmd]


def hops_of(sample: dict[str, Any]) -> dict[str, float | None]:
    """Every hop of one sample in microseconds (None where a stamp is missing)."""
    out: dict[str, float | None] = {}
    for key, (start, end), _ in HOPS:
        s, e = sample.get(start), sample.get(end)
        out[key] = None if s is None or e is None else round((e - s) / 1000, 1)
    return out


def run_config(config: str, index: int, a: argparse.Namespace, env: dict[str, str], live: list[Child]) -> dict[str, Any]:
    """Start the processes of one configuration, measure, stop them; the raw result of the sampling child."""
    ns = f'/bench_cl_{os.getpid()}_{index}'
    journal = a.log_dir / f'{config}-journal.sqlite3'
    rig_args = ['-p', f'journal_path:={journal}', '-p', f'device_map:=["poke:{a.poke_device}"]']
    run: dict[str, Any] = {'config': config, 'namespace': ns, 'error': None,
                           'executor': f'make_executor({a.executor or "auto"}) in run_node' if config == 'processes'
                           else 'rclpy EventsExecutor' if config.startswith('bare') else None}
    children: list[Child] = []
    sampler: Child | None = None

    def start(name: str, cmd: list[str]) -> Child:
        child = Child(f'{config}-{name}', cmd, env, a.log_dir)
        children.append(child)
        live.append(child)
        return child

    t_start = time.monotonic()
    phase_budget = a.timeout * 3 + a.settle_s + 15  # discovery + session start + settle
    sample_budget = (a.warmup + a.samples) * (a.interval_ms / 1000 + 0.05) + a.sample_timeout + 60
    try:
        if config == 'processes':
            start('gpio', exec_cmd(ns, [str(GPIO_EXE), '--ros-args', '--params-file', str(a.gpio_params),
                                        '-r', f'__ns:={ns}', '-p',
                                        f'calibration_file:={a.log_dir / "processes-calibration.jsonl"}']))
            start('pilot', exec_cmd(ns, [str(PILOT_EXE), '--ros-args', '-r', f'__ns:={ns}', *rig_args]))
            sampler = start('bench', child_cmd(a, 'driver', ns))
        elif config in ('one-process', 'one-process-dds'):
            # one-process-dds: the same rig with autopilot_core.intra switched off (both nodes talk over DDS).
            rig_env = dict(env, AUTOPILOT_INTRA_PROCESS='0' if config == 'one-process-dds' else '1')
            rig = Child(f'{config}-rig', child_cmd(a, 'rig', ns, '--journal', str(journal)), rig_env, a.log_dir)
            children.append(rig)
            live.append(rig)
            run['rig'] = {k: v for k, v in rig.expect('ready', a.timeout + 15).items() if k != 'ev'}
            run['executor'] = run['rig']['executor']
            sampler = start('bench', child_cmd(a, 'driver', ns))
        elif config == 'bare-processes':
            start('tap', child_cmd(a, 'bare-tap', ns)).expect('ready', a.timeout + 15)
            start('echo', child_cmd(a, 'bare-echo', ns)).expect('ready', a.timeout + 15)
            sampler = start('ping', child_cmd(a, 'bare-ping', ns))
        else:
            start('tap', child_cmd(a, 'bare-tap', ns)).expect('ready', a.timeout + 15)
            sampler = start('one', child_cmd(a, 'bare-one', ns))
        matched = sampler.expect('matched', phase_budget)
        run['matched'] = {k: v for k, v in matched.items() if k != 'ev'}
        sampler.expect('started', a.settle_s + 15)
        run['setup_s'] = round(time.monotonic() - t_start, 2)
        res = sampler.expect('result', sample_budget)
        run.update({k: v for k, v in res.items() if k != 'ev'})
        dead = [c.name for c in children if not c.alive() and c is not sampler]
        if dead:
            run['error'] = f'exited during the run: {", ".join(dead)}'
    except ChildError as exc:
        run['error'] = str(exc)
    finally:
        for c in sorted(children, key=lambda c: c is not sampler):  # the sampler first: it exits by itself
            code = c.stop(natural=5.0 if c is sampler else 0.0)
            live.remove(c)
            run.setdefault('exit_codes', {})[c.name] = code
    run['case_s'] = round(time.monotonic() - t_start, 1)
    return run


def raw_samples(run: dict[str, Any], pokes_per_trial: int) -> list[dict[str, Any]]:
    """Every sample of one run as its hops in microseconds, with flags (warm-up, lost, trial end)."""
    bare = run['config'].startswith('bare')
    warmup = run.get('warmup', 0)
    raw = []
    for s in run.get('samples') or []:
        poke = (s['k'] + 1) // 2  # pokes completed after this sample's out edge
        trial_end = (not bare) and bool(s['k'] % 2) and poke % pokes_per_trial == 0
        raw.append({'round': run['round'], 'k': s['k'], 'edge': 'out' if s['k'] % 2 else 'in',
                    'warmup': s['k'] < warmup, 'lost': s['lost'] or not s['complete'], 'trial_end': trial_end,
                    **{k: v for k, v in hops_of(s).items() if v is not None}})
    return raw


def analyse(runs: list[dict[str, Any]], pokes_per_trial: int) -> dict[str, Any]:
    """Per-hop summaries of the measured (post-warm-up) samples of all rounds of one configuration."""
    config = runs[0]['config']
    bare = config.startswith('bare')
    raw = [r for run in runs for r in raw_samples(run, pokes_per_trial)]
    measured = [r for r in raw if not r['warmup']]
    ok = [r for r in measured if not r['lost']]
    keys = RATIO_HOPS if bare else [k for k, _, _ in HOPS]
    hops = {k: summary([r[k] for r in ok if k in r]) for k in keys}
    extra = {}
    if not bare:
        extra['loop_trial_end'] = summary([r['loop'] for r in ok if r['trial_end'] and 'loop' in r])
        extra['loop_other'] = summary([r['loop'] for r in ok if not r['trial_end'] and 'loop' in r])
        extra['apply_trial_end'] = summary([r['apply'] for r in ok if r['trial_end'] and 'apply' in r])
    errors = [f'round {run["round"] + 1}: {run["error"]}' for run in runs if run.get('error')]
    trials = [run.get('n_trials') for run in runs]
    return {'config': config, 'error': '; '.join(errors) or None, 'rounds': len(runs), 'measured': len(measured),
            'lost': sum(r['lost'] for r in measured), 'stray': sum(run.get('stray') or 0 for run in runs),
            'hops': hops, **extra, 'executor': runs[0].get('executor'),
            'n_trials': None if None in trials else sum(trials),
            'loop_p50_by_round': [summary([r['loop'] for r in ok if r['round'] == run['round'] and 'loop' in r])['p50']
                                  for run in runs],
            'samples_us': columns(raw), 'runs': [{k: v for k, v in run.items() if k != 'samples'} for run in runs]}


SAMPLE_COLUMNS = ('round', 'k', 'edge', 'warmup', 'lost', 'trial_end', *(k for k, _, _ in HOPS))


def columns(raw: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Samples as columns (one value per sample, arrival order; hops in us, None where not measured)."""
    return {c: [r.get(c) for r in raw] for c in SAMPLE_COLUMNS}


def to_json(obj: Any, indent: int = 0) -> str:
    """JSON with one key per line, but lists of scalars (the sample columns) on one line each."""
    pad, inner = ' ' * indent, ' ' * (indent + 1)
    if isinstance(obj, dict) and obj:
        items = [f'{inner}{json.dumps(str(k))}: {to_json(v, indent + 1)}' for k, v in obj.items()]
        return '{\n' + ',\n'.join(items) + f'\n{pad}}}'
    if isinstance(obj, list) and any(isinstance(v, dict | list) for v in obj):
        return '[\n' + ',\n'.join(inner + to_json(v, indent + 1) for v in obj) + f'\n{pad}]'
    return json.dumps(obj, allow_nan=False)


def build_rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One table row per (configuration, hop), with ratios to the same hop of the bare row."""
    rows = []
    for config in CONFIGS:
        r = results.get(config)
        if r is None:
            continue
        bare = results.get(BARE_OF.get(config, ''))
        for key, _, label in HOPS:
            h = r['hops'].get(key)
            if not h or not h['n']:
                continue  # a bare row's missing hops, or decide/apply with --no-command-tap
            row = {'config': config, 'hop': key, 'label': BARE_LABELS.get(key, label) if config.startswith('bare')
                   else label, **h, 'lost': r['lost'], 'error': r['error']}
            b = bare['hops'].get(key) if bare else None
            if b and b['n'] and h['n'] and key in RATIO_HOPS:
                row['x_bare_p50'] = h['p50'] / b['p50'] if b['p50'] else None
                row['x_bare_p99'] = h['p99'] / b['p99'] if b['p99'] else None
            rows.append(row)
    return rows


def check_targets(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    targets = []
    for config, stat, limit in TARGETS:
        r = results.get(config)
        if r is None:
            continue
        value = r['hops']['loop'][stat] if r['hops'].get('loop') else None
        complete = r['error'] is None and r['lost'] == 0 and value is not None
        targets.append({'config': config, 'metric': f'loop {stat}', 'value_ms': value, 'limit_ms': limit,
                        'passed': bool(complete and value < limit),
                        'note': None if complete else (r['error'] or f'{r["lost"]} lost sample(s)')})
    return targets


COLUMNS = (('config', 'config', ''), ('label', 'hop', ''), ('n', 'n', 'd'), ('p50', 'p50 ms', '.3f'),
           ('p90', 'p90 ms', '.3f'), ('p99', 'p99 ms', '.3f'), ('max', 'max ms', '.3f'),
           ('x_bare_p50', 'x bare p50', '.2f'), ('x_bare_p99', 'x bare p99', '.2f'))


def print_report(rows: list[dict[str, Any]], results: dict[str, dict[str, Any]],
                 targets: list[dict[str, Any]]) -> None:
    print_table(rows, COLUMNS, left=2, group='config')
    print('(x bare: ratio to the same hop of the bare rclpy row of the same kind: processes vs bare-processes, '
          'one-process and one-process-dds vs bare-one-process)')
    for config in CONFIGS:
        r = results.get(config)
        if r is None:
            continue
        te, other = r.get('loop_trial_end'), r.get('loop_other')
        by_round = ', '.join(fmt(v, '.3f') for v in r['loop_p50_by_round'])
        parts = [f'{config}: {r["measured"]} samples in {r["rounds"]} round(s) (LOOP p50 by round {by_round} ms), '
                 f'{r["lost"]} lost, {r["stray"]} stray, executor {r["executor"]}']
        if te and te['n']:
            parts.append(f'LOOP at trial ends (journal fsync) p50 {fmt(te["p50"], ".3f")} / max {fmt(te["max"], ".3f")} '
                         f'ms (n={te["n"]}), other samples p50 {fmt(other["p50"], ".3f")} / '
                         f'p99 {fmt(other["p99"], ".3f")} ms')
        if r.get('n_trials') is not None:
            parts.append(f'{r["n_trials"]} trials')
        print('  ' + '; '.join(parts))
        if r['error']:
            print(f'    ERROR: {r["error"].splitlines()[0][:300]}')
    for t in targets:
        verdict = 'PASS' if t['passed'] else 'FAIL'
        note = f' ({t["note"]})' if t['note'] else ''
        print(f'{verdict}: {t["config"]} {t["metric"]} = {fmt(t["value_ms"], ".3f")} ms (target < {t["limit_ms"]:g} ms)'
              f'{note}')


def versions() -> dict[str, Any]:
    return ros_versions('autopilot-pilot', 'autopilot-hardware')


def orchestrate(a: argparse.Namespace) -> int:
    env = dict(os.environ, ROS_DOMAIN_ID=str(a.domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
               PYTHONUNBUFFERED='1', RCUTILS_COLORIZED_OUTPUT='0')
    for var in ('ROS_STATIC_PEERS', 'FASTRTPS_DEFAULT_PROFILES_FILE', 'FASTDDS_BUILTIN_TRANSPORTS'):
        env.pop(var, None)
    if a.executor:
        env['AUTOPILOT_EXECUTOR'] = a.executor
    else:
        env.pop('AUTOPILOT_EXECUTOR', None)  # make_executor()'s automatic choice, as deployed
    for exe in (GPIO_EXE, PILOT_EXE):
        if not exe.exists():
            sys.exit(f'{exe} is missing: run `python scripts/setup.py` first')
    started_wall, started = datetime.now(timezone.utc), time.monotonic()
    machine = machine_info()
    print(f'closed-loop benchmark: domain {a.domain_id}, {a.samples} samples (+{a.warmup} warm-up) per row, '
          f'an edge every {a.interval_ms:g} ms, input {a.poke_device}, settle {a.settle_s:g} s', flush=True)

    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    live: list[Child] = []
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in a.configs}
    # Every other round in reverse order, so a slow drift of the machine's load favours no row.
    cases = [(rnd, c) for rnd in range(a.rounds) for c in (a.configs if rnd % 2 == 0 else a.configs[::-1])]
    try:
        for i, (rnd, config) in enumerate(cases):
            run = run_config(config, i, a, env, live)
            run['round'] = rnd
            runs[config].append(run)
            one = analyse([run], a.pokes_per_trial)
            loop = one['hops']['loop']
            status = 'ok' if run['error'] is None else 'ERROR'
            print(f'  [{i + 1}/{len(cases)}] round {rnd + 1} {config}: {status}, loop p50 {fmt(loop["p50"], ".3f")} ms '
                  f'p99 {fmt(loop["p99"], ".3f")} ms, {one["lost"]} lost ({run["case_s"]} s)', flush=True)
    finally:
        for c in list(live):
            c.stop(grace=1.0)
    results = {c: analyse(r, a.pokes_per_trial) for c, r in runs.items() if r}
    machine['loadavg_end'] = list(os.getloadavg())
    rows = build_rows(results)
    targets = check_targets(results)
    print()
    print_report(rows, results, targets)
    params = {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()
              if k not in ('child', 'out', 'parent', 'ns', 'cmd', 'journal')}
    doc = {'benchmark': 'closed_loop', 'started': started_wall.isoformat(timespec='seconds'),
           'duration_s': round(time.monotonic() - started, 1), 'command': sys.argv, 'params': params,
           'machine': machine, 'versions': versions(),
           'stamps': {'t0': 'bench publishes sim_input (time.time_ns)', 't1': 'input GpioEvent header.stamp',
                      't2': 'DigitalOutput header.stamp (pilot, at the task decision)',
                      't3': 'output GpioEvent header.stamp', 't4': 'bench receives the output event',
                      'bare': 't1 A stamps before publish, t2 B stamps in its callback, t3 A receives'},
           'rows': rows, 'targets': targets, 'configs': results}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(to_json(doc) + '\n')
    print(f'JSON: {a.out}   child logs: {a.log_dir}')
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or '').split('\n')[0])
    ap.add_argument('--quick', action='store_true', help='smoke run: 30 samples, short settle, no claims')
    ap.add_argument('--configs', nargs='+', default=list(CONFIGS), choices=CONFIGS)
    ap.add_argument('--samples', type=int, default=None, help='measured edges per row and round (default 300; quick 30)')
    ap.add_argument('--warmup', type=int, default=None, help='edges sent first, not counted (default 20; quick 6)')
    ap.add_argument('--interval-ms', type=float, default=20.0, help='time between edges (a poke = 2 edges)')
    ap.add_argument('--sample-timeout', type=float, default=1.0, help='a loop not closed after this is lost (s)')
    ap.add_argument('--settle-s', type=float, default=None, help='wait after matching before the first edge '
                    '(default 5: past the one-off discovery stall; quick 1)')
    ap.add_argument('--poke-device', default='poke_left', help='sim input mapped to the echo task\'s poke role')
    ap.add_argument('--pokes-per-trial', type=int, default=10, help='echo task parameter: trial ends every N pokes')
    ap.add_argument('--executor', choices=('events', 'single', 'multi'), default=None,
                    help='AUTOPILOT_EXECUTOR for the rig nodes (default: make_executor\'s automatic choice)')
    ap.add_argument('--gpio-params', type=Path, default=GPIO_PARAMS)
    ap.add_argument('--domain-id', type=int, default=int(os.environ.get('BENCH_DOMAIN_ID', 167)))
    ap.add_argument('--timeout', type=float, default=20.0, help='discovery / session start timeout per phase (s)')
    ap.add_argument('--out', type=Path, default=DEFAULT_OUT)
    ap.add_argument('--log-dir', type=Path, default=None, help='children\'s logs and journals (default: a temp dir)')
    ap.add_argument('--rounds', type=int, default=None, help='repeat every row, order reversed every other '
                    'round; samples of all rounds are pooled (default 2; quick 1)')
    ap.add_argument('--no-command-tap', action='store_true', help='the bench does not read gpio/output: no t2 '
                    '(no decide/apply hops), one reader fewer on the pilot\'s publish (and on pong in bare rows)')
    ap.add_argument('--child', choices=('driver', 'rig', 'bare-echo', 'bare-tap', 'bare-ping', 'bare-one', 'exec'),
                    help=argparse.SUPPRESS)
    ap.add_argument('--parent', type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument('--ns', default='', help=argparse.SUPPRESS)
    ap.add_argument('--journal', default='', help=argparse.SUPPRESS)
    ap.add_argument('cmd', nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.cmd and a.cmd[0] == '--':
        a.cmd = a.cmd[1:]
    if a.cmd and a.child != 'exec':
        ap.error(f'unexpected arguments: {" ".join(a.cmd)}')
    a.samples = a.samples or (30 if a.quick else 300)
    a.warmup = a.warmup if a.warmup is not None else (6 if a.quick else 20)
    a.settle_s = a.settle_s if a.settle_s is not None else (1.0 if a.quick else 5.0)
    a.rounds = a.rounds or (1 if a.quick else 2)
    return a


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv), {'driver': child_driver, 'rig': child_rig, 'bare-echo': child_bare, 'bare-tap': child_bare,
                    'bare-ping': child_bare, 'bare-one': child_bare}, orchestrate, 'bench-closed-loop-')


if __name__ == '__main__':
    sys.exit(main())
