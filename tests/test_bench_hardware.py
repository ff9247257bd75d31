"""Smoke test of bench/hardware.py: a --quick run completes, reports every row and writes JSON.

No timing assertions (numbers depend on the machine and its load): only that each camera row either
measured frames of the right shape or reported a stall, that both gpio rows (the gpio node and bare rclpy)
delivered every edge in order with a latency, and that the JSON is complete.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / 'bench' / 'hardware.py'


def test_quick_run_reports_every_camera_and_gpio_row(domain_id: int, tmp_path: Path) -> None:
    out = tmp_path / 'hardware.json'
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    proc = subprocess.Popen([sys.executable, str(BENCH), '--quick', '--seconds', '1', '--out', str(out),
                             '--domain-id', str(domain_id), '--log-dir', str(tmp_path / 'logs')],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)  # the orchestrator stops its children on the way out
        output, _ = proc.communicate(timeout=20)
        raise AssertionError(f'benchmark did not finish:\n{output.decode(errors="replace")}') from None
    text = output.decode(errors='replace')
    assert proc.returncode == 0, text
    result = json.loads(out.read_text())
    rows = {(r['source'], r['transport']): r for r in result['sections']['camera']['rows']}
    assert set(rows) == {(s, t) for s in ('camera-node', 'rclpy-bare') for t in ('default', 'shm16m-pub')}, text
    for key, row in rows.items():
        assert row['error'] is None, (key, row['error'])
        assert row.get('stalled') or (row['frames'] > 0 and row['shape'] == [640, 480, 'bgr8', 640 * 480 * 3]), row
        assert row.get('pub_cores') is None or row['pub_cores'] >= 0
    gpio = {r['source']: r for r in result['sections']['gpio']['rows']}
    assert set(gpio) == {'gpio-node', 'rclpy-bare'}, text
    for source, row in gpio.items():
        assert row['error'] is None, (source, row['error'])
        total = row['edges'] + row['warmup_edges']
        assert row['received'] == total and row['delivered'] == row['edges'] and row['lost'] == 0, row
        assert row['order_ok'] is True and len(row['lat_us']) == total, row
        assert row['lat_p50_ms'] is not None and row['lat_p99_ms'] >= row['lat_p50_ms'], row
    assert result['params']['quick'] is True and result['machine']['cpu_count']
    assert 'rx fps' in text and 'lat max ms' in text
