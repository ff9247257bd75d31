"""Clean stops (issue 18, item 4): a rig and a terminal stopped together mid-session, as a launch's Ctrl-C stops
them, and a pilot killed mid-session and restarted (respawn, systemd).

Either way the session ends as ``interrupted`` in the pilot's journal *and* the subject file, and every trial
the task finished is stored exactly once. And outputs go low: when a session stops, and when its pilot dies
(the gpio node watches its rig's pilot with the shipped defaults).
"""

from __future__ import annotations

import signal
import time

from autopilot_msgs.msg import GpioEvent, PilotStatus
from test_terminal import Lab, journal_of, launch_rig, launch_terminal, one_rig, stored_trials_match

from autopilot_core import qos
from autopilot_terminal.storage import SubjectReader


def test_ctrl_c_of_the_whole_lab_mid_session_ends_it_as_interrupted_everywhere(procs, node, tmp_path):
    rig, terminal, lab = one_rig(procs, node, tmp_path)
    assert lab.start('mouse1', 'rig1', max_trials=500).success
    lab.spin_until(lambda: len(lab.by_pilot['rig1']) >= 6, 60, 'no trials')
    [sid] = lab.session_trials('rig1')
    # A launch's Ctrl-C: SIGINT to every process at once.
    for name in ('pilot', 'gpio', 'sound', 'subject'):
        rig[name].signal(signal.SIGINT)
    terminal.signal(signal.SIGINT)
    assert terminal.wait(20) == 0, terminal.output()
    assert rig['pilot'].wait(20) == 0, rig['pilot'].output()
    out = terminal.output()
    assert f'session {sid} of mouse1 on rig1: interrupted' in out, out
    journal = journal_of(rig)
    finished = journal.stats(sid).trials
    assert journal.session(sid).state == 'interrupted'
    # (An ack may be lost as both stop: such a trial is stored all the same, and resent and deduplicated later.)
    journal.close()
    with SubjectReader(tmp_path / 'data' / 'mouse1.h5') as r:
        assert r.session(sid)['state'] == 'interrupted'
        rows = stored_trials_match(r, sid, lab)
        assert sorted(row['trial_number'] for row in rows) == list(range(1, finished + 1))


def test_a_pilot_killed_mid_session_and_restarted_ends_it_as_interrupted(procs, node, tmp_path):
    rig, terminal, lab = one_rig(procs, node, tmp_path)
    assert lab.start('mouse1', 'rig1', max_trials=500).success
    lab.spin_until(lambda: len(lab.by_pilot['rig1']) >= 6, 60, 'no trials')
    [sid] = lab.session_trials('rig1')
    rig['pilot'].signal(signal.SIGKILL)
    rig['pilot'].wait()
    time.sleep(0.5)  # a respawn delay
    rig['pilot'] = procs(rig['pilot_cmd'], name='rig1-pilot-restarted')
    rig['pilot'].wait_for_output(f'session {sid} of mouse1 was interrupted (pilot restart)')
    lab.spin_until(lambda: f'session {sid} of mouse1 on rig1: interrupted' in terminal.output(), 30,
                   lambda: f'the terminal did not close the session as interrupted:\n{terminal.output()}')
    lab.spin_until(lambda: lab.state('rig1') == PilotStatus.STATE_IDLE, 10, 'pilot not idle after restart')
    lab.spin(3.0)  # the restarted pilot resends what the killed one had not had acknowledged
    assert terminal.stop() == 0, terminal.output()
    journal = journal_of(rig)
    finished = journal.stats(sid).trials
    assert journal.session(sid).state == 'interrupted' and journal.unacked() == []
    journal.close()
    with SubjectReader(tmp_path / 'data' / 'mouse1.h5') as r:
        assert r.session(sid)['state'] == 'interrupted'
        rows = stored_trials_match(r, sid, lab)
        assert sorted(row['trial_number'] for row in rows) == list(range(1, finished + 1))
    # The lab starts the next session where the subject is: same protocol step (the terminal's state).
    terminal = launch_terminal(procs, tmp_path, name='terminal-2')
    rig['pilot'] = procs(rig['pilot_cmd'], name='rig1-pilot-3')
    lab.registry = None  # the stopped terminal's last registry says nothing of the new one
    lab.wait_online('rig1')
    assert lab.start('mouse1', 'rig1', max_trials=2).success


