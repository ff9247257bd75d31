"""The terminal's subject, weight, note, roster and protocol services and its /terminal/subjects list, in a real
``terminal`` process, called as the GUI and the CLI call them; hostile requests get answers and kill nothing."""

from __future__ import annotations

import math
import time
from typing import Any

from autopilot_msgs.msg import PilotStatus, SubjectList
from autopilot_msgs.srv import (
    AddNote,
    GetProtocol,
    GetSubject,
    GetTrials,
    ListProtocols,
    RecordWeight,
    SaveProtocol,
    SetSubjectPilot,
)
from conftest import call
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rcl_interfaces.srv import GetParameters
from test_terminal import FAST_PROTOCOL, Lab, launch_terminal

from autopilot_core import qos, trial_fields
from autopilot_terminal.storage import SubjectReader


class Listing:
    """The newest /terminal/subjects a test node received."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.msg: SubjectList | None = None
        self.count = 0
        lab.node.create_subscription(SubjectList, '/terminal/subjects', self._on, qos.STATUS)

    def _on(self, msg: SubjectList) -> None:
        self.msg, self.count = msg, self.count + 1

    def subject(self, name: str) -> Any:
        return next((s for s in (self.msg.subjects if self.msg else ()) if s.subject == name), None)

    def wait(self, condition, what: str, timeout: float = 15.0) -> None:
        self.lab.spin_until(lambda: self.msg is not None and condition(), timeout, f'{what}: {self.msg}')


def weigh(lab: Lab, subject: str, grams: float, when: str = 'check', session_id: str = '') -> Any:
    return lab.srv(RecordWeight, 'record_weight', RecordWeight.Request(subject=subject, grams=grams, when=when,
                                                                        session_id=session_id))


def note(lab: Lab, subject: str, text: str, session_id: str = '') -> Any:
    return lab.srv(AddNote, 'add_note', AddNote.Request(subject=subject, text=text, session_id=session_id))


def set_pilot(lab: Lab, subject: str, pilot: str) -> Any:
    return lab.srv(SetSubjectPilot, 'set_subject_pilot', SetSubjectPilot.Request(subject=subject, pilot=pilot))


def get_subject(lab: Lab, subject: str) -> Any:
    return lab.srv(GetSubject, 'get_subject', GetSubject.Request(subject=subject))


def heartbeat(node, ns: str) -> Any:
    """A pilot's heartbeat publisher (a pilot the terminal finds, named ``ns``)."""
    pub = node.create_publisher(PilotStatus, f'/{ns}/status', qos.STATUS)
    node.create_timer(0.5, lambda: pub.publish(PilotStatus(pilot=ns, state=PilotStatus.STATE_IDLE)))
    return pub


