"""Delivery: journalled trials and step changes reach the terminal at least once.

The terminal acks by (session, trial number) and (session, step change seq); until then a trial goes out
again ``interval_s`` after it was last sent, then twice as long each time, up to :data:`RESEND_MAX_S`: a
terminal that is away costs little, and a plain ``topic echo`` (which never acks) does not see the same trial
every few seconds. Everything unacked goes out at once when a new subscriber appears, and after a restart
(sessions a crash left open are closed as ``interrupted`` first). Plain Python over the journal: the node
gives the publish callables and calls in from its timers and its ``trial_acks`` subscription.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from autopilot_msgs.msg import GpioEvent, TrialAck
from rclpy.serialization import deserialize_message

from autopilot_core.checks import InputError, sequence, short
from autopilot_pilot.journal import Journal, JournalError, Session

#: Longest wait between two resends of an unacknowledged trial.
RESEND_MAX_S = 60.0
#: Events one journal_events answer holds at most (GetEvents.srv).
MAX_EVENTS_PER_CALL = 1000


class Delivery:
    """Resend bookkeeping per item: ``(kind, session, number) -> (last sent, monotonic s; attempts)``."""

    def __init__(self, pilot: str, journal: Journal, publish_trial: Callable[[Any], None],
                 publish_step: Callable[[Any], None], interval_s: Callable[[], float],
                 on_error: Callable[[str], None], *, monotonic: Callable[[], float] = time.monotonic,
                 wall_ns: Callable[[], int] = time.time_ns) -> None:
        self.pilot = pilot
        self.journal = journal
        self._publish = {'trial': publish_trial, 'step': publish_step}
        self.interval_s = interval_s
        self.on_error = on_error
        self._monotonic = monotonic
        self._wall_ns = wall_ns
        self.sent: dict[tuple[str, str, int], tuple[float, int]] = {}
        self._subscribers = 0

    def recover(self) -> list[Session]:
        """Close the sessions a crash left open (state ``interrupted``); their unacked trials go out with the
        next resend. Returns them."""
        self.journal.prune_events()
        left = self.journal.open_sessions()
        for s in left:
            self.journal.end_session(s.session_id, state='interrupted')
        return left

    def resend(self, now: bool = False) -> int:
        """Publish the unacknowledged trials and step changes that are due (all of them with ``now``); returns
        how many went out."""
        t = self._monotonic()
        interval = self.interval_s()
        keys = set()
        n = 0
        for kind, rows in (('trial', self.journal.unacked(limit=500)), ('step', self.journal.unacked_steps(limit=100))):
            for row in rows:
                key = (kind, row.session_id, getattr(row, 'trial_number', getattr(row, 'seq', 0)))
                keys.add(key)
                last, attempts = self.sent.get(key, (None, 0))
                if last is None:
                    # First seen here: just published by this process (give the ack a moment), or journalled
                    # before a restart (send it now).
                    fresh = kind == 'trial' and self._wall_ns() - row.stamp_ns < interval * 1e9
                    if fresh and not now:
                        self.sent[key] = (t, 0)
                        continue
                elif not now and t - last < min(interval * 2 ** attempts, RESEND_MAX_S):
                    continue
                if row.payload:
                    self._publish[kind](row.payload)
                    n += 1
                self.sent[key] = (t, attempts + 1)
        for key in set(self.sent) - keys:  # acked since
            del self.sent[key]
        return n

    def subscribers(self, count: int) -> None:
        """The ``trials`` subscriber count now: one more than before is a terminal (re)appearing, and what it
        missed goes out at once."""
        if count > self._subscribers:
            self.resend(now=True)
        self._subscribers = count

    def ack(self, msg: TrialAck) -> None:
        """Mark the trials and step changes ``msg`` names delivered; InputError for an ack that does not count.

        Only an ack naming this pilot and one of its sessions counts: acks for other pilots share the topic name
        only on a misconfigured graph.
        """
        if msg.pilot != self.pilot:
            raise InputError(f'ack names pilot {short(msg.pilot)}, not {self.pilot!r}: acks must name the pilot '
                             'whose trials they acknowledge')
        if self.journal.session(msg.session_id) is None:
            raise InputError(f'ack for session {short(msg.session_id)}, which this pilot never ran')
        sequence('trial_numbers', msg.trial_numbers)
        sequence('step_seqs', msg.step_seqs)
        try:
            if msg.trial_numbers:
                self.journal.ack(msg.session_id, list(msg.trial_numbers))
            if msg.step_seqs:
                self.journal.ack_steps(msg.session_id, list(msg.step_seqs))
        except JournalError as exc:
            self.on_error(f'trial ack not recorded: {exc}')

    def events(self, session_id: str, run_id: int, first_seq: int, last_seq: int) -> tuple[list[GpioEvent], bool]:
        """The journalled GPIO events of a session (one gpio run, a seq range) for a terminal whose recording has a
        gap, at most MAX_EVENTS_PER_CALL, and whether there are more."""
        rows = self.journal.events(session_id, run_id, first_seq, last_seq, MAX_EVENTS_PER_CALL + 1)
        return [deserialize_message(p, GpioEvent) for _, p in rows[:MAX_EVENTS_PER_CALL]], len(rows) > MAX_EVENTS_PER_CALL
