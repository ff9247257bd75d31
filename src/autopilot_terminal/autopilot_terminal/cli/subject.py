"""``autopilot subject list|show|create|assign|step|params|weigh|note|rig``: the subjects of a lab, as the
running terminal tells them (or read from their files), changed through the terminal.

Reading (``list``, ``show``) asks the running terminal (``/terminal/subjects``, a latched list republished
within a second of a change, and ``/terminal/get_subject``), so it works from any host of the ROS domain.
With ``--data-dir``, or when no terminal is discovered, it opens the subject files in SWMR mode
(:class:`~autopilot_terminal.storage.SubjectReader`), safe while the terminal writes them, from ``--data-dir``,
else ``$AUTOPILOT_DATA_DIR``, else ``~/autopilot/data``. Both read through :mod:`autopilot_terminal.catalog`.

Writing goes through the terminal's services (``/terminal/create_subject``, ``assign_protocol``,
``set_subject_step``, ``set_subject_parameters``, ``record_weight``, ``add_note``, ``set_subject_pilot``):
the terminal's recorder is the one writer of every subject file (DESIGN.md, "Data"), so these commands never
open a file for writing. A refused request exits 1 with the terminal's message, which names what is wrong and
the fix.

Output is stable, as ``ros2 ... list`` is: ``list`` prints a header line and one line per subject sorted by
name, columns two spaces apart; nothing else goes to stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from autopilot_cli.base import CommandError, CommandExtension, VerbExtension
from autopilot_cli.graph import (
    DEFAULT_SPIN_TIME,
    DEFAULT_WAIT_TIME,
    SETTLE_S,
    GraphVerb,
    cli_node,
    nonnegative_int,
    positive_float,
)

TERMINAL = '/terminal'
#: How long a terminal service may take to answer: start_session waits up to 10 s for each of the pilot's
#: load_protocol and session goal, subject services up to 10 s for the recorder thread.
ANSWER_TIMEOUT_S = 30.0
DATA_DIR_ENV = 'AUTOPILOT_DATA_DIR'
DEFAULT_DATA_DIR = '~/autopilot/data'
UINT16_MAX = 65535
_DOB = re.compile(r'^\d{4}-\d{2}-\d{2}$')


# ------------------------------------------------------------------------------------------ the terminal

def domain_id() -> str:
    return os.environ.get('ROS_DOMAIN_ID', '') or '0'


def no_terminal(waited: float) -> CommandError:
    return CommandError(f'no terminal is running on ROS_DOMAIN_ID={domain_id()}: start it with '
                        f'`autopilot launch launch/terminal.launch.yaml` (none discovered within {waited:g} s)')


def _call(node: Any, srv_type: Any, service: str, request: Any, *, wait_s: float, settle_s: float,
          answer_s: float) -> Any | None:
    """The response of ``service``, or None when no server was discovered within ``wait_s``."""
    from autopilot_cli.graph import cli_executor, wait_until
    from autopilot_core import executors

    client = node.create_client(srv_type, service)
    if not wait_until(client.service_is_ready, wait_s):
        return None
    # The client sees the server before the server may see the client's reply reader; Fast DDS drops a reply
    # it cannot deliver within 100 ms (ros2/rmw_fastrtps#842), so let discovery settle first (as conftest.settle).
    time.sleep(settle_s)
    executor = cli_executor(node)
    try:
        future = client.call_async(request)
        if not executors.spin_until_future(node, future, answer_s, executor):
            raise CommandError(f'{service} did not answer within {answer_s:g} s; is the terminal overloaded? '
                               'See its log')
        if future.exception() is not None:
            raise CommandError(f'{service} failed: {future.exception()!r}')
        return future.result()
    finally:
        executor.shutdown(timeout_sec=1.0)


def call_terminal(srv_type: Any, name: str, request: Any, args: argparse.Namespace) -> Any:
    """Call ``/terminal/<name>``; CommandError when no terminal runs or it answers success=false."""
    with cli_node(name) as node:
        resp = _call(node, srv_type, f'{TERMINAL}/{name}', request, wait_s=args.spin_time, settle_s=args.settle,
                     answer_s=ANSWER_TIMEOUT_S)
    if resp is None:
        raise no_terminal(args.spin_time)
    if not resp.success:
        raise CommandError(resp.message or f'{TERMINAL}/{name} refused the request (no reason given)')
    return resp


class TerminalVerb(GraphVerb):
    """A verb that asks the terminal: ``--spin-time`` bounds the wait for it to be discovered (default 10 s,
    returned from as soon as it is), ``--settle`` the pause before asking."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('--spin-time', type=positive_float, default=DEFAULT_WAIT_TIME, metavar='SECONDS',
                            help='longest wait for the terminal to be discovered (default: %(default)s; returned '
                                 'from as soon as it is); there is no daemon, so each command discovers the graph '
                                 'anew, and DDS peers announce themselves every 3 s')
        parser.add_argument('--settle', type=positive_float, default=SETTLE_S, metavar='SECONDS',
                            help='pause between discovering the terminal and asking it (default: %(default)s)')
        self.add_verb_arguments(parser, cli_name)


