"""Gaps are told, not hidden (issue 18, item 5): GPIO events the terminal's live recording missed are counted
per session and fetched from the pilot's journal.

Plain logic (:mod:`autopilot_terminal.gaps`, the journal's event table) and, end to end, a rig and a terminal
whose receiving child is killed mid-session: the events published while it restarts are missing from the live
stream, and the subject file ends up with every event of the session, each once, the gap counted.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from autopilot_msgs.msg import GpioEvent, PilotStatus
from conftest import AUTOPILOT, ROOT
from hypothesis import given
from hypothesis import strategies as st
from rclpy.serialization import serialize_message
from test_pilot import CALIBRATION, FAST_SUBJECT, RIG_PARAMS, ros_args
from test_pilot_network import GPIO, LEASE_S, PILOT, SOUND, SUBJECT, wait
from test_terminal import FAST_PROTOCOL, TERMINAL, one_rig

from autopilot_core import qos
from autopilot_pilot.journal import Journal
from autopilot_terminal.gaps import END, EventGaps
from autopilot_terminal.storage import SubjectReader

KEY = ('mouse1', 'S1', '/rig1/gpio/events')


def test_a_jump_in_seq_is_a_gap_and_filling_it_counts_recovered():
    g = EventGaps()
    assert g.observe(KEY, [7] * 3, [10, 11, 12]) == []          # the first event recorded is where counting starts
    assert g.observe(KEY, [7] * 2, [16, 17]) == [(7, 13, 15)]
    assert g.counts('mouse1', 'S1') == (3, 0)
    assert g.fill(KEY, 7, [12, 13, 14]) == [False, True, True]  # 12 was recorded already
    assert g.counts('mouse1', 'S1') == (1, 2)
    assert g.missing_ranges('mouse1', 'S1') == [('/rig1/gpio/events', 7, 15, 15)]
    assert g.observe(KEY, [7], [15]) == [] and g.counts('mouse1', 'S1') == (0, 2)  # a late one fills its place
    assert g.tails('mouse1', 'S1') == [('/rig1/gpio/events', 7, 18)]
    assert g.fill(KEY, 7, [18, 19]) == [True, True]             # the tail asked for at the session's end
    assert g.counts('mouse1', 'S1') == (0, 4)
    assert g.observe(KEY, [9], [1]) == []                       # a restarted gpio node: a new run, no gap
    assert g.fill(KEY, 8, [1]) == [False]                       # a run never recorded: nothing to fill


@given(st.lists(st.integers(1, 200), min_size=1, max_size=100, unique=True).map(sorted),
       st.lists(st.integers(1, 200), max_size=200))
def test_gaps_account_for_every_seq_once(recorded, fetched):
    g = EventGaps()
    g.observe(KEY, [1] * len(recorded), recorded)
    missing = set(range(recorded[0], recorded[-1] + 1)) - set(recorded)
    assert g.counts('mouse1', 'S1') == (len(missing), 0)
    keep = g.fill(KEY, 1, fetched)
    kept = [q for q, k in zip(fetched, keep, strict=True) if k]
    assert len(kept) == len(set(kept))  # never appended twice
    assert set(kept) == {q for q in fetched if q in missing or q > recorded[-1]}
    missing_now, recovered = g.counts('mouse1', 'S1')
    # Events beyond the last recorded one (a tail answer) make the stretch up to them missing until they come.
    beyond = set(range(recorded[-1] + 1, max([q for q in fetched if q > recorded[-1]], default=0) + 1))
    assert recovered == len(kept) and missing_now == len((missing | beyond) - set(kept))


def test_the_journal_keeps_a_sessions_events_and_prunes_old_ones(tmp_path):
    j = Journal(tmp_path / 'j.sqlite3')
    j.begin_session('S1', subject='mouse1', task='2afc')
    events = [GpioEvent(device='poke', run_id=3, seq=q) for q in range(1, 2501)]
    rows = [(e.run_id, e.seq, 0, serialize_message(e)) for e in events]
    assert j.add_events('S1', rows) == 2500 and j.add_events('S1', rows[:10]) == 0  # repeats ignored
    got = j.events('S1', 3, 100, END, 1000)
    assert [q for q, _ in got] == list(range(100, 1100))
    assert j.events('S1', 4, 1, END, 10) == [] and j.events('S2', 3, 1, END, 10) == []
    j.end_session('S1', state='ended')
    assert j.prune_events() == 0                                # ended just now: kept
    assert j.prune_events(now_ns=2**62) == 2500                 # long ago: gone
    j.close()


def test_events_missed_by_the_recording_are_fetched_from_the_pilot(procs, node, tmp_path):
    rig, terminal, lab = one_rig(procs, node, tmp_path)
    seen: list[GpioEvent] = []
    node.create_subscription(GpioEvent, '/rig1/gpio/events', seen.append, qos.EVENTS)
    lab.spin(1.0)
    n = 40
    assert lab.start('mouse1', 'rig1', max_trials=n).success
    lab.spin_until(lambda: len(lab.by_pilot['rig1']) >= 8, 60, 'no trials')
    # The terminal's receiving child dies: what is published until its successor subscribes is never received.
    child = subprocess.run(['pgrep', '-P', str(terminal.pid), '-f', 'autopilot_terminal.receiver'],
                           capture_output=True, text=True).stdout.split()
    assert len(child) == 1, child
    subprocess.run(['kill', '-KILL', child[0]], check=True)
    lab.spin_until(lambda: len(lab.by_pilot['rig1']) >= n and lab.state('rig1') == PilotStatus.STATE_IDLE, 120,
                   f'session did not finish: {len(lab.by_pilot["rig1"])} trials')
    [sid] = lab.session_trials('rig1')
    lab.spin_until(lambda: 'events recovered from the pilot\'s journal' in terminal.output(), 30,
                   lambda: f'no events recovered:\n{terminal.output()[-3000:]}')
    lab.spin(2.0)
    terminal.signal(signal.SIGINT)
    assert terminal.wait(20) == 0, terminal.output()
    assert 'events missing from the live stream' in terminal.output()
    with SubjectReader(tmp_path / 'data' / 'mouse1.h5') as r:
        ev = r.events(sid, 'gpio')
        attrs = r.session(sid)
    seqs = np.sort(ev['seq'])
    assert len(seqs) == len(set(seqs.tolist())), 'an event stored twice'
    assert (np.diff(seqs) == 1).all(), 'a gap left in the events of the session'
    assert attrs['events_recovered'] > 0 and attrs['events_missing'] == 0, attrs
    # Every event the pilot's rig published from the first recorded to the last one of the session is there,
    # with the values it was published with.
    published = {e.seq: e for e in seen if seqs[0] <= e.seq <= seqs[-1]}
    assert sorted(published) == seqs.tolist()
    for i in range(len(ev['seq'])):
        e = published[int(ev['seq'][i])]
        assert (ev['tick_us'][i], ev['level'][i]) == (e.tick_us, e.level)


@pytest.mark.soak
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which('ip') is None, reason='network namespaces need root and iproute2')
@pytest.mark.timeout(600)
def test_a_link_cut_longer_than_the_lease_loses_no_gpio_event(procs, ros_env, hosts, tmp_path):
    """The issue's case: the rig and the real terminal on two hosts (network namespaces), the link cut for
    longer than DDS's lease mid-session. The events of the cut reach the subject file from the pilot's
    journal, each once, and the gap is counted as recovered."""
    env = dict(ros_env, ROS_AUTOMATIC_DISCOVERY_RANGE='SUBNET')
    pi_env = dict(env, ROS_STATIC_PEERS=hosts.term_ip)
    term_env = dict(env, ROS_STATIC_PEERS=hosts.pi_ip, FASTDDS_BUILTIN_TRANSPORTS='UDPv4')
    calibration = tmp_path / 'calibration.jsonl'
    shutil.copy(CALIBRATION, calibration)
    journal = tmp_path / 'journal.sqlite3'
    ns = ['-r', '__ns:=/rig1']
    rig = []
    for cmd in ([GPIO, '--ros-args', '--params-file', str(RIG_PARAMS), '-p', f'calibration_file:={calibration}', *ns],
                [SOUND, '--ros-args', '-p', 'backend:=null', *ns],
                [PILOT, '--ros-args', '-p', f'journal_path:={journal}', '-p', 'resend_interval_s:=1.0', *ns],
                [SUBJECT, '--ros-args', *ros_args({'seed': 5, **FAST_SUBJECT}), *ns]):
        rig.append(procs(hosts.cmd(hosts.pi, cmd), env=pi_env, name=Path(cmd[0]).name))
    protocols = tmp_path / 'protocols'
    protocols.mkdir()
    (protocols / 'fast.yaml').write_text(FAST_PROTOCOL)
    terminal = procs(hosts.cmd(hosts.term, [TERMINAL, '--ros-args', '-p', f'data_dir:={tmp_path / "data"}',
                                            '-p', f'protocol_dir:={protocols}']), env=term_env, name='terminal')
    terminal.wait_for_output('subject files in')

    def run(*args: str) -> str:
        res = subprocess.run(hosts.cmd(hosts.term, [*AUTOPILOT, *args]), env=term_env, capture_output=True, text=True,
                             timeout=90, cwd=ROOT)
        assert res.returncode == 0, res.stdout + res.stderr
        return res.stdout
    wait(lambda: 'pilot rig1 is online' in terminal.output(), 60, 'the pilot never came online', terminal)
    run('subject', 'create', 'mouse1')
    run('subject', 'assign', 'mouse1', 'fast')
    run('session', 'start', 'mouse1', 'rig1', '--max-duration', str(LEASE_S + 30))
    wait(lambda: ': recording' in terminal.output(), 30, 'no session recorded', terminal)
    time.sleep(5.0)
    hosts.link(False)
    time.sleep(LEASE_S + 4.0)
    hosts.link(True)
    wait(lambda: 'on rig1: ended' in terminal.output(), 120, 'the session did not end', terminal)
    wait(lambda: "events recovered from the pilot's journal" in terminal.output(), 60, 'nothing recovered', terminal)
    time.sleep(3.0)
    terminal.stop()
    for p in reversed(rig):
        p.stop()
    with SubjectReader(tmp_path / 'data' / 'mouse1.h5') as r:
        [sid] = r.sessions()
        ev, attrs = r.events(sid, 'gpio'), r.session(sid)
    seqs = np.sort(ev['seq'])
    assert len(seqs) == len(set(seqs.tolist())) and (np.diff(seqs) == 1).all()
    assert attrs['events_recovered'] > 0 and attrs['events_missing'] == 0, attrs
    with Journal(journal) as j:
        run_id = int(ev['run_id'][0])
        journalled = [q for q, _ in j.events(sid, run_id, int(seqs[0]), END, 10**6)]
    # Every event the pilot journalled during the session is in the file (which may also hold the few the
    # rig published in the session's end grace, after the pilot's session ended).
    assert journalled and set(journalled) <= set(seqs.tolist())
    print({'gpio_events': len(seqs), 'recovered': int(attrs['events_recovered'])})
