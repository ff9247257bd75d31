"""``autopilot graph``: which node publishes and subscribes to which topic, as text or Graphviz DOT.

What rqt_graph draws, for a terminal or a document: ``autopilot graph --dot | dot -Tpng -o graph.png``. Nodes
are boxes and topics ellipses; an edge goes from each publisher to its topic and from the topic to each
subscriber. Hidden names (``_``-prefixed nodes and topics, ``/rosout``, ``/parameter_events``, action and
service-introspection topics) are left out unless ``--include-hidden``. Read from the graph daemon, as
``node list`` is.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass, field

from autopilot_cli.base import CommandExtension
from autopilot_cli.graph import (
    DEFAULT_SPIN_TIME,
    Graph,
    add_graph_arguments,
    graph_node,
    is_hidden_name,
    join_name,
    listing,
)

#: Topics every rclpy node has: noise in a picture of what a rig does.
_INFRASTRUCTURE = frozenset({'/rosout', '/parameter_events'})


@dataclass(frozen=True)
class TopicEdges:
    """One topic, its type(s), and the full names of the nodes publishing and subscribing to it."""

    topic: str
    types: tuple[str, ...]
    publishers: tuple[str, ...] = field(default=())
    subscribers: tuple[str, ...] = field(default=())


def _shown(name: str, include_hidden: bool) -> bool:
    """Hidden: any ``_``-prefixed part (the daemon, ``_action/``, ``_service_event``), or rclpy's own topics."""
    return include_hidden or not (is_hidden_name(name) or name in _INFRASTRUCTURE)


def topic_edges(graph: Graph, include_hidden: bool = False) -> list[TopicEdges]:
    """The graph's topics with their publishing and subscribing nodes, sorted by topic name."""
    out = []
    for topic, types in sorted(graph.get_topic_names_and_types()):
        if not _shown(topic, include_hidden):
            continue

        def nodes(infos: Iterable) -> tuple[str, ...]:
            names = {join_name(i.node_namespace, i.node_name) for i in infos}
            return tuple(sorted(n for n in names if include_hidden or not is_hidden_name(n)))

        pubs = nodes(graph.get_publishers_info_by_topic(topic))
        subs = nodes(graph.get_subscriptions_info_by_topic(topic))
        if pubs or subs:
            out.append(TopicEdges(topic, tuple(types), pubs, subs))
    return out


def _escaped(text: str) -> str:
    return text.replace('\\', '\\\\').replace('"', '\\"')


def _quoted(text: str) -> str:
    return f'"{_escaped(text)}"'


def to_dot(edges: Iterable[TopicEdges]) -> str:
    """Graphviz DOT of the edges: nodes as boxes, topics as ellipses labelled with their type."""
    edges = list(edges)
    lines = ['digraph ros_graph {', '  rankdir=LR;', '  node [fontname="Helvetica", fontsize=10];']
    for name in sorted({n for e in edges for n in (*e.publishers, *e.subscribers)}):
        lines.append(f'  {_quoted("n:" + name)} [label={_quoted(name)}, shape=box, style=filled, '
                     'fillcolor="#dbe9f6"];')
    for e in edges:
        label = _escaped(e.topic) + '\\n' + _escaped(', '.join(t.rsplit('/', 1)[-1] for t in e.types))
        lines.append(f'  {_quoted("t:" + e.topic)} [label="{label}", shape=ellipse];')
        lines += [f'  {_quoted("n:" + p)} -> {_quoted("t:" + e.topic)};' for p in e.publishers]
        lines += [f'  {_quoted("t:" + e.topic)} -> {_quoted("n:" + s)};' for s in e.subscribers]
    lines.append('}')
    return '\n'.join(lines) + '\n'


def to_text(edges: Iterable[TopicEdges]) -> str:
    """One block per topic: ``topic [types]`` then who publishes and who subscribes."""
    blocks = []
    for e in edges:
        blocks.append(f'{e.topic} [{", ".join(e.types)}]\n'
                      f'  publishers: {" ".join(e.publishers) or "-"}\n'
                      f'  subscribers: {" ".join(e.subscribers) or "-"}\n')
    return ''.join(blocks)


class GraphCommand(CommandExtension):
    """Show which nodes publish and subscribe to which topics (text, or Graphviz DOT with --dot)."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        add_graph_arguments(parser, DEFAULT_SPIN_TIME, lists=True)
        parser.add_argument('--no-daemon', action='store_true', help='Do not spawn nor use an already running daemon')
        parser.add_argument('--dot', action='store_true', help='Print Graphviz DOT (render: dot -Tpng -o graph.png)')
        parser.add_argument('--include-hidden', action='store_true',
                            help='Also show hidden nodes and topics (/rosout, /parameter_events, _action, ...)')

    def main(self, *, parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
        with graph_node('graph', args) as graph:
            edges = listing(graph, lambda: topic_edges(graph, args.include_hidden), args)
        print(to_dot(edges) if args.dot else to_text(edges), end='')
        return 0
