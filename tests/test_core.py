"""autopilot_core without other processes: QoS profiles, parameter helpers, executors, provenance, names."""

from __future__ import annotations

import math
import threading
import time

import pytest
import rclpy
from hypothesis import given
from hypothesis import strategies as st
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy

from autopilot_core import executors, names, provenance, qos
from autopilot_core.params import ParameterError, ParamSpec, UnknownParameterError, check_unknown, declare

SPECS = (
    ParamSpec('rate_hz', 2.0, 'Trial rate', unit='Hz', min=0.1, max=100.0),
    ParamSpec('n_trials', 10, 'Trials', min=0, max=1000),
    ParamSpec('mode', 'sim', 'Backend', choices=('sim', 'pigpio')),
    ParamSpec('serial', 'abc', 'Serial number', read_only=True),
    ParamSpec('enabled', True, 'Enabled'),
)


def make_node(ctx, name: str = 'params_test', overrides: list[Parameter] | None = None) -> Node:
    return Node(name, context=ctx, parameter_overrides=overrides or [])


def test_qos_profiles_follow_the_design():
    assert qos.EVENTS.reliability == ReliabilityPolicy.RELIABLE and qos.EVENTS.history == HistoryPolicy.KEEP_ALL
    assert qos.TRIALS.reliability == ReliabilityPolicy.RELIABLE and qos.TRIALS.history == HistoryPolicy.KEEP_ALL
    assert qos.STATUS.durability == DurabilityPolicy.TRANSIENT_LOCAL and qos.STATUS.depth == 1
    assert qos.STATUS.reliability == ReliabilityPolicy.RELIABLE
    assert qos.STREAM.reliability == ReliabilityPolicy.BEST_EFFORT and qos.STREAM.depth <= 10
    assert qos.by_name('Status') is qos.STATUS
    with pytest.raises(ValueError, match='choose one of: events, trials, status, stream'):
        qos.by_name('fast')


def test_declare_defaults_and_descriptors(rclpy_context):
    node = make_node(rclpy_context)
    try:
        values = declare(node, SPECS)
        assert values == {'rate_hz': 2.0, 'n_trials': 10, 'mode': 'sim', 'serial': 'abc', 'enabled': True}
        d = node.describe_parameter('rate_hz')
        assert d.description == 'Trial rate [Hz]'
        assert d.floating_point_range[0].from_value == 0.1 and d.floating_point_range[0].to_value == 100.0
        assert node.describe_parameter('n_trials').integer_range[0].to_value == 1000
        assert node.describe_parameter('serial').read_only
        assert 'one of: sim, pigpio' in node.describe_parameter('mode').additional_constraints
    finally:
        node.destroy_node()


def test_overrides_are_used_and_int_becomes_double(rclpy_context):
    node = make_node(rclpy_context, overrides=[Parameter('rate_hz', value=5), Parameter('mode', value='pigpio')])
    try:
        values = declare(node, SPECS)
        assert values['rate_hz'] == 5.0 and isinstance(values['rate_hz'], float)
        assert values['mode'] == 'pigpio'
    finally:
        node.destroy_node()


@pytest.mark.parametrize('override, fragment', [
    (Parameter('rate_hz', value=500.0), "parameter 'rate_hz': given value 500.0 is out of range, allowed double in [0.1, 100.0] Hz"),
    (Parameter('n_trials', value=-1), "parameter 'n_trials': given value -1 is out of range"),
    (Parameter('mode', value='lgpioo'), "'lgpioo' is not allowed, expected string one of 'sim', 'pigpio'"),
    (Parameter('enabled', value='yes'), "'yes' has type string, expected bool"),
    (Parameter('rate_hz', value=math.nan), 'NaN is not allowed'),
])
def test_bad_values_at_startup_name_parameter_value_and_range(rclpy_context, override, fragment):
    node = make_node(rclpy_context, overrides=[override])
    try:
        with pytest.raises(ParameterError) as err:
            declare(node, SPECS)
        assert fragment in str(err.value)
        assert str(err.value).startswith('params_test: ')
        assert '--ros-args -p' in str(err.value)
    finally:
        node.destroy_node()


def test_bad_values_at_runtime_are_refused_with_reason(rclpy_context):
    node = make_node(rclpy_context)
    try:
        declare(node, SPECS)
        [res] = node.set_parameters([Parameter('rate_hz', value=1000.0)])
        assert not res.successful and 'rate_hz' in res.reason and '100.0' in res.reason
        [res] = node.set_parameters([Parameter('mode', value='fast')])
        assert not res.successful and "'fast' is not allowed" in res.reason
        [res] = node.set_parameters([Parameter('serial', value='x')])
        assert not res.successful and 'read-only' in res.reason
        [res] = node.set_parameters([Parameter('rate_hz', value=7)])  # int for a double: accepted as 7.0
        assert res.successful and node.get_parameter('rate_hz').value == 7.0
        assert node.get_parameter('mode').value == 'sim'
    finally:
        node.destroy_node()


