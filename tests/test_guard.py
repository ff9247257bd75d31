"""autopilot_core.guard and .checks: refusals are counted, logged at most once per endpoint per interval,
published on /diagnostics, and a service that raises answers success=False with the reason."""

from __future__ import annotations

import math

import pytest
from autopilot_msgs.srv import CreateSubject
from conftest import call
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from std_msgs.msg import String

from autopilot_core import guard, qos
from autopilot_core.checks import InputError, finite, sequence, text
from autopilot_core.executors import spin


def test_checks_name_the_field_and_what_is_allowed():
    assert finite('x', 3, 0, 5) == 3.0
    for bad, why in ((math.nan, 'finite'), (math.inf, 'finite'), (1e308, r'\[0, 5\]'), ('a', 'a number')):
        with pytest.raises(InputError, match=f'x must be .*{why}'):
            finite('x', bad, 0, 5)  # type: ignore[arg-type]
    with pytest.raises(InputError, match='name is 5000 characters long; at most 4096'):
        text('name', 'n' * 5000)
    with pytest.raises(InputError, match='name must not be empty'):
        text('name', '', empty=False)
    with pytest.raises(InputError, match='ids has 3 items; at most 2'):
        sequence('ids', [1, 2, 3], 2)


def test_refusals_are_counted_rate_limited_and_on_diagnostics(node, capfd):
    g = guard.of(node)
    assert guard.of(node) is g
    for i in range(50):
        g.refuse('/t', f'bad {i}', sender='rig_x')
    assert g.endpoints['/t'].refused == 50 and g.total == 50
    g.endpoints['/t'].last_logged = -math.inf  # the interval passed
    g.refuse('/t', 'bad 50')
    logged = [line for line in capfd.readouterr().err.splitlines() if '/t refused' in line]
    assert len(logged) == 2, logged  # one line per endpoint per interval
    assert "/t refused from 'rig_x': bad 0 [1 refused so far; /diagnostics]" in logged[0]
    assert 'bad 50 (49 more refused since the last report) [51 refused so far' in logged[1]
    status = g.status()
    assert status.level == DiagnosticStatus.WARN and status.message == '51 input(s) refused'
    values = {kv.key: kv.value for kv in status.values}
    assert values['refused /t'] == '51' and values['last refusal /t'] == 'bad 50'
    assert int(values['timers']) >= 1 and int(values['rss_kb']) > 0


def test_a_raising_callback_and_service_refuse_instead_of_ending_the_node(node):
    got: list[DiagnosticArray] = []
    node.create_subscription(DiagnosticArray, '/diagnostics', got.append, 10)

    def boom(_msg: String) -> None:
        raise RuntimeError('a bug')

    def srv(req: CreateSubject.Request, res: CreateSubject.Response) -> CreateSubject.Response:
        raise InputError(f'subject {req.subject!r} is not allowed')

    guard.create_subscription(node, String, '/guard_in', boom, qos.EVENTS)
    guard.create_service(node, CreateSubject, '/guard_srv', srv)
    pub = node.create_publisher(String, '/guard_in', qos.EVENTS)
    spin(node, node.executor_, until=lambda: pub.get_subscription_count() > 0, timeout_sec=10)
    pub.publish(String(data='x'))
    res = call(node, node.create_client(CreateSubject, '/guard_srv'), CreateSubject.Request(subject='bad'))
    assert not res.success and res.message == "subject 'bad' is not allowed"
    assert spin(node, node.executor_, until=lambda: any(
        s.values and {kv.key: kv.value for kv in s.values}.get('refused /guard_in') == '1'
        for m in got for s in m.status), timeout_sec=10), got
    ours = guard.of(node).endpoints
    assert 'RuntimeError: a bug at test_guard.py:' in ours['/guard_in'].last_reason
    assert ours['/guard_srv'].refused == 1
