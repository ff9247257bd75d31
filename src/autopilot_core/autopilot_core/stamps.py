"""ROS time (``builtin_interfaces/Time``, ``std_msgs/Header.stamp``) to and from integer nanoseconds.

The one place the suite converts stamps: nodes keep times as ``int`` nanoseconds (exact, comparable, what
HDF5 columns and SQLite hold) and turn them into messages only at the wire.
"""

from __future__ import annotations

from typing import Any

from builtin_interfaces.msg import Time

NS_PER_S = 1_000_000_000


def to_ns(stamp: Any) -> int:
    """Nanoseconds of a ``builtin_interfaces/Time`` (or anything with ``sec`` and ``nanosec``)."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def to_msg(ns: int) -> Time:
    """A ``builtin_interfaces/Time`` of ``ns`` nanoseconds (>= 0)."""
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return Time(sec=sec, nanosec=nanosec)


def stamp(target: Any, ns: int) -> None:
    """Sets ``target.sec``/``target.nanosec`` (a message's ``header.stamp``, say) to ``ns`` in place."""
    target.sec, target.nanosec = divmod(int(ns), NS_PER_S)
