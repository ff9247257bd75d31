"""A network loss longer than DDS's lease between a pilot and its terminal loses and duplicates no trial.

Two hosts on this machine: network namespaces joined by a veth pair (made here, removed after). The rig
(sim GPIO, null sound, virtual subject, pilot) runs in one; a minimal terminal (tests/nodes/terminal_peer.py,
UDP only, so nothing can cross through shared memory) in the other. The link is cut for longer than
Fast DDS's participant lease while the session goes on, then restored: the pilot must resend every
trial the terminal did not acknowledge, and the terminal must end up with each trial exactly once. The
lease is 4 s here (tests/nodes/short_lease.xml; Fast DDS's default is 20 s): the test checks that it
expired (the terminal's reader lost the pilot's writer) and was found again.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from autopilot_pilot.journal import Journal

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / 'install'
GPIO = str(LIB / 'autopilot_hardware' / 'lib' / 'autopilot_hardware' / 'gpio')
SOUND = str(LIB / 'autopilot_hardware' / 'lib' / 'autopilot_hardware' / 'sound')
PILOT = str(LIB / 'autopilot_pilot' / 'lib' / 'autopilot_pilot' / 'pilot')
SUBJECT = str(LIB / 'autopilot_pilot' / 'lib' / 'autopilot_pilot' / 'subject_sim')
PEER = str(ROOT / 'tests' / 'nodes' / 'terminal_peer.py')
PROFILE = str(ROOT / 'tests' / 'nodes' / 'short_lease.xml')
LEASE_S = 4.0  # the participant lease in PROFILE, announced every second

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which('ip') is None,
                                reason='network namespaces need root and iproute2 (apt install iproute2)')


def lines(proc, prefix: str) -> list[str]:
    return [ln for ln in proc.output().splitlines() if ln.startswith(prefix)]


def wait(condition, timeout: float, what: str, peer=None, rig=()) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            told = [ln for ln in peer.output().splitlines() if not ln.startswith('@trial')] if peer else []
            logs = ''.join(f'\n--- {p.log_path.name}:\n{p.output()[-1500:]}' for p in rig)
            raise AssertionError(f'{what}\npeer: {len(lines(peer, "@trial")) if peer else 0} trials, then:\n'
                                 + '\n'.join(told[-40:]) + logs)
        time.sleep(0.1)


def test_network_loss_longer_than_the_lease_loses_and_duplicates_nothing(procs, ros_env, hosts, tmp_path):
    env = dict(ros_env, ROS_AUTOMATIC_DISCOVERY_RANGE='SUBNET', FASTRTPS_DEFAULT_PROFILES_FILE=PROFILE)
    pi_env = dict(env, ROS_STATIC_PEERS=hosts.term_ip)
    term_env = dict(env, ROS_STATIC_PEERS=hosts.pi_ip, FASTDDS_BUILTIN_TRANSPORTS='UDPv4')
    calibration = tmp_path / 'calibration.jsonl'
    shutil.copy(ROOT / 'launch' / 'params' / 'calibration_sim.jsonl', calibration)
    journal = tmp_path / 'journal.sqlite3'
    ns = ['-r', '__ns:=/rig1']
    on_pi = [
        [GPIO, '--ros-args', '--params-file', str(ROOT / 'launch' / 'params' / 'rig_sim.yaml'),
         '-p', f'calibration_file:={calibration}', *ns],
        [SOUND, '--ros-args', '-p', 'backend:=null', *ns],
        [PILOT, '--ros-args', '-p', f'journal_path:={journal}', '-p', 'resend_interval_s:=1.0', *ns],
        [SUBJECT, '--ros-args', '-p', 'seed:=5', '-p', 'rt_mean_ms:=60.0', '-p', 'rt_sd_ms:=20.0', '-p',
         'rt_min_ms:=20.0', '-p', 'center_delay_mean_ms:=100.0', '-p', 'center_delay_sd_ms:=10.0', '-p',
         'poke_hold_ms:=10.0', '-p', 'stimulus_wait_ms:=200.0', *ns],
    ]
    rig = [procs(hosts.cmd(hosts.pi, cmd), env=pi_env, name=Path(cmd[0]).name) for cmd in on_pi]
    pilot = rig[2]
    pilot.wait_for_output('ready')
    task = {'iti_s': 0.05, 'punish_timeout_s': 0.1, 'response_window_s': 3.0, 'tone_ms': 30.0, 'noise_ms': 30.0}
    session_s = LEASE_S + 20.0
    peer = procs(hosts.cmd(hosts.term, [sys.executable, PEER, '--pilot', 'rig1', '--max-duration', str(session_s),
                                        '--params', json.dumps(task)]), env=term_env, name='terminal_peer')
    wait(lambda: lines(peer, '@accepted'), 60, 'the terminal could not start a session across the link', peer)
    wait(lambda: len(lines(peer, '@trial')) >= 10, 30, 'no trials across the link', peer)

    hosts.link(False)
    time.sleep(1.0)  # what was in flight lands
    before = len(lines(peer, '@trial'))
    time.sleep(LEASE_S + 4.0)
    assert len(lines(peer, '@trial')) == before, 'trials crossed a cut link: the test does not cut anything'
    assert lines(peer, '@matched')[-1] == '@matched 0', 'the lease did not expire: the test shows nothing'
    hosts.link(True)

    # The end as our terminal learns it: the heartbeat's last session (it comes again in every beat).
    wait(lambda: lines(peer, '@ended'), 60, 'no heartbeat telling the session\'s end after the link came back',
         peer, rig)
    ended = json.loads(lines(peer, '@ended')[0].split(' ', 1)[1])
    assert ended['state'] == 'ended' and ended['n_trials'] > before + 20, ended
    n = ended['n_trials']
    wait(lambda: lines(peer, '@matched')[-1] == '@matched 1', 30, 'the pilot was not found again', peer, rig)
    # The pilot resends what was not acknowledged: the terminal ends up with every trial.
    wait(lambda: len(lines(peer, '@trial')) >= n, 60, f'the terminal has not got all {n} trials', peer, rig)
    time.sleep(2.5)  # a couple of resend intervals, for the acks of the last resends
    peer.stop()
    summary = json.loads(lines(peer, '@summary')[0].split(' ', 1)[1])
    numbers = sorted(int(ln.split()[2]) for ln in lines(peer, '@trial'))
    assert numbers == list(range(1, n + 1)), 'lost or repeated trial numbers'
    assert summary['stored'] == n  # duplicates (resent trials whose ack was lost) were received, not stored
    if lines(peer, '@result'):  # the action's own result, when its services came back in time, agrees
        result = json.loads(lines(peer, '@result')[0].split(' ', 1)[1])
        assert (result['success'], result['n_trials'], result['session_id']) == (True, n, ended['session_id'])
    for p in reversed(rig):
        p.stop()
    with Journal(journal) as j:
        stats = j.stats(ended['session_id'])
        assert (stats.trials, stats.unacked_trials) == (n, 0), stats
