"""The pilot registry: what the terminal holds per pilot (:class:`PilotLink`), found by name or by topic, and
the ``/terminal/pilots`` message (:class:`Pilots`)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from autopilot_msgs.msg import PilotEntry, PilotRegistry, PilotStatus

from .clocksync import ClockFilter


@dataclass
class PilotLink:
    """What the terminal holds for one pilot (keyed by namespace); the endpoints are made by the node."""

    ns: str
    name: str
    ack_pub: Any = None  # TrialAck publisher
    action: Any = None  # RunSession action client
    load: Any = None  # LoadProtocol client
    pause: Any = None  # Trigger clients
    resume: Any = None
    cancel: Any = None  # CancelGoal client of the session action
    events: Any = None  # GetEvents client: the pilot's journal_events (missing GPIO events, :mod:`.fetch`)
    subs: list[Any] = field(default_factory=list)
    status: PilotStatus | None = None
    seen: float = 0.0  # monotonic time of the last heartbeat
    session: tuple[str, str] | None = None  # (subject, session_id) the heartbeats say runs
    planned: dict[str, Any] = field(default_factory=dict)  # what start_session sent (step_name, protocol, ...)
    named: bool = False  # ``name`` is the one the first heartbeat gave: every message must name it
    # Every heartbeat received on its topic, checked or not: (monotonic, msg); start_session reads a rejection here.
    heard: deque[tuple[float, PilotStatus]] = field(default_factory=lambda: deque(maxlen=64))
    listeners: list[Callable[[], None]] = field(default_factory=list)  # called once at the next heartbeat heard
    unknown: set[str] = field(default_factory=set)  # sessions it runs that are not recorded (said once each)
    clock_client: Any = None  # ClockSync client of the pilot's clock_sync (:mod:`.clocksync`)
    clock: ClockFilter = field(default_factory=ClockFilter)
    clock_warned: bool = False  # the offset is past the warning threshold and that was said

    @property
    def base(self) -> str:
        """The namespace without its trailing slash: topics are ``f'{base}/status'``."""
        return self.ns.rstrip('/')

    def hear(self, now: float, msg: PilotStatus) -> None:
        """A heartbeat arrived on the pilot's topic (before any check of it)."""
        self.heard.append((now, msg))
        listeners, self.listeners = self.listeners, []
        for listener in listeners:
            listener()


class Pilots:
    """The pilots found so far, by namespace."""

    def __init__(self) -> None:
        self.links: dict[str, PilotLink] = {}
        self._sig: tuple[tuple[str, bool, int, str], ...] = ()

    def __iter__(self) -> Iterator[PilotLink]:
        return iter(list(self.links.values()))  # a copy: other threads read while pilots are added

    def __contains__(self, ns: str) -> bool:
        return ns in self.links

    def add(self, link: PilotLink) -> None:
        self.links[link.ns] = link

    def namespaces(self) -> list[str]:
        return list(self.links)

    def find(self, name: str) -> PilotLink:
        """The pilot called ``name`` (or at namespace ``name``); LookupError naming the known ones."""
        for link in self:
            if name in (link.name, link.ns, link.ns.strip('/')):
                return link
        known = ', '.join(sorted(link.name for link in self)) or 'none'
        raise LookupError(f'unknown pilot {name!r} (known: {known}); is it running on this ROS_DOMAIN_ID?')

    def of_topic(self, topic: str, rels: Collection[str] | None = None) -> tuple[PilotLink, str] | None:
        """The pilot whose namespace holds ``topic`` (nested namespaces: the nearest) and the topic's name
        relative to it; only names in ``rels`` when given. None: no pilot's."""
        found = [(link, topic[len(link.base) + 1:]) for link in self if topic.startswith(link.base + '/')]
        found = [(link, rel) for link, rel in found if rels is None or rel in rels]
        return max(found, key=lambda f: len(f[0].ns)) if found else None

    def events_client(self, topic: str) -> Any:
        """The journal_events client of the pilot whose namespace holds ``topic`` (any thread), or None."""
        found = self.of_topic(topic)
        return found[0].events if found else None

    def registry(self, now: float, online: Callable[[PilotLink], bool]) -> tuple[PilotRegistry, list[str]]:
        """The registry message (pilots sorted by name; header not stamped) and a line for each pilot that
        came online or went offline since the last call (none for one found before its first heartbeat)."""
        msg = PilotRegistry()
        for link in sorted(self, key=lambda link: link.name):
            clock = link.clock.summary()
            entry = PilotEntry(pilot=link.name, online=online(link),
                               last_seen_s=float(now - link.seen) if link.status else math.inf,
                               clock_offset_ms=float(clock['offset_ms']), clock_delay_ms=float(clock['delay_ms']))
            if link.status is not None:
                entry.last_status = link.status
            msg.pilots.append(entry)
        sig = tuple((e.pilot, e.online, e.last_status.state, e.last_status.session_id) for e in msg.pilots)
        lines = []
        if sig != self._sig:
            before = {(s[0], s[1]) for s in self._sig}
            lines = [f'pilot {e.pilot} is {"online" if e.online else "offline"}' for e in msg.pilots
                     if e.last_status.pilot and (e.pilot, e.online) not in before]
        self._sig = sig
        return msg, lines
