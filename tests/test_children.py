"""Children: a running wheel on another host, read by the pilot's task and recorded by the terminal.

Two hosts on this machine: the child is a network namespace joined to the test's own by a veth pair (UDP only,
so nothing crosses through shared memory); the pilot's host is this namespace (gpio sim, null sound, pilot,
virtual subject, terminal). The child runs the wheel node (sim backend) under the pilot's namespace; the virtual
subject answers a go tone by running on it (``response_port: wheel``, through the child's ``wheel/sim_input``
across the link); the pilot runs ``wheel_gonogo``, whose stream role reads ``wheel/velocity``; the terminal
records that topic as a stream table (``stream_topics``). Then the child's wheel stops mid-session: the session
ends with an error naming the stream, and nothing is left open.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from autopilot_msgs.msg import PilotStatus, WheelMotion
from test_pilot import CALIBRATION, FAST_SUBJECT, GPIO, PILOT, RIG_PARAMS, SOUND, SUBJECT, ros_args
from test_terminal import Lab, terminal_cmd

from autopilot_core import qos
from autopilot_terminal.storage import SubjectReader

ROOT = Path(__file__).resolve().parent.parent
WHEEL = str(ROOT / 'install' / 'autopilot_hardware' / 'lib' / 'autopilot_hardware' / 'wheel')
TONE = {'kind': 'tone', 'duration_ms': 30.0, 'amplitude': 0.1, 'ramp_ms': 5.0}
PROTOCOL = f"""\
name: wheel
steps:
  - name: wheel go/no-go
    task: wheel_gonogo
    parameters:
      quiet_s: 0.3
      response_window_s: 1.0
      iti_s: 0.1
      punish_timeout_s: 0.2
      noise_ms: 30.0
      stimuli:
        groups:
          go: [{{id: go, frequency_hz: 5000.0, {', '.join(f'{k}: {v}' for k, v in TONE.items())}}}]
          nogo: [{{id: nogo, frequency_hz: 12000.0, {', '.join(f'{k}: {v}' for k, v in TONE.items())}}}]
