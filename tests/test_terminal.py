"""The terminal across processes: simulated rigs (sim GPIO, null sound, virtual subject, pilot) and the
``terminal`` executable, driven through the terminal's services as the CLI and GUI drive it.

The test also listens to each pilot's ``trials`` topic (raw, as the recorder does), so what the pilots
published can be compared with what the terminal stored, value for value and byte for byte. Subject files
are read with :class:`SubjectReader` once the terminal has stopped; pilot journals once the pilots have.
"""

from __future__ import annotations

import hashlib
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from autopilot_msgs.msg import PilotRegistry, PilotStatus, SoundPlay, TrialData
from autopilot_msgs.srv import (
    AssignProtocol,
    CreateSubject,
    PilotCommand,
    SetSubjectParameters,
    SetSubjectStep,
    StartSession,
)
from conftest import call
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message
from std_msgs.msg import Float64
from std_srvs.srv import Trigger
from test_camera import camera
from test_pilot import CALIBRATION, FAST_SUBJECT, GPIO, PILOT, RIG_PARAMS, SOUND, SUBJECT, ros_args, take_trial

from autopilot_core import qos, trial_fields
from autopilot_core.executors import spin
from autopilot_pilot.journal import Journal
from autopilot_terminal.storage import SubjectFile, SubjectReader

ROOT = Path(__file__).resolve().parent.parent
TERMINAL = str(ROOT / 'install' / 'autopilot_terminal' / 'lib' / 'autopilot_terminal' / 'terminal')
RIG = str(ROOT / 'install' / 'autopilot_pilot' / 'lib' / 'autopilot_pilot' / 'rig')
LAUNCH_FILE = ROOT / 'launch' / 'terminal.launch.yaml'
# 2afc_demo with fast timings (about 0.3 s a trial) and a graduation after 5 trials, so a short session
# changes step. The response window stays generous: a loaded machine delays trials, never turns one into a miss.
FAST_PROTOCOL = """\
name: fast
steps:
  - name: 2afc with correction
    task: 2afc
    parameters: {iti_s: 0.05, response_window_s: 3.0, punish_timeout_s: 0.1, tone_ms: 30.0, noise_ms: 30.0,
                 reward_ul: 6.0, correction_trials: true, bias_correction: true}
    graduation: {trials: 5}
  - name: 2afc
    task: 2afc
    parameters: {iti_s: 0.05, response_window_s: 3.0, punish_timeout_s: 0.1, tone_ms: 30.0, noise_ms: 30.0,
                 reward_ul: 5.0, correction_trials: false, bias_correction: false}
"""


# --- processes -------------------------------------------------------------------------------------

def launch_rig(procs, tmp_path: Path, ns: str, *, subject_seed: int = 11, with_subject: bool = True) -> dict[str, Any]:
    """gpio, sound, pilot and virtual subject in /<ns> (as tests/test_pilot.py start_rig, without waiting)."""
    calibration = tmp_path / f'{ns}-calibration.jsonl'
    shutil.copy(CALIBRATION, calibration)
    rig: dict[str, Any] = {'ns': ns, 'journal': tmp_path / f'{ns}-journal.sqlite3'}
    rig['gpio'] = procs([GPIO, '--ros-args', '--params-file', str(RIG_PARAMS), '-p', f'calibration_file:={calibration}',
                         '-r', f'__ns:=/{ns}'], name=f'{ns}-gpio')
    rig['sound'] = procs([SOUND, '--ros-args', '-p', 'backend:=null', '-r', f'__ns:=/{ns}'], name=f'{ns}-sound')
    rig['pilot_cmd'] = [PILOT, '--ros-args', '-r', f'__ns:=/{ns}', '-p', f'journal_path:={rig["journal"]}',
                        *ros_args({'seed': 7, 'resend_interval_s': 0.5})]
    rig['pilot'] = procs(rig['pilot_cmd'], name=f'{ns}-pilot')
    if with_subject:
        rig['subject'] = procs([SUBJECT, '--ros-args', '-r', f'__ns:=/{ns}',
                                *ros_args({'seed': subject_seed, **FAST_SUBJECT})], name=f'{ns}-subject')
    return rig


def terminal_cmd(tmp_path: Path, *extra: str) -> list[str]:
    """The terminal's command line: data and protocols (with the fast protocol) under ``tmp_path``."""
    data, protocols = tmp_path / 'data', tmp_path / 'protocols'
    protocols.mkdir(exist_ok=True)
    if not (protocols / 'fast.yaml').exists():
        (protocols / 'fast.yaml').write_text(FAST_PROTOCOL)
    return [TERMINAL, '--ros-args', '-p', f'data_dir:={data}', '-p', f'protocol_dir:={protocols}',
            '-p', f'launch_file:={LAUNCH_FILE}', *extra]


