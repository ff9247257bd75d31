"""``autopilot action`` as real subprocesses against the installed demo session server (an action server).

One ``demo_session`` (action ``/rig1/run_session``, autopilot_msgs/action/RunSession, fast trials) serves the
module on a domain id leased for the module. It accepts one goal at a time, so goals are sent one after
another; graph queries, which mostly wait for discovery, run concurrently.
"""

from __future__ import annotations

import re
import signal
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import AUTOPILOT, DomainLease, Proc, child_env, cli, cli_many, error_line, ok

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / 'tests' / 'nodes' / 'demo_session.py'
ACTION = '/rig1/run_session'
TYPE = 'autopilot_msgs/action/RunSession'
LISTEN = '6'  # list verbs: one DDS announcement period (3 s) plus a margin for a loaded machine
GOAL_ID = re.compile(r'^Goal accepted with ID: [0-9a-f]{32}$')


@dataclass
class Server:
    env: dict[str, str]
    proc: Proc

    def cancelled_sessions(self) -> int:
        return self.proc.output().count(' (cancelled)')


@pytest.fixture(scope='module')
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    lease = DomainLease()
    env = child_env(lease.domain)
    log = tmp_path_factory.mktemp('cli_action') / 'demo_session.log'
    proc = Proc([sys.executable, str(SERVER), '--ros-args', '-r', '__ns:=/rig1', '-p', 'trial_interval_s:=0.05'], env, log)
    try:
        yield Server(env, proc)
    finally:
        proc.stop()
        cli(env, 'daemon', 'stop')  # the graph daemon the verbs started for this domain
        lease.release()


def blocks(out: str, title: str) -> list[dict]:
    """The YAML documents printed under ``title:`` (indented, up to the next blank line)."""
    found = []
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line == f'{title}:':
            body = []
            for text in lines[i + 1:]:
                if not text.strip():
                    break
                body.append(text)
            found.append(yaml.safe_load(textwrap.dedent('\n'.join(body))))
    return found


# ------------------------------------------------------------------------------------------ graph

def test_list_info_type(server: Server) -> None:
    plain, typed, count, info, info_typed, info_count, type_, unknown_info, unknown_type = cli_many(
        server.env, ('action', 'list', '--spin-time', LISTEN), ('action', 'list', '-t', '--spin-time', LISTEN),
        ('action', 'list', '-c', '--spin-time', LISTEN), ('action', 'info', ACTION),
        ('action', 'info', '-t', 'rig1/run_session'), ('action', 'info', '-c', ACTION), ('action', 'type', ACTION),
        ('action', 'info', '/rig1/nothing', '--spin-time', '1'), ('action', 'type', '/rig1/nothing', '--spin-time', '1'))
    assert ok(plain) == f'{ACTION}\n'
    assert ok(typed) == f'{ACTION} [{TYPE}]\n'
    assert ok(count) == '1\n'
    assert ok(info) == f'Action: {ACTION}\nAction clients: 0\nAction servers: 1\n    /rig1/demo_session\n'
    assert ok(info_typed) == (f'Action: {ACTION}\nAction clients: 0\nAction servers: 1\n'
                              f'    /rig1/demo_session [{TYPE}]\n')
    assert ok(info_count) == f'Action: {ACTION}\nAction clients: 0\nAction servers: 1\n'
    assert ok(type_) == f'{TYPE}\n'
    # ros2 reports an action nobody uses as 0 clients and 0 servers, and exits 0.
    assert ok(unknown_info) == 'Action: /rig1/nothing\nAction clients: 0\nAction servers: 0\n'
    assert error_line(unknown_type) == "Unknown action '/rig1/nothing' (not discovered within 1 s)"


# ------------------------------------------------------------------------------------------ goals

def test_send_goal_with_feedback(server: Server) -> None:
    out = ok(cli(server.env, 'action', 'send_goal', '-f', ACTION, TYPE, '{subject: m1, max_trials: 3}'))
    lines = out.splitlines()
    assert lines[:2] == ['Waiting for an action server to become available...', 'Sending goal:']
    assert lines[2] == '     subject: m1'  # ros2's prefix of the goal's first line
    goal = blocks(out, 'Sending goal')[0]
    assert goal == {'subject': 'm1', 'protocol': '', 'step': 0, 'task': '', 'parameters': [], 'max_trials': 3,
                    'max_duration_s': 0.0}
    accepted = [line for line in lines if line.startswith('Goal accepted')]
    assert len(accepted) == 1 and GOAL_ID.match(accepted[0]), out
    feedback = blocks(out, 'Feedback')
    assert [f['trial_count'] for f in feedback] == [1, 2, 3], out
    assert all(f['state'] == 'inter_trial_interval' and 0.0 <= f['fraction_correct'] <= 1.0 for f in feedback)
    result = blocks(out, 'Result')
    assert len(result) == 1 and result[0]['success'] is True and result[0]['n_trials'] == 3, out
    assert result[0]['message'].startswith('3 trials, ')
    assert lines[-1] == 'Goal finished with status: SUCCEEDED'
    # The order ros2 prints in: the goal, its acceptance, feedback, then the result.
    order = [lines.index('Sending goal:'), lines.index(accepted[0]), lines.index('Feedback:'), lines.index('Result:')]
    assert order == sorted(order)