def test_empty_array_default_keeps_its_declared_type(rclpy_context):
    node = make_node(rclpy_context)
    try:
        values = declare(node, [ParamSpec('inputs', [], 'Input devices', type=Parameter.Type.STRING_ARRAY)])
        assert values == {'inputs': []}
        assert node.get_parameter('inputs').type_ == Parameter.Type.STRING_ARRAY
        [res] = node.set_parameters([Parameter('inputs', value=['poke_left'])])
        assert res.successful and node.get_parameter('inputs').value == ['poke_left']
        [res] = node.set_parameters([Parameter('inputs', value=[1, 2])])
        assert not res.successful
    finally:
        node.destroy_node()


def test_empty_array_default_of_a_read_only_parameter(rclpy_context):
    node = make_node(rclpy_context)
    try:
        spec = ParamSpec('device_map', [], 'Role to device', type=Parameter.Type.STRING_ARRAY, read_only=True)
        assert declare(node, [spec]) == {'device_map': []}
        assert node.get_parameter('device_map').type_ == Parameter.Type.STRING_ARRAY
        [res] = node.set_parameters([Parameter('device_map', value=['a:b'])])
        assert not res.successful and 'read-only' in res.reason
    finally:
        node.destroy_node()


VALVE = (ParamSpec('devices.valve_left.pin', 17, 'Pin'),
         ParamSpec('devices.valve_left.max_open_ms', 100.0, 'Longest opening', unit='ms', min=0.1))


def test_a_misspelt_params_file_key_names_itself_and_the_nearest_parameter(rclpy_context, tmp_path):
    """The key reaches the node as rclpy reads it: a params file section plus -p, both on the node's own args."""
    params = tmp_path / 'rig.yaml'
    params.write_text(
        '/**/valve_node:\n  ros__parameters:\n'
        '    use_sim_time: false\n'                      # rclpy's own
        '    qos_overrides:\n      /rig1/gpio/events:\n        publisher:\n          depth: 10\n'
        '    devices:\n      valve_left:\n        pin: 18\n        max_open_msec: 50.0\n'
        '    totally_unrelated_key: 3\n')
    node = Node('valve_node', context=rclpy_context,
                cli_args=['--ros-args', '--params-file', str(params), '-p', 'mode:=pigpio'])
    try:
        values = declare(node, VALVE + SPECS)
        assert values['devices.valve_left.pin'] == 18 and values['mode'] == 'pigpio'
        assert values['devices.valve_left.max_open_ms'] == 100.0  # the misspelt value was not taken
        with pytest.raises(ParameterError) as err:
            check_unknown(node)
        assert isinstance(err.value, UnknownParameterError)
        assert err.value.unknown == {'devices.valve_left.max_open_msec': 'devices.valve_left.max_open_ms',
                                     'totally_unrelated_key': None}
        text = str(err.value)
        assert text.startswith("valve_node: unknown parameter 'devices.valve_left.max_open_msec' (did you mean "
                               "'devices.valve_left.max_open_ms'?); unknown parameter 'totally_unrelated_key'. ")
        assert 'params file' in text and '-p' in text
        assert err.value.parameter == 'devices.valve_left.max_open_msec'
        check_unknown(node, known=['devices.valve_left.max_open_msec', 'totally_unrelated_key'])  # accepted
    finally:
        node.destroy_node()


def test_known_overrides_and_rclpys_own_parameters_pass(rclpy_context):
    node = make_node(rclpy_context, overrides=[
        Parameter('rate_hz', value=5.0), Parameter('use_sim_time', value=False),
        Parameter('qos_overrides./status.publisher.depth', value=1), Parameter('start_type_description_service',
                                                                               value=True)])
    try:
        declare(node, SPECS)
        check_unknown(node)
        node.declare_parameter('declared_without_spec', 1)  # any declaration counts, not only declare()'s
        check_unknown(node)
    finally:
        node.destroy_node()
    node = make_node(rclpy_context, 'params_test_2', overrides=[Parameter('rate_hzz', value=5.0)])
    try:
        declare(node, SPECS)
        with pytest.raises(UnknownParameterError, match=r"unknown parameter 'rate_hzz' \(did you mean 'rate_hz'\?\)"):
            check_unknown(node)
    finally:
        node.destroy_node()


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_check_accepts_exactly_the_range(value):
    spec = ParamSpec('x', 1.0, 'x', min=0.0, max=10.0)
    problem = spec.check(value)
    assert (problem is None) == (0.0 <= value <= 10.0)
    if problem:
        assert 'allowed double in [0.0, 10.0]' in problem or 'expected double in [0.0, 10.0]' in problem


