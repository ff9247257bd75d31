"""The terminal's logic without ROS running: the pilot registry, which records it takes (ownership), session
begin/end from heartbeats (lifecycle), acks, topic setup, session control's pure parts, subject services and
provenance. No node, no executor: messages are plain rosidl objects, the subject files real (a real Recorder)."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest
from autopilot_msgs.msg import PilotStatus, StepChange, TrialData, TrialField
from autopilot_msgs.srv import AssignProtocol, CreateSubject, SetSubjectParameters, SetSubjectStep, StartSession
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rclpy.serialization import serialize_message

from autopilot_core import stamps
from autopilot_core.checks import InputError
from autopilot_terminal.acks import Intake
from autopilot_terminal.lifecycle import END_WAIT_S, SessionLifecycle
from autopilot_terminal.ownership import KnownSession, Ownership, end_state, in_protocol
from autopilot_terminal.pilots import PilotLink, Pilots
from autopilot_terminal.provenance_collect import hardware, pilot_nodes, plain, session_provenance
from autopilot_terminal.recorder import Recorder
from autopilot_terminal.routing import SessionTable, TopicSetup
from autopilot_terminal.sessions import rejection_reason, session_goal, session_plan
from autopilot_terminal.storage import SubjectReader
from autopilot_terminal.subject_services import SubjectServices, overrides
from autopilot_terminal.subjects import SubjectState, read_protocol

STEPS = ('2afc with correction', '2afc')
PROTOCOL = """\
name: fast
steps:
  - name: 2afc with correction
    task: 2afc
    parameters: {iti_s: 0.05, reward_ul: 6.0}
    graduation: {trials: 5}
  - name: 2afc
    task: 2afc
    parameters: {iti_s: 0.05, reward_ul: 5.0}
"""
S = 1_000_000_000


class Calls:
    """A recorder stand-in that keeps every call (name, args); ``done`` callbacks are answered at once."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> None:
            self.calls.append((name, args + tuple(kwargs.values())))
        return call

    def trials(self, subject: str, sid: str, meta: Any, fields: Any, rows: Any, done: Any, how: Any) -> None:
        self.calls.append(('trials', (subject, sid, meta, fields, rows, how)))
        done([r['trial_number'] for r in rows])

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [args for n, args in self.calls if n == name]


def status(pilot: str = 'rig1', state: int = PilotStatus.STATE_IDLE, session: str = '', subject: str = '',
           stamp_ns: int = 5 * S, **kw: Any) -> PilotStatus:
    msg = PilotStatus(pilot=pilot, state=state, session_id=session, subject=subject, protocol='fast', **kw)
    msg.header.stamp = stamps.to_msg(stamp_ns)
    return msg


def trial(n: int = 1, sid: str = 's1', **over: Any) -> TrialData:
    msg = TrialData(pilot='rig1', subject='mouse1', session_id=sid, trial_number=n, task='2afc', protocol='fast',
                    step=0, step_name=STEPS[0], fields=[
                        TrialField(name='correct', type=TrialField.TYPE_BOOL, unit='bool', bool_value=True),
                        TrialField(name='rt', type=TrialField.TYPE_FLOAT64, unit='s', float_value=0.25)])
    msg.header.stamp = stamps.to_msg(10 * S + 7)
    msg.start = stamps.to_msg(9 * S)
    for k, v in over.items():
        setattr(msg, k, v)
    return msg


def known_owner() -> tuple[PilotLink, Ownership]:
    link = PilotLink(ns='/rig1', name='rig1', named=True)
    return link, Ownership({'s1': KnownSession('mouse1', 's1', 'rig1', 'fast', STEPS)})


# --- pilots -----------------------------------------------------------------------------------------

