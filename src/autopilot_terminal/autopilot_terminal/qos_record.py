"""A publisher's QoS as the terminal records it: written (JSON) and read back here, and nowhere else.

The recorder stores each recorded topic's offered QoS with its messages (:func:`describe`); ``bag info``,
``bag play`` and the MCAP export read it back (:func:`parse`) as a :class:`Qos`, which turns into rosbag2's
``offered_qos_profiles`` (:func:`offered_qos_profiles`) or an rclpy profile (:meth:`Qos.to_rclpy`). Reading
is lenient about spelling (rmw short names in any case, enum names, rmw integers; durations in nanoseconds or
``{sec, nsec}``) because bags also come from other tools. Needs no rclpy except for ``to_rclpy``/``describe``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from autopilot_core.stamps import NS_PER_S


class QosError(ValueError):
    """Recorded QoS text that is not a QoS profile; the message names the field and what is allowed."""


#: rmw enum values, by policy: rosbag2 metadata version <= 8 stores these integers.
POLICIES: dict[str, tuple[str, ...]] = {
    'history': ('system_default', 'keep_last', 'keep_all', 'unknown'),
    'reliability': ('system_default', 'reliable', 'best_effort', 'unknown', 'best_available'),
    'durability': ('system_default', 'transient_local', 'volatile', 'unknown', 'best_available'),
    'liveliness': ('system_default', 'automatic', 'manual_by_node', 'manual_by_topic', 'unknown',
                   'best_available'),
}
#: Depth when a keep-last profile does not say (rclpy's usual default).
DEFAULT_DEPTH = 10


@dataclass(frozen=True)
class Qos:
    """A recorded publisher's QoS profile: policies by their rmw short names, durations in nanoseconds
    (0: unspecified, the rmw default)."""

    history: str = 'keep_last'
    depth: int = DEFAULT_DEPTH
    reliability: str = 'reliable'
    durability: str = 'volatile'
    liveliness: str = 'system_default'
    deadline_ns: int = 0
    lifespan_ns: int = 0
    liveliness_lease_duration_ns: int = 0
    avoid_ros_namespace_conventions: bool = False

    def rosbag2(self) -> dict[str, Any]:
        """This profile as one entry of rosbag2's ``offered_qos_profiles`` (metadata version 8: enums as ints)."""
        def duration(ns: int) -> dict[str, int]:
            return {'sec': ns // NS_PER_S, 'nsec': ns % NS_PER_S}

        return {'history': POLICIES['history'].index(self.history), 'depth': self.depth,
                'reliability': POLICIES['reliability'].index(self.reliability),
                'durability': POLICIES['durability'].index(self.durability),
                'deadline': duration(self.deadline_ns), 'lifespan': duration(self.lifespan_ns),
                'liveliness': POLICIES['liveliness'].index(self.liveliness),
                'liveliness_lease_duration': duration(self.liveliness_lease_duration_ns),
                'avoid_ros_namespace_conventions': self.avoid_ros_namespace_conventions}

    def to_rclpy(self) -> Any:
        """This profile as an rclpy QoSProfile (history, depth, reliability, durability), to publish it again."""
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        def policy(cls: Any, name: str) -> Any:
            # 'unknown' is what rmw reports when it could not tell; use the system default.
            return cls.get_from_short_key('system_default' if name == 'unknown' else name)

        history = policy(HistoryPolicy, self.history)
        depth = self.depth if self.depth or history != HistoryPolicy.KEEP_LAST else DEFAULT_DEPTH
        return QoSProfile(history=history, depth=depth, reliability=policy(ReliabilityPolicy, self.reliability),
                          durability=policy(DurabilityPolicy, self.durability))


def _policy(kind: str, value: Any, where: str) -> str:
    names = POLICIES[kind]
    if isinstance(value, bool):
        raise QosError(f'{where}: QoS {kind} {value!r} is not a policy')
    if isinstance(value, int):
        if 0 <= value < len(names):
            return names[value]
    elif isinstance(value, str):
        # 'reliable', 'RELIABLE', 'QoSReliabilityPolicy.RELIABLE', 'RMW_QOS_POLICY_RELIABILITY_RELIABLE', ...
        name = value.rsplit('.', 1)[-1].lower().removeprefix(f'rmw_qos_policy_{kind}_')
        if name in names:
            return name
    raise QosError(f'{where}: QoS {kind} {value!r} is not one of {", ".join(names)}')


def _nanoseconds(value: Any, what: str, where: str) -> int:
    if isinstance(value, Mapping):  # {sec, nsec}, as rosbag2 and `ros2 topic info -v` write it
        try:
            return int(value.get('sec', 0)) * NS_PER_S + int(value.get('nsec', value.get('nanosec', 0)))
        except (TypeError, ValueError):
            pass
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise QosError(f'{where}: QoS {what} {value!r} is not a duration (nanoseconds or {{sec, nsec}})')


def parse(text: str, where: str = 'QoS') -> Qos:
    """The recorded QoS (JSON text) as a :class:`Qos`.

    Accepts one profile (an object) or rosbag2's list of offered profiles (the first is used, as rosbag2
    does when they agree on what matters for matching); policies as rmw short names in any case, enum
    names or rmw integers; durations as nanoseconds (``deadline_ns``, ... as the Terminal records them) or
    ``{sec, nsec}``. Missing keys take rclpy's defaults
    (keep-last 10, reliable, volatile); an empty object is the default profile.
    """
    try:
        data = json.loads(text) if text else {}
    except ValueError as exc:
        raise QosError(f'{where}: QoS is not JSON ({exc})') from None
    if isinstance(data, list):
        data = data[0] if data else {}
    if not isinstance(data, Mapping):
        raise QosError(f'{where}: QoS must be a JSON object, got {type(data).__name__}')
    kw: dict[str, Any] = {}
    for kind in POLICIES:
        if data.get(kind) is not None:
            kw[kind] = _policy(kind, data[kind], where)
    if data.get('depth') is not None:
        depth = data['depth']
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise QosError(f'{where}: QoS depth {depth!r} is not an integer >= 0')
        kw['depth'] = depth
    elif kw.get('history') in ('keep_all', 'system_default'):
        kw['depth'] = 0
    for key, *aliases in (('deadline', 'deadline_ns'), ('lifespan', 'lifespan_ns'),
                          ('liveliness_lease_duration', 'liveliness_lease_duration_ns', 'liveliness_lease_ns')):
        value = next((data[k] for k in (key, *aliases) if data.get(k) is not None), None)
        if value is not None:
            kw[f'{key}_ns'] = _nanoseconds(value, key, where)
    if data.get('avoid_ros_namespace_conventions') is not None:
        kw['avoid_ros_namespace_conventions'] = bool(data['avoid_ros_namespace_conventions'])
    return Qos(**kw)


def offered_qos_profiles(qos: Qos) -> str:
    """rosbag2's ``offered_qos_profiles`` text (a YAML list of one profile) for MCAP channel metadata."""
    return yaml.safe_dump([qos.rosbag2()], sort_keys=False).strip()


def describe(profile: Any) -> str:
    """An rclpy QoSProfile as the recorder stores it (JSON; policies as lower-case short names, durations in ns)."""
    return json.dumps({
        'history': profile.history.name.lower(), 'depth': int(profile.depth),
        'reliability': profile.reliability.name.lower(), 'durability': profile.durability.name.lower(),
        'deadline_ns': int(profile.deadline.nanoseconds), 'lifespan_ns': int(profile.lifespan.nanoseconds),
        'liveliness': profile.liveliness.name.lower(),
        'liveliness_lease_ns': int(profile.liveliness_lease_duration.nanoseconds)})
