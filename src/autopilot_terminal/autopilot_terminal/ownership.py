"""Which sessions the terminal records, and which heartbeats, trials and step changes it takes for them.

Records change only through their owners (DESIGN.md, "Bad input and trust"): the terminal takes messages only
of sessions it started or finds in a subject file (:class:`KnownSession`), only from the topics of the pilot
that runs them and naming that pilot, only within the steps of the session's protocol. Every check raises
InputError naming what is wrong; :class:`Ownership` also turns what it takes into the store's rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autopilot_msgs.msg import PilotStatus, StepChange, TrialData

from autopilot_core import pilot_states, stamps, trial_fields
from autopilot_core.checks import MAX_TEXT, InputError, text

from .pilots import PilotLink
from .recorder import subject_error
from .storage import TRIAL_COLUMNS, SubjectReader

#: How a pilot's last_session_state (PilotStatus) is recorded as a session's end state in the subject file.
END_STATES = {'ended': 'ended', 'cancelled': 'ended', 'error': 'aborted', 'interrupted': 'interrupted'}
#: Bounds of what arrives on a pilot's topics: fields of one trial, characters of a trial field's name and of
#: its string value, of names (pilot, task, protocol, step), of a session id, of a step change's reason.
MAX_TRIAL_FIELDS = 1000
MAX_FIELD_NAME = 64
MAX_FIELD_TEXT = MAX_TEXT
MAX_NAME = 256
MAX_SESSION_ID = 128
MAX_REASON = 1024
#: Columns every trial table has: a task's field must not be named like one.
FIXED_TRIAL_COLUMNS = frozenset(name for name, _ in TRIAL_COLUMNS)


@dataclass(frozen=True)
class KnownSession:
    """A session whose messages the terminal records: one it started, or one a subject file holds."""

    subject: str
    session_id: str
    pilot: str
    protocol: str = ''
    steps: tuple[str, ...] | None = None  # the protocol's step names; None: not recorded (files of older versions)


def _session_steps(r: SubjectReader, sid: str, meta: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The step names a session's messages are checked against: its ``steps`` attribute, else (sessions recorded
    before there was one) the subject state stored with its provenance."""
    try:
        if 'steps' in meta:
            return tuple(str(n) for n in json.loads(meta['steps']))
        state = r.provenance(sid).get('subject_state') or {}
        if state.get('protocol') == meta.get('protocol') and state.get('steps'):
            return tuple(str(n) for n in state['steps'])
    except (ValueError, TypeError, KeyError, AttributeError):
        pass
    return None


def end_state(msg: PilotStatus, session_id: str) -> str:
    """The end state to record for ``session_id`` by a heartbeat that shows it is no longer running."""
    if msg.last_session_id == session_id and msg.last_session_state in END_STATES:
        return END_STATES[msg.last_session_state]
    return 'aborted' if msg.state == pilot_states.ERROR else 'ended'


def scan_sessions(data_dir: Path, log: Callable[[str, str], None]
                  ) -> tuple[dict[str, KnownSession], dict[str, list[tuple[str, str, int]]]]:
    """Every session of the subject files (by id), and those whose state is still 'running', by pilot: (subject,
    session id, the last receive time recorded of it)."""
    known: dict[str, KnownSession] = {}
    found: dict[str, list[tuple[str, str, int]]] = {}
    for path in sorted(data_dir.glob('*.h5')):
        try:
            with SubjectReader(path) as r:
                for sid in r.sessions():
                    meta = r.session(sid)
                    known[sid] = KnownSession(r.subject, sid, str(meta.get('pilot', '')), str(meta.get('protocol', '')),
                                              _session_steps(r, sid, meta))
                    if meta.get('state') != 'running':
                        continue
                    last = int(meta.get('started_ns', 0))
                    recv = r.trials(sid).get('recv_ns')
                    if recv is not None and len(recv):
                        last = max(last, int(recv.max()))
                    last = max([last, *(t.last_ns for t in r.topics(sid))])
                    found.setdefault(str(meta.get('pilot', '')), []).append((r.subject, sid, last))
        except Exception as exc:  # noqa: BLE001 - the recorder names the problem when the file is used
            log('warn', f'{path}: cannot read its sessions (messages of them are not recorded until the terminal '
                        f'restarts with a readable file): {exc}')
    return known, found


