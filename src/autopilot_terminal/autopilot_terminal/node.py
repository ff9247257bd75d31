"""The ``terminal`` process: pilot registry, subjects, session control and the recorder, on the lab's machine.

Two nodes share one process and one :class:`~.recorder.Recorder` (the only writer of subject files):

* ``/terminal`` (its own executor thread; its session services block on the pilots' replies, which the
  other node's thread receives):
  finds pilots by their ``<ns>/status`` heartbeats in the graph and publishes the registry on
  ``/terminal/pilots`` (online = heartbeat younger than ``pilot_timeout_s`` and node in the graph); stores
  every trial and step change a pilot reports and acknowledges it on ``<ns>/trial_acks`` only once the
  file is fsync'd (resent ones are acknowledged again, never stored twice); begins and ends each session's
  group in the subject's file as the heartbeats show it start and stop, with its provenance; serves
  ``~/create_subject``, ``~/assign_protocol``, ``~/set_subject_step``, ``~/set_subject_parameters``,
  ``~/start_session``, ``~/stop_session``, ``~/pause_session`` and ``~/resume_session``.

Records change only through their owners (DESIGN.md, "Bad input and trust"): anything on the domain may
publish on a pilot's topics, so the terminal records trials, step changes and heartbeats only of sessions it
started or finds in a subject file (:class:`KnownSession`), only from the topics of the pilot that runs them and
naming that pilot, only within the steps of the session's protocol; it never creates a subject file for what
arrives on a topic. A second, different copy of a stored trial or step change is kept apart as a conflict
(``sessions/<id>/conflicts``, counted in the session's ``conflicts``), never in place of the stored one. Every
endpoint goes through :mod:`autopilot_core.guard`: a refusal is one rate-limited log line, a count in
``/diagnostics`` and, for a service, ``success = False`` with the reason; sizes are bounded before use (names,
biography JSON, trial fields) so no message or request costs unbounded memory or time. What content alone
cannot tell apart (a script publishing exactly what the pilot would) needs DDS Security (SROS2).
* ``/terminal/clients`` (EventsExecutor, its own thread): the clients of the pilots' services and session
  actions.

and a child process, node ``/terminal/recorder`` (:mod:`.receiver`): raw subscriptions (CDR bytes, no
deserialisation) to each pilot's ``record_topics`` with the publisher's QoS, handed over a pipe to this
process, where every message goes to the bag of the session running on that pilot, GPIO and sound events also
to their tables; ``video_topics`` (camera frames) go to an MP4 per session with a frame-timestamp table
instead. Receiving in its own process keeps the DDS side off the GIL the writer needs.

Run with ``ros2 run autopilot_terminal terminal`` / ``autopilot run autopilot_terminal terminal`` or
``launch/terminal.launch.yaml``.
"""

from __future__ import annotations

import json
import math
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout  # not the builtin before 3.11
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rclpy
from action_msgs.srv import CancelGoal
from autopilot_msgs.action import RunSession
from autopilot_msgs.msg import (
    GpioEvent,
    PilotEntry,
    PilotRegistry,
    PilotStatus,
    SoundOnset,
    StepChange,
    TrialAck,
    TrialData,
    TrialField,
)
from autopilot_msgs.srv import (
    AssignProtocol,
    CreateSubject,
    GetEvents,
    LoadProtocol,
    PilotCommand,
    SetSubjectParameters,
    SetSubjectStep,
    StartSession,
)
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.srv import GetParameters, ListParameters
from rclpy.action import ActionClient
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import parameter_value_to_python
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from std_srvs.srv import Trigger

from autopilot_core import guard, provenance, qos
from autopilot_core.checks import MAX_TEXT, InputError, finite, sequence, text
from autopilot_core.executors import make_executor, spin
from autopilot_runtime_py.messages import interface_text
from autopilot_core.params import ParamSpec, declare

from .cdr import EVENT_DECODERS
from .fetch import EventFetcher
from .storage import SubjectReader, history_rows
from .receiver import Receiver
from .recorder import Received, Recorder, subject_error
from .storage import FIELD_TYPES, TRIAL_COLUMNS, StoreError, TopicSpec
from .streams import StreamDecoder
from .subjects import (
    MAX_PATH,
    ProtocolFileError,
    check_biography_size,
    check_protocol,
    check_step,
    parse_biography,
    read_protocol,
    state_from_history,
)

RECORD_TOPICS = ['status', 'trials', 'step_changes', 'trial_acks', 'gpio/events', 'gpio/output', 'gpio/reward',
                 'sound/play', 'sound/onsets', 'sound/stop']
VIDEO_TOPICS = ['camera/image']
PARAMS = [
    ParamSpec('data_dir', '~/autopilot/data', 'Directory of the subject files (<subject>.h5)', read_only=True),
    ParamSpec('protocol_dir', '~/autopilot/protocols', 'Directory of protocol files (<name>.yaml)', read_only=True),
    ParamSpec('pilot_timeout_s', 5.0, 'A pilot whose heartbeat is older than this is offline', unit='s',
              min=0.5, max=3600.0),
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
    ParamSpec('stop_grace_s', 3.0, 'On Ctrl-C/SIGTERM, how long the terminal waits for running sessions to end (a '
              "launch stops its pilots at the same time: their last trials and end come within this); the launcher's "
              'SIGTERM follows 5 s after its SIGINT', unit='s', min=0.0, max=60.0, read_only=True),
]
#: How a pilot's last_session_state (PilotStatus) is recorded as a session's end state in the subject file.
END_STATES = {'ended': 'ended', 'cancelled': 'ended', 'error': 'aborted', 'interrupted': 'interrupted'}
#: Event tables filled from bag topics (relative name -> table kind and message type).
EVENT_TOPICS = {'gpio/events': ('gpio', GpioEvent), 'sound/onsets': ('sound', SoundOnset)}
#: Messages held per pilot while no session runs, for the moment between a session's start and its heartbeat.
PRE_SESSION_MESSAGES = 5000
PRE_SESSION_NS = 1_000_000_000
#: An ended session is closed at the latest this long after the terminal saw its end, even if the recorder's stream
#: has not reached the end by then (a pilot that vanished, a stream that stopped).
END_WAIT_S = 60.0
#: Heartbeats as the terminal takes them: qos.STATUS (depth 1) with room for every state change that arrives while
#: its thread is busy (start_session blocks it for a while). With depth 1 only the newest heartbeat would be taken,
#: so a session's start could be seen a trial late: its first messages, held until then, would be dropped as older.
STATUS_QUEUE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=20, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: How long start_session waits for the recorder to receive every topic of the pilot that is in the graph.
RECORD_WAIT_S = 3.0
#: How long start_session waits for the heartbeat that says why the pilot rejected its session goal.
REJECTION_WAIT_S = 2.0
REJECTION_SETTLE_S = 0.1
#: Bounds of what arrives on a pilot's topics and in requests (see the module docstring): fields of one trial,
#: characters of a trial field's name, of its string value, of names (pilot, task, protocol, step), of a
#: session id, of a step change's or set_subject_step's reason; parameter overrides per request.
MAX_TRIAL_FIELDS = 1000
MAX_FIELD_NAME = 64
MAX_FIELD_TEXT = MAX_TEXT
MAX_NAME = 256
MAX_SESSION_ID = 128
MAX_REASON = 1024
MAX_PARAMETERS = 256
#: ... and characters of their JSON (stored in the subject's history).
MAX_OVERRIDES_JSON = 16384
#: Columns every trial table has: a task's field must not be named like one.
FIXED_TRIAL_COLUMNS = frozenset(name for name, _ in TRIAL_COLUMNS)


