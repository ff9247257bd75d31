"""Named QoS profiles for the suite's kinds of traffic.

Every publisher and subscription of the suite takes one of these, so the two ends of a topic always
match and the choice is argued once, here. Tools (``ros2 topic echo``, rqt, Foxglove) subscribe with
reliable/volatile by default, which is compatible with all of them except ``STREAM`` (best effort),
for which they need ``--qos-reliability best_effort``.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

#: Discrete events (GPIO edges, sound onsets, output commands). Reliable + keep-all: an event lost is
#: a response time or a reward never recorded, and events are small and rare (tens per second), so
#: keeping every unacknowledged sample costs little. Volatile: a late joiner must not replay old pokes
#: as if they were new. Note (ROS2-PIP.md): with 5000 unacknowledged samples, ``publish`` blocks and
#: then raises; a subscriber that slow is a bug to see, not to hide by overwriting.
EVENTS = QoSProfile(
    history=HistoryPolicy.KEEP_ALL,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

#: Trial data and trial acknowledgements. Same reasoning as EVENTS. Durability across restarts and
#: link losses longer than the DDS lease is NOT left to DDS (a volatile writer forgets what a lost
#: peer never acknowledged): the pilot's journal and the terminal's acks provide it.
TRIALS = QoSProfile(
    history=HistoryPolicy.KEEP_ALL,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

#: Heartbeats and other "current state" topics. Only the newest sample matters (depth 1), and a
#: subscriber that joins late (a terminal started after the pilots) must get it at once, without
#: waiting for the next beat: transient-local. Reliable, because transient-local needs it to replay.
STATUS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

#: Continuous streams (camera frames, analog samples, positions). Best effort with a small queue: a
#: frame that arrives late is worth less than the next one, and retransmitting megabytes would stall
#: the link for every other topic. Consumers that must record every sample use EVENTS instead.
STREAM = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=5,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)

#: Name -> profile, for parameters and CLI options that pick a profile by name.
PROFILES: dict[str, QoSProfile] = {
    'events': EVENTS,
    'trials': TRIALS,
    'status': STATUS,
    'stream': STREAM,
}


def by_name(name: str) -> QoSProfile:
    """The profile called ``name`` (case-insensitive), or ValueError naming the choices."""
    try:
        return PROFILES[name.lower()]
    except KeyError:
        raise ValueError(f'unknown QoS profile {name!r}; choose one of: {", ".join(PROFILES)}') from None
