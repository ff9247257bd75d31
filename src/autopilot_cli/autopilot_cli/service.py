"""``autopilot service``: list, type and call, with ``ros2 service``'s syntax and output (pip path, no ros2cli)."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

from rclpy.node import Node
from rclpy.qos import qos_profile_services_default
from service_msgs.msg import ServiceEventInfo

from autopilot_cli.base import CommandError, CommandExtension
from autopilot_cli.graph import (
    DEFAULT_SPIN_TIME,
    Graph,
    GraphVerb,
    cli_executor,
    cli_node,
    expand_name,
    graph_node,
    is_hidden_name,
    listing,
    nonnegative_int,
    positive_float,
    settle_time,
    settled,
    uses_daemon,
    wait_until,
)
from autopilot_core import executors
from autopilot_runtime_py.messages import (
    get_service,
    message_to_csv,
    message_to_dict,
    parse_yaml_mapping,
    set_message_fields,
    to_yaml,
    type_name,
)

#: The topic rclpy publishes a service's introspection events on, under the service name.
EVENT_TOPIC_SUFFIX = '/_service_event'
EVENT_NAMES = {ServiceEventInfo.REQUEST_SENT: 'REQUEST_SENT', ServiceEventInfo.REQUEST_RECEIVED: 'REQUEST_RECEIVED',
               ServiceEventInfo.RESPONSE_SENT: 'RESPONSE_SENT',
               ServiceEventInfo.RESPONSE_RECEIVED: 'RESPONSE_RECEIVED'}


class ListVerb(GraphVerb):
    """Output a list of available services."""

    lists = True
    daemon_ok = True

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('-t', '--show-types', action='store_true', help='Additionally show the service type')
        parser.add_argument('-c', '--count-services', action='store_true',
                            help='Only display the number of services discovered')
        parser.add_argument('--include-hidden-services', action='store_true', help='Consider hidden services as well')

    def run(self, args: argparse.Namespace) -> int:
        with graph_node('service', args) as node:
            services = listing(node, lambda: sorted(
                (n, tuple(t)) for n, t in node.get_service_names_and_types()
                if args.include_hidden_services or not is_hidden_name(n)), args)
        if args.count_services:
            print(len(services))
        else:
            for name, types in services:
                print(f'{name} [{", ".join(types)}]' if args.show_types else name)
        return 0


def _service_types(node: Graph, service: str) -> list[str]:
    return next((t for n, t in node.get_service_names_and_types() if n == service), [])


class TypeVerb(GraphVerb):
    """Output a service's type."""

    daemon_ok = True

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('service_name', help="Name of the ROS service (e.g. '/add_two_ints')")

    def run(self, args: argparse.Namespace) -> int | str:
        with graph_node('service', args) as node:
            service = expand_name(node, args.service_name, 'service')
            types = wait_until(lambda: _service_types(node, service), args.spin_time)
        if not types:
            return f"Unknown service '{service}' (not discovered within {args.spin_time:g} s)"
        print(*types, sep='\n')
        return 0


class FindVerb(GraphVerb):
    """Output a list of available services of a given type."""

    lists = True
    daemon_ok = True

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('service_type', help='Name of the ROS service type to filter for '
                                                 "(e.g. 'rcl_interfaces/srv/ListParameters')")
        parser.add_argument('-c', '--count-services', action='store_true',
                            help='Only display the number of services discovered')
        parser.add_argument('--include-hidden-services', action='store_true', help='Consider hidden services as well')

    def run(self, args: argparse.Namespace) -> int:
        with graph_node('service', args) as node:
            services = listing(node, lambda: sorted(
                n for n, t in node.get_service_names_and_types()
                if args.service_type in t and (args.include_hidden_services or not is_hidden_name(n))), args)
        if args.count_services:
            print(len(services))
        else:
            for name in services:
                print(name)
        return 0


