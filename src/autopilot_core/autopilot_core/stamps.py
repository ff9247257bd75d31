"""ROS time (``builtin_interfaces/Time``, ``std_msgs/Header.stamp``) to and from integer nanoseconds.

The one place the suite converts stamps: nodes keep times as ``int`` nanoseconds (exact, comparable, what
HDF5 columns and SQLite hold) and turn them into messages only at the wire.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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


def bracketed_offset_ns(outer: Callable[[], int], inner: Callable[[], int], tries: int = 8,
                        good_ns: int = 0) -> tuple[int, int]:
    """``inner() - outer()`` for two clocks read at the same instant (both in ns): (offset, bracket width).

    Each try brackets one ``inner()`` read between two ``outer()`` reads and takes their midpoint, so the read's
    own duration does not bias the offset; the error is at most half the bracket. A thread preempted inside a
    bracket (a loaded machine: hundreds of us) would put the midpoint that far off, so the tightest of up to
    ``tries`` brackets is kept, stopping at the first narrower than ``good_ns``.
    """
    best_width, best = -1, 0
    for _ in range(max(1, tries)):
        o1 = outer()
        other = inner()
        o2 = outer()
        if best_width < 0 or o2 - o1 < best_width:
            best_width, best = o2 - o1, other - (o1 + o2) // 2
        if best_width < good_ns:
            break
    return best, best_width


def offset_from_monotonic_ns(read_ns: Callable[[], int], tries: int = 8, good_ns: int = 20_000) -> int:
    """``read_ns() - time.monotonic_ns()`` for a clock read at the same instant, to some microseconds
    (:func:`bracketed_offset_ns`)."""
    return bracketed_offset_ns(time.monotonic_ns, read_ns, tries, good_ns)[0]