def time_ns(t: Any) -> int:
    """A builtin_interfaces/Time in ns."""
    return t.sec * 1_000_000_000 + t.nanosec


def stamp_ns(header: Any) -> int:
    return time_ns(header.stamp)


def trial_row(msg: TrialData, recv_ns: int) -> tuple[list[tuple[str, int, str]], dict[str, Any]]:
    """The store's schema [(name, type, unit)] and row of one TrialData."""
    fields = [(f.name, f.type, f.unit) for f in msg.fields]
    row: dict[str, Any] = {'trial_number': msg.trial_number, 'start_ns': time_ns(msg.start),
                           'stamp_ns': stamp_ns(msg.header), 'recv_ns': recv_ns, 'step': msg.step,
                           'step_name': msg.step_name}
    for f in msg.fields:
        row[f.name] = {TrialField.TYPE_BOOL: f.bool_value, TrialField.TYPE_INT64: f.int_value,
                       TrialField.TYPE_FLOAT64: f.float_value}.get(f.type, f.string_value)
    return fields, row


def step_row(msg: StepChange, recv_ns: int) -> dict[str, Any]:
    return {'seq': msg.seq, 'after_trial': msg.after_trial, 'from_step': msg.from_step, 'to_step': msg.to_step,
            'from_step_name': msg.from_step_name, 'to_step_name': msg.to_step_name, 'protocol': msg.protocol,
            'reason': msg.reason, 'stamp_ns': stamp_ns(msg.header), 'recv_ns': recv_ns}


#: Event table kind -> decoder of its messages' CDR into columns.
DECODERS = {kind: decode for kind, (_, decode) in EVENT_DECODERS.items()}


STATE_NAMES = {PilotStatus.STATE_IDLE: 'idle', PilotStatus.STATE_RUNNING: 'running',
               PilotStatus.STATE_PAUSED: 'paused', PilotStatus.STATE_ERROR: 'in error'}


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
    return 'aborted' if msg.state == PilotStatus.STATE_ERROR else 'ended'


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


class SessionTable:
    """Which session each pilot namespace is running, shared by the two nodes' threads.

    The recorder node asks for every message (:meth:`route`); while no session runs, messages are held briefly
    so those sent between a session's start and the heartbeat that announces it are not lost.

    A session's end is placed in the recorder's own stream: the terminal learns of it from a heartbeat on its
    thread, but the recorder's executor may be seconds behind under load, still delivering messages the
    pilot sent before it stopped. So messages keep going to the ending session until the recorder's own
    subscription to the pilot's ``status`` (:meth:`route_status`) delivers the heartbeat that ends it, plus
    ``grace`` for other topics' messages in flight; :meth:`closed` tells when that window is over.
    """

    def __init__(self, recorder: Recorder, grace_ns: int) -> None:
        self._recorder = recorder
        self._grace = grace_ns
        self._lock = threading.Lock()
        self._current: dict[str, tuple[str, str]] = {}
        # ns -> [subject, session_id, deadline_ns or None while the recorder's stream has not seen the end]
        self._ending: dict[str, list[Any]] = {}
        # ns -> (recv_ns, session id it was running or '') of the newest heartbeat in the recorder's stream
        self._stream_status: dict[str, tuple[int, str]] = {}
        self._held: dict[str, deque[tuple[str, int, bytes]]] = {}

    def route(self, ns: str, topic: str, recv_ns: int, data: bytes) -> None:
        self.route_run(ns, topic, [(topic, recv_ns, data)])

    def route_run(self, ns: str, topic: str, run: Sequence[tuple[str, int, bytes]]) -> None:
        """Consecutive messages of one topic, as (topic, recv_ns, data) in receive order."""
        with self._lock:
            cur = self._current.get(ns)
            ending = self._ending.get(ns)
            if ending is None:  # the common case: one target for the whole run
                if cur is not None:
                    self._recorder.messages(cur[0], cur[1], topic, run)
                    return
            for m in run:
                target = cur
                # A session whose end the stream has not reached yet comes first: its messages are the older ones.
                if ending is not None and (ending[2] is None or (cur is None and m[1] <= ending[2])):
                    target = ending
                if target is None:
                    held = self._held.get(ns)
                    if held is None:
                        held = self._held[ns] = deque(maxlen=PRE_SESSION_MESSAGES)
                    held.append(m)
                else:
                    self._recorder.message(target[0], target[1], topic, m[1], m[2])

    def route_status(self, ns: str, topic: str, recv_ns: int, data: bytes) -> None:
        self.route_status_run(ns, topic, [(topic, recv_ns, data)])

    def route_status_run(self, ns: str, topic: str, run: Sequence[tuple[str, int, bytes]]) -> None:
        """:meth:`route_run` for the pilot's heartbeat topic, which also marks where a session ends in the stream:
        each heartbeat is routed before the messages after it."""
        for m in run:
            self.route_run(ns, topic, (m,))
            try:
                msg = deserialize_message(m[2], PilotStatus)
            except Exception:  # noqa: BLE001 - it is in the bag; the terminal's own subscription reports bad ones
                continue
            running = msg.session_id if msg.state in (PilotStatus.STATE_RUNNING, PilotStatus.STATE_PAUSED) else ''
            with self._lock:
                self._stream_status[ns] = (m[1], running)
                ending = self._ending.get(ns)
                if ending is not None and ending[2] is None and running != ending[1]:
                    ending[2] = m[1] + self._grace

    def start(self, ns: str, subject: str, session_id: str, started_ns: int) -> None:
        with self._lock:
            self._current[ns] = (subject, session_id)
            ending = self._ending.get(ns)
            if ending is not None and ending[2] is not None and ending[2] < started_ns:
                del self._ending[ns]
            for topic, recv_ns, data in self._held.pop(ns, ()):
                if recv_ns >= started_ns - PRE_SESSION_NS // 20:
                    self._recorder.message(subject, session_id, topic, recv_ns, data)

    def stop(self, ns: str, now_ns: int, *, streamed: bool) -> None:
        """The session on ``ns`` ended (the terminal saw it); ``streamed``: the recorder subscribes to its status."""
        with self._lock:
            cur = self._current.pop(ns, None)
            if cur is None:
                return
            seen = self._stream_status.get(ns)
            if not streamed:
                deadline: int | None = now_ns + self._grace
            elif seen is not None and seen[1] != cur[1] and seen[0] >= now_ns - PRE_SESSION_NS:
                deadline = seen[0] + self._grace  # the stream was ahead of the terminal's thread
            else:
                deadline = None
            self._ending[ns] = [*cur, deadline]

    def closed(self, ns: str, session_id: str, now_ns: int) -> bool:
        """Whether the ended session's window in the recorder's stream is over (or it is not ending here)."""
        with self._lock:
            ending = self._ending.get(ns)
            if ending is None or ending[1] != session_id:
                return True
            return ending[2] is not None and now_ns > ending[2]

    def drop_held(self, older_than_ns: int) -> None:
        with self._lock:
            for held in self._held.values():
                while held and held[0][1] < older_than_ns:
                    held.popleft()