# ------------------------------------------------------------------------------------------ data directory

def terminal_data_dir(wait_s: float, settle_s: float) -> str | None:
    """The running terminal's ``data_dir`` parameter, or None when no terminal answers within ``wait_s``."""
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    with cli_node('subject') as node:
        try:
            resp = _call(node, GetParameters, f'{TERMINAL}/get_parameters', GetParameters.Request(names=['data_dir']),
                         wait_s=wait_s, settle_s=settle_s, answer_s=5.0)
        except CommandError as exc:
            print(f'WARNING: cannot ask the terminal for its data_dir: {exc}', file=sys.stderr)
            return None
    if resp is None or len(resp.values) != 1:
        return None
    value = parameter_value_to_python(resp.values[0])
    return value if isinstance(value, str) and value else None


def resolve_data_dir(args: argparse.Namespace, *, ask: bool = True) -> Path:
    """--data-dir, else the terminal's data_dir (``ask``), else $AUTOPILOT_DATA_DIR, else ~/autopilot/data; must
    exist."""
    if args.data_dir:
        text, source = args.data_dir, '--data-dir'
    elif ask and (asked := terminal_data_dir(args.spin_time, args.settle)) is not None:
        text, source = asked, f"the data_dir parameter of the terminal on ROS_DOMAIN_ID={domain_id()}"
    elif os.environ.get(DATA_DIR_ENV):
        text, source = os.environ[DATA_DIR_ENV], f'${DATA_DIR_ENV}'
    else:
        text, source = DEFAULT_DATA_DIR, 'the default (no terminal running, $AUTOPILOT_DATA_DIR not set)'
    path = Path(text).expanduser()
    if not path.is_dir():
        raise CommandError(f'data directory {path} (from {source}) does not exist; give the directory of the '
                           f'subject files with --data-dir DIR or set ${DATA_DIR_ENV}')
    return path


def add_read_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--data-dir', metavar='DIR',
                        help='read the subject files (<subject>.h5) of this directory instead of asking the running '
                             f'terminal; without a terminal: ${DATA_DIR_ENV}, else {DEFAULT_DATA_DIR}')
    parser.add_argument('--spin-time', type=positive_float, default=DEFAULT_SPIN_TIME, metavar='SECONDS',
                        help='without --data-dir: longest wait for a running terminal to be discovered (default: '
                             '%(default)s; DDS peers announce themselves every 3 s)')
    parser.add_argument('--settle', type=positive_float, default=SETTLE_S, metavar='SECONDS',
                        help='pause between discovering the terminal and asking it (default: %(default)s)')


# ------------------------------------------------------------------------------------------ reading

def terminal_subjects(wait_s: float) -> Any | None:
    """The running terminal's latest ``/terminal/subjects`` (SubjectList), or None when none comes within
    ``wait_s`` (it is latched: a terminal that runs sends it as soon as it is discovered)."""
    from autopilot_msgs.msg import SubjectList
    from rclpy.task import Future

    from autopilot_cli.graph import cli_executor
    from autopilot_core import executors, qos

    with cli_node('subject') as node:
        got: Future = Future()
        node.create_subscription(SubjectList, f'{TERMINAL}/subjects',
                                 lambda m: got.done() or got.set_result(m), qos.STATUS)
        executor = cli_executor(node)
        try:
            executors.spin_until_future(node, got, wait_s, executor)
        finally:
            executor.shutdown(timeout_sec=1.0)
        return got.result() if got.done() else None


