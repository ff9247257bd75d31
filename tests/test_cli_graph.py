"""The `autopilot` CLI's graph answers are right every time, and its verbs beyond list/info, on a real graph.

A small graph of three processes (one talker, two listeners of /rig_1/trials) runs for the module; each of
`node list`, `node info`, `topic info` and `param list` is asked 20 times (a few at a time) and every answer
must be exactly the truth. Without a daemon, a command's own node hears of each peer 0-3 s after it starts,
and answers given sooner were wrong (issue "The house", item 7).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import AUTOPILOT, DomainLease, Proc, child_env, cli, cli_many, ok

ROOT = Path(__file__).resolve().parent.parent
NODES = ROOT / 'tests' / 'nodes'
REPEATS = 5          # each answer, in the default run; -m soak asks SOAK_REPEATS times
SOAK_REPEATS = 40
AT_ONCE = 5  # concurrent CLI calls: each is a Python process, and the machine has 2 cores

NODE_LIST = '/rig_1/demo_listener\n/rig_1/demo_talker\n/rig_1/introspected_peer\n/rig_1/listener_2\n'
TOPIC_INFO = 'Type: autopilot_msgs/msg/TrialData\nPublisher count: 1\nSubscription count: 2\n'
LISTENER_INFO = '''/rig_1/listener_2
  Subscribers:
    /rig_1/trials: autopilot_msgs/msg/TrialData
  Publishers:
    /parameter_events: rcl_interfaces/msg/ParameterEvent
    /rig_1/trial_acks: autopilot_msgs/msg/TrialAck
    /rosout: rcl_interfaces/msg/Log
  Service Servers:
    /rig_1/listener_2/describe_parameters: rcl_interfaces/srv/DescribeParameters
    /rig_1/listener_2/get_parameter_types: rcl_interfaces/srv/GetParameterTypes
    /rig_1/listener_2/get_parameters: rcl_interfaces/srv/GetParameters
    /rig_1/listener_2/get_type_description: type_description_interfaces/srv/GetTypeDescription
    /rig_1/listener_2/list_parameters: rcl_interfaces/srv/ListParameters
    /rig_1/listener_2/set_parameters: rcl_interfaces/srv/SetParameters
    /rig_1/listener_2/set_parameters_atomically: rcl_interfaces/srv/SetParametersAtomically
    /rig_1/summary: std_srvs/srv/Trigger
  Service Clients:

  Action Servers:

  Action Clients:

'''
TALKER_PARAMS = ''.join(f'  {name}\n' for name in (
    'n_trials', 'pilot', 'rate_hz', 'seed', 'start_type_description_service', 'subject', 'use_sim_time',
    'wait_for_subscribers'))


@dataclass
class Graph:
    env: dict[str, str]
    peer: Proc
    procs: list[Proc]


@pytest.fixture(scope='module')
def graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Graph]:
    lease = DomainLease()
    env = child_env(lease.domain)
    logs = tmp_path_factory.mktemp('cli_graph')
    ns = ['-r', '__ns:=/rig_1']
    commands = {
        'listener': [sys.executable, str(NODES / 'demo_listener.py'), '--ros-args', *ns],
        'listener_2': [sys.executable, str(NODES / 'demo_listener.py'), '--ros-args', *ns,
                       '-r', '__node:=listener_2'],
        'talker': [sys.executable, str(NODES / 'demo_talker.py'), '--ros-args', *ns, '-p', 'rate_hz:=5.0'],
        'peer': [sys.executable, str(NODES / 'introspected_peer.py'), '--ros-args', *ns],
    }
    procs = {name: Proc(cmd, env, logs / f'{name}.log') for name, cmd in commands.items()}
    try:
        procs['talker'].wait_for_output('publishing trials')
        procs['peer'].wait_for_output('READY')
        yield Graph(env, procs['peer'], list(procs.values()))
    finally:
        for p in procs.values():
            p.stop()
        cli(env, 'daemon', 'stop')
        lease.release()


def repeated(env: dict[str, str], *args: str, times: int = REPEATS) -> list[str]:
    """What ``autopilot ARGS`` printed, ``times`` times, AT_ONCE calls at a time; every call must exit 0."""
    outputs: list[str] = []
    while len(outputs) < times:
        outputs += [ok(r) for r in cli_many(env, *[args] * min(AT_ONCE, times - len(outputs)))]
    return outputs


# ------------------------------------------------------------------------------------------ graph answers

def graph_answers_are_right(graph: Graph, times: int) -> None:
    # The first call starts the daemon, which answers once it has listened for one announcement period
    # and its view has stopped changing.
    assert ok(cli(graph.env, 'node', 'list')) == NODE_LIST
    assert ok(cli(graph.env, 'daemon', 'status')) == 'The daemon is running\n'
    for args, truth in ((('node', 'list'), NODE_LIST), (('topic', 'info', '/rig_1/trials'), TOPIC_INFO),
                        (('node', 'info', '/rig_1/listener_2'), LISTENER_INFO),
                        (('param', 'list', '/rig_1/demo_talker'), TALKER_PARAMS)):
        answers = repeated(graph.env, *args, times=times)
        wrong = [a for a in answers if a != truth]
        assert not wrong, f'{args}: {len(wrong)} of {times} wrong, e.g.\n{wrong[0]}'


def test_graph_answers_are_right_every_time(graph: Graph) -> None:
    graph_answers_are_right(graph, REPEATS)


@pytest.mark.soak
def test_soak_graph_answers_are_right_every_time(graph: Graph) -> None:
    graph_answers_are_right(graph, SOAK_REPEATS)


def test_without_daemon_counts_are_right_too(graph: Graph) -> None:
    answers = cli_many(graph.env, *[('topic', 'info', '/rig_1/trials', '--no-daemon')] * 3,
                       ('node', 'list', '--no-daemon'))
    assert [ok(a) for a in answers] == [TOPIC_INFO] * 3 + [NODE_LIST]


# ------------------------------------------------------------------------------------------ the other verbs

def test_find_and_service_info(graph: Graph) -> None:
    topics, count, services, service_info, missing = cli_many(
        graph.env, ('topic', 'find', 'autopilot_msgs/msg/TrialData'),
        ('topic', 'find', 'autopilot_msgs/msg/TrialAck', '-c'),
        ('service', 'find', 'std_srvs/srv/Trigger'), ('service', 'info', '/rig_1/set_flag'),
        ('service', 'info', '/rig_1/nothing', '--spin-time', '1'))
    assert ok(topics) == '/rig_1/trials\n'
    assert ok(count) == '1\n'
    assert ok(services) == '/rig_1/summary\n'
    assert ok(service_info) == 'Type: std_srvs/srv/SetBool\nClients count: 0\nServices count: 1\n'
    assert missing.returncode == 1 and missing.stderr == "Unknown service '/rig_1/nothing'\n"


def test_topic_bw_and_delay(graph: Graph) -> None:
    bw, delay = cli_many(graph.env, ('topic', 'bw', '/rig_1/stamped', '--duration', '3.5'),
                         ('topic', 'delay', '/rig_1/stamped', '--duration', '3.5'))
    lines = ok(bw).splitlines()
    assert lines[0] == 'Subscribed to [/rig_1/stamped]'
    assert any(line.endswith('B/s from ' + line.split(' from ')[-1]) for line in lines[1:])
    assert any(line.startswith('\tMessage size mean: ') for line in lines)
    text = ok(delay)
    assert 'average delay: ' in text and '\tmin: ' in text and ' window: ' in text


def test_topic_delay_needs_a_header(graph: Graph) -> None:
    result = cli(graph.env, 'topic', 'delay', '/parameter_events', '--duration', '1')
    assert result.returncode == 1 and 'has no header' in result.stderr


def test_service_echo_shows_requests_and_responses(graph: Graph, tmp_path: Path) -> None:
    log = tmp_path / 'echo.log'
    echo = Proc([*AUTOPILOT, 'service', 'echo', '/rig_1/set_flag', '--timeout', '30'], graph.env, log)
    try:
        # Call until the echo, subscribed once it discovered the event publisher, printed one call's events.
        for _ in range(10):
            ok(cli(graph.env, 'service', 'call', '/rig_1/set_flag', 'std_srvs/srv/SetBool', 'data: true'))
            if 'event_type: RESPONSE_SENT' in echo.output():
                break
    finally:
        echo.stop()
    out = echo.output()
    assert 'event_type: REQUEST_RECEIVED' in out and 'event_type: RESPONSE_SENT' in out, out
    assert 'message: flag True' in out and '---' in out


def test_param_delete_and_load(graph: Graph, tmp_path: Path) -> None:
    node = '/rig_1/introspected_peer'
    ok(cli(graph.env, 'param', 'set', node, 'extra', '7'))
    deleted = cli(graph.env, 'param', 'delete', node, 'extra')
    assert ok(deleted) == 'Deleted parameter successfully\n'
    params = tmp_path / 'params.yaml'
    params.write_text(f'{node}:\n  ros__parameters:\n    level: 9\n    extra: hello\n/**:\n  ros__parameters:\n'
                      f'    shared: 1.5\n')
    # Independent calls at once: each discovers the graph anew.
    loaded, refused, missing = cli_many(graph.env, ('param', 'load', node, str(params)),
                                        ('param', 'delete', '/rig_1/demo_talker', 'seed'),
                                        ('param', 'load', node, str(tmp_path / 'nope.yaml')))
    assert sorted(ok(loaded).splitlines()) == ['Set parameter extra successful', 'Set parameter level successful',
                                               'Set parameter shared successful']
    assert ok(cli(graph.env, 'param', 'get', node, 'level')) == 'Integer value is: 9\n'
    # A refusal is printed on stderr with exit code 0, as ros2 does.
    assert refused.returncode == 0 and refused.stderr.startswith('Deleting parameter failed'), refused
    assert missing.returncode == 1 and 'cannot load parameter file' in missing.stderr


def test_cli_leaves_nothing_in_tmp(graph: Graph, tmp_path: Path) -> None:
    tmp = tmp_path / 'tmp'  # a temp dir of its own: /tmp is shared with whatever else runs
    tmp.mkdir()
    env = dict(graph.env, TMPDIR=str(tmp))
    ok(cli(env, 'node', 'list', '--no-daemon', '--spin-time', '1'))
    ok(cli(env, 'node', 'list'))
    assert list(tmp.iterdir()) == []


# ------------------------------------------------------------------------------------------ the daemon

def test_daemon_sees_a_new_node_at_once_and_stops(graph: Graph, tmp_path: Path) -> None:
    ok(cli(graph.env, 'daemon', 'start'))
    assert ok(cli(graph.env, 'daemon', 'start')) == 'The daemon is already running\n'
    late = Proc([sys.executable, str(NODES / 'demo_listener.py'), '--ros-args', '-r', '__ns:=/rig_1',
                 '-r', '__node:=listener_3'], graph.env, tmp_path / 'late.log')
    try:
        deadline_answers = []
        for _ in range(40):  # a new participant announces itself at once: the daemon hears it within ~1 s
            answer = ok(cli(graph.env, 'topic', 'info', '/rig_1/trials'))
            deadline_answers.append(answer)
            if 'Subscription count: 3' in answer:
                break
        assert deadline_answers[-1] == TOPIC_INFO.replace('count: 2', 'count: 3'), deadline_answers
    finally:
        late.stop()
    assert ok(cli(graph.env, 'daemon', 'stop')) == 'The daemon has been stopped\n'
    assert ok(cli(graph.env, 'daemon', 'status')) == 'The daemon is not running\n'
    assert ok(cli(graph.env, 'daemon', 'stop')) == 'The daemon is not running\n'


def test_daemon_answers_hostile_requests_with_an_error_and_goes_on(graph: Graph, monkeypatch) -> None:
    import json
    import socket

    from autopilot_cli import daemon

    for key in daemon.GRAPH_ENV:  # the daemon's address is a hash of the graph's environment
        if key in graph.env:
            monkeypatch.setenv(key, graph.env[key])
        else:
            monkeypatch.delenv(key, raising=False)
    ok(cli(graph.env, 'daemon', 'start'))

    def ask(data: bytes) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(daemon.address())
            try:
                sock.sendall(data)
            except OSError:  # it stopped reading at its bound and answered
                pass
            return json.loads(daemon.read_line(sock))

    huge = ask(b'{"method": "' + b'x' * 1_000_000 + b'"}\n')
    assert huge == {'error': f'request longer than {daemon.MAX_REQUEST_BYTES} bytes'}
    assert 'unknown request' in ask(b'{"method": "get_parameters", "args": []}\n')['error']
    assert 'error' in ask(b'{"method": "count_publishers", "args": [1e308, null]}\n')
    assert daemon.wait_warm()  # still serving (a daemon the test before stopped is new, maybe not warm yet)


def test_graph_shows_who_publishes_and_subscribes(graph: Graph) -> None:
    text, dot = cli_many(graph.env, ('graph',), ('graph', '--dot'))
    assert ('/rig_1/trials [autopilot_msgs/msg/TrialData]\n  publishers: /rig_1/demo_talker\n'
            '  subscribers: /rig_1/demo_listener /rig_1/listener_2\n') in ok(text)
    assert '/rosout' not in ok(text) and '_autopilot_daemon' not in ok(text)
    lines = ok(dot).splitlines()
    assert lines[0] == 'digraph ros_graph {' and lines[-1] == '}'
    assert '  "n:/rig_1/demo_talker" -> "t:/rig_1/trials";' in lines
    assert '  "t:/rig_1/trials" -> "n:/rig_1/listener_2";' in lines


def test_dot_quotes_names_and_labels_types() -> None:
    from autopilot_cli.dot import TopicEdges, to_dot

    dot = to_dot([TopicEdges('/a"b', ('pkg/msg/T',), ('/n',), ())])
    assert '"t:/a\\"b" [label="/a\\"b\\nT", shape=ellipse];' in dot  # a quote in a label is escaped too
    assert '"n:/n" -> "t:/a\\"b";' in dot


def test_daemon_is_warm_once_its_view_stops_changing() -> None:
    from autopilot_cli.daemon import MAX_WARMUP_S, STABLE_S, WARMUP_S, Warmth

    views = iter([0, 0, 1, 2, 2, 2, 2])  # what the graph looks like at each look: peers heard late
    warmth = Warmth(0.0, lambda: next(views))
    assert warmth.warm_in(1.0) == WARMUP_S - 1.0  # nothing changed yet: warm at the end of the warm-up
    assert not warmth.look(3.0)  # a peer heard at 3.0 s ...
    assert not warmth.look(3.4)  # ... and another at 3.4 s ...
    assert warmth.warm_in(3.5) == pytest.approx(3.4 + STABLE_S - 3.5)  # ... so the view waits for stragglers
    assert not warmth.look(3.4 + STABLE_S - 0.01)
    assert warmth.look(3.4 + STABLE_S)
    assert warmth.warm_in(100.0) == 0.0  # warm stays warm

    restless = Warmth(0.0, iter(range(1000)).__next__)  # a graph that never stops changing
    assert not restless.look(MAX_WARMUP_S - 0.1)
    assert restless.look(MAX_WARMUP_S)
