"""A minimal terminal for multi-host tests: runs one session on a pilot, stores each trial once, acks it.

Runs in its own network namespace (tests/test_pilot_network.py), so it only uses rclpy and the messages.
Prints machine-readable lines: ``@trial <session> <number>`` on the first copy of a trial, ``@dup`` on
a resent copy, ``@matched <n>`` when the number of trial writers matched changes (0 when DDS dropped the
pilot after its lease), ``@ended <json>`` when the pilot's heartbeat tells the session's end (how our terminal
learns it), ``@result <json>`` when the action's result arrives, ``@summary <json>`` on SIGINT.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

import rclpy
from autopilot_msgs.action import RunSession
from autopilot_msgs.msg import PilotStatus, TrialAck, TrialData
from rclpy.action import ActionClient
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message

# qos.TRIALS, spelled out: this peer stands for any terminal, not only ours.
TRIALS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_ALL,
                    durability=DurabilityPolicy.VOLATILE)
STATUS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=1,
                    durability=DurabilityPolicy.TRANSIENT_LOCAL)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument('--pilot', required=True)
    ap.add_argument('--task', default='2afc')
    ap.add_argument('--max-duration', type=float, default=0.0)
    ap.add_argument('--params', default='{}', help='task parameter overrides, JSON')
    a = ap.parse_args()

    rclpy.init(signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    node = rclpy.create_node('terminal_peer')
    stored: dict[tuple[str, int], bytes] = {}
    counts = {'received': 0, 'duplicates': 0}
    ack_pub = node.create_publisher(TrialAck, f'/{a.pilot}/trial_acks', TRIALS)

    def on_trial(data: bytes) -> None:
        msg = deserialize_message(data, TrialData)
        key = (msg.session_id, msg.trial_number)
        counts['received'] += 1
        if key in stored:
            counts['duplicates'] += 1
            print('@dup', flush=True)
        else:
            stored[key] = data
            print(f'@trial {key[0]} {key[1]}', flush=True)
        ack_pub.publish(TrialAck(pilot=msg.pilot, session_id=msg.session_id, trial_numbers=[msg.trial_number]))

    node.create_subscription(TrialData, f'/{a.pilot}/trials', on_trial, TRIALS, raw=True,
                             event_callbacks=SubscriptionEventCallbacks(
                                 matched=lambda st: print(f'@matched {st.current_count}', flush=True)))
    ended: list[str] = []

    def on_status(msg: PilotStatus) -> None:
        # The pilot is fresh: the first session it tells as ended is ours. trial_count stays the ended
        # session's until another starts.
        if msg.last_session_id and not ended:
            ended.append(msg.last_session_id)
            print('@ended ' + json.dumps({'session_id': msg.last_session_id, 'state': msg.last_session_state,
                                          'n_trials': msg.trial_count}), flush=True)

    node.create_subscription(PilotStatus, f'/{a.pilot}/status', on_status, STATUS)
    client = ActionClient(node, RunSession, f'/{a.pilot}/session')
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    executor = SingleThreadedExecutor()
    executor.add_node(node)

    def spin_until(cond, timeout: float) -> bool:
        end = node.get_clock().now().nanoseconds + timeout * 1e9
        while not stop.is_set() and not cond():
            if node.get_clock().now().nanoseconds > end:
                return False
            executor.spin_once(timeout_sec=0.05)
        return cond()

    if not spin_until(client.server_is_ready, 60):
        print('@error no session server', flush=True)
        return 1
    params = [Parameter(k, value=v).to_parameter_msg() for k, v in json.loads(a.params).items()]
    goal = RunSession.Goal(subject='net_mouse', task=a.task, max_duration_s=a.max_duration, parameters=params)
    sent = client.send_goal_async(goal)
    if not spin_until(sent.done, 30) or not sent.result().accepted:
        print('@error goal not accepted', flush=True)
        return 1
    print('@accepted', flush=True)
    handle = sent.result()
    # A result response sent while the link is down is lost (DDS does not resend service replies): ask
    # again every few seconds; the server keeps the result of a finished goal. Each ask is printed: a
    # result that never comes after the link is back says the action's services did not recover.
    asks = [handle.get_result_async()]
    last_ask = time.monotonic()
    reported = False
    while not stop.is_set():
        executor.spin_once(timeout_sec=0.05)
        done = next((f for f in asks if f.done()), None)
        if done is None and time.monotonic() - last_ask > 5.0:
            asks.append(handle.get_result_async())
            last_ask = time.monotonic()
            print(f'@ask {len(asks)}', flush=True)
        if done is not None and not reported:
            r = done.result().result
            print('@result ' + json.dumps({'success': r.success, 'n_trials': r.n_trials, 'message': r.message,
                                           'session_id': r.session_id}), flush=True)
            reported = True
    print('@summary ' + json.dumps({**counts, 'stored': len(stored)}), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