def launch_terminal(procs, tmp_path: Path, name: str = 'terminal', *extra: str) -> Any:
    return procs(terminal_cmd(tmp_path, *extra), name=name)


def one_rig(procs, node, tmp_path: Path) -> tuple[dict[str, Any], Any, Lab]:
    """rig1 and a terminal, mouse1 created and assigned the fast protocol: (rig, terminal, lab)."""
    rig = launch_rig(procs, tmp_path, 'rig1')
    terminal = launch_terminal(procs, tmp_path)
    lab = Lab(node, ['rig1'])
    lab.wait_online('rig1')
    assert lab.create('mouse1').success and lab.assign('mouse1').success
    return rig, terminal, lab


def journal_of(rig: dict[str, Any]) -> Journal:
    """The pilot's journal, once the pilot has stopped (it holds the file exclusively while it runs)."""
    assert rig['pilot'].stop() == 0, rig['pilot'].output()
    return Journal(rig['journal'])


# --- the test's side: the terminal's services, and a listener on the pilots' topics ------------------

class Lab:
    """Calls the terminal's services and records what the pilots publish (trials raw, statuses)."""

    def __init__(self, node: Node, pilots: list[str]) -> None:
        self.node = node
        self.raw: dict[tuple[str, int], bytes] = {}  # (session, trial number) -> first copy's bytes
        self.trials: dict[tuple[str, int], TrialData] = {}
        self.copies: dict[tuple[str, int], int] = {}
        self.by_pilot: dict[str, set[tuple[str, int]]] = {p: set() for p in pilots}
        self.status: dict[str, PilotStatus] = {}
        self.registry: PilotRegistry | None = None
        self._clients: dict[str, Any] = {}
        self._trial_subs = []
        for p in pilots:
            self._trial_subs.append(node.create_subscription(
                TrialData, f'/{p}/trials', lambda data, p=p: self._on_trial(p, data), qos.TRIALS, raw=True))
            node.create_subscription(PilotStatus, f'/{p}/status', lambda m, p=p: self.status.__setitem__(p, m),
                                     qos.STATUS)
        node.create_subscription(PilotRegistry, '/terminal/pilots', lambda m: setattr(self, 'registry', m),
                                 qos.STATUS)

    def _on_trial(self, pilot: str, data: bytes) -> None:
        msg = take_trial(self, data)
        self.by_pilot[pilot].add((msg.session_id, msg.trial_number))

    def spin_until(self, condition, timeout: float, what) -> None:
        """Spin until ``condition()``; else fail with ``what`` (a callable is called then: output read at the end)."""
        assert spin(self.node, self.node.executor_, timeout_sec=timeout, until=condition), \
            what() if callable(what) else what

    def spin(self, seconds: float) -> None:
        spin(self.node, self.node.executor_, timeout_sec=seconds)

    def srv(self, kind: Any, name: str, request: Any, timeout: float = 20.0) -> Any:
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = self.node.create_client(kind, f'/terminal/{name}')
        return call(self.node, client, request, timeout)

    def create(self, subject: str, biography: str = '') -> Any:
        return self.srv(CreateSubject, 'create_subject', CreateSubject.Request(subject=subject, biography_json=biography))

    def assign(self, subject: str, protocol: str = 'fast', step: int = 0) -> Any:
        return self.srv(AssignProtocol, 'assign_protocol',
                        AssignProtocol.Request(subject=subject, protocol=protocol, step=step))

    def start(self, subject: str, pilot: str, max_trials: int = 0, max_duration_s: float = 0.0) -> Any:
        return self.srv(StartSession, 'start_session', StartSession.Request(
            subject=subject, pilot=pilot, max_trials=max_trials, max_duration_s=max_duration_s), timeout=40.0)

    def command(self, what: str, pilot: str, timeout: float = 20.0) -> Any:
        return self.srv(PilotCommand, f'{what}_session', PilotCommand.Request(pilot=pilot), timeout)

    def online(self, *pilots: str) -> bool:
        if self.registry is None:
            return False
        on = {e.pilot for e in self.registry.pilots if e.online}
        return set(pilots) <= on

    def wait_online(self, *pilots: str, timeout: float = 40.0) -> None:
        """Until the terminal lists ``pilots`` online, and this listener receives their trials (volatile: a
        trial published before the match would never reach it, the terminal having acked it)."""
        self.spin_until(lambda: self.online(*pilots), timeout,
                        f'pilots {pilots} not online in /terminal/pilots: {self.registry}')
        self.spin_until(lambda: all(s.get_publisher_count() >= 1 for s in self._trial_subs), timeout,
                        'trials topics not matched')
        self.spin(0.3)  # the publisher's side of the match (discovery is asymmetric)

    def state(self, pilot: str) -> int | None:
        s = self.status.get(pilot)
        return None if s is None else s.state

    def session_trials(self, pilot: str) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for sid, n in self.by_pilot[pilot]:
            out.setdefault(sid, []).append(n)
        return {sid: sorted(ns) for sid, ns in out.items()}