def test_subject_weight_note_roster_and_protocol_services(procs, node, tmp_path):
    terminal = launch_terminal(procs, tmp_path)
    data, protocols = tmp_path / 'data', tmp_path / 'protocols'
    lab = Lab(node, [])
    listing = Listing(lab)
    listing.wait(lambda: True, 'no /terminal/subjects at start', timeout=30)
    assert list(listing.msg.subjects) == [] and list(listing.msg.problems) == []
    assert lab.create('m1', '{"species": "Mus musculus"}').success and lab.assign('m1', step=1).success
    listing.wait(lambda: listing.subject('m1') is not None and listing.subject('m1').protocol == 'fast',
                 'm1 not listed after its assignment')
    s = listing.subject('m1')
    assert (s.step, s.step_name, list(s.step_names)) == (1, '2afc', ['2afc with correction', '2afc'])
    assert s.sessions == 0 and s.last_session_id == '' and math.isnan(s.last_weight_g)
    assert math.isnan(s.baseline_weight_g) and s.biography_json == '{"species": "Mus musculus"}'

    # Weights: the first is the baseline; each reply says the newest against it.
    r = weigh(lab, 'm1', 25.0, 'start', 'sess-1')
    assert r.success and r.message == 'm1: 25 g (the baseline) (start, session sess-1)', r.message
    r = weigh(lab, 'm1', 23.75, 'stop')
    assert r.success and '23.75 g, 95% of the baseline 25 g' in r.message, r.message
    for grams in (math.nan, math.inf, -math.inf, 1e308, 0.0, -3.0, 100000.0):
        r = weigh(lab, 'm1', grams)
        assert not r.success and 'grams must be' in r.message, (grams, r.message)
    r = weigh(lab, 'm1', 20.0, 'later')
    assert not r.success and "when 'later' is not one of start, stop, check" in r.message, r.message
    r = weigh(lab, 'nobody', 20.0)
    assert not r.success and "unknown subject 'nobody'" in r.message and 'create it first' in r.message, r.message
    listing.wait(lambda: listing.subject('m1').last_weight_g == 23.75, 'the weight not listed')
    assert listing.subject('m1').baseline_weight_g == 25.0

    # Notes and the roster.
    assert note(lab, 'm1', 'left port sticky', 'sess-1').success
    r = note(lab, 'm1', 'x' * 1001)
    assert not r.success and 'text is 1001 characters long; at most 1000' in r.message, r.message
    assert not note(lab, 'm1', '   ').success
    r = set_pilot(lab, 'm1', 'rig7')
    assert not r.success and "unknown pilot 'rig7' (known: none)" in r.message, r.message
    heartbeat(node, 'rig7')
    lab.spin_until(lambda: lab.registry is not None and any(p.pilot == 'rig7' for p in lab.registry.pilots), 20,
                   'rig7 not registered')
    r = set_pilot(lab, 'm1', 'rig7')
    assert r.success and r.message == 'm1: on rig rig7 (was none)', r.message
    listing.wait(lambda: listing.subject('m1').pilot == 'rig7', 'the rig not listed')
    r = get_subject(lab, 'm1')
    assert r.success, r.message
    assert [h.kind for h in r.history] == ['created', 'assign', 'note', 'roster']
    assert r.history[2].detail_json == '{"session_id": "sess-1", "text": "left port sticky"}'
    assert [(w.grams, w.when, w.session_id) for w in r.weights] == [(25.0, 'start', 'sess-1'), (23.75, 'stop', '')]
    assert r.weights[0].time.sec > 0 and r.summary.pilot == 'rig7' and list(r.sessions) == []
    assert set_pilot(lab, 'm1', '').message == 'm1: on no rig (was rig7)'
    r = get_subject(lab, 'nobody')
    assert not r.success and "unknown subject 'nobody'" in r.message
    r = get_subject(lab, '../etc/passwd')
    assert not r.success and 'not a valid identifier' in r.message

    # Protocols: listed and validated, read, saved only when valid, never over a file unless asked.
    (protocols / 'broken.yaml').write_text('name: broken\nsteps:\n  - name: one\n    task: nope\n')
    listed = lab.srv(ListProtocols, 'list_protocols', ListProtocols.Request()).protocols
    assert [p.name for p in listed] == ['broken', 'fast']
    assert f'{protocols / "broken.yaml"}:4: steps[0].task' in listed[0].error, listed[0].error
    assert listed[1].error == '' and list(listed[1].tasks) == ['2afc', '2afc'] and len(listed[1].sha256) == 64
    r = lab.srv(GetProtocol, 'get_protocol', GetProtocol.Request(name='fast'))
    assert r.success and r.text == FAST_PROTOCOL and r.protocol.file == str(protocols / 'fast.yaml'), r.message
    r = lab.srv(GetProtocol, 'get_protocol', GetProtocol.Request(name='nope'))
    assert not r.success and "unknown protocol 'nope'" in r.message and 'known: broken, fast' in r.message
    r = lab.srv(GetProtocol, 'get_protocol', GetProtocol.Request(name='../data/m1'))
    assert not r.success and 'is not valid' in r.message
    save = lambda name, text, overwrite=False: lab.srv(  # noqa: E731
        SaveProtocol, 'save_protocol', SaveProtocol.Request(name=name, text=text, overwrite=overwrite))
    two = FAST_PROTOCOL.replace('name: fast', 'name: two')
    r = save('two', two)
    assert r.success and r.path == str(protocols / 'two.yaml') and (protocols / 'two.yaml').read_text() == two
    r = save('two', two)
    assert not r.success and 'exists already; save with overwrite' in r.message
    r = save('two', two.replace('task: 2afc', 'task: nope', 1), overwrite=True)
    assert not r.success and f'{protocols / "two.yaml"}:4: steps[0].task' in r.message, r.message
    assert (protocols / 'two.yaml').read_text() == two
    assert save('two', two.replace('reward_ul: 6.0', 'reward_ul: 7.0'), overwrite=True).success
    r = save('../two', two)
    assert not r.success and 'is not valid' in r.message
    r = save('big', 'x' * ((1 << 20) + 1))
    assert not r.success and 'at most 1048576' in r.message, r.message
    assert lab.assign('m1', 'two').success  # what the terminal saved it assigns

    # The GUI reads when to ask for weights.
    params = call(node, node.create_client(GetParameters, '/terminal/get_parameters'),
                  GetParameters.Request(names=['weigh_at']))
    assert params.values[0].string_value == 'both'

    # A file that cannot be read is a problem of the list; the others are still listed.
    (data / 'junk.h5').write_bytes(b'not HDF5 ' * 100)
    assert lab.create('m2').success
    listing.wait(lambda: listing.subject('m2') is not None, 'm2 not listed')
    assert [s.subject for s in listing.msg.subjects] == ['m1', 'm2']
    assert len(listing.msg.problems) == 1 and str(data / 'junk.h5') in listing.msg.problems[0], listing.msg.problems

    # Published every 10 s without a change, at most once a second with changes.
    seen, t0 = listing.count, time.monotonic()
    for i in range(6):
        assert note(lab, 'm2', f'note {i}').success
        lab.spin(0.25)
    lab.spin_until(lambda: listing.count > seen, 5, 'no list after notes')
    assert listing.count - seen <= int(time.monotonic() - t0) + 2, (listing.count - seen, time.monotonic() - t0)
    seen = listing.count
    lab.spin_until(lambda: listing.count > seen, 15, 'no periodic list')

    assert terminal.popen.poll() is None
    assert terminal.stop() == 0
    with SubjectReader(data / 'm1.h5') as reader:
        assert [w['grams'] for w in reader.weights()] == [25.0, 23.75]
        assert [h['kind'] for h in reader.history()] == ['created', 'assign', 'note', 'roster', 'roster', 'assign']


