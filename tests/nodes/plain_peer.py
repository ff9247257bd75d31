#!/usr/bin/env python3
"""A plain rclpy node for the CLI tests: it imports nothing of autopilot-ros except the built interfaces.

The `autopilot` CLI must work on any ROS 2 graph, not only on nodes built with autopilot_core, so the
tests point it at this peer. Name and namespace come from ``--ros-args`` (default ``plain_peer``).

* publishes std_msgs/String ``chatter`` ("hello <n>") and autopilot_msgs/GpioEvent ``gpio/events``
  at ``rate_hz`` (reliable, keep-last 10);
* subscribes autopilot_msgs/TrialData ``trials`` and prints one line per message:
  ``TRIAL {json}`` (pilot, subject, trial_number, step, stamp, fields);
* serves std_srvs/SetBool ``set_enabled`` (answers ``enabled=<data>``) and std_srvs/Trigger ``trigger``;
* parameters with descriptors: ``threshold`` (integer, range 0..100), ``label`` (read-only string),
  ``gain`` (double), ``rate_hz`` (double, read-only);
* prints ``READY`` once everything exists, and ``PARAM <name>=<value>`` when a parameter changes.
"""

import json
import signal
import sys

import rclpy
from autopilot_msgs.msg import GpioEvent, TrialData
from rcl_interfaces.msg import IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger


class PlainPeer(Node):
    def __init__(self) -> None:
        super().__init__('plain_peer')
        self.declare_parameter('threshold', 5, ParameterDescriptor(
            description='an integer with a range', integer_range=[IntegerRange(from_value=0, to_value=100, step=1)]))
        self.declare_parameter('label', 'peer', ParameterDescriptor(description='fixed label', read_only=True))
        self.declare_parameter('gain', 1.5, ParameterDescriptor(description='a double'))
        self.declare_parameter('rate_hz', 10.0, ParameterDescriptor(read_only=True))
        self.add_on_set_parameters_callback(self._on_set)
        self.add_post_set_parameters_callback(self._after_set)
        self.chatter = self.create_publisher(String, 'chatter', 10)
        self.events = self.create_publisher(GpioEvent, 'gpio/events', 10)
        self.create_subscription(TrialData, 'trials', self._on_trial, 10)
        self.create_service(SetBool, 'set_enabled', self._on_set_enabled)
        self.create_service(Trigger, 'trigger', self._on_trigger)
        self.count = 0
        self.create_timer(1.0 / self.get_parameter('rate_hz').value, self._tick)

    def _on_set(self, params: list) -> SetParametersResult:
        # Refuse one value on purpose, so tests see a reason coming from the node's own callback.
        for p in params:
            if p.name == 'gain' and p.value == 13.0:
                return SetParametersResult(successful=False, reason='gain 13.0 is unlucky')
        return SetParametersResult(successful=True)

    def _after_set(self, params: list) -> None:
        for p in params:
            print(f'PARAM {p.name}={p.value!r}', flush=True)

    def _tick(self) -> None:
        self.count += 1
        self.chatter.publish(String(data=f'hello {self.count}'))
        event = GpioEvent(device='poke_center', pin=17, level=bool(self.count % 2), tick=self.count,
                          tick_us=self.count * 1000, backend='sim')
        event.header.stamp = self.get_clock().now().to_msg()
        self.events.publish(event)

    def _on_trial(self, msg: TrialData) -> None:
        fields = [{'name': f.name, 'type': f.type, 'unit': f.unit, 'bool': f.bool_value, 'int': f.int_value,
                   'float': f.float_value, 'string': f.string_value} for f in msg.fields]
        print('TRIAL ' + json.dumps({
            'pilot': msg.pilot, 'subject': msg.subject, 'session_id': msg.session_id,
            'trial_number': msg.trial_number, 'step': msg.step, 'step_name': msg.step_name,
            'stamp': [msg.header.stamp.sec, msg.header.stamp.nanosec], 'fields': fields}), flush=True)

    def _on_set_enabled(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        response.success = True
        response.message = f'enabled={request.data}'
        return response

    def _on_trigger(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success = True
        response.message = f'triggered by {self.get_name()}'
        return response


def main() -> int:
    rclpy.init(args=sys.argv)
    signal.signal(signal.SIGTERM, lambda *_: rclpy.try_shutdown())
    node = PlainPeer()
    print('READY', flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