"""
SPEED = 25.0      # the simulated wheel's running speed, cm/s
CM_PER_COUNT = 0.01

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which('ip') is None,
                                reason='network namespaces need root and iproute2 (apt install iproute2)')


def test_a_wheel_on_a_child_host_drives_the_task_and_is_recorded(procs, node, ros_env, child_host, tmp_path):
    here, child = child_host.env(ros_env, child=False), child_host.env(ros_env, child=True)
    calibration = tmp_path / 'calibration.jsonl'
    shutil.copy(CALIBRATION, calibration)
    ns = ['-r', '__ns:=/rig1']
    wheel = procs(child_host.cmd([WHEEL, '--ros-args', *ns, *ros_args(
        {'backend': 'sim', 'cm_per_count': CM_PER_COUNT, 'sim_speed_cm_s': SPEED, 'sim_noise_cm_s': 0.5})]),
        env=child, name='child-wheel')
    procs([GPIO, '--ros-args', '--params-file', str(RIG_PARAMS), '-p', f'calibration_file:={calibration}', *ns],
          env=here, name='gpio')
    procs([SOUND, '--ros-args', '-p', 'backend:=null', *ns], env=here, name='sound')
    pilot = procs([PILOT, '--ros-args', *ns, *ros_args({'journal_path': tmp_path / 'journal.sqlite3', 'seed': 3,
                                                         'resend_interval_s': 0.5, 'hardware_timeout_s': 20.0})],
                  env=here, name='pilot')
    subject = procs([SUBJECT, '--ros-args', *ns, *ros_args({
        **FAST_SUBJECT, 'seed': 5, 'mode': 'detect', 'response_port': 'wheel', 'run_ms': 300.0, 'slope': 5.0,
        'lapse': 0.05, 'miss_timeout_ms': 0.0, 'stimulus_ids': ['go', 'nogo'], 'stimulus_values': [1.0, -1.0]})],
        env=here, name='subject')
    (tmp_path / 'protocols').mkdir()
    (tmp_path / 'protocols' / 'wheel.yaml').write_text(PROTOCOL)
    terminal = procs(terminal_cmd(tmp_path, '-p', 'stream_topics:=["wheel/velocity"]'), env=here, name='terminal')
    lab = Lab(node, ['rig1'])
    lab.wait_online('rig1')
    subject.wait_for_output('matched: subject starts', timeout=60)  # the run topic reached the child
    assert lab.create('mouse_w').success and lab.assign('mouse_w', 'wheel').success
    # Hostile samples on the stream's topic from elsewhere (frame_id 'intruder'): recorded, never seen by the task.
    intruder = node.create_publisher(WheelMotion, '/rig1/wheel/velocity', qos.STREAM)
    bad = iter([math.nan, 1e308, -math.inf, 501.0] * 1000)

    def intrude() -> None:
        msg = WheelMotion(velocity_cm_s=next(bad), seq=2**63)
        msg.header.frame_id = 'intruder'
        intruder.publish(msg)
    timer = node.create_timer(0.2, intrude)
    n = 16
    started = lab.start('mouse_w', 'rig1', max_trials=n)
    assert started.success, f'{started.message}\n{pilot.output()[-3000:]}'
    lab.spin_until(lambda: len(lab.by_pilot['rig1']) >= n and lab.state('rig1') == PilotStatus.STATE_IDLE, 120,
                   lambda: f'trials: {len(lab.by_pilot["rig1"])}\n{pilot.output()[-3000:]}\n{wheel.output()[-2000:]}')
    lab.spin(2.0)
    node.destroy_timer(timer)
    [sid] = lab.session_trials('rig1')
    assert 'is not a number in [-500, 500]: ignored' in pilot.output()
    assert 'rig1_wheel_velocity' in terminal.output() or '/rig1/wheel/velocity' in terminal.output(), \
        terminal.output()[-3000:]

    # Part two: the child's wheel stops mid-session; the session ends with an error naming the stream.
    second = lab.start('mouse_w', 'rig1')
    assert second.success, second.message
    lab.spin_until(lambda: len(lab.by_pilot['rig1']) >= n + 2, 60, lambda: pilot.output()[-3000:])
    assert wheel.stop() == 0, wheel.output()
    lab.spin_until(lambda: lab.state('rig1') == PilotStatus.STATE_ERROR, 30,
                   lambda: f'no error after the wheel stopped\n{pilot.output()[-3000:]}')
    assert 'stream wheel: no sample for' in pilot.output() and '/rig1/wheel/velocity' in pilot.output()
    lab.spin(1.5)
    [failed] = set(lab.session_trials('rig1')) - {sid}
    assert terminal.stop() == 0, terminal.output()

    with SubjectReader(tmp_path / 'data' / 'mouse_w.h5') as r:
        trials = r.trial_rows(sid)
        assert len(trials) == n
        for t in trials:
            ran = t['response'] == 'run'
            assert t['outcome'] == {('go', True): 'hit', ('go', False): 'miss', ('nogo', True): 'false_alarm',
                                    ('nogo', False): 'correct_reject'}[(t['stim_group'], ran)], t
            assert math.isnan(t['rt_ms']) != ran
        # Each trial's response is the virtual subject's decision about its tone, in order; the task's rt is the
        # subject's plus the wheel's getting past 10 cm/s: one to two 20 ms samples and the link.
        decisions = [ln.split(': ', 2)[2] for ln in subject.output().splitlines() if '] [rig1.subject_sim]: response ' in ln]
        for t, d in zip(trials, decisions, strict=False):
            assert d.startswith(f"{t['stim']} x=") and (t['response'] == 'run') == ('withheld' not in d), (t, d)
            if t['response'] == 'run':
                subject_rt = float(d.split(' rt ')[1].split(' ms')[0])
                assert -2.0 <= t['rt_ms'] - subject_rt <= 60.0, (t, d)
        hits = [t for t in trials if t['outcome'] == 'hit']
        assert hits, 'the subject never ran after a go tone'  # p(respond | go) = 0.97 here
        # rt: tone onset (this host's clock) -> the first wheel sample past 10 cm/s (the child's): the subject's
        # reaction time, then up to one 20 ms sampling period.
        assert min(t['rt_ms'] for t in hits) >= FAST_SUBJECT['rt_min_ms'] - 2.0, hits
        assert all(t['reward_given_ul'] == 5.0 for t in hits)
        # The child's stream, recorded by the terminal: every column of WheelMotion, in order.
        s = r.stream(sid, 'rig1_wheel_velocity')
        intruded = s['header.frame_id'] == 'intruder'
        assert intruded.sum() >= 5
        s = {k: v[~intruded] for k, v in s.items()}
        assert len(s['seq']) > 50 and (np.diff(s['seq']) > 0).all()
        assert set(s) >= {'recv_ns', 'header.stamp', 'header.frame_id', 'counts', 'velocity_cm_s', 'distance_cm',
                          'period_us'}
        assert np.allclose(s['velocity_cm_s'], s['counts'] * CM_PER_COUNT / (s['period_us'] / 1e6), rtol=0.01,
                           atol=1e-9)
        assert s['velocity_cm_s'].max() == pytest.approx(SPEED, rel=0.2)  # the runs, at the child's speed
        assert np.median(s['period_us']) == pytest.approx(20_000, rel=0.1)
        assert r.session(sid)['state'] == 'ended'
        assert r.session(failed)['state'] == 'aborted', r.session(failed)  # the terminal's word for an error