def test_send_goal_from_stdin_without_feedback(server: Server) -> None:
    out = ok(cli(server.env, 'action', 'send_goal', ACTION, TYPE, '--stdin', stdin='subject: m2\nmax_trials: 2\n'))
    assert 'Feedback:' not in out
    assert blocks(out, 'Sending goal')[0]['subject'] == 'm2'
    assert blocks(out, 'Result')[0]['n_trials'] == 2
    assert out.endswith('\nGoal finished with status: SUCCEEDED\n')


def test_rejected_goal(server: Server) -> None:
    out = ok(cli(server.env, 'action', 'send_goal', ACTION, TYPE, '{subject: ""}'))  # ros2 exits 0 here too
    assert out.endswith('\nGoal was rejected.\n')
    assert 'Goal accepted' not in out and 'Result:' not in out
    server.proc.wait_for_output('rejecting session: goal.subject is empty')


@pytest.mark.parametrize('sig, code', [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_cancels_the_goal(server: Server, tmp_path: Path, sig: signal.Signals, code: int) -> None:
    before = server.cancelled_sessions()
    # No trial limit: the session runs until cancelled.
    proc = Proc([*AUTOPILOT, 'action', 'send_goal', '-f', ACTION, TYPE, '{subject: m3}'], server.env,
                tmp_path / 'send_goal.log')
    try:
        proc.wait_for_output('Feedback:')
        proc.signal(sig)
        assert proc.wait(timeout=20) == code, proc.output()
        out = proc.output()
    finally:
        proc.stop()
    assert 'Traceback' not in out, out
    lines = out.splitlines()
    assert lines[-2:] == ['Canceling goal...', 'Goal canceled.'], out
    assert 'Result:' not in out
    # The server saw the cancel: the demo server ends a cancelled session early and says so.
    deadline = time.monotonic() + 10
    while server.cancelled_sessions() == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.cancelled_sessions() == before + 1, server.proc.output()


# ------------------------------------------------------------------------------------------ no server

def test_no_server_waits_then_times_out(server: Server) -> None:
    result = cli(server.env, 'action', 'send_goal', '/rig1/nothing', TYPE, '{subject: m1}', '--timeout', '6')
    line = error_line(result)
    assert line.startswith("autopilot: error: action '/rig1/nothing' not available within 6 s: no server for it "
                           'was discovered; actions with a server: '), line
    lines = result.stdout.splitlines()
    assert lines[0] == 'Waiting for an action server to become available...'
    # ros2 waits silently; this says every 5 s what it waits for.
    assert re.match(rf"Still waiting for a server of action '/rig1/nothing' \({TYPE}\) after \d+ s on "
                    rf"ROS_DOMAIN_ID={server.env['ROS_DOMAIN_ID']}; actions with a server: ", lines[1]), lines
    assert 'Sending goal:' not in result.stdout


def test_ctrl_c_while_waiting_for_a_server_exits_quietly(server: Server, tmp_path: Path) -> None:
    proc = Proc([*AUTOPILOT, 'action', 'send_goal', '/rig1/nothing', TYPE, '{subject: m1}'], server.env,
                tmp_path / 'wait.log')
    try:
        proc.wait_for_output('Waiting for an action server')
        proc.signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 130
        out = proc.output()
    finally:
        proc.stop()
    assert out == 'Waiting for an action server to become available...\n'


# ------------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize('args, expected', [
    ((TYPE.replace('RunSession', 'RunSesion'), '{}'),
     f"unknown action type '{TYPE.replace('RunSession', 'RunSesion')}': package 'autopilot_msgs' has "
     'action/RunSession'),
    (('nav2_msgs/action/NavigateToPose', '{}'),
     'nav2_msgs is not installed: pip install ros-jazzy-nav2-msgs (wheels) or apt install ros-jazzy-nav2-msgs'),
    (('std_srvs/srv/SetBool', '{}'), "'std_srvs/srv/SetBool' is a srv type"),
    ((TYPE, '{subject: [m1'), 'malformed YAML in the goal values: '),
    ((TYPE, 'subject: m1\nmax_trials: [3'), '(line 2, column '),
    ((TYPE, '{subjekt: m1}'), "field 'subjekt': autopilot_msgs/action/RunSession_Goal has no field 'subjekt'; "
                              'valid fields: subject, '),
    ((TYPE, '{subject: m1, max_trials: -3}'), "field 'max_trials': -3 is out of range for uint32"),
    ((TYPE, '{subject: 5}'), "field 'subject': expected string, got int 5"),
    ((TYPE, '[m1]'), 'the goal values must be a YAML mapping'),
])
def test_bad_input_is_one_clear_line(args: tuple[str, ...], expected: str) -> None:
    # Checked before any discovery: these fail at once, with no server around.
    result = cli(None, 'action', 'send_goal', ACTION, *args, timeout=30)
    assert expected in error_line(result)
    assert result.stdout == ''


def test_bad_action_name() -> None:
    assert "invalid action name '/bad name'" in error_line(cli(None, 'action', 'send_goal', '/bad name', TYPE,
                                                                 '{subject: m1}'))
