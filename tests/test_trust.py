"""What a stray or hostile publisher or caller on the domain can do to the terminal's records: nothing.

Plain functions first (names and biography JSON, with hypothesis), then the ``terminal`` executable with a
stand-in pilot in this process (:class:`FakePilot`: heartbeats, load_protocol and the session action, as a
pilot serves them), which also publishes what a second rig, a copied launch file or a student's script
would: messages naming no pilot or another one, trials of unknown subjects and sessions, steps beyond the
protocol, a different copy of a stored trial, heartbeats that would end a running session, and oversized
requests. Each test waits on what the terminal reports (its acks, its ``/diagnostics`` refusal counts, its
log), never on fixed sleeps; subject files are read once the terminal has stopped.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from autopilot_msgs.action import RunSession
from autopilot_msgs.msg import PilotStatus, StepChange, TrialAck, TrialData, TrialField
from autopilot_msgs.srv import CreateSubject, LoadProtocol, SetSubjectParameters, StartSession
from diagnostic_msgs.msg import DiagnosticArray
from hypothesis import given, settings
from hypothesis import strategies as st
from rclpy.action import ActionServer, GoalResponse
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message
from test_terminal import FAST_PROTOCOL, Lab, launch_terminal

from autopilot_core import guard, qos
from autopilot_core.checks import InputError
from autopilot_core.executors import spin
from autopilot_tasks.protocol import ProtocolError, protocol_path
from autopilot_terminal.recorder import SUBJECT_RE, subject_error
from autopilot_terminal.storage import SubjectReader
from autopilot_terminal.subjects import (
    MAX_BIOGRAPHY,
    MAX_JSON_DEPTH,
    json_depth,
    parse_biography,
)

STEPS = ('2afc with correction', '2afc')  # FAST_PROTOCOL's
MAX_MESSAGE = 600  # a refusal's text stays short whatever the input quoted


# --- names and JSON: plain functions ------------------------------------------------------------------

@given(st.text(max_size=200) | st.from_regex(SUBJECT_RE, fullmatch=True))
def test_a_subject_name_is_accepted_only_as_a_safe_file_name(name: str) -> None:
    why = subject_error(name)
    if why is None:
        assert SUBJECT_RE.match(name) and 1 <= len(name) <= 64
        path = Path('/data') / f'{name}.h5'
        assert path.parent == Path('/data') and path.name == f'{name}.h5' and not name.startswith('.')
    else:
        assert 'not a valid identifier' in why and len(why) < MAX_MESSAGE


def test_a_huge_name_is_refused_in_a_short_message(tmp_path: Path) -> None:
    huge = 'x' * 1_000_000
    assert len(subject_error(huge)) < MAX_MESSAGE and '1000000 characters' in subject_error(huge)
    t0 = time.monotonic()
    with pytest.raises(ProtocolError) as err:
        protocol_path(huge, tmp_path, allow_path=True)  # the OS would raise OSError (file name too long)
    assert 'protocol is 1000000 characters long; at most 4096' in str(err.value) and len(str(err.value)) < MAX_MESSAGE
    with pytest.raises(ProtocolError, match='use 1-64 letters'):
        protocol_path('y' * 300, tmp_path, allow_path=True)
    with pytest.raises(ProtocolError, match='cannot|File name too long'):
        protocol_path('/tmp/' + 'z' * 3000 + '.yaml', tmp_path, allow_path=True)
    assert time.monotonic() - t0 < 1.0


@settings(max_examples=200)
@given(st.text(max_size=80))
def test_any_protocol_name_is_found_or_refused_with_a_protocol_error(tmp_path_factory, name: str) -> None:
    base = tmp_path_factory.getbasetemp() / 'protocols'
    base.mkdir(exist_ok=True)
    (base / 'fast.yaml').write_text(FAST_PROTOCOL)
    try:
        path = protocol_path(name, base, allow_path=True)
    except ProtocolError as exc:
        assert len(str(exc)) < MAX_MESSAGE + 200  # may list the protocols there
    else:
        assert path.suffix in ('.yaml', '.yml') and path.is_file()


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**53, 2**53) |
                    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=30)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@given(st.dictionaries(st.text(max_size=8), JSON, max_size=5))
def test_a_biography_round_trips_and_its_depth_is_measured_without_recursion(bio: dict[str, Any]) -> None:
    text = json.dumps(bio)
    assert json_depth(text) == _depth(bio)
    assert parse_biography(text) == bio


@given(st.text(max_size=300) | st.builds(lambda n, o, c: o * n + c * n, st.integers(0, 200_000),
                                         st.sampled_from('[{'), st.sampled_from(']}')))
def test_any_biography_text_is_a_dict_or_a_clear_refusal(text: str) -> None:
    try:
        bio = parse_biography(text)
    except InputError as exc:
        assert 'biography_json' in str(exc) and len(str(exc)) < MAX_MESSAGE
        assert len(text) > MAX_BIOGRAPHY or json_depth(text) > MAX_JSON_DEPTH or text.strip()
    else:
        assert isinstance(bio, dict) and json_depth(text) <= MAX_JSON_DEPTH


def test_deep_or_huge_biographies_are_refused_at_once() -> None:
    t0 = time.monotonic()
    for text, why in (('[' * 100_000 + ']' * 100_000, 'is 200000 characters long'),
                      ('{"a":' * 2000 + '1' + '}' * 2000, 'nested 2000 levels deep'),
                      ('{"w": 1e999}', 'too large'), ('{"w": NaN}', 'NaN is not a JSON number'),
                      ('{"w": ' + '9' * 5000 + '}', 'an integer of 5000 digits'),
                      ('["a"]', 'must be a JSON object')):
        with pytest.raises(InputError, match=why):
            parse_biography(text)
    assert time.monotonic() - t0 < 1.0


# --- the recorder: conflicts and no files for what arrives on a topic -----------------------------------

def test_the_recorder_keeps_a_contradicting_copy_apart_and_creates_no_file_when_told(tmp_path: Path) -> None:
    from autopilot_terminal.recorder import Received, Recorder
    from autopilot_terminal.storage import TYPE_BOOL, TYPE_STRING

    fields = [('correct', TYPE_BOOL, 'bool'), ('side', TYPE_STRING, '')]
    meta = {'pilot': 'rig1', 'task': '2afc', 'protocol': 'fast', 'step': 0, 'step_name': STEPS[0], 'steps': STEPS}

    def row(n: int, **over: Any) -> dict[str, Any]:
        return {'trial_number': n, 'start_ns': 1, 'stamp_ns': 10 + n, 'recv_ns': 100 + n, 'step': 0,
                'step_name': STEPS[0], 'correct': True, 'side': 'L', **over}
    told: list[tuple[int, str, bool]] = []
    acks: list[list[int]] = []
    rec = Recorder(tmp_path)
    try:
        rec.call(lambda r: r.create_file('mouse1')).result(10)
        how = Received(create=False, raw=lambda: b'cdr', type_name='autopilot_msgs/msg/TrialData',
                       conflict=lambda n, why, kept: told.append((n, why, kept)))
        rec.trials('mouse1', 'S1', meta, fields, [row(1)], acks.append, how)
        rec.trials('mouse1', 'S1', meta, fields, [row(1, recv_ns=999)], acks.append, how)  # a resend
        rec.trials('mouse1', 'S1', meta, fields, [row(1, side='R')], acks.append, how)  # a different copy
        rec.trials('mouse1', 'S1', meta, [('other', TYPE_BOOL, '')], [{**row(2), 'other': True}], acks.append, how)
        rec.trials('ghost', 'S2', meta, fields, [row(1)], acks.append, how)  # no file: an error, no file made
        assert rec.flush(10)
        stats = rec.stats()
        assert (stats.trials, stats.duplicate_trials, stats.conflicts, stats.errors) == (1, 1, 2, 1)
    finally:
        rec.close()
    assert acks == [[1], [1], [1], [2]]  # what is kept is acknowledged; nothing for ghost
    assert [(n, kept) for n, _, kept in told] == [(1, True), (2, True)] and 'other values of side' in told[0][1]
    assert "its fields ['other'] are not the session's ['correct', 'side']" in told[1][1]
    assert not (tmp_path / 'ghost.h5').exists()
    with SubjectReader(tmp_path / 'mouse1.h5') as r:
        assert [(t['trial_number'], t['side']) for t in r.trial_rows('S1')] == [(1, 'L')]
        assert r.session('S1')['conflicts'] == 2
        assert [(c.number, c.data, c.type) for c in r.conflicts('S1')] == [
            (1, b'cdr', 'autopilot_msgs/msg/TrialData'), (2, b'cdr', 'autopilot_msgs/msg/TrialData')]


# --- a pilot as the terminal sees one ------------------------------------------------------------------

class FakePilot:
    """Heartbeats (every 0.5 s and on change), ``load_protocol`` and the ``session`` action of pilot ``ns``,
    in the test's process and executor; trials and step changes are published by the test, resent until the
    terminal acknowledges them as a pilot's journal does. ``reject``: reasons for rejecting session goals, one
    per goal, said in the heartbeat as the pilot does."""

    def __init__(self, test_node: Node, ns: str, *, reject: list[str] | None = None, beat: bool = True) -> None:
        self.test_node = test_node
        self.node = Node('pilot', namespace=f'/{ns}', context=test_node.context)
        self.ns = ns
        self.status = PilotStatus(pilot=ns, state=PilotStatus.STATE_IDLE, host='test')
        self.status_pub = self.node.create_publisher(PilotStatus, 'status', qos.STATUS)
        self.trial_pub = self.node.create_publisher(TrialData, 'trials', qos.TRIALS)
        self.step_pub = self.node.create_publisher(StepChange, 'step_changes', qos.TRIALS)
        self.acked: set[tuple[str, str, int]] = set()  # (kind, session, number)
        self.node.create_subscription(TrialAck, 'trial_acks', self._on_ack, qos.TRIALS)
        self.node.create_service(LoadProtocol, 'load_protocol', self._load)
        self.reject = list(reject or [])
        self.action = ActionServer(self.node, RunSession, 'session', execute_callback=self._execute,
                                   goal_callback=self._goal)
        self.session = ''
        self.subject = ''
        if beat:
            self.node.create_timer(0.5, self.beat)
        test_node.executor_.add_node(self.node)

    def close(self) -> None:
        self.test_node.executor_.remove_node(self.node)
        self.action.destroy()
        self.node.destroy_node()

    def beat(self, msg: PilotStatus | None = None) -> None:
        msg = msg or self.status
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.status_pub.publish(msg)

    def _on_ack(self, ack: TrialAck) -> None:
        self.acked |= {('trial', ack.session_id, n) for n in ack.trial_numbers}
        self.acked |= {('step', ack.session_id, n) for n in ack.step_seqs}

    def _load(self, req: LoadProtocol.Request, res: LoadProtocol.Response) -> LoadProtocol.Response:
        res.success, res.n_steps, res.message = True, len(STEPS), f'protocol {req.name!r} loaded'
        return res

    def _goal(self, _goal: RunSession.Goal) -> GoalResponse:
        if self.reject:
            self.status.message = f'session rejected: {self.reject.pop(0)}'
            self.beat()
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _execute(self, handle: Any) -> RunSession.Result:
        g = handle.request
        self.session, self.subject = str(uuid.uuid4()), g.subject
        self.status.state, self.status.subject, self.status.session_id = PilotStatus.STATE_RUNNING, g.subject, \
            self.session
        self.status.protocol, self.status.task, self.status.step, self.status.message = g.protocol, '2afc', g.step, ''
        self.beat()
        handle.succeed()  # the terminal follows the session by its heartbeats, not by the action
        return RunSession.Result(success=True, session_id=self.session)

    def end(self) -> None:
        self.status.state, self.status.subject, self.status.session_id = PilotStatus.STATE_IDLE, '', ''
        self.status.protocol, self.status.task = '', ''
        self.beat()

    def trial(self, n: int, **over: Any) -> TrialData:
        msg = TrialData(pilot=self.ns, subject=self.subject, session_id=self.session, trial_number=n, task='2afc',
                        protocol='fast', step=0, step_name=STEPS[0], fields=[
                            TrialField(name='correct', type=TrialField.TYPE_BOOL, unit='bool', bool_value=n % 2 == 0),
                            TrialField(name='side', type=TrialField.TYPE_STRING, string_value='L')])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.start.sec = msg.header.stamp.sec - 1
        for k, v in over.items():
            setattr(msg, k, v)
        return msg

    def step_change(self, seq: int, **over: Any) -> StepChange:
        msg = StepChange(pilot=self.ns, subject=self.subject, session_id=self.session, seq=seq, protocol='fast',
                         from_step=0, to_step=1, from_step_name=STEPS[0], to_step_name=STEPS[1], after_trial=2,
                         reason='2 trials >= 2 in this step')
        msg.header.stamp = self.node.get_clock().now().to_msg()
        for k, v in over.items():
            setattr(msg, k, v)
        return msg

    def send(self, lab: Lab, msg: TrialData | StepChange, timeout: float = 15.0) -> None:
        """Publish ``msg`` until the terminal acknowledges it (a publisher just matched may lose the first)."""
        trial = isinstance(msg, TrialData)
        key = ('trial', msg.session_id, msg.trial_number) if trial else ('step', msg.session_id, msg.seq)
        pub = self.trial_pub if trial else self.step_pub
        deadline = time.monotonic() + timeout
        while key not in self.acked:
            assert time.monotonic() < deadline, f'{key} not acknowledged'
            pub.publish(msg)
            spin(lab.node, lab.node.executor_, timeout_sec=0.5, until=lambda: key in self.acked)


class Refusals:
    """The terminal's refusal counts by endpoint, from its ``/diagnostics`` status (autopilot_core.guard)."""

    def __init__(self, node: Node) -> None:
        self.counts: dict[str, int] = {}
        self.last: dict[str, str] = {}
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on, guard.DIAGNOSTICS_QOS)

    def _on(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name != '/terminal: input':
                continue
            for kv in status.values:
                if kv.key.startswith('refused '):
                    self.counts[kv.key[len('refused '):]] = int(kv.value)
                elif kv.key.startswith('last refusal '):
                    self.last[kv.key[len('last refusal '):]] = kv.value

    def wait(self, lab: Lab, want: dict[str, int], timeout: float = 10.0) -> None:
        lab.spin_until(lambda: all(self.counts.get(k, 0) >= n for k, n in want.items()), timeout,
                       f'refusals {self.counts}, wanted {want}; last: {self.last}')


@pytest.fixture
def pilots(node):
    made: list[FakePilot] = []

    def make(ns: str, **kwargs: Any) -> FakePilot:
        made.append(FakePilot(node, ns, **kwargs))
        return made[-1]
    yield make
    for p in made:
        p.close()


def running_session(procs, node, tmp_path: Path, pilots) -> tuple[Any, Lab, FakePilot, Refusals]:
    """A terminal recording a session of mouse1 (protocol fast) on the fake pilot rig1, trial 1 stored."""
    terminal = launch_terminal(procs, tmp_path)
    pilot = pilots('rig1')
    refusals = Refusals(node)
    lab = Lab(node, [])
    lab.wait_online('rig1')
    assert lab.create('mouse1').success and lab.assign('mouse1', 'fast').success
    r = lab.start('mouse1', 'rig1')
    assert r.success, r.message
    lab.spin_until(lambda: bool(pilot.session), 10, 'the session did not start')
    pilot.send(lab, pilot.trial(1))
    return terminal, lab, pilot, refusals


def stop_terminal(terminal: Any) -> str:
    assert terminal.popen.poll() is None, terminal.output()  # nothing took it down
    assert terminal.stop() == 0, terminal.output()
    return terminal.output()


# --- stray publishers -----------------------------------------------------------------------------------

def test_stray_trials_and_step_changes_change_no_record(procs, node, tmp_path, pilots):
    terminal, lab, pilot, refusals = running_session(procs, node, tmp_path, pilots)
    sid, data = pilot.session, tmp_path / 'data'
    second = pilot.trial(2)
    pilot.send(lab, second)
    pilot.send(lab, pilot.step_change(1))  # the session's own graduation: recorded
    stray = {
        'no pilot': pilot.trial(3, pilot=''),
        'another pilot': pilot.trial(3, pilot='rig2'),
        'unknown subject': pilot.trial(1, subject='ghost', session_id=str(uuid.uuid4())),
        'unknown session': pilot.trial(1, session_id=str(uuid.uuid4())),
        'step beyond the protocol': pilot.trial(3, step=65535),
        'step misnamed': pilot.trial(3, step=1, step_name='free water'),
        '100,000 fields': pilot.trial(3, fields=[TrialField(name=f'f{i}', type=TrialField.TYPE_INT64, int_value=i)
                                                 for i in range(100_000)]),
    }
    for msg in stray.values():
        pilot.trial_pub.publish(msg)
    pilot.step_pub.publish(pilot.step_change(2, to_step=65535, to_step_name='x'))
    pilot.step_pub.publish(pilot.step_change(2, pilot=''))
    # A different copy of stored trial 2 and of step change 1: kept apart, the stored ones unchanged.
    forged = pilot.trial(2, header=second.header, start=second.start, fields=[
        TrialField(name='correct', type=TrialField.TYPE_BOOL, unit='bool'),
        TrialField(name='side', type=TrialField.TYPE_STRING, string_value='forged')])
    pilot.trial_pub.publish(forged)
    pilot.step_pub.publish(pilot.step_change(1, reason='forged'))
    refusals.wait(lab, {'/rig1/trials': len(stray) + 1, '/rig1/step_changes': 3}, timeout=15)
    assert 'kept apart as a conflict' in refusals.last['/rig1/trials'], refusals.last
    assert lab.create('m2').success  # still answering
    pilot.send(lab, pilot.trial(3))  # and recording
    pilot.end()
    lab.spin_until(lambda: f'session {sid} of mouse1 on rig1: ended' in terminal.output(), 10, terminal.output)
    out = stop_terminal(terminal)
    # One log line per endpoint every few seconds: the first refusal's; all are counted (above).
    assert '/rig1/trials refused' in out and 'names no pilot' in out, out
    assert sorted(p.name for p in data.glob('*.h5')) == ['m2.h5', 'mouse1.h5']  # no file for 'ghost'
    with SubjectReader(data / 'mouse1.h5') as r:
        assert r.sessions() == [sid]
        session = r.session(sid)
        assert (session['state'], session['conflicts'], json.loads(session['steps'])) == ('ended', 2, list(STEPS))
        rows = r.trial_rows(sid)
        assert [(t['trial_number'], t['correct'], t['side'], t['step']) for t in rows] == \
            [(1, False, 'L', 0), (2, True, 'L', 0), (3, False, 'L', 0)]
        steps = r.steps(sid)
        assert (steps['seq'].tolist(), steps['to_step'].tolist(), steps['reason'].tolist()) == \
            ([1], [1], ['2 trials >= 2 in this step'])
        assert [(h['kind'], h['step']) for h in r.history()][-1] == ('step', 1)  # 65535 never became the step
        step_c, trial_c = sorted(r.conflicts(sid), key=lambda c: c.kind)
        assert (trial_c.kind, trial_c.number, trial_c.type) == ('trial', 2, 'autopilot_msgs/msg/TrialData')
        assert 'trial 2 is stored already with other values of correct, side' in trial_c.reason
        kept = deserialize_message(trial_c.data, TrialData)
        assert [f.string_value for f in kept.fields] == ['', 'forged'] and kept.session_id == sid
        assert (step_c.kind, step_c.number) == ('step', 1) and 'reason' in step_c.reason
        assert deserialize_message(step_c.data, StepChange).reason == 'forged'


def test_forged_heartbeats_end_no_session(procs, node, tmp_path, pilots):
    terminal, lab, pilot, refusals = running_session(procs, node, tmp_path, pilots)
    sid = pilot.session

    def status(**fields: Any) -> PilotStatus:
        return PilotStatus(**{'pilot': 'rig1', 'state': PilotStatus.STATE_IDLE, **fields})
    forged = [status(pilot='rig2'),  # names another pilot
              status(pilot=''),  # names none
              status(state=PilotStatus.STATE_RUNNING, subject='mouse1', session_id=str(uuid.uuid4())),  # another
              status(session_id=str(uuid.uuid4())),  # "idle after" a session that is not the one running
              status(state=PilotStatus.STATE_RUNNING)]  # running nothing
    for msg in forged:
        pilot.beat(msg)
    # On the topic of another pilot: a heartbeat claiming rig1's session ends or begins nothing.
    other = pilots('rig2', beat=False)
    other.beat(PilotStatus(pilot='rig2', state=PilotStatus.STATE_RUNNING, subject='mouse1', session_id=sid))
    refusals.wait(lab, {'/rig1/status': len(forged), '/rig2/status': 1}, timeout=15)
    pilot.send(lab, pilot.trial(2))  # still recording
    lab.spin_until(lambda: lab.registry is not None and {(e.pilot, e.last_status.state, e.last_status.session_id)
                                                         for e in lab.registry.pilots} >= {
        ('rig1', PilotStatus.STATE_RUNNING, sid)}, 5, f'{lab.registry}')
    assert f'session {sid} of mouse1 on rig1: ended' not in terminal.output()
    pilot.end()  # the pilot's own end
    lab.spin_until(lambda: f'session {sid} of mouse1 on rig1: ended' in terminal.output(), 10, terminal.output)
    out = stop_terminal(terminal)
    assert out.count(f'session {sid} of mouse1 on rig1: ended') == 1
    assert "but that is the session of mouse1 on pilot rig1: ignored" in out, out
    with SubjectReader(tmp_path / 'data' / 'mouse1.h5') as r:
        assert r.sessions() == [sid] and r.session(sid)['state'] == 'ended'
        assert [t['trial_number'] for t in r.trial_rows(sid)] == [1, 2]


# --- service abuse and answers ---------------------------------------------------------------------------

def test_oversized_and_malformed_requests_get_short_answers_and_the_terminal_stays_up(procs, node, tmp_path):
    terminal = launch_terminal(procs, tmp_path)
    protocols = tmp_path / 'protocols'
    (protocols / 'overdose.yaml').write_text(FAST_PROTOCOL.replace('reward_ul: 6.0', 'reward_ul: -6.0'))
    lab = Lab(node, [])
    huge = 'x' * 1_000_000
    answers = {
        'deep JSON': lab.create('m1', '{"a":' * 2000 + '1' + '}' * 2000),
        '100,000 brackets': lab.create('m1', '[' * 100_000 + ']' * 100_000),
        'huge name': lab.create(huge),
        'huge biography update': lab.srv(CreateSubject, 'update_biography',
                                         CreateSubject.Request(subject='m1', biography_json='[' * 5000)),
        'huge protocol name': lab.assign('m1', huge),
        'protocol the pilot rejects': None,
        'too many parameters': lab.srv(SetSubjectParameters, 'set_subject_parameters', SetSubjectParameters.Request(
            subject='m1', parameters=[Parameter(f'p{i}', value=1).to_parameter_msg() for i in range(300)])),
        'NaN parameter': lab.srv(SetSubjectParameters, 'set_subject_parameters', SetSubjectParameters.Request(
            subject='m1', parameters=[Parameter('reward_ul', value=math.nan).to_parameter_msg()])),
        'NaN duration': lab.srv(StartSession, 'start_session', StartSession.Request(
            subject='m1', pilot='rig1', max_duration_s=math.nan)),
        'huge pilot name': lab.srv(StartSession, 'start_session', StartSession.Request(subject='m1', pilot=huge)),
    }
    assert lab.create('m1', '{"species": "Mus musculus"}').success
    answers['protocol the pilot rejects'] = lab.assign('m1', 'overdose')
    expect = {
        'deep JSON': 'nested 2000 levels deep; at most 32',
        '100,000 brackets': 'biography_json is 200000 characters long; at most 16384',
        'huge name': "is not a valid identifier",
        'huge biography update': 'nested 5000 levels deep',
        'huge protocol name': 'protocol is 1000000 characters long; at most 4096',
        'protocol the pilot rejects': f'{protocols / "overdose.yaml"}:6: steps[0].parameters.reward_ul: -6.0 is out of range',
        'too many parameters': 'parameters has 300 items; at most 256',
        'NaN parameter': 'parameter reward_ul must be finite',
        'NaN duration': 'max_duration_s must be finite',
        'huge pilot name': 'pilot is 1000000 characters long',
    }
    for what, r in answers.items():
        assert not r.success and expect[what] in r.message and len(r.message) < MAX_MESSAGE, (what, r.message[:800])
    # Wide input: any name and biography is created as asked or refused with a reason; never anything else.
    made: set[str] = {'m1'}

    @settings(max_examples=25, deadline=None, derandomize=True)
    @given(name=st.text(max_size=70) | st.from_regex(r'[a-z][a-z0-9_-]{0,8}', fullmatch=True),
           bio=st.dictionaries(st.text(max_size=8), JSON, max_size=3).map(json.dumps) | st.text(max_size=50))
    def create(name: str, bio: str) -> None:
        r = lab.create(name, bio)
        if r.success:
            assert subject_error(name) is None and name not in made and Path(r.path).is_file()
            made.add(name)
        else:
            assert r.message and len(r.message) < MAX_MESSAGE, r.message[:800]
    create()
    assert lab.create('Final_Subject').success and lab.assign('Final_Subject', 'fast').success
    out = stop_terminal(terminal)
    assert re.search(r'create_subject refused: .*nested 2000 levels deep', out), out
    with SubjectReader(tmp_path / 'data' / 'm1.h5') as r:
        assert r.biography == {'species': 'Mus musculus'}
        assert [h['kind'] for h in r.history()] == ['created']  # no refusal changed anything


def test_a_rejected_session_quotes_its_own_reason(procs, node, tmp_path, pilots):
    terminal = launch_terminal(procs, tmp_path)
    pilot = pilots('rig1', reject=['first reason', 'second reason'])
    pilot.status.message = 'session rejected: a reason from before this request'
    lab = Lab(node, [])
    lab.wait_online('rig1')
    assert lab.create('mouse1').success and lab.assign('mouse1', 'fast').success
    first = lab.start('mouse1', 'rig1')
    second = lab.start('mouse1', 'rig1')
    assert not first.success and first.message == 'pilot rig1 rejected the session: first reason', first.message
    assert not second.success and second.message == 'pilot rig1 rejected the session: second reason', second.message
    stop_terminal(terminal)
