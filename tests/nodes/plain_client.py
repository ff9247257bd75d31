#!/usr/bin/env python3
"""A third-party ROS 2 program: plain rclpy and the built autopilot_msgs, nothing else of ours.

Talks to the demo nodes the way a lab's own tool would: publishes trials to the listener, reads its
acks, calls its summary service, reads and sets its parameters through the standard parameter
services, and runs a session through the action. Prints one JSON object with what it saw.
"""

import json
import sys
import time

import rclpy
from autopilot_msgs.action import RunSession
from autopilot_msgs.msg import TrialAck, TrialData, TrialField
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.action import ActionClient
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_srvs.srv import Trigger

RELIABLE_ALL = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)


def wait(node, future, timeout=15.0):
    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
    if not future.done():
        raise SystemExit(f'timed out waiting for {future}')
    return future.result()


def main():
    rclpy.init()
    node = Node('plain_client')
    out = {}
    acks = []
    node.create_subscription(TrialAck, '/lab/trial_acks', lambda m: acks.extend(m.trial_numbers), RELIABLE_ALL)
    pub = node.create_publisher(TrialData, '/lab/trials', RELIABLE_ALL)
    deadline = time.monotonic() + 20
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    for n in (1, 2, 3):
        pub.publish(TrialData(pilot='thirdparty', subject='x1', session_id='s-1', trial_number=n, task='external',
                              fields=[TrialField(name='correct', type=TrialField.TYPE_BOOL, bool_value=n != 2)]))
    pub.publish(TrialData(pilot='thirdparty', subject='x1', session_id='s-1', trial_number=3))  # a resend
    deadline = time.monotonic() + 15
    while len(acks) < 4 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    out['acks'] = sorted(acks)

    summary = node.create_client(Trigger, '/lab/summary')
    summary.wait_for_service(timeout_sec=15)
    out['summary'] = wait(node, summary.call_async(Trigger.Request())).message

    get = node.create_client(GetParameters, '/lab/demo_listener/get_parameters')
    get.wait_for_service(timeout_sec=15)
    out['log_every'] = wait(node, get.call_async(GetParameters.Request(names=['log_every']))).values[0].integer_value
    setp = node.create_client(SetParameters, '/lab/demo_listener/set_parameters')
    setp.wait_for_service(timeout_sec=15)
    bad = Parameter(name='log_every', value=ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=-5))
    res = wait(node, setp.call_async(SetParameters.Request(parameters=[bad]))).results[0]
    out['bad_set'] = {'successful': res.successful, 'reason': res.reason}

    client = ActionClient(node, RunSession, '/lab/run_session')
    client.wait_for_server(timeout_sec=15)
    feedback = []
    handle = wait(node, client.send_goal_async(RunSession.Goal(subject='x1', max_trials=3),
                                               feedback_callback=lambda f: feedback.append(f.feedback.trial_count)))
    result = wait(node, handle.get_result_async()).result
    out['session'] = {'accepted': handle.accepted, 'n_trials': result.n_trials, 'feedback': feedback,
                      'success': result.success}
    print(json.dumps(out), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