class InfoVerb(GraphVerb):
    """Print information about a service."""

    daemon_ok = True

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('service_name', help="Name of the ROS service to get info (e.g. '/add_two_ints')")

    def run(self, args: argparse.Namespace) -> int | str:
        with graph_node('service', args) as node:
            service = expand_name(node, args.service_name, 'service')
            if not wait_until(lambda: _service_types(node, service), args.spin_time):
                return f"Unknown service '{service}'"
            # Clients and servers of other participants arrive up to one announcement period apart.
            listen = 0.0 if uses_daemon(node) else min(args.spin_time, DEFAULT_SPIN_TIME)
            types, clients, servers = settled(node, lambda: (_service_types(node, service),
                                                             node.count_clients(service),
                                                             node.count_services(service)),
                                              settle=settle_time(node, args), min_time=listen)
        print(f'Type: {types[0] if len(types) == 1 else types}')
        print(f'Clients count: {clients}')
        print(f'Services count: {servers}')
        return 0


class EchoVerb(GraphVerb):
    """Echo a service (its requests and responses, where service introspection is on)."""

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('service_name', help="Name of the ROS service to echo (e.g. '/add_two_ints')")
        parser.add_argument('service_type', nargs='?',
                            help="Type of the ROS service (e.g. 'example_interfaces/srv/AddTwoInts'); default: "
                                 'from the graph')
        parser.add_argument('--csv', action='store_true',
                            help='Output all recursive fields separated by commas (e.g. for plotting).')
        parser.add_argument('--full-length', '-f', action='store_true',
                            help='Output all elements for arrays, bytes, and strings longer than --truncate-length')
        parser.add_argument('--truncate-length', '-l', type=nonnegative_int, default=128,
                            help='The length to truncate arrays, bytes, and string to (default: %(default)s)')
        parser.add_argument('--no-arr', action='store_true', help="Don't print array fields of messages")
        parser.add_argument('--no-str', action='store_true', help="Don't print string fields of messages")
        parser.add_argument('--flow-style', action='store_true', help='Print collections in the flow style')
        parser.add_argument('--once', action='store_true',
                            help='Print the first event received and then exit (autopilot addition)')
        parser.add_argument('--timeout', metavar='SECONDS', type=positive_float, default=None,
                            help='Exit after this many seconds (autopilot addition; ros2 runs until Ctrl-C)')

    def run(self, args: argparse.Namespace) -> int:
        srv = get_service(args.service_type) if args.service_type else None
        truncate = None if args.full_length else args.truncate_length
        with cli_node('service_echo') as node:
            service = expand_name(node, args.service_name, 'service')
            if srv is None:
                types = wait_until(lambda: _service_types(node, service), args.spin_time)
                if not types:
                    raise CommandError(f"could not determine the type of service '{service}': it was not "
                                       f'discovered within {args.spin_time:g} s (give the type as an argument)')
                srv = get_service(types[0])
            topic = service + EVENT_TOPIC_SUFFIX
            done = threading.Event()

            def on_event(msg: Any) -> None:
                if done.is_set():
                    return
                if args.csv:
                    text = message_to_csv(msg, truncate_length=truncate, no_arr=args.no_arr, no_str=args.no_str)
                else:
                    plain = message_to_dict(msg, truncate_length=truncate, no_arr=args.no_arr, no_str=args.no_str)
                    info = plain.get('info', {})
                    info['event_type'] = EVENT_NAMES.get(info.get('event_type'), info.get('event_type'))
                    text = to_yaml(plain, flow_style=args.flow_style) + '---'
                print(text, flush=True)
                if args.once:
                    done.set()

            sub = node.create_subscription(srv.Event, topic, on_event, qos_profile_services_default)
            executor = cli_executor(node)
            warned = False
            start = time.monotonic()
            deadline = None if args.timeout is None else start + args.timeout
            try:
                executor.add_node(node)
                while not done.is_set() and (deadline is None or time.monotonic() < deadline):
                    # Publishers are discovered up to one announcement period after this node starts.
                    if not warned and time.monotonic() - start >= DEFAULT_SPIN_TIME and sub.get_publisher_count() < 1:
                        print(f"No publishers on topic '{topic}'; is service introspection on the client or "
                              f'server enabled?', flush=True)
                        warned = True
                    executors.spin(node, executor, timeout_sec=0.1)
            finally:
                executor.shutdown(timeout_sec=1.0)
        return 0


