"""The window's ROS side: one rclpy node spun on a thread of its own, never on the Qt thread.

The UI thread meets it through two thread-safe doors only: :meth:`Bridge.call` queues a service call and
returns at once (the answer comes back later as a ``reply`` event), and :meth:`Bridge.drain` hands over every
event that arrived since the last drain (the window drains on a 30 ms timer). Nothing here imports Qt, so the
tests and ``bench/gui.py`` drive it without a window.

The window only listens: trials and GPIO events are taken best-effort, so a window that stalls (or a laptop on
Wi-Fi) never holds back a pilot's reliable writer, whose history the pilot's session depends on. Everything it
changes goes through the terminal's services; it opens no subject file.
"""

from __future__ import annotations

import collections
import itertools
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import rclpy
from autopilot_msgs.msg import GpioEvent, PilotRegistry, SubjectList, TrialData
from rcl_interfaces.msg import Log
from rclpy.context import Context
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from autopilot_core import executors, qos

from .model import MAX_PILOTS

#: A terminal whose registry (published at 1 Hz) has not been heard for this long is gone.
TERMINAL_SILENT_S = 3.5
#: Events kept for the UI at most; beyond, the oldest are dropped and counted (a UI that stopped draining).
MAX_EVENTS = 200_000
#: Longest a service call waits, and how often an idempotent one is sent again while unanswered (Fast DDS drops
#: a response when the server has not matched the caller yet; a read sent again costs nothing).
CALL_TIMEOUT_S = 10.0
RESEND_S = 1.0
#: How often the ROS thread looks at the queued calls, and at the graph for pilots' cameras.
POLL_S = 0.02
#: A call whose service is not available yet asks again this often.
READY_S = 0.2
GRAPH_S = 2.0

# Listen-only profiles: best effort never makes a reliable writer wait for this reader.
LISTEN = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=500, reliability=ReliabilityPolicy.BEST_EFFORT,
                    durability=DurabilityPolicy.VOLATILE)
ROSOUT = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=500, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.TRANSIENT_LOCAL)


@dataclass
class Event:
    """Something that reached the window's node: ``kind`` is registry, subjects, trial, gpio, log or reply."""

    kind: str
    pilot: str
    payload: Any


@dataclass
class Reply:
    """The end of a :meth:`Bridge.call`: the response, or the error in words (with its fix)."""

    token: int
    service: str
    response: Any = None
    error: str = ''


@dataclass
class _Call:
    token: int
    srv_type: Any
    name: str
    request: Any
    idempotent: bool
    deadline: float
    sent_at: float = 0.0
    asked_at: float = -math.inf  # when the service's readiness was last asked of the graph
    futures: list[Any] = field(default_factory=list)