def stored_trials_match(reader: SubjectReader, session_id: str, lab: Lab) -> list[dict[str, Any]]:
    """Assert the file holds every trial the pilot published in ``session_id`` once, with the same values."""
    rows = reader.trial_rows(session_id)
    numbers = [r['trial_number'] for r in rows]
    published = sorted(n for sid, n in lab.trials if sid == session_id)
    assert sorted(numbers) == published, (numbers, published)
    assert len(numbers) == len(set(numbers)), f'a trial stored twice: {numbers}'
    for row in rows:
        msg = lab.trials[(session_id, row['trial_number'])]
        assert row['stamp_ns'] == msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        assert row['start_ns'] == msg.start.sec * 10**9 + msg.start.nanosec
        assert 0 < row['start_ns'] <= row['stamp_ns'], row  # the pilot's start of the trial, before its end
        assert (row['step'], row['step_name']) == (msg.step, msg.step_name)
        fields = trial_fields.to_dict(msg.fields)
        assert {k: row[k] for k in fields} == fields, row['trial_number']
    return rows


# --- tests -----------------------------------------------------------------------------------------

def test_two_rigs_record_through_the_terminal(procs, node, tmp_path):
    rigs = {ns: launch_rig(procs, tmp_path, ns, subject_seed=seed) for ns, seed in (('rig_a', 11), ('rig_b', 23))}
    terminal = launch_terminal(procs, tmp_path)
    lab = Lab(node, list(rigs))
    subjects = {'rig_a': 'mouse_a', 'rig_b': 'mouse_b'}
    lab.wait_online(*rigs)
    for subject in subjects.values():
        r = lab.create(subject, '{"species": "Mus musculus", "sex": "F"}')
        assert r.success and r.path == str(tmp_path / 'data' / f'{subject}.h5'), r.message
        r = lab.assign(subject, 'fast')
        assert r.success and (r.n_steps, r.step_name) == (2, '2afc with correction'), r.message
    for ns, subject in subjects.items():
        r = lab.start(subject, ns, max_trials=15)
        assert r.success and f'{subject} on {ns}: fast step 0' in r.message, r.message
    lab.spin_until(lambda: all(len(lab.by_pilot[ns]) >= 15 for ns in rigs), 90,
                   f'trials: { {ns: len(k) for ns, k in lab.by_pilot.items()} }')
    lab.spin_until(lambda: all(lab.state(ns) == PilotStatus.STATE_IDLE for ns in rigs), 20, 'pilots not idle')
    lab.spin(2.0)  # the last acks, and the session ends after the terminal's grace period (1 s)
    assert terminal.stop() == 0, terminal.output()
    out = terminal.output()
    assert 'stopped: 30 trials' in out and ', 0 lost, 0 errors' in out, out
    for ns, subject in subjects.items():
        [sid] = lab.session_trials(ns)
        assert lab.session_trials(ns)[sid] == list(range(1, 16))
        with SubjectReader(tmp_path / 'data' / f'{subject}.h5') as r:
            assert r.sessions() == [sid]
            session = r.session(sid)
            assert (session['pilot'], session['subject'], session['protocol'], session['state']) == \
                (ns, subject, 'fast', 'ended')
            rows = stored_trials_match(r, sid, lab)
            assert [row['step'] for row in rows] == [0] * 5 + [1] * 10
            # The graduation is in the session's steps and in the subject's history.
            steps = r.steps(sid)
            assert (steps['seq'].tolist(), steps['after_trial'].tolist(), steps['to_step'].tolist()) == ([1], [5], [1])
            history = r.history()
            assert [h['kind'] for h in history] == ['created', 'assign', 'step']
            assert history[1]['protocol'] == 'fast' and history[1]['detail']['by'] == 'terminal'
            assert (history[2]['step'], history[2]['step_name'], history[2]['detail']['session_id']) == \
                (1, '2afc', sid)
            assert r.biography == {'species': 'Mus musculus', 'sex': 'F'}
            # The bag: every recorded topic has messages; the trials topic holds the bytes the pilot sent.
            topics = {t.topic: t for t in r.topics(sid)}
            for rel in ('status', 'trials', 'step_changes', 'trial_acks', 'gpio/events', 'gpio/output',
                        'gpio/reward', 'sound/play', 'sound/onsets'):
                assert topics[f'/{ns}/{rel}'].count > 0, (rel, topics.get(f'/{ns}/{rel}'))
            assert topics[f'/{ns}/trials'].type == 'autopilot_msgs/msg/TrialData'
            assert topics[f'/{ns}/trials'].type_hash.startswith('RIHS01_')
            bagged = [deserialize_message(m.data, TrialData) for m in r.messages(sid, [f'/{ns}/trials'])]
            assert {(m.session_id, m.trial_number) for m in bagged} == {(sid, n) for n in range(1, 16)}
            for m, raw in zip(bagged, r.messages(sid, [f'/{ns}/trials']), strict=True):
                assert raw.data == lab.raw[(sid, m.trial_number)], f'bag bytes of trial {m.trial_number} differ'
            # Events decoded from the bag.
            assert len(r.events(sid, 'gpio')['stamp_ns']) > 0
            sound = r.events(sid, 'sound')
            assert len(sound['stamp_ns']) >= 15 and sound['ok'].all()
            plays = {deserialize_message(m.data, SoundPlay).play_id for m in r.messages(sid, [f'/{ns}/sound/play'])}
            assert set(sound['play_id'].tolist()) == plays, 'a sound played without its onset in the file'
            # Provenance: software, hosts, launch file, the rig's node parameters and the protocol text.
            prov = r.provenance(sid)
            for key in ('packages', 'git', 'ros', 'hosts', 'launch', 'pilot', 'protocol', 'subject_state',
                        'parameters', 'hardware', 'calibrations'):
                assert key in prov, key
            assert 'autopilot_terminal' in prov['packages'] and prov['git'].get('commit')
            assert prov['launch']['text'] == LAUNCH_FILE.read_text()
            assert prov['protocol']['text'] == FAST_PROTOCOL and prov['protocol']['name'] == 'fast'
            gpio = prov['parameters'][f'/{ns}/gpio']
            assert gpio['backend'] == 'sim' and gpio['devices.poke_center.pin'] == 27, gpio
            assert f'/{ns}/pilot' in prov['parameters'] and f'/{ns}/gpio' in prov['hardware']
            assert prov['calibrations'][f'/{ns}/gpio'] == (tmp_path / f'{ns}-calibration.jsonl').read_text()
            assert prov['hosts']['pilot'] and prov['pilot']['name'] == ns
    # The pilots' journals: every trial acknowledged.
    for ns in rigs:
        journal = journal_of(rigs[ns])
        [sid] = lab.session_trials(ns)
        assert journal.unacked() == [] and journal.unacked_steps() == []
        assert journal.stats(sid).trials == 15
        journal.close()