def test_make_executor_prefers_events_executor(monkeypatch):
    cls = executors.events_executor_class()
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    try:
        ex = executors.make_executor(context=ctx)
        # rclpy.experimental.EventsExecutor is a factory returning the C++ executor's binding.
        assert type(ex).__name__ == ('EventsExecutor' if cls else 'SingleThreadedExecutor')
        ex.shutdown()
        monkeypatch.setenv(executors.ENV_VAR, 'single')
        ex = executors.make_executor(context=ctx)
        assert isinstance(ex, rclpy.executors.SingleThreadedExecutor)
        ex.shutdown()
        with pytest.raises(ValueError, match='unknown executor'):
            executors.make_executor('turbo', context=ctx)
    finally:
        rclpy.shutdown(context=ctx)


@pytest.mark.parametrize('kind', ['events', 'single'])
def test_spin_runs_callbacks_and_returns_on_timeout_stop_and_condition(rclpy_context, kind):
    node = Node('spin_test', context=rclpy_context)
    ticks: list[float] = []
    node.create_timer(0.01, lambda: ticks.append(time.monotonic()))
    ex = executors.make_executor(kind, context=rclpy_context)
    try:
        assert executors.spin(node, ex, until=lambda: len(ticks) >= 5, timeout_sec=5.0)
        t0 = time.monotonic()
        assert not executors.spin(node, ex, until=lambda: False, timeout_sec=0.3)
        assert 0.25 < time.monotonic() - t0 < 2.0  # never hangs (the EventsExecutor would without timeouts)
        stop = threading.Event()
        threading.Timer(0.2, stop.set).start()
        t0 = time.monotonic()
        assert not executors.spin(node, ex, stop=stop)
        assert time.monotonic() - t0 < 2.0
    finally:
        ex.shutdown()
        node.destroy_node()


def test_provenance_collects_versions_git_ros_and_host():
    p = provenance.collect()
    assert p['packages']['autopilot_core']
    assert p['ros']['rmw_implementation'].startswith('rmw_')
    assert p['ros']['distro']
    assert p['host']['hostname']
    assert p['git']['available'] and len(p['git']['commit']) in (40, len('(no commits yet)'))
    assert provenance.git_state('/')['available'] is False


@pytest.mark.parametrize('raw, expected', [('rig-3.lab', 'rig_3_lab'), ('  ', 'pilot'), ('3rig', 'pilot_3rig'),
                                           ('a__b', 'a_b'), ('Pi 5 (left)', 'Pi_5_left')])
def test_sanitize(raw, expected):
    assert names.sanitize(raw) == expected


@given(st.text())
def test_sanitize_always_gives_a_valid_node_name(text):
    from rclpy.validate_node_name import validate_node_name
    assert validate_node_name(names.sanitize(text))


@pytest.mark.parametrize('kind', ['events', 'single'])
def test_spin_until_future_completes_from_a_callback(rclpy_context, kind):
    from rclpy.task import Future

    node = Node('future_test', context=rclpy_context)
    fut = Future()
    node.create_timer(0.05, lambda: fut.done() or fut.set_result(42))
    ex = executors.make_executor(kind, context=rclpy_context)
    try:
        assert executors.spin_until_future(node, fut, 5.0, ex) and fut.result() == 42
        t0 = time.monotonic()
        assert not executors.spin_until_future(node, Future(), 0.3, ex)
        assert time.monotonic() - t0 < 2.0
    finally:
        ex.shutdown()
        node.destroy_node()


def test_destroy_node_destroys_its_action_servers_and_clients_first(rclpy_context):
    from autopilot_msgs.action import RunSession
    from rclpy.action import ActionClient, ActionServer

    n = Node('destroy_waitables', context=rclpy_context)
    server = ActionServer(n, RunSession, 'session', execute_callback=lambda goal: RunSession.Result())
    client = ActionClient(n, RunSession, 'session')
    assert {id(server), id(client)} <= {id(w) for w in n.waitables}
    executors.destroy_node(n)
    # Each destroyed itself and left the node (rclpy's destroy_node alone leaves both).
    assert not {id(server), id(client)} & {id(w) for w in n.waitables}
