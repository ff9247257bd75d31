"""Smoke test of bench/transport.py: a --quick run completes and every message of every row arrives.

No timing assertions: the numbers depend on the machine and its load; this only proves the benchmark
runs end to end (two processes per case, all transports, both sizes) and writes complete JSON.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / 'bench' / 'transport.py'
TRANSPORTS = ('rclpy-single', 'rclpy-events', 'autopilot', 'zmq-json')
SIZES = ('small', 'large')


def test_quick_run_delivers_everything(domain_id: int, tmp_path: Path) -> None:
    out = tmp_path / 'transport.json'
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    proc = subprocess.Popen([sys.executable, str(BENCH), '--quick', '--out', str(out),
                             '--domain-id', str(domain_id), '--log-dir', str(tmp_path / 'logs')],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        # SIGINT lets the orchestrator stop its children; they also die with it (PDEATHSIG).
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=20)
        raise AssertionError(f'benchmark did not finish:\n{output.decode(errors="replace")}') from None
    text = output.decode(errors='replace')
    assert proc.returncode == 0, text
    result = json.loads(out.read_text())

    rows = {(r['transport'], r['size']): r for r in result['rows']}
    assert set(rows) == {(t, s) for t in TRANSPORTS for s in SIZES}, text
    for key, row in rows.items():
        assert row['error'] is None, (key, row['error'])
        assert row['sent'] > 0 and row['delivered'] == row['sent'], (key, row)
        assert row['rtt_n'] > 0, (key, row)
    assert result['params']['quick'] is True
    assert result['versions']['ros-rclpy'] and result['machine']['cpu_count']
    assert {t['size'] for t in result['targets']} == set(SIZES)
    assert 'PASS' in text or 'FAIL' in text
