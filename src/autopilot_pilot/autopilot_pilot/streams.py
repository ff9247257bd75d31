"""Stream roles on the pilot: a numeric field of a topic's messages, read into the task (:class:`Stream`).

:func:`field_reader` checks a role's field against the message definition before a session starts (the error
lists the numeric fields there are); :class:`StreamState` is what the session keeps per open stream: when the
last sample came (a stream silent past its role's ``timeout_s`` ends the session) and how many samples were
not a finite number (ignored, told once). :class:`RosStreams` opens the subscriptions on the pilot node.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rclpy.node import Node

from autopilot_core import guard, qos, stamps
from autopilot_runtime_py.messages import InterfaceNotFoundError, get_message
from autopilot_tasks.task import Stream

NUMERIC = frozenset({'boolean', 'octet', 'byte', 'char', 'int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32',
                     'int64', 'uint64', 'float', 'double', 'float32', 'float64'})

#: Longest wait for a stream's first sample after its subscription is made (DDS discovery across hosts).
FIRST_SAMPLE_S = 5.0


def numeric_fields(msg_cls: Any, prefix: str = '', depth: int = 0) -> list[str]:
    """Every numeric scalar field's dotted path (nested messages walked, arrays and sequences left out)."""
    out: list[str] = []
    for name, type_name in msg_cls.get_fields_and_field_types().items():
        if type_name in NUMERIC:
            out.append(prefix + name)
        elif '/' in type_name and '[' not in type_name and '<' not in type_name and depth < 4:
            try:
                out += numeric_fields(get_message(type_name), f'{prefix}{name}.', depth + 1)
            except (InterfaceNotFoundError, ValueError):
                pass
    return out


def field_reader(msg_type: str, path: str) -> tuple[Any, Callable[[Any], Any]]:
    """The message class of ``msg_type`` and a reader of its numeric field ``path``; ValueError naming the
    problem (an unknown type, or a field that is not a numeric scalar: the numeric ones are listed)."""
    try:
        msg_cls = get_message(msg_type)
    except (InterfaceNotFoundError, ValueError) as exc:
        raise ValueError(f'message type {msg_type!r}: {exc}') from None
    if path not in numeric_fields(msg_cls):
        raise ValueError(f'{msg_type} has no numeric field {path!r}; its numeric fields: '
                         f'{", ".join(numeric_fields(msg_cls)) or "none"}')
    names = path.split('.')

    def read(msg: Any) -> Any:
        for name in names:
            msg = getattr(msg, name)
        return msg
    return msg_cls, read


def stamp_reader(msg_cls: Any) -> Callable[[Any], int] | None:
    """The reader of a message's ``header.stamp`` in ns, or None for a type without a std_msgs Header."""
    if msg_cls.get_fields_and_field_types().get('header') != 'std_msgs/Header':
        return None
    return lambda msg: stamps.to_ns(msg.header.stamp)


def as_number(value: Any, limits: tuple[float, float] = (-math.inf, math.inf)) -> float | None:
    """A sample's value as a float within ``limits``, or None (NaN, infinities, out of the limits)."""
    x = float(value)
    return x if math.isfinite(x) and limits[0] <= x <= limits[1] else None


@dataclass
class StreamState:
    """One open stream of a session: its last sample's arrival (monotonic s) and its refused samples."""

    role: str
    topic: str
    timeout_s: float
    limits: tuple[float, float]
    last_s: float
    close: Callable[[], None]
    samples: int = 0
    refused: int = 0

    def silent(self, now_s: float) -> str | None:
        """Why the session must end (the stream went quiet), or None. The first sample may take
        :data:`FIRST_SAMPLE_S` at least: a new subscription is matched over the network first."""
        if now_s - self.last_s <= (self.timeout_s if self.samples else max(self.timeout_s, FIRST_SAMPLE_S)):
            return None
        what = 'no sample yet' if not self.samples else f'no sample for {now_s - self.last_s:.1f} s'
        return (f'stream {self.role}: {what} on {self.topic} (timeout_s {self.timeout_s:g}): is the node '
                'publishing it running (a child host: its wheel node, its network)?')


def stream_topic(prefix: str, device: str) -> str:
    """A stream role's topic: absolute as given, or under the hardware namespace ``prefix``."""
    return device if device.startswith('/') else f'{prefix}/{device}'


class RosStreams:
    """Stream subscriptions on the pilot node, for the roles of a session's task."""

    def __init__(self, node: Node, prefix: str) -> None:
        self.node = node
        self.prefix = prefix

    def topic(self, device: str) -> str:
        return stream_topic(self.prefix, device)

    def check(self, decl: Stream) -> str | None:
        """Why the role's type or field cannot be read, or None."""
        try:
            field_reader(decl.msg_type, decl.field)
        except ValueError as exc:
            return str(exc)
        return None

    def open(self, decl: Stream, device: str, deliver: Callable[[Any, int | None], None]) -> Callable[[], None]:
        """Subscribe to the role's topic, ``deliver(value, stamp_ns)`` per message; returns the closer.
        ValueError (from :func:`field_reader`) for a type or field that cannot be read."""
        msg_cls, read = field_reader(decl.msg_type, decl.field)
        stamp = stamp_reader(msg_cls)
        node = self.node

        def on_msg(msg: Any) -> None:
            deliver(read(msg), stamp(msg) if stamp is not None else node.get_clock().now().nanoseconds)
        sub = guard.create_subscription(node, msg_cls, self.topic(device), on_msg, qos.STREAM)

        def close() -> None:
            node.destroy_subscription(sub)
        return close
