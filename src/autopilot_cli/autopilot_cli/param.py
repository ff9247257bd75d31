"""``autopilot param``: list, get, set, delete, describe, dump and load parameters of live nodes, as ``ros2 param``.

For the pip path without ros2cli. Talks to the node's standard parameter services through rclpy's
AsyncParameterClient, so it works on any ROS 2 node. As ``ros2 param``, a refused set, delete or load prints
why on stderr and exits 0 (the call itself succeeded); a node or services not found exit 1.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import yaml
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rclpy.executors import Executor
from rclpy.node import Node
from rclpy.parameter import PARAMETER_SEPARATOR_STRING, parameter_dict_from_yaml_file, parameter_value_to_python
from rclpy.parameter_client import AsyncParameterClient
from rclpy.task import Future

from autopilot_cli.base import CommandError, CommandExtension
from autopilot_cli.graph import (
    DEFAULT_WAIT_TIME,
    GraphVerb,
    cli_executor,
    cli_node,
    graph_node,
    listing,
    node_names,
    uses_daemon,
    wait_for_node,
    wait_until,
)
from autopilot_core import executors

SERVICE_TIMEOUT_S = 5.0
#: How long a parameter call may take once the services are there: a node on a loaded machine can take
#: several seconds to discover a new caller, and its answers go nowhere before.
CALL_TIMEOUT_S = 10.0
#: An unanswered parameter call is sent again after this long (see :func:`_gather`).
RESEND_S = 1.0

TYPE_NAMES = {
    ParameterType.PARAMETER_BOOL: 'boolean', ParameterType.PARAMETER_INTEGER: 'integer',
    ParameterType.PARAMETER_DOUBLE: 'double', ParameterType.PARAMETER_STRING: 'string',
    ParameterType.PARAMETER_BYTE_ARRAY: 'byte array', ParameterType.PARAMETER_BOOL_ARRAY: 'boolean array',
    ParameterType.PARAMETER_INTEGER_ARRAY: 'integer array', ParameterType.PARAMETER_DOUBLE_ARRAY: 'double array',
    ParameterType.PARAMETER_STRING_ARRAY: 'string array', ParameterType.PARAMETER_NOT_SET: 'not set',
}


class _Client:
    """Calls on one node's parameter services, spinning the CLI node until each answer (with timeouts)."""

    def __init__(self, node: Node, target: str, *, wait: bool = True) -> None:
        """``wait``: until the services are there (CommandError after :data:`SERVICE_TIMEOUT_S`); else the
        caller waits, as for many nodes at once (:meth:`ready`)."""
        self.node, self.target = node, target
        self.client = AsyncParameterClient(node, target)
        self._executor: Executor | None = None
        if wait and not wait_until(self.ready, SERVICE_TIMEOUT_S):
            self.close()
            raise CommandError(self.not_ready())

    def ready(self) -> bool:
        return bool(self.client.services_are_ready())

    def not_ready(self) -> str:
        return (f'Wait for service timed out waiting for parameter services for node {self.target} '
                f'(is it an rclpy/rclcpp node with parameter services?)')

    def call(self, send: Callable[[], Future], *, resend: bool = True) -> Any:
        """``send()``'s response; CommandError if none came within :data:`CALL_TIMEOUT_S`. ``resend``: the
        request is sent again every :data:`RESEND_S` until answered (for calls that may be repeated)."""
        if self._executor is None:
            self._executor = cli_executor(self.node)
        answer = _gather(self.node, self._executor, {self: send}, resend=resend)[self]
        if isinstance(answer, str):
            raise CommandError(answer)
        return answer

    def names(self, prefixes: list[str] | None = None) -> list[str]:
        return sorted(self.call(lambda: self.client.list_parameters(prefixes=prefixes)).result.names)

    def get(self, names: list[str]) -> list[ParameterValue]:
        return list(self.call(lambda: self.client.get_parameters(names)).values)

    def describe(self, names: list[str]) -> list[Any]:
        return list(self.call(lambda: self.client.describe_parameters(names)).descriptors)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(timeout_sec=1.0)