def test_pilots_are_found_by_name_or_namespace_and_topics_by_the_nearest_namespace() -> None:
    pilots = Pilots()
    outer, inner = PilotLink(ns='/lab', name='lab', events='outer'), PilotLink(ns='/lab/rig2', name='rig2', events='inner')
    pilots.add(outer)
    pilots.add(inner)
    assert pilots.find('rig2') is inner and pilots.find('/lab') is outer and pilots.find('lab/rig2') is inner
    with pytest.raises(LookupError, match=r"unknown pilot 'ghost' \(known: lab, rig2\)"):
        pilots.find('ghost')
    assert pilots.of_topic('/lab/rig2/gpio/events') == (inner, 'gpio/events')
    assert pilots.of_topic('/lab/status') == (outer, 'status')
    assert pilots.of_topic('/lab/rig2/gpio/events', {'status'}) is None  # not a recorded name of either
    assert pilots.events_client('/lab/rig2/gpio/events') == 'inner' and pilots.events_client('/other/x') is None


def test_the_registry_says_each_change_of_online_once() -> None:
    pilots = Pilots()
    link = PilotLink(ns='/rig1', name='rig1')
    pilots.add(link)
    msg, lines = pilots.registry(100.0, lambda _: False)
    assert [e.pilot for e in msg.pilots] == ['rig1'] and math.isinf(msg.pilots[0].last_seen_s)
    assert lines == []  # found before its first heartbeat: no "offline" line
    link.status, link.seen = status(), 99.0
    msg, lines = pilots.registry(100.0, lambda _: True)
    assert lines == ['pilot rig1 is online'] and msg.pilots[0].last_seen_s == pytest.approx(1.0)
    assert pilots.registry(101.0, lambda _: True)[1] == []
    assert pilots.registry(200.0, lambda _: False)[1] == ['pilot rig1 is offline']


def test_a_heartbeat_heard_wakes_each_listener_once() -> None:
    link = PilotLink(ns='/rig1', name='rig1')
    woken: list[int] = []
    link.listeners.append(lambda: woken.append(1))
    link.hear(1.0, status())
    link.hear(2.0, status())
    assert woken == [1] and [t for t, _ in link.heard] == [1.0, 2.0]


# --- ownership ----------------------------------------------------------------------------------------

def test_heartbeats_are_taken_only_from_their_pilot_and_consistent_with_its_session() -> None:
    link, own = known_owner()
    assert own.heartbeat(link, status(state=PilotStatus.STATE_RUNNING, session='s1', subject='mouse1')) == 's1'
    assert own.heartbeat(link, status(state=PilotStatus.STATE_PAUSED, session='s1', subject='mouse1')) == 's1'
    assert own.heartbeat(link, status()) == ''
    with pytest.raises(InputError, match='names no pilot'):
        own.heartbeat(link, status(pilot=''))
    with pytest.raises(InputError, match="names pilot 'rig9' but came on the topics of pilot rig1"):
        own.heartbeat(link, status(pilot='rig9'))
    with pytest.raises(InputError, match='says paused but names no session'):
        own.heartbeat(link, status(state=PilotStatus.STATE_PAUSED))
    with pytest.raises(InputError, match='that is the session of mouse1 on pilot rig1'):
        own.heartbeat(link, status(state=PilotStatus.STATE_RUNNING, session='s1', subject='mouse2'))
    link.session = ('mouse1', 's1')
    with pytest.raises(InputError, match="names session 's2', but the session running there is s1"):
        own.heartbeat(link, status(state=PilotStatus.STATE_RUNNING, session='s2', subject='mouse1'))


def test_a_trial_is_taken_as_the_stores_row_with_its_fields_checked_once() -> None:
    link, own = known_owner()
    rec = own.trial(link, trial(3), recv_ns=11 * S)
    assert rec.fields == [('correct', TrialField.TYPE_BOOL, 'bool'), ('rt', TrialField.TYPE_FLOAT64, 's')]
    assert rec.rows == [{'trial_number': 3, 'start_ns': 9 * S, 'stamp_ns': 10 * S + 7, 'recv_ns': 11 * S, 'step': 0,
                         'step_name': STEPS[0], 'correct': True, 'rt': 0.25}]
    assert rec.meta['started_ns'] == 10 * S + 7 and rec.meta['steps'] == STEPS
    reserved = trial(fields=[TrialField(name='stamp_ns', type=TrialField.TYPE_INT64, int_value=1)])
    with pytest.raises(InputError, match="field 'stamp_ns': a field name is a Python identifier"):
        own.trial(link, reserved, 0)
    with pytest.raises(InputError, match='type 9 is none of'):
        own.trial(link, trial(fields=[TrialField(name='x', type=9)]), 0)
    with pytest.raises(InputError, match="no session this terminal started"):
        own.trial(link, trial(sid='elsewhere'), 0)
    with pytest.raises(InputError, match="step 1 of protocol fast is '2afc', not 'other'"):
        own.trial(link, trial(step=1, step_name='other'), 0)


