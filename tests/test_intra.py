"""autopilot_core.intra: nodes of one process skip DDS between them, other processes still get everything.

Real rclpy: the test process holds the publisher and subscriber nodes (one context, one executor of the
suite's choice); other processes listen or publish over DDS on the test's own ROS_DOMAIN_ID.

On an rclpy version autopilot_core.rclpy_private is not tested against, the version test fails (naming it)
and the tests of local delivery are skipped: intra is then off and the rest of the suite runs over DDS.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from conftest import python

N = 200

#: A plain-rclpy child: ``listen`` prints every Int64 it gets on /intra_test; ``publish`` sends BASE..BASE+N-1.
CHILD = r'''
import sys, time, rclpy
from rclpy.experimental import EventsExecutor
from std_msgs.msg import Int64
from autopilot_core import qos
mode, n, base = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rclpy.init()
node = rclpy.create_node('intra_child')
ex = EventsExecutor()
ex.add_node(node)
got = []
if mode == 'listen':
    sub = node.create_subscription(Int64, '/intra_test', lambda m: got.append(m.data), qos.EVENTS)
    while sub.get_publisher_count() == 0:
        ex.spin_once(timeout_sec=0.05)
    print('ready', flush=True)
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        ex.spin_once(timeout_sec=0.05)
    t_end = time.monotonic() + 1.0  # duplicates, if any, would come now
    while time.monotonic() < t_end:
        ex.spin_once(timeout_sec=0.05)
    print('got ' + ' '.join(map(str, got)), flush=True)
else:
    pub = node.create_publisher(Int64, '/intra_test', qos.EVENTS)
    while pub.get_subscription_count() == 0:
        ex.spin_once(timeout_sec=0.05)
    time.sleep(0.5)
    for i in range(n):
        pub.publish(Int64(data=base + i))
    pub.wait_for_all_acked(rclpy.duration.Duration(seconds=5))
    print('sent', flush=True)
    time.sleep(1.0)
'''


def needs_intra() -> None:
    from autopilot_core import rclpy_private

    if not rclpy_private.SUPPORTED:
        pytest.skip(f'intra-process delivery is off: {rclpy_private.unsupported_reason()}')


def test_rclpy_version_is_one_the_private_access_is_tested_against() -> None:
    """Fails on purpose on a new rclpy: review autopilot_core.rclpy_private against it, run this file, then pin it."""
    from autopilot_core import intra, rclpy_private

    assert rclpy_private.SUPPORTED, (
        f'rclpy {rclpy_private.VERSION} is not in autopilot_core.rclpy_private.TESTED '
        f'{sorted(rclpy_private.TESTED)}: intra-process delivery is switched off (plain DDS) until that module is '
        f'checked against this rclpy and the version added')
    assert intra.enabled() == intra.switched_on()


def test_an_untested_rclpy_gets_plain_dds_endpoints(rclpy_context, monkeypatch) -> None:
    from rclpy.node import Node
    from rclpy.publisher import Publisher
    from rclpy.subscription import Subscription
    from std_msgs.msg import Int64

    from autopilot_core import intra, qos, rclpy_private

    monkeypatch.setenv(intra.ENV_VAR, '1')
    monkeypatch.setattr(rclpy_private, 'SUPPORTED', False)
    monkeypatch.setattr(rclpy_private, 'VERSION', '0.0.0-untested')
    assert not intra.enabled() and 'rclpy 0.0.0-untested is not one' in rclpy_private.unsupported_reason()
    a = Node('intra_untested', context=rclpy_context)
    try:
        pub = intra.create_publisher(a, Int64, '/intra_untested', qos.EVENTS)
        sub = intra.create_subscription(a, Int64, '/intra_untested', lambda m: None, qos.EVENTS)
        assert type(pub) is Publisher and type(sub) is Subscription
    finally:
        a.destroy_node()


def child(procs, mode: str, n: int = N, base: int = 0):
    return procs([python(), '-c', CHILD, mode, str(n), str(base)], name=f'intra-{mode}')


def parse_got(out: str) -> list[int]:
    line = next(ln for ln in out.splitlines() if ln.startswith('got'))
    return [int(v) for v in line.split()[1:]]


@pytest.fixture
def pair(rclpy_context, monkeypatch):
    """``make(enabled)``: a publisher node and a subscriber node in this process, one executor."""
    from rclpy.node import Node
    from std_msgs.msg import Int64

    from autopilot_core import intra, qos
    from autopilot_core.executors import make_executor

    made = []

    def make(enabled: bool = True):
        if enabled:
            needs_intra()
        monkeypatch.setenv(intra.ENV_VAR, '1' if enabled else '0')
        a = Node('intra_pub', context=rclpy_context)
        b = Node('intra_sub', context=rclpy_context)
        got: list[int] = []
        pub = intra.create_publisher(a, Int64, '/intra_test', qos.EVENTS)
        sub = intra.create_subscription(b, Int64, '/intra_test', lambda m: got.append(m.data), qos.EVENTS)
        ex = make_executor(context=rclpy_context)
        ex.add_node(a)
        ex.add_node(b)
        made.append((ex, a, b))
        return a, b, pub, sub, got, ex

    yield make
    for ex, a, b in made:
        ex.shutdown(timeout_sec=1.0)
        a.destroy_node()
        b.destroy_node()


def spin_for(nodes, ex, until, timeout: float = 20.0) -> bool:
    from autopilot_core.executors import spin

    return spin(nodes, ex, until=until, timeout_sec=timeout)


def publish_all(pub, nodes, ex, values) -> None:
    """Publish from a timer on the executor, as nodes do (a callback), a few per tick."""
    from std_msgs.msg import Int64

    todo = list(values)

    def tick() -> None:
        for _ in range(min(5, len(todo))):
            pub.publish(Int64(data=todo.pop(0)))

    timer = nodes[0].create_timer(0.002, tick)
    spin_for(nodes, ex, lambda: not todo)
    timer.cancel()
    nodes[0].destroy_timer(timer)


def test_local_exactly_once_in_order_and_remote_listener_gets_all(pair, procs) -> None:
    from autopilot_core.intra import IntraPublisher, IntraSubscription

    listener = child(procs, 'listen')
    a, b, pub, sub, got, ex = pair()
    assert isinstance(pub, IntraPublisher) and isinstance(sub, IntraSubscription)
    assert spin_for([a, b], ex, lambda: pub.get_subscription_count() >= 2), 'listener not matched'
    listener.wait_for_output('ready')
    publish_all(pub, [a, b], ex, range(N))
    assert spin_for([a, b], ex, lambda: len(got) >= N and sub.n_copies_dropped >= N)
    spin_for([a, b], ex, lambda: False, timeout=0.5)  # a duplicate would come now
    assert got == list(range(N))
    assert (sub.n_local, sub.n_dds, sub.n_copies_dropped) == (N, 0, N)
    assert listener.wait() == 0
    assert parse_got(listener.output()) == list(range(N))  # every message still went out on DDS, in order


def test_remote_publisher_reaches_local_subscriber_once(pair, procs) -> None:
    """Remote messages come over DDS once; identical local and remote messages both count (a multiset)."""
    remote = child(procs, 'publish', N, 0)  # the same values the local publisher sends
    a, b, pub, sub, got, ex = pair()
    assert spin_for([a, b], ex, lambda: sub.get_publisher_count() >= 2), 'remote publisher not matched'
    publish_all(pub, [a, b], ex, range(N))
    assert spin_for([a, b], ex, lambda: len(got) >= 2 * N, timeout=30)
    remote.wait_for_output('sent')
    spin_for([a, b], ex, lambda: False, timeout=1.0)
    assert Counter(got) == {v: 2 for v in range(N)}
    assert sub.n_local == N and sub.n_dds == N and sub.n_copies_dropped == N


def test_switched_off_is_plain_dds(pair, procs) -> None:
    from rclpy.publisher import Publisher
    from rclpy.subscription import Subscription

    listener = child(procs, 'listen')
    a, b, pub, sub, got, ex = pair(enabled=False)
    assert type(pub) is Publisher and type(sub) is Subscription
    assert spin_for([a, b], ex, lambda: pub.get_subscription_count() >= 2)
    listener.wait_for_output('ready')
    publish_all(pub, [a, b], ex, range(N))
    assert spin_for([a, b], ex, lambda: len(got) >= N)
    spin_for([a, b], ex, lambda: False, timeout=0.5)
    assert got == list(range(N))
    assert listener.wait() == 0
    assert parse_got(listener.output()) == list(range(N))


def test_deferred_dds_publish_goes_out_without_spinning(pair, procs) -> None:
    """Published outside any spin: the local subscriber waits for the executor; flush/wait_for_all_acked
    send the DDS copy at once (GpioNode.close relies on it)."""
    from rclpy.duration import Duration
    from std_msgs.msg import Int64

    listener = child(procs, 'listen', 3)
    a, b, pub, sub, got, ex = pair()
    assert spin_for([a, b], ex, lambda: pub.get_subscription_count() >= 2)
    listener.wait_for_output('ready')
    for i in range(3):
        pub.publish(Int64(data=i))
    pub.wait_for_all_acked(Duration(seconds=5))
    assert listener.wait() == 0
    assert parse_got(listener.output()) == [0, 1, 2]
    assert spin_for([a, b], ex, lambda: len(got) >= 3 and sub.n_copies_dropped >= 3)
    time.sleep(0.2)
    spin_for([a, b], ex, lambda: False, timeout=0.3)
    assert got == [0, 1, 2] and sub.n_dds == 0


def test_keep_last_bounds_the_local_queue(rclpy_context) -> None:
    needs_intra()
    from rclpy.node import Node
    from rclpy.qos import QoSProfile
    from std_msgs.msg import Int64

    from autopilot_core import intra
    from autopilot_core.executors import make_executor

    a = Node('intra_pub_kl', context=rclpy_context)
    got: list[int] = []
    ex = make_executor(context=rclpy_context)
    try:
        pub = intra.create_publisher(a, Int64, '/intra_kl', QoSProfile(depth=3))
        sub = intra.create_subscription(a, Int64, '/intra_kl', lambda m: got.append(m.data), QoSProfile(depth=3))
        ex.add_node(a)
        for i in range(10):  # not spinning: the local queue keeps the newest 3
            pub.publish(Int64(data=i))
        assert spin_for([a], ex, lambda: len(got) >= 3 and sub.n_copies_dropped >= 3, timeout=5)
        spin_for([a], ex, lambda: False, timeout=0.5)
        assert got == [7, 8, 9]
    finally:
        ex.shutdown(timeout_sec=1.0)
        a.destroy_node()


def test_a_local_chain_runs_in_order_never_nested_and_survives_a_raising_callback(rclpy_context) -> None:
    """ping -> pong -> ping ... between two nodes: each callback returns before the one its publish feeds
    starts (a drain scope, not recursion), in publish order; a callback that raises has its message refused
    by autopilot_core.guard (counted, never raised into the executor), and what it queued is still delivered."""
    needs_intra()
    from rclpy.node import Node
    from std_msgs.msg import Int64

    from autopilot_core import intra, qos
    from autopilot_core.executors import make_executor

    a, b = Node('chain_a', context=rclpy_context), Node('chain_b', context=rclpy_context)
    ex = make_executor(context=rclpy_context)
    log: list[str] = []
    depth = [0]

    def enter(name: str, value: int) -> None:
        assert depth[0] == 0, f'{name} {value} ran inside another callback'
        log.append(f'{name}{value}')

    def on_ping(m: Int64) -> None:
        enter('ping', m.data)
        depth[0] += 1
        try:
            if m.data < 6:
                pong_pub.publish(Int64(data=m.data + 1))
                pong_pub.publish(Int64(data=100 + m.data))  # two publishes: both after this returns, in order
        finally:
            depth[0] -= 1
        if m.data == 2:
            raise RuntimeError('task bug')

    def on_pong(m: Int64) -> None:
        enter('pong', m.data)
        if m.data < 100:
            ping_pub.publish(Int64(data=m.data + 1))

    try:
        ping_pub = intra.create_publisher(a, Int64, '/chain_ping', qos.EVENTS)
        pong_pub = intra.create_publisher(b, Int64, '/chain_pong', qos.EVENTS)
        intra.create_subscription(b, Int64, '/chain_ping', on_ping, qos.EVENTS)
        intra.create_subscription(a, Int64, '/chain_pong', on_pong, qos.EVENTS)
        ex.add_node(a)
        ex.add_node(b)
        ping_pub.publish(Int64(data=0))
        raised = []
        deadline = time.monotonic() + 10
        while 'ping6' not in log and time.monotonic() < deadline:
            try:
                ex.spin_once(timeout_sec=0.05)
            except RuntimeError as exc:
                raised.append(str(exc))
        for _ in range(20):
            ex.spin_once(timeout_sec=0.01)
        assert raised == []
        from autopilot_core import guard
        refused = guard.of(b).endpoints['/chain_ping']
        assert refused.refused == 1 and 'RuntimeError: task bug' in refused.last_reason
        assert log == ['ping0', 'pong1', 'pong100', 'ping2', 'pong3', 'pong102', 'ping4', 'pong5', 'pong104',
                       'ping6'], log
    finally:
        ex.shutdown(timeout_sec=1.0)
        a.destroy_node()
        b.destroy_node()


def test_an_executor_state_goes_with_its_executor(rclpy_context):
    """Per-executor bookkeeping (drains pending, deferred publishes) must not outlive the executor: a new one
    that got the same id() would otherwise hold its DDS publishes back behind a stale pending count."""
    import gc

    from autopilot_core import intra
    from autopilot_core.executors import make_executor
    for kind in ('events', 'single'):
        ex = make_executor(kind, context=rclpy_context)
        key = id(ex)
        intra._state(ex).pending = 5  # as if shut down with drains still queued
        assert intra._state(ex).pending == 5
        ex.shutdown(timeout_sec=1.0)
        del ex
        gc.collect()
        assert key not in intra._executors, kind
        fresh = make_executor(kind, context=rclpy_context)
        assert intra._state(fresh).pending == 0
        fresh.shutdown(timeout_sec=1.0)


def test_every_command_topic_of_composed_hardware_is_taken_in_process(rclpy_context, tmp_path) -> None:
    """The gpio and sound nodes take every command a composed pilot sends (outputs, rewards, plays, stops)
    in-process: none of them goes over DDS while the others go intra, so none overtakes another."""
    needs_intra()
    from autopilot_msgs.msg import DigitalOutput, Reward, SoundPlay
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from std_msgs.msg import Empty

    from autopilot_core import intra, qos
    from autopilot_core.executors import make_executor, spin
    from autopilot_hardware.gpio.node import GpioNode
    from autopilot_hardware.sound.node import SoundServer

    ns = '/intra_rig'
    commands = {
        'gpio/output': DigitalOutput(device='valve_left', mode=DigitalOutput.MODE_PULSE, pulse_us=1000),
        'gpio/reward': Reward(device='valve_left', volume_ul=1.0),
        'sound/play': SoundPlay(sound_id='never_loaded', play_id=1),
        'sound/stop': Empty(),
    }
    gpio = GpioNode(context=rclpy_context, namespace=ns, parameter_overrides=[
        Parameter('outputs', Parameter.Type.STRING_ARRAY, ['valve_left']),
        Parameter('devices.valve_left.pin', value=17), Parameter('devices.valve_left.kind', value='valve'),
        Parameter('calibration_file', value=str(tmp_path / 'calibration.jsonl')),
        Parameter('pilot_status_topic', value='')])
    sound = SoundServer(context=rclpy_context, namespace=ns, parameter_overrides=[Parameter('backend', value='null')])
    pilot = Node('pilot', context=rclpy_context, namespace=ns)
    ex = make_executor(context=rclpy_context)
    try:
        pubs = {topic: intra.create_publisher(pilot, type(msg), topic, qos.EVENTS) for topic, msg in commands.items()}
        subs = {}
        for topic, msg in commands.items():
            found = intra._registry[rclpy_context][(f'{ns}/{topic}', type(msg))].subscriptions
            assert [s.node for s in found] == [sound if topic.startswith('sound') else gpio], topic
            subs[topic] = found[0]
        nodes = [gpio, sound, pilot]
        for n in nodes:  # local delivery needs the subscriber on a (single-threaded) executor
            ex.add_node(n)
        for topic, msg in commands.items():
            pubs[topic].publish(msg)
        assert spin(nodes, ex, until=lambda: all(s.n_local == 1 for s in subs.values()), timeout_sec=10), \
            {t: (s.n_local, s.n_dds) for t, s in subs.items()}
        spin(nodes, ex, until=lambda: False, timeout_sec=0.3)  # DDS copies come (and are dropped) now
        assert {t: (s.n_local, s.n_dds) for t, s in subs.items()} == {t: (1, 0) for t in commands}
    finally:
        ex.shutdown(timeout_sec=1.0)
        sound.close()
        for n in (pilot, sound, gpio):
            n.destroy_node()
