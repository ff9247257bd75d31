"""Graph plumbing shared by the CLI verbs: the graph daemon or a hidden rclpy node per command, names, QoS.

Graph verbs ask the graph daemon (autopilot_cli.daemon) by default, as ros2 does: a command with its own DDS
participant must wait for discovery. Measured here (Fast DDS 2.14 from the wheels, LOCALHOST or SUBNET):
the peers do not answer a new participant's initial announcements; each is discovered at its own next
periodic announcement (every 3 s), i.e. at a random time 0-3 s after start, then its whole graph arrives
within ~0.1 s. The daemon, up for longer than that, has the whole graph; a command answers from it at once,
after a short settle for endpoints still arriving. With ``--no-daemon`` (or when no daemon can be had):

* verbs about one thing (``node info X``, ``param get X``, ``topic echo X``) poll until X appears (bounded by
  ``--spin-time``, default 10 s: under load discovery was seen to take more than 3.5 s), then wait until its
  endpoints have not changed for ``--settle``; counts over several nodes (``topic info``) listen for one
  announcement period first;
* list verbs listen for ``--spin-time`` (default 3.5 s: one announcement period plus a margin) and answer once
  the listing has not changed for ``--settle`` (0.5 s). Returning at the first 0.5 s of quiet instead is fast
  but was seen to list one peer of two: peers announce in different phases.

Graph queries read rmw's graph cache, which DDS threads fill, so they need no spinning; only subscriptions
and clients are spun (with autopilot_core.executors, always with timeouts).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import rclpy
from rclpy.action import graph as action_graph
from rclpy.context import Context
from rclpy.exceptions import NameValidationException
from rclpy.executors import Executor
from rclpy.expand_topic_name import expand_topic_name
from rclpy.node import HIDDEN_NODE_PREFIX, Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    QoSDurabilityPolicy,
    QoSHistoryPolicy,
    QoSPresetProfiles,
    QoSProfile,
    QoSReliabilityPolicy,
)
from rclpy.signals import SignalHandlerOptions
from rclpy.validate_full_topic_name import validate_full_topic_name
from rclpy.validate_namespace import validate_namespace
from rclpy.validate_node_name import validate_node_name

from autopilot_cli import daemon
from autopilot_cli.base import CommandError, VerbExtension
from autopilot_core import executors
from autopilot_core import qos as named_qos
from autopilot_runtime_py.messages import InterfaceNotFoundError, MessageTypeError, MessageValueError

T = TypeVar('T')

DEFAULT_SPIN_TIME = 3.5  # > Fast DDS's 3 s announcement period: every peer that exists announces itself
DEFAULT_WAIT_TIME = 10.0  # for one named thing: returned from as soon as it appears, so generous
SETTLE_S = 0.5
DAEMON_SETTLE_S = 0.2  # the daemon's view is complete; only endpoints of a node being born still arrive
# What the daemon has not seen is not there, but a node started a moment ago may be: its first announcements can
# be lost on a loaded machine (seen in CI: a node up for 1.8 s unknown to the daemon), the periodic one is not.
DAEMON_WAIT_S = DEFAULT_SPIN_TIME
POLL_S = 0.05
TEARDOWN_S = 5.0  # a command's node and context take ~10 ms to tear down; see _tear_down

#: What a graph verb reads the graph from: its own node, or the daemon's view (the same query methods).
Graph = Node | daemon.DaemonGraph


class GraphVerb(VerbExtension):
    """A verb that talks to the graph: adds ``--spin-time``/``--settle`` and turns expected errors into one line.

    ``lists`` verbs listen for ``--spin-time`` (default 3.5 s); the others wait up to ``--spin-time`` (default
    10 s, returned from as soon as the thing named appears) before saying it is not there. Verbs that only
    read the graph (``daemon_ok``) ask the graph daemon instead unless ``--no-daemon``.
    """

    lists = False
    #: Reads only the graph: may answer from the daemon (``--no-daemon`` to not).
    daemon_ok = False

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        add_graph_arguments(parser, DEFAULT_SPIN_TIME if self.lists else DEFAULT_WAIT_TIME, self.lists)
        if self.daemon_ok:
            parser.add_argument('--no-daemon', action='store_true',
                                help='Do not spawn nor use an already running daemon')
        self.add_verb_arguments(parser, cli_name)

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        pass

    def main(self, *, args: argparse.Namespace) -> int | str | None:
        try:
            return self.run(args)
        except (InterfaceNotFoundError, MessageValueError, MessageTypeError) as exc:
            raise CommandError(str(exc)) from None
        except BrokenPipeError:  # `autopilot topic echo x | head`: the reader left, not an error
            # Point stdout at /dev/null so the flush at exit does not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0

    def run(self, args: argparse.Namespace) -> int | str | None:
        raise NotImplementedError


def add_graph_arguments(parser: argparse.ArgumentParser, default: float, lists: bool) -> None:
    what = ('how long to listen for the graph before answering' if lists else
            'longest wait for the node/topic/service named to be discovered')
    parser.add_argument('--spin-time', type=positive_float, default=default, metavar='SECONDS',
                        help=f'{what} (default: %(default)s): a node of this command discovers the graph anew, '
                             f'and DDS peers announce themselves every 3 s; answers from the graph daemon, whose '
                             f'view is complete, wait {DAEMON_WAIT_S:g} s at most')
    parser.add_argument('--settle', type=positive_float, default=SETTLE_S, metavar='SECONDS',
                        help='the graph is taken as complete once it has not changed for this long '
                             '(default: %(default)s)')


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a number, got {text!r}') from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f'expected a number > 0, got {text!r}')
    return value


def nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a number, got {text!r}') from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f'expected a finite number >= 0, got {text!r}')
    return value


def nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected an integer, got {text!r}') from None
    if value < 0:
        raise argparse.ArgumentTypeError(f'expected an integer >= 0, got {text!r}')
    return value


def positive_int(text: str) -> int:
    value = nonnegative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f'expected an integer > 0, got {text!r}')
    return value


# ------------------------------------------------------------------------------------------ the node

@contextmanager
def cli_node(purpose: str, node_name: str | None = None) -> Iterator[Node]:
    """A hidden node (``_autopilot_<purpose>_<pid>``) in its own context, shut down on exit.

    Hidden (leading ``_``) so it does not show in other tools' node lists; no parameter services, rosout or
    type-description service, so it adds nothing to the graph it inspects but its own endpoints.
    Ctrl-C raises KeyboardInterrupt (rclpy's own signal handler is off), which main() turns into exit 130.
    """
    context = Context()
    try:
        # args=[]: rclpy would read sys.argv, where rcl takes any `a:=b` argument of a command for a global remap.
        rclpy.init(args=[], context=context, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as exc:  # noqa: BLE001 - e.g. an invalid ROS_DOMAIN_ID: one line, not a traceback
        raise CommandError(f'cannot initialise ROS: {str(exc).splitlines()[0]}') from None
    try:
        try:
            node = Node(node_name or f'{HIDDEN_NODE_PREFIX}autopilot_{purpose}_{os.getpid()}', context=context,
                        start_parameter_services=False, enable_rosout=False,
                        parameter_overrides=[Parameter('start_type_description_service', value=False)])
        except NameValidationException as exc:
            raise CommandError(_one_line(exc, 'node', node_name or '')) from None
    except BaseException:
        rclpy.try_shutdown(context=context)
        raise
    try:
        yield node
    finally:
        _tear_down(node, context)


def _tear_down(node: Node, context: Context) -> None:
    """Destroy ``node`` and shut ``context`` down, waiting :data:`TEARDOWN_S` at most.

    The command's answer is complete by now. Once in many hundred calls on a loaded machine, this teardown
    (rcl/Fast DDS entity deletion) did not return (a `param list` that had printed its whole answer was killed
    after 60 s); so it runs on a thread of its own, and a command whose teardown hangs says so in one line
    and exits anyway (``run`` ends the process without joining threads; peers forget its participant when
    its lease runs out).
    """
    def work() -> None:
        try:
            executors.destroy_node(node)  # its action clients too
        finally:
            rclpy.try_shutdown(context=context)

    thread = threading.Thread(target=work, name='autopilot-teardown', daemon=True)
    thread.start()
    thread.join(TEARDOWN_S)
    if thread.is_alive():
        print(f'autopilot: warning: ROS teardown did not finish within {TEARDOWN_S:g} s; exiting without it',
              file=sys.stderr)


@contextmanager
def graph_node(purpose: str, args: argparse.Namespace) -> Iterator[Graph]:
    """The warm graph daemon (started if none runs), or with ``--no-daemon`` or no daemon to be had, a
    :func:`cli_node` of this command."""
    graph = None if getattr(args, 'no_daemon', True) else daemon.connect()
    if graph is not None:
        # The verb's waits for the thing named (bounded by --spin-time) need not be long: as ros2 with its
        # daemon, a name the graph does not have is reported within one announcement period.
        args.spin_time = min(args.spin_time, DAEMON_WAIT_S)
        yield graph
        return
    with cli_node(purpose) as node:
        yield node


def uses_daemon(node: Graph) -> bool:
    return isinstance(node, daemon.DaemonGraph)


def settle_time(node: Graph, args: argparse.Namespace) -> float:
    """``--settle``, shorter from the daemon unless given: its view of the graph is already complete."""
    return DAEMON_SETTLE_S if uses_daemon(node) and args.settle == SETTLE_S else args.settle


def cli_executor(node: Node) -> Executor:
    """The executor the CLI spins its node with: the SingleThreadedExecutor unless $AUTOPILOT_CLI_EXECUTOR says.

    A CLI needs no throughput, and once in ~100 runs a `topic echo --once` under the EventsExecutor
    (rclpy 7.1.6) spun at 100 % CPU for minutes without running the subscription callback, although every
    spin_once had a timeout; the SingleThreadedExecutor has not shown that.
    """
    return executors.make_executor(os.environ.get('AUTOPILOT_CLI_EXECUTOR') or 'single', context=node.context)


def call_service(node: Node, executor: Executor, srv_type: Any, name: str, request: Any, timeout_s: float, *,
                 server: str = 'its node') -> Any:
    """The response of service ``name``, spun on ``executor``; CommandError when it is not available within
    ``timeout_s`` (naming ``server``, what should be running) or does not answer within ``timeout_s`` more."""
    client = node.create_client(srv_type, name)
    if not client.wait_for_service(timeout_sec=timeout_s):
        raise CommandError(f'service {name} not available: is {server} running in this namespace (-n) and '
                           f'ROS_DOMAIN_ID?')
    future = client.call_async(request)
    if not executors.spin_until_future(node, future, timeout_s, executor):
        raise CommandError(f'no answer from {name} within {timeout_s:g} s')
    return future.result()


def remote_nodes(node: Graph) -> list[tuple[str, str]]:
    own = (node.get_name(), node.get_namespace())
    return [n for n in node.get_node_names_and_namespaces() if n != own]


def wait_until(predicate: Callable[[], Any], timeout: float) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` passes (its last value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(POLL_S)


def settled(node: Graph, snapshot: Callable[[], T], *, settle: float = SETTLE_S, min_time: float = 0.0,
            max_time: float | None = None) -> T:
    """Poll ``snapshot()`` until at least ``min_time`` has passed and it has not changed for ``settle`` seconds,
    or ``max_time`` (default: ``min_time`` + 4 x ``settle``) passed; return the last snapshot."""
    start = time.monotonic()
    deadline = start + (max_time if max_time is not None else min_time + 4 * settle)
    last = snapshot()
    changed = start
    while True:
        now = time.monotonic()
        if now >= deadline or (now - start >= min_time and now - changed >= settle):
            return last
        time.sleep(POLL_S)
        current = snapshot()
        if current != last:
            last, changed = current, time.monotonic()


def listing(node: Graph, snapshot: Callable[[], T], args: argparse.Namespace) -> T:
    """A list verb's snapshot of the graph: listen ``--spin-time``, then until quiet for ``--settle``; from the
    daemon, only until quiet."""
    if uses_daemon(node):
        return settled(node, snapshot, settle=settle_time(node, args), max_time=2.0)
    return settled(node, snapshot, settle=args.settle, min_time=args.spin_time,
                   max_time=args.spin_time + max(2.0, 4 * args.settle))


def node_names(node: Graph, include_hidden: bool = False) -> list[str]:
    """Full names (``/ns/name``) of the nodes in the graph, this CLI node excluded, hidden ones on request."""
    return [join_name(ns, name) for name, ns in remote_nodes(node)
            if include_hidden or not name.startswith(HIDDEN_NODE_PREFIX)]


def is_hidden_name(name: str) -> bool:
    return any(part.startswith(HIDDEN_NODE_PREFIX) for part in name.split('/'))


def join_name(namespace: str, name: str) -> str:
    return namespace + ('' if namespace.endswith('/') else '/') + name


# ------------------------------------------------------------------------------------------ names

def _one_line(exc: Exception, kind: str, name: str) -> str:
    """rclpy's name errors are three lines (reason, quoted name, caret): one line, the position in ``name``."""
    lines = str(exc).splitlines()
    reason = lines[0].split(': ', 1)[-1].rstrip(':') if lines else str(exc)
    where = ''
    if len(lines) >= 3 and '^' in lines[2]:
        checked = lines[1].strip()[1:-1]  # the string rclpy validated: part of `name`, or it expanded
        index = lines[2].index('^') - 3
        offset = name.rfind(checked)
        if offset < 0 and checked.startswith('/'):
            offset = name.rfind(checked[1:]) - 1 if name.rfind(checked[1:]) >= 0 else -1
        if offset >= -1 and 0 <= offset + index < len(name):
            where = f' (at character {offset + index + 1}: {name[offset + index]!r})'
    return f"invalid {kind} name '{name}': {reason}{where}"


def expand_name(node: Graph, name: str, kind: str = 'topic') -> str:
    """``name`` expanded against the CLI node (relative names resolve under ``/``) and validated."""
    if not name:
        raise CommandError(f'invalid {kind} name: it is empty')
    try:
        full = expand_topic_name(name, node.get_name(), node.get_namespace())
    except ValueError as exc:
        reason = str(exc).split(': ', 1)[-1].split(', at ')[0]
        raise CommandError(f"invalid {kind} name '{name}': {reason}") from None
    try:
        validate_full_topic_name(full, is_service=(kind == 'service'))
    except NameValidationException as exc:
        raise CommandError(_one_line(exc, kind, name)) from None
    return full


def full_node_name(name: str) -> tuple[str, str, str]:
    """(full name, namespace, base name) of a node name given with or without the leading ``/``; validated."""
    if not name:
        raise CommandError('invalid node name: it is empty')
    full = name if name.startswith('/') else '/' + name
    namespace, base = full.rsplit('/', 1)
    namespace = namespace or '/'
    try:
        validate_namespace(namespace)
        validate_node_name(base)
    except NameValidationException as exc:
        raise CommandError(_one_line(exc, 'node', name)) from None
    return full, namespace, base


def wait_for_node(node: Graph, name: str, spin_time: float, include_hidden: bool = True) -> str:
    """Wait until the node ``name`` is in the graph; its full name, or CommandError listing the nodes seen."""
    full, _, _ = full_node_name(name)
    if wait_until(lambda: full in node_names(node, include_hidden=True), spin_time):
        return full
    known = node_names(node, include_hidden=include_hidden)
    listing = f'nodes seen: {", ".join(sorted(known))}' if known else 'no other nodes were discovered'
    raise CommandError(f"node '{full}' not found within {spin_time:g} s on ROS_DOMAIN_ID="
                       f"{os.environ.get('ROS_DOMAIN_ID', '0')} ({listing})")


def topic_types(node: Graph, topic: str) -> list[str]:
    return next((types for name, types in node.get_topic_names_and_types() if name == topic), [])


def action_names_and_types(node: Graph) -> list[tuple[str, list[str]]]:
    if isinstance(node, daemon.DaemonGraph):
        return node.get_action_names_and_types()
    return action_graph.get_action_names_and_types(node)


def action_servers_by_node(node: Graph, name: str, namespace: str) -> list[tuple[str, list[str]]]:
    if isinstance(node, daemon.DaemonGraph):
        return node.get_action_server_names_and_types_by_node(name, namespace)
    return action_graph.get_action_server_names_and_types_by_node(node, name, namespace)


def action_clients_by_node(node: Graph, name: str, namespace: str) -> list[tuple[str, list[str]]]:
    if isinstance(node, daemon.DaemonGraph):
        return node.get_action_client_names_and_types_by_node(name, namespace)
    return action_graph.get_action_client_names_and_types_by_node(node, name, namespace)


# ------------------------------------------------------------------------------------------ QoS

def qos_profile_choices() -> list[str]:
    return [k for k in QoSPresetProfiles.short_keys() if k != 'unknown'] + list(named_qos.PROFILES)


def add_qos_arguments(parser: argparse.ArgumentParser, verb: str, default_profile: str) -> None:
    def keys(policy: Any) -> list[str]:
        return [k for k in policy.short_keys() if k != 'unknown']

    parser.add_argument('--qos-profile', choices=qos_profile_choices(), default=default_profile,
                        help=f'QoS preset profile to {verb} with (default: {default_profile}); besides the ROS '
                             f'presets, the suite\'s own: {", ".join(named_qos.PROFILES)}')
    parser.add_argument('--qos-depth', metavar='N', type=nonnegative_int,
                        help=f'queue size to {verb} with (overrides the profile\'s depth)')
    parser.add_argument('--qos-history', choices=keys(QoSHistoryPolicy),
                        help=f'history to {verb} with (overrides the profile\'s history)')
    parser.add_argument('--qos-reliability', choices=keys(QoSReliabilityPolicy),
                        help=f'reliability to {verb} with (overrides the profile; default: '
                             f'{"compatible with the publishers" if verb == "subscribe" else "the profile"})')
    parser.add_argument('--qos-durability', choices=keys(QoSDurabilityPolicy),
                        help=f'durability to {verb} with (overrides the profile; default: '
                             f'{"compatible with the publishers" if verb == "subscribe" else "the profile"})')


def qos_from_args(args: argparse.Namespace) -> QoSProfile:
    """The profile named by ``--qos-profile`` with the ``--qos-*`` overrides applied (a copy)."""
    name = args.qos_profile
    profile = copy.copy(named_qos.PROFILES[name] if name in named_qos.PROFILES
                        else QoSPresetProfiles.get_from_short_key(name))
    if args.qos_history:
        profile.history = QoSHistoryPolicy.get_from_short_key(args.qos_history)
    if args.qos_reliability:
        profile.reliability = QoSReliabilityPolicy.get_from_short_key(args.qos_reliability)
    if args.qos_durability:
        profile.durability = QoSDurabilityPolicy.get_from_short_key(args.qos_durability)
    if args.qos_depth:
        profile.depth = args.qos_depth
    elif profile.durability == QoSDurabilityPolicy.TRANSIENT_LOCAL and profile.depth == 0:
        profile.depth = 1
    return profile


def qos_overridden(args: argparse.Namespace) -> bool:
    return any(getattr(args, a) is not None for a in ('qos_depth', 'qos_history', 'qos_reliability',
                                                      'qos_durability'))


def compatible_qos(node: Node, topic: str, profile: QoSProfile) -> tuple[QoSProfile, list[str]]:
    """``profile`` with reliability and durability chosen to match every publisher of ``topic``, as ros2 echo
    does: reliable/transient-local only when all publishers offer it. Returns the profile and notes to print."""
    profile = copy.copy(profile)
    pubs = node.get_publishers_info_by_topic(topic)
    notes: list[str] = []
    if not pubs:
        return profile, notes
    reliable = sum(p.qos_profile.reliability == QoSReliabilityPolicy.RELIABLE for p in pubs)
    transient = sum(p.qos_profile.durability == QoSDurabilityPolicy.TRANSIENT_LOCAL for p in pubs)
    if reliable == len(pubs):
        profile.reliability = QoSReliabilityPolicy.RELIABLE
    else:
        if reliable:
            notes.append('Some, but not all, publishers are offering QoSReliabilityPolicy.RELIABLE. Falling back '
                         'to QoSReliabilityPolicy.BEST_EFFORT as it will connect to all publishers')
        profile.reliability = QoSReliabilityPolicy.BEST_EFFORT
    if transient == len(pubs):
        profile.durability = QoSDurabilityPolicy.TRANSIENT_LOCAL
        profile.depth = max(profile.depth, 1)
    else:
        if transient:
            notes.append('Some, but not all, publishers are offering QoSDurabilityPolicy.TRANSIENT_LOCAL. Falling '
                         'back to QoSDurabilityPolicy.VOLATILE as it will connect to all publishers')
        profile.durability = QoSDurabilityPolicy.VOLATILE
    return profile, notes