def test_outputs_go_low_when_a_session_stops_and_when_its_pilot_dies(procs, node, tmp_path):
    """No virtual subject: the 2AFC task lights the centre LED and waits for a poke that never comes."""
    rig = launch_rig(procs, tmp_path, 'rig1', with_subject=False)
    launch_terminal(procs, tmp_path)
    lab = Lab(node, ['rig1'])
    leds: list[tuple[float, bool]] = []
    node.create_subscription(GpioEvent, '/rig1/gpio/events',
                             # The edge's own stamp (the gpio node's tick on the ROS clock): when the LED changed,
                             # not when this busy test process got round to hearing of it.
                             lambda e: e.device == 'led_center' and leds.append(
                                 ((e.header.stamp.sec * 10**9 + e.header.stamp.nanosec) / 1e9, e.level)),
                             qos.EVENTS)
    lab.wait_online('rig1')
    assert lab.create('mouse1').success and lab.assign('mouse1').success

    def led_on() -> bool:
        return bool(leds) and leds[-1][1]

    assert lab.start('mouse1', 'rig1').success
    lab.spin_until(led_on, 30, 'the centre LED never went on')
    stop = time.time()
    assert lab.command('stop', 'rig1').success
    lab.spin_until(lambda: not led_on(), 10, 'the centre LED stayed on after the session stopped')
    after_stop = leds[-1][0] - stop  # a stop takes a service call and the session's cancel: no bound asked
    lab.spin_until(lambda: lab.state('rig1') == PilotStatus.STATE_IDLE, 20, 'pilot not idle')
    assert lab.start('mouse1', 'rig1').success
    lab.spin_until(led_on, 30, 'the centre LED never went on again')
    rig['pilot'].signal(signal.SIGKILL)
    killed = time.time()
    lab.spin_until(lambda: not led_on(), 5, 'the centre LED stayed on after the pilot died')
    after_death = leds[-1][0] - killed
    print({'led_low_after_stop_s': round(after_stop, 3), 'led_low_after_pilot_death_s': round(after_death, 3)})
    # The gpio node's own timing: pilot_timeout_s 1.5 s after the last 2 Hz beat, checked every 0.1 s.
    assert after_death < 2.0, after_death


def test_sigint_stops_the_terminal_and_the_pilot_every_time(procs, node, tmp_path):
    """The pilot's session action server and the terminal's per-pilot action clients are destroyed before their
    node: left to the garbage collector, one finalized after its participant was gone hung a process for good."""
    rig, terminal, lab = one_rig(procs, node, tmp_path)
    assert lab.start('mouse1', 'rig1', max_trials=2).success  # goal handles on both sides, then none left
    lab.spin_until(lambda: len(lab.by_pilot['rig1']) >= 2 and lab.state('rig1') == PilotStatus.STATE_IDLE, 60,
                   'the two-trial session did not end')
    for cycle in range(3):
        if cycle:
            terminal = launch_terminal(procs, tmp_path, name=f'terminal-{cycle}')
            rig['pilot'] = procs(rig['pilot_cmd'], name=f'rig1-pilot-{cycle}')
            lab.registry = None
            lab.wait_online('rig1')  # the new terminal has found the pilot: it holds an action client for it
        terminal.signal(signal.SIGINT)
        rig['pilot'].signal(signal.SIGINT)
        assert terminal.wait(20) == 0, terminal.output()
        assert rig['pilot'].wait(20) == 0, rig['pilot'].output()
