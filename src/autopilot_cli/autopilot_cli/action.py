"""``autopilot action``: list, info, type and send_goal, with ``ros2 action``'s syntax and output (pip path).

Pilots take sessions through the action ``/<pilot>/session``, so ``autopilot action send_goal`` is how a session
is started by hand. As in ros2, Ctrl-C during ``send_goal`` cancels the goal before the command exits.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from action_msgs.msg import GoalStatus
from rclpy.action import ActionClient
from rclpy.action.client import ClientGoalHandle
from rclpy.executors import Executor
from rclpy.node import Node
from rclpy.task import Future

from autopilot_cli.base import CommandError, CommandExtension
from autopilot_cli.graph import (
    DEFAULT_SPIN_TIME,
    Graph,
    GraphVerb,
    action_clients_by_node,
    action_names_and_types,
    action_servers_by_node,
    cli_executor,
    cli_node,
    expand_name,
    graph_node,
    join_name,
    listing,
    positive_float,
    remote_nodes,
    settle_time,
    settled,
    uses_daemon,
    wait_until,
)
from autopilot_core import executors
from autopilot_runtime_py.messages import get_action, message_from_dict, message_to_yaml, parse_yaml_mapping, type_name

Endpoints = list[tuple[str, tuple[str, ...]]]

#: How often send_goal repeats that it is still waiting for a server (ros2 says it once and waits silently).
WAIT_NOTE_PERIOD_S = 5.0
#: Longest wait, after Ctrl-C, for the answers needed to cancel the goal (a second Ctrl-C cuts it short).
CANCEL_WAIT_S = 5.0

_STATUS_NAMES = {
    GoalStatus.STATUS_ACCEPTED: 'ACCEPTED', GoalStatus.STATUS_EXECUTING: 'EXECUTING',
    GoalStatus.STATUS_CANCELING: 'CANCELING', GoalStatus.STATUS_SUCCEEDED: 'SUCCEEDED',
    GoalStatus.STATUS_CANCELED: 'CANCELED', GoalStatus.STATUS_ABORTED: 'ABORTED',
}
_TERMINAL = (GoalStatus.STATUS_SUCCEEDED, GoalStatus.STATUS_CANCELED, GoalStatus.STATUS_ABORTED)


def _out(text: str = '', end: str = '\n') -> None:
    # flush: send_goal's output is read live (feedback of a long session) through pipes
    print(text, end=end, flush=True)


def _block(title: str, yaml_text: str, prefix: str) -> str:
    """``title`` and YAML as ros2 prints them: its first line starts with ``prefix``, then a blank line.

    ros2 indents only the first line of the YAML; here every line is, so the block stays valid YAML.
    """
    return f'{title}:\n' + textwrap.indent(yaml_text, prefix, lambda _line: True)


def _action_names_and_types(node: Graph) -> Endpoints:
    return sorted((name, tuple(types)) for name, types in action_names_and_types(node))


def _action_types(node: Graph, action: str) -> list[str]:
    return next((list(t) for n, t in _action_names_and_types(node) if n == action), [])


def _endpoints_by_node(node: Graph, action: str) -> tuple[Endpoints, Endpoints]:
    """(clients, servers) of ``action``: full node name and the types it uses, sorted; this CLI node left out."""
    clients: Endpoints = []
    servers: Endpoints = []
    for name, namespace in remote_nodes(node):
        try:
            client_actions = action_clients_by_node(node, name, namespace)
            server_actions = action_servers_by_node(node, name, namespace)
        except Exception:  # noqa: BLE001 - the node left the graph between the two queries
            continue
        full = join_name(namespace, name)
        clients += [(full, tuple(t)) for n, t in client_actions if n == action]
        servers += [(full, tuple(t)) for n, t in server_actions if n == action]
    return sorted(clients), sorted(servers)


class ListVerb(GraphVerb):
    """Output a list of action names."""

    lists = True
    daemon_ok = True

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('-t', '--show-types', action='store_true', help='Additionally show the action type')
        parser.add_argument('-c', '--count-actions', action='store_true',
                            help='Only display the number of actions discovered')

    def run(self, args: argparse.Namespace) -> int:
        with graph_node('action', args) as node:
            actions = listing(node, lambda: _action_names_and_types(node), args)
        if args.count_actions:
            _out(str(len(actions)))
        else:
            for name, types in actions:
                _out(f'{name} [{", ".join(types)}]' if args.show_types else name)
        return 0


class InfoVerb(GraphVerb):
    """Print information about an action."""

    daemon_ok = True

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('action_name', help="Name of the ROS action to get info (e.g. '/fibonacci')")
        parser.add_argument('-t', '--show-types', action='store_true', help='Additionally show the action type')
        parser.add_argument('-c', '--count', action='store_true',
                            help='Only display the number of action clients and action servers')

    def run(self, args: argparse.Namespace) -> int:
        with graph_node('action', args) as node:
            start = time.monotonic()
            action = expand_name(node, args.action_name, 'action')
            # Wait for the action to appear, then for its endpoints to settle: an action is five topics and
            # services per node, discovered one by one. An action nobody uses gives 0 and 0, as in ros2.
            snapshot = lambda: _endpoints_by_node(node, action)  # noqa: E731
            if wait_until(lambda: any(snapshot()), args.spin_time):
                # A node of this command hears of clients and servers in other processes up to one
                # announcement period apart; the daemon has heard of them all.
                listen = 0.0 if uses_daemon(node) else min(args.spin_time, DEFAULT_SPIN_TIME)
                clients, servers = settled(node, snapshot, settle=settle_time(node, args),
                                           min_time=max(0.0, start + listen - time.monotonic()))
            else:
                clients, servers = [], []
        _out(f'Action: {action}')
        for title, entries in (('Action clients', clients), ('Action servers', servers)):
            _out(f'{title}: {len(entries)}')
            if not args.count:
                for name, types in entries:
                    _out(f'    {name} [{", ".join(types)}]' if args.show_types else f'    {name}')
        return 0


class TypeVerb(GraphVerb):
    """Print an action's type."""

    daemon_ok = True

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('action_name', help="Name of the ROS action (e.g. '/fibonacci')")

    def run(self, args: argparse.Namespace) -> int | str:
        with graph_node('action', args) as node:
            action = expand_name(node, args.action_name, 'action')
            types = wait_until(lambda: _action_types(node, action), args.spin_time)
        if not types:
            return f"Unknown action '{action}' (not discovered within {args.spin_time:g} s)"
        for t in types:
            _out(t)
        return 0