def info_from_response(resp: Any) -> Any:
    """A GetSubject response as :class:`autopilot_terminal.catalog.SubjectInfo` (what the files give)."""
    from autopilot_core.stamps import to_ns
    from autopilot_terminal.catalog import SessionInfo, SubjectInfo
    from autopilot_terminal.subjects import state_from_history

    s = resp.summary
    history = [{'time_ns': to_ns(h.time), 'kind': h.kind, 'protocol': h.protocol, 'step': h.step,
                'step_name': h.step_name, 'detail': json.loads(h.detail_json or '{}')} for h in resp.history]
    sessions = [SessionInfo(x.session_id, x.pilot, x.task, x.protocol, x.step, x.step_name, x.state,
                            to_ns(x.start), to_ns(x.end), x.trials, None if math.isnan(x.accuracy) else x.accuracy)
                for x in resp.sessions]
    weights = [{'time_ns': to_ns(w.time), 'grams': w.grams, 'when': w.when, 'session_id': w.session_id}
               for w in resp.weights]
    return SubjectInfo(s.subject, json.loads(s.biography_json or '{}'), state_from_history(s.subject, history),
                       history, sessions, weights)


def subject_file(data_dir: Path, subject: str) -> Path:
    """``<data_dir>/<subject>.h5``; CommandError naming the subjects there when it does not exist."""
    from autopilot_terminal.recorder import subject_error

    if (why := subject_error(subject)) is not None:
        raise CommandError(why)
    path = data_dir / f'{subject}.h5'
    if not path.is_file():
        known = ', '.join(p.stem for p in sorted(data_dir.glob('*.h5'))) or 'none'
        raise CommandError(f'unknown subject {subject!r}: no file {path} (subjects there: {known}); create it with '
                           f'`autopilot subject create {subject}`')
    return path


def _when(ns: int, seconds: bool = True) -> str:
    if ns <= 0:
        return '-'
    return dt.datetime.fromtimestamp(ns / 1e9).strftime('%Y-%m-%d %H:%M:%S' if seconds else '%Y-%m-%d %H:%M')


def _duration(s: Any) -> str:
    end = s.ended_ns if s.ended_ns > 0 else (time.time_ns() if s.state == 'running' else 0)
    if s.started_ns <= 0 or end < s.started_ns:
        return '-'
    total = round((end - s.started_ns) / 1e9)
    return f'{total // 3600}:{total // 60 % 60:02d}:{total % 60:02d}'


def _value(v: Any) -> str:
    """A parameter value as typed on the command line (YAML/JSON scalars: true, 5, 5.0, "text")."""
    return json.dumps(v, ensure_ascii=False)


