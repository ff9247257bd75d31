"""``autopilot topic``: list, info, type, echo, hz and pub, with ``ros2 topic``'s syntax and output.

For the pip path, where ros2cli is not installable; on a ROS install ``ros2 topic`` does the same.
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from typing import Any

from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data

from autopilot_cli.base import CommandError, CommandExtension
from autopilot_cli.graph import (
    DEFAULT_SPIN_TIME,
    Graph,
    GraphVerb,
    add_qos_arguments,
    cli_executor,
    cli_node,
    compatible_qos,
    expand_name,
    graph_node,
    is_hidden_name,
    listing,
    nonnegative_int,
    positive_float,
    positive_int,
    qos_from_args,
    qos_overridden,
    settle_time,
    settled,
    topic_types,
    uses_daemon,
    wait_until,
)
from autopilot_core import executors, stamps
from autopilot_runtime_py.messages import (
    get_message,
    message_to_csv,
    message_to_yaml,
    parse_yaml_mapping,
    resolve_field_path,
    set_message_fields,
    to_yaml,
    type_name,
    value_to_plain,
)

DEFAULT_TRUNCATE_LENGTH = 128


def _out(text: str = '', end: str = '\n') -> None:
    # flush: the output of echo/hz/pub is read live through pipes
    print(text, end=end, flush=True)


def _compile_filter(expr: str | None) -> Any:
    if not expr:
        return None
    try:
        return compile(expr, '<filter>', 'eval')
    except SyntaxError as exc:
        raise CommandError(f'invalid --filter expression {expr!r}: {exc.msg}') from None


class ListVerb(GraphVerb):
    """Output a list of available topics."""

    lists = True
    daemon_ok = True

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('-t', '--show-types', action='store_true', help='Additionally show the topic type')
        parser.add_argument('-c', '--count-topics', action='store_true',
                            help='Only display the number of topics discovered')
        parser.add_argument('--include-hidden-topics', action='store_true', help='Consider hidden topics as well')
        parser.add_argument('-v', '--verbose', action='store_true', help='List full details about each topic')

    def run(self, args: argparse.Namespace) -> int:
        with graph_node('topic', args) as node:
            def snapshot() -> list[tuple[str, tuple[str, ...], int, int]]:
                return sorted((n, tuple(t), len(node.get_publishers_info_by_topic(n)),
                               len(node.get_subscriptions_info_by_topic(n)))
                              for n, t in node.get_topic_names_and_types()
                              if args.include_hidden_topics or not is_hidden_name(n))
            topics = listing(node, snapshot, args)
        if args.count_topics:
            _out(str(len(topics)))
        elif args.verbose:
            for publishers in (True, False):
                lines = [('Published' if publishers else 'Subscribed') + ' topics:']
                for name, types, pubs, subs in topics:
                    count = pubs if publishers else subs
                    if count:
                        what = 'publisher' if publishers else 'subscriber'
                        lines.append(f' * {name} [{", ".join(types)}] {count} {what}{"s" if count > 1 else ""}')
                _out('\n'.join(lines) + '\n')
        else:
            for name, types, _, _ in topics:
                _out(f'{name} [{", ".join(types)}]' if args.show_types else name)
        return 0


def _wait_topic(node: Graph, topic: str, spin_time: float, settle: float, publishers: bool = False,
                complete: bool = False) -> list[str]:
    """Types of ``topic`` once it is in the graph and its endpoints stopped changing ([] when not found).

    With ``publishers``, wait for a publisher too (echo and hz need one; a topic seen only through
    subscriptions, perhaps another CLI's that is about to leave, is waited on for up to one announcement
    period more). Types seen while waiting are kept if the endpoints carrying them leave during the settle.
    With ``complete`` (counts that must be right), a command's own node listens one announcement period first:
    the endpoints of other participants arrive up to 3 s after the first.
    """
    start = time.monotonic()

    def found() -> list[str]:
        types = topic_types(node, topic)
        if not publishers or not types or node.count_publishers(topic):
            return types
        patience = min(spin_time, DEFAULT_SPIN_TIME)
        return types if time.monotonic() - start >= patience else []

    seen = wait_until(found, spin_time)
    if not seen:
        return topic_types(node, topic) if publishers else []
    listen = 0.0 if not complete or uses_daemon(node) else min(spin_time, DEFAULT_SPIN_TIME)
    min_time = max(0.0, start + listen - time.monotonic())
    final = settled(node, lambda: (topic_types(node, topic), node.count_publishers(topic),
                                   node.count_subscribers(topic)), settle=settle, min_time=min_time,
                    max_time=min_time + 4 * settle)[0]
    return final or seen


def _lookup_topic(node: Graph, args: argparse.Namespace, complete: bool = False) -> tuple[str, list[str]]:
    """The expanded ``args.topic_name`` and its types once discovered (empty if it never appears)."""
    topic = expand_name(node, args.topic_name)
    return topic, _wait_topic(node, topic, args.spin_time, settle_time(node, args), complete=complete)


def _unknown_topic(topic: str, args: argparse.Namespace) -> str:
    return f"Unknown topic '{topic}' (not discovered within {args.spin_time:g} s)"


class InfoVerb(GraphVerb):
    """Print information about a topic."""

    daemon_ok = True

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('topic_name', help="Name of the ROS topic to get info (e.g. '/chatter')")
        parser.add_argument('-v', '--verbose', action='store_true',
                            help='Prints detailed information like the node name, node namespace, topic type, '
                                 'topic type hash, GUID, and QoS Profile of the publishers and subscribers')

    def run(self, args: argparse.Namespace) -> int | str:
        with graph_node('topic', args) as node:
            topic, types = _lookup_topic(node, args, complete=True)
            if not types:
                return _unknown_topic(topic, args)
            end = '\n\n' if args.verbose else '\n'
            _out(f'Type: {types[0] if len(types) == 1 else types}', end=end)
            pubs = node.get_publishers_info_by_topic(topic)
            _out(f'Publisher count: {len(pubs)}', end=end)
            if args.verbose:
                for info in pubs:
                    _out(str(info), end=end)
            subs = node.get_subscriptions_info_by_topic(topic)
            _out(f'Subscription count: {len(subs)}', end=end)
            if args.verbose:
                for info in subs:
                    _out(str(info), end=end)
        return 0


class TypeVerb(GraphVerb):
    """Print a topic's type."""

    daemon_ok = True

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('topic_name', help="Name of the ROS topic (e.g. '/chatter')")

    def run(self, args: argparse.Namespace) -> int | str:
        with graph_node('topic', args) as node:
            topic, types = _lookup_topic(node, args)
        if not types:
            return _unknown_topic(topic, args)
        for t in types:
            _out(t)
        return 0


