#!/usr/bin/env python3
"""The foundation demo: launch a small real ROS 2 graph, drive it, print what it saw.

1. ``autopilot launch launch/demo.launch.yaml`` starts a simulated pilot (a trial publisher and the
   session action server, in namespace ``/rig_1``) and a terminal-side recorder that acknowledges
   every trial;
2. this script, another ROS 2 node, watches the trials and acks, runs a session through the action
   (with live feedback), reads the recorder's summary service and the pilot's heartbeat;
3. it stops the launch with Ctrl-C semantics and prints a results table. Exit code 0 when every
   trial sent was received and acknowledged.

Run it through ``bash scripts/demo.sh`` (which sets the workspace up first).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import rclpy
from autopilot_msgs.action import RunSession
from autopilot_msgs.msg import PilotStatus, TrialAck, TrialData
from rclpy.action import ActionClient
from rclpy.node import Node
from std_srvs.srv import Trigger

from autopilot_core import qos
from autopilot_core.executors import make_executor, spin, spin_until_future

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--trials', type=int, default=20, help='trials the talker publishes')
    parser.add_argument('--session-trials', type=int, default=10, help='trials of the session run by the action')
    args = parser.parse_args()
    # A demo on one machine: keep discovery on it unless the user chose otherwise.
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    print(f'ROS_DOMAIN_ID={os.environ.get("ROS_DOMAIN_ID", "0")}, discovery range '
          f'{os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"]}\n', flush=True)

    launch = subprocess.Popen(['autopilot', 'launch', str(ROOT / 'launch' / 'demo.launch.yaml'),
                               f'n_trials:={args.trials}', 'rate_hz:=10.0',
                               # the recorder and this script: neither misses a trial
                               'wait_for_subscribers:=2'], start_new_session=True)
    rclpy.init()
    node = Node('demo_driver')
    ex = make_executor(context=node.context)
    trials: list[TrialData] = []
    acks: set[tuple[str, int]] = set()
    statuses: list[PilotStatus] = []
    ack_sub = node.create_subscription(TrialAck, '/rig_1/trial_acks',
                                       lambda m: acks.update((m.session_id, n) for n in m.trial_numbers), qos.TRIALS)
    node.create_subscription(PilotStatus, '/rig_1/status', statuses.append, qos.STATUS)
    rc = 1
    try:
        # Subscribe to trials only once the recorder's acks reach us: the talker starts when this
        # subscription appears, and acks sent before discovery completes would not arrive here.
        spin(node, ex, until=lambda: ack_sub.get_publisher_count() >= 1 or launch.poll() is not None, timeout_sec=30)
        node.create_subscription(TrialData, '/rig_1/trials', trials.append, qos.TRIALS)
        summary_client = node.create_client(Trigger, '/terminal/summary')
        action = ActionClient(node, RunSession, '/rig_1/run_session')
        if not action.wait_for_server(timeout_sec=30):
            print('demo: the session action server did not come up; see the launch output above', file=sys.stderr)
            return 1
        print(f'--> waiting for the talker\'s {args.trials} trials', flush=True)
        spin(node, ex, until=lambda: len(trials) >= args.trials, timeout_sec=60)

        print(f'\n--> running a session of {args.session_trials} trials through /rig_1/run_session', flush=True)
        fb_lines: list[str] = []
        send = action.send_goal_async(
            RunSession.Goal(subject='demo_mouse', protocol='demo', max_trials=args.session_trials),
            feedback_callback=lambda f: fb_lines.append(
                f'    feedback: trial {f.feedback.trial_count:3d}  fraction correct {f.feedback.fraction_correct:.2f}'))
        spin_until_future(node, send, 10, ex)
        handle = send.result()
        result_f = handle.get_result_async()
        shown = 0
        deadline = time.monotonic() + 60
        while not result_f.done() and time.monotonic() < deadline:
            spin(node, ex, timeout_sec=0.1)
            for line in fb_lines[shown:]:
                print(line, flush=True)
            shown = len(fb_lines)
        result = result_f.result().result
        spin(node, ex, timeout_sec=1.0)  # last acks
        spin_until_future(node, future := summary_client.call_async(Trigger.Request()), 10, ex)
        summary = future.result().message if future.done() else '(no answer)'

        seen = {(t.session_id, t.trial_number) for t in trials}
        spin(node, ex, until=lambda: seen <= acks, timeout_sec=10)
        unacked = seen - acks
        last = statuses[-1] if statuses else None
        rows = [
            ('trials seen on /rig_1/trials', f'{len(seen)} in {len({s for s, _ in seen})} sessions'),
            ('trials acknowledged by the recorder', f'{len(seen & acks)} ({len(unacked)} missing)'),
            ('session result', f'{result.n_trials} trials, fraction correct {result.fraction_correct:.2f}, '
                               f'{result.duration_s:.1f} s'),
            ('recorder summary (/terminal/summary)', summary),
            ('pilot heartbeat (/rig_1/status)', f'{last.pilot} state={state_name(last.state)} distro={last.ros_distro} '
                                               f'rmw={last.rmw_implementation}' if last else '(none)'),
        ]
        width = max(len(r[0]) for r in rows)
        print('\n=== demo results ===')
        for k, v in rows:
            print(f'{k:<{width}}  {v}')
        ok = not unacked and len(trials) >= args.trials + args.session_trials and result.n_trials == args.session_trials
        rc = 0 if ok else 1
    finally:
        node.destroy_node()
        ex.shutdown()
        rclpy.shutdown()
        stop_launch(launch)
    print('demo: ' + ('OK' if rc == 0 else 'FAILED'))
    return rc


def state_name(state: int) -> str:
    names = {getattr(PilotStatus, k): k[6:].lower() for k in dir(PilotStatus) if k.startswith('STATE_')}
    return names.get(state, str(state))


def stop_launch(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C the launcher as a user would, and wait for it to stop its children."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    timer = threading.Timer(20, lambda: proc.poll() is None and os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    proc.wait()
    timer.cancel()


if __name__ == '__main__':
    sys.exit(main())
