"""The README's demo: the launched graph does its work and the driver exits 0 with a results table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_and_every_trial_is_acknowledged(ros_env):
    proc = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'demo.py'), '--trials', '8', '--session-trials', '5'],
                          env=ros_env, capture_output=True, text=True, timeout=180)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert 'trials seen on /rig_1/trials          13 in 2 sessions' in out
    assert 'trials acknowledged by the recorder   13 (0 missing)' in out
    assert 'state=idle distro=jazzy' in out
    assert 'process has finished cleanly' in out and 'demo: OK' in out
