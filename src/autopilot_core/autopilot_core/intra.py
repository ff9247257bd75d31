"""Intra-process delivery for rclpy: nodes composed in one process skip DDS between them.

Why: rclcpp hands messages between nodes of one process without DDS (intra-process communication);
rclpy has none, so every message between two nodes of one process goes through rmw/Fast DDS and wakes
the executor like a message from another process. ``bench/closed_loop.py`` (2-core VM): the gpio node
and the pilot in one process, one EventsExecutor, closed their loop (input edge -> GpioEvent -> task
decision -> DigitalOutput -> output applied: two hops) in 0.78 ms p50, the same as two bare-rclpy DDS
hops in one process; with this module, see bench/README.md ("closed_loop.py") for the figures.

How: a process-local registry keyed by (context, fully resolved topic name, message type).

* :func:`create_publisher` returns an :class:`IntraPublisher`: ``publish(msg)`` hands ``msg`` to every
  intra subscription of the same topic and type in the same context (QoS-compatible, as DDS would match)
  and publishes it on DDS as always, so other processes (the terminal's recorder, ``ros2 topic echo``,
  benchmarks) see every message, in order.
* :func:`create_subscription` returns an :class:`IntraSubscription`: a normal (raw) rclpy subscription for
  every other publisher, plus a local queue. A local delivery appends to the queue and posts a drain task to
  the subscribing node's executor (``executor.create_task``: thread-safe, runs on the executor's thread like
  any callback). Not a guard condition: rclpy 7's EventsExecutor refuses nodes that have one. A message
  published by a callback that a drain task runs, to a subscription on the same executor, is drained by
  that task right after the callback returns (in order, never nested): a chain of local hops costs one
  executor round trip, not one per hop. The DDS callback of an intra subscription is such a scope too, so
  a message from another process that starts a local chain (a simulated poke on ``gpio/sim_input``) costs
  none; a publish from another thread (a pigpio/lgpio edge callback) pays one task (~0.07-0.12 ms here).
* The DDS publish (serialize + write) is the costliest step (~0.1-0.25 ms each on a 2-core VM woken from
  idle, i.e. most of a hop), so after a local delivery it is deferred: the last drain task of the cascade
  on that executor (the subscriber's reply delivered too), or a task of its own when no drain is pending,
  publishes it. Remote readers get it that much later; local ones get it first. ``flush()`` (also done by
  ``wait_for_all_acked``, ``destroy`` and :func:`autopilot_core.executors.spin` on return) sends it at
  once, for code that publishes while no executor spins.
* The DDS copy of a locally delivered message also reaches the subscription (same participant; rclpy
  exposes neither rmw's ``ignore_local_publications`` nor a publisher id in MessageInfo). The publisher
  serializes the message once (what ``publish`` does anyway) and publishes those bytes; each subscription
  that had it locally remembers the bytes (for ``DUPLICATE_WINDOW_S``) and drops the first DDS message with
  equal bytes. A multiset: an identical message from a remote publisher is still delivered (if it comes
  first, the later local copy is the one dropped: identical content, same count).

Contract (as rclcpp's intra-process with shared const messages): local subscribers get the publisher's
message object itself, not a copy; do not change a message after publishing it, nor in a callback.
Local delivery is used only while the subscribing node is on a single-threaded executor (EventsExecutor,
SingleThreadedExecutor): a MultiThreadedExecutor could run the drain task beside the node's other
callbacks. Otherwise, or without an executor, the message goes over DDS only, as without this module.
The queue holds up to the QoS depth for KEEP_LAST (the oldest dropped), unbounded for KEEP_ALL.

Switch: ``AUTOPILOT_INTRA_PROCESS=0`` (read when an endpoint is created) gives plain rclpy endpoints. So does
an rclpy version this module's private access is not tested against: every use of rclpy internals (the
EventsExecutor's class, an executor's shut-down state, a destroyed endpoint's handle) goes through
:mod:`autopilot_core.rclpy_private`, pinned to the tested versions; on another one, one warning says so and
every endpoint is plain DDS (all of a process's topics or none, so commands never overtake each other).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from rclpy.context import Context
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import HistoryPolicy, QoSCompatibility, QoSProfile, qos_check_compatible
from rclpy.serialization import deserialize_message, serialize_message
from rclpy.subscription import Subscription

from autopilot_core import guard, rclpy_private

ENV_VAR = 'AUTOPILOT_INTRA_PROCESS'
#: How long a local delivery waits for its DDS copy (to drop it). The copy comes within microseconds
#: (same participant); a copy that never comes (reader not matched yet) is forgotten after this.
DUPLICATE_WINDOW_S = 2.0
#: Deferred DDS publishes go out when an executor has no local delivery left to run, or after this many
#: local deliveries (drain tasks), so a never-ending local exchange cannot hold them back.
MAX_DRAINS_BEFORE_FLUSH = 8


def switched_on() -> bool:
    """False when ``$AUTOPILOT_INTRA_PROCESS`` is 0/false/no/off."""
    return os.environ.get(ENV_VAR, '1').strip().lower() not in ('0', 'false', 'no', 'off')


def enabled() -> bool:
    """Whether endpoints created now deliver in-process: switched on and this rclpy is a tested one."""
    return switched_on() and rclpy_private.SUPPORTED


_EVENTS_EXECUTOR = rclpy_private.EVENTS_EXECUTOR


def _usable(executor: Executor | None) -> bool:
    """A single-threaded executor that still runs tasks."""
    if type(executor) is _EVENTS_EXECUTOR:
        return True
    return isinstance(executor, SingleThreadedExecutor) and rclpy_private.executor_runs_tasks(executor)


class _Topic:
    """The intra endpoints of one (context, topic, type); lists are replaced, never mutated (lock-free reads)."""

    def __init__(self) -> None:
        self.publishers: tuple[IntraPublisher, ...] = ()
        self.subscriptions: tuple[IntraSubscription, ...] = ()
        self.version = 0


_lock = threading.Lock()
#: On a thread running a drain task: ``inline`` (deque of (subscription, state) drains to run next) and
#: ``executor`` (whose thread it is).
_tls = threading.local()


class _ExecutorState:
    """Per executor (under _lock): drain tasks posted and not yet run, publishers with deferred DDS publishes."""

    def __init__(self) -> None:
        self.pending = 0
        self.drains = 0  # drains run since the last flush
        self.dirty: list[IntraPublisher] = []


#: By id() with a weak reference to the executor (the EventsExecutor takes no attributes): the entry goes when
#: the executor does, so a new executor that gets the same id() never inherits a stale pending count.
_executors: dict[int, tuple[weakref.ref[Executor], _ExecutorState]] = {}


def _state(executor: Executor) -> _ExecutorState:
    entry = _executors.get(id(executor))
    if entry is not None and entry[0]() is executor:
        return entry[1]
    key = id(executor)

    def forget(ref: weakref.ref[Executor]) -> None:
        # No lock: a collection can run this on a thread that holds _lock. The id is not reused before this ran.
        if _executors.get(key, (None,))[0] is ref:
            _executors.pop(key, None)

    with _lock:
        entry = _executors.get(key)
        if entry is None or entry[0]() is not executor:
            entry = _executors[key] = (weakref.ref(executor, forget), _ExecutorState())
    return entry[1]


_registry: weakref.WeakKeyDictionary[Context, dict[tuple[str, type], _Topic]] = weakref.WeakKeyDictionary()


def _topic(context: Context, name: str, msg_type: type) -> _Topic:
    with _lock:
        # Weak keys: a context's entry goes with it (endpoints of a shut-down context are dead, see _alive).
        topics = _registry.setdefault(context, {})
        return topics.setdefault((name, msg_type), _Topic())


def _compatible(pub: QoSProfile, sub: QoSProfile) -> bool:
    return qos_check_compatible(pub, sub)[0] != QoSCompatibility.ERROR


def _alive(entity: Publisher | Subscription) -> bool:
    return not rclpy_private.destroyed(entity)


class IntraPublisher:
    """An rclpy Publisher that also delivers to intra subscriptions of its context (see the module doc).

    Everything else (``topic_name``, ``get_subscription_count``...) is the wrapped ``publisher``'s.
    """

    def __init__(self, node: Node, msg_type: type, topic: str, qos: QoSProfile, **kwargs: Any) -> None:
        self.node = node
        self.msg_type = msg_type
        self.qos = qos
        self.publisher = node.create_publisher(msg_type, topic, qos, **kwargs)
        self._topic = _topic(node.context, self.publisher.topic_name, msg_type)
        self._version = -1
        self._subs: tuple[IntraSubscription, ...] = ()
        # Messages delivered locally whose DDS publish is deferred: (message, subscriptions that got it).
        self._outbox: deque[tuple[Any, list[IntraSubscription]]] = deque()
        self._flush_on: Executor | None = None  # the executor a flush task is posted to and not yet run
        self._flush_lock = threading.Lock()  # one flusher at a time: DDS order = publish order
        with _lock:
            t = self._topic
            t.publishers = (*[p for p in t.publishers if _alive(p.publisher)], self)
            t.version += 1
        for sub in self._local_subscriptions():
            _log_pair(self, sub)

    def _local_subscriptions(self) -> tuple[IntraSubscription, ...]:
        t = self._topic
        if self._version != t.version:
            with _lock:
                self._version = t.version
                self._subs = tuple(s for s in t.subscriptions if _compatible(self.qos, s.qos))
        return self._subs

    def publish(self, msg: Any) -> None:
        subs = self._local_subscriptions()
        if not subs:
            self.publisher.publish(msg)
            return
        if isinstance(msg, bytes):
            msg = deserialize_message(msg, self.msg_type)
        elif not isinstance(msg, self.msg_type):
            raise TypeError(f'Expected {self.msg_type}, got {type(msg)}')
        got = [sub for sub in subs if sub.deliver(msg)]
        ex = self.node.executor
        if not got or not _usable(ex):
            self.flush()
            self._publish_dds(msg, got)
            return
        # The DDS publish (serialize + write: the costliest part, ~0.25 ms on a 2-core VM woken from idle)
        # is deferred until the local deliveries it caused have run (the subscriber's reply included): the
        # last drain task on this executor flushes it. No drain pending here (subscribers on another
        # executor): a task of its own does.
        self._outbox.append((msg, got))
        st = _state(ex)  # type: ignore[arg-type]
        with _lock:
            if self not in st.dirty:
                st.dirty.append(self)
            drains = st.pending
        if not drains and self._flush_on is not ex:
            self._flush_on = ex
            ex.create_task(self._flush_task)  # type: ignore[union-attr]

    def _publish_dds(self, msg: Any, got: list[IntraSubscription]) -> None:
        if not got:
            self.publisher.publish(msg)
            return
        data = serialize_message(msg)
        for sub in got:
            sub.expect(data)  # before the write: the copy may come back within it
        self.publisher.publish(data)

    def _flush_task(self) -> None:
        self._flush_on = None
        self.flush()

    def flush(self) -> None:
        """Publish on DDS now what was deferred (its executor does it by itself; this is for when none spins)."""
        box = self._outbox
        if box:
            with self._flush_lock:
                while box:
                    self._publish_dds(*box.popleft())

    @property
    def topic_name(self) -> str:
        return self.publisher.topic_name

    def get_subscription_count(self) -> int:
        return self.publisher.get_subscription_count()

    def wait_for_all_acked(self, *args: Any, **kwargs: Any) -> bool:
        self.flush()
        return self.publisher.wait_for_all_acked(*args, **kwargs)

    def destroy(self) -> None:
        self.flush()
        self.node.destroy_publisher(self.publisher)
        _prune(self._topic)

    def __getattr__(self, name: str) -> Any:
        if name == 'publisher':  # not set yet: construction failed
            raise AttributeError(name)
        return getattr(self.publisher, name)


class IntraSubscription:
    """An rclpy Subscription (raw, for other publishers) plus a local queue fed by :class:`IntraPublisher`."""

    def __init__(self, node: Node, msg_type: type, topic: str, callback: Callable[[Any], None], qos: QoSProfile,
                 sender: Callable[[Any], str] | None = None, **kwargs: Any) -> None:
        self.node = node
        self.msg_type = msg_type
        self.qos = qos
        keep_last = qos.history == HistoryPolicy.KEEP_LAST
        self._queue: deque[Any] = deque(maxlen=max(qos.depth, 1) if keep_last else None)
        self._scheduled: Executor | None = None  # the executor a drain task is posted to and not yet run
        self._lock = threading.Lock()
        self._expected: dict[bytes, deque[float]] = {}  # bytes of local deliveries -> deadlines, oldest first
        self._order: deque[tuple[float, bytes]] = deque()  # (deadline, bytes) in delivery order, to expire
        #: Callbacks run with a local delivery / a DDS message; DDS copies of local deliveries dropped.
        self.n_local = self.n_dds = self.n_copies_dropped = 0
        self.subscription = node.create_subscription(msg_type, topic, self._on_dds, qos, raw=True, **kwargs)
        # Guarded: a callback that raises refuses its message (autopilot_core.guard) instead of ending the node.
        self.callback = guard.of(node).callback(self.subscription.topic_name, callback, sender)
        self._topic = _topic(node.context, self.subscription.topic_name, msg_type)
        with _lock:
            t = self._topic
            t.subscriptions = (*[s for s in t.subscriptions if _alive(s.subscription)], self)
            t.version += 1
            pubs = t.publishers
        for pub in pubs:
            if _alive(pub.publisher) and _compatible(pub.qos, qos):
                _log_pair(pub, self)

    # -- local path: any thread -> the node's executor ------------------------------------------
    def deliver(self, msg: Any) -> bool:
        """Queue ``msg`` for the callback; False (DDS will deliver it) when the node has no suitable executor."""
        ex = self.node.executor
        if not _usable(ex):
            return False
        self._queue.append(msg)
        # One drain per batch. Cleared by the drain before it empties the queue, so a message appended after
        # a drain's last check always schedules a new one. Keyed by executor: a node moved to another
        # executor gets a drain there.
        if self._scheduled is not ex:
            self._scheduled = ex
            st = _state(ex)  # type: ignore[arg-type]
            with _lock:
                st.pending += 1
            inline = getattr(_tls, 'inline', None)
            if inline is not None and _tls.executor is ex:
                # Published from a local callback on this executor's thread: the running drain loop calls it
                # next, after that callback returns (in order, never nested), sparing the executor round trip
                # of a task (create_task -> run: ~0.12 ms p50 on the EventsExecutor here).
                inline.append((self, st))
            else:
                ex.create_task(lambda: self._drain(st))  # type: ignore[union-attr]
        return True

    def _drain(self, st: _ExecutorState) -> None:
        """A drain task: this subscription's queue, then the local deliveries its callbacks caused."""
        _scope(self.node.executor, lambda: self._drain_queue(st))

    def _drain_queue(self, st: _ExecutorState) -> None:
        with _lock:
            st.pending -= 1
        self._scheduled = None
        q = self._queue
        try:
            if not _alive(self.subscription):  # destroyed since (Node.destroy_node): as DDS, no more callbacks
                q.clear()
            while q:
                self.n_local += 1
                self.callback(q.popleft())
        finally:
            # The last local delivery of a cascade sends the deferred DDS publishes of this executor.
            with _lock:
                st.drains += 1
                pubs: list[IntraPublisher] = []
                if st.dirty and (st.pending == 0 or st.drains >= MAX_DRAINS_BEFORE_FLUSH):
                    pubs, st.dirty, st.drains = st.dirty, [], 0
            for pub in pubs:
                pub.flush()

    def expect(self, data: bytes) -> None:
        """``data`` (a message delivered locally) is about to come over DDS too: drop it then."""
        deadline = time.monotonic() + DUPLICATE_WINDOW_S
        with self._lock:
            self._expected.setdefault(data, deque()).append(deadline)
            self._order.append((deadline, data))

    # -- DDS path: the executor's subscription callback -----------------------------------------
    def _on_dds(self, data: bytes) -> None:
        if self._expected and self._is_local_copy(data):
            self.n_copies_dropped += 1
            return
        self.n_dds += 1
        try:
            msg = deserialize_message(data, self.msg_type)
        except Exception:  # noqa: BLE001 - rmw raises a bare RuntimeError-like error for bytes of any other shape
            guard.of(self.node).refuse(self.subscription.topic_name,
                                       f'malformed message ({len(data)} bytes): not a {self.msg_type.__name__}')
            return
        _scope(self.node.executor, lambda: self.callback(msg))

    def _is_local_copy(self, data: bytes) -> bool:
        now = time.monotonic()
        with self._lock:
            expected, order = self._expected, self._order
            while order and order[0][0] <= now:  # forget local deliveries whose copy never came
                key = order.popleft()[1]
                deadlines = expected.get(key)
                if deadlines and deadlines[0] <= now:
                    deadlines.popleft()
                    if not deadlines:
                        del expected[key]
            deadlines = expected.get(data)
            if not deadlines:
                return False
            deadlines.popleft()
            if not deadlines:
                del expected[data]
            return True

    @property
    def topic_name(self) -> str:
        return self.subscription.topic_name

    def get_publisher_count(self) -> int:
        return self.subscription.get_publisher_count()

    def destroy(self) -> None:
        self.node.destroy_subscription(self.subscription)
        _prune(self._topic)

    def __getattr__(self, name: str) -> Any:
        if name == 'subscription':  # not set yet: construction failed
            raise AttributeError(name)
        return getattr(self.subscription, name)