def _message_class_for(node: Node, topic: str, given: str | None, spin_time: float, settle: float) -> Any:
    """The class to subscribe ``topic`` with: ``given``, else the single type the graph reports for it."""
    # With the type given, the graph is only asked for the publishers' QoS: no need to wait long for them.
    types = _wait_topic(node, topic, min(spin_time, DEFAULT_SPIN_TIME) if given else spin_time, settle,
                        publishers=True)
    if given:
        cls = get_message(given)
        if types and type_name(cls) not in types:
            # DDS matches by type: this subscription would silently receive nothing.
            print(f"WARNING: topic '{topic}' has type {', '.join(types)}, not {type_name(cls)}: no message "
                  f"will arrive", file=sys.stderr, flush=True)
        return cls
    if not types:
        raise CommandError(f"could not determine the type of '{topic}': it was not discovered within "
                           f"{spin_time:g} s (give the type as an argument, e.g. std_msgs/msg/String, to wait for "
                           f"publishers)")
    if len(types) > 1:
        raise CommandError(f"topic '{topic}' has more than one type ({', '.join(types)}): give the type to use")
    return get_message(types[0])


class EchoVerb(GraphVerb):
    """Output messages from a topic."""

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('topic_name', help="Name of the ROS topic to listen to (e.g. '/chatter')")
        parser.add_argument('message_type', nargs='?',
                            help="Type of the ROS message (e.g. 'std_msgs/msg/String'); default: from the graph")
        add_qos_arguments(parser, 'subscribe', 'sensor_data')
        parser.add_argument('--csv', action='store_true',
                            help='Output all recursive fields separated by commas (e.g. for plotting)')
        parser.add_argument('--field', type=str, default=None,
                            help="Echo a selected field of a message. Use '.' to select sub-fields "
                                 "(e.g. 'header.stamp')")
        parser.add_argument('--full-length', '-f', action='store_true',
                            help='Output all elements for arrays, bytes, and strings longer than --truncate-length')
        parser.add_argument('--truncate-length', '-l', type=nonnegative_int, default=DEFAULT_TRUNCATE_LENGTH,
                            help='The length to truncate arrays, bytes, and strings to (default: %(default)s)')
        parser.add_argument('--no-arr', action='store_true', help="Don't print array fields of messages")
        parser.add_argument('--no-str', action='store_true', help="Don't print string fields of messages")
        parser.add_argument('--flow-style', action='store_true', help='Print collections in the flow style')
        parser.add_argument('--raw', action='store_true', help='Echo the raw binary representation')
        parser.add_argument('--filter', dest='filter_expr',
                            help='Python expression to filter messages that are printed; m is the message')
        parser.add_argument('--once', action='store_true', help='Print the first message received and then exit.')
        parser.add_argument('--timeout', metavar='N', type=positive_float, default=None,
                            help='Exit after N seconds')

    def run(self, args: argparse.Namespace) -> int:
        truncate = None if args.full_length else args.truncate_length
        filter_fn = None
        code = _compile_filter(args.filter_expr)
        if code is not None:
            def filter_fn(m: Any) -> bool:
                return bool(eval(code, {}, {'m': m}))  # noqa: S307 - the user's own expression, as in ros2
        if args.message_type:  # fail on a bad type or field before any discovery
            cls = get_message(args.message_type)
            if args.field is not None:
                resolve_field_path(cls, args.field)
        with cli_node('echo') as node:
            topic = expand_name(node, args.topic_name)
            cls = _message_class_for(node, topic, args.message_type, args.spin_time, args.settle)
            field = resolve_field_path(cls, args.field) if args.field is not None else None
            if qos_overridden(args):
                profile = qos_from_args(args)
            else:
                profile, notes = compatible_qos(node, topic, qos_from_args(args))
                for note in notes:
                    _out(note)
            done = threading.Event()
            error: list[str] = []

            def on_message(msg: Any) -> None:
                if done.is_set():
                    return
                if args.raw:
                    _out(repr(msg), end='\n---\n')
                else:
                    value = msg
                    for part in field or ():
                        value = getattr(value, part)
                    try:
                        if filter_fn is not None and not filter_fn(value):
                            return
                    except Exception as exc:  # noqa: BLE001 - the user's expression failed on this message
                        error.append(f'--filter expression failed: {type(exc).__name__}: {exc}')
                        done.set()
                        return
                    _out(self._format(value, args, truncate), end='\n' if args.csv else '---\n')
                if args.once:
                    done.set()

            node.create_subscription(cls, topic, on_message, profile, raw=args.raw)
            executor = cli_executor(node)
            try:
                executors.spin(node, executor, until=done.is_set, timeout_sec=args.timeout)
            finally:
                executor.shutdown(timeout_sec=1.0)
        if error:
            raise CommandError(error[0])
        return 0

    @staticmethod
    def _format(value: Any, args: argparse.Namespace, truncate: int | None) -> str:
        if hasattr(value, 'get_fields_and_field_types'):
            if args.csv:
                return message_to_csv(value, truncate_length=truncate, no_arr=args.no_arr, no_str=args.no_str)
            return message_to_yaml(value, truncate_length=truncate, no_arr=args.no_arr, no_str=args.no_str,
                                   flow_style=args.flow_style)
        # A selected field that is not a message: plain values print as they are, arrays as YAML lists.
        plain = value_to_plain(value, None, truncate, args.no_arr, args.no_str)
        if args.csv:
            return ','.join(map(str, plain)) if isinstance(plain, list) else str(plain)
        if isinstance(plain, list):
            return to_yaml(plain, flow_style=args.flow_style)
        return f'{plain}\n'  # ros2 prints a plain field value as it is, then the '---' line


