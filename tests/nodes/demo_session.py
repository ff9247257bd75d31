"""``demo_session``: the session action (``run_session``) on synthetic trials, with a status heartbeat.

Shows the shape the pilot follows: goals are accepted one at a time, each trial is published on
``trials`` and reported as feedback, cancel stops after the current trial, and ``status`` is
transient-local so a late subscriber sees the current state at once.
"""

from __future__ import annotations

import math
import sys
import time
import uuid

from autopilot_msgs.action import RunSession
from autopilot_msgs.msg import PilotStatus, TrialData
from demo_logic import SyntheticTrials
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.node import Node

from autopilot_core import aio, qos
from autopilot_core.executors import run_node
from autopilot_core.names import node_label
from autopilot_core.params import ParamSpec, check_unknown, declare
from autopilot_core.provenance import package_versions, ros_info

PARAMS = (
    ParamSpec('trial_interval_s', 0.2, 'Time between synthetic trials', unit='s', min=0.001, max=60.0),
    ParamSpec('pilot', '', 'Pilot name in trials and status ("": the namespace)'),
    ParamSpec('seed', 1, 'Seed of the synthetic subject', min=0),
)


class SessionServer(Node):
    def __init__(self) -> None:
        super().__init__('demo_session')
        p = declare(self, PARAMS)
        check_unknown(self)  # a misspelt params-file key is an error, not silently ignored
        self.pilot = p['pilot'] or node_label(self.get_namespace(), 'demo')
        self.trials = SyntheticTrials(seed=p['seed'])
        self.trial_pub = self.create_publisher(TrialData, 'trials', qos.TRIALS)
        self.status_pub = self.create_publisher(PilotStatus, 'status', qos.STATUS)
        versions = package_versions(('autopilot_core', 'autopilot_msgs', 'rclpy'))
        ros = ros_info()
        self.status = PilotStatus(pilot=self.pilot, state=PilotStatus.STATE_IDLE,
                                  package_names=list(versions), package_versions=list(versions.values()),
                                  ros_distro=ros['distro'], rmw_implementation=ros['rmw_implementation'])
        self.busy = False
        self.create_timer(1.0, self.publish_status)
        self.publish_status()
        self.server = ActionServer(self, RunSession, 'run_session', execute_callback=self.execute,
                                   goal_callback=self.on_goal, cancel_callback=lambda _g: CancelResponse.ACCEPT)

    def publish_status(self) -> None:
        self.status.header.stamp = self.get_clock().now().to_msg()
        self.status_pub.publish(self.status)

    def on_goal(self, goal: RunSession.Goal) -> GoalResponse:
        if self.busy:
            self.get_logger().warning(f'rejecting session for {goal.subject!r}: a session is running')
            return GoalResponse.REJECT
        if not goal.subject:
            self.get_logger().warning('rejecting session: goal.subject is empty (name the subject to run)')
            return GoalResponse.REJECT
        self.busy = True
        return GoalResponse.ACCEPT

    async def execute(self, goal_handle: ServerGoalHandle) -> RunSession.Result:
        goal: RunSession.Goal = goal_handle.request
        session_id = str(uuid.uuid4())
        started = time.monotonic()
        n = correct = 0
        cancelled = False
        self.status.state, self.status.subject, self.status.session_id = \
            PilotStatus.STATE_RUNNING, goal.subject, session_id
        self.status.task, self.status.protocol, self.status.step = goal.task or 'demo_2afc', goal.protocol, goal.step
        self.status.trial_count = 0
        self.publish_status()
        self.get_logger().info(f'session {session_id} for {goal.subject} started')
        try:
            while rclpy_ok(self):
                if goal_handle.is_cancel_requested:
                    goal_handle.canceled()
                    cancelled = True
                    break
                if goal.max_trials and n >= goal.max_trials:
                    goal_handle.succeed()
                    break
                if goal.max_duration_s and time.monotonic() - started >= goal.max_duration_s:
                    goal_handle.succeed()
                    break
                trial_start = self.get_clock().now().to_msg()
                await aio.sleep(self, self.get_parameter('trial_interval_s').value)
                n += 1
                fields = self.trials.next()
                correct += any(f.name == 'correct' and f.bool_value for f in fields)
                msg = TrialData(pilot=self.pilot, subject=goal.subject, session_id=session_id, trial_number=n,
                                task=self.status.task, protocol=goal.protocol, step=goal.step, fields=fields)
                msg.header.stamp = self.get_clock().now().to_msg()
                msg.start = trial_start
                self.trial_pub.publish(msg)
                self.status.trial_count = n
                self.publish_status()
                goal_handle.publish_feedback(RunSession.Feedback(
                    trial_count=n, state='inter_trial_interval', step=goal.step, fraction_correct=correct / n))
        finally:
            self.busy = False
            self.status.state, self.status.subject, self.status.session_id = PilotStatus.STATE_IDLE, '', ''
            self.status.task = ''
            self.publish_status()
        fraction = correct / n if n else math.nan
        summary = f'{n} trials, {correct} correct' + (' (cancelled)' if cancelled else '')
        self.get_logger().info(f'session {session_id} ended: {summary}')
        return RunSession.Result(success=True, message=summary, session_id=session_id, n_trials=n,
                                 fraction_correct=fraction, duration_s=time.monotonic() - started,
                                 final_step=goal.step)


def rclpy_ok(node: Node) -> bool:
    return node.context.ok()


def main(args: list[str] | None = None) -> int:
    return run_node(SessionServer, args)


if __name__ == '__main__':
    sys.exit(main())
