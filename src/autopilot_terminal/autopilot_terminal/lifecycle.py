"""Each session's group in its subject file, begun and ended as the pilot's heartbeats show it start and stop.

A session's end is written once the recorder's stream has reached it (:meth:`.routing.SessionTable.closed`),
at the latest ``END_WAIT_S`` after the heartbeat that showed it; sessions a subject file still holds as
running from before the terminal started are closed when their pilot's first heartbeat shows them over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autopilot_msgs.msg import PilotStatus

from autopilot_core import pilot_states, stamps

from .ownership import Ownership, end_state
from .pilots import PilotLink
from .recorder import Recorder
from .routing import SessionTable

#: An ended session is closed at the latest this long after the terminal saw its end, even if the recorder's stream
#: has not reached the end by then (a pilot that vanished, a stream that stopped).
END_WAIT_S = 60.0
Log = Callable[[str, str], None]


@dataclass
class _Ending:
    link: PilotLink
    subject: str
    session_id: str
    state: str
    ended_ns: int
    give_up: float  # monotonic


class SessionLifecycle:
    """Begins and ends sessions in the recorder from heartbeats (:meth:`heartbeat`); :meth:`poll` writes the
    ends whose stream window is over. ``on_begin(link, msg, planned)`` is told each session begun (provenance);
    ``refuse(endpoint, reason, sender)`` each session a pilot runs that is not recorded."""

    def __init__(self, recorder: Recorder, sessions: SessionTable, ownership: Ownership,
                 unfinished: dict[str, list[tuple[str, str, int]]], *, log: Log,
                 refuse: Callable[[str, str, str], Any], streamed: Callable[[str], bool],
                 on_begin: Callable[[PilotLink, PilotStatus, dict[str, Any]], None]) -> None:
        self.recorder = recorder
        self.sessions = sessions
        self.ownership = ownership
        self.unfinished = unfinished
        self._log = log
        self._refuse = refuse
        self._streamed = streamed
        self._on_begin = on_begin
        self.ending: list[_Ending] = []

    def heartbeat(self, link: PilotLink, msg: PilotStatus, running: str, now_ns: int, now_mono: float) -> None:
        """A heartbeat the checks took (``running``: the session id it says runs, or '')."""
        if link.session is not None and (not running or msg.session_id != link.session[1]):
            self._end(link, end_state(msg, link.session[1]), now_ns, now_mono)
        if link.name in self.unfinished:
            for subject, sid, last_ns in self.unfinished.pop(link.name):
                if running and msg.session_id == sid:
                    continue  # still running: recording goes on (_begin below)
                self.recorder.end_session(subject, sid, last_ns, end_state(msg, sid), note=(
                    f'ended while no terminal was recording; ended_ns is the last thing recorded of it (the state '
                    f'of pilot {link.name} was {pilot_states.name(msg.state)!r} when the terminal came back)'))
                self._log('warn', f'session {sid} of {subject} on {link.name} ended while the terminal was down: '
                                  'closed it in the file (trials the pilot still holds are resent)')
        if running and link.session is None:
            self._begin(link, msg, now_ns)

    def _begin(self, link: PilotLink, msg: PilotStatus, now_ns: int) -> None:
        """Record the session a heartbeat says runs: one start_session sent to this pilot, or one a subject file
        holds as this pilot's (the terminal was restarted); any other is said once and not recorded."""
        subject, sid = msg.subject, msg.session_id
        known = self.ownership.session_of(link, subject, sid, msg.protocol)
        planned = link.planned if link.planned.get('session_id') == sid else {}
        if known is None:
            if sid not in link.unknown:
                if len(link.unknown) > 1000:
                    link.unknown.clear()
                link.unknown.add(sid)
                self._refuse(f'{link.base}/status', (
                    f'pilot {link.name} runs session {sid} of {subject!r} ({msg.protocol or msg.task}), which this '
                    'terminal did not start and no subject file holds: not recorded (start sessions with '
                    '`autopilot session start` so the terminal records them)'), link.name)
            return
        started_ns = stamps.to_ns(msg.header.stamp) or now_ns
        meta: dict[str, Any] = {'pilot': link.name, 'task': msg.task, 'protocol': msg.protocol, 'step': msg.step,
                                'step_name': planned.get('step_name', ''), 'started_ns': started_ns}
        if known.steps is not None:
            meta['steps'] = list(known.steps)
        self.recorder.begin_session(subject, sid, meta)
        self.sessions.start(link.ns, subject, sid, started_ns)
        link.session = (subject, sid)
        self._on_begin(link, msg, planned)
        self._log('info', f'session {sid} of {subject} on {link.name}: recording')

    def _end(self, link: PilotLink, state: str, now_ns: int, now_mono: float) -> None:
        assert link.session is not None
        subject, sid = link.session
        link.session = None
        link.planned = {}
        self.sessions.stop(link.ns, now_ns, streamed=self._streamed(f'{link.base}/status'))
        # Late messages of the session are still its own until the recorder's stream reaches its end (poll).
        self.ending.append(_Ending(link, subject, sid, state, now_ns, now_mono + END_WAIT_S))

    def poll(self, now_ns: int, now_mono: float) -> None:
        """Write the ends of sessions whose window in the recorder's stream is over (or that waited too long)."""
        waiting = []
        for e in self.ending:
            closed = self.sessions.closed(e.link.ns, e.session_id, now_ns)
            if not closed and now_mono < e.give_up:
                waiting.append(e)
                continue
            if not closed:
                self._log('warn', f'session {e.session_id} of {e.subject}: the recorder did not see the heartbeat '
                                  f'that ended it within {END_WAIT_S:.0f} s; closing it now (later messages of it '
                                  'are not recorded)')
            self.recorder.end_session(e.subject, e.session_id, e.ended_ns, e.state)
            self._log('info', f'session {e.session_id} of {e.subject} on {e.link.name}: {e.state}')
        self.ending = waiting
