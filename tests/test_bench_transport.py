"""Smoke test of bench/transport.py: a --quick run completes and every message of every row arrives.

No timing assertions: the numbers depend on the machine and its load; this only proves the benchmark
runs end to end (two processes per case, all transports, both sizes) and writes complete JSON.
"""

from __future__ import annotations

from pathlib import Path

from conftest import run_bench

TRANSPORTS = ('rclpy-single', 'rclpy-events', 'autopilot', 'zmq-json')
SIZES = ('small', 'large')


def test_quick_run_delivers_everything(domain_id: int, tmp_path: Path) -> None:
    text, result = run_bench('transport.py', domain_id, tmp_path)

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