@dataclass
class PilotLink:
    """What the terminal holds for one pilot (keyed by namespace)."""

    ns: str
    name: str
    ack_pub: Any
    action: ActionClient
    load: Any
    pause: Any
    resume: Any
    cancel: Any
    events: Any = None  # GetEvents client: the pilot's journal_events (missing GPIO events, :mod:`.fetch`)
    subs: list[Any] = field(default_factory=list)
    status: PilotStatus | None = None
    seen: float = 0.0  # monotonic time of the last heartbeat
    session: tuple[str, str] | None = None  # (subject, session_id) the heartbeats say runs
    planned: dict[str, Any] = field(default_factory=dict)  # what start_session sent (step_name, protocol, ...)
    named: bool = False  # ``name`` is the one the first heartbeat gave: every message must name it
    # Heartbeats as received on the clients' thread (which start_session does not block): (monotonic, msg).
    heard: deque[tuple[float, PilotStatus]] = field(default_factory=lambda: deque(maxlen=64))
    unknown: set[str] = field(default_factory=set)  # sessions it runs that are not recorded (said once each)


class TerminalNode(Node):
    """``/terminal``: see the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('terminal', **kwargs)
        p = declare(self, PARAMS)
        self.data_dir = Path(p['data_dir']).expanduser().resolve()  # tools ask for it from other directories
        self.protocol_dir = Path(p['protocol_dir']).expanduser().resolve()
        self.timeout_s = p['pilot_timeout_s']
        self.record_topics = [t.strip('/') for t in p['record_topics'] if t.strip('/')]
        self.video_topics = [t.strip('/') for t in p['video_topics'] if t.strip('/')]
        self.stream_topics = [t.strip('/') for t in p['stream_topics'] if t.strip('/')]
        both = sorted((set(self.record_topics) | set(self.stream_topics)) & set(self.video_topics))
        if both:
            raise ValueError(f'topics {both} are in record_topics or stream_topics and in video_topics: record each '
                             'one either in the bag or as video')
        self.launch_file = p['launch_file']
        try:
            self.recorder = Recorder(self.data_dir, log=self._log, nice=p['writer_nice'])
        except OSError as exc:
            raise RuntimeError(f'terminal: cannot use data_dir {self.data_dir}: {exc}; set the parameter '
                               'data_dir to a writable directory') from exc
        # Sessions the files say are running: those that ended while no terminal was recording (it was stopped or
        # killed) are closed when their pilot's first heartbeat shows it is not running them any more.
        # And every session the files hold: the ones whose messages (resends after a restart) are recorded.
        self.known, self.unfinished = scan_sessions(self.data_dir, self._log)
        # Conflicts the recorder kept, told on this thread: (endpoint, pilot, reason).
        self._conflicts: deque[tuple[str, str, str]] = deque(maxlen=1000)
        self.sessions = SessionTable(self.recorder, int(p['end_grace_s'] * 1e9))
        self.grace_s = p['end_grace_s']
        self.stop_grace_s = p['stop_grace_s']
        self._ends_pending = 0  # sessions whose end waits for the recorder's stream (_end_session)
        self.pilots: dict[str, PilotLink] = {}
        # GPIO events the live recording missed (a gap in their seq) are fetched from the pilot's journal.
        self.fetcher = EventFetcher(self._events_client, lambda gap, samples: self.recorder.recovered_events(
            gap.subject, gap.session_id, gap.topic, gap.run_id, samples), self._log)
        self.recorder.on_gap = self.fetcher.request
        self.receiver = Receiver(list(dict.fromkeys(self.record_topics + self.stream_topics + self.video_topics)),
                                 self._record_topic, self.recorder.count_lost, self._log)
        # Clients the services wait on live on a node spun by another thread (the recorder's): rclpy's executors
        # do not resume a service callback awaiting a client future, so the callbacks block on the reply instead.
        self.clients_node: Node | None = None
        self.host_provenance = provenance.collect()
        self.registry_pub = self.create_publisher(PilotRegistry, '~/pilots', qos.STATUS)
        guard.create_service(self, CreateSubject, '~/create_subject', self.srv_create_subject)
        # Same fields as create_subject (subject, biography_json -> success, message, path): no type of its own.
        guard.create_service(self, CreateSubject, '~/update_biography', self.srv_update_biography)
        guard.create_service(self, AssignProtocol, '~/assign_protocol', self.srv_assign_protocol)
        guard.create_service(self, SetSubjectStep, '~/set_subject_step', self.srv_set_subject_step)
        guard.create_service(self, SetSubjectParameters, '~/set_subject_parameters', self.srv_set_subject_parameters)
        guard.create_service(self, StartSession, '~/start_session', self.srv_start_session)
        guard.create_service(self, PilotCommand, '~/stop_session', self.srv_stop_session)
        guard.create_service(self, PilotCommand, '~/pause_session', self.srv_pause_session)
        guard.create_service(self, PilotCommand, '~/resume_session', self.srv_resume_session)
        self._registry_sig: tuple = ()
        self.create_timer(1.0, self.tick)
        self.get_logger().info(f'subject files in {self.data_dir}, protocols from {self.protocol_dir}; recording '
                               f'{", ".join(self.record_topics)} of every pilot'
                               + (f', {", ".join(self.stream_topics)} as streams' if self.stream_topics else '')
                               + (f', {", ".join(self.video_topics)} as video' if self.video_topics else ''))

    def _log(self, level: str, text: str) -> None:
        # One call site per severity: rclpy raises ValueError ("Logger severity cannot be changed between calls")
        # when the same line logs at another severity than the first time.
        if level == 'info':
            self.get_logger().info(text)
        elif level == 'warn':
            self.get_logger().warning(text)
        else:
            self.get_logger().error(text)

    def drain(self, executor: Any) -> None:
        """After Ctrl-C/SIGTERM, before :meth:`close`: let running sessions end for ``stop_grace_s``.

        A launch stops its pilots with the terminal; each pilot ends its session as interrupted and sends its
        last trials and a heartbeat saying so, which is recorded while this spins. A session whose end does not
        come in time (its pilot runs on) stays 'running' in its file and is closed when the terminal next sees
        its pilot (``unfinished``)."""
        def done() -> bool:
            return not self._ends_pending and not any(link.session for link in self.pilots.values())
        if self.stop_grace_s and not done():
            spin(self, executor, until=done, timeout_sec=self.stop_grace_s)
        for link in self.pilots.values():
            if link.session is not None:
                subject, sid = link.session
                self.get_logger().warning(f'session {sid} of {subject} on {link.name} still runs as the terminal '
                                          'stops: left running in the file, closed when the terminal next sees '
                                          'the pilot (its trials are resent then)')

    def _events_client(self, topic: str) -> Any:
        """The journal_events client of the pilot whose namespace holds ``topic`` (any thread), or None."""
        found = [link for ns, link in list(self.pilots.items()) if topic.startswith(ns.rstrip('/') + '/')]
        return max(found, key=lambda link: len(link.ns)).events if found else None

    def close(self) -> None:
        self.fetcher.close()
        self.receiver.close()  # first: what it received still goes to the recorder
        self.recorder.close()

    def _record_topic(self, topic: str, type_name: str, type_hash: str, qos_json: str) -> Any:
        """The receiver subscribed to ``topic``: set the recorder up for it; its messages' handler (None: refuse)."""
        rels = set(self.record_topics) | set(self.stream_topics) | set(self.video_topics)
        found = []
        for ns in list(self.pilots):
            base = ns.rstrip('/') + '/'
            if topic.startswith(base) and topic[len(base):] in rels:
                found.append((ns, topic[len(base):]))
        if not found:
            self.get_logger().error(f'cannot record {topic}: it is no record topic of a known pilot')
            return None
        ns, rel = max(found, key=lambda f: len(f[0]))  # nested namespaces: the pilot nearest to the topic
        spec = TopicSpec(topic, type_name, interface_text(type_name), type_hash, qos_json)
        event = EVENT_TOPICS.get(rel)
        try:
            if rel in self.video_topics:
                self.recorder.set_video_topic(spec)
            elif rel in self.stream_topics:
                self.recorder.set_topic(spec, ('stream', StreamDecoder(type_name)))
            else:
                self.recorder.set_topic(spec, (event[0], DECODERS[event[0]]) if event else None)
        except ValueError as exc:  # StreamError too
            self.get_logger().error(f'cannot record {topic}: {exc}')
            return None
        self.get_logger().info(f'recording {topic} [{type_name}]')
        route = self.sessions.route_status_run if rel == 'status' else self.sessions.route_run
        return lambda topic, run: route(ns, topic, run)

    # -- pilots ---------------------------------------------------------------------------------

    def tick(self) -> None:
        for topic, types in self.get_topic_names_and_types():
            if topic.endswith('/status') and 'autopilot_msgs/msg/PilotStatus' in types:
                ns = topic[:-len('/status')] or '/'
                # A topic only subscribed to (a device watching heartbeats under another name) is no pilot.
                if ns not in self.pilots and ns != '/terminal' and self.count_publishers(topic):
                    self._add_pilot(ns)
        self.sessions.drop_held(time.time_ns() - PRE_SESSION_NS)
        while self._conflicts:
            endpoint, pilot, reason = self._conflicts.popleft()
            guard.of(self).refuse(endpoint, reason, pilot)
        self.publish_registry()

    def _add_pilot(self, ns: str) -> None:
        base = ns.rstrip('/')
        c = self.clients_node
        link = PilotLink(
            ns=ns, name=base.rsplit('/', 1)[-1],
            ack_pub=self.create_publisher(TrialAck, f'{base}/trial_acks', qos.TRIALS),
            action=ActionClient(c, RunSession, f'{base}/session'),
            load=c.create_client(LoadProtocol, f'{base}/load_protocol'),
            pause=c.create_client(Trigger, f'{base}/pause'),
            resume=c.create_client(Trigger, f'{base}/resume'),
            cancel=c.create_client(CancelGoal, f'{base}/session/_action/cancel_goal'),
            events=c.create_client(GetEvents, f'{base}/journal_events'))
        link.subs = [
            guard.create_subscription(self, PilotStatus, f'{base}/status', lambda m: self.on_status(link, m),
                                      STATUS_QUEUE, sender=lambda m: m.pilot),
            guard.create_subscription(self, TrialData, f'{base}/trials', lambda m: self.on_trial(link, m), qos.TRIALS,
                                      sender=lambda m: m.pilot),
            guard.create_subscription(self, StepChange, f'{base}/step_changes', lambda m: self.on_step(link, m),
                                      qos.TRIALS, sender=lambda m: m.pilot),
            # Also on the clients' thread: start_session blocks this node's, and reads the pilot's answer here.
            guard.create_subscription(c, PilotStatus, f'{base}/status',
                                      lambda m: link.heard.append((time.monotonic(), m)), STATUS_QUEUE),
        ]
        self.pilots[ns] = link
        self.receiver.set_pilots(list(self.pilots))
        self.get_logger().info(f'pilot found at {ns}')

    def online(self, link: PilotLink) -> bool:
        if link.status is None or time.monotonic() - link.seen > self.timeout_s:
            return False
        return any(n.startswith(link.ns.rstrip('/') + '/') or n == link.ns
                   for n in self._publisher_namespaces(f'{link.ns.rstrip("/")}/status'))

    def _publisher_namespaces(self, topic: str) -> list[str]:
        return [i.node_namespace for i in self.get_publishers_info_by_topic(topic)]

    def publish_registry(self) -> None:
        now = time.monotonic()
        msg = PilotRegistry()
        msg.header.stamp = self.get_clock().now().to_msg()
        for ns in sorted(self.pilots, key=lambda n: self.pilots[n].name):
            link = self.pilots[ns]
            entry = PilotEntry(pilot=link.name, online=self.online(link),
                               last_seen_s=float(now - link.seen) if link.status else math.inf)
            if link.status is not None:
                entry.last_status = link.status
            msg.pilots.append(entry)
        sig = tuple((e.pilot, e.online, e.last_status.state, e.last_status.session_id) for e in msg.pilots)
        if sig != self._registry_sig:
            for e in msg.pilots:
                # found before its first heartbeat: not worth an "offline" line
                if e.last_status.pilot and (e.pilot, e.online) not in {(s[0], s[1]) for s in self._registry_sig}:
                    self.get_logger().info(f'pilot {e.pilot} is {"online" if e.online else "offline"}')
        self._registry_sig = sig
        self.registry_pub.publish(msg)

    def find_pilot(self, name: str) -> PilotLink:
        for link in self.pilots.values():
            if name in (link.name, link.ns, link.ns.strip('/')):
                return link
        known = ', '.join(sorted(link.name for link in self.pilots.values())) or 'none'
        raise LookupError(f'unknown pilot {name!r} (known: {known}); is it running on this ROS_DOMAIN_ID?')

    # -- heartbeats, trials, step changes ----------------------------------------------------------

    def _sender(self, link: PilotLink, kind: str, pilot: str) -> None:
        """InputError unless a message on ``link``'s topics names its pilot (the one its first heartbeat named)."""
        topic = f'{link.ns.rstrip("/")}/'
        if not pilot:
            raise InputError(f'{kind} on {topic}... names no pilot (its `pilot` field is empty): not recorded; a '
                             'pilot names itself in every message, so this comes from something else on the domain')
        text(f'{kind}.pilot', pilot, MAX_NAME)
        if link.named and pilot != link.name:
            raise InputError(f'{kind} names pilot {pilot!r} but came on the topics of pilot {link.name} '
                             f'({topic}...): not recorded; a second rig or a script publishes there (give each rig '
                             'its own namespace or ROS_DOMAIN_ID)')

    def _planned_session(self, link: PilotLink, subject: str, sid: str, protocol: str) -> KnownSession | None:
        """The session start_session sent to ``link``, when ``sid`` is its first news of it (a heartbeat or, should
        the heartbeat be delayed, its first trial); None otherwise."""
        planned = link.planned
        if not planned or 'session_id' in planned or (planned['subject'], planned['protocol_file']['name']) != \
                (subject, protocol):
            return None
        planned['session_id'] = sid
        known = self.known[sid] = KnownSession(subject, sid, link.name, protocol, tuple(planned['steps']))
        return known

    def _owner(self, link: PilotLink, kind: str, pilot: str, subject: str, session_id: str,
               protocol: str) -> KnownSession:
        """The known session a trial or step change belongs to, when it came from the pilot that runs it."""
        self._sender(link, kind, pilot)
        if (why := subject_error(subject)) is not None:
            raise InputError(f'{kind}: {why}')
        text(f'{kind}.session_id', session_id, MAX_SESSION_ID, empty=False)
        known = self.known.get(session_id) or self._planned_session(link, subject, session_id, protocol)
        if known is None:
            raise InputError(f'{kind} of session {session_id!r} of {subject}: no session this terminal started or '
                             f'found in a subject file; not recorded (start sessions with `autopilot session start` '
                             'so the terminal knows them)')
        if (known.subject, known.pilot) != (subject, link.name):
            raise InputError(f'{kind} of session {session_id} names subject {subject} on pilot {link.name}, but that '
                             f'is the session of {known.subject} on pilot {known.pilot}: not recorded')
        return known

    @staticmethod
    def _in_protocol(known: KnownSession, kind: str, protocol: str, step: int, step_name: str) -> None:
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

    def on_status(self, link: PilotLink, msg: PilotStatus) -> None:
        """A heartbeat: may begin or end the session recorded for the pilot, unless it is not the pilot's
        (names another pilot or none) or contradicts the session the terminal records there."""
        self._sender(link, 'PilotStatus', msg.pilot)
        text('PilotStatus.session_id', msg.session_id, MAX_SESSION_ID)
        running = msg.state in (PilotStatus.STATE_RUNNING, PilotStatus.STATE_PAUSED) and msg.session_id
        if msg.state in (PilotStatus.STATE_RUNNING, PilotStatus.STATE_PAUSED) and not running:
            raise InputError(f'heartbeat of pilot {link.name} says {STATE_NAMES[msg.state]} but names no session: '
                             'ignored')
        if link.session is not None:
            if msg.session_id and msg.session_id != link.session[1]:
                raise InputError(f'heartbeat of pilot {link.name} names session {msg.session_id!r}, but the session '
                                 f'running there is {link.session[1]}: ignored (a second rig or a script publishes '
                                 f'on {link.ns.rstrip("/")}/status?)')
        elif running and (known := self.known.get(msg.session_id)) is not None and \
                (known.subject, known.pilot) != (msg.subject, link.name):
            raise InputError(f'heartbeat says pilot {link.name} runs session {msg.session_id} of {msg.subject!r}, '
                             f'but that is the session of {known.subject} on pilot {known.pilot}: ignored')
        old = link.status
        link.status, link.seen = msg, time.monotonic()
        link.name, link.named = msg.pilot, True
        now = time.time_ns()
        if link.session is not None and (not running or msg.session_id != link.session[1]):
            self._end_session(link, end_state(msg, link.session[1]), now)
        if link.name in self.unfinished:
            for subject, sid, last_ns in self.unfinished.pop(link.name):
                if running and msg.session_id == sid:
                    continue  # still running: recording goes on (_begin_session below)
                self.recorder.end_session(subject, sid, last_ns, end_state(msg, sid), note=(
                    f'ended while no terminal was recording; ended_ns is the last thing recorded of it (pilot '
                    f'{link.name} was {STATE_NAMES.get(msg.state, msg.state)} when the terminal came back)'))
                self.get_logger().warning(f'session {sid} of {subject} on {link.name} ended while the terminal was '
                                          'down: closed it in the file (trials the pilot still holds are resent)')
        if running and link.session is None:
            self._begin_session(link, msg)
        if old is None or old.state != msg.state:
            self.publish_registry()

    def _begin_session(self, link: PilotLink, msg: PilotStatus) -> None:
        """Record the session a heartbeat says runs: one start_session sent to this pilot, or one a subject file
        holds as this pilot's (the terminal was restarted); any other is said once and not recorded."""
        subject, sid = msg.subject, msg.session_id
        known = self.known.get(sid) or self._planned_session(link, subject, sid, msg.protocol)
        planned = link.planned if link.planned.get('session_id') == sid else {}
        if known is None:
            if sid not in link.unknown:
                if len(link.unknown) > 1000:
                    link.unknown.clear()
                link.unknown.add(sid)
                guard.of(self).refuse(f'{link.ns.rstrip("/")}/status', (
                    f'pilot {link.name} runs session {sid} of {subject!r} ({msg.protocol or msg.task}), which this '
                    'terminal did not start and no subject file holds: not recorded (start sessions with '
                    '`autopilot session start` so the terminal records them)'), link.name)
            return
        started_ns = stamp_ns(msg.header) or time.time_ns()
        meta = {'pilot': link.name, 'task': msg.task, 'protocol': msg.protocol, 'step': msg.step,
                'step_name': planned.get('step_name', ''), 'started_ns': started_ns}
        if known.steps is not None:
            meta['steps'] = list(known.steps)
        self.recorder.begin_session(subject, sid, meta)
        self.sessions.start(link.ns, subject, sid, started_ns)
        link.session = (subject, sid)
        self.recorder.provenance(subject, sid, self._provenance(link, msg, planned))
        threading.Thread(target=self._collect_parameters, args=(link, subject, sid), daemon=True,
                         name=f'parameters-{link.name}').start()
        self.get_logger().info(f'session {sid} of {subject} on {link.name}: recording')

    def _end_session(self, link: PilotLink, state: str, now_ns: int) -> None:
        subject, sid = link.session  # type: ignore[misc]
        link.session = None
        link.planned = {}
        status_topic = f'{link.ns.rstrip("/")}/status'
        self.sessions.stop(link.ns, now_ns, streamed=self.receiver.subscribed(status_topic) is True)
        # Late messages of the session are still its own until the recorder's stream reaches its end.
        timer: list[Any] = []
        give_up = time.monotonic() + END_WAIT_S
        self._ends_pending += 1

        def end() -> None:
            closed = self.sessions.closed(link.ns, sid, time.time_ns())
            if not closed and time.monotonic() < give_up:
                return
            timer[0].cancel()
            self.destroy_timer(timer[0])
            self._ends_pending -= 1
            if not closed:
                self.get_logger().warning(
                    f'session {sid} of {subject}: the recorder did not see the heartbeat that ended it within '
                    f'{END_WAIT_S:.0f} s; closing it now (later messages of it are not recorded)')
            self.recorder.end_session(subject, sid, now_ns, state)
            self.get_logger().info(f'session {sid} of {subject} on {link.name}: {state}')
        timer.append(self.create_timer(max(min(self.grace_s, 0.2), 0.01), end))

    def _provenance(self, link: PilotLink, msg: PilotStatus, planned: Mapping[str, Any]) -> dict[str, Any]:
        prov = dict(self.host_provenance)
        launch = ''
        if self.launch_file:
            try:
                launch = Path(self.launch_file).read_text(encoding='utf-8')
            except OSError as exc:
                launch = f'(cannot read {self.launch_file}: {exc})'
        return {
            'packages': prov.get('packages', {}),
            'git': prov.get('git', {}),
            'ros': prov.get('ros', {}),
            'hosts': {'terminal': socket.gethostname(), 'pilot': msg.host,
                      'terminal_host': prov.get('host', {})},
            'launch': {'file': self.launch_file, 'text': launch},
            'pilot': {'name': link.name, 'namespace': link.ns, 'host': msg.host, 'ros_distro': msg.ros_distro,
                      'rmw': msg.rmw_implementation,
                      'packages': dict(zip(msg.package_names, msg.package_versions, strict=False))},
            'protocol': planned.get('protocol_file', {}),
            'subject_state': planned.get('subject_state', {}),
        }

    def _collect_parameters(self, link: PilotLink, subject: str, sid: str) -> None:
        """Every parameter of every node under the pilot's namespace (and its hardware's), via their services."""
        base = link.ns.rstrip('/')
        params: dict[str, dict[str, Any]] = {}
        for name, ns in self.get_node_names_and_namespaces():
            if not (ns == link.ns or ns.startswith(base + '/')):
                continue
            fqn = f'{ns.rstrip("/")}/{name}'
            try:
                params[fqn] = self._node_parameters(fqn)
            except Exception as exc:  # noqa: BLE001 - provenance is best effort, and says what it missed
                params[fqn] = {'_error': str(exc)}
        hardware = {k: v for k, v in params.items() if k.rsplit('/', 1)[-1] in ('gpio', 'sound', 'camera')}
        calibrations = {}
        for fqn, values in hardware.items():
            path = values.get('calibration_file') if isinstance(values, dict) else None
            if path:
                try:
                    calibrations[fqn] = Path(path).expanduser().read_text(encoding='utf-8')
                except OSError as exc:
                    calibrations[fqn] = f'(not readable on the terminal host: {exc})'
        self.recorder.provenance(subject, sid, {'parameters': params, 'hardware': hardware,
                                                'calibrations': calibrations})

    def _node_parameters(self, fqn: str) -> dict[str, Any]:
        c = self.clients_node
        lister = c.create_client(ListParameters, f'{fqn}/list_parameters')
        getter = c.create_client(GetParameters, f'{fqn}/get_parameters')
        try:
            if not (lister.wait_for_service(2.0) and getter.wait_for_service(2.0)):
                return {'_error': 'parameter services not available'}
            names = wait(lister.call_async(ListParameters.Request()), 5.0, f'{fqn}/list_parameters').result.names
            values = wait(getter.call_async(GetParameters.Request(names=list(names))), 5.0,
                          f'{fqn}/get_parameters').values
            return {n: _plain(parameter_value_to_python(v)) for n, v in zip(names, values, strict=True)}
        finally:
            c.destroy_client(lister)
            c.destroy_client(getter)

    def on_trial(self, link: PilotLink, msg: TrialData) -> None:
        # Sizes first: they bound the cost of every other check and of storing.
        sequence('TrialData.fields', msg.fields, MAX_TRIAL_FIELDS)
        for name in ('task', 'protocol', 'step_name'):
            text(f'TrialData.{name}', getattr(msg, name), MAX_NAME)
        names = set()
        for f in msg.fields:
            text('TrialData field name', f.name, MAX_FIELD_NAME, empty=False)
            if not f.name.isidentifier() or f.name in FIXED_TRIAL_COLUMNS or f.name in names:
                raise InputError(f'TrialData field {f.name!r}: a field name is a Python identifier, unique in the '
                                 f'trial and none of {sorted(FIXED_TRIAL_COLUMNS)}: not recorded')
            names.add(f.name)
            if f.type not in FIELD_TYPES:
                raise InputError(f'TrialData field {f.name}: type {f.type} is none of {FIELD_TYPES}: not recorded')
            text(f'TrialData field {f.name} unit', f.unit, MAX_FIELD_NAME)
            text(f'TrialData field {f.name}', f.string_value, MAX_FIELD_TEXT)
        known = self._owner(link, 'TrialData', msg.pilot, msg.subject, msg.session_id, msg.protocol)
        self._in_protocol(known, 'TrialData', msg.protocol, msg.step, msg.step_name)
        fields, row = trial_row(msg, time.time_ns())
        meta = {'pilot': link.name, 'task': msg.task, 'protocol': msg.protocol, 'step': msg.step,
                'step_name': msg.step_name, 'started_ns': row['stamp_ns'], 'steps': known.steps}
        sid = msg.session_id
        how = Received(create=False, raw=lambda: serialize_message(msg), type_name='autopilot_msgs/msg/TrialData',
                       conflict=self._on_conflict(link, 'trials', msg.subject, sid))
        self.recorder.trials(msg.subject, sid, meta, fields, [row],
                             lambda numbers: self._ack(link, sid, trials=numbers), how)

    def on_step(self, link: PilotLink, msg: StepChange) -> None:
        for name in ('protocol', 'from_step_name', 'to_step_name'):
            text(f'StepChange.{name}', getattr(msg, name), MAX_NAME)
        text('StepChange.reason', msg.reason, MAX_REASON)
        if msg.seq < 1:
            raise InputError(f'StepChange.seq {msg.seq}: step changes are numbered from 1: not recorded')
        known = self._owner(link, 'StepChange', msg.pilot, msg.subject, msg.session_id, msg.protocol)
        self._in_protocol(known, 'StepChange from', msg.protocol, msg.from_step, msg.from_step_name)
        self._in_protocol(known, 'StepChange to', msg.protocol, msg.to_step, msg.to_step_name)
        meta = {'pilot': link.name, 'protocol': msg.protocol, 'step': msg.from_step,
                'step_name': msg.from_step_name, 'started_ns': stamp_ns(msg.header), 'steps': known.steps}
        sid = msg.session_id
        how = Received(create=False, raw=lambda: serialize_message(msg), type_name='autopilot_msgs/msg/StepChange',
                       conflict=self._on_conflict(link, 'step_changes', msg.subject, sid))
        self.recorder.steps(msg.subject, sid, meta, [step_row(msg, time.time_ns())],
                            lambda seqs: self._ack(link, sid, steps=seqs), how)

    def _on_conflict(self, link: PilotLink, topic: str, subject: str,
                     sid: str) -> Callable[[int, str, bool], None]:
        """What the recorder calls (its thread) for a conflict: told and counted on this node's thread."""
        endpoint = f'{link.ns.rstrip("/")}/{topic}'
        return lambda _n, why, kept: self._conflicts.append(
            (endpoint, link.name, f'session {sid} of {subject}: {why}' +
             ('; kept apart as a conflict, the stored one is unchanged' if kept else '; the stored one is unchanged')))

    def _ack(self, link: PilotLink, session_id: str, trials: list[int] = (), steps: list[int] = ()) -> None:
        # Runs on the recorder thread once the rows are fsync'd; rclpy publishers may be used from any thread.
        ack = TrialAck(pilot=link.name, session_id=session_id, trial_numbers=list(trials), step_seqs=list(steps))
        ack.header.stamp = self.get_clock().now().to_msg()
        link.ack_pub.publish(ack)

    # -- subjects ---------------------------------------------------------------------------------

    def _subject_call(self, fn: Callable[[Recorder], Any], timeout: float = 10.0) -> Any:
        try:
            return self.recorder.call(fn).result(timeout)
        except FutureTimeout as exc:  # message-less, and before Python 3.11 not the builtin TimeoutError
            raise TimeoutError(f'the recorder did not answer within {timeout:.0f} s (it is still writing; see the '
                               'terminal log); try again') from exc

    def subject_state(self, subject: str) -> Any:
        def read(r: Recorder) -> Any:
            f = r.open_file(subject)
            return state_from_history(subject, history_rows(f.file))
        return self._subject_call(read)

    def _biography_service(self, what: str, req: CreateSubject.Request, resp: CreateSubject.Response,
                           write: Callable[[Recorder, dict[str, Any]], Any], done: str) -> CreateSubject.Response:
        """create_subject and update_biography: parse biography_json, run ``write`` on the recorder, answer.
        Malformed input (InputError) goes to the guard: counted, logged at most every few seconds."""
        _subject(req.subject)
        bio = parse_biography(req.biography_json)
        try:
            f = self._subject_call(lambda r: write(r, bio))
            resp.success, resp.path, resp.message = True, str(f.path), done
        except (ValueError, StoreError, TimeoutError) as exc:
            resp.message = str(exc)
        self._reply_log(what, resp)
        return resp

    def srv_create_subject(self, req: CreateSubject.Request, resp: CreateSubject.Response) -> CreateSubject.Response:
        return self._biography_service('create_subject', req, resp, lambda r, bio: r.create_file(req.subject, bio),
                                       f'created subject {req.subject} ({self.data_dir / req.subject}.h5)')

    def srv_update_biography(self, req: CreateSubject.Request,
                             resp: CreateSubject.Response) -> CreateSubject.Response:
        """Merge keys into a subject's biography (a key set to null is removed); stored with the time in history."""
        def apply(r: Recorder, update: dict[str, Any]) -> Any:
            if not update:
                raise ValueError('biography_json must be a non-empty JSON object, e.g. {"weight_g": 23.5}')
            f = r.open_file(req.subject)
            bio = {k: v for k, v in {**f.biography, **update}.items() if v is not None}
            check_biography_size(bio)
            f.set_biography(bio)
            return f
        keys = req.biography_json
        return self._biography_service('update_biography', req, resp, apply,
                                       f'{req.subject}: biography updated ({keys})')

    def srv_assign_protocol(self, req: AssignProtocol.Request,
                            resp: AssignProtocol.Response) -> AssignProtocol.Response:
        """Assign a protocol the pilots will accept: checked with their own code (:func:`.subjects.check_protocol`)."""
        _subject(req.subject)
        text('protocol', req.protocol, MAX_PATH, empty=False)
        try:
            proto = check_protocol(read_protocol(req.protocol, self.protocol_dir))
            step_name = check_step(proto, req.step)
            detail = {'file': str(proto.path), 'sha256': proto.sha256, 'steps': list(proto.steps), 'by': 'terminal'}
            self._subject_call(lambda r: r.open_file(req.subject).add_history(
                'assign', protocol=proto.name, step=req.step, step_name=step_name, detail=detail))
            resp.success, resp.n_steps, resp.step_name = True, len(proto.steps), step_name
            resp.message = f'{req.subject}: protocol {proto.name} ({len(proto.steps)} steps), at step {req.step} ' \
                           f'({step_name})'
        except (ProtocolFileError, ValueError, StoreError, TimeoutError) as exc:
            resp.message = str(exc)
        self._reply_log('assign_protocol', resp)
        return resp

    def srv_set_subject_step(self, req: SetSubjectStep.Request,
                             resp: SetSubjectStep.Response) -> SetSubjectStep.Response:
        _subject(req.subject)
        text('reason', req.reason, MAX_REASON)
        try:
            st = self.subject_state(req.subject)
            step_name = check_step(st, req.step)
            detail = {'from_step': st.step, 'from_step_name': st.step_name, 'reason': req.reason, 'by': 'terminal'}
            self._subject_call(lambda r: r.open_file(req.subject).add_history(
                'step', protocol=st.protocol, step=req.step, step_name=step_name, detail=detail))
            resp.success, resp.step_name = True, step_name
            resp.message = f'{req.subject}: step {st.step} ({st.step_name}) -> {req.step} ({step_name}); applies ' \
                           'from the next session'
        except (ValueError, StoreError, TimeoutError) as exc:
            resp.message = str(exc)
        self._reply_log('set_subject_step', resp)
        return resp

    def srv_set_subject_parameters(self, req: SetSubjectParameters.Request,
                                   resp: SetSubjectParameters.Response) -> SetSubjectParameters.Response:
        _subject(req.subject)
        set_, removed = _overrides(req.parameters)
        try:
            st = self.subject_state(req.subject)
            if not st.protocol:
                raise ValueError(f'{req.subject} has no protocol: assign one first')
            self._subject_call(lambda r: r.open_file(req.subject).add_history(
                'parameters', protocol=st.protocol, step=st.step, step_name=st.step_name,
                detail={'set': set_, 'removed': removed, 'by': 'terminal'}))
            resp.success = True
            resp.message = f'{req.subject}: set {sorted(set_) or "nothing"}, removed {removed or "nothing"}; ' \
                           'checked by the pilot at the next session'
        except (ValueError, StoreError, TimeoutError) as exc:
            resp.message = str(exc)
        self._reply_log('set_subject_parameters', resp)
        return resp

    def _reply_log(self, what: str, resp: Any) -> None:
        if resp.success:  # two call sites: see _log
            self.get_logger().info(f'{what}: {resp.message}')
        else:
            self.get_logger().warning(f'{what}: {resp.message}')

    # -- sessions ---------------------------------------------------------------------------------

    def srv_start_session(self, req: StartSession.Request, resp: StartSession.Response) -> StartSession.Response:
        _subject(req.subject)
        text('pilot', req.pilot, MAX_NAME, empty=False)
        finite('max_duration_s', req.max_duration_s, 0.0)
        try:
            resp.message = self._start(req)
            resp.success = True
        except (LookupError, ValueError, ProtocolFileError, StoreError, TimeoutError, RuntimeError) as exc:
            resp.message = str(exc)
        self._reply_log('start_session', resp)
        return resp

    def _start(self, req: StartSession.Request) -> str:
        link = self.find_pilot(req.pilot)
        if not self.online(link):
            raise RuntimeError(f'pilot {link.name} is offline (no heartbeat for {self.timeout_s} s); start its rig')
        if link.status.state != PilotStatus.STATE_IDLE:
            raise RuntimeError(f'pilot {link.name} is busy (running {link.status.subject}); stop that session first')
        if (why := subject_error(req.subject)) is not None:
            raise ValueError(why)
        st = self.subject_state(req.subject)
        proto = read_protocol(st.protocol_file or st.protocol, self.protocol_dir) if st.protocol else None
        if proto is None:
            raise ValueError(f'{req.subject} has no protocol: `autopilot subject assign {req.subject} PROTOCOL`')
        if proto.sha256 != st.protocol_sha256:
            self.get_logger().warning(f'{proto.path} changed since it was assigned to {req.subject}; using it as it '
                                      'is now (its text and hash are stored with the session)')
        step_name = check_step(proto, st.step)
        if not link.load.service_is_ready():
            raise RuntimeError(f'pilot {link.name} does not serve load_protocol; is it an autopilot pilot?')
        loaded = wait(link.load.call_async(LoadProtocol.Request(name=proto.name, yaml_text=proto.text)), 10.0,
                      f'{link.name} load_protocol')
        if not loaded.success:
            raise ValueError(f'protocol {proto.path} rejected by pilot {link.name}: {loaded.message}')
        missing = self._not_recorded(link, RECORD_WAIT_S)
        if missing:
            self.get_logger().warning(f'{link.name}: not receiving {", ".join(missing)} yet (no publisher matched '
                                      f'within {RECORD_WAIT_S:.0f} s); the session starts, they are recorded once '
                                      'they appear')
        goal = RunSession.Goal(subject=req.subject, protocol=proto.name, step=st.step, max_trials=req.max_trials,
                               max_duration_s=req.max_duration_s,
                               parameters=[_param_msg(k, v) for k, v in sorted(st.parameters.items())])
        link.planned = {'subject': req.subject, 'step_name': step_name, 'subject_state': st.as_dict(),
                        'steps': list(proto.steps),
                        'protocol_file': {'name': proto.name, 'file': str(proto.path), 'sha256': proto.sha256,
                                          'text': proto.text}}
        if not link.action.server_is_ready():
            raise RuntimeError(f'pilot {link.name} has no session action server')
        sent = (time.monotonic(), time.time_ns())
        handle = wait(link.action.send_goal_async(goal), 10.0, f'{link.name} session goal')
        if not handle.accepted:
            link.planned = {}
            raise RuntimeError(f'pilot {link.name} rejected the session: {self._rejection(link, *sent)}')
        handle.get_result_async().add_done_callback(lambda f: self._on_result(link, req.subject, f))
        return f'{req.subject} on {link.name}: {proto.name} step {st.step} ({step_name})'

    def _rejection(self, link: PilotLink, sent_mono: float, sent_ns: int) -> str:
        """Why the pilot rejected the goal sent at ``sent_*``: a rejected goal carries no text, the pilot says why
        in a heartbeat. Only one stamped after the goal was sent is this goal's answer (the heartbeats before
        still carry the previous rejection's reason); the newest such one is taken, a moment after the answer
        (the pilot publishes the reason before it answers, but over another channel, so a periodic heartbeat
        sent just before may arrive first)."""
        answered = time.monotonic()
        deadline = answered + REJECTION_WAIT_S
        while True:
            fresh = [m for t, m in list(link.heard)
                     if t >= sent_mono and stamp_ns(m.header) >= sent_ns and m.pilot == link.name]
            if fresh and time.monotonic() >= answered + REJECTION_SETTLE_S:
                said = max(fresh, key=lambda m: stamp_ns(m.header)).message
                said = said if len(said) <= guard.MAX_REASON else said[:guard.MAX_REASON] + '...'
                reason = said.removeprefix('session rejected: ')
                if said.startswith('session rejected') and reason:
                    return reason
                return f'its heartbeat after the request gives no reason ({said or "no message"}); see the pilot\'s log'
            if time.monotonic() >= deadline:
                return f'no heartbeat with its reason within {REJECTION_WAIT_S:g} s; see the pilot\'s log'
            time.sleep(0.02)

    def _not_recorded(self, link: PilotLink, timeout: float) -> list[str]:
        """The pilot's record topics in the graph that the recorder does not receive yet, after up to ``timeout``.

        The recorder subscribes to a topic once it has discovered a publisher (it records the publisher's QoS and
        type hash), and receives only once matched. Right after the terminal or a rig came up that can take a few
        seconds (DDS discovery on a loaded host): a session started meanwhile would miss its first hardware events
        in the bag. A topic is in the graph early through the pilot's own endpoints (it subscribes to gpio/events).
        """
        base = link.ns.rstrip('/')
        deadline = time.monotonic() + timeout
        while True:
            graph = {name for name, _ in self.get_topic_names_and_types()}
            missing = [topic for topic in (f'{base}/{rel}' for rel in self.record_topics + self.stream_topics)
                       # (None: a type this host cannot record; said once in the log)
                       if topic in graph and self.receiver.publisher_count(topic) == 0]
            if not missing or time.monotonic() >= deadline:
                return missing
            time.sleep(0.05)

    def _on_result(self, link: PilotLink, subject: str, fut: Any) -> None:
        try:
            r = fut.result().result
        except Exception as exc:  # noqa: BLE001 - only logged
            self.get_logger().warning(f'session of {subject} on {link.name}: no result ({exc})')
            return
        self.get_logger().info(f'session {r.session_id} of {subject} on {link.name} finished: {r.message}')

    def _command(self, req: PilotCommand.Request, resp: PilotCommand.Response, what: str) -> Any:
        text('pilot', req.pilot, MAX_NAME, empty=False)
        try:
            link = self.find_pilot(req.pilot)
            if what == 'stop':
                if not link.cancel.service_is_ready():
                    raise RuntimeError(f'pilot {link.name} has no session action server')
                # A zero goal id and stamp cancels every goal of the server: sessions started elsewhere too.
                r = wait(link.cancel.call_async(CancelGoal.Request()), 10.0, f'{link.name} cancel')
                resp.success = r.return_code == CancelGoal.Response.ERROR_NONE and bool(r.goals_canceling)
                resp.message = (f'{link.name}: stopping after the current trial' if resp.success else
                                f'{link.name}: no session to stop (cancel return code {r.return_code})')
            else:
                client = link.pause if what == 'pause' else link.resume
                if not client.service_is_ready():
                    raise RuntimeError(f'pilot {link.name} does not serve {what}')
                r = wait(client.call_async(Trigger.Request()), 10.0, f'{link.name} {what}')
                resp.success, resp.message = r.success, f'{link.name}: {r.message}'
        except (LookupError, RuntimeError, TimeoutError) as exc:
            resp.message = str(exc)
        self._reply_log(f'{what}_session', resp)
        return resp

    def srv_stop_session(self, req: PilotCommand.Request, resp: PilotCommand.Response) -> Any:
        return self._command(req, resp, 'stop')

    def srv_pause_session(self, req: PilotCommand.Request, resp: PilotCommand.Response) -> Any:
        return self._command(req, resp, 'pause')

    def srv_resume_session(self, req: PilotCommand.Request, resp: PilotCommand.Response) -> Any:
        return self._command(req, resp, 'resume')


