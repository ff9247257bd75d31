"""Trials and step changes taken from a pilot, handed to the recorder and acknowledged once durable.

The pilot keeps each trial and step change in its journal and resends it until its ack arrives on
``<ns>/trial_acks``, so an ack is published only from the recorder's ``done`` (the rows are fsync'd), for
every number now in the file (resent duplicates too). A different second copy of a stored one is a conflict:
the recorder tells it on its thread, and :meth:`Intake.conflicts` hands it to the node's thread to refuse.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from autopilot_msgs.msg import StepChange, TrialAck, TrialData
from rclpy.serialization import serialize_message

from .ownership import Ownership
from .pilots import PilotLink
from .recorder import Received, Recorder


class Intake:
    """Checks (``ownership``), stores (``recorder``) and acknowledges what pilots send; ``stamp()`` is the ack's."""

    def __init__(self, recorder: Recorder, ownership: Ownership, stamp: Callable[[], Any]) -> None:
        self._recorder = recorder
        self._ownership = ownership
        self._stamp = stamp
        self._conflicts: deque[tuple[str, str, str]] = deque(maxlen=1000)  # (endpoint, pilot, reason)

    def trial(self, link: PilotLink, msg: TrialData, recv_ns: int) -> None:
        """Store a TrialData (InputError when the checks refuse it); acknowledged once durable."""
        rec = self._ownership.trial(link, msg, recv_ns)
        sid = msg.session_id
        how = Received(create=False, raw=lambda: serialize_message(msg), type_name='autopilot_msgs/msg/TrialData',
                       conflict=self._on_conflict(link, 'trials', msg.subject, sid))
        self._recorder.trials(msg.subject, sid, rec.meta, rec.fields, rec.rows,
                              lambda numbers: self.ack(link, sid, trials=numbers), how)

    def step_change(self, link: PilotLink, msg: StepChange, recv_ns: int) -> None:
        """Store a StepChange (InputError when the checks refuse it); acknowledged once durable."""
        rec = self._ownership.step_change(link, msg, recv_ns)
        sid = msg.session_id
        how = Received(create=False, raw=lambda: serialize_message(msg), type_name='autopilot_msgs/msg/StepChange',
                       conflict=self._on_conflict(link, 'step_changes', msg.subject, sid))
        self._recorder.steps(msg.subject, sid, rec.meta, rec.rows, lambda seqs: self.ack(link, sid, steps=seqs), how)

    def ack(self, link: PilotLink, session_id: str, trials: list[int] | None = None,
            steps: list[int] | None = None) -> TrialAck:
        """Publish (and return) the ack of ``trials``/``steps``; from the recorder's thread: rclpy publishers may
        be used from any thread."""
        msg = TrialAck(pilot=link.name, session_id=session_id, trial_numbers=trials or [], step_seqs=steps or [])
        msg.header.stamp = self._stamp()
        if link.ack_pub is not None:
            link.ack_pub.publish(msg)
        return msg

    def _on_conflict(self, link: PilotLink, topic: str, subject: str, sid: str) -> Callable[[int, str, bool], None]:
        """What the recorder calls (its thread) for a conflict: queued for :meth:`conflicts`."""
        endpoint = f'{link.base}/{topic}'
        return lambda _n, why, kept: self._conflicts.append(
            (endpoint, link.name, f'session {sid} of {subject}: {why}' +
             ('; kept apart as a conflict, the stored one is unchanged' if kept else '; the stored one is unchanged')))

    def conflicts(self) -> Iterator[tuple[str, str, str]]:
        """The conflicts told since the last call: (endpoint, pilot, reason)."""
        while self._conflicts:
            yield self._conflicts.popleft()