def test_a_rig_composed_in_one_process_runs_and_records_through_the_terminal(procs, node, tmp_path):
    """The ``rig`` executable: gpio, sound, pilot and the virtual subject in one process (events and commands
    between them skip DDS), watched and recorded by the terminal in another process as a split rig is."""
    calibration = tmp_path / 'calibration.jsonl'
    shutil.copy(CALIBRATION, calibration)
    own = tmp_path / 'rig_c.yaml'
    subject = {'seed': 5, **FAST_SUBJECT}
    own.write_text(yaml.safe_dump({
        '/**/gpio': {'ros__parameters': {'calibration_file': str(calibration)}},
        '/**/sound': {'ros__parameters': {'backend': 'null'}},
        '/**/pilot': {'ros__parameters': {'journal_path': str(tmp_path / 'journal.sqlite3'), 'seed': 7,
                                          'resend_interval_s': 0.5}},
        '/**/subject_sim': {'ros__parameters': subject}}))
    rig = procs([RIG, '--virtual-subject', '--ros-args', '-r', '__ns:=/rig_c', '--params-file', str(RIG_PARAMS),
                 '--params-file', str(own)], name='rig')
    # A continuous topic on the rig (a running wheel), recorded as a stream table too.
    terminal = launch_terminal(procs, tmp_path, 'terminal', '-p', 'stream_topics:=["wheel"]')
    wheel_pub = node.create_publisher(Float64, '/rig_c/wheel', qos.EVENTS)
    turns = [0.0]

    def turn() -> None:
        turns[0] += 0.25
        wheel_pub.publish(Float64(data=turns[0]))
    node.create_timer(0.02, turn)
    lab = Lab(node, ['rig_c'])
    lab.wait_online('rig_c')
    assert lab.create('mouse_c').success and lab.assign('mouse_c', 'fast').success
    assert lab.start('mouse_c', 'rig_c', max_trials=8).success
    lab.spin_until(lambda: len(lab.by_pilot['rig_c']) >= 8 and lab.state('rig_c') == PilotStatus.STATE_IDLE, 60,
                   lambda: f'trials: {len(lab.by_pilot["rig_c"])}\n{rig.output()}')
    lab.spin(2.0)
    assert terminal.stop() == 0, terminal.output()
    out = rig.output()
    for topic in ('gpio/events', 'gpio/output', 'sound/play', 'sound/onsets', 'gpio/sim_input'):
        assert f'intra-process: /rig_c/{topic}' in out, (topic, out)
    assert rig.stop() == 0, rig.output()
    [sid] = lab.session_trials('rig_c')
    with SubjectReader(tmp_path / 'data' / 'mouse_c.h5') as r:
        assert len(stored_trials_match(r, sid, lab)) == 8
        # Over DDS to the terminal as well: the events the rig's nodes exchanged in-process are in the bag.
        counts = {t.topic: t.count for t in r.topics(sid)}
        assert counts['/rig_c/gpio/events'] > 0 and counts['/rig_c/gpio/output'] > 0, counts
        assert len(r.events(sid, 'sound')['stamp_ns']) >= 8
        wheel = r.stream(sid, 'rig_c_wheel')['data']
        assert len(wheel) > 10 and (np.diff(wheel) == 0.25).all(), wheel  # every sample of the session, in order
        assert counts['/rig_c/wheel'] == len(wheel)


