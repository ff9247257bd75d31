#!/usr/bin/env python3
"""Transport benchmark: bare rclpy vs. autopilot_core's path vs. Autopilot's ZMQ+JSON, two processes.

For each transport and each message size (~200 B and 1 MiB), a fresh receiver process and a fresh
sender process (new interpreters, never a fork of an rclpy process) measure:

* **throughput**: the sender publishes N messages as fast as the transport accepts them; the
  receiver counts them. msg/s = delivered / (receive time of the last message - send time of the
  first), both read from CLOCK_MONOTONIC (``time.monotonic``), which is system-wide on Linux, so
  the two processes' stamps compare directly. Every message must arrive (delivered/sent is reported).
* **round trip**: ping-pong; the sender publishes a ping, the receiver echoes it on another topic,
  the sender's pong callback stamps the round trip and publishes the next ping (p50/p99 reported).

Transports (rows):

``rclpy-single``  bare rclpy, ``SingleThreadedExecutor``, reliable + keep-all + volatile QoS.
``rclpy-events``  bare rclpy, ``rclpy.experimental.EventsExecutor`` (every spin call with a timeout,
                  ROS2-PIP.md), same QoS. Spins with ``spin_until_future_complete(f, timeout_sec=1)``:
                  the fastest timed-out call it has (the C++ loop runs callbacks back to back).
``autopilot``     what a node of the suite does: ``autopilot_core.qos`` profiles (TRIALS for ~200 B
                  trial data; EVENTS for 1 MiB, i.e. a recorder that must keep every camera frame:
                  STREAM is best effort and would drop frames, so no "delivered == sent" comparison
                  with bare rclpy would be possible) and ``autopilot_core.executors`` (``make_executor``
                  auto choice; receiver = ``spin(node, ex, stop=...)`` as ``run_node`` does, sender =
                  ``spin_until_future``). TRIALS/EVENTS are reliable + keep-all + volatile, i.e. the same
                  QoS as the bare rows, so any difference is the spin helpers'.
``autopilot-stream`` (only with ``--stream``, 1 MiB) the STREAM profile, best effort: losses reported.
``zmq-json``      Autopilot 0.5's transport: pyzmq over TCP loopback, each message a dict shaped like
                  Autopilot's ``Message`` (id/to/sender/key/value/flags/timestamp) sent as
                  ``json.dumps(...).encode()``; PUB/SUB with high-water marks 0 (unbounded) so PUB never
                  drops. The 1 MiB payload is base64 text in the JSON (Autopilot base64-encodes numpy
                  arrays in ``Message.serialize``, after blosc, which is skipped here: the frame is random,
                  incompressible bytes). Receivers ``json.loads`` and base64-decode every message, as
                  Autopilot's ``Message`` does, so both sides pay (de)serialisation like rclpy does.

All ROS rows use the same message type per size: ``autopilot_msgs/TrialData`` (257 B CDR, two typed
fields; ``--small-type string`` uses ``std_msgs/String`` instead) and ``sensor_msgs/Image`` 1024x1024
mono8 (1 MiB). MB/s = msg/s x bytes on the wire per message (CDR, or JSON for ZMQ; column B/msg).

Every case runs ``--rounds`` times (default 3, order reversed every other round); a row gives the
median throughput of its rounds and round-trip percentiles of all rounds' samples pooled. Rows also
give the receiver's process CPU time per message ("rx µs", all threads): on a shared 2-core machine it
is much steadier than any wall-clock rate, and it shows per-message overhead directly.

Run: ``python bench/transport.py`` (full, ~2-3 min on 2 cores) or ``--quick`` (smoke run).
Prints a table and PASS/FAIL lines for the target (autopilot throughput >= 0.9x and round-trip p50
<= 1.1x the best bare rclpy row of the same size) and writes JSON (``--out``). Exit status is 0 even
on FAIL: this is a measurement. Discovery is awaited by matching endpoints; every phase has a timeout;
child processes are always stopped (SIGINT, then SIGKILL).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import select
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
import traceback
from array import array
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from common import Child, ChildError, die_with_parent, dist_version, emit, machine_info

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / 'results' / 'transport.json'
ROS_VARIANTS = ('rclpy-single', 'rclpy-events', 'autopilot')
BARE_VARIANTS = ('rclpy-single', 'rclpy-events')
VARIANTS = (*ROS_VARIANTS, 'zmq-json')
SIZES = ('small', 'large')
LARGE_SIDE = 1024  # Image 1024x1024 mono8 = 1 MiB
SEQ_END = -1  # marks the end of the throughput stream
SEQ_STOP = -2  # tells the receiver to exit
# Round trips discarded at the start of a ping-pong (first-touch allocations, caches).
RTT_DISCARD = {'small': 50, 'large': 5}
WARMUP_ROUNDS = {'small': 20, 'large': 3}
THRESH_TP, THRESH_RTT = 0.9, 1.1
TRIAL_FIELDS = (('response_time', 2, 'us', 412345), ('correct', 1, 'bool', True))


# --------------------------------------------------------------------------------------------------
# Child side (sender and receiver processes)
# --------------------------------------------------------------------------------------------------

class StdinCommands:
    """Line commands from the orchestrator, read with a timeout (os.read: no hidden buffering)."""

    def __init__(self) -> None:
        self._buf = b''

    def wait(self, expected: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while b'\n' not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f'no {expected!r} command from the orchestrator within {timeout:.0f} s')
            ready, _, _ = select.select([0], [], [], remaining)
            if ready:
                chunk = os.read(0, 4096)
                if not chunk:
                    raise EOFError('orchestrator closed stdin')
                self._buf += chunk
        line, self._buf = self._buf.split(b'\n', 1)
        if line.decode().strip() != expected:
            raise RuntimeError(f'expected command {expected!r}, got {line!r}')


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``cond`` (a graph query; DDS discovers on its own threads, no spinning needed)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f'{what} not within {timeout:.0f} s')
        time.sleep(0.005)


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return float('nan')
    k = (len(sorted_values) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


class RosMessages:
    """The message of one size: a prebuilt instance, its type, and a sequence number inside it."""

    def __init__(self, size: str, small_type: str) -> None:
        from rclpy.serialization import serialize_message

        self.has_header = True
        if size == 'large':
            from sensor_msgs.msg import Image

            self.type: Any = Image
            self.proto = Image(height=LARGE_SIDE, width=LARGE_SIDE, encoding='mono8', step=LARGE_SIDE)
            # array('B') is what the generated setter stores; assigning one skips per-byte validation.
            self.proto.data = array('B', os.urandom(LARGE_SIDE * LARGE_SIDE))
        elif small_type == 'trial':
            from autopilot_msgs.msg import TrialData, TrialField

            self.type = TrialData
            fields = [TrialField(name=n, type=t, unit=u, **{'int_value' if t == 2 else 'bool_value': v})
                      for n, t, u, v in TRIAL_FIELDS]
            self.proto = TrialData(pilot='pilot01', subject='mouse_0042',
                                   session_id='0b6f2c1e-6a55-4c52-9a4e-2f1d3c9b7a10', trial_number=1,
                                   task='Nafc', protocol='nafc_training', step=2, step_name='two_port',
                                   fields=fields)
        else:
            from std_msgs.msg import String

            self.type = String
            self.has_header = False
            self.proto = String(data=f'{0:>11d}|' + 'x' * 188)
        self.wire_bytes = len(serialize_message(self.proto))

    def seq(self, msg: Any) -> int:
        if self.has_header:
            return msg.header.stamp.sec
        return int(msg.data[:11])

    def set_seq(self, msg: Any, seq: int) -> None:
        if self.has_header:
            msg.header.stamp.sec = seq
        else:
            msg.data = f'{seq:>11d}' + msg.data[11:]


def ros_child(p: dict[str, Any]) -> None:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.task import Future

    variant, role, size = p['variant'], p['role'], p['size']
    rclpy.init()
    node = rclpy.create_node(f'bench_{role}', namespace=p['ns'])
    ctx = node.context
    kind = RosMessages(size, p['small_type'])
    lossy = False
    spin_fn: Callable[[Future, float], bool]
    if variant == 'autopilot':
        from autopilot_core import executors
        from autopilot_core import qos as apqos

        qos = apqos.by_name(p['qos'])
        lossy = qos.reliability == ReliabilityPolicy.BEST_EFFORT
        ex = executors.make_executor()

        def spin_fn(fut: Future, timeout: float) -> bool:
            return executors.spin_until_future(node, fut, timeout, executor=ex)
    else:
        qos = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)
        if variant == 'rclpy-events':
            from rclpy.experimental import EventsExecutor

            ex = EventsExecutor()
        else:
            ex = SingleThreadedExecutor()
        ex.add_node(node)

        def spin_fn(fut: Future, timeout: float) -> bool:
            # 1 s slices: always a timeout (EventsExecutor hang), and shutdown/SIGINT seen promptly.
            deadline = time.monotonic() + timeout
            while not fut.done() and ctx.ok():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                ex.spin_until_future_complete(fut, timeout_sec=min(1.0, remaining))
            return fut.done()

    info = dict(executor=type(ex).__name__, rmw=rclpy.get_rmw_implementation_identifier(),
                msg_type=f'{kind.type.__module__.split(".")[0]}/{kind.type.__name__}',
                wire_bytes=kind.wire_bytes, qos=str(qos.history.name + '/' + qos.reliability.name + '/'
                                                    + qos.durability.name), lossy=lossy)
    try:
        if role == 'receiver':
            ros_receiver(p, node, ex, kind, qos, info, spin_fn)
        else:
            ros_sender(p, node, kind, qos, info, spin_fn, lossy)
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


def ros_receiver(p: dict[str, Any], node: Any, ex: Any, kind: RosMessages, qos: Any,
                 info: dict[str, Any], spin_fn: Callable[[Any, float], bool]) -> None:
    from rclpy.task import Future

    n = p['n']
    st = {'count': 0, 't_first': 0.0, 't_last': 0.0, 'max_gap': 0.0, 'cpu_first': 0.0, 'reported': False,
          'echoed': 0}
    stop_future = Future()
    stop_event = threading.Event()

    def report() -> None:
        st['reported'] = True
        emit('tp_done', count=st['count'], t_first=st['t_first'], t_last=st['t_last'],
             max_gap=st['max_gap'], cpu=time.process_time() - st['cpu_first'])

    def on_tp(msg: Any) -> None:
        seq = kind.seq(msg)
        if seq >= 0:
            now = time.monotonic()
            st['count'] += 1
            if st['count'] == 1:
                st['t_first'] = now
                # Process CPU time (all threads: executor + DDS receive) per message: far less
                # sensitive to other load on the machine than the wall-clock rate.
                st['cpu_first'] = time.process_time()
            elif now - st['t_last'] > st['max_gap']:
                st['max_gap'] = now - st['t_last']
            st['t_last'] = now
            if st['count'] == n and not st['reported']:
                report()
        elif seq == SEQ_END and not st['reported']:
            report()

    def on_ping(msg: Any) -> None:
        if kind.seq(msg) == SEQ_STOP:
            stop_future.set_result(True)
            stop_event.set()
            return
        pub_pong.publish(msg)
        st['echoed'] += 1

    sub_tp = node.create_subscription(kind.type, 'tp', on_tp, qos)
    sub_ping = node.create_subscription(kind.type, 'ping', on_ping, qos)
    pub_pong = node.create_publisher(kind.type, 'pong', qos)
    wait_for(lambda: sub_tp.get_publisher_count() >= 1 and sub_ping.get_publisher_count() >= 1
             and pub_pong.get_subscription_count() >= 1, p['discovery_timeout'], 'receiver matching')
    emit('ready', **info)
    if p['variant'] == 'autopilot':
        from autopilot_core import executors

        # Exactly what run_node does for a node's lifetime: spin until a stop event.
        executors.spin(node, ex, stop=stop_event, timeout_sec=p['life_timeout'])
    else:
        spin_fn(stop_future, p['life_timeout'])
    if not st['reported']:
        report()
    emit('bye', stopped=stop_event.is_set(), echoed=st['echoed'])


def ros_sender(p: dict[str, Any], node: Any, kind: RosMessages, qos: Any, info: dict[str, Any],
               spin_fn: Callable[[Any, float], bool], lossy: bool) -> None:
    from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
    from rclpy.task import Future

    cmds = StdinCommands()
    size = p['size']
    pong_handler: list[Callable[[Any], None]] = [lambda msg: None]
    pub_tp = node.create_publisher(kind.type, 'tp', qos)
    pub_ping = node.create_publisher(kind.type, 'ping', qos)
    sub_pong = node.create_subscription(kind.type, 'pong', lambda msg: pong_handler[0](msg), qos)
    wait_for(lambda: pub_tp.get_subscription_count() >= 1 and pub_ping.get_subscription_count() >= 1
             and sub_pong.get_publisher_count() >= 1, p['discovery_timeout'], 'sender matching')

    def publish(pub: Any, msg: Any, deadline: float) -> int:
        """Publish, retrying while a reliable keep-all writer is full (it raises after ~100 ms)."""
        retries = 0
        while True:
            try:
                pub.publish(msg)
                return retries
            except _rclpy.RCLError:
                retries += 1
                if time.monotonic() > deadline or not node.context.ok():
                    raise

    def pingpong(rounds: int, timeout: float, budget: float) -> tuple[list[float], int]:
        ping = kind.proto
        rtts: list[float] = []
        st = {'seq': -1, 't': 0.0, 'lost': 0}
        done = Future()
        deadline = time.monotonic() + timeout
        budget_end = time.monotonic() + budget

        def send_next() -> None:
            st['seq'] += 1
            if st['seq'] >= rounds or time.monotonic() > budget_end:
                if not done.done():
                    done.set_result(True)
                return
            kind.set_seq(ping, st['seq'])
            st['t'] = time.monotonic()
            publish(pub_ping, ping, deadline)

        def on_pong(msg: Any) -> None:
            now = time.monotonic()
            if kind.seq(msg) != st['seq']:
                return  # a late answer to a ping given up as lost
            rtts.append(now - st['t'])
            send_next()

        def watchdog() -> None:
            # Only best-effort QoS loses pings; give one up after 0.5 s so the chain continues.
            if not done.done() and time.monotonic() - st['t'] > 0.5:
                st['lost'] += 1
                send_next()

        pong_handler[0] = on_pong
        timer = node.create_timer(0.1, watchdog) if lossy else None
        send_next()
        ok = spin_fn(done, timeout)
        pong_handler[0] = lambda msg: None
        if timer is not None:
            node.destroy_timer(timer)
        if not ok:
            raise TimeoutError(f'ping-pong: {len(rtts)}/{rounds} round trips within {timeout:.0f} s')
        return rtts, st['lost']

    # A few round trips before "ready": proves both directions carry data, whatever discovery reported.
    pingpong(WARMUP_ROUNDS[size], p['discovery_timeout'], p['discovery_timeout'])
    emit('ready', **info)

    cmds.wait('tp', p['life_timeout'])
    msg = kind.proto
    deadline = time.monotonic() + p['tp_timeout']
    retries = 0
    t0 = time.monotonic()
    for i in range(p['n']):
        kind.set_seq(msg, i)
        retries += publish(pub_tp, msg, deadline)
    t_pub_end = time.monotonic()
    # No wait_for_all_acked here: the receiver's count is the measure, and the last acks can wait
    # for Fast DDS's periodic heartbeat (3 s), which would only slow the run down.
    kind.set_seq(msg, SEQ_END)
    for _ in range(5 if lossy else 1):
        publish(pub_tp, msg, deadline)
        if lossy:
            time.sleep(0.05)  # best effort: repeat the end marker, spaced, so one arrives
    emit('tp_sent', sent=p['n'], t0=t0, t_pub_end=t_pub_end, publish_retries=retries)

    cmds.wait('rtt', p['life_timeout'])
    rtts, lost = pingpong(p['n_rtt'], p['rtt_timeout'], p['rtt_budget'])
    emit('rtt', rtts=rtts, lost=lost)
    kind.set_seq(msg, SEQ_STOP)
    for _ in range(5 if lossy else 1):
        pub_ping.publish(msg)
    # Stay alive (so the stop message can still be repaired) until the receiver confirmed it.
    emit('stop_sent')
    cmds.wait('exit', p['life_timeout'])
    emit('bye')


# ZMQ -----------------------------------------------------------------------------------------------

def zmq_message(size: str, seq: int, frame: bytes | None) -> bytes:
    """An Autopilot-style message dict, serialised as Autopilot does (json.dumps, utf-8)."""
    if size == 'large':
        assert frame is not None
        value: dict[str, Any] = {'seq': seq, 'height': LARGE_SIDE, 'width': LARGE_SIDE, 'encoding': 'mono8',
                                 'frame': base64.b64encode(frame).decode('ascii')}
    else:
        value = {'seq': seq, 'pilot': 'pilot01', 'subject': 'mouse_0042',
                 'session_id': '0b6f2c1e-6a55-4c52-9a4e-2f1d3c9b7a10', 'trial_num': seq, 'task': 'Nafc',
                 'protocol': 'nafc_training', 'step': 2, 'step_name': 'two_port',
                 **{name: v for name, _, _, v in TRIAL_FIELDS}}
    return json.dumps({'id': f'sender_{seq}', 'to': 'receiver', 'sender': 'sender', 'key': 'DATA',
                       'value': value, 'flags': {}, 'timestamp': datetime.now().isoformat()}).encode()


def zmq_decode(size: str, body: bytes) -> tuple[int, bytes | None]:
    """Deserialise like Autopilot's Message: json.loads, base64-decode the array payload."""
    value = json.loads(body)['value']
    frame = base64.b64decode(value['frame']) if size == 'large' else None
    return value['seq'], frame


