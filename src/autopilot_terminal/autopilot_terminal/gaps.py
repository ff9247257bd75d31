"""Gaps in a session's GPIO events, told by their sequence numbers, and filled from the pilot's journal.

Every GpioEvent carries its gpio node's ``run_id`` and a ``seq`` that counts 1, 2, 3, ... within the run,
so the recorder sees an event lost on the way (a link loss longer than DDS's lease, an overflow, a
receiver restart) as a jump in ``seq``. :class:`EventGaps` keeps, per session, topic and run, the last
``seq`` recorded and the ranges still missing; the terminal asks the pilot, whose journal holds every event
of its sessions, for those ranges (and, at the session's end, for anything after the last event it
recorded) and appends what comes back. Counts per session: ``missing`` (not recorded, not recovered yet)
and ``recovered``. The first event recorded of a session is where its count starts: events before it
belong to the time before the recording began.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: Sessions whose gap state is kept (the newest; a session's late recoveries come within minutes).
MAX_SESSIONS = 200
#: The largest seq (uint64): "to the end" for a tail request.
END = 2**64 - 1

Key = tuple[str, str, str]  # (subject, session id, topic)


@dataclass
class _Run:
    last: int
    missing: list[list[int]] = field(default_factory=list)  # [first, last] ranges, in order


@dataclass
class _Session:
    runs: dict[tuple[str, int], _Run] = field(default_factory=dict)  # (topic, run_id) -> its state
    recovered: int = 0

    @property
    def missing(self) -> int:
        return sum(b - a + 1 for r in self.runs.values() for a, b in r.missing)


class EventGaps:
    """See the module docstring. Not thread-safe: the recorder's writer thread owns it."""

    def __init__(self) -> None:
        self._sessions: dict[tuple[str, str], _Session] = {}

    def _session(self, subject: str, sid: str) -> _Session:
        s = self._sessions.get((subject, sid))
        if s is None:
            if len(self._sessions) >= MAX_SESSIONS:
                del self._sessions[next(iter(self._sessions))]
            s = self._sessions[(subject, sid)] = _Session()
        return s

    def observe(self, key: Key, run_ids: Sequence[int], seqs: Sequence[int]) -> list[tuple[int, int, int]]:
        """Events recorded live, in arrival order; returns the new gaps as ``(run_id, first, last)``."""
        subject, sid, topic = key
        s = self._session(subject, sid)
        gaps = []
        for run_id, seq in zip(run_ids, seqs, strict=True):
            r = s.runs.get((topic, run_id))
            if r is None:
                s.runs[(topic, run_id)] = _Run(seq)
            elif seq > r.last + 1:
                r.missing.append([r.last + 1, seq - 1])
                gaps.append((run_id, r.last + 1, seq - 1))
                r.last = seq
            elif seq == r.last + 1:
                r.last = seq
            else:
                _take(r, [seq])  # late, or a repeat: fills its place if it was missing
        return gaps

    def fill(self, key: Key, run_id: int, seqs: Iterable[int]) -> list[bool]:
        """Events the pilot sent for a gap: which of them to append (those still missing); counted recovered.
        Events after the last one recorded (a tail request at the session's end) are taken too."""
        subject, sid, topic = key
        s = self._session(subject, sid)
        r = s.runs.get((topic, run_id))
        seqs = list(seqs)
        if r is None:
            return [False] * len(seqs)
        tail = [q for q in seqs if q > r.last]
        if tail:  # the end of the session the live stream never brought: now known missing, then filled
            r.missing.append([r.last + 1, max(tail)])
            r.last = max(tail)
        keep = _take(r, seqs)
        s.recovered += sum(keep)
        return keep

    def tails(self, subject: str, sid: str) -> list[tuple[str, int, int]]:
        """``(topic, run_id, first seq not recorded)`` of each run of a session: what to ask for at its end."""
        s = self._sessions.get((subject, sid))
        return [] if s is None else [(topic, run, r.last + 1) for (topic, run), r in s.runs.items()]

    def missing_ranges(self, subject: str, sid: str) -> list[tuple[str, int, int, int]]:
        """``(topic, run_id, first, last)`` still missing in a session (to ask for again)."""
        s = self._sessions.get((subject, sid))
        if s is None:
            return []
        return [(topic, run, a, b) for (topic, run), r in s.runs.items() for a, b in r.missing]

    def counts(self, subject: str, sid: str) -> tuple[int, int] | None:
        """``(missing, recovered)`` of a session, or None when none of its events was recorded."""
        s = self._sessions.get((subject, sid))
        return None if s is None else (s.missing, s.recovered)


def _take(r: _Run, seqs: Iterable[int]) -> list[bool]:
    """Remove each seq from the run's missing ranges; True for those that were missing."""
    out = []
    for q in seqs:
        for i, (a, b) in enumerate(r.missing):
            if a <= q <= b:
                pieces = [p for p in ([a, q - 1], [q + 1, b]) if p[0] <= p[1]]
                r.missing[i:i + 1] = pieces
                out.append(True)
                break
        else:
            out.append(False)
    return out
