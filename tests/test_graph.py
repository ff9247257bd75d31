"""Our nodes across processes: topics, services, parameters and the session action, on real ROS 2.

The demo nodes (tests/nodes/demo_*.py) run as processes of their own;
the test itself is another rclpy process on the same private domain.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from autopilot_msgs.action import RunSession
from autopilot_msgs.msg import PilotStatus, TrialAck, TrialData
from conftest import call
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.action import ActionClient
from rclpy.parameter import Parameter
from std_srvs.srv import Trigger

from autopilot_core import qos
from autopilot_core.executors import spin, spin_until_future

ROOT = Path(__file__).resolve().parent.parent
NODES = ROOT / 'tests' / 'nodes'


def exe(name: str, *ros_args: str) -> list[str]:
    cmd = [sys.executable, str(NODES / f'{name}.py')]
    return cmd + ['--ros-args', *ros_args] if ros_args else cmd


def test_trials_flow_and_are_acknowledged_across_processes(procs, node):
    trials: list[TrialData] = []
    acks: list[TrialAck] = []
    outside = procs(exe('demo_listener'), name='listener_root')
    listener = procs(exe('demo_listener', '-r', '__ns:=/rig1'), name='listener')
    ack_sub = node.create_subscription(TrialAck, '/rig1/trial_acks', acks.append, qos.TRIALS)
    # Acks are volatile: match the listener's ack publisher before any trial can be sent.
    assert spin(node, node.executor_, until=lambda: ack_sub.get_publisher_count() == 1, timeout_sec=20)
    node.create_subscription(TrialData, '/rig1/trials', trials.append, qos.TRIALS)
    # Two subscribers on /rig1/trials: this test and the namespaced listener.
    talker = procs(exe('demo_talker', '-p', 'rate_hz:=20.0', '-p', 'n_trials:=5', '-p', 'subject:=m42',
                       '-p', 'wait_for_subscribers:=2', '-r', '__ns:=/rig1'), name='talker')
    listener.wait_for_output('trial 5 from rig1/m42', timeout=30)
    talker.wait_for_output('published all 5 trials', timeout=30)
    summary = call(node, node.create_client(Trigger, '/rig1/summary'), Trigger.Request())
    assert summary.success and summary.message.startswith('5 trials from 1 pilot(s)'), summary.message
    assert spin(node, node.executor_, until=lambda: len(trials) == 5 and len(acks) == 5, timeout_sec=10)
    assert [t.trial_number for t in trials] == [1, 2, 3, 4, 5]
    assert {t.subject for t in trials} == {'m42'} and len({t.session_id for t in trials}) == 1
    assert [f.name for f in trials[0].fields] == ['target_side', 'stimulus_hz', 'response_time_us', 'correct']
    assert sorted(n for a in acks for n in a.trial_numbers) == [1, 2, 3, 4, 5]
    # The listener outside the namespace saw nothing: relative names place nodes.
    assert 'trial 1' not in outside.output()
    assert talker.stop() == 0
    assert 'sent 5 trials, 5 acknowledged' in talker.output()


def test_parameters_read_set_and_refused_with_node_staying_up(procs, node):
    talker = procs(exe('demo_talker', '-p', 'rate_hz:=4.0'), name='talker')
    talker.wait_for_output('publishing trials')
    get = node.create_client(GetParameters, '/demo_talker/get_parameters')
    res = call(node, get, GetParameters.Request(names=['rate_hz', 'subject', 'seed']))
    assert [v.double_value for v in res.values][:1] == [4.0]
    assert res.values[1].string_value == 'demo_mouse' and res.values[2].integer_value == 1
    setp = node.create_client(SetParameters, '/demo_talker/set_parameters')
    res = call(node, setp, SetParameters.Request(parameters=[Parameter('rate_hz', value=5000.0).to_parameter_msg()]))
    assert not res.results[0].successful and 'rate_hz' in res.results[0].reason
    res = call(node, setp, SetParameters.Request(parameters=[Parameter('seed', value=3).to_parameter_msg()]))
    assert not res.results[0].successful and 'read-only' in res.results[0].reason
    res = call(node, setp, SetParameters.Request(parameters=[Parameter('rate_hz', value=50.0).to_parameter_msg()]))
    assert res.results[0].successful
    res = call(node, get, GetParameters.Request(names=['rate_hz']))
    assert res.values[0].double_value == 50.0
    assert talker.popen.poll() is None


@pytest.mark.parametrize('args, fragment', [
    (['-p', 'rate_hz:=5000.0'], "parameter 'rate_hz': given value 5000.0 is out of range, allowed double in [0.01, 1000.0] Hz"),
    (['-p', 'n_trials:=many'], "parameter 'n_trials': given value 'many' has type string, expected integer"),
])
def test_bad_parameter_at_startup_exits_nonzero_naming_it(procs, args, fragment):
    p = procs(exe('demo_talker', *args), name='bad_talker')
    assert p.wait(timeout=20) == 1
    assert fragment in p.output()


def test_session_action_feedback_result_status_and_cancel(procs, node):
    server = procs(exe('demo_session', '-r', '__ns:=/rig2', '-p', 'trial_interval_s:=0.05'), name='session')
    client = ActionClient(node, RunSession, '/rig2/run_session')
    assert client.wait_for_server(timeout_sec=20), server.output()

    feedback: list[RunSession.Feedback] = []
    goal = RunSession.Goal(subject='m7', task='demo_2afc', max_trials=4)
    send = client.send_goal_async(goal, feedback_callback=lambda fb: feedback.append(fb.feedback))
    assert spin_until_future(node, send, 10, node.executor_)
    handle = send.result()
    assert handle.accepted
    result_f = handle.get_result_async()
    assert spin_until_future(node, result_f, 20, node.executor_)
    result = result_f.result().result
    assert result.success and result.n_trials == 4 and result.session_id
    assert 0.0 <= result.fraction_correct <= 1.0
    assert [f.trial_count for f in feedback] == [1, 2, 3, 4]

    # A late subscriber to the transient-local status gets the current state at once.
    statuses: list[PilotStatus] = []
    node.create_subscription(PilotStatus, '/rig2/status', statuses.append, qos.STATUS)
    assert spin(node, node.executor_, until=lambda: bool(statuses), timeout_sec=10)
    assert statuses[-1].pilot == 'rig2' and statuses[-1].state == PilotStatus.STATE_IDLE
    assert statuses[-1].ros_distro and statuses[-1].rmw_implementation.startswith('rmw_')

    # An empty subject is refused; the server stays up.
    bad = client.send_goal_async(RunSession.Goal(subject=''))
    assert spin_until_future(node, bad, 10, node.executor_) and not bad.result().accepted

    # Cancel = stop: an unlimited session ends when cancelled, with what it ran so far.
    feedback.clear()
    send = client.send_goal_async(RunSession.Goal(subject='m7'), feedback_callback=lambda fb: feedback.append(1))
    assert spin_until_future(node, send, 10, node.executor_)
    handle = send.result()
    assert spin(node, node.executor_, until=lambda: len(feedback) >= 2, timeout_sec=10)
    cancel = handle.cancel_goal_async()
    assert spin_until_future(node, cancel, 10, node.executor_)
    result_f = handle.get_result_async()
    assert spin_until_future(node, result_f, 10, node.executor_)
    result = result_f.result().result
    assert result.n_trials >= 2 and 'cancelled' in result.message
    assert not math.isnan(result.fraction_correct)
    assert server.popen.poll() is None
