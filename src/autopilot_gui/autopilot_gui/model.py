"""What the window shows, as plain Python: a row per pilot, the subjects, and each pilot's recent trials.

:class:`Lab` takes the bridge's events (registry, subject list, trials) and keeps the state the widgets draw;
the widgets hold none of their own. No Qt and no ROS calls here, so unit tests drive it with plain messages.
Everything from the wire is hostile: bounded per pilot, deduplicated by trial number, and a trial whose
fields cannot be read is counted, not trusted.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from autopilot_core import stamps, trial_fields

STATES = {0: 'idle', 1: 'running', 2: 'paused', 3: 'error'}
#: Trials kept per pilot for the plots (the subject file has them all).
MAX_TRIALS = 5000
#: GPIO events kept per pilot for the raster of the current trial.
MAX_GPIO = 2000
#: Pilots shown at most: a registry listing more is cut (and says so) rather than growing the window for ever.
MAX_PILOTS = 500
#: Text from the wire is cut to this many characters for display (the subject file keeps it whole).
MAX_TEXT = 200
#: A trial the pilot's heartbeat counted but the window never heard (live trials come best effort) is asked of the
#: terminal once it has been missing this long: long enough for the trials in flight to arrive.
REPAIR_S = 1.5
COLUMNS = ('pilot', 'state', 'task', 'subject', 'step', 'trials', 'accuracy', 'last trial', 'clock')


@dataclass
class Trial:
    """One received trial: where it belongs and its task's field values."""

    index: int        # the pilot's count of received trials: its x in the plots (sessions follow each other)
    session_id: str
    number: int
    start_ns: int
    stamp_ns: int
    step: int
    step_name: str
    values: dict[str, Any]
    received: float  # time.monotonic() when the window got it


@dataclass
class PilotRow:
    """A pilot as its row shows it (from the terminal's registry and its trials)."""

    pilot: str
    online: bool = False
    last_seen_s: float = math.inf
    state: str = 'idle'
    task: str = ''
    subject: str = ''
    session_id: str = ''
    protocol: str = ''
    step: int = 0
    trial_count: int = 0
    host: str = ''
    message: str = ''
    last_session_id: str = ''
    last_session_state: str = ''
    clock_offset_ms: float = math.nan  # the pilot's clock ahead of the terminal's (NaN: not measured yet)
    clock_delay_ms: float = math.nan   # the measurement's round trip: the offset is within half of it
    trials: deque[Trial] = field(default_factory=deque)
    fields: list[tuple[str, int, str]] = field(default_factory=list)  # the newest trial's (name, type, unit)
    gpio: deque[tuple[int, str, bool]] = field(default_factory=deque)  # (stamp ns, device, level), newest last
    received: int = 0
    trial_task: str = ''  # the task of the newest trial (the plots follow it)
    active_low: set[str] = field(default_factory=set)  # inputs pulled up: a poke is the low level
    _numbers: set[tuple[str, int]] = field(default_factory=set)
    _complete: tuple[str, int] = ('', 0)  # (session, n): its trials 1..n are all here
    _short_since: float | None = None  # since when trial n + 1 is lacking though the heartbeat counted it

    # Per session: [trials kept, scored, correct, newest received]. Kept as trials come and go, so the table's tick
    # reads them instead of scanning up to 5000 trials per row (bench/gui.py: 40 ms a tick at 50 pilots).
    _tally: dict[str, list[float]] = field(default_factory=dict)

    def count(self, t: Trial, sign: int) -> None:
        """Add (``sign`` 1) or remove (-1) ``t`` from its session's tally."""
        tally = self._tally.setdefault(t.session_id, [0, 0, 0, 0.0])
        tally[0] += sign
        if isinstance(t.values.get('correct'), bool) and not t.values.get('correction', False):
            tally[1] += sign
            tally[2] += sign * t.values['correct']
        if sign > 0:
            tally[3] = max(tally[3], t.received)
        elif tally[0] <= 0:
            del self._tally[t.session_id]

    def session_trials(self, session_id: str | None = None) -> list[Trial]:
        sid = self.session_id if session_id is None else session_id
        return [t for t in self.trials if t.session_id == sid]

    def accuracy(self, session_id: str | None = None) -> float | None:
        """Fraction correct of the session's scored trials (correction trials left out); None when not scored."""
        tally = self._tally.get(self.session_id if session_id is None else session_id)
        return tally[2] / tally[1] if tally and tally[1] else None

    def last_trial_age(self, now: float) -> float | None:
        tally = self._tally.get(self.session_id)
        return now - tally[3] if tally else None