class SendGoalVerb(GraphVerb):
    """Send an action goal."""

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('action_name', help="Name of the ROS action (e.g. '/fibonacci')")
        parser.add_argument('action_type', help="Type of the ROS action (e.g. 'example_interfaces/action/Fibonacci')")
        group = parser.add_mutually_exclusive_group()
        group.add_argument('goal', nargs='?', default='{}',
                           help="Goal request values in YAML format (e.g. '{order: 10}')")
        group.add_argument('--stdin', action='store_true', help='Read goal from standard input')
        parser.add_argument('-f', '--feedback', action='store_true', help='Echo feedback messages for the goal')
        parser.add_argument('--timeout', metavar='SECONDS', type=positive_float, default=None,
                            help='Give up when no action server is available, or it has not accepted or rejected '
                                 'the goal, within this many seconds; the goal itself may run for as long as it '
                                 'takes (autopilot addition; default: wait like ros2, until Ctrl-C)')

    def run(self, args: argparse.Namespace) -> int:
        # Type and values first: a typo fails at once, before any discovery.
        action_cls = get_action(args.action_type)
        text = sys.stdin.read() if args.stdin else args.goal
        goal = message_from_dict(action_cls.Goal, parse_yaml_mapping(text, 'the goal values'))
        try:
            with _sigterm_interrupts(), cli_node('send_goal') as node:
                action = expand_name(node, args.action_name, 'action')
                client = ActionClient(node, action_cls, action)
                executor = cli_executor(node)
                try:
                    _out('Waiting for an action server to become available...')
                    _wait_for_server(node, client, action, type_name(action_cls), args.timeout)
                    _out(_block('Sending goal', message_to_yaml(goal), '     '))
                    _Goal(node, client, executor, args.timeout).run(goal, args.feedback)
                finally:
                    client.destroy()
                    executor.shutdown(timeout_sec=1.0)
        except _Terminated:
            return 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM
        return 0


class _Terminated(KeyboardInterrupt):
    """SIGTERM during send_goal: handled as Ctrl-C (the goal is cancelled), then exit 143."""


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Make SIGTERM (``timeout``, ``kill``, a supervisor stopping the shell) cancel the goal as Ctrl-C does,
    so no session is left running on a pilot after the command that started it was stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(_signum: int, _frame: object) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _server_types(node: Node, action: str) -> set[str]:
    return {t for _, types in _endpoints_by_node(node, action)[1] for t in types}


