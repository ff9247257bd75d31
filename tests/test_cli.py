"""The `autopilot` CLI verbs as real subprocesses against a plain rclpy peer (tests/nodes/plain_peer.py).

The peer imports nothing of ours but autopilot_msgs, so this checks that the CLI works on any ROS 2 graph.
One peer serves the whole module, on a domain id leased for the module (each CLI call discovers the graph
anew, which is what costs time: a participant is found at its next announcement, 0-3 s). Independent calls
run concurrently for the same reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import AUTOPILOT, DomainLease, Proc, child_env, cli, cli_many, error_line, ok

ROOT = Path(__file__).resolve().parent.parent
PEER = ROOT / 'tests' / 'nodes' / 'plain_peer.py'
NODE = '/rig1/plain_peer'
# List verbs listen 3.5 s by default (one DDS announcement period); the tests run several CLIs at once on
# a loaded machine, where discovery was seen to take longer.
LISTEN = '6'


@dataclass
class Graph:
    env: dict[str, str]
    peer: Proc


@pytest.fixture(scope='module')
def graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Graph]:
    lease = DomainLease()
    env = child_env(lease.domain)
    log = tmp_path_factory.mktemp('cli') / 'plain_peer.log'
    peer = Proc([sys.executable, str(PEER), '--ros-args', '-r', '__ns:=/rig1'], env, log)
    try:
        peer.wait_for_output('READY')
        yield Graph(env, peer)
    finally:
        peer.stop()
        cli(env, 'daemon', 'stop')  # the graph daemon the verbs started for this domain
        lease.release()



# ------------------------------------------------------------------------------------------ topics

def test_topic_list_info_type(graph: Graph) -> None:
    listing, plain, info, type_ = cli_many(
        graph.env, ('topic', 'list', '-t', '--spin-time', LISTEN), ('topic', 'list', '--spin-time', LISTEN), ('topic', 'info', '/rig1/chatter', '-v'),
        ('topic', 'type', 'rig1/gpio/events'))
    lines = ok(listing).splitlines()
    assert '/rig1/chatter [std_msgs/msg/String]' in lines
    assert '/rig1/gpio/events [autopilot_msgs/msg/GpioEvent]' in lines
    assert '/rig1/trials [autopilot_msgs/msg/TrialData]' in lines
    assert '/rig1/chatter' in ok(plain).splitlines()
    text = ok(info)
    assert text.startswith('Type: std_msgs/msg/String\n\nPublisher count: 1\n\n')
    assert 'Node name: plain_peer\nNode namespace: /rig1\n' in text and 'Endpoint type: PUBLISHER' in text
    assert '  Reliability: RELIABLE' in text and 'Subscription count: 0' in text
    assert ok(type_) == 'autopilot_msgs/msg/GpioEvent\n'


def test_topic_echo(graph: Graph) -> None:
    chatter, event, field, csv = cli_many(
        graph.env, ('topic', 'echo', '/rig1/chatter', '--once'),
        ('topic', 'echo', '/rig1/gpio/events', 'autopilot_msgs/msg/GpioEvent', '--once',
         '--qos-reliability', 'reliable', '--qos-durability', 'volatile', '--qos-depth', '10'),
        ('topic', 'echo', '/rig1/gpio/events', '--once', '--field', 'device'),
        ('topic', 'echo', '/rig1/gpio/events', '--once', '--csv'))
    docs = ok(chatter).split('---\n')
    assert docs[1] == '' and yaml.safe_load(docs[0])['data'].startswith('hello ')
    msg = yaml.safe_load(ok(event).split('---\n')[0])
    assert list(msg) == ['header', 'device', 'pin', 'level', 'tick', 'tick_us', 'backend', 'run_id', 'seq']
    assert msg['device'] == 'poke_center' and msg['pin'] == 17 and msg['tick_us'] == msg['tick'] * 1000
    assert msg['header']['stamp']['sec'] > 0
    assert ok(field) == 'poke_center\n---\n'
    row = ok(csv).strip().split(',')
    assert row[3:6] == ['poke_center', '17', row[5]] and row[-3] == 'sim'


def test_topic_pub_reaches_the_peer(graph: Graph) -> None:
    values = ('{header: auto, pilot: p1, subject: mouse7, session_id: s-1, trial_number: 42, step: 3, '
              'fields: [{name: rt, type: 2, unit: us, int_value: 123456}, {name: correct, type: 1, bool_value: true}]}')
    out = ok(cli(graph.env, 'topic', 'pub', '--once', '/rig1/trials', 'autopilot_msgs/msg/TrialData', values))
    assert 'publisher: beginning loop' in out
    assert 'publishing #1: autopilot_msgs.msg.TrialData(header=std_msgs.msg.Header(stamp=' in out
    line = graph.peer.wait_for_output('TRIAL ', timeout=10)
    trial = json.loads(next(x for x in line.splitlines() if x.startswith('TRIAL '))[6:])
    assert (trial['pilot'], trial['subject'], trial['session_id'], trial['trial_number'], trial['step']) == \
        ('p1', 'mouse7', 's-1', 42, 3)
    assert trial['stamp'][0] > 1_600_000_000  # 'auto' stamped the header with the current time
    assert [(f['name'], f['type'], f['unit'], f['int'], f['bool']) for f in trial['fields']] == \
        [('rt', 2, 'us', 123456, False), ('correct', 1, '', 0, True)]


def test_topic_pub_times_and_rate(graph: Graph) -> None:
    start = time.monotonic()
    out = ok(cli(graph.env, 'topic', 'pub', '-t', '3', '-r', '20', '-p', '2', 'rig1/trials', 'autopilot_msgs/TrialData',
                 'trial_number: 9'))
    assert out.count('publishing #') == 1 and 'publishing #2: ' in out
    assert time.monotonic() - start < 20
    deadline = time.monotonic() + 10
    while graph.peer.output().count('"trial_number": 9') < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert graph.peer.output().count('"trial_number": 9') == 3


def test_topic_hz(graph: Graph) -> None:
    out = ok(cli(graph.env, 'topic', 'hz', '/rig1/chatter', '--duration', '5', '--window', '20'))
    reports = [line for line in out.splitlines() if line.startswith('average rate: ')]
    assert reports, out
    rate = float(reports[-1].split(': ')[1])
    assert 5.0 < rate < 15.0, out  # the peer publishes at 10 Hz
    stats = out.splitlines()[out.splitlines().index(reports[-1]) + 1]
    assert stats.startswith('\tmin: ') and ' max: ' in stats and ' std dev: ' in stats and 'window: ' in stats


# ------------------------------------------------------------------------------------------ nodes, services

def test_node_list_and_info(graph: Graph) -> None:
    listing, info = cli_many(graph.env, ('node', 'list', '--spin-time', LISTEN), ('node', 'info', NODE))
    assert NODE in ok(listing).splitlines()
    assert not any(line.startswith('/_') for line in listing.stdout.splitlines())  # the CLI's own node is hidden
    text = ok(info)
    sections = {}
    current = None
    for line in text.splitlines()[1:]:
        if line.startswith('  ') and not line.startswith('    '):
            current = line.strip().rstrip(':')
            sections[current] = []
        elif line.strip():
            sections[current].append(line.strip())
    assert text.splitlines()[0] == NODE
    assert list(sections) == ['Subscribers', 'Publishers', 'Service Servers', 'Service Clients', 'Action Servers',
                              'Action Clients']
    assert sections['Subscribers'] == ['/rig1/trials: autopilot_msgs/msg/TrialData']
    assert '/rig1/chatter: std_msgs/msg/String' in sections['Publishers']
    assert '/rig1/gpio/events: autopilot_msgs/msg/GpioEvent' in sections['Publishers']
    assert '/rig1/set_enabled: std_srvs/srv/SetBool' in sections['Service Servers']
    assert '/rig1/plain_peer/set_parameters: rcl_interfaces/srv/SetParameters' in sections['Service Servers']


def test_service_list_and_call(graph: Graph) -> None:
    listing, call, trigger = cli_many(
        graph.env, ('service', 'list', '-t', '--spin-time', LISTEN), ('service', 'call', '/rig1/set_enabled', 'std_srvs/srv/SetBool', 'data: true'),
        ('service', 'call', 'rig1/trigger', 'std_srvs/Trigger'))
    lines = ok(listing).splitlines()
    assert '/rig1/set_enabled [std_srvs/srv/SetBool]' in lines and '/rig1/trigger [std_srvs/srv/Trigger]' in lines
    out = ok(call)
    assert 'requester: making request: std_srvs.srv.SetBool_Request(data=True)' in out
    assert "response:\nstd_srvs.srv.SetBool_Response(success=True, message='enabled=True')\n" in out
    assert "message='triggered by plain_peer'" in ok(trigger)


# ------------------------------------------------------------------------------------------ parameters

def test_param_list_get_describe(graph: Graph) -> None:
    listing, typed, get_int, get_str, get_double, describe = cli_many(
        graph.env, ('param', 'list', '--spin-time', LISTEN), ('param', 'list', NODE, '--param-type'), ('param', 'get', NODE, 'threshold'),
        ('param', 'get', 'rig1/plain_peer', 'label'), ('param', 'get', NODE, 'gain', '--hide-type'),
        ('param', 'describe', NODE, 'threshold'))
    lines = ok(listing).splitlines()
    assert f'{NODE}:' in lines and '  threshold' in lines and '  label' in lines
    assert '  threshold (type: integer)' in ok(typed).splitlines()
    assert ok(get_int) in ('Integer value is: 5\n', 'Integer value is: 50\n')  # 50 once test_param_set ran
    assert ok(get_str) == 'String value is: peer\n'
    assert ok(get_double) in ('1.5\n', '2.25\n')
    text = ok(describe)
    assert 'Parameter name: threshold\n  Type: integer\n' in text and '    Min value: 0\n    Max value: 100' in text


def test_param_list_reports_a_node_it_cannot_ask_and_lists_the_others(graph: Graph, tmp_path: Path) -> None:
    mute = Proc([sys.executable, str(ROOT / 'tests' / 'nodes' / 'mute_peer.py'), '--ros-args', '-r', '__ns:=/rig1'],
                graph.env, tmp_path / 'mute_peer.log')
    try:
        mute.wait_for_output('READY')
        for _ in range(20):  # the daemon hears of a new node within about a second; the test asks once it has
            if '/rig1/mute_peer\n' in ok(cli(graph.env, 'node', 'list')):
                break
        every, one = cli_many(graph.env, ('param', 'list', '--spin-time', LISTEN), ('param', 'list', '/rig1/mute_peer'))
    finally:
        mute.stop()
    lines = ok(every).splitlines()
    assert f'{NODE}:' in lines and '  threshold' in lines, lines
    assert [line for line in lines if 'mute_peer' in line] == [
        'Wait for service timed out waiting for parameter services for node /rig1/mute_peer (is it an rclpy/rclcpp '
        'node with parameter services?)'], lines
    assert error_line(one) == ('autopilot: error: Wait for service timed out waiting for parameter services for node '
                               '/rig1/mute_peer (is it an rclpy/rclcpp node with parameter services?)')


def refused(result: subprocess.CompletedProcess[str]) -> str:
    """The reason line of a set the node refused: as ros2 param set, on stderr with exit code 0."""
    assert result.returncode == 0 and not result.stdout, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_param_set_and_refusals(graph: Graph) -> None:
    out = ok(cli(graph.env, 'param', 'set', NODE, 'threshold', '50'))
    assert out == 'Set parameter successful\n'
    assert ok(cli(graph.env, 'param', 'get', NODE, 'threshold')) == 'Integer value is: 50\n'
    graph.peer.wait_for_output('PARAM threshold=50')
    ok(cli(graph.env, 'param', 'set', NODE, 'gain', '2.25'))
    refusals = cli_many(graph.env, ('param', 'set', NODE, 'threshold', '500'), ('param', 'set', NODE, 'label', 'x'),
                        ('param', 'set', NODE, 'threshold', 'abc'), ('param', 'set', NODE, 'gain', '13.0'))
    reasons = [refused(r) for r in refusals]
    assert reasons[0] == 'Setting parameter failed: Parameter threshold out of range. Min: 0, Max: 100, value: 500'
    assert reasons[1].startswith('Setting parameter failed: ') and 'read-only' in reasons[1]
    assert reasons[2].startswith('Setting parameter failed: Wrong parameter type')
    assert reasons[3] == 'Setting parameter failed: gain 13.0 is unlucky'  # the node's own callback
    assert graph.peer.popen.poll() is None  # the peer stays up
    dump = ok(cli(graph.env, 'param', 'dump', NODE))
    params = yaml.safe_load(dump)[NODE]['ros__parameters']
    assert params['threshold'] == 50 and params['label'] == 'peer' and params['gain'] == 2.25
    assert dump.startswith(f'{NODE}:\n  ros__parameters:\n')


# ------------------------------------------------------------------------------------------ no graph needed

def test_interface_list_and_show() -> None:
    listing, srvs, show, bare, proto, pkg = cli_many(
        None, ('interface', 'list'), ('interface', 'list', '-s'), ('interface', 'show', 'autopilot_msgs/TrialData'),
        ('interface', 'show', 'std_srvs/srv/SetBool', '--no-comments'), ('interface', 'proto', 'std_msgs/String'),
        ('interface', 'package', 'std_srvs'))
    text = ok(listing)
    assert text.startswith('Messages:\n') and '\nServices:\n' in text and '\nActions:\n' in text
    assert '    autopilot_msgs/msg/TrialData' in text.splitlines()
    assert '    autopilot_msgs/action/RunSession' in text.splitlines()
    assert ok(srvs).startswith('Services:\n') and 'Messages:' not in srvs.stdout
    lines = ok(show).splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith('std_msgs/Header header'))
    assert lines[i + 1:i + 5] == ['\tbuiltin_interfaces/Time stamp', '\t\tint32 sec', '\t\tuint32 nanosec',
                                  '\tstring frame_id']
    assert ok(bare) == 'bool data\n---\nbool success\nstring message\n'
    assert ok(proto) == '"data: \'\'\n"\n'
    assert ok(pkg).splitlines() == ['std_srvs/srv/Empty', 'std_srvs/srv/SetBool', 'std_srvs/srv/Trigger']


def test_run_finds_and_execs_package_executables() -> None:
    # `autopilot` is itself an executable of autopilot_cli (lib/autopilot_cli/autopilot): run it with arguments.
    out = ok(cli(None, 'run', 'autopilot_cli', 'autopilot', 'interface', 'package', 'std_srvs'))
    assert out.splitlines() == ['std_srvs/srv/Empty', 'std_srvs/srv/SetBool', 'std_srvs/srv/Trigger']
    missing_exe, missing_pkg = cli_many(None, ('run', 'autopilot_pilot', 'nope'), ('run', 'no_such_pkg', 'x'))
    line = error_line(missing_exe)
    assert "No executable 'nope' in package 'autopilot_pilot'" in line and 'subject_sim' in line
    assert "Package 'no_such_pkg' not found" in error_line(missing_pkg)


def test_run_passes_ros_args(graph: Graph, tmp_path: Path) -> None:
    proc = Proc([*AUTOPILOT, 'run', 'autopilot_pilot', 'subject_sim', '--ros-args', '-r', '__node:=ran_subject',
                 '-r', '__ns:=/viarun'], graph.env, tmp_path / 'run.log')
    try:
        # As with ros2 and its daemon, `node info` answers at once: ask once the node is up.
        proc.wait_for_output('subject_sim ready')
        ok(cli(graph.env, 'node', 'info', '/viarun/ran_subject'))
    finally:
        proc.stop()


# ------------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize('args, expected', [
    (('topic', 'pub', '/x', 'std_msgs/Strin'), "unknown msg type 'std_msgs/Strin'"),
    (('topic', 'pub', '/x', 'nav_msgs/msg/Odometry'), 'nav_msgs is not installed: pip install ros-jazzy-nav-msgs'),
    (('topic', 'pub', '/x', 'std_msgs/String', '{data: [1'), 'malformed YAML in the message values'),
    (('topic', 'pub', '/x', 'std_msgs/String', 'dta: hi'), "field 'dta': std_msgs/msg/String has no field 'dta'; "
                                                           "valid fields: data"),
    (('topic', 'pub', '/x', 'std_msgs/String', 'data: 5'), "field 'data': expected string, got int 5"),
    (('topic', 'pub', '/x', 'autopilot_msgs/TrialData', 'trial_number: -1'), "field 'trial_number': -1 is out of "
                                                                             "range for uint32"),
    (('topic', 'pub', '/bad name', 'std_msgs/String'), "invalid topic name '/bad name'"),
    (('topic', 'echo', '/x', 'std_msgs/String', '--field', 'nope'), "std_msgs/msg/String has no field 'nope'"),
    (('service', 'call', '/x', 'std_srvs/srv/SetBool', 'data: 3'), "field 'data': expected bool"),
    (('service', 'call', '/x', 'std_msgs/msg/String'), "'std_msgs/msg/String' is a msg type, expected a srv type"),
    (('param', 'get', '/bad-node', 'x'), "invalid node name '/bad-node'"),
    (('param', 'set', '/n', 'x', '{a: 1}'), "invalid parameter value '{a: 1}'"),
    (('interface', 'show', 'std_msgs/Nope'), "unknown interface 'std_msgs/Nope'"),
    (('interface', 'show', 'nav_msgs/msg/Odometry'), 'nav_msgs is not installed'),
])
def test_bad_input_is_one_clear_line(args: tuple[str, ...], expected: str) -> None:
    assert expected in error_line(cli(None, *args))


def test_bad_input_against_the_graph(graph: Graph) -> None:
    missing_node, missing_service, wrong_type, missing_topic = cli_many(
        graph.env, ('node', 'info', '/rig1/nobody', '--spin-time', '1'),
        ('service', 'call', '/rig1/nothing', 'std_srvs/srv/Trigger', '--timeout', '1'),
        ('service', 'call', '/rig1/trigger', 'std_srvs/srv/SetBool', '--timeout', '20'),
        ('topic', 'echo', '/rig1/nothing', '--spin-time', '1'))
    line = error_line(missing_node)
    assert "node '/rig1/nobody' not found within 1 s" in line
    assert "service '/rig1/nothing' not available within 1 s: no server for it was discovered" in \
        error_line(missing_service)
    assert "service '/rig1/trigger' has type std_srvs/srv/Trigger, not std_srvs/srv/SetBool" in error_line(wrong_type)
    assert "could not determine the type of '/rig1/nothing'" in error_line(missing_topic)
    assert graph.peer.popen.poll() is None


def test_output_into_a_closed_pipe_ends_quietly() -> None:
    # `autopilot interface list | head -1`: no traceback when the reader goes away.
    proc = subprocess.Popen([*AUTOPILOT, 'interface', 'list'], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode() if proc.stderr else ''
    assert proc.wait(timeout=30) in (0, 141)
    assert 'Traceback' not in err and 'BrokenPipe' not in err