class Lab:
    """The window's state; see the module docstring."""

    def __init__(self) -> None:
        self.pilots: OrderedDict[str, PilotRow] = OrderedDict()
        self.subjects: dict[str, Any] = {}
        self.subject_problems: list[str] = []
        self.bad_trials = 0
        self.registry_stamp_ns = 0

    # -- events ----------------------------------------------------------------------------------------------
    def registry(self, msg: Any) -> None:
        """A PilotRegistry: rows appear by themselves; a pilot the terminal forgot stays, offline."""
        seen = set()
        for entry in list(msg.pilots)[:MAX_PILOTS]:
            name = str(entry.pilot)
            if not name:
                continue
            seen.add(name)
            row = self.pilots.get(name)
            if row is None:
                if len(self.pilots) >= MAX_PILOTS:
                    continue
                row = self.pilots[name] = PilotRow(name)
            st = entry.last_status
            row.online, row.last_seen_s = bool(entry.online), float(entry.last_seen_s)
            row.state = STATES.get(int(st.state), 'unknown')
            row.task, row.subject, row.session_id = _cut(st.task), _cut(st.subject), st.session_id
            row.protocol, row.step, row.trial_count = _cut(st.protocol), int(st.step), int(st.trial_count)
            row.host, row.message = _cut(st.host), _cut(st.message, 4 * MAX_TEXT)
            row.last_session_id, row.last_session_state = st.last_session_id, _cut(st.last_session_state)
            row.clock_offset_ms, row.clock_delay_ms = _finite(entry.clock_offset_ms), _finite(entry.clock_delay_ms)
        for name, row in self.pilots.items():
            if name not in seen:
                row.online = False
        self.pilots = OrderedDict(sorted(self.pilots.items()))
        self.registry_stamp_ns = stamps.to_ns(msg.header.stamp)

    def subject_list(self, msg: Any) -> None:
        self.subjects = {s.subject: s for s in msg.subjects}
        self.subject_problems = list(msg.problems)

    def trial(self, pilot: str, msg: Any, now: float | None = None) -> Trial | None:
        """A TrialData heard on ``pilot``'s topic: stored once (a resent trial is not a second one); None when
        not new, or not that pilot's (another rig's name in it is a misconfiguration or a forgery)."""
        row = self.pilots.get(pilot)
        if row is None:
            return None  # a pilot the terminal does not know: not shown
        if msg.pilot != pilot:
            self.bad_trials += 1
            return None
        key = (msg.session_id, int(msg.trial_number))
        if key in row._numbers:
            return None
        t = self._decode(msg, row.received, time.monotonic() if now is None else now)
        if t is None:
            return None
        row.received += 1
        row.fields = [(f.name, int(f.type), f.unit) for f in msg.fields]
        row.trial_task = str(msg.task)
        row.trials.append(t)
        row.count(t, 1)
        row._numbers.add(key)
        if len(row.trials) > MAX_TRIALS:
            old = row.trials.popleft()
            row.count(old, -1)
            row._numbers.discard((old.session_id, old.number))
        return t

    def _decode(self, msg: Any, index: int, now: float) -> Trial | None:
        """A TrialData as a Trial (long strings cut for display); None, counted, when its fields cannot be read."""
        try:
            values = _display(trial_fields.to_dict(msg.fields))
        except Exception:  # noqa: BLE001 - a malformed trial is counted, never drawn
            self.bad_trials += 1
            return None
        return Trial(index, msg.session_id, int(msg.trial_number), stamps.to_ns(msg.start),
                     stamps.to_ns(msg.header.stamp), int(msg.step), msg.step_name, values, now)

    def backfill(self, pilot: str, msgs: Any, now: float | None = None) -> int:
        """Stored trials of a session the window joined late (the terminal's get_trials): those it lacks are put
        before the session's live ones, in trial-number order, and every trial's x is renumbered. Returns how
        many were new."""
        row = self.pilots.get(pilot)
        if row is None:
            return 0
        now = time.monotonic() if now is None else now
        new: list[Trial] = []
        for msg in msgs:
            key = (msg.session_id, int(msg.trial_number))
            if msg.pilot != pilot or key in row._numbers:
                continue
            t = self._decode(msg, 0, now)
            if t is not None:
                new.append(t)
                row._numbers.add(key)
        if not new:
            return 0
        sessions = list(dict.fromkeys([t.session_id for t in row.trials] + [t.session_id for t in new]))
        merged = sorted([*row.trials, *new], key=lambda t: (sessions.index(t.session_id), t.number))
        while len(merged) > MAX_TRIALS:
            old = merged.pop(0)
            row._numbers.discard((old.session_id, old.number))
        row.received += len(new)
        for i, t in enumerate(merged):
            t.index = row.received - len(merged) + i
        row.trials = deque(merged)
        row._tally.clear()
        for t in merged:
            row.count(t, 1)
        if not row.fields and msgs:
            row.fields = [(f.name, int(f.type), f.unit) for f in msgs[-1].fields]
            row.trial_task = str(msgs[-1].task)
        return len(new)

    def missing(self, pilot: str, now: float | None = None) -> int | None:
        """The first trial number of ``pilot``'s running session that its heartbeat has counted and the window
        has lacked for :data:`REPAIR_S` (a dropped best-effort message); None when nothing is missing."""
        row = self.pilots.get(pilot)
        if row is None or not row.session_id or row.trial_count <= 0:
            return None
        now = time.monotonic() if now is None else now
        sid = row.session_id
        # The session's trials 1..upto are all here: advanced as they come, so a tick costs O(1) per pilot.
        upto = row._complete[1] if row._complete[0] == sid else 0
        upto = max(upto, row.trial_count - MAX_TRIALS)  # older ones may have been let go
        start = upto
        while (sid, upto + 1) in row._numbers:
            upto += 1
        if upto >= row.trial_count:
            row._complete, row._short_since = (sid, upto), None
            return None
        if row._complete != (sid, upto) or start != upto or row._short_since is None:
            row._short_since = now  # a new gap (or the old one moved): trials may still be in flight
        row._complete = (sid, upto)
        return upto + 1 if now - row._short_since >= REPAIR_S else None

    def gpio(self, pilot: str, msg: Any) -> None:
        """A GpioEvent of ``pilot``: kept (the newest :data:`MAX_GPIO`) for the current trial's raster."""
        row = self.pilots.get(pilot)
        if row is None:
            return
        row.gpio.append((stamps.to_ns(msg.header.stamp), str(msg.device)[:64], bool(msg.level)))
        if len(row.gpio) > MAX_GPIO:
            row.gpio.popleft()

    # -- what rows show --------------------------------------------------------------------------------------
    def roster(self, pilot: str) -> list[str]:
        """Subjects the terminal's roster puts on ``pilot``, then every other subject (all sorted)."""
        mine = sorted(s for s, summary in self.subjects.items() if summary.pilot == pilot)
        return mine + sorted(s for s in self.subjects if s not in mine)

    def cells(self, pilot: str, now: float | None = None) -> list[str]:
        """The row's texts, in :data:`COLUMNS` order."""
        row = self.pilots[pilot]
        now = time.monotonic() if now is None else now
        state = row.state if row.online else f'offline ({_age(row.last_seen_s)} ago)'
        summary = self.subjects.get(row.subject)
        step = ''
        if row.protocol:
            names = list(summary.step_names) if summary is not None and summary.protocol == row.protocol else []
            step = f'{row.step}: {names[row.step]}' if row.step < len(names) else str(row.step)
        acc = row.accuracy()
        age = row.last_trial_age(now)
        clock = '-' if math.isnan(row.clock_offset_ms) else \
            f'{row.clock_offset_ms:+.1f} ms (\u00b1{row.clock_delay_ms / 2:.1f})'
        return [row.pilot, state, row.task or '-', row.subject or '-', step or '-',
                str(row.trial_count) if row.session_id else '-',
                '-' if acc is None else f'{acc:.0%}', '-' if age is None else f'{_age(age)} ago', clock]