TEXT = st.one_of(st.text(max_size=40), st.sampled_from(['', 'm1', 'fast', '..', '../m1', 'a/b', ' ', 'x' * 65]),
                 st.builds(lambda n: 'y' * n, st.integers(1000, 5000)))
GRAMS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 1e-300, 99999.9, 1e308]))


def test_hostile_requests_to_the_new_services_are_answered_and_kill_nothing(procs, node, tmp_path):
    terminal = launch_terminal(procs, tmp_path)
    lab = Lab(node, [])
    assert lab.create('m1').success and lab.assign('m1').success
    requests = st.one_of(
        st.builds(lambda s, g, w, i: ('record_weight', RecordWeight, RecordWeight.Request(
            subject=s, grams=g, when=w, session_id=i)), TEXT, GRAMS, st.one_of(TEXT, st.sampled_from(
                ['start', 'stop', 'check'])), TEXT),
        st.builds(lambda s, t, i: ('add_note', AddNote, AddNote.Request(subject=s, text=t, session_id=i)),
                  TEXT, TEXT, TEXT),
        st.builds(lambda s, p: ('set_subject_pilot', SetSubjectPilot, SetSubjectPilot.Request(subject=s, pilot=p)),
                  TEXT, TEXT),
        st.builds(lambda s: ('get_subject', GetSubject, GetSubject.Request(subject=s)), TEXT),
        st.builds(lambda s, i, f, m: ('get_trials', GetTrials, GetTrials.Request(
            subject=s, session_id=i, first_trial=f, max_trials=m)), st.one_of(TEXT, st.just('m1')), TEXT,
            st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
        st.builds(lambda n: ('get_protocol', GetProtocol, GetProtocol.Request(name=n)), TEXT),
        st.builds(lambda n, t, o: ('save_protocol', SaveProtocol, SaveProtocol.Request(name=n, text=t, overwrite=o)),
                  TEXT, st.one_of(TEXT, st.sampled_from(['steps: [', 'name: x\nsteps: []\n', '{' * 500,
                                                         'a: &a [*a]', FAST_PROTOCOL])), st.booleans()))

    @settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(requests)
    def hostile(request: tuple[str, Any, Any]) -> None:
        name, kind, req = request
        r = lab.srv(kind, name, req)
        assert isinstance(r.message, str) and r.message, (name, req, r)
        if name == 'record_weight' and not 0 < req.grams < 100000:
            assert not r.success, (req, r.message)
        assert terminal.popen.poll() is None, terminal.output()[-5000:]

    hostile()
    assert lab.srv(ListProtocols, 'list_protocols', ListProtocols.Request()).protocols
    r = get_subject(lab, 'm1')
    assert r.success and r.summary.protocol == 'fast', r.message
    assert weigh(lab, 'm1', 24.0).success
    assert terminal.popen.poll() is None
    assert terminal.stop() == 0


def test_the_subject_list_follows_a_session_and_its_graduation(procs, node, tmp_path):
    from test_terminal import one_rig

    _rig, terminal, lab = one_rig(procs, node, tmp_path)
    listing = Listing(lab)
    listing.wait(lambda: listing.subject('mouse1') is not None, 'mouse1 not listed', timeout=20)
    assert lab.start('mouse1', 'rig1', max_trials=7).success
    listing.wait(lambda: listing.subject('mouse1').last_session_state == 'running', 'the session not listed running')
    running = listing.subject('mouse1')
    assert running.sessions == 1 and running.last_session_start.sec > 0
    # The fast protocol graduates after 5 trials; the session ends after 7.
    listing.wait(lambda: listing.subject('mouse1').last_session_state == 'ended', 'the end not listed', timeout=60)
    s = listing.subject('mouse1')
    assert (s.step, s.step_name, s.trials) == (1, '2afc', 7), s
    assert 0.0 <= s.last_session_accuracy <= 1.0
    r = get_subject(lab, 'mouse1')
    assert [(x.state, x.trials, x.pilot, x.task) for x in r.sessions] == [('ended', 7, 'rig1', '2afc')]
    assert r.sessions[0].accuracy == s.last_session_accuracy and r.sessions[0].end.sec > 0

    # get_trials gives back what the pilot published, value for value, in pages.
    sid = r.sessions[0].session_id
    got = lab.srv(GetTrials, 'get_trials', GetTrials.Request(subject='mouse1'))  # "": the newest session
    assert got.success and got.session_id == sid and not got.more, got.message
    assert [t.trial_number for t in got.trials] == list(range(1, 8))
    for t in got.trials:
        sent = lab.trials[(sid, t.trial_number)]
        assert (t.pilot, t.subject, t.task, t.protocol, t.step, t.step_name) == \
            (sent.pilot, sent.subject, sent.task, sent.protocol, sent.step, sent.step_name)
        assert t.header.stamp == sent.header.stamp and t.start == sent.start
        stored, published = trial_fields.to_dict(t.fields), trial_fields.to_dict(sent.fields)
        assert stored.keys() == published.keys()
        assert all(v == published[k] or (isinstance(v, float) and math.isnan(v) and math.isnan(published[k]))
                   for k, v in stored.items()), (stored, published)
        assert [(f.name, f.type, f.unit) for f in t.fields] == [(f.name, f.type, f.unit) for f in sent.fields]
    page = lab.srv(GetTrials, 'get_trials', GetTrials.Request(subject='mouse1', session_id=sid, first_trial=3,
                                                              max_trials=2))
    assert page.success and [t.trial_number for t in page.trials] == [3, 4] and page.more
    unknown = lab.srv(GetTrials, 'get_trials', GetTrials.Request(subject='mouse1', session_id='nope'))
    assert not unknown.success and 'nope' in unknown.message and sid in unknown.message
    assert terminal.stop() == 0
