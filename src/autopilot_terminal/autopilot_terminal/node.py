"""The ``terminal`` process: pilot registry, subjects, session control and the recorder, on the lab's machine.

Node ``/terminal`` finds pilots by their ``<ns>/status`` heartbeats and publishes the registry on
``/terminal/pilots`` (:mod:`.pilots`); stores every trial and step change a pilot reports (:mod:`.ownership`
says which it takes) and acknowledges it on ``<ns>/trial_acks`` once the file is fsync'd; begins and ends each
session's group in the subject's file as the heartbeats show it (:mod:`.lifecycle`, with its provenance:
:mod:`.provenance_collect`); serves the subject services (:mod:`.subject_services`) and ``~/start_session``,
``~/stop_session``, ``~/pause_session``, ``~/resume_session`` (:mod:`.sessions`) as coroutines: while one
waits for a pilot or the recorder, the node serves everything else. The subjects (:mod:`.catalog`, read on the
recorder's thread) are published on ``/terminal/subjects`` (latched) at start, within a second of a change (a
service, a session begun or ended, a graduation) and every 10 s; ``weigh_at`` tells GUIs when to ask for
weights. Every endpoint goes through
:mod:`autopilot_core.guard` (a refusal is logged, counted on ``/diagnostics`` and answered with the reason).

A child process, node ``/terminal/recorder`` (:mod:`.receiver`), subscribes raw to each pilot's record topics
and hands the CDR bytes over a pipe to this process, where :mod:`.routing` sends each message to the session
running on that pilot. :class:`~.recorder.Recorder` is the only writer of subject files.

Run with ``ros2 run autopilot_terminal terminal`` / ``autopilot run autopilot_terminal terminal`` or
``launch/terminal.launch.yaml``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from action_msgs.srv import CancelGoal
from autopilot_msgs.action import RunSession
from autopilot_msgs.msg import PilotRegistry, PilotStatus, StepChange, SubjectList, TrialAck, TrialData
from autopilot_msgs.srv import (
    AddNote,
    AssignProtocol,
    ClockSync,
    CreateSubject,
    GetEvents,
    GetProtocol,
    GetSubject,
    GetTrials,
    ListProtocols,
    LoadProtocol,
    PilotCommand,
    RecordWeight,
    SaveProtocol,
    SetSubjectParameters,
    SetSubjectPilot,
    SetSubjectStep,
    StartSession,
)
from rclpy.action import ActionClient
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile
from std_srvs.srv import Trigger

from autopilot_core import aio, guard, provenance, qos
from autopilot_core.executors import make_executor, run_nodes, spin
from autopilot_core.params import ParamSpec, declare

from . import clocksync, provenance_collect
from .acks import Intake
from .fetch import EventFetcher
from .lifecycle import SessionLifecycle
from .ownership import Ownership, scan_sessions
from .pilots import PilotLink, Pilots
from .receiver import Receiver
from .recorder import Recorder
from .routing import PRE_SESSION_NS, SessionTable, TopicSetup
from .sessions import SessionControl
from .subject_services import WEIGH_AT, SubjectServices

RECORD_TOPICS = ['status', 'trials', 'step_changes', 'trial_acks', 'gpio/events', 'gpio/output', 'gpio/reward',
                 'sound/play', 'sound/onsets', 'sound/stop']
VIDEO_TOPICS = ['camera/image']
#: Clock exchanges with a pilot as a session begins (the least delayed is kept), and how long one may take.
SESSION_CLOCK_EXCHANGES = 4
CLOCK_CALL_S = 2.0
PARAMS = [
    ParamSpec('data_dir', '~/autopilot/data', 'Directory of the subject files (<subject>.h5)', read_only=True),
    ParamSpec('protocol_dir', '~/autopilot/protocols', 'Directory of protocol files (<name>.yaml)', read_only=True),
    ParamSpec('pilot_timeout_s', 5.0, 'A pilot whose heartbeat is older than this is offline', unit='s',
              min=0.5, max=3600.0),
    ParamSpec('clock_sync_s', 30.0, "Interval of the clock exchange with each online pilot (its offset from this "
              "host's clock, stored with each session)", unit='s', min=1.0, max=3600.0, read_only=True),
    ParamSpec('clock_warn_ms', clocksync.WARN_MS, "Warn when a pilot's clock is further than this from this host's",
              unit='ms', min=0.1, max=600_000.0),
    ParamSpec('record_topics', RECORD_TOPICS, "Each pilot's topics recorded in the session bag, relative to its "
              'namespace', read_only=True),
    ParamSpec('stream_topics', [''], "Each pilot's continuous topics (a wheel, a lick sensor) recorded in the bag and "
              'also as a typed table of the session, one row per message, a column per field ([""]: none)',
              read_only=True),
    ParamSpec('video_topics', VIDEO_TOPICS, "Each pilot's camera topics (sensor_msgs Image or CompressedImage) recorded "
              'as MP4 next to the subject file with a per-frame timestamp table, not in the bag ([""]: none)',
              read_only=True),
    ParamSpec('end_grace_s', 1.0, 'Messages arriving this long after a session ended still go to it', unit='s',
              min=0.0, max=60.0, read_only=True),
    ParamSpec('writer_nice', 10, 'Nice value added to the thread writing subject files: when the CPU is short, '
              'receiving (which throttles the pilots when behind) goes first and the writer catches up in batches',
              min=0, max=19, read_only=True),
    ParamSpec('launch_file', '', 'Launch file whose text is stored with every session ("": none)', read_only=True),
    ParamSpec('weigh_at', 'both', 'When the GUI asks for a weight: before a session (start), after one (stop), both '
              'or none', choices=WEIGH_AT, read_only=True),
    ParamSpec('stop_grace_s', 3.0, 'On Ctrl-C/SIGTERM, how long the terminal waits for running sessions to end (a '
              "launch stops its pilots at the same time: their last trials and end come within this); the launcher's "
              'SIGTERM follows 5 s after its SIGINT', unit='s', min=0.0, max=60.0, read_only=True),
]
#: The EventsExecutor of rclpy 7.1 cannot run coroutine service callbacks (it sends the coroutine back as the
#: response); the SingleThreadedExecutor can. The terminal receives little itself (the receiver process takes the
#: pilots' streams), so it loses nothing by it.
EXECUTOR = 'single'
#: Heartbeats as the terminal takes them: qos.STATUS, but keeping a burst. Every heartbeat is an event to check
#: (a state change, or a forgery to refuse and count), and heartbeats sent back to back all arrive within one turn
#: of the executor, so at depth 1 all but the newest are lost even though no callback blocks.
STATUS_QUEUE = QoSProfile(history=qos.STATUS.history, depth=20, reliability=qos.STATUS.reliability,
                          durability=qos.STATUS.durability)
#: Longest the recorder's writer thread may take to answer a subject service.
RECORDER_TIMEOUT_S = 10.0
#: /terminal/subjects: at most once a second after a change, and at least this often.
SUBJECTS_PERIOD_S = 10.0


class TerminalNode(Node):
    """``/terminal``: see the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('terminal', **kwargs)
        p = declare(self, PARAMS)
        self.data_dir = Path(p['data_dir']).expanduser().resolve()  # tools ask for it from other directories
        self.protocol_dir = Path(p['protocol_dir']).expanduser().resolve()
        self.timeout_s = p['pilot_timeout_s']
        self.launch_file = p['launch_file']
        self.stop_grace_s = p['stop_grace_s']
        try:
            self.recorder = Recorder(self.data_dir, log=self._log, nice=p['writer_nice'])
        except OSError as exc:
            raise RuntimeError(f'terminal: cannot use data_dir {self.data_dir}: {exc}; set the parameter '
                               'data_dir to a writable directory') from exc
        # Every session the files hold (their messages, resent after a restart, are recorded), and those they say
        # are running: closed when their pilot's first heartbeat shows it is not running them any more.
        known, unfinished = scan_sessions(self.data_dir, self._log)
        self.ownership = Ownership(known)
        self.sessions = SessionTable(self.recorder, int(p['end_grace_s'] * 1e9))
        self.pilots = Pilots()
        self.topics = TopicSetup(self.recorder, self.sessions, self.pilots, record=p['record_topics'],
                                 streams=p['stream_topics'], video=p['video_topics'], log=self._log)
        self.lifecycle = SessionLifecycle(
            self.recorder, self.sessions, self.ownership, unfinished, log=self._log, refuse=guard.of(self).refuse,
            streamed=lambda topic: self.receiver.subscribed(topic) is True, on_begin=self._on_begin)
        self.intake = Intake(self.recorder, self.ownership, lambda: self.get_clock().now().to_msg())
        # GPIO events the live recording missed (a gap in their seq) are fetched from the pilot's journal.
        self.fetcher = EventFetcher(self.pilots.events_client, lambda gap, samples: self.recorder.recovered_events(
            gap.subject, gap.session_id, gap.topic, gap.run_id, samples), self._log)
        self.recorder.on_gap = self.fetcher.request
        self.receiver = Receiver(self.topics.all(), self.topics.handler, self.recorder.count_lost, self._log)
        self.host_provenance = provenance.collect()
        self.weigh_at = p['weigh_at']
        # Protocol files (up to 1 MB of YAML each) are parsed and checked off the executor: it keeps serving.
        self._protocol_pool = ThreadPoolExecutor(1, thread_name_prefix='protocols')
        self.subjects = SubjectServices(self._on_recorder, self.data_dir, self.protocol_dir,
                                        changed=self.subjects_changed, background=self._in_thread,
                                        pilot_names=lambda: [link.name for link in self.pilots])
        self._subjects_due = True  # a change since the last /terminal/subjects (and the first one)
        self._subjects_busy = False
        self._subjects_last = -SUBJECTS_PERIOD_S
        self.subjects_pub = self.create_publisher(SubjectList, '~/subjects', qos.STATUS)
        self.control = SessionControl(self, self.pilots, self.subjects, self.protocol_dir, online=self.online,
                                      not_recorded=self._not_recorded, timeout_s=self.timeout_s, log=self._log)
        self.registry_pub = self.create_publisher(PilotRegistry, '~/pilots', qos.STATUS)
        s = self.subjects
        services: list[tuple[str, Any, Callable[[Any, Any], Awaitable[Any]]]] = [
            ('create_subject', CreateSubject, s.create),
            # Same fields as create_subject (subject, biography_json -> success, message, path): no type of its own.
            ('update_biography', CreateSubject, s.update_biography), ('assign_protocol', AssignProtocol, s.assign),
            ('set_subject_step', SetSubjectStep, s.set_step),
            ('set_subject_parameters', SetSubjectParameters, s.set_parameters),
            ('start_session', StartSession, self.control.start_session),
            *((f'{what}_session', PilotCommand, functools.partial(self.control.command_session, what))
              for what in ('stop', 'pause', 'resume')),
            ('get_subject', GetSubject, s.get_subject), ('get_trials', GetTrials, s.get_trials),
            ('record_weight', RecordWeight, s.record_weight),
            ('add_note', AddNote, s.add_note), ('set_subject_pilot', SetSubjectPilot, s.set_pilot),
            ('list_protocols', ListProtocols, s.list_protocols), ('get_protocol', GetProtocol, s.get_protocol),
            ('save_protocol', SaveProtocol, s.save_protocol)]
        # Reentrant: a coroutine callback holds its group while it awaits, and the default (mutually exclusive)
        # group holds the timers and clients it awaits.
        group = ReentrantCallbackGroup()
        for name, srv_type, serve in services:
            guard.create_service(self, srv_type, f'~/{name}', self._logged(name, serve), callback_group=group)
        self.create_timer(1.0, self.tick)
        self.create_timer(p['clock_sync_s'], self._clock_round)
        self.create_timer(max(min(p['end_grace_s'], 0.2), 0.01), self._poll_lifecycle)
        self.receiver.start()
        t = self.topics
        self.get_logger().info(f'subject files in {self.data_dir}, protocols from {self.protocol_dir}; recording '
                               f'{", ".join(t.record)} of every pilot'
                               + (f', {", ".join(t.streams)} as streams' if t.streams else '')
                               + (f', {", ".join(t.video)} as video' if t.video else ''))

    def _log(self, level: str, text: str) -> None:
        # One call site per severity: rclpy raises ValueError ("Logger severity cannot be changed between calls")
        # when the same line logs at another severity than the first time.
        if level == 'info':
            self.get_logger().info(text)
        elif level == 'warn':
            self.get_logger().warning(text)
        else:
            self.get_logger().error(text)

    def _logged(self, what: str, serve: Callable[[Any, Any], Awaitable[Any]]) -> Callable[[Any, Any], Awaitable[Any]]:
        """A service coroutine whose answer is logged (a malformed request goes to the guard instead)."""
        async def logged(req: Any, resp: Any) -> Any:
            resp = await serve(req, resp)
            if hasattr(resp, 'success'):  # list_protocols only lists
                self._log('info' if resp.success else 'warn', f'{what}: {resp.message}')
            return resp
        return logged

    async def _on_recorder(self, fn: Callable[[Recorder], Any]) -> Any:
        """``fn(recorder)`` run on the recorder's writer thread, awaited without holding the executor."""
        future = aio.from_thread(self, self.recorder.call(fn))
        if not await aio.wait_for(self, future, RECORDER_TIMEOUT_S):
            raise TimeoutError(f'the recorder did not answer within {RECORDER_TIMEOUT_S:.0f} s (it is still writing; '
                               'see the terminal log); try again')
        return future.result()

    async def _in_thread(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` run on the protocol thread, awaited without holding the executor."""
        future = aio.from_thread(self, self._protocol_pool.submit(fn))
        if not await aio.wait_for(self, future, RECORDER_TIMEOUT_S):
            raise TimeoutError(f'reading protocols took more than {RECORDER_TIMEOUT_S:.0f} s; try again')
        return future.result()

    def close(self) -> None:
        """After Ctrl-C/SIGTERM: let running sessions end for ``stop_grace_s``, then stop receiving and writing.

        A launch stops its pilots with the terminal; each pilot ends its session as interrupted and sends its
        last trials and a heartbeat saying so, recorded while this spins. A session whose end does not come in
        time stays 'running' in its file and is closed when the terminal next sees its pilot."""
        def done() -> bool:
            return not self.lifecycle.ending and not any(link.session for link in self.pilots)
        if self.stop_grace_s and not done():
            executor = make_executor(EXECUTOR, context=self.context)
            spin(self, executor, until=done, timeout_sec=self.stop_grace_s)
            executor.shutdown(timeout_sec=1.0)
        for link in self.pilots:
            if link.session is not None:
                self.get_logger().warning(f'session {link.session[1]} of {link.session[0]} on {link.name} still runs '
                                          'as the terminal stops: left running in the file, closed when the terminal '
                                          'next sees the pilot (its trials are resent then)')
        self.fetcher.close()
        self._protocol_pool.shutdown(wait=False)
        self.receiver.close()  # first: what it received still goes to the recorder
        self.recorder.close()
        st = self.recorder.stats()
        self.get_logger().info(f'stopped: {st.trials} trials, {st.messages} messages recorded, {st.lost_messages} '
                               f'lost, {st.errors} errors'
                               + (f'; {st.superseded_messages} replaced by newer ones at keep-last publishers'
                                  if st.superseded_messages else '')
                               + (f'; {st.frames} video frames, {st.frames_dropped} dropped'
                                  if st.frames or st.frames_dropped else ''))

    # -- /terminal/subjects -------------------------------------------------------------------------

    def subjects_changed(self) -> None:
        """A subject changed (a service, a session begun or ended, a graduation): republish within a second."""
        self._subjects_due = True

    def _poll_lifecycle(self) -> None:
        ending = len(self.lifecycle.ending)
        self.lifecycle.poll(time.time_ns(), time.monotonic())
        if len(self.lifecycle.ending) != ending:  # a session's end was written (queued before the next read)
            self.subjects_changed()

    def _subjects_tick(self) -> None:
        """At most once a second: publish the subject list when something changed or it is due anyway."""
        now = time.monotonic()
        if self._subjects_busy or self.executor is None or not (
                self._subjects_due or now - self._subjects_last >= SUBJECTS_PERIOD_S):
            return
        self._subjects_due, self._subjects_busy, self._subjects_last = False, True, now
        self.executor.create_task(self._publish_subjects)

    async def _publish_subjects(self) -> None:
        try:
            msg = await self.subjects.subject_list()
        except TimeoutError as exc:
            self._log('warn', f'/terminal/subjects not published: {exc}')
            self._subjects_due = True
            return
        finally:
            self._subjects_busy = False
        msg.header.stamp = self.get_clock().now().to_msg()
        self.subjects_pub.publish(msg)

    def _not_recorded(self, link: PilotLink) -> list[str]:
        graph = {name for name, _ in self.get_topic_names_and_types()}
        return self.topics.missing(link, graph, self.receiver.publisher_count)

    # -- pilots ---------------------------------------------------------------------------------

    def tick(self) -> None:
        for topic, types in self.get_topic_names_and_types():
            if topic.endswith('/status') and 'autopilot_msgs/msg/PilotStatus' in types:
                ns = topic[:-len('/status')] or '/'
                # A topic only subscribed to (a device watching heartbeats under another name) is no pilot.
                if ns not in self.pilots and ns != '/terminal' and self.count_publishers(topic):
                    self._add_pilot(ns)
        self.sessions.drop_held(time.time_ns() - PRE_SESSION_NS)
        for endpoint, pilot, reason in self.intake.conflicts():  # told by the recorder's thread
            guard.of(self).refuse(endpoint, reason, pilot)
        self.publish_registry()
        self._subjects_tick()

    def _add_pilot(self, ns: str) -> None:
        base = ns.rstrip('/')
        link = PilotLink(
            ns=ns, name=base.rsplit('/', 1)[-1],
            ack_pub=self.create_publisher(TrialAck, f'{base}/trial_acks', qos.TRIALS),
            action=ActionClient(self, RunSession, f'{base}/session'),
            load=self.create_client(LoadProtocol, f'{base}/load_protocol'),
            pause=self.create_client(Trigger, f'{base}/pause'), resume=self.create_client(Trigger, f'{base}/resume'),
            cancel=self.create_client(CancelGoal, f'{base}/session/_action/cancel_goal'),
            events=self.create_client(GetEvents, f'{base}/journal_events'),
            clock_client=self.create_client(ClockSync, f'{base}/clock_sync'))
        link.subs = [
            guard.create_subscription(self, PilotStatus, f'{base}/status', lambda m: self.on_status(link, m),
                                      STATUS_QUEUE, sender=lambda m: m.pilot),
            guard.create_subscription(self, TrialData, f'{base}/trials', lambda m: self.intake.trial(
                link, m, time.time_ns()), qos.TRIALS, sender=lambda m: m.pilot),
            guard.create_subscription(self, StepChange, f'{base}/step_changes', lambda m: self._step_change(link, m),
                                      qos.TRIALS, sender=lambda m: m.pilot)]
        self.pilots.add(link)
        self.receiver.set_pilots(self.pilots.namespaces())
        self.get_logger().info(f'pilot found at {ns}')

    def _step_change(self, link: PilotLink, msg: StepChange) -> None:
        self.intake.step_change(link, msg, time.time_ns())
        self.subjects_changed()  # a graduation: stored (queued) before the list is next read

    def online(self, link: PilotLink) -> bool:
        if link.status is None or time.monotonic() - link.seen > self.timeout_s:
            return False
        return any(i.node_namespace == link.ns or i.node_namespace.startswith(link.base + '/')
                   for i in self.get_publishers_info_by_topic(f'{link.base}/status'))

    def publish_registry(self) -> None:
        msg, lines = self.pilots.registry(time.monotonic(), self.online)
        for line in lines:
            self.get_logger().info(line)
        msg.header.stamp = self.get_clock().now().to_msg()
        self.registry_pub.publish(msg)

    # -- heartbeats (trials and step changes: .acks) -----------------------------------------------

    def on_status(self, link: PilotLink, msg: PilotStatus) -> None:
        """A heartbeat: may begin or end the session recorded for the pilot (:mod:`.lifecycle`), unless the checks
        (:meth:`.ownership.Ownership.heartbeat`) refuse it."""
        link.hear(time.monotonic(), msg)
        running = self.ownership.heartbeat(link, msg)
        old = link.status
        link.status, link.seen = msg, time.monotonic()
        link.name, link.named = msg.pilot, True
        self.lifecycle.heartbeat(link, msg, running, time.time_ns(), time.monotonic())
        if old is None and self.executor is not None:  # first heard: measure its clock now, not at the next round
            self.executor.create_task(self._measure_clock, link, SESSION_CLOCK_EXCHANGES)
        if old is None or old.state != msg.state:
            self.publish_registry()
            self.subjects_changed()  # a session may have begun or ended

    # -- clocks (.clocksync) ------------------------------------------------------------------------

    def _clock_round(self) -> None:
        executor = self.executor
        if executor is None:
            return
        for link in list(self.pilots):
            if self.online(link):
                executor.create_task(self._measure_clock, link, 1)

    async def _measure_clock(self, link: PilotLink, exchanges: int) -> None:
        """``exchanges`` clock exchanges with the pilot; warns (once per crossing) past clock_warn_ms."""
        for _ in range(exchanges):
            t1 = time.time_ns()
            res = await aio.call(self, link.clock_client, ClockSync.Request(client_send_ns=t1), CLOCK_CALL_S)
            t4 = time.time_ns()
            if res is not None and res.client_send_ns == t1:  # an answer to this request, not a stale one
                link.clock.add(clocksync.sample(t1, res.server_receive_ns, res.server_send_ns, t4))
        best = link.clock.best
        if best is None:
            return
        off = abs(best.offset_ns) / 1e6 > self.get_parameter('clock_warn_ms').value
        if off and not link.clock_warned:
            self.get_logger().warning(clocksync.describe(link.name, best))
        elif not off and link.clock_warned:
            self.get_logger().info(f'pilot {link.name}: clock within {best.offset_ns / 1e6:+.1f} ms of the terminal\'s '
                                   'again')
        link.clock_warned = off

    def _on_begin(self, link: PilotLink, msg: PilotStatus, planned: dict[str, Any]) -> None:
        """A session began: its provenance now, and its nodes' parameters once fetched (a task on the executor)."""
        assert link.session is not None
        subject, sid = link.session
        self.recorder.provenance(subject, sid, provenance_collect.session_provenance(
            self.host_provenance, self.launch_file, link, msg, planned))

        async def parameters() -> None:
            self.recorder.provenance(subject, sid, await provenance_collect.collect(self, link))
            # The pilot's clock against this one as the session starts: its stamps are read with this offset.
            await self._measure_clock(link, SESSION_CLOCK_EXCHANGES)
            self.recorder.provenance(subject, sid, {'clock': link.clock.summary()})
        if self.executor is not None:
            self.executor.create_task(parameters)


def main(args: list[str] | None = None) -> int:
    return run_nodes([TerminalNode], args, executor_kind=EXECUTOR)


if __name__ == '__main__':
    raise SystemExit(main())