def test_sigkill_of_the_terminal_mid_session_loses_and_duplicates_no_trial(procs, node, tmp_path):
    rig, terminal, lab = one_rig(procs, node, tmp_path)
    n = 45
    r = lab.start('mouse1', 'rig1', max_trials=n)
    assert r.success, r.message
    lab.spin_until(lambda: len(lab.by_pilot['rig1']) >= 6, 60, 'no trials')
    terminal.signal(signal.SIGKILL)
    terminal.wait()
    lab.registry = None  # the next one is the restarted terminal's
    [sid] = lab.session_trials('rig1')
    # The session goes on without the terminal: its trials are only in the pilot's journal for now.
    away = len(lab.by_pilot['rig1'])
    lab.spin_until(lambda: len(lab.by_pilot['rig1']) >= away + 3, 30, 'the session stopped with the terminal')
    # Paused at the rig while no terminal runs, so that it is still under way however long the new terminal takes
    # to discover the pilot (seconds on a loaded machine); resumed through the new terminal below.
    pause = lab.node.create_client(Trigger, '/rig1/pause')
    assert call(lab.node, pause, Trigger.Request()).success
    terminal = launch_terminal(procs, tmp_path, name='terminal-restarted')
    # The output is read if the wait fails (a plain f-string would show it as it was at launch: empty).
    lab.spin_until(lambda: f'session {sid} of mouse1 on rig1: recording' in terminal.output(), 60,
                   lambda: f'the restarted terminal did not pick the session up:\n{terminal.output()}')
    lab.spin_until(lambda: lab.state('rig1') == PilotStatus.STATE_PAUSED, 10, 'not paused')
    assert len(lab.by_pilot['rig1']) < n, 'session ended too early'
    # The killed terminal's services stay in this node's graph until its lease ends (20 s): a request sent
    # before the new terminal's are matched goes to the dead one alone and is never answered. Wait until this
    # node hears the new terminal, and ask again if a resume still goes unanswered; the session's state says
    # whether one got through (a resume whose answer was lost leaves it running: a second is refused).
    lab.wait_online('rig1')
    for attempt in range(4):
        try:
            resumed = lab.command('resume', 'rig1', timeout=5.0)
        except AssertionError:
            assert attempt < 3, 'no answer from the restarted terminal\'s resume_session in 4 asks'
            continue
        assert resumed.success or lab.state('rig1') != PilotStatus.STATE_PAUSED, resumed.message
        break
    lab.spin_until(lambda: len(lab.by_pilot['rig1']) >= n and lab.state('rig1') == PilotStatus.STATE_IDLE, 90,
                   f'session did not finish: {len(lab.by_pilot["rig1"])} trials')
    lab.spin(2.5)  # resends of what the killed terminal had not acked, and their acks
    assert terminal.stop() == 0, terminal.output()
    out = terminal.output()
    assert 'was left open by a writer that stopped; repaired' in out, out
    assert ', 0 errors' in out, out
    assert lab.session_trials('rig1')[sid] == list(range(1, n + 1))
    with SubjectReader(tmp_path / 'data' / 'mouse1.h5') as r:
        assert r.sessions() == [sid] and r.session(sid)['state'] == 'ended'
        rows = stored_trials_match(r, sid, lab)
        # In the order they were stored: the resent ones after those that arrived while the terminal was back.
        assert sorted(row['trial_number'] for row in rows) == list(range(1, n + 1))
        assert r.structure()[-1]['change'].startswith('end_session')
        assert any(s['change'] == 'recover' for s in r.structure())
        assert r.steps(sid)['seq'].tolist() == [1]
    journal = journal_of(rig)
    assert journal.unacked() == [] and journal.unacked_steps() == [] and journal.stats(sid).trials == n
    journal.close()