def psychometric(values: Any, level: str, choice: str, positive: Any) -> list[tuple[float, float, int]]:
    """(stimulus level, fraction of trials with ``choice == positive``, trials) per level, levels ascending, from
    trials' field values; trials without a finite level or with no choice are left out."""
    per: dict[float, list[bool]] = {}
    for v in values:
        lv, ch = v.get(level), v.get(choice)
        if isinstance(lv, bool) or not isinstance(lv, (int, float)) or not math.isfinite(lv) or ch in (None, '', 'none'):
            continue
        per.setdefault(float(lv), []).append(ch == positive)
    return [(lv, sum(per[lv]) / len(per[lv]), len(per[lv])) for lv in sorted(per)]


def _finite(x: float) -> float:
    """``x``, or NaN when it is not a finite number within a day in ms (a registry from anything on the domain)."""
    return float(x) if math.isfinite(x) and abs(x) < 86_400_000 else math.nan


def _cut(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[:limit - 1] + '…'


def _display(values: dict[str, Any]) -> dict[str, Any]:
    """A trial's values with long strings cut for display (a 1 MB string would stall any widget drawing it)."""
    return {k: _cut(v) if isinstance(v, str) else v for k, v in values.items()}


def _age(seconds: float) -> str:
    if not math.isfinite(seconds):
        return 'never'
    s = int(max(seconds, 0))
    if s < 60:
        return f'{s} s'
    if s < 3600:
        return f'{s // 60} min'
    return f'{s // 3600} h {s // 60 % 60} min'