def test_the_first_news_of_a_planned_session_makes_it_known_and_only_that_one() -> None:
    link, own = known_owner()
    link.planned = {'subject': 'mouse2', 'protocol_file': {'name': 'fast'}, 'steps': list(STEPS)}
    with pytest.raises(InputError, match='no session this terminal started'):
        own.trial(link, trial(sid='s2', subject='mouse3'), 0)  # not what was planned: nothing adopted
    assert own.trial(link, trial(sid='s2', subject='mouse2'), 0).known == KnownSession('mouse2', 's2', 'rig1', 'fast',
                                                                                       STEPS)
    assert link.planned['session_id'] == 's2' and own.session_of(link, 'mouse2', 's3', 'fast') is None


def test_a_step_change_is_checked_against_both_steps_of_the_protocol() -> None:
    link, own = known_owner()
    msg = StepChange(pilot='rig1', subject='mouse1', session_id='s1', seq=1, protocol='fast', from_step=0, to_step=1,
                     from_step_name=STEPS[0], to_step_name=STEPS[1], after_trial=5, reason='5 trials')
    msg.header.stamp = stamps.to_msg(3 * S)
    rec = own.step_change(link, msg, 4 * S)
    assert rec.rows[0]['stamp_ns'] == 3 * S and rec.rows[0]['recv_ns'] == 4 * S and rec.rows[0]['to_step'] == 1
    msg.to_step = 2
    with pytest.raises(InputError, match='StepChange to: step 2 is not a step of protocol fast'):
        own.step_change(link, msg, 0)
    msg.seq = 0
    with pytest.raises(InputError, match='numbered from 1'):
        own.step_change(link, msg, 0)
    in_protocol(KnownSession('m', 's', 'p'), 'x', 'any', 99, 'any')  # steps unknown (older files): not checked


def test_the_end_state_comes_from_the_pilots_last_session() -> None:
    assert end_state(status(last_session_id='s1', last_session_state='interrupted'), 's1') == 'interrupted'
    assert end_state(status(last_session_id='s1', last_session_state='cancelled'), 's1') == 'ended'
    assert end_state(status(state=PilotStatus.STATE_ERROR), 's1') == 'aborted'
    assert end_state(status(last_session_id='other', last_session_state='error'), 's1') == 'ended'


# --- acks ---------------------------------------------------------------------------------------------

class Publisher:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def publish(self, msg: Any) -> None:
        self.sent.append(msg)


def test_a_stored_trial_is_acknowledged_and_a_conflict_is_told_once() -> None:
    link, own = known_owner()
    link.ack_pub = Publisher()
    rec = Calls()
    intake = Intake(rec, own, lambda: stamps.to_msg(1))  # type: ignore[arg-type]
    intake.trial(link, trial(4), 0)
    (ack,) = link.ack_pub.sent
    assert (ack.pilot, ack.session_id, list(ack.trial_numbers), list(ack.step_seqs)) == ('rig1', 's1', [4], [])
    how = rec.named('trials')[0][-1]
    assert how.raw() == serialize_message(trial(4)) and how.create is False
    how.conflict(4, 'trial 4 differs', True)
    assert list(intake.conflicts()) == [('/rig1/trials', 'rig1', 'session s1 of mouse1: trial 4 differs; kept apart '
                                         'as a conflict, the stored one is unchanged')]
    assert list(intake.conflicts()) == []


# --- lifecycle ----------------------------------------------------------------------------------------

