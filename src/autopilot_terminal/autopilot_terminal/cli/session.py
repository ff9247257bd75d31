"""``autopilot session start|stop|pause|resume|pilots``: run sessions on the pilots through the terminal.

Every verb goes through the running terminal (``/terminal/start_session``, ``stop_session``,
``pause_session``, ``resume_session``): the terminal loads the subject's protocol onto the pilot, sends the
session goal and records what the session produces, so a session started here is stored like any other.
``pilots`` (alias ``list``) prints the terminal's registry (``/terminal/pilots``, transient-local): one line
per pilot sorted by name, after a header line, columns two spaces apart.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from autopilot_cli.base import CommandError, CommandExtension
from autopilot_cli.graph import cli_node, nonnegative_float, nonnegative_int
from autopilot_terminal.cli.subject import TERMINAL, TerminalVerb, call_terminal, no_terminal, table

UINT32_MAX = 2 ** 32 - 1


def _max_trials(text: str) -> int:
    value = nonnegative_int(text)
    if value > UINT32_MAX:
        raise argparse.ArgumentTypeError(f'expected 0..{UINT32_MAX}, got {text!r}')
    return value


class StartVerb(TerminalVerb):
    """Start a session of a subject on a pilot (its protocol, step and parameter overrides)."""

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('subject', help='a subject with an assigned protocol')
        parser.add_argument('pilot', help='an online pilot, as `autopilot session pilots` lists it')
        parser.add_argument('--max-trials', type=_max_trials, default=0, metavar='N',
                            help='stop after this many trials (default: 0, no limit)')
        parser.add_argument('--max-duration', type=nonnegative_float, default=0.0, metavar='S',
                            help='stop after this many seconds (default: 0, no limit)')

    def run(self, args: argparse.Namespace) -> int:
        from autopilot_msgs.srv import StartSession

        resp = call_terminal(StartSession, 'start_session', StartSession.Request(
            subject=args.subject, pilot=args.pilot, max_trials=args.max_trials, max_duration_s=args.max_duration),
            args)
        print(resp.message)
        return 0


class _PilotCommandVerb(TerminalVerb):
    service = ''

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('pilot', help='pilot name, as `autopilot session pilots` lists it')

    def run(self, args: argparse.Namespace) -> int:
        from autopilot_msgs.srv import PilotCommand

        resp = call_terminal(PilotCommand, self.service, PilotCommand.Request(pilot=args.pilot), args)
        print(resp.message)
        return 0


class StopVerb(_PilotCommandVerb):
    """Stop the session running on a pilot (after the current trial)."""

    service = 'stop_session'


class PauseVerb(_PilotCommandVerb):
    """Pause the session running on a pilot (between trials)."""

    service = 'pause_session'


class ResumeVerb(_PilotCommandVerb):
    """Resume a paused session."""

    service = 'resume_session'


def _last_seen(seconds: float) -> str:
    return 'never' if not math.isfinite(seconds) else f'{seconds:.1f}s'


def registry_rows(msg: Any) -> list[tuple[str, ...]]:
    """The registry's entries as ``pilots`` prints them (the terminal sorts them by name)."""
    from autopilot_core import pilot_states  # (imports the messages: not at the CLI's start)

    rows: list[tuple[str, ...]] = []
    for e in sorted(msg.pilots, key=lambda e: e.pilot):
        s = e.last_status
        rows.append((e.pilot, 'yes' if e.online else 'no', pilot_states.name(s.state), s.subject or '-',
                     str(s.trial_count), s.host or '-', _last_seen(e.last_seen_s)))
    return rows


class PilotsVerb(TerminalVerb):
    """List the pilots the terminal knows: online, state, subject, trials, host, last heartbeat."""

    def run(self, args: argparse.Namespace) -> int:
        from autopilot_msgs.msg import PilotRegistry

        from autopilot_cli.graph import cli_executor
        from autopilot_core import executors, qos

        got: list[Any] = []
        topic = f'{TERMINAL}/pilots'
        with cli_node('session') as node:
            # Transient-local like the publisher: the latest registry arrives as soon as the terminal is matched.
            node.create_subscription(PilotRegistry, topic, got.append, qos.STATUS)
            executor = cli_executor(node)
            try:
                executors.spin(node, executor, until=lambda: bool(got), timeout_sec=args.spin_time)
            finally:
                executor.shutdown(timeout_sec=1.0)
            publishers = node.count_publishers(topic)
        if not got:
            if not publishers:
                raise no_terminal(args.spin_time)
            raise CommandError(f'the terminal published no registry on {topic} within {args.spin_time:g} s')
        rows = registry_rows(got[-1])
        if not rows:
            print('the terminal knows no pilots: start a rig (`autopilot launch launch/rig.launch.yaml`) on this '
                  'ROS_DOMAIN_ID', file=sys.stderr)
            return 0
        print('\n'.join(table([('pilot', 'online', 'state', 'subject', 'trials', 'host', 'last seen'), *rows])))
        return 0


class SessionCommand(CommandExtension):
    """Start, stop, pause and resume sessions on pilots, and list the pilots (through the terminal)."""

    verbs = {'start': StartVerb, 'stop': StopVerb, 'pause': PauseVerb, 'resume': ResumeVerb, 'pilots': PilotsVerb,
             'list': PilotsVerb}