def value_from_text(text: str) -> ParameterValue:
    """A ParameterValue from YAML text, as ``ros2 param set`` reads it: ``5`` integer, ``5.0`` double, ``true``
    bool, ``[1, 2]`` integer array, anything else (or YAML that does not parse) a string.

    rclpy's get_parameter_value turns a mapping into a string_value holding a dict; here it is an error.
    """
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    pv = ParameterValue()
    if isinstance(value, bool):
        pv.type, pv.bool_value = ParameterType.PARAMETER_BOOL, value
    elif isinstance(value, int):
        pv.type, pv.integer_value = ParameterType.PARAMETER_INTEGER, value
    elif isinstance(value, float):
        pv.type, pv.double_value = ParameterType.PARAMETER_DOUBLE, value
    elif isinstance(value, str):
        pv.type, pv.string_value = ParameterType.PARAMETER_STRING, value
    elif isinstance(value, list):
        kinds = {type(v) for v in value}
        if kinds <= {bool}:
            pv.type, pv.bool_array_value = ParameterType.PARAMETER_BOOL_ARRAY, value
        elif kinds == {int}:
            pv.type, pv.integer_array_value = ParameterType.PARAMETER_INTEGER_ARRAY, value
        elif kinds == {float}:
            pv.type, pv.double_array_value = ParameterType.PARAMETER_DOUBLE_ARRAY, value
        elif kinds == {str}:
            pv.type, pv.string_array_value = ParameterType.PARAMETER_STRING_ARRAY, value
        else:
            pv.type, pv.string_value = ParameterType.PARAMETER_STRING, text  # mixed list: ros2 sets the text
    else:
        raise CommandError(f'invalid parameter value {text!r}: a parameter is a bool, integer, double, string or '
                           f'a list of one of those, not {type(value).__name__}')
    if pv.type == ParameterType.PARAMETER_INTEGER and not -2 ** 63 <= value < 2 ** 63:
        raise CommandError(f'invalid parameter value {text!r}: out of range for a 64-bit integer parameter')
    return pv


def _label_and_value(pv: ParameterValue) -> tuple[str, Any]:
    labels = {
        ParameterType.PARAMETER_BOOL: ('Boolean value is:', lambda: pv.bool_value),
        ParameterType.PARAMETER_INTEGER: ('Integer value is:', lambda: pv.integer_value),
        ParameterType.PARAMETER_DOUBLE: ('Double value is:', lambda: pv.double_value),
        ParameterType.PARAMETER_STRING: ('String value is:', lambda: pv.string_value),
        ParameterType.PARAMETER_BYTE_ARRAY: ('Byte values are:', lambda: pv.byte_array_value),
        ParameterType.PARAMETER_BOOL_ARRAY: ('Boolean values are:', lambda: pv.bool_array_value),
        ParameterType.PARAMETER_INTEGER_ARRAY: ('Integer values are:', lambda: pv.integer_array_value.tolist()),
        ParameterType.PARAMETER_DOUBLE_ARRAY: ('Double values are:', lambda: pv.double_array_value.tolist()),
        ParameterType.PARAMETER_STRING_ARRAY: ('String values are:', lambda: pv.string_array_value),
        ParameterType.PARAMETER_NOT_SET: ('Parameter not set.', lambda: None),
    }
    if pv.type not in labels:
        raise CommandError(f"Unknown parameter type '{pv.type}'")
    label, get = labels[pv.type]
    return label, get()