def zmq_child(p: dict[str, Any]) -> None:
    import zmq

    role, size = p['role'], p['size']
    ctx = zmq.Context()
    info = dict(executor='-', rmw=f'zmq {zmq.zmq_version()} / pyzmq {zmq.__version__}', msg_type='json',
                wire_bytes=len(zmq_message(size, 0, os.urandom(LARGE_SIDE * LARGE_SIDE) if size == 'large'
                                           else None)), qos='PUB/SUB tcp hwm=0', lossy=False)
    sub = ctx.socket(zmq.SUB)
    pub = ctx.socket(zmq.PUB)
    # HWM 0 = unbounded queues: PUB/SUB has no back-pressure and drops at the HWM otherwise.
    for s in (sub, pub):
        s.setsockopt(zmq.LINGER, 0)  # delivery is confirmed by the protocol (stop -> bye)
    sub.setsockopt(zmq.RCVHWM, 0)
    pub.setsockopt(zmq.SNDHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b'')
    ping_ep = f'tcp://127.0.0.1:{p["ports"][0]}'
    pong_ep = f'tcp://127.0.0.1:{p["ports"][1]}'
    try:
        if role == 'receiver':
            sub.bind(ping_ep)
            pub.bind(pong_ep)
            zmq_receiver(p, sub, pub, info, zmq)
        else:
            pub.connect(ping_ep)
            sub.connect(pong_ep)
            zmq_sender(p, sub, pub, info, zmq)
    finally:
        sub.close()
        pub.close()
        ctx.term()