def table(rows: Sequence[Sequence[str]], indent: str = '') -> list[str]:
    """Left-aligned columns, two spaces apart, no trailing blanks."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [(indent + '  '.join(c.ljust(w) for c, w in zip(r, widths, strict=True))).rstrip() for r in rows]


def history_detail(row: Mapping[str, Any]) -> str:
    """One line about a /subject/history row."""
    kind, d = row['kind'], row.get('detail') or {}
    by = f' (by {d["by"]})' if d.get('by') else ''
    if kind == 'created':
        bio = d.get('biography') or {}
        return f'biography {json.dumps(bio, sort_keys=True)}' if bio else 'no biography'
    if kind == 'biography':
        if 'created_by' in d:
            return f'file created by the {d["created_by"]}: {d.get("reason", "")}'
        return f'biography {json.dumps(d, sort_keys=True)}'
    if kind == 'assign':
        where = f'; file {d["file"]}' if d.get('file') else ''
        return f'{row["protocol"]} at step {row["step"]} ({row["step_name"]}){where}{by}'
    if kind == 'step':
        text = f'{d.get("from_step", "?")} ({d.get("from_step_name", "?")}) -> {row["step"]} ({row["step_name"]})'
        if d.get('session_id'):  # a graduation the pilot reported
            text += f' in session {d["session_id"]} after trial {d.get("after_trial", "?")}'
        if d.get('reason'):
            text += f': {d["reason"]}'
        return text + by
    if kind == 'parameters':
        parts = []
        if d.get('set'):
            parts.append('set ' + ', '.join(f'{k}={_value(v)}' for k, v in sorted(d['set'].items())))
        if d.get('removed'):
            parts.append('removed ' + ', '.join(d['removed']))
        return '; '.join(parts or ['no change']) + by
    if kind == 'roster':
        return f'{"rig " + d["pilot"] if d.get("pilot") else "no rig"} (was {d.get("from_pilot") or "none"}){by}'
    if kind == 'note':
        return str(d.get('text', '')).replace('\n', ' ') + (f' (session {d["session_id"]})'
                                                             if d.get('session_id') else '')
    return json.dumps(d, sort_keys=True)


def format_show(header: Sequence[str], info: Any) -> list[str]:
    """What ``subject show`` prints of a :class:`autopilot_terminal.catalog.SubjectInfo` after ``header``."""
    st = info.state
    lines = list(header)
    bio = info.biography
    lines.append('biography:' if bio else 'biography: none')
    lines += [f'  {k}: {v if isinstance(v, str) else json.dumps(v)}' for k, v in sorted(bio.items())]
    if st.protocol:
        lines.append(f'protocol: {st.protocol} (assigned {_when(st.assigned_ns)}'
                     f'{", file " + st.protocol_file if st.protocol_file else ""})')
        steps = ', '.join(f'{i}: {s}' for i, s in enumerate(st.steps))
        lines.append(f'step: {st.step}: {st.step_name}' + (f' (steps {steps})' if steps else ''))
    else:
        lines += ['protocol: none (assign one: `autopilot subject assign SUBJECT PROTOCOL`)', 'step: -']
    lines.append(f'rig: {st.pilot}' if st.pilot else 'rig: none (`autopilot subject rig SUBJECT PILOT`)')
    lines.append('parameters:' if st.parameters else 'parameters: none (the protocol step\'s values)')
    lines += [f'  {k}: {_value(v)}' for k, v in sorted(st.parameters.items())]
    weights = info.weights
    lines.append('weights:' if weights else 'weights: none')
    if weights:
        base = weights[0]['grams']
        lines += table([('time', 'grams', 'baseline', 'when', 'session')] + [
            (_when(w['time_ns']), f'{w["grams"]:g}', f'{w["grams"] / base:.0%}', w['when'], w['session_id'] or '-')
            for w in weights], indent='  ')
    lines.append('history:')
    lines += table([('time', 'kind', 'detail')] +
                   [(_when(r['time_ns']), r['kind'], history_detail(r)) for r in info.history], indent='  ')
    sessions = info.sessions
    lines.append('sessions:' if sessions else 'sessions: none')
    if sessions:
        lines += table([('id', 'pilot', 'task', 'start', 'duration', 'trials', 'correct', 'state')] + [
            (s.session_id, s.pilot or '-', s.task or '-', _when(s.started_ns), _duration(s), str(s.trials),
             '-' if s.accuracy is None else f'{s.accuracy:.2f}', s.state or '-') for s in sessions], indent='  ')
    return lines


def list_row(info: Any) -> tuple[str, ...]:
    """A ``list`` line of a :class:`autopilot_terminal.catalog.SubjectInfo`."""
    st = info.state
    last = max((s.started_ns for s in info.sessions), default=0)
    return (info.subject, st.protocol or '-', f'{st.step}: {st.step_name}' if st.protocol else '-',
            str(len(info.sessions)), str(info.trials), _when(last, seconds=False))


def summary_row(s: Any) -> tuple[str, ...]:
    """A ``list`` line of a SubjectSummary (the terminal's list)."""
    from autopilot_core.stamps import to_ns

    return (s.subject, s.protocol or '-', f'{s.step}: {s.step_name}' if s.protocol else '-', str(s.sessions),
            str(s.trials), _when(to_ns(s.last_session_start), seconds=False))


LIST_HEADER = ('subject', 'protocol', 'step', 'sessions', 'trials', 'last session')


# ------------------------------------------------------------------------------------------ verbs

def files_data_dir(args: argparse.Namespace) -> Path:
    """--data-dir, else $AUTOPILOT_DATA_DIR, else ~/autopilot/data (no terminal answered); must exist."""
    return resolve_data_dir(args, ask=False)


class ListVerb(VerbExtension):
    """List the subjects: protocol, step, sessions, trials and last session, one line each, sorted by name."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        add_read_arguments(parser)

    def main(self, *, args: argparse.Namespace) -> int:
        from autopilot_terminal.catalog import Catalog
        from autopilot_terminal.storage import StoreError, SubjectReader

        listed = None if args.data_dir else terminal_subjects(args.spin_time)
        if listed is not None:
            for problem in listed.problems:  # one bad file must not hide the others
                print(f'WARNING: {problem}', file=sys.stderr)
            rows = [summary_row(s) for s in listed.subjects]
            where = f'the terminal on ROS_DOMAIN_ID={domain_id()}'
        else:
            data_dir = files_data_dir(args)
            rows = []
            for path in sorted(data_dir.glob('*.h5'), key=lambda p: p.stem):
                try:
                    with SubjectReader(path) as reader:
                        rows.append(list_row(Catalog().subject(reader.file, path.stem)))
                except (StoreError, OSError, KeyError, ValueError) as exc:  # one bad file must not hide the others
                    print(f'WARNING: skipped {path}: {exc}', file=sys.stderr)
            where = str(data_dir)
        if not rows:
            print(f'no subject files in {where}', file=sys.stderr)
            return 0
        print('\n'.join(table([LIST_HEADER, *rows])))
        return 0


class ShowVerb(VerbExtension):
    """Show a subject: biography, protocol, step, rig, parameter overrides, weights, history and sessions."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('subject', help='subject name (its file is <data dir>/<subject>.h5)')
        add_read_arguments(parser)

    def main(self, *, args: argparse.Namespace) -> int:
        from autopilot_msgs.srv import GetSubject

        from autopilot_terminal.catalog import Catalog
        from autopilot_terminal.storage import StoreError, SubjectReader

        _check_subject(args.subject)
        if not args.data_dir:
            with cli_node('subject') as node:
                resp = _call(node, GetSubject, f'{TERMINAL}/get_subject', GetSubject.Request(subject=args.subject),
                             wait_s=args.spin_time, settle_s=args.settle, answer_s=ANSWER_TIMEOUT_S)
            if resp is not None:
                if not resp.success:
                    raise CommandError(resp.message or 'the terminal could not read the subject (no reason given)')
                info = info_from_response(resp)
                created = next((r['time_ns'] for r in info.history if r['kind'] == 'created'), 0)
                header = [f'subject: {info.subject}', f'file: on the terminal of ROS_DOMAIN_ID={domain_id()}',
                          f'created: {_when(created)}']
                print('\n'.join(format_show(header, info)))
                return 0
        path = subject_file(files_data_dir(args), args.subject)
        try:
            with SubjectReader(path) as reader:
                info = Catalog().subject(reader.file, args.subject)
                header = [f'subject: {reader.subject}', f'file: {path}', f'created: {_when(reader.created_ns)}']
        except (StoreError, OSError, KeyError, ValueError) as exc:
            raise CommandError(f'{path}: {exc}' if str(path) not in str(exc) else str(exc)) from None
        print('\n'.join(format_show(header, info)))
        return 0


def _uint16(text: str) -> int:
    value = nonnegative_int(text)
    if value > UINT16_MAX:
        raise argparse.ArgumentTypeError(f'expected a step number 0..{UINT16_MAX}, got {text!r}')
    return value


def _check_subject(subject: str) -> None:
    """The terminal checks too; checking here first answers without waiting for discovery."""
    from autopilot_terminal.recorder import subject_error

    if (why := subject_error(subject)) is not None:
        raise CommandError(why)


def _biography(args: argparse.Namespace) -> dict[str, Any]:
    fields = {k: getattr(args, k) for k in ('species', 'sex', 'dob', 'genotype') if getattr(args, k) is not None}
    if args.biography is not None:
        if fields:
            raise CommandError(f'give either --biography or --{"/--".join(fields)}, not both (put every field '
                               'in the JSON)')
        try:
            bio = json.loads(args.biography)
        except json.JSONDecodeError as exc:
            raise CommandError(f'--biography is not valid JSON: {exc}') from None
        if not isinstance(bio, dict):
            raise CommandError('--biography must be a JSON object, e.g. \'{"species": "Mus musculus"}\'')
        return bio
    if 'dob' in fields:
        try:
            if not _DOB.match(fields['dob']):
                raise ValueError
            dt.date.fromisoformat(fields['dob'])
        except ValueError:
            raise CommandError(f'--dob {fields["dob"]!r}: expected a date YYYY-MM-DD, e.g. 2024-05-31') from None
    return fields


class CreateVerb(TerminalVerb):
    """Create a subject (its file) on the terminal, with a biography."""

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('subject', help='subject name: letters, digits, "_" and "-" (it names the file)')
        parser.add_argument('--biography', metavar='JSON',
                            help='the whole biography as a JSON object (instead of the options below)')
        parser.add_argument('--species', help='e.g. "Mus musculus"')
        parser.add_argument('--sex', help='e.g. F, M or U')
        parser.add_argument('--dob', metavar='YYYY-MM-DD', help='date of birth')
        parser.add_argument('--genotype', help='e.g. "C57BL/6J" or "wt"')

    def run(self, args: argparse.Namespace) -> int:
        from autopilot_msgs.srv import CreateSubject

        _check_subject(args.subject)
        bio = _biography(args)
        resp = call_terminal(CreateSubject, 'create_subject', CreateSubject.Request(
            subject=args.subject, biography_json=json.dumps(bio) if bio else ''), args)
        print(resp.message)
        return 0


class AssignVerb(TerminalVerb):
    """Assign a protocol (a file in the terminal's protocol_dir, or a path) to a subject; the terminal checks it
    with the pilots' own protocol code, so what it accepts a pilot accepts."""

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('subject', help='subject name')
        parser.add_argument('protocol', help="protocol name (file stem in the terminal's protocol_dir) or a path to "
                                             'a protocol file on the terminal\'s host')
        parser.add_argument('--step', type=_uint16, default=0, metavar='N', help='0-based step to start at '
                            '(default: 0)')

    def run(self, args: argparse.Namespace) -> int:
        from autopilot_msgs.srv import AssignProtocol

        _check_subject(args.subject)
        protocol = args.protocol
        try:
            if Path(protocol).suffix in ('.yaml', '.yml') and Path(protocol).is_file():
                protocol = str(Path(protocol).resolve())  # relative to this shell, not to the terminal's directory
        except OSError:  # not a file here (too long a name, ...): the terminal says what it is
            pass
        resp = call_terminal(AssignProtocol, 'assign_protocol', AssignProtocol.Request(
            subject=args.subject, protocol=protocol, step=args.step), args)
        print(resp.message)
        return 0


class StepVerb(TerminalVerb):
    """Move a subject to another step of its protocol (from its next session)."""

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('subject', help='subject name')
        parser.add_argument('step', type=_uint16, metavar='N', help='0-based step')
        parser.add_argument('--reason', default='', metavar='TEXT', help="why (stored in the subject's history)")

    def run(self, args: argparse.Namespace) -> int:
        from autopilot_msgs.srv import SetSubjectStep

        _check_subject(args.subject)
        resp = call_terminal(SetSubjectStep, 'set_subject_step', SetSubjectStep.Request(
            subject=args.subject, step=args.step, reason=args.reason), args)
        print(resp.message)
        return 0


def parse_assignment(text: str) -> tuple[str, Any]:
    """``name:=value`` with the value read as a YAML scalar (5 int, 5.0 double, true bool, else text) or a
    list of one type, as ``ros2 param set`` and ``--ros-args -p`` read values."""
    import yaml

    name, sep, raw = text.partition(':=')
    if not sep or not name.strip():
        raise CommandError(f'{text!r}: expected NAME:=VALUE, e.g. reward_ul:=5.0')
    name = name.strip()
    if not raw.strip():
        raise CommandError(f'{text!r}: no value; to remove an override use --remove {name}')
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    if isinstance(value, (dt.date, dt.datetime)):
        value = raw  # a date is text to a parameter
    scalar = (bool, int, float, str)
    if isinstance(value, list) and value and all(isinstance(v, scalar) for v in value):
        kinds = {type(v) for v in value}
        if len(kinds) > 1:
            raise CommandError(f'{text!r}: a list parameter holds one type, got {sorted(k.__name__ for k in kinds)}')
    elif not isinstance(value, scalar):
        raise CommandError(f'{text!r}: a parameter value is a bool, integer, double, string or a non-empty list of '
                           f'one of those, not {type(value).__name__}')
    ints = [value] if isinstance(value, int) else value if isinstance(value, list) else []
    if any(isinstance(v, int) and not isinstance(v, bool) and not -2 ** 63 <= v < 2 ** 63 for v in ints):
        raise CommandError(f'{text!r}: out of range for a 64-bit integer parameter')
    return name, value


class ParamsVerb(TerminalVerb):
    """Set or remove a subject's task parameter overrides (checked by the pilot at the next session)."""

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('subject', help='subject name')
        parser.add_argument('assignments', nargs='*', metavar='NAME:=VALUE',
                            help='overrides to set; values are YAML: 5 integer, 5.0 double, true bool, text string')
        parser.add_argument('--remove', nargs='+', action='extend', default=[], metavar='NAME',
                            help='overrides to remove (the protocol step\'s value applies again)')

    def run(self, args: argparse.Namespace) -> int:
        from autopilot_msgs.srv import SetSubjectParameters
        from rclpy.parameter import Parameter

        _check_subject(args.subject)
        # `--remove a b:=1` takes b:=1 as a name to remove: an assignment is never a parameter name.
        assignments = list(args.assignments) + [r for r in args.remove if ':=' in r]
        removed = [r for r in args.remove if ':=' not in r]
        values = dict(parse_assignment(a) for a in assignments)
        if not values and not removed:
            raise CommandError('nothing to do: give NAME:=VALUE overrides and/or --remove NAME')
        if both := sorted(set(values) & set(removed)):
            raise CommandError(f'{", ".join(both)}: both set and removed; give each parameter once')
        try:
            params = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        except (TypeError, ValueError) as exc:
            raise CommandError(f'invalid parameter value: {exc}') from None
        params += [Parameter(name).to_parameter_msg() for name in removed]  # not set: remove the override
        resp = call_terminal(SetSubjectParameters, 'set_subject_parameters', SetSubjectParameters.Request(
            subject=args.subject, parameters=params), args)
        print(resp.message)
        return 0


def _grams(text: str) -> float:
    """A weight from the command line (the terminal checks too; this answers without waiting for discovery)."""
    try:
        value = float(text)
    except ValueError:
        raise CommandError(f'expected a weight in grams, e.g. 23.5, got {text!r}') from None
    if not math.isfinite(value) or not 0 < value < 100000:
        raise CommandError(f'a weight is more than 0 and less than 100000 grams, got {text!r}')
    return value


class WeighVerb(TerminalVerb):
    """Record a subject's weight (grams); the answer gives it as a fraction of the first (baseline) weight."""

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('subject', help='subject name')
        parser.add_argument('grams', help='the weight in grams')
        parser.add_argument('--when', choices=('start', 'stop', 'check'), default='check',
                            help='before a session (start), after one (stop) or any other time (check, the default)')
        parser.add_argument('--session', default='', metavar='ID', help='the session it belongs to')

    def run(self, args: argparse.Namespace) -> int:
        from autopilot_msgs.srv import RecordWeight

        _check_subject(args.subject)
        resp = call_terminal(RecordWeight, 'record_weight', RecordWeight.Request(
            subject=args.subject, grams=_grams(args.grams), when=args.when, session_id=args.session), args)
        print(resp.message)
        return 0


class NoteVerb(TerminalVerb):
    """Add a note (at most 1000 characters) to a subject's history."""

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('subject', help='subject name')
        parser.add_argument('text', help='the note (quote it)')
        parser.add_argument('--session', default='', metavar='ID', help='the session it is about')

    def run(self, args: argparse.Namespace) -> int:
        from autopilot_msgs.srv import AddNote

        _check_subject(args.subject)
        if not args.text.strip() or len(args.text) > 1000:
            raise CommandError(f'a note is 1-1000 characters, got {len(args.text.strip())}')
        resp = call_terminal(AddNote, 'add_note', AddNote.Request(
            subject=args.subject, text=args.text, session_id=args.session), args)
        print(resp.message)
        return 0


class RigVerb(TerminalVerb):
    """Put a subject on a rig (a pilot) in the lab's roster, or on none ("" or --none)."""

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('subject', help='subject name')
        parser.add_argument('pilot', nargs='?', help='pilot name ("" for none)')
        parser.add_argument('--none', action='store_true', help='take the subject off every rig')

    def run(self, args: argparse.Namespace) -> int:
        from autopilot_msgs.srv import SetSubjectPilot

        _check_subject(args.subject)
        if args.none == (args.pilot is not None):
            raise CommandError('give a PILOT or --none (one of them)')
        resp = call_terminal(SetSubjectPilot, 'set_subject_pilot', SetSubjectPilot.Request(
            subject=args.subject, pilot='' if args.none else args.pilot), args)
        print(resp.message)
        return 0


class SubjectCommand(CommandExtension):
    """List, show, create subjects; assign protocols, set steps and parameters, weigh, note, put on a rig (through
    the terminal)."""

    verbs = {'list': ListVerb, 'show': ShowVerb, 'create': CreateVerb, 'assign': AssignVerb, 'step': StepVerb,
             'params': ParamsVerb, 'weigh': WeighVerb, 'note': NoteVerb, 'rig': RigVerb}