def _wait_for_server(node: Node, client: ActionClient, action: str, wanted: str, timeout: float | None) -> None:
    """Wait until ``client`` matches a server; fail at once when the servers found have another type (DDS
    matches by type, so they never would), else after ``timeout``; say every few seconds that it still waits."""
    started = time.monotonic()
    next_note = started + WAIT_NOTE_PERIOD_S
    while not client.server_is_ready():
        now = time.monotonic()
        others = _server_types(node, action) - {wanted}
        if others and wanted not in _server_types(node, action):
            raise CommandError(f"action '{action}' has type {', '.join(sorted(others))}, not {wanted}")
        if timeout is not None and now - started >= timeout:
            raise CommandError(f"action '{action}' not available within {timeout:g} s: no server for it was "
                               f'discovered; {_served_actions(node)}')
        if now >= next_note:
            _out(f"Still waiting for a server of action '{action}' ({wanted}) after {now - started:.0f} s on "
                 f"ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID', '0')}; {_served_actions(node)}")
            next_note = now + WAIT_NOTE_PERIOD_S
        time.sleep(0.05)


def _served_actions(node: Node) -> str:
    served = [name for name, _ in _action_names_and_types(node) if _endpoints_by_node(node, name)[1]]
    return f"actions with a server: {', '.join(served) or 'none'}"


class _Goal:
    """One goal of send_goal: sent, followed to its result, and cancelled if the user presses Ctrl-C first."""

    def __init__(self, node: Node, client: ActionClient, executor: Executor, timeout: float | None) -> None:
        self.node, self.client, self.executor, self.timeout = node, client, executor, timeout
        self.goal_future: Future | None = None
        self.result_future: Future | None = None
        self.canceling = False

    def run(self, goal: Any, feedback: bool) -> None:
        try:
            self._follow(goal, feedback)
        except KeyboardInterrupt:
            self._cancel()
            raise

    def _follow(self, goal: Any, feedback: bool) -> None:
        self.goal_future = self.client.send_goal_async(goal, feedback_callback=self._feedback if feedback else None)
        if not self._spin(self.goal_future, self.timeout):
            raise CommandError(f'the action server did not accept or reject the goal within {self.timeout:g} s')
        handle: ClientGoalHandle = self._result_of(self.goal_future, 'sending goal')
        if not handle.accepted:
            _out('Goal was rejected.')
            return
        _out(f'Goal accepted with ID: {bytes(handle.goal_id.uuid).hex()}\n')
        self.result_future = handle.get_result_async()
        self._spin(self.result_future, None)
        response = self._result_of(self.result_future, 'getting result')
        _out(_block('Result', message_to_yaml(response.result), '    '))
        _out(f'Goal finished with status: {_STATUS_NAMES.get(response.status, "UNKNOWN")}')

    def _feedback(self, message: Any) -> None:
        if self.canceling:  # the user asked to stop: only the outcome of the cancel is of interest now
            return
        _out(_block('Feedback', message_to_yaml(message.feedback), '    '))

    def _spin(self, future: Future, timeout: float | None) -> bool:
        return executors.spin(self.node, self.executor, until=future, timeout_sec=timeout)

    @staticmethod
    def _result_of(future: Future, what: str) -> Any:
        if future.exception() is not None:
            raise CommandError(f'exception while {what}: {future.exception()!r}')
        return future.result()

    def _cancel(self) -> None:
        """Cancel the goal if the server took it and it has not ended (Ctrl-C while sending it or waiting)."""
        if self.goal_future is None:
            return
        if not self.goal_future.done():
            # The server may be accepting it right now: wait briefly for its answer so no goal is left running.
            self._spin(self.goal_future, CANCEL_WAIT_S)
        if not self.goal_future.done() or self.goal_future.exception() is not None:
            return
        handle: ClientGoalHandle | None = self.goal_future.result()
        if handle is None or not handle.accepted or handle.status in _TERMINAL:
            return
        if self.result_future is not None and self.result_future.done():
            return
        self.canceling = True
        _out('Canceling goal...')
        cancel_future = handle.cancel_goal_async()
        if not self._spin(cancel_future, CANCEL_WAIT_S) or cancel_future.exception() is not None:
            print(f'Failed to cancel goal: no answer from the action server within {CANCEL_WAIT_S:g} s',
                  file=sys.stderr, flush=True)
            return
        response = cancel_future.result()
        if not any(g.goal_id == handle.goal_id for g in response.goals_canceling):
            print(f'Failed to cancel goal (return code {response.return_code})', file=sys.stderr, flush=True)
            return
        _out('Goal canceled.')


class ActionCommand(CommandExtension):
    """Various action related sub-commands (as `ros2 action`, for the pip path without ros2cli)."""

    verbs = {'list': ListVerb, 'info': InfoVerb, 'type': TypeVerb, 'send_goal': SendGoalVerb}