def test_a_session_that_ended_while_the_terminal_was_down_is_closed_on_restart(procs, node, tmp_path):
    rig, terminal, lab = one_rig(procs, node, tmp_path)
    n = 8
    assert lab.start('mouse1', 'rig1', max_trials=n).success
    lab.spin_until(lambda: len(lab.by_pilot['rig1']) >= 2, 60, 'no trials')
    terminal.signal(signal.SIGKILL)
    terminal.wait()
    lab.spin_until(lambda: len(lab.by_pilot['rig1']) >= n and lab.state('rig1') == PilotStatus.STATE_IDLE, 60,
                   'the session did not finish without the terminal')
    [sid] = lab.session_trials('rig1')
    terminal = launch_terminal(procs, tmp_path, name='terminal-restarted')
    lab.spin_until(lambda: 'ended while the terminal was down' in terminal.output(), 60,
                   lambda: f'the restarted terminal left the session open:\n{terminal.output()}')
    lab.spin(2.5)  # the pilot resends what the killed terminal had not acknowledged
    assert terminal.stop() == 0, terminal.output()
    with SubjectReader(tmp_path / 'data' / 'mouse1.h5') as r:
        session = r.session(sid)
        assert session['state'] == 'ended' and 'ended while no terminal was recording' in session['end_note'], session
        assert session['started_ns'] < session['ended_ns'] <= time.time_ns()
        assert sorted(row['trial_number'] for row in stored_trials_match(r, sid, lab)) == list(range(1, n + 1))
    journal = journal_of(rig)
    assert journal.unacked() == [] and journal.stats(sid).trials == n
    journal.close()


BROKEN_TASK = """\
name: broken
steps:
  - name: one
    task: 2afc
  - name: two
    task: nope
"""