def zmq_receiver(p: dict[str, Any], sub: Any, pub: Any, info: dict[str, Any], zmq: Any) -> None:
    size, n = p['size'], p['n']
    sub.setsockopt(zmq.RCVTIMEO, 1000)
    emit('ready', **info)  # no discovery: the sender's probe handshake proves both directions
    count, t_first, t_last, max_gap, cpu_first, reported, echoed = 0, 0.0, 0.0, 0.0, 0.0, False, 0
    deadline = time.monotonic() + p['life_timeout']
    while time.monotonic() < deadline:
        try:
            topic, body = sub.recv_multipart()
        except zmq.Again:
            continue
        if topic == b'tp':
            zmq_decode(size, body)
            now = time.monotonic()
            count += 1
            if count == 1:
                t_first = now
                cpu_first = time.process_time()
            elif now - t_last > max_gap:
                max_gap = now - t_last
            t_last = now
            if count == n:
                reported = True
                emit('tp_done', count=count, t_first=t_first, t_last=t_last, max_gap=max_gap,
                     cpu=time.process_time() - cpu_first)
        elif topic == b'ping':
            seq, frame = zmq_decode(size, body)
            pub.send_multipart([b'pong', zmq_message(size, seq, frame)])
            echoed += 1
        elif topic == b'probe':
            pub.send_multipart([b'probe_ack', b'{}'])
        elif topic == b'end' and not reported:
            reported = True
            emit('tp_done', count=count, t_first=t_first, t_last=t_last, max_gap=max_gap,
                 cpu=time.process_time() - cpu_first)
        elif topic == b'stop':
            emit('bye', stopped=True, echoed=echoed)
            return
    raise TimeoutError('receiver: no stop within its life timeout')