def lifecycle(unfinished: dict[str, list[tuple[str, str, int]]] | None = None
              ) -> tuple[SessionLifecycle, Calls, PilotLink, list[Any], list[Any]]:
    link, own = known_owner()
    rec, refused, begun = Calls(), [], []
    life = SessionLifecycle(rec, SessionTable(rec, grace_ns=S), own, unfinished or {},  # type: ignore[arg-type]
                            log=lambda *_: None, refuse=lambda *a: refused.append(a), streamed=lambda _: False,
                            on_begin=lambda link, msg, planned: begun.append(link.session))
    return life, rec, link, refused, begun


def test_a_session_begins_at_its_heartbeat_and_ends_after_the_streams_grace() -> None:
    life, rec, link, refused, begun = lifecycle()
    running = status(state=PilotStatus.STATE_RUNNING, session='s1', subject='mouse1', stamp_ns=50 * S)
    life.heartbeat(link, running, 's1', now_ns=51 * S, now_mono=0.0)
    (begin,) = rec.named('begin_session')
    assert begin[:2] == ('mouse1', 's1') and begin[2]['started_ns'] == 50 * S and begin[2]['steps'] == list(STEPS)
    assert link.session == ('mouse1', 's1') and begun == [('mouse1', 's1')]
    life.heartbeat(link, running, 's1', 52 * S, 1.0)  # still running: nothing new
    assert len(rec.named('begin_session')) == 1
    life.heartbeat(link, status(last_session_id='s1', last_session_state='ended'), '', 60 * S, 2.0)
    assert link.session is None and rec.named('end_session') == []
    life.poll(60 * S + S // 2, 2.5)  # within end_grace_s (not streamed: the terminal's own time)
    assert rec.named('end_session') == []
    life.poll(61 * S + 1, 3.0)
    assert rec.named('end_session') == [('mouse1', 's1', 60 * S, 'ended')] and life.ending == []
    assert refused == []


def test_an_end_the_stream_never_shows_is_written_after_the_longest_wait() -> None:
    life, rec, link, _, _ = lifecycle()
    life.heartbeat(link, status(state=PilotStatus.STATE_RUNNING, session='s1', subject='mouse1'), 's1', S, 0.0)
    life._streamed = lambda _: True  # the receiver subscribes to the status topic: its stream decides
    life.heartbeat(link, status(state=PilotStatus.STATE_ERROR), '', 2 * S, 1.0)
    life.poll(100 * S, 1.0 + END_WAIT_S - 1)
    assert rec.named('end_session') == []
    life.poll(100 * S, 1.0 + END_WAIT_S)
    assert rec.named('end_session') == [('mouse1', 's1', 2 * S, 'aborted')]


def test_an_unknown_session_is_refused_once_and_an_unfinished_one_closed() -> None:
    life, rec, link, refused, _ = lifecycle({'rig1': [('mouse1', 'old', 7 * S)]})
    stray = status(state=PilotStatus.STATE_RUNNING, session='stray', subject='mouse9')
    life.heartbeat(link, stray, 'stray', S, 0.0)
    life.heartbeat(link, stray, 'stray', S, 0.0)
    assert len(refused) == 1 and refused[0][0] == '/rig1/status' and 'did not start' in refused[0][1]
    assert link.session is None and rec.named('begin_session') == []
    (end,) = rec.named('end_session')
    assert end[:4] == ('mouse1', 'old', 7 * S, 'ended') and "the state of pilot rig1 was 'running' when" in end[4]


# --- routing: topics ---------------------------------------------------------------------------------

def test_topics_are_recorded_once_each_and_the_missing_ones_named() -> None:
    pilots = Pilots()
    link = PilotLink(ns='/rig1', name='rig1')
    pilots.add(link)
    setup = TopicSetup(Calls(), SessionTable(Calls(), 0), pilots, record=['status', '/trials/', ''],  # type: ignore[arg-type]
                       streams=['wheel', 'status'], video=['camera/image'], log=lambda *_: None)
    assert setup.all() == ['status', 'trials', 'wheel', 'camera/image']
    counts = {'/rig1/status': 1, '/rig1/trials': 0, '/rig1/wheel': None}
    assert setup.missing(link, {'/rig1/status', '/rig1/trials', '/rig1/wheel'}, counts.get) == ['/rig1/trials']
    assert setup.handler('/rig2/trials', 'autopilot_msgs/msg/TrialData', '', '') is None
    with pytest.raises(ValueError, match=r"topics \['camera/image'\] are in record_topics"):
        TopicSetup(Calls(), SessionTable(Calls(), 0), pilots, record=['camera/image'], streams=[],  # type: ignore[arg-type]
                   video=['camera/image'], log=lambda *_: None)


# --- sessions -----------------------------------------------------------------------------------------

def test_a_rejection_is_read_from_the_newest_heartbeat_after_the_goal() -> None:
    def said(t: float, stamp_s: int, text: str, pilot: str = 'rig1') -> tuple[float, PilotStatus]:
        return t, status(pilot=pilot, stamp_ns=stamp_s * S, message=text)
    before = said(1.0, 1, 'session rejected: old reason')
    assert rejection_reason([before], 'rig1', 2.0, 2 * S) is None
    heard = [before, said(3.0, 4, 'session rejected: new reason'), said(3.1, 3, 'periodic'),
             said(3.2, 5, 'session rejected: forged', pilot='rig9')]
    assert rejection_reason(heard, 'rig1', 2.0, 2 * S) == 'new reason'
    assert 'gives no reason (periodic)' in str(rejection_reason(heard[2:3], 'rig1', 2.0, 2 * S))
    long = rejection_reason([said(3.0, 4, 'session rejected: ' + 'x' * 5000)], 'rig1', 2.0, 2 * S)
    assert long is not None and len(long) < 400 and long.endswith('...')


def test_the_goal_and_plan_carry_the_subjects_state(tmp_path: Path) -> None:
    (tmp_path / 'fast.yaml').write_text(PROTOCOL)
    proto = read_protocol('fast', tmp_path)
    st = SubjectState('mouse1', protocol='fast', step=1, step_name=STEPS[1], parameters={'reward_ul': 4.5})
    goal = session_goal(StartSession.Request(subject='mouse1', pilot='rig1', max_trials=10), st, proto)
    assert (goal.subject, goal.protocol, goal.step, goal.max_trials) == ('mouse1', 'fast', 1, 10)
    assert [(p.name, p.value.double_value) for p in goal.parameters] == [('reward_ul', 4.5)]
    plan = session_plan('mouse1', st, proto, STEPS[1])
    assert plan['steps'] == list(STEPS) and plan['protocol_file']['sha256'] == proto.sha256
    assert plan['subject_state']['parameters'] == {'reward_ul': 4.5}


# --- subject services (a real Recorder and subject file) -------------------------------------------

def test_subject_services_change_the_file_through_the_recorder(tmp_path: Path) -> None:
    protocols = tmp_path / 'protocols'
    protocols.mkdir()
    (protocols / 'fast.yaml').write_text(PROTOCOL)
    recorder = Recorder(tmp_path / 'data')

    async def run(fn: Any) -> Any:
        return recorder.call(fn).result(10)

    services = SubjectServices(run, tmp_path / 'data', protocols)

    async def scenario() -> list[Any]:
        out = [await services.create(CreateSubject.Request(subject='mouse1', biography_json='{"sex": "F"}'),
                                     CreateSubject.Response()),
               await services.create(CreateSubject.Request(subject='mouse1'), CreateSubject.Response()),
               await services.set_parameters(SetSubjectParameters.Request(subject='mouse1'),
                                             SetSubjectParameters.Response()),
               await services.assign(AssignProtocol.Request(subject='mouse1', protocol='fast', step=0),
                                     AssignProtocol.Response()),
               await services.set_step(SetSubjectStep.Request(subject='mouse1', step=1, reason='ready'),
                                       SetSubjectStep.Response()),
               await services.set_step(SetSubjectStep.Request(subject='mouse1', step=5), SetSubjectStep.Response()),
               await services.update_biography(CreateSubject.Request(subject='mouse1', biography_json='{"w": 20}'),
                                               CreateSubject.Response())]
        out.append(await services.state('mouse1'))
        return out
    try:
        created, again, no_protocol, assigned, stepped, bad_step, bio, state = asyncio.run(scenario())
        with pytest.raises(InputError, match='not a valid identifier'):
            asyncio.run(services.create(CreateSubject.Request(subject='../x'), CreateSubject.Response()))
    finally:
        recorder.close()
    assert created.success and created.path == str(tmp_path / 'data' / 'mouse1.h5')
    assert not again.success and 'exists already' in again.message
    assert not no_protocol.success and 'has no protocol: assign one first' in no_protocol.message
    assert assigned.success and (assigned.n_steps, assigned.step_name) == (2, STEPS[0])
    assert stepped.success and stepped.message == f'mouse1: step 0 ({STEPS[0]}) -> 1 ({STEPS[1]}); applies from the ' \
                                                  'next session'
    assert not bad_step.success and 'step 5 does not exist' in bad_step.message
    assert bio.success and (state.protocol, state.step, state.step_name) == ('fast', 1, STEPS[1])
    with SubjectReader(tmp_path / 'data' / 'mouse1.h5') as r:
        assert r.biography == {'sex': 'F', 'w': 20}
        assert [h['kind'] for h in r.history()][-2:] == ['step', 'biography']


def test_parameter_overrides_are_bounded_and_none_removes() -> None:
    def p(name: str, **value: Any) -> Parameter:
        return Parameter(name=name, value=ParameterValue(**value))
    set_, removed = overrides([p('reward_ul', type=ParameterType.PARAMETER_DOUBLE, double_value=4.0),
                               p('sides', type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=['L', 'R']),
                               p('old', type=ParameterType.PARAMETER_NOT_SET)])
    assert set_ == {'reward_ul': 4.0, 'sides': ['L', 'R']} and removed == ['old']
    with pytest.raises(InputError, match='parameter x must be finite'):
        overrides([p('x', type=ParameterType.PARAMETER_DOUBLE, double_value=math.nan)])
    with pytest.raises(InputError, match='characters of JSON'):
        overrides([p(f'p{i}', type=ParameterType.PARAMETER_STRING, string_value='x' * 1000) for i in range(20)])


# --- provenance ---------------------------------------------------------------------------------------

def test_provenance_keeps_hardware_apart_with_its_calibration_text(tmp_path: Path) -> None:
    calibration = tmp_path / 'valves.jsonl'
    calibration.write_text('{"valve": "L"}\n')
    params = {'/rig1/gpio': {'calibration_file': str(calibration)}, '/rig1/camera': {'calibration_file': '/no/such'},
              '/rig1/pilot': {'seed': 7}}
    out = hardware(params)
    assert set(out['hardware']) == {'/rig1/gpio', '/rig1/camera'} and out['parameters'] == params
    assert out['calibrations']['/rig1/gpio'] == '{"valve": "L"}\n'
    assert out['calibrations']['/rig1/camera'].startswith('(not readable on the terminal host')
    assert pilot_nodes([('pilot', '/rig1'), ('gpio', '/rig1/hw'), ('pilot', '/rig10'), ('t', '/')], '/rig1') == [
        '/rig1/pilot', '/rig1/hw/gpio']
    assert plain((1, b'\x01', [2.5])) == [1, '01', [2.5]]
    link = PilotLink(ns='/rig1', name='rig1')
    msg = status(host='pi', package_names=['autopilot_pilot'], package_versions=['1.0'])
    prov = session_provenance({'packages': {'a': '1'}}, str(tmp_path / 'none.launch.yaml'), link, msg,
                              {'protocol_file': {'name': 'fast'}})
    assert prov['pilot']['packages'] == {'autopilot_pilot': '1.0'} and prov['protocol'] == {'name': 'fast'}
    assert prov['launch']['text'].startswith('(cannot read') and prov['packages'] == {'a': '1'}
