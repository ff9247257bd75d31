"""Clock sync across hosts (issue 21, item 3): the terminal measures each pilot's clock offset and round trip over
``<pilot>/clock_sync``, warns past clock_warn_ms, publishes it in the registry and stores it with each session.

The offset is injected for real: the pilot runs under libfaketime (LD_PRELOAD; its system clock 0.5 s ahead,
its monotonic clock untouched), as a pilot with a drifted clock on another host would be. A network namespace
would not do: Linux has no per-namespace wall clock."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from autopilot_msgs.msg import PilotRegistry, PilotStatus
from hypothesis import given
from hypothesis import strategies as st
from test_terminal import Lab, launch_rig, launch_terminal

from autopilot_core import qos
from autopilot_terminal.clocksync import WINDOW, ClockFilter, describe, sample
from autopilot_terminal.storage import SubjectReader

FAKETIME = Path('/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1')
MS = 1_000_000


@given(offset=st.integers(-10**12, 10**12), out_ns=st.integers(0, 10**8), back_ns=st.integers(0, 10**8),
       busy_ns=st.integers(0, 10**7), t1=st.integers(0, 2**62))
def test_an_exchange_recovers_the_offset_within_half_its_round_trip(offset, out_ns, back_ns, busy_ns, t1):
    t2 = t1 + out_ns + offset          # pilot clock = terminal clock + offset
    t3 = t2 + busy_ns
    t4 = t1 + out_ns + busy_ns + back_ns
    s = sample(t1, t2, t3, t4)
    assert s.delay_ns == out_ns + back_ns
    assert abs(s.offset_ns - offset) <= s.delay_ns / 2 + 1


def test_the_filter_keeps_the_least_delayed_of_the_last_exchanges():
    f = ClockFilter()
    assert math.isnan(f.summary()['offset_ms']) and f.summary()['exchanges'] == 0
    for i, (off, delay) in enumerate([(9 * MS, 20 * MS), (5 * MS, 2 * MS), (7 * MS, 8 * MS)]):
        t1 = i * 10**9
        assert f.add(sample(t1, t1 + delay // 2 + off, t1 + delay // 2 + off, t1 + delay))
    assert f.summary() == {'offset_ms': 5.0, 'error_bound_ms': 1.0, 'delay_ms': 2.0, 'exchanges': 3,
                           'measured_at_ns': 10**9 + 2 * MS}
    assert not f.add(sample(0, 0, 10, 5))                      # a negative round trip: a clock stepped; dropped
    for _ in range(WINDOW):                                    # the good one ages out of the window
        f.add(sample(0, 30 * MS, 30 * MS, 40 * MS))
    assert f.best is not None and f.best.delay_ns == 40 * MS
    assert describe('rig_1', f.best).startswith("pilot rig_1: its clock is 10.0 ms ahead of the terminal's (+- 20.0 "
                                                'ms, round trip 40.0 ms)')


@pytest.mark.skipif(not FAKETIME.exists(), reason='libfaketime is missing: scripts/setup.py --test installs it '
                    '(package faketime)')
def test_a_pilot_half_a_second_ahead_is_measured_warned_about_and_stored_with_its_session(procs, node, tmp_path,
                                                                                         ros_env):
    rig = launch_rig(procs, tmp_path, 'rig1', with_subject=True)
    # The pilot again, its wall clock 0.5 s ahead (the monotonic clock, which its timers use, untouched).
    rig['pilot'].stop()
    skewed = {**ros_env, 'LD_PRELOAD': str(FAKETIME), 'FAKETIME': '+0.5', 'FAKETIME_DONT_FAKE_MONOTONIC': '1',
              'FAKETIME_NO_CACHE': '1'}
    rig['pilot'] = procs(rig['pilot_cmd'], env=skewed, name='rig1-pilot-skewed')
    terminal = launch_terminal(procs, tmp_path, 'terminal', '-p', 'clock_sync_s:=1.0')
    lab = Lab(node, ['rig1'])
    lab.wait_online('rig1')
    registry: list[PilotRegistry] = []
    node.create_subscription(PilotRegistry, '/terminal/pilots', registry.append, qos.STATUS)
    lab.spin_until(lambda: "pilot rig1: its clock is" in terminal.output(), 30,
                   lambda: f'no clock warning:\n{terminal.output()}')
    line = next(x for x in terminal.output().splitlines() if 'pilot rig1: its clock is' in x)
    measured = float(line.split('its clock is ')[1].split(' ms')[0])
    assert 'ahead of the terminal' in line and abs(measured - 500.0) < 20.0, line
    lab.spin_until(lambda: any(not math.isnan(e.clock_offset_ms) for r in registry[-1:] for e in r.pilots), 10,
                   'the registry has no clock offset')
    entry = registry[-1].pilots[0]
    assert abs(entry.clock_offset_ms - 500.0) < 20.0 and 0.0 <= entry.clock_delay_ms < 40.0
    # A session: the offset goes into its provenance.
    assert lab.create('mouse1').success and lab.assign('mouse1').success
    assert lab.start('mouse1', 'rig1', max_trials=3).success
    lab.spin_until(lambda: len(lab.by_pilot['rig1']) >= 3 and lab.state('rig1') == PilotStatus.STATE_IDLE, 60, 'the session did not end')
    assert terminal.stop() == 0, terminal.output()
    [sid] = lab.session_trials('rig1')
    with SubjectReader(tmp_path / 'data' / 'mouse1.h5') as r:
        clock = r.provenance(sid)['clock']
    assert abs(clock['offset_ms'] - 500.0) < 20.0 and clock['exchanges'] >= 4 and clock['error_bound_ms'] < 20.0