def _scope(executor: Executor | None, fn: Callable[[], None]) -> None:
    """Run ``fn`` (a callback, on ``executor``'s thread), then the local deliveries it caused on that executor,
    in order: each subscription's drain runs after the callback that published to it has returned."""
    if getattr(_tls, 'inline', None) is not None or not _usable(executor):  # already in a scope (runs it after)
        fn()
        return
    _tls.inline, _tls.executor = deque(), executor
    try:
        fn()
        while _tls.inline:
            sub, st = _tls.inline.popleft()
            sub._drain_queue(st)
    finally:
        left, _tls.inline, _tls.executor = _tls.inline, None, None
        for sub, st in left:  # a callback raised: the rest go back to their executor
            sub.node.executor.create_task(lambda sub=sub, st=st: sub._drain(st))


def flush(node: Node) -> None:
    """Publish on DDS now what ``node``'s intra publishers deferred (for use when no executor spins it)."""
    with _lock:
        pubs = [p for topics in _registry.values() for t in topics.values() for p in t.publishers if p.node is node]
    for p in pubs:
        if _alive(p.publisher):
            p.flush()


def _prune(t: _Topic) -> None:
    """Drop endpoints destroyed since (directly or by Node.destroy_node)."""
    with _lock:
        t.publishers = tuple(p for p in t.publishers if _alive(p.publisher))
        t.subscriptions = tuple(s for s in t.subscriptions if _alive(s.subscription))
        t.version += 1


