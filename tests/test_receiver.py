"""autopilot_terminal.receiver: the recorder's receiving child process, driven by a real Receiver.

The test process holds the Receiver (which starts the real child, ``python -m autopilot_terminal.receiver``)
and an rclpy node publishing as a pilot would, on the test's own ROS_DOMAIN_ID. What the child hands over must
be every message, in order and intact, with the publisher's type, hash and QoS.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import python

from autopilot_core import qos
from autopilot_terminal.receiver import Receiver

NS = '/rx_rig'
N = 500


class Sink:
    """What a Receiver hands on: topics announced, messages per topic, losses and log lines."""

    def __init__(self, refuse: set[str] = frozenset()) -> None:
        self.refuse = set(refuse)
        self.topics: dict[str, tuple[str, str, dict[str, Any]]] = {}
        self.msgs: dict[str, list[tuple[int, bytes]]] = {}
        self.lost: list[tuple[str, int]] = []
        self.runs = 0
        self.logs: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def on_topic(self, topic: str, type_name: str, type_hash: str, qos_json: str) -> Callable | None:
        self.topics[topic] = (type_name, type_hash, json.loads(qos_json))
        if topic in self.refuse:
            return None
        return self.on_msg

    def on_msg(self, topic: str, run: list[tuple[str, int, bytes]]) -> None:
        assert run and all(m[0] == topic for m in run)  # a run is consecutive messages of this topic
        with self.lock:
            self.msgs.setdefault(topic, []).extend((recv_ns, data) for _, recv_ns, data in run)
            self.runs += 1

    def count(self, topic: str) -> int:
        with self.lock:
            return len(self.msgs.get(topic, ()))

    def receiver(self, topics: list[str]) -> Receiver:
        return Receiver(topics, self.on_topic, lambda t, n: self.lost.append((t, n)),
                        lambda level, text: self.logs.append((level, text)))


def wait_until(cond: Callable[[], bool], timeout: float, what: str, node: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out waiting for {what}')
        if node is not None:
            node.executor_.spin_once(timeout_sec=0.02)
        else:
            time.sleep(0.02)


def events(node, n: int, first: int = 0) -> list[int]:
    """Publish GpioEvents ``first..first+n-1`` (number in ``tick``) on NS/gpio/events; those numbers."""
    from autopilot_msgs.msg import GpioEvent
    pub = getattr(node, 'rx_pub_', None) or node.create_publisher(GpioEvent, f'{NS}/gpio/events', qos.EVENTS)
    node.rx_pub_ = pub
    sent = []
    for i in range(first, first + n):
        msg = GpioEvent(device='lick_c', pin=17, level=bool(i % 2), tick=i, tick_us=i, backend='sim')
        pub.publish(msg)
        sent.append(i)
    return sent


def ticks(got: list[tuple[int, bytes]]) -> list[int]:
    """The numbers of received GpioEvents (their CDR bytes may differ from ours in padding, not in fields)."""
    from autopilot_msgs.msg import GpioEvent
    from rclpy.serialization import deserialize_message
    msgs = [deserialize_message(d, GpioEvent) for _, d in got]
    assert all(m.device == 'lick_c' and m.pin == 17 and m.level == bool(m.tick % 2) for m in msgs)
    return [m.tick for m in msgs]


def child_pids(pid: int) -> list[int]:
    out = subprocess.run(['pgrep', '-P', str(pid), '-f', 'autopilot_terminal.receiver'], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_every_message_arrives_in_order_with_the_publishers_type_hash_and_qos(node):
    from autopilot_msgs.msg import GpioEvent
    sink = Sink()
    rx = sink.receiver(['gpio/events', 'status'])
    pub = node.create_publisher(GpioEvent, f'{NS}/gpio/events', qos.EVENTS)
    node.rx_pub_ = pub
    rx.start()
    try:
        rx.set_pilots([NS])
        wait_until(lambda: rx.publisher_count(f'{NS}/gpio/events') == 1, 20, 'the child to subscribe', node)
        wait_until(lambda: pub.get_subscription_count() == 1, 20, 'our publisher to match the child', node)
        assert rx.subscribed(f'{NS}/gpio/events') is True
        assert rx.subscribed(f'{NS}/status') is False  # nobody publishes it: not subscribed
        sent = events(node, N)
        wait_until(lambda: sink.count(f'{NS}/gpio/events') == N, 20, f'{N} messages', node)
    finally:
        rx.close()
    got = sink.msgs[f'{NS}/gpio/events']
    assert ticks(got) == sent  # every one, in order, intact
    assert sink.runs < N  # handed on in runs, not one by one
    stamps = [t for t, _ in got]
    assert stamps == sorted(stamps) and abs(stamps[-1] - time.time_ns()) < 60e9
    type_name, type_hash, q = sink.topics[f'{NS}/gpio/events']
    assert type_name == 'autopilot_msgs/msg/GpioEvent'
    assert type_hash.startswith('RIHS01_') and len(type_hash) == 7 + 64
    assert q['reliability'] == 'reliable' and q['history'] in ('keep_all', 'unknown')
    assert not sink.lost
    assert not [text for level, text in sink.logs if level == 'error'], sink.logs


def test_close_hands_on_what_the_child_holds_and_the_child_exits(node):
    sink = Sink()
    rx = sink.receiver(['gpio/events'])
    events(node, 0)
    rx.start()
    proc = rx._proc
    rx.set_pilots([NS])
    wait_until(lambda: rx.publisher_count(f'{NS}/gpio/events') == 1, 20, 'the child to subscribe', node)
    # Both sides matched: what our publisher sends before it knows the child goes to no one (volatile).
    wait_until(lambda: node.rx_pub_.get_subscription_count() == 1, 20, 'our publisher to match the child', node)
    sent = events(node, N)
    node.rx_pub_.wait_for_all_acked()
    rx.close()  # right after the last publish: nothing may be left behind in the child
    assert proc.returncode == 0
    assert ticks(sink.msgs.get(f'{NS}/gpio/events', [])) == sent


def test_a_refused_topic_is_unsubscribed_and_not_handed_on(node):
    sink = Sink(refuse={f'{NS}/gpio/events'})
    rx = sink.receiver(['gpio/events'])
    events(node, 0)
    rx.start()
    try:
        rx.set_pilots([NS])
        wait_until(lambda: f'{NS}/gpio/events' in sink.topics, 20, 'the child to subscribe', node)
        wait_until(lambda: rx.publisher_count(f'{NS}/gpio/events') is None, 5, 'the refusal')
        wait_until(lambda: node.rx_pub_.get_subscription_count() == 0, 10, 'the child to unsubscribe', node)
        events(node, 20)
        time.sleep(0.5)
        assert rx.subscribed(f'{NS}/gpio/events') is None
    finally:
        rx.close()
    assert not sink.msgs


def test_a_child_that_dies_is_restarted_and_records_again(node):
    sink = Sink()
    rx = sink.receiver(['gpio/events'])
    events(node, 0)
    rx.start()
    try:
        rx.set_pilots([NS])
        wait_until(lambda: rx.publisher_count(f'{NS}/gpio/events') == 1, 20, 'the child to subscribe', node)
        first = rx._proc
        os.kill(first.pid, signal.SIGKILL)
        wait_until(lambda: rx.restarts == 1 and rx._proc is not first, 20, 'a restart')
        assert any(level == 'error' and 'restarting' in text for level, text in sink.logs), sink.logs
        wait_until(lambda: rx.publisher_count(f'{NS}/gpio/events') == 1, 20, 'the new child to subscribe', node)
        # The child has matched our publisher; our publisher may not have matched the child yet, and what it
        # sends before goes to no one (volatile, as a pilot's events): probe until one message arrives.
        probes = iter(range(10_000, 20_000))
        wait_until(lambda: bool(events(node, 1, first=next(probes))) and sink.count(f'{NS}/gpio/events') > 0, 20,
                   'a first message to reach the new child', node)
        sent = events(node, 50, first=1000)
        wait_until(lambda: ticks(sink.msgs[f'{NS}/gpio/events'])[-1] == sent[-1], 20, 'messages after the restart',
                   node)
    finally:
        rx.close()
    assert ticks(sink.msgs[f'{NS}/gpio/events'])[-50:] == sent  # in order after the probes, none lost


CRASHING_PARENT = r'''
import sys, time
from autopilot_terminal.receiver import Receiver
rx = Receiver(['gpio/events'], lambda *a: None, lambda *a: None, lambda *a: None)
rx.start()
print('child', rx._proc.pid, flush=True)
time.sleep(60)
'''


def test_the_child_exits_when_the_terminal_is_killed(procs):
    parent = procs([python(), '-c', CRASHING_PARENT], name='rx-parent')
    out = parent.wait_for_output('child ', 30)
    pid = int(out.split('child ', 1)[1].split()[0])
    time.sleep(2.0)  # past rclpy.init in the child
    os.kill(pid, 0)
    parent.popen.kill()  # SIGKILL of the terminal only, not its group: the child sees its stdin close
    parent.popen.wait(5)
    wait_until(lambda: not os.path.exists(f'/proc/{pid}') or _zombie(pid), 15, 'the orphaned child to exit')


def _zombie(pid: int) -> bool:
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] == 'Z'
    except OSError:
        return True


def test_a_ctrl_c_on_the_process_group_does_not_kill_the_child_first(procs, tmp_path):
    """Ctrl-C reaches the terminal and its child together: the child must wait for the terminal to close it."""
    script = tmp_path / 'parent.py'
    script.write_text(r'''
import signal, sys, threading, time
from autopilot_terminal.receiver import Receiver
stop = threading.Event()
signal.signal(signal.SIGINT, lambda *_: stop.set())
rx = Receiver(['gpio/events'], lambda *a: None, lambda *a: None, lambda *a: None)
rx.start()
print('child', rx._proc.pid, flush=True)
stop.wait(60)
time.sleep(1.0)  # the terminal finishing its work; the child must still be there
print('child alive at close:', rx._proc.poll() is None, flush=True)
rx.close()
print('child exit code:', rx._proc.returncode, flush=True)
''')
    parent = procs([python(), str(script)], name='rx-parent')
    parent.wait_for_output('child ', 30)
    time.sleep(2.0)
    parent.signal(signal.SIGINT)  # the whole process group, as a terminal's Ctrl-C
    assert parent.wait(20) == 0
    out = parent.output()
    assert 'child alive at close: True' in out and 'child exit code: 0' in out, out


@pytest.mark.parametrize('bad', ['not json', '{"pilots": 5}'])
def test_bad_commands_are_logged_and_the_child_goes_on(bad, ros_env):
    import subprocess as sp
    r, w = os.pipe()
    proc = sp.Popen([python(), '-m', 'autopilot_terminal.receiver', '--fd', str(w), '--topics', '["gpio/events"]'],
                    stdin=sp.PIPE, stderr=sp.PIPE, pass_fds=(w,), env=ros_env)
    os.close(w)
    try:
        time.sleep(1.5)
        proc.stdin.write(bad.encode() + b'\n' + b'{"pilots": ["/x"]}\n')
        proc.stdin.close()
        assert proc.wait(20) == 0
    finally:
        os.close(r)
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read().decode()
    assert 'bad command from the terminal' in err, err
