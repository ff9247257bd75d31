"""Session control: start a subject's session on a pilot, stop, pause and resume it, as coroutines of the
terminal's services (they wait on the pilot's answers without holding the executor).

Starting loads the subject's protocol onto the pilot, waits (briefly) until the receiver records the pilot's
topics, and sends the session goal; a rejected goal carries no text, so the reason is read from the pilot's
first heartbeat after it (:func:`rejection_reason`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import rclpy.parameter
from action_msgs.srv import CancelGoal
from autopilot_msgs.action import RunSession
from autopilot_msgs.msg import PilotStatus
from autopilot_msgs.srv import LoadProtocol, PilotCommand, StartSession
from rcl_interfaces.msg import Parameter as ParameterMsg
from rclpy.node import Node
from rclpy.task import Future
from std_srvs.srv import Trigger

from autopilot_core import aio, guard, pilot_states, stamps
from autopilot_core.checks import finite, text

from .ownership import MAX_NAME
from .pilots import PilotLink, Pilots
from .recorder import subject_error
from .storage import StoreError
from .subject_services import SubjectServices, checked_subject
from .subjects import ProtocolFile, SubjectState, check_step, read_protocol

#: How long start_session waits for the recorder to receive every topic of the pilot that is in the graph.
RECORD_WAIT_S = 3.0
RECORD_POLL_S = 0.05
#: How long start_session waits for the heartbeat that says why the pilot rejected its session goal, and how
#: long after the answer it takes the newest such heartbeat (see :func:`rejection_reason`).
REJECTION_WAIT_S = 2.0
REJECTION_SETTLE_S = 0.1
#: Longest wait for one answer of a pilot.
CALL_TIMEOUT_S = 10.0
Log = Callable[[str, str], None]
#: What start_session answers with ``success = False`` and the reason (ProtocolFileError is a ValueError).
START_ERRORS = (LookupError, ValueError, StoreError, TimeoutError, RuntimeError)
#: ... and stop/pause/resume_session.
COMMAND_ERRORS = (LookupError, RuntimeError, TimeoutError)


def param_msg(name: str, value: Any) -> ParameterMsg:
    return rclpy.parameter.Parameter(name, value=value).to_parameter_msg()


def session_goal(req: StartSession.Request, st: SubjectState, proto: ProtocolFile) -> RunSession.Goal:
    """The pilot's session goal: the subject's protocol, step and parameter overrides, and the request's limits."""
    return RunSession.Goal(subject=req.subject, protocol=proto.name, step=st.step, max_trials=req.max_trials,
                           max_duration_s=req.max_duration_s,
                           parameters=[param_msg(k, v) for k, v in sorted(st.parameters.items())])


def session_plan(subject: str, st: SubjectState, proto: ProtocolFile, step_name: str) -> dict[str, Any]:
    """What the terminal keeps of the session it sends (``PilotLink.planned``): the session is recorded when its
    first news names this subject and protocol, with this provenance."""
    return {'subject': subject, 'step_name': step_name, 'subject_state': st.as_dict(), 'steps': list(proto.steps),
            'protocol_file': {'name': proto.name, 'file': str(proto.path), 'sha256': proto.sha256,
                              'text': proto.text}}


def rejection_reason(heard: Iterable[tuple[float, PilotStatus]], pilot: str, sent_mono: float,
                     sent_ns: int) -> str | None:
    """Why ``pilot`` rejected the goal sent at ``sent_*``, by the heartbeats ``heard`` (monotonic, msg); None
    while none is this goal's answer.

    Only one stamped after the goal was sent is (the heartbeats before still carry the previous rejection's
    reason); the newest such one is taken: the pilot publishes the reason before it answers, but over another
    channel, so a periodic heartbeat sent just before may arrive first."""
    fresh = [m for t, m in list(heard) if t >= sent_mono and stamps.to_ns(m.header.stamp) >= sent_ns
             and m.pilot == pilot]
    if not fresh:
        return None
    said = max(fresh, key=lambda m: stamps.to_ns(m.header.stamp)).message
    said = said if len(said) <= guard.MAX_REASON else said[:guard.MAX_REASON] + '...'
    reason = said.removeprefix('session rejected: ')
    if said.startswith('session rejected') and reason:
        return reason
    return f'its heartbeat after the request gives no reason ({said or "no message"}); see the pilot\'s log'


