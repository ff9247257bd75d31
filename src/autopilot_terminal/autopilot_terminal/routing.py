"""Which session each message the recorder receives goes to: :class:`SessionTable`, shared across threads.

Also how a topic the receiver subscribed to is set up in the recorder (:class:`TopicSetup`): as bag
messages, an event table, a typed stream table or video.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Collection, Sequence
from typing import Any

from autopilot_msgs.msg import GpioEvent, PilotStatus, SoundOnset
from rclpy.serialization import deserialize_message

from autopilot_core import pilot_states, stamps
from autopilot_runtime_py.messages import interface_text

from .cdr import EVENT_DECODERS
from .pilots import PilotLink, Pilots
from .recorder import Recorder
from .storage import TopicSpec
from .streams import StreamDecoder

#: Messages held per pilot while no session runs, for the moment between a session's start and its heartbeat.
PRE_SESSION_MESSAGES = 5000
PRE_SESSION_NS = stamps.NS_PER_S
#: Event tables filled from bag topics (relative name -> table kind and message type).
EVENT_TOPICS = {'gpio/events': ('gpio', GpioEvent), 'sound/onsets': ('sound', SoundOnset)}
#: Event table kind -> decoder of its messages' CDR into columns.
DECODERS = {kind: decode for kind, (_, decode) in EVENT_DECODERS.items()}

#: What the receiver calls with consecutive messages of one topic: (topic, [(topic, recv_ns, data)]).
Handler = Callable[[str, Sequence[tuple[str, int, bytes]]], None]


class SessionTable:
    """Which session each pilot namespace is running, shared by the terminal's and the receiver's threads.

    The receiver asks for every message (:meth:`route`); while no session runs, messages are held briefly
    so those sent between a session's start and the heartbeat that announces it are not lost.

    A session's end is placed in the recorder's own stream: the terminal learns of it from a heartbeat on its
    thread, but the receiver may be seconds behind under load, still delivering messages the pilot sent
    before it stopped. So messages keep going to the ending session until the receiver's own subscription to
    the pilot's ``status`` (:meth:`route_status`) delivers the heartbeat that ends it, plus ``grace`` for
    other topics' messages in flight; :meth:`closed` tells when that window is over.
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
                target: Sequence[Any] | None = cur
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
            running = msg.session_id if msg.state in pilot_states.IN_SESSION else ''
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
        """The session on ``ns`` ended (the terminal saw it); ``streamed``: the receiver subscribes to its status."""
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


class TopicSetup:
    """The pilots' topics the terminal records (relative names: in the bag, also as stream tables, as video), and
    how one the receiver subscribed to is set up in the recorder (:meth:`handler`)."""

    def __init__(self, recorder: Recorder, sessions: SessionTable, pilots: Pilots, *, record: list[str],
                 streams: list[str], video: list[str], log: Callable[[str, str], None]) -> None:
        self.record, self.streams, self.video = _names(record), _names(streams), _names(video)
        both = sorted((set(self.record) | set(self.streams)) & set(self.video))
        if both:
            raise ValueError(f'topics {both} are in record_topics or stream_topics and in video_topics: record each '
                             'one either in the bag or as video')
        self._recorder = recorder
        self._sessions = sessions
        self._pilots = pilots
        self._log = log

    def all(self) -> list[str]:
        """Every relative name recorded, once each."""
        return list(dict.fromkeys(self.record + self.streams + self.video))

    def handler(self, topic: str, type_name: str, type_hash: str, qos_json: str) -> Handler | None:
        """Set the recorder up for ``topic`` (the receiver subscribed to it); its messages' handler, None to refuse."""
        found = self._pilots.of_topic(topic, set(self.all()))
        if found is None:
            self._log('error', f'cannot record {topic}: it is no record topic of a known pilot')
            return None
        (link, rel), spec = found, TopicSpec(topic, type_name, interface_text(type_name), type_hash, qos_json)
        try:
            if rel in self.video:
                self._recorder.set_video_topic(spec)
            elif rel in self.streams:
                self._recorder.set_topic(spec, ('stream', StreamDecoder(type_name)))
            else:
                event = EVENT_TOPICS.get(rel)
                self._recorder.set_topic(spec, (event[0], DECODERS[event[0]]) if event else None)
        except ValueError as exc:  # StreamError too
            self._log('error', f'cannot record {topic}: {exc}')
            return None
        self._log('info', f'recording {topic} [{type_name}]')
        route, ns = self._sessions.route_status_run if rel == 'status' else self._sessions.route_run, link.ns
        return lambda topic, run: route(ns, topic, run)

    def missing(self, link: PilotLink, graph: Collection[str], publisher_count: Callable[[str], int | None]) -> list[str]:
        """The pilot's bag topics in the ``graph`` with no publisher matched by the receiver (None: not recordable)."""
        return [topic for topic in (f'{link.base}/{rel}' for rel in self.record + self.streams)
                if topic in graph and publisher_count(topic) == 0]


def _names(topics: list[str]) -> list[str]:
    return [t.strip('/') for t in topics if t.strip('/')]