class _NodeVerb(GraphVerb):
    """A param verb about one node: waits for it, then opens its parameter client."""

    def add_node_argument(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument('node_name', help='Name of the ROS node')
        parser.add_argument('--include-hidden-nodes', action='store_true', help='Consider hidden nodes as well')


class ListVerb(_NodeVerb):
    """Output a list of available parameters (of one node, or of all nodes)."""

    lists = True
    daemon_ok = True

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('node_name', nargs='?', help='Name of the ROS node (default: all nodes)')
        parser.add_argument('--include-hidden-nodes', action='store_true', help='Consider hidden nodes as well')
        parser.add_argument('--filter', help='Only parameters matching the regex expression will be showed')
        parser.add_argument('--param-prefixes', nargs='+', default=[],
                            help='Only list parameters with the provided prefixes')
        parser.add_argument('--param-type', action='store_true', help='Print parameter types with parameter names')

    def run(self, args: argparse.Namespace) -> int:
        try:
            regex = re.compile(args.filter) if args.filter else None
        except re.error as exc:
            raise CommandError(f'invalid --filter regex {args.filter!r}: {exc}') from None
        with graph_node('param', args) as graph:
            # The daemon (or this command's node) says which nodes there are; the calls need a node of ours.
            if args.node_name:
                wait = args.spin_time if uses_daemon(graph) else max(args.spin_time, DEFAULT_WAIT_TIME)
                targets = [wait_for_node(graph, args.node_name, wait)]
            else:
                targets = listing(graph, lambda: sorted(node_names(graph, args.include_hidden_nodes)), args)
            self._list(graph if isinstance(graph, Node) else None, targets, args, regex)
        return 0

    @staticmethod
    def _list(own: Node | None, targets: list[str], args: argparse.Namespace, regex: re.Pattern | None) -> None:
        if own is None:
            with cli_node('param') as node:
                ListVerb._list(node, targets, args, regex)
            return
        # All nodes are asked at once: a node that has gone (killed, not yet timed out of the graph) or has no
        # parameter services costs SERVICE_TIMEOUT_S once, not once per node.
        clients = [_Client(own, target, wait=False) for target in targets]
        executor = cli_executor(own)
        try:
            wait_until(lambda: all(c.ready() for c in clients), SERVICE_TIMEOUT_S)
            ready = [c for c in clients if c.ready()]
            prefixes = args.param_prefixes or None
            listed = _gather(own, executor, {c: partial(c.client.list_parameters, prefixes=prefixes)
                                             for c in ready})
            names_of = {c: sorted(n for n in answer.result.names if regex is None or regex.match(n))
                        for c, answer in listed.items() if not isinstance(answer, str)}
            types_of: dict[_Client, dict[str, str]] = {}
            if args.param_type:
                described = _gather(own, executor, {c: partial(c.client.describe_parameters, names)
                                                    for c, names in names_of.items() if names})
                types_of = {c: {d.name: TYPE_NAMES.get(d.type, str(d.type)) for d in answer.descriptors}
                            for c, answer in described.items() if not isinstance(answer, str)}
            for client in clients:
                # Asked or not is decided once, above: a node whose services appear only now was not asked.
                problem = listed[client] if client in listed else client.not_ready()
                if isinstance(problem, str):
                    if args.node_name:
                        raise CommandError(problem)
                    print(problem)  # ros2 reports the node it could not ask and goes on
                    continue
                names = names_of[client]
                if not args.node_name and names:
                    print(f'{client.target}:')
                types = types_of.get(client, {})
                for name in names:
                    print(f'  {name} (type: {types.get(name)})' if args.param_type else f'  {name}')
        finally:
            executor.shutdown(timeout_sec=1.0)
            for client in clients:
                client.close()


def _gather(node: Node, executor: Executor, calls: dict[_Client, Callable[[], Future]], *,
            resend: bool = True) -> dict[_Client, Any]:
    """Send each call and spin until all are answered or :data:`CALL_TIMEOUT_S` passed: each client's
    response, or a one-line reason why there is none.

    ``resend``: a call not answered within :data:`RESEND_S` is sent again (the first answer to any copy
    counts). A first request right after discovery can go unanswered for good: rmw_fastrtps drops a response
    when the server has not yet matched the caller's response reader ("client will not receive response"), a
    known race of ROS 2 services. (Calls to a server worn out by many killed peers went unanswered for every
    copy, 8 at a time on 2 busy cores: that is not this race, and resending does not mend it.)
    """
    sent = {client: [send()] for client, send in calls.items()}

    def answered(client: _Client) -> Future | None:
        return next((f for f in sent[client] if f.done()), None)

    deadline = time.monotonic() + CALL_TIMEOUT_S
    while True:
        pending = [c for c in calls if answered(c) is None]
        left = deadline - time.monotonic()
        if not pending or left <= 0:
            break
        executors.spin(node, executor, until=partial(_all_answered, pending, answered),
                       timeout_sec=min(RESEND_S, left) if resend else left)
        if resend and time.monotonic() < deadline:
            for client in pending:
                if answered(client) is None:
                    sent[client].append(calls[client]())
    answers: dict[_Client, Any] = {}
    for client in calls:
        future = answered(client)
        if future is None:
            answers[client] = (f'node {client.target} did not answer its parameter service within '
                               f'{CALL_TIMEOUT_S:g} s')
        elif future.exception() is not None:
            answers[client] = f'Exception while calling service of node {client.target}: {future.exception()}'
        else:
            answers[client] = future.result()
    return answers


def _all_answered(clients: list[_Client], answered: Callable[[_Client], Future | None]) -> bool:
    return all(answered(c) is not None for c in clients)


class GetVerb(_NodeVerb):
    """Get parameter."""

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        self.add_node_argument(parser)
        parser.add_argument('parameter_name', help='Name of the parameter')
        parser.add_argument('--hide-type', action='store_true', help='Hide the type information')

    def run(self, args: argparse.Namespace) -> int | str:
        with cli_node('param') as node:
            target = wait_for_node(node, args.node_name, args.spin_time)
            client = _Client(node, target)
            try:
                values = client.get([args.parameter_name])
            finally:
                client.close()
        if not values:
            return 'Parameter not set'
        label, value = _label_and_value(values[0])
        if args.hide_type:
            print(value)
        elif value is None:
            print(label)
        else:
            print(label, value)
        return 0


class SetVerb(_NodeVerb):
    """Set parameter."""

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        self.add_node_argument(parser)
        parser.add_argument('parameter_name', help='Name of the parameter')
        parser.add_argument('value', help='Value of the parameter (YAML: 5 is an integer, 5.0 a double, '
                                          "true a bool, [1, 2] an integer array, '5' a string)")

    def run(self, args: argparse.Namespace) -> int:
        value = value_from_text(args.value)
        with cli_node('param') as node:
            target = wait_for_node(node, args.node_name, args.spin_time)
            client = _Client(node, target)
            try:
                # Setting the same value twice leaves the same state: resent if unanswered.
                response = client.call(lambda: client.client.set_parameters(
                    [ParameterMsg(name=args.parameter_name, value=value)]))
            finally:
                client.close()
        result = response.results[0]
        if result.successful:
            print('Set parameter successful' + (f': {result.reason}' if result.reason else ''))
        else:  # ros2 param set exits 0 here too: the node answered, and said no
            print('Setting parameter failed' + (f': {result.reason}' if result.reason else ''), file=sys.stderr)
        return 0


class DeleteVerb(_NodeVerb):
    """Delete parameter."""

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        self.add_node_argument(parser)
        parser.add_argument('parameter_name', help='Name of the parameter')

    def run(self, args: argparse.Namespace) -> int:
        with cli_node('param') as node:
            target = wait_for_node(node, args.node_name, args.spin_time)
            client = _Client(node, target)
            try:
                # Setting a parameter to "not set" undeclares it (refused unless the node allows undeclared).
                # Not resent: a second delete of a deleted parameter is refused, which would hide the first.
                response = client.call(lambda: client.client.set_parameters(
                    [ParameterMsg(name=args.parameter_name, value=ParameterValue(type=ParameterType.PARAMETER_NOT_SET))]),
                    resend=False)
            finally:
                client.close()
        result = response.results[0]
        if result.successful:
            print('Deleted parameter successfully' + (f': {result.reason}' if result.reason else ''))
        else:
            print('Deleting parameter failed' + (f': {result.reason}' if result.reason else ''), file=sys.stderr)
        return 0


class LoadVerb(_NodeVerb):
    """Load parameter file for a node."""

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        self.add_node_argument(parser)
        parser.add_argument('parameter_file', help='Parameter file')
        parser.add_argument('--no-use-wildcard', action='store_true',
                            help="Do not load parameters in the '/**' namespace into the node")

    def run(self, args: argparse.Namespace) -> int:
        # As ros2: every node's section of the file (and '/**' unless --no-use-wildcard), in file order.
        try:
            params = list(parameter_dict_from_yaml_file(args.parameter_file, not args.no_use_wildcard).values())
        except (OSError, RuntimeError, yaml.YAMLError, AttributeError, TypeError) as exc:
            raise CommandError(f'cannot load parameter file {args.parameter_file!r}: {exc}') from None
        with cli_node('param') as node:
            target = wait_for_node(node, args.node_name, args.spin_time)
            client = _Client(node, target)
            try:
                response = client.call(lambda: client.client.set_parameters(params))
            finally:
                client.close()
        for param, result in zip(params, response.results, strict=False):
            reason = f': {result.reason}' if result.reason else ''
            if result.successful:
                print(f'Set parameter {param.name} successful{reason}')
            else:
                print(f'Set parameter {param.name} failed{reason}', file=sys.stderr)
        return 0


class DescribeVerb(_NodeVerb):
    """Show descriptive information about declared parameters."""

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        self.add_node_argument(parser)
        parser.add_argument('parameter_names', nargs='+', help='Names of the parameters')

    def run(self, args: argparse.Namespace) -> int | str:
        with cli_node('param') as node:
            target = wait_for_node(node, args.node_name, args.spin_time)
            client = _Client(node, target)
            try:
                descriptors = client.describe(args.parameter_names)
            finally:
                client.close()
        if not descriptors:
            return 'Parameter not found'
        for d in descriptors:
            print(f'Parameter name: {d.name}')
            print(f'  Type: {TYPE_NAMES.get(d.type, d.type)}')
            if d.description:
                print(f'  Description: {d.description}')
            print('  Constraints:')
            if d.read_only:
                print('    Read only: true')
            ranges = list(d.floating_point_range) + list(d.integer_range)
            if ranges:
                print(f'    Min value: {ranges[0].from_value}\n    Max value: {ranges[0].to_value}')
                if ranges[0].step:
                    print(f'    Step: {ranges[0].step}')
            if d.additional_constraints:
                print(f'    Additional constraints: {d.additional_constraints}')
        return 0


class DumpVerb(_NodeVerb):
    """Show all of the parameters of a node in a YAML file format."""

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        self.add_node_argument(parser)

    def run(self, args: argparse.Namespace) -> int:
        with cli_node('param') as node:
            target = wait_for_node(node, args.node_name, args.spin_time)
            try:
                client = _Client(node, target)
                try:
                    names = client.names()
                    values = client.get(names) if names else []
                finally:
                    client.close()
            except CommandError as exc:  # ros2 param dump says why on stderr and exits 0 here
                print(exc, file=sys.stderr)
                return 0
        params: dict[str, Any] = {}
        for name, pv in zip(names, values, strict=True):
            _insert(params, name, parameter_value_to_python(pv))
        # Block style and sorted keys, as ros2 param dump; loadable with --params-file.
        print(yaml.dump({target: {'ros__parameters': params}}, default_flow_style=False))
        return 0


def _insert(tree: dict, dotted: str, value: Any) -> None:
    """Nest ``a.b.c`` under ``a`` -> ``b`` -> ``c``, as parameters files write namespaced parameters."""
    head, sep, rest = dotted.partition(PARAMETER_SEPARATOR_STRING)
    if sep:
        _insert(tree.setdefault(head, {}), rest, value)
    else:
        tree[dotted] = value


class ParamCommand(CommandExtension):
    """Various param related sub-commands (as `ros2 param`, for the pip path without ros2cli)."""

    verbs = {'list': ListVerb, 'get': GetVerb, 'set': SetVerb, 'delete': DeleteVerb, 'describe': DescribeVerb,
             'dump': DumpVerb, 'load': LoadVerb}