def _next_heartbeat(link: PilotLink) -> Future:
    """A future done when the pilot's next heartbeat is heard."""
    heard = Future()
    link.listeners.append(lambda: None if heard.done() else heard.set_result(True))
    return heard


class SessionControl:
    """start/stop/pause/resume of the pilots' sessions. ``online(link)``: whether the pilot is up;
    ``not_recorded(link)``: the pilot's topics in the graph the receiver does not receive yet."""

    def __init__(self, node: Node, pilots: Pilots, subjects: SubjectServices, protocol_dir: Path, *,
                 online: Callable[[PilotLink], bool], not_recorded: Callable[[PilotLink], list[str]],
                 timeout_s: float, log: Log) -> None:
        self.node = node
        self.pilots = pilots
        self.subjects = subjects
        self.protocol_dir = protocol_dir
        self.online = online
        self.not_recorded = not_recorded
        self.timeout_s = timeout_s
        self._log = log
        self._starting: set[str] = set()  # namespaces of pilots a start is under way on

    async def _answer(self, future: Future, what: str) -> Any:
        if not await aio.wait_for(self.node, future, CALL_TIMEOUT_S):
            future.cancel()
            raise TimeoutError(f'{what}: no answer within {CALL_TIMEOUT_S:.0f} s')
        return future.result()

    async def _call(self, client: Any, request: Any, what: str) -> Any:
        response = await aio.call(self.node, client, request, CALL_TIMEOUT_S)
        if response is None:
            raise TimeoutError(f'{what}: no answer within {CALL_TIMEOUT_S:.0f} s')
        return response

    async def start_session(self, req: StartSession.Request, resp: StartSession.Response) -> StartSession.Response:
        """The start_session service: InputError for a malformed request, else ``success`` and what happened."""
        checked_subject(req.subject)
        text('pilot', req.pilot, MAX_NAME, empty=False)
        finite('max_duration_s', req.max_duration_s, 0.0)
        try:
            resp.message, resp.success = await self.start(req), True
        except START_ERRORS as exc:
            resp.message = str(exc)
        return resp

    async def command_session(self, what: str, req: PilotCommand.Request,
                              resp: PilotCommand.Response) -> PilotCommand.Response:
        """The stop/pause/resume_session services (``what``)."""
        text('pilot', req.pilot, MAX_NAME, empty=False)
        try:
            resp.success, resp.message = await self.command(what, req.pilot)
        except COMMAND_ERRORS as exc:
            resp.message = str(exc)
        return resp

    async def start(self, req: StartSession.Request) -> str:
        """Start the session; the text to answer, or LookupError/ValueError/RuntimeError/TimeoutError saying why not."""
        link = self.pilots.find(req.pilot)
        if link.status is None or not self.online(link):
            raise RuntimeError(f'pilot {link.name} is offline (no heartbeat for {self.timeout_s} s); start its rig')
        if link.status.state != pilot_states.IDLE or link.ns in self._starting:
            raise RuntimeError(f'pilot {link.name} is busy (running {link.status.subject or "a session being started"}'
                               '); stop that session first')
        if (why := subject_error(req.subject)) is not None:
            raise ValueError(why)
        self._starting.add(link.ns)  # one start at a time per pilot: the pilot keeps one plan
        try:
            return await self._start(link, req)
        finally:
            self._starting.discard(link.ns)

    async def _start(self, link: PilotLink, req: StartSession.Request) -> str:
        st = await self.subjects.state(req.subject)
        proto = read_protocol(st.protocol_file or st.protocol, self.protocol_dir) if st.protocol else None
        if proto is None:
            raise ValueError(f'{req.subject} has no protocol: `autopilot subject assign {req.subject} PROTOCOL`')
        if proto.sha256 != st.protocol_sha256:
            self._log('warn', f'{proto.path} changed since it was assigned to {req.subject}; using it as it is now '
                              '(its text and hash are stored with the session)')
        step_name = check_step(proto, st.step)
        if not link.load.service_is_ready():
            raise RuntimeError(f'pilot {link.name} does not serve load_protocol; is it an autopilot pilot?')
        loaded = await self._call(link.load, LoadProtocol.Request(name=proto.name, yaml_text=proto.text),
                                  f'{link.name} load_protocol')
        if not loaded.success:
            raise ValueError(f'protocol {proto.path} rejected by pilot {link.name}: {loaded.message}')
        if missing := await self._not_recorded(link):
            self._log('warn', f'{link.name}: not receiving {", ".join(missing)} yet (no publisher matched within '
                              f'{RECORD_WAIT_S:.0f} s); the session starts, they are recorded once they appear')
        link.planned = session_plan(req.subject, st, proto, step_name)
        if not link.action.server_is_ready():
            raise RuntimeError(f'pilot {link.name} has no session action server')
        sent = (time.monotonic(), time.time_ns())
        handle = await self._answer(link.action.send_goal_async(session_goal(req, st, proto)),
                                    f'{link.name} session goal')
        if not handle.accepted:
            link.planned = {}
            raise RuntimeError(f'pilot {link.name} rejected the session: {await self._rejection(link, *sent)}')
        handle.get_result_async().add_done_callback(lambda f: self._on_result(link, req.subject, f))
        return f'{req.subject} on {link.name}: {proto.name} step {st.step} ({step_name})'

    async def _not_recorded(self, link: PilotLink) -> list[str]:
        """The pilot's record topics in the graph the receiver does not receive yet, after up to RECORD_WAIT_S.

        The receiver subscribes to a topic once it has discovered a publisher and receives once matched; right
        after the terminal or a rig came up that can take a few seconds (DDS discovery on a loaded host), and a
        session started meanwhile would miss its first hardware events in the bag. The receiver is another
        process and tells no event for a match, so this looks again every RECORD_POLL_S."""
        deadline = time.monotonic() + RECORD_WAIT_S
        while (missing := self.not_recorded(link)) and time.monotonic() < deadline:
            await aio.sleep(self.node, RECORD_POLL_S)
        return missing

    async def _rejection(self, link: PilotLink, sent_mono: float, sent_ns: int) -> str:
        """:func:`rejection_reason`, waiting for the heartbeat that gives it (at least REJECTION_SETTLE_S)."""
        deadline = time.monotonic() + REJECTION_WAIT_S
        await aio.sleep(self.node, REJECTION_SETTLE_S)
        while (reason := rejection_reason(link.heard, link.name, sent_mono, sent_ns)) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return f'no heartbeat with its reason within {REJECTION_WAIT_S:g} s; see the pilot\'s log'
            await aio.wait_for(self.node, _next_heartbeat(link), remaining)
        return reason

    def _on_result(self, link: PilotLink, subject: str, fut: Any) -> None:
        try:
            r = fut.result().result
        except Exception as exc:  # noqa: BLE001 - only logged
            self._log('warn', f'session of {subject} on {link.name}: no result ({exc})')
            return
        self._log('info', f'session {r.session_id} of {subject} on {link.name} finished: {r.message}')

    async def command(self, what: str, pilot: str) -> tuple[bool, str]:
        """stop / pause / resume the session on ``pilot``: (success, message); LookupError etc. saying why not."""
        link = self.pilots.find(pilot)
        if what == 'stop':
            if not link.cancel.service_is_ready():
                raise RuntimeError(f'pilot {link.name} has no session action server')
            # A zero goal id and stamp cancels every goal of the server: sessions started elsewhere too.
            r = await self._call(link.cancel, CancelGoal.Request(), f'{link.name} cancel')
            ok = r.return_code == CancelGoal.Response.ERROR_NONE and bool(r.goals_canceling)
            return ok, (f'{link.name}: stopping after the current trial' if ok else
                        f'{link.name}: no session to stop (cancel return code {r.return_code})')
        client = link.pause if what == 'pause' else link.resume
        if not client.service_is_ready():
            raise RuntimeError(f'pilot {link.name} does not serve {what}')
        r = await self._call(client, Trigger.Request(), f'{link.name} {what}')
        return r.success, f'{link.name}: {r.message}'