class HzVerb(GraphVerb):
    """Print the average publishing rate to screen."""

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('topic_name', help="Name of the ROS topic to listen to (e.g. '/chatter')")
        parser.add_argument('--window', '-w', dest='window_size', type=positive_int, default=10000,
                            metavar='WINDOW',
                            help='window size, in # of messages, for calculating rate (default: %(default)s)')
        parser.add_argument('--filter', dest='filter_expr', default=None, metavar='EXPR',
                            help='only measure messages matching the specified Python expression (m is the message)')
        parser.add_argument('--wall-time', dest='use_wtime', action='store_true',
                            help='calculates rate using wall time (when no clock is published in simulation)')
        parser.add_argument('--duration', type=positive_float, default=None, metavar='SECONDS',
                            help='stop after this many seconds (autopilot addition; ros2 runs until Ctrl-C)')

    def run(self, args: argparse.Namespace) -> int:
        filter_code = _compile_filter(args.filter_expr)
        with cli_node('hz') as node:
            topic = expand_name(node, args.topic_name)
            types = _wait_topic(node, topic, args.spin_time, args.settle, publishers=True)
            if not types:
                _out(f'WARNING: topic [{topic}] does not appear to be published yet')
                types = wait_until(lambda: topic_types(node, topic), args.duration or math.inf)
                if not types:
                    return 0
            cls = get_message(types[0])
            clock = Clock(clock_type=ClockType.SYSTEM_TIME) if args.use_wtime else node.get_clock()
            stats = RateStats(args.window_size)

            def on_message(msg: Any) -> None:
                if filter_code is not None and not eval(filter_code, {}, {'m': msg}):  # noqa: S307 - as in ros2
                    return
                stats.add(clock.now().nanoseconds)

            # Raw (undeserialised) unless a filter needs the message: rate needs only the arrival time.
            node.create_subscription(cls, topic, on_message, qos_profile_sensor_data, raw=filter_code is None)
            deadline = None if args.duration is None else time.monotonic() + args.duration
            executor = cli_executor(node)
            executor.add_node(node)  # added once: spin() then leaves it in place between reports
            while deadline is None or time.monotonic() < deadline:
                executors.spin(node, executor, timeout_sec=0.1)
                report = stats.report()
                if report:
                    _out(report)
            executor.shutdown(timeout_sec=1.0)
        return 0


