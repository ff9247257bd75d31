"""``demo_talker``: publishes synthetic trials on ``trials`` and counts the acknowledgements."""

from __future__ import annotations

import sys
import uuid

from autopilot_msgs.msg import TrialAck, TrialData
from demo_logic import SyntheticTrials
from rclpy.node import Node

from autopilot_core import qos
from autopilot_core.executors import run_node
from autopilot_core.names import node_label
from autopilot_core.params import ParamSpec, check_unknown, declare

PARAMS = (
    ParamSpec('rate_hz', 2.0, 'Trials published per second', unit='Hz', min=0.01, max=1000.0),
    ParamSpec('n_trials', 0, 'Stop after this many trials (0: never stop)', min=0),
    ParamSpec('subject', 'demo_mouse', 'Subject id written into every trial'),
    ParamSpec('pilot', '', 'Pilot name written into every trial ("": the namespace)'),
    ParamSpec('wait_for_subscribers', 1, 'Publish only once this many subscriptions match `trials` '
              '(a volatile topic drops what is sent before discovery)', min=0, max=1000),
    ParamSpec('seed', 1, 'Seed of the synthetic subject', min=0, read_only=True),
)


class Talker(Node):
    def __init__(self) -> None:
        super().__init__('demo_talker')
        p = declare(self, PARAMS)
        check_unknown(self)  # a misspelt params-file key is an error, not silently ignored
        self.pilot = p['pilot'] or node_label(self.get_namespace(), 'demo')
        self.session_id = str(uuid.uuid4())
        self.trials = SyntheticTrials(seed=p['seed'])
        self.sent = 0
        self.waiting = False
        self.acked: set[int] = set()
        self.pub = self.create_publisher(TrialData, 'trials', qos.TRIALS)
        self.create_subscription(TrialAck, 'trial_acks', self.on_ack, qos.TRIALS)
        self.timer = self.create_timer(1.0 / p['rate_hz'], self.tick)
        self.add_post_set_parameters_callback(self.on_params)
        self.get_logger().info(f'publishing trials of {self.pilot}/{p["subject"]} at {p["rate_hz"]} Hz '
                               f'(session {self.session_id})')

    def on_params(self, params: list) -> None:
        for param in params:
            if param.name == 'rate_hz':
                self.timer.timer_period_ns = int(1e9 / param.value)
                self.timer.reset()

    def tick(self) -> None:
        limit = self.get_parameter('n_trials').value
        if limit and self.sent >= limit:
            return
        wanted = self.get_parameter('wait_for_subscribers').value
        if self.pub.get_subscription_count() < wanted:
            if not self.waiting:
                self.get_logger().info(f'waiting for {wanted} subscriber(s) on {self.pub.topic_name}')
                self.waiting = True
            return
        self.waiting = False
        self.sent += 1
        msg = TrialData(pilot=self.pilot, subject=self.get_parameter('subject').value,
                        session_id=self.session_id, trial_number=self.sent, task='demo_2afc',
                        step=0, step_name='demo', fields=self.trials.next())
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub.publish(msg)
        if limit and self.sent == limit:
            self.get_logger().info(f'published all {limit} trials')

    def on_ack(self, msg: TrialAck) -> None:
        if msg.pilot == self.pilot and msg.session_id == self.session_id:
            self.acked.update(msg.trial_numbers)

    def close(self) -> None:
        self.pub.wait_for_all_acked()
        self.get_logger().info(f'sent {self.sent} trials, {len(self.acked)} acknowledged')


def main(args: list[str] | None = None) -> int:
    return run_node(Talker, args)


if __name__ == '__main__':
    sys.exit(main())
