"""``autopilot bag info|play|export``: the bag of a subject file, with ``ros2 bag``'s syntax and output.

rosbag2 is not pip-installable and does not read the HDF5 subject file; these verbs cover what it would do
there. ``info`` prints ``ros2 bag info``'s layout per session; ``play`` republishes a session's raw CDR
messages with the recorded QoS and timing (scaled by ``--rate``); ``export --to mcap`` writes a rosbag2
MCAP file that ``ros2 bag``, Foxglove and rosbags read. The logic is in :mod:`autopilot_terminal.bag`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

from autopilot_cli.base import CommandError, CommandExtension, VerbExtension
from autopilot_cli.graph import nonnegative_int, positive_float
from autopilot_terminal import bag
from autopilot_terminal.storage import StoreError, SubjectReader, TopicInfo

T = TypeVar('T')


def _out(text: str = '') -> None:
    print(text, flush=True)


def _warn(text: str) -> None:
    print(f'WARNING: {text}', file=sys.stderr, flush=True)


def _checked(fn: Callable[[], T]) -> T:
    """Run ``fn``; a bad file or bad input becomes a one-line CommandError (the messages name the fix)."""
    try:
        return fn()
    except (StoreError, bag.BagError) as exc:
        raise CommandError(str(exc)) from None


def _subject_file(text: str) -> Path:
    path = Path(text)
    if not path.exists():
        raise CommandError(f'{path}: no such file; give a subject file (<data dir>/<subject>.h5)')
    if path.is_dir():
        raise CommandError(f'{path} is a directory; give a subject file (<data dir>/<subject>.h5)')
    return path


def _add_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('bag_file', metavar='FILE', help='subject file (<data dir>/<subject>.h5)')


def _add_topics(parser: argparse.ArgumentParser, verb: str) -> None:
    parser.add_argument('--topics', nargs='+', metavar='TOPIC',
                        help=f'topics to {verb} (full names, e.g. /rig1/gpio/events); default: all recorded')


class InfoVerb(VerbExtension):
    """Print information about the bag of a subject file (as ros2 bag info, per session)."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        _add_file(parser)
        parser.add_argument('--session', metavar='ID', help='only this session (default: every session)')

    def main(self, *, args: argparse.Namespace) -> int:
        path = _subject_file(args.bag_file)
        _out(bag.format_info(_checked(lambda: bag.info(path, args.session))).rstrip('\n'))
        return 0