class FindVerb(GraphVerb):
    """Output a list of available topics of a given type."""

    lists = True
    daemon_ok = True

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('topic_type', help="Name of the ROS topic type to filter for (e.g. 'std_msgs/msg/String')")
        parser.add_argument('-c', '--count-topics', action='store_true',
                            help='Only display the number of topics discovered')
        parser.add_argument('--include-hidden-topics', action='store_true', help='Consider hidden topics as well')

    def run(self, args: argparse.Namespace) -> int:
        with graph_node('topic', args) as node:
            topics = listing(node, lambda: sorted(
                n for n, t in node.get_topic_names_and_types()
                if args.topic_type in t and (args.include_hidden_topics or not is_hidden_name(n))), args)
        if args.count_topics:
            _out(str(len(topics)))
        for name in [] if args.count_topics else topics:
            _out(name)
        return 0


def _measure(node: Node, topic: str, cls: Any, on_message: Any, report: Any, duration: float | None,
             raw: bool) -> None:
    """Subscribe ``topic`` (sensor-data QoS, as ros2's hz/bw/delay), print ``report()`` every second until
    ``duration`` passes (or Ctrl-C)."""
    node.create_subscription(cls, topic, on_message, qos_profile_sensor_data, raw=raw)
    deadline = None if duration is None else time.monotonic() + duration
    next_report = time.monotonic() + 1.0
    executor = cli_executor(node)
    executor.add_node(node)
    try:
        while deadline is None or time.monotonic() < deadline:
            executors.spin(node, executor, timeout_sec=0.1)
            if time.monotonic() >= next_report:
                next_report += 1.0
                text = report()
                if text:
                    _out(text)
    finally:
        executor.shutdown(timeout_sec=1.0)


def _published_class(node: Node, args: argparse.Namespace) -> tuple[str, Any]:
    """The topic named and its message class, once it has a publisher (waits like ros2: until Ctrl-C,
    or ``--duration``); (topic, None) if it never appeared."""
    topic = expand_name(node, args.topic_name)
    types = _wait_topic(node, topic, args.spin_time, args.settle, publishers=True)
    if not types:
        types = wait_until(lambda: topic_types(node, topic), args.duration or math.inf)
    return topic, get_message(types[0]) if types else None


def _add_measure_arguments(parser: argparse.ArgumentParser, what: str, window: int) -> None:
    parser.add_argument('topic_name', metavar='topic', help=f'Topic name to {what}')
    parser.add_argument('--window', '-w', type=positive_int, default=window, metavar='WINDOW',
                        help=f'maximum window size, in # of messages, for calculating rate (default: {window})')
    parser.add_argument('--duration', type=positive_float, default=None, metavar='SECONDS',
                        help='stop after this many seconds (autopilot addition; ros2 runs until Ctrl-C)')


def _size(num_bytes: float, unit: str) -> str:
    if unit == 'B':
        return f'{num_bytes:.0f} B'
    return f'{num_bytes / (1000 if unit == "KB" else 1_000_000):.2f} {unit}'


