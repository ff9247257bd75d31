"""Smoke test of bench/hardware.py: a --quick run completes, reports every row and writes JSON.

No timing assertions (numbers depend on the machine and its load): only that each camera row either
measured frames of the right shape or reported a stall, that both gpio rows (the gpio node and bare rclpy)
delivered every edge in order with a latency, and that the JSON is complete.
"""

from __future__ import annotations

from pathlib import Path

from conftest import run_bench


def test_quick_run_reports_every_camera_and_gpio_row(domain_id: int, tmp_path: Path) -> None:
    text, result = run_bench('hardware.py', domain_id, tmp_path, '--seconds', '1', timeout=90)
    rows = {(r['source'], r['transport']): r for r in result['sections']['camera']['rows']}
    assert set(rows) == {(s, t) for s in ('camera-node', 'rclpy-bare') for t in ('default', 'shm16m-pub')}, text
    for key, row in rows.items():
        assert row['error'] is None, (key, row['error'])
        if key[1] == 'default' and not row.get('stalled') and row['frames'] == 0:
            # Fast DDS's default transports send a 900 KB frame over UDP in fragments, best effort: one lost
            # fragment loses the frame (the bench's point; ~40 of 90 fps arrive), and a 1 s quick window on a
            # loaded machine was seen to lose all of them after the first frame had arrived. Measured, not broken.
            continue
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
