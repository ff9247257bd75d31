"""Hostile input, handled in one place: a callback never kills its node, and every refusal is told and counted.

Any topic can carry malformed bytes, NaN, 1e308, a megabyte string or a message from another rig; any
service can be called with anything (../shared/DESIGN.md, "Bad input and trust"). Nodes check what they
use and raise :class:`InputError` (or a ValueError of their own) naming the problem and the fix; this
module turns that -- and any other exception of a callback, which would otherwise end the executor and
the process -- into:

* one log line per endpoint per ``LOG_INTERVAL_S`` (the first at once; later ones say how many were
  refused since), naming the endpoint, the sender where the message names one, and why;
* a count per endpoint in the node's :class:`InputGuard`, published with the standard ROS diagnostics
  (``/diagnostics``, ``diagnostic_msgs/DiagnosticArray``: rqt_runtime_monitor and Foxglove show it), one
  status per node, every ``DIAGNOSTICS_PERIOD_S`` and on the first refusal;
* for services, a response with ``success = False`` and the reason in ``message`` (where the response
  has those fields), so the caller hears why.

The checks themselves are in :mod:`autopilot_core.checks` (no ROS), re-exported here.
"""

from __future__ import annotations

import inspect
import math
import time
import traceback
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import QoSProfile

from autopilot_core.checks import InputError, short

#: Longest a node stays quiet about refusals on one endpoint (the first is logged at once).
LOG_INTERVAL_S = 5.0
#: How often each node publishes its diagnostics status.
DIAGNOSTICS_PERIOD_S = 2.0
#: A reason is cut to this in logs and responses (it may quote the input).
MAX_REASON = 300


def _cut(reason: str) -> str:
    reason = ' '.join(reason.split())
    return reason if len(reason) <= MAX_REASON else reason[:MAX_REASON] + '...'


@dataclass
class _Endpoint:
    refused: int = 0
    unlogged: int = 0
    last_logged: float = -math.inf
    last_reason: str = ''


