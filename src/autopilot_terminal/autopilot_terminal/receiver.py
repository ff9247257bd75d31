"""The recorder's receiving process: raw subscriptions to the pilots' record topics, bytes handed to the terminal.

One Python process that both takes ~30k messages/s from DDS and writes them to HDF5 runs out of one core: its
executor thread and the writer thread share one GIL, and each message then costs about twice what bare rclpy
spends on it (bench/README.md, "recorder"). So the terminal starts this module as a child process (node
``/terminal/recorder``). The child does only what bare rclpy does plus a deque append per message: a raw
subscription (CDR bytes, no deserialisation) on the EventsExecutor to every record topic of every pilot the
terminal knows, with the QoS its publishers offer. A sender thread ships what arrived, in receive order, every
few milliseconds over a pipe; the terminal routes it to sessions and writes it (:class:`Receiver`).

Pipe protocol: pickled tuples, child to terminal (the terminal's own child, so pickle is safe):

* ``('topic', topic, type_name, type_hash, qos_json)``: subscribed (before any of its messages);
* ``('refused', topic, why)``: a type this host cannot load: not recorded, said once;
* ``('matched', topic, n)``: the subscription now has ``n`` publishers;
* ``('lost', topic, n)``: DDS dropped ``n`` messages before the callback;
* ``('msgs', [(topic, recv_ns, data), ...])``.

The terminal writes JSON lines to the child's stdin: ``{"pilots": [ns, ...]}`` (whose topics to record) and
``{"drop": topic}`` (unsubscribe: the terminal will not record it). End of stdin means the terminal is stopping
or gone: the child sends what it holds and exits. It ignores SIGINT, so a Ctrl-C on the launch terminal does not
kill it before the terminal has had what it received.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from autopilot_terminal import qos_record

#: How often the child ships what it received (bounds the added latency; batches stay large under load).
SEND_INTERVAL_S = 0.005
#: How often the child looks for new record topics in the graph.
SCAN_INTERVAL_S = 0.5
#: Pipe buffer asked for (Linux F_SETPIPE_SZ), so a busy terminal does not stall the child's sender at once.
PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ = 1031

#: (topic, run): consecutive messages of one topic as (topic, recv_ns, data), in receive order.
Handler = Callable[[str, Sequence[tuple[str, int, bytes]]], None]
Log = Callable[[str, str], None]


def subscription_qos(profiles: list[QoSProfile]) -> QoSProfile:
    """QoS to record publishers with: reliable/transient-local only when every publisher offers it (as rosbag2)."""
    reliable = all(p.reliability == ReliabilityPolicy.RELIABLE for p in profiles)
    latched = all(p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in profiles)
    # Reliable publishers get keep-all: with keep-last a reader that falls behind has unread messages
    # overwritten (lost without a word) and, measured with Fast DDS, the connection then stalls.
    return QoSProfile(history=HistoryPolicy.KEEP_ALL if reliable else HistoryPolicy.KEEP_LAST, depth=1000,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


# -- the terminal's side ------------------------------------------------------------------------------


class Receiver:
    """Runs the receiving child and hands what it sends to the terminal, on one thread of the terminal's.

    ``on_topic(topic, type_name, type_hash, qos_json)`` returns the handler of the topic's messages (called with
    each run of consecutive messages of the topic, so routing costs once per run, not per message), or None
    to refuse it (the child then unsubscribes); ``on_lost(topic, n)`` gets DDS's loss reports. A child that dies
    is restarted (what was published meanwhile is not recorded, and the log says so).
    """

    def __init__(self, topics: list[str], on_topic: Callable[[str, str, str, str], Handler | None],
                 on_lost: Callable[[str, int], None], log: Log) -> None:
        self._topics = list(topics)
        self._on_topic = on_topic
        self._on_lost = on_lost
        self._log = log
        self._lock = threading.Lock()
        self._pilots: list[str] = []
        self._handlers: dict[str, Handler] = {}
        #: topic -> publishers matched (None: refused, not recorded)
        self._matched: dict[str, int | None] = {}
        self._closing = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self.restarts = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name='recorder-receiver', daemon=True)
        self._spawn()
        self._thread.start()

    def set_pilots(self, namespaces: list[str]) -> None:
        with self._lock:
            self._pilots = list(namespaces)
        self._tell({'pilots': self._pilots})

    def subscribed(self, topic: str) -> bool | None:
        """Whether the child subscribes to ``topic`` (None: refused, it is not recorded)."""
        with self._lock:
            if topic not in self._matched:
                return False
            return None if self._matched[topic] is None else True

    def publisher_count(self, topic: str) -> int | None:
        """Publishers the child's subscription to ``topic`` is matched with (0 if none; None: refused)."""
        with self._lock:
            return self._matched.get(topic, 0)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the child after it has sent everything it received; wait until that is handed on."""
        self._closing = True
        proc = self._proc
        if proc is not None and proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    # -- internals --------------------------------------------------------------------------------

    def _spawn(self) -> None:
        r, w = os.pipe()
        try:
            fcntl.fcntl(w, _F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:  # a lower limit (/proc/sys/fs/pipe-max-size): the default buffer still works
            pass
        env = dict(os.environ)
        # The child imports this package the way this process did (a colcon install, a source tree, a venv).
        env['PYTHONPATH'] = os.pathsep.join([p for p in sys.path if p] + [env.get('PYTHONPATH', '')]).rstrip(os.pathsep)
        cmd = [sys.executable, '-m', 'autopilot_terminal.receiver', '--fd', str(w), '--topics', json.dumps(self._topics)]
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, pass_fds=(w,), env=env)
        finally:
            os.close(w)
        self._pipe = os.fdopen(r, 'rb', buffering=PIPE_BYTES)
        with self._lock:
            pilots = list(self._pilots)
        if pilots:
            self._tell({'pilots': pilots})

    def _tell(self, command: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            return
        try:
            proc.stdin.write(json.dumps(command).encode() + b'\n')
            proc.stdin.flush()
        except (OSError, ValueError):  # the child is gone: _run restarts it and tells it again
            pass

    def _run(self) -> None:
        while True:
            self._pump(self._pipe)
            self._pipe.close()
            proc = self._proc
            code = proc.wait() if proc is not None else None
            if self._closing:
                return
            self.restarts += 1
            self._log('error', f'recorder: its receiving process exited (code {code}); restarting it. Messages '
                               'published until it has subscribed again are not recorded')
            with self._lock:
                self._matched.clear()
            time.sleep(min(5.0, 0.5 * self.restarts))
            if self._closing:
                return
            try:
                self._spawn()
            except OSError as exc:
                self._log('error', f'recorder: cannot start its receiving process: {exc}; nothing more is recorded')
                return

    def _pump(self, pipe: BinaryIO) -> None:
        handlers = self._handlers
        while True:
            try:
                item = pickle.load(pipe)
            except (EOFError, pickle.UnpicklingError, OSError):
                return
            kind = item[0]
            if kind == 'msgs':
                try:
                    batch = item[1]
                    i, n = 0, len(batch)
                    while i < n:
                        topic = batch[i][0]
                        j = i + 1
                        while j < n and batch[j][0] == topic:
                            j += 1
                        handler = handlers.get(topic)
                        if handler is not None:
                            handler(topic, batch[i:j] if i or j < n else batch)
                        i = j
                except Exception as exc:  # noqa: BLE001 - a bug must not stop the recording of what follows
                    self._log('error', f'recorder: messages not routed: {exc!r}')
            elif kind == 'topic':
                self._topic(*item[1:])
            elif kind == 'matched':
                with self._lock:
                    if self._matched.get(item[1], 0) is not None:
                        self._matched[item[1]] = item[2]
            elif kind == 'lost':
                self._on_lost(item[1], item[2])
            elif kind == 'refused':
                with self._lock:
                    self._matched[item[1]] = None

    def _topic(self, topic: str, type_name: str, type_hash: str, qos_json: str) -> None:
        try:
            handler = self._on_topic(topic, type_name, type_hash, qos_json)
        except Exception as exc:  # noqa: BLE001 - the topic is not recorded; the others go on
            self._log('error', f'cannot record {topic}: {exc}')
            handler = None
        if handler is None:
            self._handlers.pop(topic, None)
            with self._lock:
                self._matched[topic] = None
            self._tell({'drop': topic})
            return
        self._handlers[topic] = handler
        with self._lock:
            self._matched.setdefault(topic, 0)


# -- the child process ---------------------------------------------------------------------------------


class _Child:
    """The receiving node and its sender thread (runs in the child process)."""

    def __init__(self, out: BinaryIO, topics: list[str]) -> None:
        from rclpy.event_handler import SubscriptionEventCallbacks
        from rclpy.node import Node

        from autopilot_runtime_py.messages import get_message

        self._events = SubscriptionEventCallbacks
        self._get_message = get_message
        self.node = Node('recorder', namespace='/terminal', use_global_arguments=False)
        self._out = out
        self._topics = topics
        self._pilots: list[str] = []
        self._subs: dict[str, Any] = {}  # topic -> subscription, or None: never (refused); executor thread only
        self._drops: set[str] = set()  # topics the terminal refused, unsubscribed at the next scan
        # Messages (topic, recv_ns, data) and, in order with them, control items as (None, item).
        self._msgs: deque[tuple[Any, ...]] = deque()
        self._counts: dict[str, int] = {}
        self.stop = threading.Event()
        self._lock = threading.Lock()  # pilots and drops: set by the commands from stdin, read by the scan
        self.node.create_timer(SCAN_INTERVAL_S, self.scan)

    def command(self, cmd: dict[str, Any]) -> None:
        with self._lock:
            if 'pilots' in cmd:
                self._pilots = [str(ns) for ns in cmd['pilots']]
            if 'drop' in cmd:  # destroyed by scan(), on the executor's thread, not under its feet
                self._drops.add(str(cmd['drop']))

    def scan(self) -> None:
        with self._lock:
            pilots = list(self._pilots)
            drops, self._drops = self._drops, set()
        for topic in drops:
            sub, self._subs[topic] = self._subs.get(topic), None
            if sub is not None:
                self.node.destroy_subscription(sub)
        types = dict(self.node.get_topic_names_and_types())
        for ns in pilots:
            base = ns.rstrip('/')
            for rel in self._topics:
                topic = f'{base}/{rel}'
                if topic in self._subs or topic not in types:
                    continue
                infos = self.node.get_publishers_info_by_topic(topic)
                if infos:
                    self._subscribe(topic, types[topic][0], infos)
        for topic, sub in list(self._subs.items()):  # matched events are not sent by every rmw: counts by polling too
            if sub is not None:
                self._matched(topic, sub.get_publisher_count())

    def _matched(self, topic: str, n: int) -> None:
        if self._counts.get(topic) != n:
            self._counts[topic] = n
            self._control(('matched', topic, n))

    def _control(self, item: tuple[Any, ...]) -> None:
        self._msgs.append((None, item))

    def _subscribe(self, topic: str, type_name: str, infos: list[Any]) -> None:
        try:
            cls = self._get_message(type_name)
        except Exception as exc:  # noqa: BLE001 - a type this host lacks: record nothing, say so once
            self.node.get_logger().error(f'cannot record {topic}: {exc}')
            self._subs[topic] = None
            self._control(('refused', topic, str(exc)))
            return
        self._control(('topic', topic, type_name, str(infos[0].topic_type_hash), qos_record.describe(infos[0].qos_profile)))
        msgs, now = self._msgs, time.time_ns
        def lost(info: Any) -> None:
            self._control(('lost', topic, info.total_count_change))

        def matched(info: Any) -> None:
            self._matched(topic, info.current_count)

        events = self._events(message_lost=lost, matched=matched)
        sub = self.node.create_subscription(cls, topic, lambda data: msgs.append((topic, now(), data)),
                                            subscription_qos([i.qos_profile for i in infos]), raw=True,
                                            event_callbacks=events)
        self._subs[topic] = sub
        self.node.get_logger().info(f'recording {topic} [{type_name}]')

    def send_loop(self) -> None:
        """Ship what arrives until ``stop`` is set."""
        while not self.stop.wait(SEND_INTERVAL_S):
            self.send()

    def send(self) -> None:
        """Ship what arrived so far (OSError when the terminal is gone)."""
        msgs = self._msgs
        n = len(msgs)
        if not n:
            return
        batch: list[tuple[str, int, bytes]] = []
        dump, out = pickle.dump, self._out
        for _ in range(n):
            m = msgs.popleft()
            if m[0] is not None:
                batch.append(m)
                continue
            if batch:
                dump(('msgs', batch), out, pickle.HIGHEST_PROTOCOL)
                batch = []
            dump(m[1], out, pickle.HIGHEST_PROTOCOL)
        if batch:
            dump(('msgs', batch), out, pickle.HIGHEST_PROTOCOL)
        out.flush()


def _read_commands(child: _Child) -> None:
    for line in sys.stdin.buffer:
        try:
            child.command(json.loads(line))
        except (ValueError, TypeError) as exc:
            child.node.get_logger().error(f'bad command from the terminal: {exc}')
    child.stop.set()  # end of input: the terminal stops or is gone


def main(argv: list[str] | None = None) -> int:
    """The child process (started by :class:`Receiver`, not by users)."""
    parser = argparse.ArgumentParser(prog='autopilot_terminal.receiver', description=__doc__.split('\n\n')[0])
    parser.add_argument('--fd', type=int, required=True, help='pipe to write to (inherited from the terminal)')
    parser.add_argument('--topics', required=True, help='JSON list of record topics, relative to a pilot namespace')
    a = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stops on end of stdin, after sending what it has

    import rclpy

    from autopilot_core.executors import make_executor, spin

    rclpy.init(args=[], signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    out = os.fdopen(a.fd, 'wb', buffering=PIPE_BYTES)
    child = _Child(out, json.loads(a.topics))
    threading.Thread(target=_read_commands, args=(child,), name='commands', daemon=True).start()
    executor = make_executor(context=child.node.context)
    spinner = threading.Thread(target=spin, args=(child.node, executor), kwargs={'stop': child.stop},
                               name='executor', daemon=True)
    spinner.start()
    try:
        child.send_loop()
        spinner.join(2.0)
        child.send()  # what arrived while the executor stopped
        out.close()
    except OSError:  # the terminal is gone: nobody to hand it to
        pass
    child.node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