class Bridge:
    """The window's node (``gui_<host>_<pid>``) and its thread; see the module docstring."""

    def __init__(self, terminal: str = '/terminal', *, rosout: bool = True, domain_id: int | None = None) -> None:
        self.terminal = '/' + terminal.strip('/')
        self.rosout = rosout
        self.domain_id = domain_id
        self.dropped = 0
        self._events: collections.deque[Event] = collections.deque()
        self._lock = threading.Lock()
        self._calls: collections.deque[_Call] = collections.deque()
        self._tokens = itertools.count(1)
        self._pilots: dict[str, Any] = {}  # pilot -> its trials subscription
        self._gpio: dict[str, Any] = {}
        self._shown: frozenset[str] = frozenset()
        self._bad_names: set[str] = set()
        self._clients: dict[tuple[Any, str], Any] = {}
        self._cameras: dict[str, Any] = {}
        self._images: dict[str, Any] = {}  # pilot -> newest frame (only the newest is ever drawn)
        self._graph_at = 0.0
        self._registry_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.context: Context | None = None
        self.node: Node | None = None

    # -- life ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Create the node and spin it on its own thread (its own context: several windows fit in one process)."""
        self.context = Context()
        rclpy.init(context=self.context, domain_id=self.domain_id)
        name = f'gui_{socket.gethostname()}_{os.getpid()}_{id(self) % 10000}'
        self.node = Node(''.join(c if c.isalnum() else '_' for c in name)[:60], context=self.context)
        n = self.node
        n.create_subscription(PilotRegistry, f'{self.terminal}/pilots', self._on_registry, qos.STATUS)
        n.create_subscription(SubjectList, f'{self.terminal}/subjects',
                              lambda m: self._put(Event('subjects', '', m)), qos.STATUS)
        if self.rosout:
            n.create_subscription(Log, '/rosout', lambda m: self._put(Event('log', '', m)), ROSOUT)
        n.create_timer(POLL_S, self._poll)
        self._executor = executors.make_executor(context=self.context)
        self._executor.add_node(n)
        self._thread = threading.Thread(target=self._spin, name='autopilot-gui-ros', daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context is not None and self.context.ok():
            try:
                self._executor.spin_once(timeout_sec=0.1)
            except Exception as exc:  # noqa: BLE001 - a callback's bug must not end the window's ROS side
                self._put(Event('error', '', f'{type(exc).__name__}: {exc}'))

    def stop(self) -> None:
        """End the thread, destroy the node (action clients first) and shut the context down."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.node is not None:
            self._executor.shutdown(timeout_sec=1.0)
            executors.destroy_node(self.node)
        if self.context is not None:
            rclpy.try_shutdown(context=self.context)

    # -- the UI's doors ------------------------------------------------------------------------------------
    def drain(self) -> list[Event]:
        """Every event since the last drain, oldest first (thread-safe, never blocks for long)."""
        with self._lock:
            out = list(self._events)
            self._events.clear()
        return out

    def call(self, srv_type: Any, name: str, request: Any, *, idempotent: bool = False,
             timeout_s: float = CALL_TIMEOUT_S) -> int:
        """Queue a call of service ``name`` (relative names are the terminal's); returns the reply's token."""
        if not name.startswith('/'):
            name = f'{self.terminal}/{name}'
        token = next(self._tokens)
        self._calls.append(_Call(token, srv_type, name, request, idempotent, time.monotonic() + timeout_s))
        return token

    def images(self) -> dict[str, Any]:
        """The newest camera frame (sensor_msgs Image or CompressedImage) of each pilot since the last call."""
        with self._lock:
            out, self._images = self._images, {}
        return out

    def terminal_online(self) -> bool:
        """Whether the terminal's registry has been heard within :data:`TERMINAL_SILENT_S`."""
        return self._registry_at > 0 and time.monotonic() - self._registry_at < TERMINAL_SILENT_S

    # -- the ROS thread ------------------------------------------------------------------------------------
    def _put(self, event: Event) -> None:
        with self._lock:
            if len(self._events) >= MAX_EVENTS:
                self._events.popleft()
                self.dropped += 1
            self._events.append(event)

    def show(self, pilots: set[str]) -> None:
        """The pilots whose plots are in view (UI thread): only their GPIO events and camera frames are taken."""
        self._shown = frozenset(pilots)

    def _on_registry(self, msg: PilotRegistry) -> None:
        self._registry_at = time.monotonic()
        for entry in list(msg.pilots)[:MAX_PILOTS]:
            if entry.pilot and entry.pilot not in self._pilots and entry.pilot not in self._bad_names:
                self._watch(entry.pilot)
        self._put(Event('registry', '', msg))

    def _watch(self, pilot: str) -> None:
        assert self.node is not None

        def trial(msg: Any) -> None:
            self._put(Event('trial', pilot, msg))
        try:
            self._pilots[pilot] = self.node.create_subscription(TrialData, f'/{pilot}/trials', trial, LISTEN)
        except Exception:  # noqa: BLE001 - a name that is no ROS name (a forged registry): never watched
            self._bad_names.add(pilot)

    def _follow_shown(self) -> None:
        """GPIO events and camera frames of the pilots in view only: at 50 pilots the GPIO events of the hidden
        ones were most of this thread's work, and every message it handles holds the interpreter's lock."""
        assert self.node is not None
        shown = self._shown & set(self._pilots)
        for pilot in set(self._gpio) - shown:
            self.node.destroy_subscription(self._gpio.pop(pilot))
        for pilot in set(self._cameras) - shown:
            self.node.destroy_subscription(self._cameras.pop(pilot))
        for pilot in shown - set(self._gpio):
            def gpio(msg: Any, pilot: str = pilot) -> None:
                self._put(Event('gpio', pilot, msg))
            self._gpio[pilot] = self.node.create_subscription(GpioEvent, f'/{pilot}/gpio/events', gpio, LISTEN)

    def _find_cameras(self) -> None:
        """Subscribe to a watched pilot's camera once it appears: JPEG when published, else raw frames."""
        assert self.node is not None
        topics = {name for name, _ in self.node.get_topic_names_and_types()}
        for pilot in self._shown & set(self._pilots):
            if pilot in self._cameras:
                continue
            base = f'/{pilot}/camera/image'
            kind = CompressedImage if f'{base}/compressed' in topics else Image if base in topics else None
            if kind is None:
                continue

            def frame(msg: Any, pilot: str = pilot) -> None:
                with self._lock:
                    self._images[pilot] = msg
            self._cameras[pilot] = self.node.create_subscription(
                kind, f'{base}/compressed' if kind is CompressedImage else base, frame, qos.STREAM)

    def _poll(self) -> None:
        assert self.node is not None
        now = time.monotonic()
        self._follow_shown()
        if now - self._graph_at > GRAPH_S:
            self._graph_at = now
            self._find_cameras()
        keep: list[_Call] = []
        clients = self._clients
        while self._calls:
            c = self._calls.popleft()
            key = (c.srv_type, c.name)
            client = clients.get(key)
            if client is None:
                client = clients[key] = self.node.create_client(c.srv_type, c.name)
            done = next((f for f in c.futures if f.done()), None)
            if done is not None:
                exc = done.exception()
                self._put(Event('reply', '', Reply(c.token, c.name, done.result() if exc is None else None,
                                                   f'{c.name} failed: {exc}' if exc is not None else '')))
                continue
            if now > c.deadline:
                why = (f'{c.name} did not answer within {CALL_TIMEOUT_S:.0f} s' if c.futures else
                       f'{c.name} is not available: is the terminal running on ROS_DOMAIN_ID='
                       f'{os.environ.get("ROS_DOMAIN_ID", "0")}? (start it: autopilot launch terminal.launch.yaml)')
                self._put(Event('reply', '', Reply(c.token, c.name, error=why)))
                continue
            # Readiness is a graph query (under the interpreter lock): asked only for a call due to be sent, and
            # then at most every READY_S (50 pilots without a gpio node asked it 2,500 times/s in bench/gui.py).
            due = not c.futures or (c.idempotent and now - c.sent_at > RESEND_S)
            if due and now - c.asked_at >= READY_S:
                c.asked_at = now
                if client.service_is_ready():
                    c.futures.append(client.call_async(c.request))
                    c.sent_at = now
            keep.append(c)
        self._calls.extend(keep)


def wait_for(bridge: Bridge, until: Callable[[list[Event]], bool], timeout: float) -> list[Event]:
    """Drain ``bridge`` until ``until(all events so far)`` holds or ``timeout`` passes (tests, bench)."""
    seen: list[Event] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        seen += bridge.drain()
        if until(seen):
            break
        time.sleep(0.02)
    return seen
