"""The README's demo, shortened: a terminal and two simulated pilots train two virtual mice, the driver
checks every reported trial is in the HDF5 files exactly once and leaves MCAP and PNG files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mcap.reader import make_reader

ROOT = Path(__file__).resolve().parent.parent


def test_demo_trains_two_mice_and_leaves_hdf5_mcap_and_png(ros_env, tmp_path):
    out = tmp_path / 'demo'
    proc = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'demo.py'), '--duration', '20', '--out', str(out)],
                          env=ros_env, capture_output=True, text=True, timeout=240)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert 'demo: OK' in text and '=== results ===' in text
    for subject in ('mouse_1', 'mouse_2'):
        assert (out / 'data' / f'{subject}.h5').stat().st_size > 0
        png = out / f'{subject}_summary.png'
        assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
        with (out / f'{subject}.mcap').open('rb') as f:
            topics = {channel.topic for channel in make_reader(f).get_summary().channels.values()}
        pilot = 'rig_1' if subject == 'mouse_1' else 'rig_2'
        assert {f'/{pilot}/trials', f'/{pilot}/gpio/events', f'/{pilot}/status'} <= topics
        # the results table: every reported trial stored once
        row = next(line for line in text.splitlines() if line.startswith(subject))
        reported, stored = row.split()[2], row.split()[3]
        assert int(reported) > 5 and stored == reported and '(0 dup)' in row
