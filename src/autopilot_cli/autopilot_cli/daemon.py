"""The graph daemon: one long-lived hidden node whose graph is already discovered, queried by CLI commands.

Why: a new DDS participant learns of each existing peer only at that peer's next periodic announcement
(Fast DDS: every 3 s, measured 0-2.8 s here), so a command with its own node must listen > 3 s before a
count or a listing is complete, and one that answers sooner is sometimes wrong. A participant that is
already up hears a new peer's first announcements at once. So, as ros2cli does, the first command spawns a
daemon per graph (domain id, discovery range, peers, rmw); it answers once it has listened for one
announcement period plus a margin and its view has then stopped changing, and every later command asks it and
answers in well under a second.

The daemon listens on a Linux abstract Unix socket (no file anywhere), speaks one JSON request and one JSON
answer per connection, answers only graph queries (it never spins: rmw's graph cache is filled by DDS
threads) and exits after ``--timeout`` seconds without a request, or on ``autopilot daemon stop``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from rclpy.qos import QoSProfile
from rclpy.topic_endpoint_info import TopicEndpointInfo, TopicEndpointTypeEnum

from autopilot_cli.base import CommandError, CommandExtension, VerbExtension

PROTOCOL = 1
#: Listening time before the daemon's view can be complete: one 3 s announcement period plus a margin ...
WARMUP_S = 3.5
#: ... after which it must also have been unchanged this long: on a loaded machine the last peers of a graph
#: were heard up to 3.0 s after a participant started (measured: 30 fresh participants among 4 peer nodes
#: while the CLI tests ran), and once, past a fixed 3.5 s, not yet at all. Peers that arrive late arrive
#: close together, so a view still changing at 3.5 s waits for the stragglers.
STABLE_S = 1.5
#: The longest warm-up, for a graph that never stops changing (nodes coming and going all the time).
MAX_WARMUP_S = 10.0
#: How often a daemon that is not yet warm looks at its graph.
WARM_POLL_S = 0.1
#: A daemon exits after this long without a request: ``autopilot daemon start``'s default (ros2's) ...
IDLE_TIMEOUT_S = 7200.0
#: ... and one a command started on its own, so that the daemons of short-lived graphs (tests) go too.
AUTO_IDLE_TIMEOUT_S = 900.0
NODE_NAME = '_autopilot_daemon'
#: Longest request line read: a graph query is a method name and a few names (an abstract socket has no file
#: permissions, so any local process can connect).
MAX_REQUEST_BYTES = 65536
GRAPH_ENV = ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_STATIC_PEERS', 'ROS_LOCALHOST_ONLY',
             'RMW_IMPLEMENTATION', 'ROS_DISCOVERY_SERVER', 'FASTRTPS_DEFAULT_PROFILES_FILE')

#: The graph queries the daemon answers: rclpy Node methods, all arguments and results JSON-able but the
#: endpoint infos, sent as dicts.
NODE_QUERIES = frozenset({
    'get_node_names_and_namespaces', 'get_topic_names_and_types', 'get_service_names_and_types',
    'get_publisher_names_and_types_by_node', 'get_subscriber_names_and_types_by_node',
    'get_service_names_and_types_by_node', 'get_client_names_and_types_by_node',
    'get_publishers_info_by_topic', 'get_subscriptions_info_by_topic',
    'count_publishers', 'count_subscribers', 'count_clients', 'count_services',
})
ACTION_QUERIES = frozenset({'get_action_names_and_types', 'get_action_server_names_and_types_by_node',
                            'get_action_client_names_and_types_by_node'})


class DaemonError(Exception):
    """The daemon could not be reached, or failed a query."""


def address() -> str:
    """The abstract socket name of this environment's graph: one daemon per user and graph."""
    key = json.dumps([PROTOCOL, os.getuid(), *(os.environ.get(k, '') for k in GRAPH_ENV)])
    return '\0autopilot-daemon-' + hashlib.sha1(key.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ wire format

def _endpoint_to_json(info: TopicEndpointInfo) -> dict[str, Any]:
    q = info.qos_profile
    return {
        'node_name': info.node_name, 'node_namespace': info.node_namespace, 'topic_type': info.topic_type,
        'endpoint_type': int(info.endpoint_type), 'endpoint_gid': list(info.endpoint_gid),
        'topic_type_hash': str(info.topic_type_hash),
        'qos': {'history': int(q.history), 'depth': q.depth, 'reliability': int(q.reliability),
                'durability': int(q.durability), 'liveliness': int(q.liveliness),
                'lifespan': q.lifespan.nanoseconds, 'deadline': q.deadline.nanoseconds,
                'liveliness_lease_duration': q.liveliness_lease_duration.nanoseconds},
    }


def _type_hash(text: str) -> Any:
    """A TypeHash from its printed form ``RIHS<version>_<hex>`` (what the daemon sends); the empty hash otherwise."""
    from rclpy.type_hash import TypeHash

    head, _, value = text.partition('_')
    try:
        return TypeHash(version=int(head.removeprefix('RIHS')), value=bytes.fromhex(value))
    except ValueError:
        return TypeHash()


def _endpoint_from_json(d: dict[str, Any]) -> TopicEndpointInfo:
    from rclpy.duration import Duration

    q = d['qos']
    profile = QoSProfile(history=q['history'], depth=q['depth'], reliability=q['reliability'],
                         durability=q['durability'], liveliness=q['liveliness'],
                         lifespan=Duration(nanoseconds=q['lifespan']),
                         deadline=Duration(nanoseconds=q['deadline']),
                         liveliness_lease_duration=Duration(nanoseconds=q['liveliness_lease_duration']))
    info = TopicEndpointInfo(node_name=d['node_name'], node_namespace=d['node_namespace'],
                             topic_type=d['topic_type'], endpoint_type=TopicEndpointTypeEnum(d['endpoint_type']),
                             endpoint_gid=d['endpoint_gid'], qos_profile=profile,
                             topic_type_hash=_type_hash(d['topic_type_hash']))
    return info


def _plain(value: Any) -> Any:
    if isinstance(value, TopicEndpointInfo):
        return _endpoint_to_json(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def read_line(sock: socket.socket, limit: int | None = None) -> bytes:
    """What ``sock`` sends up to and including a newline (or until it closes); with ``limit``, reading stops
    once more than ``limit`` bytes came, so the caller can refuse them."""
    data = b''
    while not data.endswith(b'\n') and (limit is None or len(data) <= limit):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


# ------------------------------------------------------------------------------------------ client

def request(method: str, *args: Any, timeout: float = 5.0) -> Any:
    """Ask the daemon ``method(*args)``; DaemonError if there is none or it failed."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(address())
        sock.sendall(json.dumps({'method': method, 'args': list(args)}).encode() + b'\n')
        data = read_line(sock)
    except OSError as exc:
        raise DaemonError(f'no daemon: {exc}') from None
    finally:
        sock.close()
    try:
        answer = json.loads(data)
    except ValueError:
        raise DaemonError('the daemon gave no answer') from None
    if 'error' in answer:
        raise DaemonError(answer['error'])
    return answer['result']


def status() -> dict[str, Any] | None:
    """The running daemon's pid, uptime and whether its view is complete, or None."""
    try:
        return dict(request('status', timeout=2.0))
    except DaemonError:
        return None


def spawn(timeout: float = IDLE_TIMEOUT_S) -> bool:
    """Start a daemon for this environment's graph unless one runs; True if this call started it."""
    if status() is not None:
        return False
    # Its own session, no inherited descriptors or cwd: it outlives this command and holds nothing of it.
    proc = subprocess.Popen([sys.executable, '-m', 'autopilot_cli.daemon', '--timeout', str(timeout)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd='/', start_new_session=True, close_fds=True)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        if status() is not None:
            return True
        if proc.poll() is not None:  # lost the race for the socket to another command's daemon: fine
            return False
        time.sleep(0.05)
    return False


def wait_warm(timeout: float = MAX_WARMUP_S + 2.0) -> bool:
    """Wait until the daemon has listened long enough for its view to be complete; False if none answers."""
    deadline = time.monotonic() + timeout
    while True:
        state = status()
        if state is None:
            return False
        if state['warm']:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(0.1, max(0.01, state['warm_in'])))


class DaemonGraph:
    """The daemon's graph with the rclpy Node methods the verbs call, so a verb takes either."""

    def __init__(self, name: str, namespace: str) -> None:
        self._name, self._namespace = name, namespace

    def get_name(self) -> str:
        return self._name

    def get_namespace(self) -> str:
        return self._namespace

    def query(self, method: str, *args: Any) -> Any:
        try:
            return request(method, *args)
        except DaemonError as exc:  # e.g. the node asked about left the graph, or the daemon was stopped
            raise CommandError(f'graph daemon: {exc}') from None

    def get_node_names_and_namespaces(self) -> list[tuple[str, str]]:
        return [(n, ns) for n, ns in self.query('get_node_names_and_namespaces')]

    def get_node_names(self) -> list[str]:
        return [n for n, _ in self.get_node_names_and_namespaces()]

    def _names_and_types(self, method: str, *args: Any) -> list[tuple[str, list[str]]]:
        return [(n, list(t)) for n, t in self.query(method, *args)]

    def get_topic_names_and_types(self) -> list[tuple[str, list[str]]]:
        return self._names_and_types('get_topic_names_and_types')

    def get_service_names_and_types(self) -> list[tuple[str, list[str]]]:
        return self._names_and_types('get_service_names_and_types')

    def get_publisher_names_and_types_by_node(self, name: str, ns: str) -> list[tuple[str, list[str]]]:
        return self._names_and_types('get_publisher_names_and_types_by_node', name, ns)

    def get_subscriber_names_and_types_by_node(self, name: str, ns: str) -> list[tuple[str, list[str]]]:
        return self._names_and_types('get_subscriber_names_and_types_by_node', name, ns)

    def get_service_names_and_types_by_node(self, name: str, ns: str) -> list[tuple[str, list[str]]]:
        return self._names_and_types('get_service_names_and_types_by_node', name, ns)

    def get_client_names_and_types_by_node(self, name: str, ns: str) -> list[tuple[str, list[str]]]:
        return self._names_and_types('get_client_names_and_types_by_node', name, ns)

    def get_action_names_and_types(self) -> list[tuple[str, list[str]]]:
        return self._names_and_types('get_action_names_and_types')

    def get_action_server_names_and_types_by_node(self, name: str, ns: str) -> list[tuple[str, list[str]]]:
        return self._names_and_types('get_action_server_names_and_types_by_node', name, ns)

    def get_action_client_names_and_types_by_node(self, name: str, ns: str) -> list[tuple[str, list[str]]]:
        return self._names_and_types('get_action_client_names_and_types_by_node', name, ns)

    def get_publishers_info_by_topic(self, topic: str) -> list[TopicEndpointInfo]:
        return [_endpoint_from_json(d) for d in self.query('get_publishers_info_by_topic', topic)]

    def get_subscriptions_info_by_topic(self, topic: str) -> list[TopicEndpointInfo]:
        return [_endpoint_from_json(d) for d in self.query('get_subscriptions_info_by_topic', topic)]

    def count_publishers(self, topic: str) -> int:
        return int(self.query('count_publishers', topic))

    def count_subscribers(self, topic: str) -> int:
        return int(self.query('count_subscribers', topic))

    def count_clients(self, service: str) -> int:
        return int(self.query('count_clients', service))

    def count_services(self, service: str) -> int:
        return int(self.query('count_services', service))


def connect() -> DaemonGraph | None:
    """The warm daemon of this graph, started if none runs; None if it cannot be had."""
    if status() is None:
        spawn(AUTO_IDLE_TIMEOUT_S)
    if not wait_warm():
        return None
    state = status()
    return DaemonGraph(state['name'], state['namespace']) if state else None


# ------------------------------------------------------------------------------------------ server

class Warmth:
    """When the daemon's view of the graph is complete: :data:`WARMUP_S` after it started and then
    unchanged for :data:`STABLE_S`, or :data:`MAX_WARMUP_S` after it started, whichever comes first.

    ``view`` returns a comparable snapshot of the graph; :meth:`look` is called every :data:`WARM_POLL_S`
    until warm. Warm stays warm: after the warm-up, a change in the graph is a real one, not discovery lag.
    """

    def __init__(self, started: float, view: Callable[[], Any]) -> None:
        self.started, self.view = started, view
        self.last = view()
        self.changed = started
        self.warm = False

    def look(self, now: float) -> bool:
        if self.warm:
            return True
        current = self.view()
        if current != self.last:
            self.last, self.changed = current, now
        self.warm = (now - self.started >= WARMUP_S and now - self.changed >= STABLE_S
                     or now - self.started >= MAX_WARMUP_S)
        return self.warm

    def warm_in(self, now: float) -> float:
        """0 once warm; else the earliest time left until it can be."""
        if self.look(now):
            return 0.0
        soonest = max(self.started + WARMUP_S, self.changed + STABLE_S)
        return max(WARM_POLL_S, min(soonest, self.started + MAX_WARMUP_S) - now)


def _view(node: Any) -> Any:
    """What a command can be asked about: nodes; topics with their types and endpoint counts; services."""
    topics = [(name, tuple(types), node.count_publishers(name), node.count_subscribers(name))
              for name, types in node.get_topic_names_and_types()]
    services = [(name, tuple(types)) for name, types in node.get_service_names_and_types()]
    return sorted(node.get_node_names_and_namespaces()), sorted(topics), sorted(services)


def serve(idle_timeout: float) -> int:
    """Run the daemon until ``idle_timeout`` s pass without a request or a ``stop`` request."""
    import rclpy
    from rclpy.action import graph as action_graph
    from rclpy.context import Context
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.signals import SignalHandlerOptions

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(address())  # the abstract name is the lock: a second daemon of the same graph stops here
    except OSError:
        return 1
    server.listen(16)
    server.settimeout(WARM_POLL_S)
    context = Context()
    rclpy.init(args=[], context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = Node(f'{NODE_NAME}_{os.getpid()}', context=context, start_parameter_services=False,
                enable_rosout=False, parameter_overrides=[Parameter('start_type_description_service', value=False)])
    started = last_request = time.monotonic()
    warmth = Warmth(started, lambda: _view(node))

    def answer(method: str, args: list[Any]) -> Any:
        if method == 'status':
            warm_in = warmth.warm_in(time.monotonic())
            return {'pid': os.getpid(), 'uptime': time.monotonic() - started, 'warm': warm_in == 0.0,
                    'warm_in': warm_in, 'name': node.get_name(), 'namespace': node.get_namespace()}
        if method in NODE_QUERIES:
            return _plain(getattr(node, method)(*args))
        if method in ACTION_QUERIES:
            return _plain(getattr(action_graph, method)(node, *args))
        raise ValueError(f'unknown request {method!r}')

    try:
        while True:
            # Until warm, wake often to look at the graph; a status request can make it warm too.
            server.settimeout(1.0 if warmth.look(time.monotonic()) else WARM_POLL_S)
            try:
                conn, _ = server.accept()
            except TimeoutError:
                if time.monotonic() - last_request > idle_timeout:
                    return 0
                continue
            last_request = time.monotonic()
            with conn:
                conn.settimeout(2.0)
                try:
                    data = read_line(conn, MAX_REQUEST_BYTES)
                    if len(data) > MAX_REQUEST_BYTES:
                        conn.sendall(json.dumps({'error': f'request longer than {MAX_REQUEST_BYTES} bytes'}).encode()
                                     + b'\n')
                        continue
                    req = json.loads(data)
                    if req.get('method') == 'stop':
                        conn.sendall(b'{"result": true}\n')
                        return 0
                    try:
                        reply = {'result': answer(str(req.get('method')), list(req.get('args') or []))}
                    except Exception as exc:  # noqa: BLE001 - the query failed: the command says why
                        reply = {'error': f'{type(exc).__name__}: {exc}'}
                    conn.sendall(json.dumps(reply).encode() + b'\n')
                except (OSError, ValueError):
                    continue  # a client that left or sent garbage: the next one is served
    except KeyboardInterrupt:
        return 0
    finally:
        server.close()
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def stop(timeout: float = 10.0) -> bool:
    """Stop this graph's daemon; True if one was running."""
    state = status()
    if state is None:
        return False
    try:
        request('stop', timeout=timeout)
    except DaemonError:
        pass
    deadline = time.monotonic() + timeout
    while status() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


# ------------------------------------------------------------------------------------------ the command

class StartVerb(VerbExtension):
    """Start the daemon if it isn't running."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('--timeout', type=float, default=IDLE_TIMEOUT_S, metavar='SECONDS',
                            help='exit after this long without a request (default: %(default)s)')

    def main(self, *, args: argparse.Namespace) -> int:
        print('The daemon has been started' if spawn(args.timeout) else 'The daemon is already running')
        return 0


class StopVerb(VerbExtension):
    """Stop the daemon if it is running."""

    def main(self, *, args: argparse.Namespace) -> int:
        print('The daemon has been stopped' if stop() else 'The daemon is not running')
        return 0


class StatusVerb(VerbExtension):
    """Output the status of the daemon."""

    def main(self, *, args: argparse.Namespace) -> int:
        print('The daemon is running' if status() is not None else 'The daemon is not running')
        return 0


class DaemonCommand(CommandExtension):
    """Various daemon related sub-commands (as `ros2 daemon`): the daemon keeps the graph discovered."""

    verbs = {'start': StartVerb, 'stop': StopVerb, 'status': StatusVerb}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m autopilot_cli.daemon', description=__doc__.splitlines()[0])
    parser.add_argument('--timeout', type=float, default=IDLE_TIMEOUT_S)
    return serve(parser.parse_args(argv).timeout)


if __name__ == '__main__':
    sys.exit(main())
