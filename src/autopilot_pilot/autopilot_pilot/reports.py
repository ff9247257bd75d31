"""Reports: a session's finished trials and step changes as messages, journalled before they are published.

A trial becomes a TrialData (fields typed by the task's declaration, :mod:`autopilot_core.trial_fields`;
stamps from the runner's clock, :mod:`autopilot_core.stamps`) handed to the :class:`TrialWriter` thread, which
journals it (fsync) and then publishes it. A step change is journalled here (it is rare) and published at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from autopilot_msgs.msg import StepChange, TrialData
from rclpy.serialization import serialize_message

from autopilot_core import stamps, trial_fields
from autopilot_pilot.journal import Journal
from autopilot_pilot.runner import TrialRecord
from autopilot_pilot.session import Plan
from autopilot_pilot.writer import TrialWriter


def trial_message(pilot: str, session_id: str, number: int, plan: Plan, record: TrialRecord) -> TrialData:
    """The TrialData of trial ``number`` (numbered per session, across protocol steps)."""
    declared = {name: (f.type, f.unit) for name, f in plan.task_cls.fields().items()}
    msg = TrialData(pilot=pilot, subject=plan.subject, session_id=session_id, trial_number=number,
                    task=plan.task_name, protocol=plan.protocol_name, step=plan.step, step_name=plan.step_name,
                    fields=trial_fields.from_values(record.fields, declared))
    stamps.stamp(msg.header.stamp, record.ended_ns)
    stamps.stamp(msg.start, record.started_ns)
    return msg


class Reports:
    """Journal-then-publish of one pilot's trials (through ``writer``) and step changes (``publish_step``)."""

    def __init__(self, pilot: str, journal: Journal, writer: TrialWriter, publish_step: Callable[[StepChange], None],
                 now_ns: Callable[[], int]) -> None:
        self.pilot = pilot
        self.journal = journal
        self.writer = writer
        self.publish_step = publish_step
        self.now_ns = now_ns

    def trial(self, session_id: str, number: int, plan: Plan, record: TrialRecord) -> TrialData:
        """Queue the trial: journalled (durable) and then published by the writer thread, so the caller (the
        closed loop's executor) never waits for the disk."""
        msg = trial_message(self.pilot, session_id, number, plan, record)
        self.writer.submit(session_id, number, serialize_message(msg), {'fields': record.fields, 'step': plan.step},
                           time.time_ns())
        return msg

    def step_change(self, session_id: str, old: Plan, new: Plan, after_trial: int, reason: str) -> StepChange:
        """Journal and publish the move from ``old``'s step to ``new``'s after trial ``after_trial``."""
        seq = len(self.journal.steps(session_id)) + 1
        msg = StepChange(pilot=self.pilot, subject=old.subject, session_id=session_id, seq=seq,
                         protocol=old.protocol_name, from_step=old.step, to_step=new.step,
                         from_step_name=old.step_name, to_step_name=new.step_name, after_trial=after_trial,
                         reason=reason)
        stamps.stamp(msg.header.stamp, self.now_ns())
        recorded = self.journal.record_step(session_id, after_trial=after_trial, from_step=old.step,
                                            to_step=new.step, reason=reason, payload=serialize_message(msg),
                                            step_name=new.step_name, parameters=new.params)
        assert recorded == seq, (recorded, seq)
        self.publish_step(msg)
        return msg

    def events(self, session_id: str, events: Sequence[Any]) -> None:
        """Journal a batch of the session's GPIO events (on the writer thread, after the trials queued before)."""
        if events:
            self.writer.submit_events(session_id, list(events))

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything queued is journalled (and trials published); False on timeout."""
        return self.writer.flush(timeout_s)