class ClientsNode(Node):
    """``/terminal/clients``: the clients of the pilots' services and actions, spun by their own thread."""

    def __init__(self, **kwargs: Any) -> None:
        # Not the process's global arguments: a launch file's `name:` remaps every node of the process (__node).
        super().__init__('clients', namespace='/terminal', use_global_arguments=False, **kwargs)


def _subject(subject: str) -> str:
    """A subject name from a request (it names a file); InputError naming the rule otherwise."""
    if (why := subject_error(subject)) is not None:
        raise InputError(why)
    return subject


def _overrides(parameters: Sequence[ParameterMsg]) -> tuple[dict[str, Any], list[str]]:
    """set_subject_parameters' request as (values to set, names to remove); InputError naming what is too large."""
    sequence('parameters', parameters, MAX_PARAMETERS)
    set_: dict[str, Any] = {}
    removed: list[str] = []
    for p in parameters:
        text('parameter name', p.name, MAX_FIELD_NAME, empty=False)
        value = parameter_value_to_python(p.value)
        if value is None:
            removed.append(p.name)
            continue
        items = value if isinstance(value, (list, tuple)) or hasattr(value, 'tolist') else [value]
        sequence(f'parameter {p.name}', items)
        for v in items:
            if isinstance(v, str):
                text(f'parameter {p.name}', v, MAX_FIELD_TEXT)
            elif isinstance(v, float):
                finite(f'parameter {p.name}', v)
        set_[p.name] = _plain(value)
    if (size := len(json.dumps(set_))) > MAX_OVERRIDES_JSON:
        raise InputError(f'parameters: {size} characters of JSON; at most {MAX_OVERRIDES_JSON} are accepted at once')
    return set_, removed