def zmq_sender(p: dict[str, Any], sub: Any, pub: Any, info: dict[str, Any], zmq: Any) -> None:
    size = p['size']
    cmds = StdinCommands()
    frame = os.urandom(LARGE_SIDE * LARGE_SIDE) if size == 'large' else None
    # PUB/SUB "slow joiner": probe until the receiver answers, so no message goes to an unconnected pipe.
    deadline = time.monotonic() + p['discovery_timeout']
    while True:
        pub.send_multipart([b'probe', b'{}'])
        if sub.poll(50):
            topic, _ = sub.recv_multipart()
            if topic == b'probe_ack':
                break
        if time.monotonic() > deadline:
            raise TimeoutError('zmq probe handshake timed out')

    def pingpong(rounds: int, timeout: float, budget: float) -> list[float]:
        rtts: list[float] = []
        end = time.monotonic() + timeout
        budget_end = time.monotonic() + budget
        for seq in range(rounds):
            t = time.monotonic()
            if t > budget_end:
                break
            pub.send_multipart([b'ping', zmq_message(size, seq, frame)])
            while True:  # skip stray probe_acks
                remaining = end - time.monotonic()
                if remaining <= 0 or not sub.poll(int(remaining * 1000) + 1):
                    raise TimeoutError(f'ping-pong: {len(rtts)}/{rounds} round trips within {timeout:.0f} s')
                topic, body = sub.recv_multipart()
                if topic == b'pong':
                    got, _ = zmq_decode(size, body)
                    if got == seq:
                        break
            rtts.append(time.monotonic() - t)
        return rtts

    pingpong(WARMUP_ROUNDS[size], p['discovery_timeout'], p['discovery_timeout'])
    emit('ready', **info)
    cmds.wait('tp', p['life_timeout'])
    t0 = time.monotonic()
    for i in range(p['n']):
        pub.send_multipart([b'tp', zmq_message(size, i, frame)])
    t_pub_end = time.monotonic()
    pub.send_multipart([b'end', b''])
    emit('tp_sent', sent=p['n'], t0=t0, t_pub_end=t_pub_end, publish_retries=0)
    cmds.wait('rtt', p['life_timeout'])
    rtts = pingpong(p['n_rtt'], p['rtt_timeout'], p['rtt_budget'])
    emit('rtt', rtts=rtts, lost=0)
    pub.send_multipart([b'stop', b''])
    emit('stop_sent')
    cmds.wait('exit', p['life_timeout'])
    emit('bye')


