"""Interoperability: a program that knows nothing of ours but the built autopilot_msgs talks to our nodes.

The other direction (our CLI against a plain rclpy node) is in test_cli.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODES = ROOT / 'tests' / 'nodes'


def test_plain_rclpy_client_uses_topics_services_parameters_and_action(procs, ros_env):
    listener = procs([sys.executable, str(NODES / 'demo_listener.py'), '--ros-args', '-r', '__ns:=/lab'], name='listener')
    session = procs([sys.executable, str(NODES / 'demo_session.py'), '--ros-args', '-r', '__ns:=/lab', '-p', 'trial_interval_s:=0.02'],
                    name='session')
    # Trials are volatile: the session's must find the listener matched (CI once lost all three to a late match).
    listener.wait_for_output('1 trials publisher(s) matched', timeout=30)
    client = subprocess.run([sys.executable, str(ROOT / 'tests' / 'nodes' / 'plain_client.py')], env=ros_env,
                            capture_output=True, text=True, timeout=120)
    assert client.returncode == 0, client.stderr + client.stdout
    # The client's source imports nothing of ours except autopilot_msgs.
    source = (ROOT / 'tests' / 'nodes' / 'plain_client.py').read_text()
    assert 'autopilot_core' not in source and 'autopilot_pilot' not in source
    seen = json.loads(client.stdout.strip().splitlines()[-1])
    assert seen['acks'] == [1, 2, 3, 3]  # every publish acknowledged, the resend too
    assert seen['summary'].startswith('3 trials from 1 pilot(s), 67% correct, 1 duplicates ignored')
    assert seen['log_every'] == 1
    assert not seen['bad_set']['successful'] and 'log_every' in seen['bad_set']['reason']
    assert seen['session'] == {'accepted': True, 'n_trials': 3, 'feedback': [1, 2, 3], 'success': True}
    # The session's trials reached the listener too (same namespace), and both nodes are still up.
    listener.wait_for_output('trial 3 from lab/x1')
    assert listener.popen.poll() is None and session.popen.poll() is None