def wait(future: Any, timeout: float, what: str) -> Any:
    """The result of a client future completed by another thread's executor; TimeoutError naming the call."""
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    if not done.wait(timeout):
        future.cancel()
        raise TimeoutError(f'{what}: no answer within {timeout:.0f} s')
    return future.result()


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)) or hasattr(value, 'tolist'):
        return [_plain(v) for v in (value.tolist() if hasattr(value, 'tolist') else value)]
    if isinstance(value, bytes):
        return value.hex()
    return value


def _param_msg(name: str, value: Any) -> ParameterMsg:
    return rclpy.parameter.Parameter(name, value=value).to_parameter_msg()


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args, signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    terminal: TerminalNode | None = None
    clients: ClientsNode | None = None
    try:
        try:
            terminal = TerminalNode()
            clients = ClientsNode()
            terminal.clients_node = clients
            terminal.receiver.start()
        except Exception as exc:  # noqa: BLE001 - a startup error is one line naming the fix
            print(f'[FATAL] {exc}', flush=True)
            return 1
        control = SingleThreadedExecutor(context=terminal.context)
        control.add_node(terminal)
        fast = make_executor(context=terminal.context)
        thread = threading.Thread(target=spin, args=(clients, fast), kwargs={'stop': stop},
                                  name='clients-executor', daemon=True)
        thread.start()
        spin(terminal, control, stop=stop)
        terminal.drain(control)
        thread.join(2.0)
        terminal.close()
        stats = terminal.recorder.stats()
        terminal.get_logger().info(f'stopped: {stats.trials} trials, {stats.messages} messages recorded, '
                                   f'{stats.lost_messages} lost, {stats.errors} errors'
                                   + (f'; {stats.superseded_messages} replaced by newer ones at keep-last '
                                      'publishers' if stats.superseded_messages else '')
                                   + (f'; {stats.frames} video frames, {stats.frames_dropped} dropped'
                                      if stats.frames or stats.frames_dropped else ''))
        return 0
    finally:
        for node in (clients, terminal):
            if node is not None:
                node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == '__main__':
    raise SystemExit(main())
