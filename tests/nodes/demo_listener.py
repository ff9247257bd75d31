"""``demo_listener``: receives trials, acknowledges each, answers ``summary`` (std_srvs/Trigger)."""

from __future__ import annotations

import sys
from typing import Any

from autopilot_msgs.msg import TrialAck, TrialData
from demo_logic import TrialTally, field_value
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from std_srvs.srv import Trigger

from autopilot_core import qos
from autopilot_core.executors import run_node
from autopilot_core.params import ParamSpec, check_unknown, declare

PARAMS = (
    ParamSpec('log_every', 1, 'Log one line per this many trials (0: never)', min=0, max=1_000_000),
)


class Listener(Node):
    def __init__(self) -> None:
        super().__init__('demo_listener')
        declare(self, PARAMS)
        check_unknown(self)  # a misspelt params-file key is an error, not silently ignored
        self.tally = TrialTally()
        self.ack_pub = self.create_publisher(TrialAck, 'trial_acks', qos.TRIALS)
        # Trials are volatile: one published before this reader matched its writer is not for it. Say when a writer
        # matches, so a test can wait for it (the pilot itself resends until acked; the demo session does not).
        self.create_subscription(TrialData, 'trials', self.on_trial, qos.TRIALS,
                                 event_callbacks=SubscriptionEventCallbacks(matched=self.on_matched))
        self.create_service(Trigger, 'summary', self.on_summary)

    def on_trial(self, msg: TrialData) -> None:
        new = self.tally.add(msg.pilot, msg.session_id, msg.trial_number, list(msg.fields))
        ack = TrialAck(pilot=msg.pilot, session_id=msg.session_id, trial_numbers=[msg.trial_number])
        ack.header.stamp = self.get_clock().now().to_msg()
        self.ack_pub.publish(ack)
        every = self.get_parameter('log_every').value
        if new and every and self.tally.count % every == 0:
            fields = ' '.join(f'{f.name}={field_value(f)}' for f in msg.fields)
            self.get_logger().info(f'trial {msg.trial_number} from {msg.pilot}/{msg.subject}: {fields}')

    def on_matched(self, status: Any) -> None:
        self.get_logger().info(f'{status.current_count} trials publisher(s) matched')

    def on_summary(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success = self.tally.count > 0
        response.message = self.tally.summary()
        return response

    def close(self) -> None:
        self.get_logger().info(self.tally.summary())


def main(args: list[str] | None = None) -> int:
    return run_node(Listener, args)


if __name__ == '__main__':
    sys.exit(main())