def test_bad_input_gets_a_clear_answer_and_the_terminal_stays_up(procs, node, tmp_path):
    from autopilot_msgs.action import RunSession
    from rclpy.action import ActionClient
    from test_pilot import FAST_TASK, goal

    rig = launch_rig(procs, tmp_path, 'rig1')
    terminal = launch_terminal(procs, tmp_path)
    protocols, data = tmp_path / 'protocols', tmp_path / 'data'
    (protocols / 'broken.yaml').write_text(BROKEN_TASK)
    (protocols / 'badyaml.yaml').write_text('name: badyaml\nsteps:\n  - name: one\n    task: [2afc\n')
    lab = Lab(node, ['rig1'])
    lab.wait_online('rig1')
    # Subjects and protocols the terminal does not know.
    r = lab.start('nobody', 'rig1')
    assert not r.success and f"unknown subject 'nobody': no file {data / 'nobody.h5'}; create it first" in r.message
    assert not lab.create('../etc').success
    assert 'not a valid identifier' in lab.create('../etc').message
    assert 'biography_json is not valid JSON' in lab.create('m1', '{oops').message
    assert lab.create('m1').success
    r = lab.create('m1')
    assert not r.success and f"subject 'm1' exists already ({data / 'm1.h5'})" in r.message
    r = lab.start('m1', 'rig1')
    assert not r.success and 'm1 has no protocol: `autopilot subject assign m1 PROTOCOL`' in r.message
    r = lab.assign('m1', 'nope')
    assert not r.success and "unknown protocol 'nope'" in r.message and 'available: badyaml, broken, fast' in r.message
    r = lab.assign('m1', 'badyaml')
    assert not r.success and f'{protocols / "badyaml.yaml"}:4: not valid YAML' in r.message, r.message
    r = lab.assign('m1', 'fast', step=2)
    assert not r.success and 'step 2 does not exist: the protocol has steps 0..1' in r.message
    r = lab.srv(SetSubjectStep, 'set_subject_step', SetSubjectStep.Request(subject='m1', step=1))
    assert not r.success and 'has no protocol' in r.message
    # The terminal checks the tasks as the pilot does (its code): refused, naming the line and field.
    r = lab.assign('m1', 'broken', step=0)
    assert not r.success and f'{protocols / "broken.yaml"}:6: steps[1].task:' in r.message, r.message
    assert "'nope'" in r.message, r.message
    # A protocol file broken after its assignment: the pilot refuses it at start_session, naming line and field.
    (protocols / 'edited.yaml').write_text(FAST_PROTOCOL)
    assert lab.assign('m1', 'edited').success
    (protocols / 'edited.yaml').write_text(BROKEN_TASK)
    r = lab.start('m1', 'rig1')
    assert not r.success and f'protocol {protocols / "edited.yaml"} rejected by pilot rig1' in r.message, r.message
    assert ':6: steps[1].task:' in r.message and "'nope'" in r.message, r.message
    r = lab.start('m1', 'rig9')
    assert not r.success and "unknown pilot 'rig9' (known: rig1)" in r.message
    # A busy pilot.
    assert lab.assign('m1', 'fast').success
    assert lab.create('m2').success and lab.assign('m2', 'fast').success
    assert lab.start('m1', 'rig1').success
    lab.spin_until(lambda: lab.state('rig1') == PilotStatus.STATE_RUNNING, 10, 'not running')
    lab.spin(1.2)  # the terminal's view of the heartbeat
    r = lab.start('m2', 'rig1')
    assert not r.success and 'pilot rig1 is busy (running m1); stop that session first' in r.message, r.message
    assert lab.command('stop', 'rig1').success
    lab.spin_until(lambda: lab.state('rig1') == PilotStatus.STATE_IDLE, 15, 'not stopped')
    # A corrupt subject file: named in the answer, left alone.
    junk = data / 'junk.h5'
    junk.write_bytes(b'not HDF5 at all ' * 64)
    r = lab.create('junk')
    assert not r.success and str(junk) in r.message, r.message
    for r in (lab.assign('junk', 'fast'), lab.start('junk', 'rig1')):
        assert not r.success and f'{junk}: not an HDF5 file' in r.message, r.message
    assert junk.read_bytes() == b'not HDF5 at all ' * 64
    # A subject file another writer holds: refused with the reason, the file left alone.
    held = SubjectFile.create(data / 'm3.h5', 'm3')
    try:
        r = lab.assign('m3', 'fast')
        assert not r.success and f'{data / "m3.h5"}: already open for writing by another SubjectFile' in r.message
        r = lab.start('m3', 'rig1')
        assert not r.success and 'already open for writing by another SubjectFile' in r.message, r.message
    finally:
        held.close()
    # A session started on the pilot directly, not through the terminal: the terminal did not start it and no
    # subject file holds it, so it is not recorded (said once); its trials stay in the pilot's journal.
    client = ActionClient(node, RunSession, '/rig1/session')
    assert client.wait_for_server(timeout_sec=10)
    future = client.send_goal_async(goal('m3', task='2afc', max_trials=3, **FAST_TASK))
    lab.spin_until(future.done, 10, 'no goal response')
    assert future.result().accepted
    lab.spin_until(lambda: sum(1 for k in lab.trials if lab.trials[k].subject == 'm3') >= 3, 30, 'no trials')
    lab.spin_until(lambda: lab.state('rig1') == PilotStatus.STATE_IDLE, 30, 'session did not end')
    # Still up and answering.
    assert lab.create('m4').success
    assert terminal.popen.poll() is None
    assert terminal.stop() == 0
    out = terminal.output()
    [sid] = {sid for (sid, _n), msg in lab.trials.items() if msg.subject == 'm3'}
    assert f"runs session {sid} of 'm3' (2afc), which this terminal did not start" in out, out
    with SubjectReader(data / 'm3.h5') as r:
        assert r.sessions() == []
    journal = journal_of(rig)
    assert sorted(t.trial_number for t in journal.unacked()) == [1, 2, 3]
    journal.close()