@dataclass
class InputGuard:
    """What one node refused, by endpoint; logs at most one line per endpoint per ``LOG_INTERVAL_S``."""

    node: Node
    log_interval_s: float = LOG_INTERVAL_S
    endpoints: dict[str, _Endpoint] = field(default_factory=dict)
    _pub: Any = None
    _dirty: bool = False

    @property
    def total(self) -> int:
        return sum(e.refused for e in self.endpoints.values())

    def refuse(self, endpoint: str, reason: str, sender: str = '') -> str:
        """Count and (rate-limited) log one refused input; returns the reason as logged."""
        e = self.endpoints.setdefault(endpoint, _Endpoint())
        reason = _cut(reason)
        e.refused += 1
        e.last_reason = reason
        now = time.monotonic()
        if now - e.last_logged >= self.log_interval_s:
            more = f' ({e.unlogged} more refused since the last report)' if e.unlogged else ''
            who = f' from {short(sender, 60)}' if sender else ''
            self.node.get_logger().error(f'{endpoint} refused{who}: {reason}{more} '
                                         f'[{e.refused} refused so far; /diagnostics]')
            e.last_logged, e.unlogged = now, 0
        else:
            e.unlogged += 1
        first = not self._dirty
        self._dirty = True
        if first:
            self.publish()
        return reason

    def status(self) -> DiagnosticStatus:
        node = self.node
        total = self.total
        # What could grow with a long session, so a soak (or a lab) can see it stay flat.
        values = [KeyValue(key='timers', value=str(len(list(node.timers)))),
                  KeyValue(key='subscriptions', value=str(len(list(node.subscriptions)))),
                  KeyValue(key='rss_kb', value=str(_rss_kb()))]
        values += [KeyValue(key=f'refused {name}', value=str(e.refused)) for name, e in sorted(self.endpoints.items())]
        values += [KeyValue(key=f'last refusal {name}', value=e.last_reason)
                   for name, e in sorted(self.endpoints.items())]
        return DiagnosticStatus(
            level=DiagnosticStatus.WARN if total else DiagnosticStatus.OK,
            name=f'{node.get_fully_qualified_name()}: input',
            hardware_id=node.get_namespace().strip('/') or node.get_name(),
            message=f'{total} input(s) refused' if total else 'no input refused',
            values=values)

    def publish(self) -> None:
        if self._pub is None:
            return
        msg = DiagnosticArray(status=[self.status()])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        try:
            self._pub.publish(msg)
        except Exception:  # noqa: BLE001, S110 - reporting must never be what fails a callback
            pass

    def callback(self, endpoint: str, fn: Callable[[Any], None],
                 sender: Callable[[Any], str] | None = None) -> Callable[[Any], None]:
        """``fn`` for a subscription: an exception refuses the message instead of ending the node."""
        def guarded(msg: Any) -> None:
            try:
                fn(msg)
            except Exception as exc:  # noqa: BLE001 - no message may end a node
                self.refuse(endpoint, describe(exc), _sender(sender, msg))
        return guarded

    def service(self, endpoint: str, srv_type: Any, fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        """``fn`` for a service: an exception becomes a response with ``success`` False and the reason."""
        if inspect.iscoroutinefunction(fn):
            async def guarded_async(req: Any, res: Any) -> Any:
                try:
                    return await fn(req, res)
                except Exception as exc:  # noqa: BLE001 - no request may end a node
                    return failed_response(srv_type, self.refuse(endpoint, describe(exc)))
            return guarded_async

        def guarded(req: Any, res: Any) -> Any:
            try:
                return fn(req, res)
            except Exception as exc:  # noqa: BLE001 - no request may end a node
                reason = self.refuse(endpoint, describe(exc))
                return failed_response(srv_type, reason)
        return guarded


def _rss_kb() -> int:
    """This process's resident memory (Linux; 0 elsewhere)."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def describe(exc: BaseException) -> str:
    """The user-facing text of a refusal: our own errors as they are, others with their type (they are bugs
    or malformed input the checks missed, so the location helps whoever reads the log)."""
    if isinstance(exc, (InputError, ValueError)) and type(exc).__module__.startswith('autopilot'):
        return str(exc)
    if isinstance(exc, RecursionError):
        return 'input nested too deeply'
    where = traceback.extract_tb(exc.__traceback__)
    at = f' at {where[-1].filename.rsplit("/", 1)[-1]}:{where[-1].lineno}' if where else ''
    return f'{type(exc).__name__}: {exc}{at}'


def failed_response(srv_type: Any, reason: str) -> Any:
    res = srv_type.Response()
    if hasattr(res, 'success'):
        res.success = False
    if hasattr(res, 'message'):
        res.message = reason
    return res


def _sender(sender: Callable[[Any], str] | None, msg: Any) -> str:
    if sender is None or isinstance(msg, (bytes, bytearray, memoryview)):
        return ''
    try:
        return str(sender(msg))
    except Exception:  # noqa: BLE001 - a malformed message may lack what names its sender
        return ''


_guards: weakref.WeakKeyDictionary[Node, InputGuard] = weakref.WeakKeyDictionary()

#: Reliable, keep a few, volatile: what diagnostic_updater publishes with.
DIAGNOSTICS_QOS = QoSProfile(depth=10)


def of(node: Node) -> InputGuard:
    """The node's guard; the first call also starts its ``/diagnostics`` status."""
    g = _guards.get(node)
    if g is None:
        g = _guards[node] = InputGuard(node)
        g._pub = node.create_publisher(DiagnosticArray, '/diagnostics', DIAGNOSTICS_QOS)
        node.create_timer(DIAGNOSTICS_PERIOD_S, g.publish)
    return g


def create_subscription(node: Node, msg_type: type, topic: str, callback: Callable[[Any], None], qos: QoSProfile,
                        *, sender: Callable[[Any], str] | None = None, **kwargs: Any) -> Any:
    """``node.create_subscription`` whose callback cannot end the node (see the module doc)."""
    name = node.resolve_topic_name(topic)  # counted under the name the graph shows, as intra's are
    return node.create_subscription(msg_type, topic, of(node).callback(name, callback, sender), qos, **kwargs)


def create_service(node: Node, srv_type: Any, name: str, callback: Callable[[Any, Any], Any], **kwargs: Any) -> Any:
    """``node.create_service`` whose callback cannot end the node: it answers ``success = False`` instead."""
    resolved = node.resolve_service_name(name)
    return node.create_service(srv_type, name, of(node).service(resolved, srv_type, callback), **kwargs)