class CallVerb(GraphVerb):
    """Call a service."""

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('service_name', help="Name of the ROS service to call to (e.g. '/add_two_ints')")
        parser.add_argument('service_type', help="Type of the ROS service (e.g. 'std_srvs/srv/Empty')")
        group = parser.add_mutually_exclusive_group()
        group.add_argument('values', nargs='?', default='{}',
                           help="Values to fill the service request with in YAML format (e.g. '{a: 1, b: 2}'), "
                                'otherwise the service request will be published with default values')
        group.add_argument('--stdin', action='store_true', help='Read values from standard input')
        parser.add_argument('-r', '--rate', metavar='N', type=positive_float,
                            help='Repeat the call at a specific rate in Hz')
        parser.add_argument('--timeout', metavar='SECONDS', type=positive_float, default=None,
                            help='Give up when the service is not available, or has not answered, within this '
                                 'many seconds (autopilot addition; default: wait like ros2, until Ctrl-C)')

    def run(self, args: argparse.Namespace) -> int:
        srv = get_service(args.service_type)
        request = srv.Request()
        text = sys.stdin.read() if args.stdin else args.values
        set_message_fields(request, parse_yaml_mapping(text, 'the request values'))
        period = 1.0 / args.rate if args.rate else None
        with cli_node('requester') as node:
            service = expand_name(node, args.service_name, 'service')
            client = node.create_client(srv, service)
            if not client.service_is_ready():
                print('waiting for service to become available...', flush=True)
                self._wait_for_server(node, client, service, type_name(srv), args.timeout)
            executor = cli_executor(node)
            try:
                while True:
                    print(f'requester: making request: {request!r}\n', flush=True)
                    started = time.monotonic()
                    future = client.call_async(request)
                    if not executors.spin_until_future(node, future, args.timeout or float('inf'), executor):
                        raise CommandError(f"service '{service}' did not answer within {args.timeout:g} s")
                    if future.exception() is not None:
                        raise CommandError(f'exception while calling service: {future.exception()!r}')
                    print(f'response:\n{future.result()!r}\n', flush=True)
                    if period is None:
                        return 0
                    time.sleep(max(0.0, started + period - time.monotonic()))
            finally:
                executor.shutdown(timeout_sec=1.0)

    @staticmethod
    def _wait_for_server(node: Node, client: Any, service: str, wanted: str, timeout: float | None) -> None:
        """Wait until ``client`` matches a server; fail at once when the server found has another type
        (it would never match: DDS matches by type), else after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not client.service_is_ready():
            others = [t for t in _server_types(node, service) if t != wanted]
            if others and wanted not in _server_types(node, service):
                raise CommandError(f"service '{service}' has type {', '.join(others)}, not {wanted}")
            if deadline is not None and time.monotonic() >= deadline:
                served = sorted(n for n, _ in node.get_service_names_and_types()
                                if not is_hidden_name(n) and not n.endswith(_PARAM_SERVICES) and node.count_services(n))
                raise CommandError(f"service '{service}' not available within {timeout:g} s: no server for it was "
                                   f"discovered; services: {', '.join(served) or 'none'}")
            time.sleep(0.05)


def _server_types(node: Node, service: str) -> set[str]:
    """Types of the servers of ``service`` (the plain graph query mixes in the types of clients, ours too)."""
    if not node.count_services(service):
        return set()
    types: set[str] = set()
    for name, namespace in node.get_node_names_and_namespaces():
        for n, t in node.get_service_names_and_types_by_node(name, namespace):
            if n == service:
                types.update(t)
    return types


_PARAM_SERVICES = ('/describe_parameters', '/get_parameter_types', '/get_parameters', '/get_type_description',
                   '/list_parameters', '/set_parameters', '/set_parameters_atomically')


class ServiceCommand(CommandExtension):
    """Various service related sub-commands (as `ros2 service`, for the pip path without ros2cli)."""

    verbs = {'list': ListVerb, 'type': TypeVerb, 'find': FindVerb, 'info': InfoVerb, 'call': CallVerb,
             'echo': EchoVerb}