def check_sender(link: PilotLink, kind: str, pilot: str) -> None:
    """InputError unless a message on ``link``'s topics names its pilot (the one its first heartbeat named)."""
    topic = f'{link.base}/'
    if not pilot:
        raise InputError(f'{kind} on {topic}... names no pilot (its `pilot` field is empty): not recorded; a '
                         'pilot names itself in every message, so this comes from something else on the domain')
    text(f'{kind}.pilot', pilot, MAX_NAME)
    if link.named and pilot != link.name:
        raise InputError(f'{kind} names pilot {pilot!r} but came on the topics of pilot {link.name} '
                         f'({topic}...): not recorded; a second rig or a script publishes there (give each rig '
                         'its own namespace or ROS_DOMAIN_ID)')


def in_protocol(known: KnownSession, kind: str, protocol: str, step: int, step_name: str) -> None:
    """InputError unless ``step`` (named ``step_name``) is a step of the session's protocol."""
    if known.steps is None:  # a session recorded before its steps were
        return
    if known.protocol and protocol != known.protocol:
        raise InputError(f'{kind}: protocol {protocol!r} is not the protocol of session {known.session_id} '
                         f'({known.protocol}): not recorded')
    if not 0 <= step < len(known.steps):
        raise InputError(f'{kind}: step {step} is not a step of protocol {known.protocol} (steps 0..'
                         f'{len(known.steps) - 1}): not recorded')
    if step_name != known.steps[step]:
        raise InputError(f'{kind}: step {step} of protocol {known.protocol} is {known.steps[step]!r}, not '
                         f'{step_name!r}: not recorded')


@dataclass
class TrialRecord:
    """What the recorder is given for one taken TrialData or StepChange."""

    known: KnownSession
    meta: dict[str, Any]
    rows: list[dict[str, Any]]
    fields: list[tuple[str, int, str]]  # trials: the store's schema [(name, type code, unit)]; steps: []


