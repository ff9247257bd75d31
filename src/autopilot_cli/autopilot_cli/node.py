"""``autopilot node``: list and info, with ``ros2 node``'s syntax and output (for the pip path without ros2cli)."""

from __future__ import annotations

import argparse
import sys

from autopilot_cli.base import CommandExtension
from autopilot_cli.graph import (
    Graph,
    GraphVerb,
    action_clients_by_node,
    action_servers_by_node,
    graph_node,
    is_hidden_name,
    listing,
    node_names,
    settle_time,
    settled,
    wait_for_node,
)

Endpoints = list[tuple[str, list[str]]]


class ListVerb(GraphVerb):
    """Output a list of available nodes."""

    lists = True
    daemon_ok = True

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('-a', '--all', action='store_true', help='Display all nodes even hidden ones')
        parser.add_argument('-c', '--count-nodes', action='store_true',
                            help='Only display the number of nodes discovered')

    def run(self, args: argparse.Namespace) -> int:
        with graph_node('node', args) as node:
            names = listing(node, lambda: sorted(node_names(node, include_hidden=args.all)), args)
        if args.count_nodes:
            print(len(names))
        elif names:
            if len(set(names)) < len(names):
                print('WARNING: Be aware that there are nodes in the graph that share an exact name, which can '
                      'have unintended side effects.', file=sys.stderr)
            print(*names, sep='\n')
        return 0


def node_endpoints(node: Graph, full_name: str, include_hidden: bool = False) -> dict[str, Endpoints]:
    """The endpoints of the node ``full_name`` by section, as ``ros2 node info`` lists them."""
    namespace, name = full_name.rsplit('/', 1)
    namespace = namespace or '/'
    found = {
        'Subscribers': node.get_subscriber_names_and_types_by_node(name, namespace),
        'Publishers': node.get_publisher_names_and_types_by_node(name, namespace),
        'Service Servers': node.get_service_names_and_types_by_node(name, namespace),
        'Service Clients': node.get_client_names_and_types_by_node(name, namespace),
        'Action Servers': action_servers_by_node(node, name, namespace),
        'Action Clients': action_clients_by_node(node, name, namespace),
    }
    return {section: sorted((n, list(t)) for n, t in items if include_hidden or not is_hidden_name(n))
            for section, items in found.items()}


class InfoVerb(GraphVerb):
    """Output information about a node."""

    daemon_ok = True

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('node_name', help='Node name to request information')
        parser.add_argument('--include-hidden', action='store_true',
                            help='Display hidden topics, services, and actions as well')

    def run(self, args: argparse.Namespace) -> int:
        with graph_node('node', args) as node:
            full = wait_for_node(node, args.node_name, args.spin_time)
            # A node's endpoints come in one discovery message, but its action endpoints are several topics
            # and services: let them settle.
            sections = settled(node, lambda: node_endpoints(node, full, args.include_hidden),
                               settle=settle_time(node, args))
            count = node_names(node, include_hidden=True).count(full)
        if count > 1:
            print(f'There are {count} nodes in the graph with the exact name "{full}". You are seeing information '
                  f'about only one of them.', file=sys.stderr)
        print(full)
        for section, items in sections.items():
            print(f'  {section}:')
            # ros2 prints an empty line for an empty section; kept, so scripts written for it still work.
            print('\n'.join(f'    {name}: {", ".join(types)}' for name, types in items))
        return 0


class NodeCommand(CommandExtension):
    """Various node related sub-commands (as `ros2 node`, for the pip path without ros2cli)."""

    verbs = {'list': ListVerb, 'info': InfoVerb}