class PlayVerb(VerbExtension):
    """Republish a session's recorded messages (as ros2 bag play)."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        _add_file(parser)
        parser.add_argument('--session', metavar='ID', help='session to play (default: the last one)')
        _add_topics(parser, 'play')
        parser.add_argument('-r', '--rate', type=positive_float, default=1.0,
                            help='rate at which to play back messages; 2 plays twice as fast (default: 1)')
        parser.add_argument('-m', '--remap', nargs='+', default=[], metavar='OLD:=NEW',
                            help='publish a topic under another name, e.g. /rig1/gpio/events:=/events')
        parser.add_argument('-d', '--delay', type=float, default=0.0, metavar='SECONDS',
                            help='sleep this long after creating the publishers before playing, so subscribers '
                                 'can discover them (default: 0)')
        parser.add_argument('-w', '--wait-matching-subscriptions', type=nonnegative_int, default=0, metavar='N',
                            help='before playing, wait until every topic played has at least N matching '
                                 'subscriptions (autopilot addition; default: 0, do not wait)')
        parser.add_argument('--max-wait-time-secs', type=positive_float, default=None,
                            help='longest wait for --wait-matching-subscriptions (default: wait endlessly)')

    def main(self, *, args: argparse.Namespace) -> int | str:
        path = _subject_file(args.bag_file)
        if args.delay < 0:
            raise CommandError(f'--delay must be >= 0, got {args.delay:g}')
        return _checked(lambda: play(path, args.session, args.topics, args.rate, remaps=bag.parse_remaps(args.remap),
                                     delay=args.delay, wait_subscriptions=args.wait_matching_subscriptions,
                                     max_wait=args.max_wait_time_secs))


def play(path: Path, session: str | None, topics: Sequence[str] | None, rate: float, *,
         remaps: dict[str, str] | None = None, delay: float = 0.0, wait_subscriptions: int = 0,
         max_wait: float | None = None) -> int | str:
    """Publish the raw CDR messages of ``session`` (default: the last) on their topics at ``rate``.

    One publisher per topic with the recorded reliability, durability, history and depth (the timing
    policies - deadline, lifespan, liveliness - describe the original publisher's rhythm, which ``rate``
    changes, so they are left at their defaults). A topic whose type is not importable here is skipped
    with a warning naming the fix. Ctrl-C stops at once (KeyboardInterrupt: ``autopilot`` exits 130).
    Raises StoreError/BagError on a bad file, session or topic.
    """
    from rclpy.duration import Duration

    from autopilot_cli.graph import cli_node, expand_name
    from autopilot_runtime_py.messages import InterfaceNotFoundError, get_message

    remaps = dict(remaps or {})
    with SubjectReader(path) as reader:
        sid = bag.select_session(reader, session)
        chosen = bag.select_topics(reader, sid, topics)
        unused = sorted(set(remaps) - {t.topic for t in chosen})
        if unused:
            _warn(f'--remap {", ".join(unused)}: no such topic is played (played: '
                  f'{", ".join(t.topic for t in chosen) or "none"})')
        playable: list[tuple[TopicInfo, Any]] = []
        for t in chosen:
            try:
                cls = get_message(t.type)
            except InterfaceNotFoundError as exc:
                _warn(f'skipping {t.topic}: its type {t.type} cannot be imported ({exc}); source the workspace '
                      f'that defines it (e.g. `source install/setup.bash`) and play again')
                continue
            installed = bag.installed_type_hash(t.type)
            if t.type_hash and installed and installed != t.type_hash:
                _warn(f'{t.topic}: recorded with another definition of {t.type} (recorded {t.type_hash}, '
                      f'installed {installed}): subscribers may misread the bytes')
            playable.append((t, cls))
        if not playable:
            raise CommandError(f'{path}: session {sid}: nothing to play (no topic recorded, or none of the '
                               'recorded types can be imported: see the warnings above)')
        qos = {t.topic: bag.topic_qos(t.qos, f'{path}: session {sid}: topic {t.topic}') for t, _ in playable}
        with ExitStack() as stack:
            node = stack.enter_context(cli_node('bag_play'))
            publishers = {}
            for t, cls in playable:
                name = expand_name(node, remaps.get(t.topic, t.topic))
                publishers[t.topic] = node.create_publisher(cls, name, qos[t.topic].to_rclpy())
            count = sum(t.count for t, _ in playable)
            _out(f'Playing session {sid} of {path}: {count} messages on {len(playable)} topics at rate {rate:g} '
                 '(Ctrl-C stops)')
            error = _wait_for_subscriptions(publishers, wait_subscriptions, max_wait)
            if error:
                return error
            if delay:
                time.sleep(delay)
            sent = 0
            t0 = time.monotonic()
            for msg in bag.pace(reader.messages(sid, list(publishers)), rate):
                publishers[msg.topic].publish(msg.data)
                sent += 1
            # Reliable readers acknowledge what they got: let the last messages leave before the node goes.
            for pub in publishers.values():
                pub.wait_for_all_acked(Duration(seconds=2.0))
            _out(f'Published {sent} messages in {time.monotonic() - t0:.3f} s')
    return 0


def _wait_for_subscriptions(publishers: dict[str, Any], wanted: int, max_wait: float | None) -> str | None:
    if wanted <= 0:
        return None
    start = time.monotonic()
    next_note = start
    while True:
        missing = {topic: pub.get_subscription_count() for topic, pub in publishers.items()
                   if pub.get_subscription_count() < wanted}
        if not missing:
            return None
        now = time.monotonic()
        if max_wait is not None and now - start >= max_wait:
            return (f'Timed out waiting for subscribers: expected {wanted} on every topic, got '
                    + ', '.join(f'{n} on {topic}' for topic, n in missing.items()))
        if now >= next_note:
            _out(f'Waiting for at least {wanted} matching subscription(s) on {", ".join(missing)}...')
            next_note = now + 1.0
        time.sleep(0.05)


class ExportVerb(VerbExtension):
    """Export a session's bag to a rosbag2 MCAP file (for ros2 bag, Foxglove, rosbags)."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        _add_file(parser)
        parser.add_argument('--to', choices=('mcap',), default='mcap', help='output format (default: mcap)')
        parser.add_argument('-o', '--output', metavar='OUT',
                            help='output file, or a directory to write <subject>_<session>.mcap into '
                                 '(default: <subject>_<session>.mcap in the working directory)')
        parser.add_argument('--session', metavar='ID', help='session to export (default: the last one)')
        _add_topics(parser, 'export')
        parser.add_argument('--force', action='store_true', help='overwrite OUT if it exists')
        parser.add_argument('--compression', choices=bag.COMPRESSIONS, default='zstd',
                            help='MCAP chunk compression (default: zstd; ros2 bag, Foxglove and rosbags read all)')

    def main(self, *, args: argparse.Namespace) -> int:
        path = _subject_file(args.bag_file)
        result = _checked(lambda: bag.export_mcap(path, args.output, args.session, args.topics, force=args.force,
                                                  compression=args.compression, warn=_warn))
        counts = ', '.join(f'{topic} {n}' for topic, n in result['topics'].items()) or 'no topics'
        _out(f"Exported session {result['session']}: {result['messages']} messages ({counts}) to {result['path']}")
        return 0


class BagCommand(CommandExtension):
    """Inspect, replay and export the bag of a subject file (as `ros2 bag`, which cannot read it)."""

    verbs = {'info': InfoVerb, 'play': PlayVerb, 'export': ExportVerb}