def _log_pair(pub: IntraPublisher, sub: IntraSubscription) -> None:
    names = f'{pub.node.get_fully_qualified_name()} -> {sub.node.get_fully_qualified_name()}'
    text = (f'intra-process: {pub.topic_name} ({pub.msg_type.__name__}) {names} without DDS; DDS for other '
            f'processes (off: {ENV_VAR}=0)')
    sub.node.get_logger().info(text)


_told_off = False


def _off(node: Node) -> bool:
    """True when switched off or on an untested rclpy; says so once per process."""
    global _told_off
    if enabled():
        return False
    if not _told_off:
        _told_off = True
        if not switched_on():
            node.get_logger().info(f'intra-process delivery off ({ENV_VAR}=0): nodes of this process talk over DDS')
        else:
            node.get_logger().warning(f'intra-process delivery off: {rclpy_private.unsupported_reason()}; nodes of '
                                      f'this process talk over DDS')
    return True


def create_publisher(node: Node, msg_type: type, topic: str, qos: QoSProfile, **kwargs: Any
                     ) -> IntraPublisher | Publisher:
    """``node.create_publisher`` that also delivers in-process (a plain Publisher when switched off)."""
    if _off(node):
        return node.create_publisher(msg_type, topic, qos, **kwargs)
    return IntraPublisher(node, msg_type, topic, qos, **kwargs)


def create_subscription(node: Node, msg_type: type, topic: str, callback: Callable[[Any], None], qos: QoSProfile,
                        *, sender: Callable[[Any], str] | None = None, **kwargs: Any) -> IntraSubscription | Subscription:
    """``node.create_subscription`` that also receives in-process (a plain Subscription when switched off).

    Either way the callback is guarded (:mod:`autopilot_core.guard`): what it raises refuses the message;
    ``sender`` names a message's sender in that log line."""
    if _off(node):
        return guard.create_subscription(node, msg_type, topic, callback, qos, sender=sender, **kwargs)
    return IntraSubscription(node, msg_type, topic, callback, qos, sender=sender, **kwargs)
