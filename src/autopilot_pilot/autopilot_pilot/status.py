"""Heartbeat: the pilot's PilotStatus, kept current and published on every change and by the 2 Hz timer.

The gpio node drives every output low when the beat stops (a dead pilot leaves nothing on), and a terminal
learns from it which session runs, its trial count, why a goal was refused and how the last session ended.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from autopilot_msgs.msg import PilotStatus

from autopilot_core import pilot_states, stamps
from autopilot_core.provenance import package_versions, ros_info
from autopilot_pilot.session import Plan


class Heartbeat:
    """Owns the status message: ``publish`` sends it, stamped with ``now_ns()``."""

    def __init__(self, status: PilotStatus, publish: Callable[[PilotStatus], None],
                 now_ns: Callable[[], int]) -> None:
        self.status = status
        self._publish = publish
        self._now = now_ns

    @classmethod
    def of_pilot(cls, pilot: str, publish: Callable[[PilotStatus], None], now_ns: Callable[[], int]) -> Heartbeat:
        """Idle, with what a terminal records of the pilot's software (package versions, ROS, rmw, host)."""
        versions, ros = package_versions(), ros_info()
        return cls(PilotStatus(pilot=pilot, state=pilot_states.IDLE, package_names=list(versions),
                               package_versions=list(versions.values()), ros_distro=ros['distro'],
                               rmw_implementation=ros['rmw_implementation'], host=socket.gethostname()),
                   publish, now_ns)

    def publish(self) -> None:
        stamps.stamp(self.status.header.stamp, self._now())
        self._publish(self.status)

    def set_state(self, state: int, message: str = '') -> None:
        self.status.state = state
        self.status.message = message
        self.publish()

    def refused(self, message: str) -> None:
        """A goal was refused: the reason goes out in the status, the state stays (idle when no session runs)."""
        self.set_state(self.status.state if self.status.session_id else pilot_states.IDLE, message)

    def session_started(self, plan: Plan, session_id: str) -> None:
        s = self.status
        s.subject, s.session_id, s.protocol = plan.subject, session_id, plan.protocol_name
        s.task, s.step, s.trial_count = plan.task_name, plan.step, 0

    def step(self, plan: Plan) -> None:
        self.status.task, self.status.step = plan.task_name, plan.step

    def trial(self, count: int) -> None:
        """A trial finished: the count goes out now."""
        self.status.trial_count = count
        self.publish()

    def session_ended(self, session_id: str, state: str) -> None:
        """Told in every beat from now on, so a terminal that missed the end still closes the session."""
        s = self.status
        s.last_session_id, s.last_session_state = session_id, state
        s.subject = s.session_id = s.task = ''
        s.protocol, s.step = '', 0