class BandwidthStats:
    """Sizes and arrival times of the last ``window`` messages, reported as ``ros2 topic bw`` does."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.samples: list[tuple[int, int]] = []  # (arrival ns, bytes)

    def add(self, now_ns: int, size: int) -> None:
        self.samples.append((now_ns, size))
        del self.samples[:-self.window]

    def report(self, now_ns: int) -> str | None:
        if len(self.samples) < 2 or now_ns <= self.samples[0][0]:
            return None
        sizes = [size for _, size in self.samples]
        per_s = sum(sizes) / ((now_ns - self.samples[0][0]) * 1e-9)
        unit = 'B' if per_s < 1000 else 'KB' if per_s < 1_000_000 else 'MB'
        bw, mean, low, high = (_size(v, unit) for v in (per_s, sum(sizes) / len(sizes), min(sizes), max(sizes)))
        return f'{bw}/s from {len(sizes)} messages\n\tMessage size mean: {mean} min: {low} max: {high}'


class BwVerb(GraphVerb):
    """Display bandwidth used by topic."""

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        _add_measure_arguments(parser, 'monitor for bandwidth utilization', 100)

    def run(self, args: argparse.Namespace) -> int:
        with cli_node('bw') as node:
            topic, cls = _published_class(node, args)
            if cls is None:
                return 0
            stats = BandwidthStats(args.window)
            clock = node.get_clock()
            _out(f'Subscribed to [{topic}]')
            _measure(node, topic, cls, lambda data: stats.add(clock.now().nanoseconds, len(data)),
                     lambda: stats.report(clock.now().nanoseconds), args.duration, raw=True)
        return 0


class DelayStats:
    """Delays between a message's header stamp and its arrival, reported as ``ros2 topic delay`` does
    (the first message only starts the count)."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.delays: list[int] = []
        self.started = False
        self.new = False

    def add(self, now_ns: int, stamp_ns: int) -> None:
        if not self.started:
            self.started = True
            return
        self.delays.append(now_ns - stamp_ns)
        del self.delays[:-self.window]
        self.new = True

    def report(self) -> str | None:
        if not self.delays:
            return None
        if not self.new:
            return 'no new messages'
        self.new = False
        n = len(self.delays)
        mean = sum(self.delays) / n
        std = math.sqrt(sum((d - mean) ** 2 for d in self.delays) / n)
        return (f'average delay: {mean * 1e-9:.3f}\n\tmin: {min(self.delays) * 1e-9:.3f}s '
                f'max: {max(self.delays) * 1e-9:.3f}s std dev: {std * 1e-9:.5f}s window: {n}')


class DelayVerb(GraphVerb):
    """Display delay of topic from timestamp in header."""

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        _add_measure_arguments(parser, 'calculate the delay for', 10000)

    def run(self, args: argparse.Namespace) -> int:
        with cli_node('delay') as node:
            topic, cls = _published_class(node, args)
            if cls is None:
                return 0
            if 'header' not in cls.get_fields_and_field_types():
                raise CommandError(f"topic '{topic}' has type {type_name(cls)}, which has no header: no delay "
                                   f"to measure")
            stats = DelayStats(args.window)
            clock = node.get_clock()

            def on_message(msg: Any) -> None:
                stamp = msg.header.stamp
                stats.add(clock.now().nanoseconds, stamps.to_ns(stamp))

            _measure(node, topic, cls, on_message, stats.report, args.duration, raw=False)
        return 0