def child_main(params_json: str) -> int:
    p = json.loads(params_json)
    die_with_parent(p['parent'])
    try:
        if p['variant'] == 'zmq-json':
            zmq_child(p)
        else:
            ros_child(p)
        return 0
    except BaseException as exc:  # noqa: BLE001 - reported to the orchestrator, which decides
        emit('error', message=f'{type(exc).__name__}: {exc}', traceback=traceback.format_exc())
        return 1


# --------------------------------------------------------------------------------------------------
# Orchestrator
# --------------------------------------------------------------------------------------------------

def start_child(name: str, params: dict[str, Any], env: dict[str, str], log_dir: Path) -> Child:
    """A sender or receiver process: protocol lines on its stdout, commands (:meth:`Child.send`) on its stdin."""
    return Child(name, [sys.executable, str(Path(__file__).resolve()), '--child', json.dumps(params)], env, log_dir,
                 stdin=True)


def stop_child(child: Child, wait: float) -> None:
    """Give it ``wait`` s to exit by itself; else SIGINT (rclpy shuts down, Fast DDS frees /dev/shm), then SIGKILL."""
    child.stop(grace=3.0, natural=wait)


def free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(('127.0.0.1', 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def run_case(variant: str, size: str, args: argparse.Namespace, index: int, env: dict[str, str],
             log_dir: Path, live: list[Child]) -> dict[str, Any]:
    """One transport x size: a fresh receiver and sender, throughput then ping-pong."""
    n = args.n_small if size == 'small' else args.n_large
    n_rtt_measured = args.rtt_small if size == 'small' else args.rtt_large
    n_rtt = n_rtt_measured + RTT_DISCARD[size]
    # Timeouts generous enough for a loaded 2-core machine, finite so nothing hangs.
    min_rate = 300.0 if size == 'small' else 4.0
    tp_timeout = 30.0 + n / min_rate
    # Ping-pong stops early after this long (reported as truncated): a reliable 1 MiB round trip
    # can wait ~3 s for Fast DDS to repair a lost fragment, and the run must stay short.
    rtt_budget = args.rtt_budget * (1.0 if size == 'small' else 1.5)
    rtt_timeout = rtt_budget + 30.0
    qos_name = {'autopilot': 'trials' if size == 'small' else 'events', 'autopilot-stream': 'stream'}
    params = dict(variant='autopilot' if variant == 'autopilot-stream' else variant, size=size,
                  parent=os.getpid(),
                  n=n, n_rtt=n_rtt, small_type=args.small_type, ns=f'/bench_{os.getpid()}_{index}',
                  qos=qos_name.get(variant, ''), lossy=variant == 'autopilot-stream',
                  ports=free_ports(2) if variant == 'zmq-json' else [],
                  discovery_timeout=args.discovery_timeout, tp_timeout=tp_timeout, rtt_timeout=rtt_timeout,
                  rtt_budget=rtt_budget,
                  life_timeout=args.discovery_timeout + tp_timeout + rtt_timeout + 30.0)
    row: dict[str, Any] = dict(transport=variant, size=size, sent=n, delivered=0, error=None)
    started = time.monotonic()
    phases: dict[str, float] = {}
    clean = False
    receiver = start_child(f'{index:02d}-{variant}-{size}-receiver', {**params, 'role': 'receiver'}, env, log_dir)
    live.append(receiver)
    sender = start_child(f'{index:02d}-{variant}-{size}-sender', {**params, 'role': 'sender'}, env, log_dir)
    live.append(sender)
    try:
        start_timeout = args.discovery_timeout + 30.0
        r_info = receiver.expect('ready', start_timeout)
        s_info = sender.expect('ready', start_timeout)
        row.update(executor=s_info['executor'], receiver_executor=r_info['executor'], rmw=s_info['rmw'],
                   msg_type=s_info['msg_type'], wire_bytes=s_info['wire_bytes'], qos=s_info['qos'],
                   reliable=not s_info['lossy'], startup_s=round(time.monotonic() - started, 2))
        phases['ready'] = time.monotonic()
        sender.send('tp')
        sent = sender.expect('tp_sent', tp_timeout)
        done = receiver.expect('tp_done', tp_timeout)
        elapsed = done['t_last'] - sent['t0']
        row.update(delivered=done['count'], tp_elapsed_s=round(elapsed, 4),
                   tp_first_latency_s=round(done['t_first'] - sent['t0'], 4),
                   publish_rate=round(n / max(sent['t_pub_end'] - sent['t0'], 1e-9), 1),
                   publish_retries=sent['publish_retries'], max_gap_ms=round(done['max_gap'] * 1e3, 2),
                   rx_cpu_us=done['cpu'] / max(done['count'] - 1, 1) * 1e6)
        row['throughput'] = done['count'] / elapsed if elapsed > 0 else float('nan')
        row['mb_s'] = row['throughput'] * row['wire_bytes'] / 1e6
        phases['tp'] = time.monotonic()
        sender.send('rtt')
        res = sender.expect('rtt', rtt_timeout)
        rtts = res['rtts'][RTT_DISCARD[size]:]
        row.update(rtt_lost=res['lost'], rtt_truncated=len(res['rtts']) < n_rtt, **rtt_stats(rtts))
        row['_rtts'] = rtts  # pooled over rounds by aggregate(), not written to the JSON
        phases['rtt'] = time.monotonic()
        sender.expect('stop_sent', 15.0)
        receiver.expect('bye', 15.0)
        sender.send('exit')
        sender.expect('bye', 15.0)
        phases['bye'] = time.monotonic()
        clean = True
    except ChildError as exc:
        row['error'] = str(exc)
    finally:
        # After an error or Ctrl-C the children are not about to exit by themselves: stop them now.
        for child in (sender, receiver):
            stop_child(child, 5.0 if clean else 0.5)
            live.remove(child)
    phases['exit'] = time.monotonic()
    # Wall time of each phase, to see where a case spends its time.
    last = started
    row['phase_s'] = {}
    for name, t in phases.items():
        row['phase_s'][name] = round(t - last, 3)
        last = t
    row['case_s'] = round(time.monotonic() - started, 2)
    return row


def rtt_stats(rtts: list[float]) -> dict[str, Any]:
    """Round-trip statistics in ms."""
    srt = sorted(rtts)
    nan = float('nan')
    return dict(rtt_n=len(srt), rtt_p50_ms=percentile(srt, 50) * 1e3, rtt_p99_ms=percentile(srt, 99) * 1e3,
                rtt_mean_ms=sum(srt) / len(srt) * 1e3 if srt else nan,
                rtt_min_ms=srt[0] * 1e3 if srt else nan, rtt_max_ms=srt[-1] * 1e3 if srt else nan)


def aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per transport x size over all rounds.

    Throughput: the median of the rounds' values (robust to a round hit by a neighbour's load or a
    3 s reliability repair); round trips: percentiles of all rounds' samples pooled.
    Delivered/sent: summed, so one incomplete round shows.
    """
    keys = list(dict.fromkeys((r['transport'], r['size']) for r in runs))
    rows = []
    for transport, size in keys:
        rs = [r for r in runs if (r['transport'], r['size']) == (transport, size)]
        ok = [r for r in rs if r['error'] is None]
        errors = [r['error'] for r in rs if r['error'] is not None]
        row: dict[str, Any] = dict(transport=transport, size=size, rounds=len(rs), rounds_ok=len(ok),
                                   sent=sum(r['sent'] for r in rs), delivered=sum(r['delivered'] for r in rs),
                                   error=errors[0] if errors else None, errors=errors)
        if ok:
            for k in ('executor', 'receiver_executor', 'rmw', 'msg_type', 'wire_bytes', 'qos', 'reliable'):
                row[k] = ok[0].get(k)
            tps = [r['throughput'] for r in ok]
            row['throughput'] = statistics.median(tps)
            row['throughput_rounds'] = [round(t, 1) for t in tps]
            row['mb_s'] = row['throughput'] * row['wire_bytes'] / 1e6
            row['max_gap_ms'] = max(r['max_gap_ms'] for r in ok)
            row['rx_cpu_us'] = statistics.median(r['rx_cpu_us'] for r in ok)
            row['publish_retries'] = sum(r['publish_retries'] for r in ok)
            row.update(rtt_stats([t for r in ok for t in r['_rtts']]))
            row['rtt_p50_rounds_ms'] = [round(r['rtt_p50_ms'], 4) for r in ok]
            row['rtt_truncated'] = any(r['rtt_truncated'] for r in ok)
            row['rtt_lost'] = sum(r['rtt_lost'] for r in ok)
        rows.append(row)
    return rows


def versions() -> dict[str, Any]:
    names = ('ros-rclpy', 'ros-jazzy-rclpy', 'ros-rmw-fastrtps-cpp', 'ros-fastrtps', 'ros-fastcdr',
             'ros-rmw-implementation', 'pyzmq')
    out: dict[str, Any] = {n: dist_version(n) for n in names}
    # Settings that change what Fast DDS does (e.g. a profile with a bigger shared-memory segment).
    for var in ('ROS_DISTRO', 'RMW_IMPLEMENTATION', 'FASTRTPS_DEFAULT_PROFILES_FILE',
                'FASTDDS_DEFAULT_PROFILES_FILE', 'FASTDDS_BUILTIN_TRANSPORTS', 'RMW_FASTRTPS_PUBLICATION_MODE',
                'RMW_FASTRTPS_USE_QOS_FROM_XML'):
        out[var] = os.environ.get(var)
    return out


def fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return '-'
    return format(value, spec)


def annotate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ratios vs the best bare rclpy row of the same size; return the target checks."""
    targets = []
    for size in SIZES:
        bare = [r for r in rows if r['size'] == size and r['transport'] in BARE_VARIANTS
                and r['error'] is None and r.get('delivered') == r['sent']]
        best = max(bare, key=lambda r: r['throughput'], default=None)
        for r in rows:
            if r['size'] == size and best is not None and r.get('throughput') is not None:
                r['best_bare'] = best['transport']
                r['tp_ratio'] = r['throughput'] / best['throughput']
                if r.get('rtt_p50_ms') is not None:
                    r['rtt_p50_ratio'] = r['rtt_p50_ms'] / best['rtt_p50_ms']
                    r['rtt_p99_ratio'] = r['rtt_p99_ms'] / best['rtt_p99_ms']
        ours = next((r for r in rows if r['size'] == size and r['transport'] == 'autopilot'), None)
        if ours is None or best is None:
            if ours is not None:
                targets.append(dict(size=size, metric='all', best_bare=None, ratio=None, limit=None,
                                    passed=None, note='no complete bare rclpy row to compare with'))
            continue
        for metric, limit in (('throughput', THRESH_TP), ('rtt_p50', THRESH_RTT)):
            ratio = ours.get('tp_ratio' if metric == 'throughput' else 'rtt_p50_ratio')
            complete = ours['error'] is None and ours.get('delivered') == ours['sent']
            ok = (complete and ratio is not None
                  and (ratio >= limit if metric == 'throughput' else ratio <= limit))
            targets.append(dict(size=size, metric=metric, best_bare=best['transport'] if best else None,
                                ratio=ratio, limit=limit, passed=bool(ok)))
    return targets


def spread(row: dict[str, Any]) -> str:
    tps = row.get('throughput_rounds') or []
    if len(tps) < 2 or not row.get('throughput'):
        return '-'
    return f'{50 * (max(tps) - min(tps)) / row["throughput"]:.0f}%'


def print_table(rows: list[dict[str, Any]], targets: list[dict[str, Any]]) -> None:
    head = (f'{"transport":<17}{"size":<6}{"B/msg":>8}{"msg/s":>10}{"MB/s":>8}{"delivered":>14}'
            f'{"p50 ms":>9}{"p99 ms":>9}{"tp x":>7}{"p50 x":>7}{"tp ±":>6}{"rx µs":>8}  executor')
    print(head)
    print('-' * len(head))
    for r in rows:
        delivered = f'{r.get("delivered", 0)}/{r["sent"]}'
        print(f'{r["transport"]:<17}{r["size"]:<6}{fmt(r.get("wire_bytes"), "d"):>8}'
              f'{fmt(r.get("throughput"), ".0f"):>10}{fmt(r.get("mb_s"), ".1f"):>8}{delivered:>14}'
              f'{fmt(r.get("rtt_p50_ms"), ".3f"):>9}{fmt(r.get("rtt_p99_ms"), ".3f"):>9}'
              f'{fmt(r.get("tp_ratio"), ".2f"):>7}{fmt(r.get("rtt_p50_ratio"), ".2f"):>7}{spread(r):>6}'
              f'{fmt(r.get("rx_cpu_us"), ".0f"):>8}  {r.get("executor", "-")}')
        if r['error']:
            print(f'    ERROR: {r["error"].splitlines()[0]}')
    print('(msg/s: median over rounds; tp ±: half the min-max range over rounds, % of the median; '
          'rtt: all rounds pooled;\n tp x, p50 x: ratio to the best bare rclpy row of the same size, '
          'by throughput; rx µs: receiver process CPU time per message, median over rounds)')
    for t in targets:
        if t['passed'] is None:
            print(f'SKIP: {t["size"]} autopilot: {t["note"]}')
            continue
        verdict = 'PASS' if t['passed'] else 'FAIL'
        op = '>=' if t['metric'] == 'throughput' else '<='
        print(f'{verdict}: {t["size"]} autopilot {t["metric"]} = {fmt(t["ratio"], ".2f")}x '
              f'{t["best_bare"]} (target {op} {t["limit"]:.1f}x)')


def orchestrate(args: argparse.Namespace) -> int:
    variants = [v for v in args.transports.split(',') if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        sys.exit(f'unknown transport(s) {sorted(unknown)}; choose from {", ".join(VARIANTS)}')
    sizes = [s for s in args.sizes.split(',') if s]
    if set(sizes) - set(SIZES):
        sys.exit(f'--sizes takes a comma list of {", ".join(SIZES)}')
    env = dict(os.environ, ROS_DOMAIN_ID=str(args.domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
               PYTHONUNBUFFERED='1', RCUTILS_COLORIZED_OUTPUT='0')
    env.pop('ROS_STATIC_PEERS', None)
    env.pop('AUTOPILOT_EXECUTOR', None)  # "autopilot" = make_executor()'s automatic choice
    cases = []
    for rnd in range(args.rounds):
        # Alternate the order each round, so a slow drift of the machine's load favours no one.
        order = variants if rnd % 2 == 0 else variants[::-1]
        for size in sizes:
            cases += [(rnd, v, size) for v in order]
            if args.stream and size == 'large':
                cases.append((rnd, 'autopilot-stream', 'large'))
    started_wall, started = datetime.now(timezone.utc), time.monotonic()
    machine = machine_info()
    live: list[Child] = []
    runs: list[dict[str, Any]] = []

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    print(f'transport benchmark: domain {args.domain_id}, n_small={args.n_small} n_large={args.n_large} '
          f'rtt_small={args.rtt_small} rtt_large={args.rtt_large}, {args.rounds} round(s), '
          f'{len(cases)} cases', flush=True)
    with tempfile.TemporaryDirectory(prefix='bench-transport-') as tmp:
        log_dir = Path(args.log_dir) if args.log_dir else Path(tmp)
        log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for i, (rnd, variant, size) in enumerate(cases):
                run = run_case(variant, size, args, i, env, log_dir, live)
                run['round'] = rnd
                runs.append(run)
                status = 'ok' if run['error'] is None else 'ERROR'
                print(f'  [{i + 1}/{len(cases)}] round {rnd + 1} {variant} {size}: {status} '
                      f'{fmt(run.get("throughput"), ".0f")} msg/s, '
                      f'p50 {fmt(run.get("rtt_p50_ms"), ".3f")} ms, '
                      f'rx {fmt(run.get("rx_cpu_us"), ".0f")} µs '
                      f'({run["case_s"]} s)', flush=True)
        finally:
            for child in list(live):
                stop_child(child, 0.5)
    rows = aggregate(runs)
    machine['loadavg_end'] = list(os.getloadavg())
    targets = annotate(rows)
    print()
    print_table(rows, targets)
    result = dict(benchmark='transport', started=started_wall.isoformat(),
                  finished=datetime.now(timezone.utc).isoformat(),
                  duration_s=round(time.monotonic() - started, 1), command=sys.argv,
                  params=dict(domain_id=args.domain_id, n_small=args.n_small, n_large=args.n_large,
                              rtt_small=args.rtt_small, rtt_large=args.rtt_large, small_type=args.small_type,
                              rtt_discarded=RTT_DISCARD, quick=args.quick, stream=args.stream,
                              rounds=args.rounds, rtt_budget_s=args.rtt_budget,
                              sizes=sizes, transports=variants, large_bytes=LARGE_SIDE * LARGE_SIDE,
                              discovery_range='LOCALHOST'),
                  machine=machine, versions=versions(), rows=rows, targets=targets,
                  runs=[{k: v for k, v in r.items() if k != '_rtts'} for r in runs])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(finite(result), indent=1, allow_nan=False, default=str) + '\n')
    print(f'\nwrote {out} ({result["duration_s"]} s)')
    return 0


def finite(obj: Any) -> Any:
    """``obj`` with NaN/inf replaced by None, so the JSON is strict."""
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float('inf') else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--n-small', type=int, default=10000, help='~200 B messages for throughput (per round)')
    ap.add_argument('--n-large', type=int, default=200, help='1 MiB messages for throughput (per round)')
    ap.add_argument('--rtt-small', type=int, default=2000, help='measured ~200 B round trips (per round)')
    ap.add_argument('--rtt-large', type=int, default=100, help='measured 1 MiB round trips (per round)')
    ap.add_argument('--rounds', type=int, default=3,
                    help='repeat every case this often (order alternating); rows report medians')
    ap.add_argument('--rtt-budget', type=float, default=6.0,
                    help='seconds after which a ping-pong stops early (1 MiB: 1.5x this)')
    ap.add_argument('--quick', action='store_true', help='smoke run of a few seconds per case')
    ap.add_argument('--small-type', choices=('trial', 'string'), default='trial',
                    help='ROS type of the small message: autopilot_msgs/TrialData or std_msgs/String')
    ap.add_argument('--transports', default=','.join(VARIANTS), help='comma list of ' + ', '.join(VARIANTS))
    ap.add_argument('--sizes', default=','.join(SIZES))
    ap.add_argument('--stream', action='store_true',
                    help='add an "autopilot-stream" row: 1 MiB with the best-effort STREAM profile')
    ap.add_argument('--domain-id', type=int, default=int(os.environ.get('BENCH_DOMAIN_ID', 77)))
    ap.add_argument('--discovery-timeout', type=float, default=30.0)
    ap.add_argument('--out', default=str(DEFAULT_OUT))
    ap.add_argument('--log-dir', default=None, help='keep the children\'s logs (stderr and other output) here')
    ap.add_argument('--child', help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.n_small, args.n_large, args.rtt_small, args.rtt_large, args.rounds = 1000, 10, 100, 5, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args.child)
    try:
        return orchestrate(args)
    except KeyboardInterrupt:  # children were stopped on the way out
        print('interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
