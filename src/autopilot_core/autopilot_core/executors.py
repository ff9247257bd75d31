"""Executor choice and spinning, so no node writes its own spin loop.

rclpy's ``EventsExecutor`` (``rclpy.experimental``) receives 10-20x more messages per second than the
default ``SingleThreadedExecutor`` on our machines (../shared/DESIGN.md, "Speed"), so it is the
default where it exists. In rclpy 7.1 (Jazzy) it hangs on any blocking call made without a timeout:
``spin()``, ``spin_once()`` and ``spin_until_future_complete(f)`` run no callbacks and ignore SIGINT.
Everything here therefore spins in short ``spin_once(timeout_sec=...)`` slices.

The choice can be overridden per process with ``AUTOPILOT_EXECUTOR=events|single|multi`` (a fallback
when a callback misbehaves under one executor) or per call with ``kind=``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence

import rclpy
from rclpy.action import ActionClient, ActionServer
from rclpy.executors import Executor, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.task import Future

from autopilot_core import intra, params

ENV_VAR = 'AUTOPILOT_EXECUTOR'
KINDS = ('auto', 'events', 'single', 'multi')
#: Longest a single spin slice blocks; bounds how late a stop request or Ctrl-C is seen.
SLICE_S = 0.1


def events_executor_class() -> Callable[..., Executor] | None:
    """rclpy's EventsExecutor factory, or None when this rclpy has none."""
    try:
        from rclpy.experimental import EventsExecutor
    except ImportError:
        return None
    return EventsExecutor


def make_executor(kind: str | None = None, context: rclpy.context.Context | None = None) -> Executor:
    """Create the executor named by ``kind``, else ``$AUTOPILOT_EXECUTOR``, else the best available.

    ``auto`` and ``events`` both fall back to the SingleThreadedExecutor when rclpy has no
    EventsExecutor; ``events`` only differs in that it is an explicit request.
    """
    kind = (kind or os.environ.get(ENV_VAR) or 'auto').lower()
    if kind not in KINDS:
        raise ValueError(f'unknown executor {kind!r} (from {"argument" if kind else ENV_VAR}); '
                         f'choose one of: {", ".join(KINDS)}')
    if kind in ('auto', 'events'):
        cls = events_executor_class()
        if cls is not None:
            return cls(context=context)
        return SingleThreadedExecutor(context=context)
    if kind == 'multi':
        return MultiThreadedExecutor(context=context)
    return SingleThreadedExecutor(context=context)


def executor_name(executor: Executor) -> str:
    return type(executor).__name__


def _is_events_executor(executor: Executor) -> bool:
    return type(executor).__name__ == 'EventsExecutor'


def spin(nodes: Node | Iterable[Node], executor: Executor | None = None, *,
         until: Callable[[], bool] | Future | None = None, timeout_sec: float | None = None,
         stop: threading.Event | None = None) -> bool:
    """Spin ``nodes`` until ``until`` holds, ``timeout_sec`` passes, ``stop`` is set or rclpy shuts down.

    ``until`` is a condition (checked between callbacks) or a Future (done). Returns True when it
    held (False on timeout, stop or shutdown); without it, spins until timeout/stop/shutdown. The
    executor is created (``make_executor``) when not given; nodes it did not hold are removed again
    on return so the caller can reuse them.

    With the EventsExecutor, futures and "no condition" run in its native loop
    (``spin_until_future_complete`` with a slice timeout): a timed ``spin_once`` costs ~50 us of CPU per
    call on rclpy 7.1, which per message would cap a node's receive rate (bench/transport.py).
    """
    node_list = [nodes] if isinstance(nodes, Node) else list(nodes)
    ex = executor or make_executor(context=node_list[0].context if node_list else None)
    held = set(ex.get_nodes())
    added = [n for n in node_list if n not in held]
    for n in added:
        ex.add_node(n)
    deadline = None if timeout_sec is None else time.monotonic() + timeout_sec
    ctx = node_list[0].context if node_list else None
    future = until if isinstance(until, Future) else None
    condition = until if not isinstance(until, Future) else None
    native = _is_events_executor(ex) and condition is None

    def held_now() -> bool:
        if future is not None:
            return future.done()
        return condition is not None and condition()

    try:
        while True:
            if held_now():
                return True
            if (stop is not None and stop.is_set()) or (ctx is not None and not ctx.ok()):
                return False
            remaining = SLICE_S if deadline is None else min(SLICE_S, deadline - time.monotonic())
            if remaining <= 0:
                return held_now()
            if native:
                # A fresh future per slice when there is none: each call adds a done-callback to it.
                ex.spin_until_future_complete(future or Future(), timeout_sec=remaining)
            else:
                ex.spin_once(timeout_sec=remaining)
    finally:
        for n in node_list:  # DDS publishes autopilot_core.intra deferred must not wait for a next spin
            intra.flush(n)
        for n in added:
            ex.remove_node(n)
        if executor is None:
            ex.shutdown(timeout_sec=1.0)


def spin_until_future(node: Node, future: Future, timeout_sec: float,
                      executor: Executor | None = None) -> bool:
    """Spin until ``future`` is done or ``timeout_sec`` passes; True when done."""
    return spin(node, executor, until=future, timeout_sec=timeout_sec)


def destroy_node(node: Node) -> None:
    """``node.destroy_node()`` after its action servers and clients (waitables), which it leaves alone.

    Left to the garbage collector, an action client or server can be finalized after its participant is
    gone, which hangs the process inside Fast DDS with the GIL held (seen in a test process).
    """
    for waitable in list(node.waitables):
        if isinstance(waitable, (ActionClient, ActionServer)):
            waitable.destroy()
    node.destroy_node()


def run_node(node_factory: Callable[[], Node], args: list[str] | None = None,
             executor_kind: str | None = None) -> int:
    """The ``main()`` of a node process: init, build the node, spin until Ctrl-C/SIGTERM, clean up.

    Returns the process exit code. A node whose constructor raises (bad parameters, missing
    hardware) gets its error logged in one line naming the problem, and exit code 1.
    """
    return run_nodes([node_factory], args, executor_kind)


def run_nodes(node_factories: Sequence[Callable[[], Node]], args: list[str] | None = None,
              executor_kind: str | None = None) -> int:
    """:func:`run_node` for several nodes composed in one process, spun by ONE executor (a component
    container's job in rclcpp): built in order, closed (``close()``) and destroyed in reverse order.
    Between them, topics made with :mod:`autopilot_core.intra` skip DDS."""
    import signal
    import sys

    rclpy.init(args=args, signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    nodes: list[Node] = []
    try:
        try:
            # Composed: a key given to the process is unknown only when none of its nodes declares it.
            with params.composed() if len(node_factories) > 1 else contextlib.nullcontext():
                for factory in node_factories:
                    nodes.append(factory())
        except Exception as exc:  # noqa: BLE001 - a startup error is reported, not raised
            print(f'[FATAL] {exc}', file=sys.stderr, flush=True)
            return 1
        executor = make_executor(executor_kind, context=nodes[0].context)
        spin(nodes, executor, stop=stop)
        for node in reversed(nodes):
            close = getattr(node, 'close', None)
            if callable(close):
                close()
        return 0
    finally:
        for node in reversed(nodes):
            destroy_node(node)
        if rclpy.ok():
            rclpy.shutdown()