class RateStats:
    """Intervals between messages over a window, reported about once a second, formatted as ros2 topic hz."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.intervals: list[int] = []
        self.last: int | None = None
        self.last_report: int | None = None

    def add(self, now_ns: int) -> None:
        if self.last is not None and now_ns >= self.last:
            self.intervals.append(now_ns - self.last)
            if len(self.intervals) > self.window:
                del self.intervals[0]
        elif self.last is not None:  # the clock went back (simulated time reset)
            self.intervals.clear()
        self.last = now_ns

    def report(self) -> str | None:
        if not self.intervals or self.last is None:
            return None
        if self.last_report is None:
            self.last_report = self.last
            return None
        if self.last < self.last_report + 1_000_000_000:
            return None
        self.last_report = self.last
        n = len(self.intervals)
        mean = sum(self.intervals) / n
        rate = 1e9 / mean if mean > 0 else 0.0
        std = math.sqrt(sum((x - mean) ** 2 for x in self.intervals) / n)
        return (f'average rate: {rate:.3f}\n\tmin: {min(self.intervals) * 1e-9:.3f}s '
                f'max: {max(self.intervals) * 1e-9:.3f}s std dev: {std * 1e-9:.5f}s window: {n}')


class PubVerb(GraphVerb):
    """Publish a message to a topic."""

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('topic_name', help="Name of the ROS topic to publish to (e.g. '/chatter')")
        parser.add_argument('message_type', help="Type of the ROS message (e.g. 'std_msgs/String')")
        group = parser.add_mutually_exclusive_group()
        group.add_argument('values', nargs='?', default='{}',
                           help="Values to fill the message with in YAML format (e.g. 'data: Hello World'), "
                                "otherwise the message will be published with default values. A std_msgs/Header "
                                "given as 'auto' and a builtin_interfaces/Time given as 'now' get the current time")
        group.add_argument('--stdin', action='store_true', help='Read values from standard input')
        parser.add_argument('-r', '--rate', metavar='N', type=positive_float, default=1.0,
                            help='Publishing rate in Hz (default: 1)')
        parser.add_argument('-p', '--print', metavar='N', type=int, default=1,
                            help='Only print every N-th published message (default: 1)')
        group = parser.add_mutually_exclusive_group()
        group.add_argument('-1', '--once', action='store_true', help='Publish one message and exit')
        group.add_argument('-t', '--times', type=nonnegative_int, default=0,
                           help='Publish this number of times and then exit')
        parser.add_argument('-w', '--wait-matching-subscriptions', type=nonnegative_int, default=None,
                            help='Wait until finding the specified number of matching subscriptions. '
                                 'Defaults to 1 when using "-1"/"--once"/"--times", otherwise defaults to 0.')
        parser.add_argument('--max-wait-time-secs', type=positive_float, default=None,
                            help='Longest wait for the matching subscriptions (default: wait endlessly)')
        parser.add_argument('--keep-alive', metavar='N', type=positive_float, default=0.1,
                            help='Keep publishing node alive for N seconds after the last msg (default: 0.1)')
        parser.add_argument('-n', '--node-name', help='Name of the created publishing node')
        add_qos_arguments(parser, 'publish', 'default')

    def run(self, args: argparse.Namespace) -> int | str:
        cls = get_message(args.message_type)
        text = sys.stdin.read() if args.stdin else args.values
        msg = cls()
        stampers = set_message_fields(msg, parse_yaml_mapping(text, 'the message values'),
                                      expand_header_auto=True, expand_time_now=True)
        times = 1 if args.once else args.times
        wait_for = args.wait_matching_subscriptions
        if wait_for is None:
            wait_for = int(times != 0)
        if wait_for == 0 and args.max_wait_time_secs is not None:
            return '--max-wait-time-secs option is only effective with --wait-matching-subscriptions, --once or --times'
        profile = qos_from_args(args)
        with cli_node('pub', node_name=args.node_name) as node:
            topic = expand_name(node, args.topic_name)
            pub = node.create_publisher(cls, topic, profile)
            started = time.monotonic()
            next_note = started
            while pub.get_subscription_count() < wait_for:
                now = time.monotonic()
                if now >= next_note:
                    _out(f'Waiting for at least {wait_for} matching subscription(s)...')
                    next_note = now + 1.0
                if args.max_wait_time_secs is not None and now - started >= args.max_wait_time_secs:
                    return (f'Timed out waiting for subscribers: Expected {wait_for} subscribers but only got '
                            f'{pub.get_subscription_count()} subscribers')
                time.sleep(0.05)
            _out('publisher: beginning loop')
            period = 1.0 / args.rate
            count = 0
            next_time = time.monotonic()
            while times == 0 or count < times:
                stamp = node.get_clock().now().to_msg()
                for stamper in stampers:
                    stamper(stamp)
                count += 1
                if args.print and count % args.print == 0:
                    _out(f'publishing #{count}: {msg!r}\n')
                pub.publish(msg)
                if times and count >= times:
                    break
                next_time += period
                time.sleep(max(0.0, next_time - time.monotonic()))
            # Let the last messages leave before the participant goes (reliable readers ack them).
            pub.wait_for_all_acked(Duration(seconds=max(1.0, args.keep_alive)))
            time.sleep(args.keep_alive)
        return 0


class TopicCommand(CommandExtension):
    """Various topic related sub-commands (as `ros2 topic`, for the pip path without ros2cli)."""

    verbs = {'list': ListVerb, 'info': InfoVerb, 'type': TypeVerb, 'find': FindVerb, 'echo': EchoVerb,
             'hz': HzVerb, 'bw': BwVerb, 'delay': DelayVerb, 'pub': PubVerb}