class Ownership:
    """The sessions the terminal records (``known``, by id) and the checks of what pilots send for them."""

    def __init__(self, known: dict[str, KnownSession]) -> None:
        self.known = known

    def planned(self, link: PilotLink, subject: str, sid: str, protocol: str) -> KnownSession | None:
        """The session start_session sent to ``link``, when ``sid`` is its first news of it (a heartbeat or, should
        the heartbeat be delayed, its first trial), now known; None otherwise."""
        planned = link.planned
        if not planned or 'session_id' in planned or (planned['subject'], planned['protocol_file']['name']) != \
                (subject, protocol):
            return None
        planned['session_id'] = sid
        known = self.known[sid] = KnownSession(subject, sid, link.name, protocol, tuple(planned['steps']))
        return known

    def session_of(self, link: PilotLink, subject: str, sid: str, protocol: str) -> KnownSession | None:
        """The known session ``sid`` (or the one just planned on ``link``), None if the terminal does not record it."""
        return self.known.get(sid) or self.planned(link, subject, sid, protocol)

    def owner(self, link: PilotLink, kind: str, pilot: str, subject: str, session_id: str,
              protocol: str) -> KnownSession:
        """The known session a trial or step change belongs to, when it came from the pilot that runs it."""
        check_sender(link, kind, pilot)
        if (why := subject_error(subject)) is not None:
            raise InputError(f'{kind}: {why}')
        text(f'{kind}.session_id', session_id, MAX_SESSION_ID, empty=False)
        known = self.session_of(link, subject, session_id, protocol)
        if known is None:
            raise InputError(f'{kind} of session {session_id!r} of {subject}: no session this terminal started or '
                             f'found in a subject file; not recorded (start sessions with `autopilot session start` '
                             'so the terminal knows them)')
        if (known.subject, known.pilot) != (subject, link.name):
            raise InputError(f'{kind} of session {session_id} names subject {subject} on pilot {link.name}, but that '
                             f'is the session of {known.subject} on pilot {known.pilot}: not recorded')
        return known

    def heartbeat(self, link: PilotLink, msg: PilotStatus) -> str:
        """The session id a heartbeat says runs ('' for none); InputError when it is not the pilot's or
        contradicts the session the terminal records there."""
        check_sender(link, 'PilotStatus', msg.pilot)
        text('PilotStatus.session_id', msg.session_id, MAX_SESSION_ID)
        running = msg.session_id if msg.state in pilot_states.IN_SESSION else ''
        if msg.state in pilot_states.IN_SESSION and not running:
            raise InputError(f'heartbeat of pilot {link.name} says {pilot_states.name(msg.state)} but names no '
                             'session: ignored')
        if link.session is not None:
            if msg.session_id and msg.session_id != link.session[1]:
                raise InputError(f'heartbeat of pilot {link.name} names session {msg.session_id!r}, but the session '
                                 f'running there is {link.session[1]}: ignored (a second rig or a script publishes '
                                 f'on {link.base}/status?)')
        elif running and (known := self.known.get(msg.session_id)) is not None and \
                (known.subject, known.pilot) != (msg.subject, link.name):
            raise InputError(f'heartbeat says pilot {link.name} runs session {msg.session_id} of {msg.subject!r}, '
                             f'but that is the session of {known.subject} on pilot {known.pilot}: ignored')
        return running

    def trial(self, link: PilotLink, msg: TrialData, recv_ns: int) -> TrialRecord:
        """A TrialData checked (sizes first: they bound the cost of every other check and of storing) and as rows."""
        for name in ('task', 'protocol', 'step_name'):
            text(f'TrialData.{name}', getattr(msg, name), MAX_NAME)
        fields = trial_fields.checked(msg.fields, FIXED_TRIAL_COLUMNS, max_fields=MAX_TRIAL_FIELDS,
                                      max_name=MAX_FIELD_NAME, max_text=MAX_FIELD_TEXT)
        known = self.owner(link, 'TrialData', msg.pilot, msg.subject, msg.session_id, msg.protocol)
        in_protocol(known, 'TrialData', msg.protocol, msg.step, msg.step_name)
        row: dict[str, Any] = {'trial_number': msg.trial_number, 'start_ns': stamps.to_ns(msg.start),
                               'stamp_ns': stamps.to_ns(msg.header.stamp), 'recv_ns': recv_ns, 'step': msg.step,
                               'step_name': msg.step_name}
        row.update((name, value) for name, _, _, value in fields)
        meta = {'pilot': link.name, 'task': msg.task, 'protocol': msg.protocol, 'step': msg.step,
                'step_name': msg.step_name, 'started_ns': row['stamp_ns'], 'steps': known.steps}
        return TrialRecord(known, meta, [row], [(name, code, unit) for name, code, unit, _ in fields])

    def step_change(self, link: PilotLink, msg: StepChange, recv_ns: int) -> TrialRecord:
        """A StepChange checked and as a row."""
        for name in ('protocol', 'from_step_name', 'to_step_name'):
            text(f'StepChange.{name}', getattr(msg, name), MAX_NAME)
        text('StepChange.reason', msg.reason, MAX_REASON)
        if msg.seq < 1:
            raise InputError(f'StepChange.seq {msg.seq}: step changes are numbered from 1: not recorded')
        known = self.owner(link, 'StepChange', msg.pilot, msg.subject, msg.session_id, msg.protocol)
        in_protocol(known, 'StepChange from', msg.protocol, msg.from_step, msg.from_step_name)
        in_protocol(known, 'StepChange to', msg.protocol, msg.to_step, msg.to_step_name)
        stamp_ns = stamps.to_ns(msg.header.stamp)
        meta = {'pilot': link.name, 'protocol': msg.protocol, 'step': msg.from_step,
                'step_name': msg.from_step_name, 'started_ns': stamp_ns, 'steps': known.steps}
        row = {'seq': msg.seq, 'after_trial': msg.after_trial, 'from_step': msg.from_step, 'to_step': msg.to_step,
               'from_step_name': msg.from_step_name, 'to_step_name': msg.to_step_name, 'protocol': msg.protocol,
               'reason': msg.reason, 'stamp_ns': stamp_ns, 'recv_ns': recv_ns}
        return TrialRecord(known, meta, [row], [])