def test_stop_pause_resume_and_subject_changes_through_the_terminal(procs, node, tmp_path):
    launch_rig(procs, tmp_path, 'rig1')
    # A camera on the rig: the terminal records each session's frames as an MP4 with a frame table.
    procs(camera('backend:=synthetic', 'fps:=30.0', 'width:=320', 'height:=240') + ['-r', '__ns:=/rig1'],
          name='camera')
    terminal = launch_terminal(procs, tmp_path)
    lab = Lab(node, ['rig1'])
    lab.wait_online('rig1')
    assert lab.create('m1').success and lab.assign('m1', 'fast', step=1).success
    r = lab.command('pause', 'rig1')
    assert not r.success and r.message == 'rig1: no session is running', r.message
    r = lab.command('stop', 'rig1')
    assert not r.success and 'rig1: no session to stop' in r.message, r.message
    assert lab.start('m1', 'rig1').success
    count = lambda: len(lab.by_pilot['rig1'])  # noqa: E731
    lab.spin_until(lambda: count() >= 2, 30, 'no trials')
    r = lab.command('pause', 'rig1')
    assert r.success and 'rig1: pausing after trial' in r.message, r.message
    lab.spin_until(lambda: lab.state('rig1') == PilotStatus.STATE_PAUSED, 10, 'not paused')
    lab.spin(0.8)  # the trial running at the pause finishes
    held = count()
    lab.spin(1.5)
    assert count() == held, 'trials went on while paused'
    assert lab.command('resume', 'rig1').success
    lab.spin_until(lambda: count() >= held + 2, 30, 'no trials after resume')
    r = lab.command('stop', 'rig1')
    assert r.success and r.message == 'rig1: stopping after the current trial', r.message
    lab.spin_until(lambda: lab.state('rig1') == PilotStatus.STATE_IDLE, 15, 'not stopped')
    # The next session runs at the step and with the parameters set through the terminal.
    r = lab.srv(SetSubjectStep, 'set_subject_step', SetSubjectStep.Request(subject='m1', step=0, reason='back'))
    assert r.success and r.step_name == '2afc with correction', r.message
    r = lab.srv(SetSubjectParameters, 'set_subject_parameters', SetSubjectParameters.Request(
        subject='m1', parameters=[Parameter('reward_ul', value=3.0).to_parameter_msg()]))
    assert r.success and "set ['reward_ul']" in r.message, r.message
    first = set(lab.session_trials('rig1'))
    assert lab.start('m1', 'rig1', max_trials=3).success
    lab.spin_until(lambda: len(lab.session_trials('rig1')) == 2 and lab.state('rig1') == PilotStatus.STATE_IDLE and
                   count() >= held + 5, 30, 'second session did not run')
    lab.spin(1.5)
    assert terminal.stop() == 0
    [second] = set(lab.session_trials('rig1')) - first
    [sid] = first
    with SubjectReader(tmp_path / 'data' / 'm1.h5') as r:
        assert r.session(sid)['step'] == 1 and r.session(sid)['state'] == 'ended'
        assert r.session(second)['step'] == 0
        stored_trials_match(r, sid, lab)
        rows = stored_trials_match(r, second, lab)
        assert {row['reward_given_ul'] for row in rows if row['correct']} == {3.0}
        history = r.history()
        assert [h['kind'] for h in history] == ['created', 'assign', 'step', 'parameters']
        assert history[2]['detail'] == {'from_step': 1, 'from_step_name': '2afc', 'reason': 'back', 'by': 'terminal'}
        assert history[3]['detail'] == {'set': {'reward_ul': 3.0}, 'removed': [], 'by': 'terminal'}
        assert r.provenance(second)['subject_state']['parameters'] == {'reward_ul': 3.0}
        for session_id in (sid, second):
            check_video(r, session_id, '/rig1/camera/image', (320, 240))


def check_video(r: SubjectReader, session_id: str, topic: str, size: tuple[int, int]) -> None:
    """One finished MP4 for the session's camera topic, holding every frame its table lists, in time order."""
    [video] = r.videos(session_id)
    assert (video.topic, video.state, (video.width, video.height)) == (topic, 'finished', size), video
    frames = r.video_frames(session_id, video.name)
    n = len(frames['frame'])
    assert n > 10 and video.frames == n and frames['frame'].tolist() == list(range(n)), (n, video)
    assert (np.diff(frames['stamp_ns']) > 0).all() and (np.diff(frames['recv_ns']) >= 0).all()
    session = r.session(session_id)
    assert session['started_ns'] - 2e9 < frames['stamp_ns'][0] and frames['stamp_ns'][-1] <= session['ended_ns'] + 2e9
    assert video.path.is_file() and video.path.stat().st_size == video.bytes
    assert hashlib.sha256(video.path.read_bytes()).hexdigest() == video.sha256
    cap = cv2.VideoCapture(str(video.path))
    try:
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n
        assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == size
    finally:
        cap.release()
