"""The Terminal's subject file: typed round trips, dedupe, bag bytes, live SWMR reading, SIGKILL, bad files."""

from __future__ import annotations

import ctypes
import json
import math
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import rclpy.serialization as ser
from autopilot_msgs.msg import GpioEvent, TrialData, TrialField
from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot_terminal.storage import (
    FIELD_STRING_BYTES,
    MAX_STRING_BYTES,
    TYPE_BOOL,
    TYPE_FLOAT64,
    TYPE_INT64,
    TYPE_STRING,
    StoreError,
    SubjectFile,
    SubjectReader,
    TopicSpec,
    clear_open_flag,
    marked_open,
)

FIELDS = [('correct', TYPE_BOOL, 'bool'), ('response_time', TYPE_INT64, 'us'), ('volume', TYPE_FLOAT64, 'uL'),
          ('side', TYPE_STRING, '')]
SID = '6f1c2a8e-3b7d-4e42-9a0f-5d1e2c3b4a59'


def trial(n: int, **over: Any) -> dict[str, Any]:
    row = {'trial_number': n, 'stamp_ns': 1_000 + n, 'recv_ns': 2_000 + n, 'step': 1, 'step_name': 'easy',
           'correct': n % 2 == 0, 'response_time': n * 10, 'volume': n / 4, 'side': 'L' if n % 2 else 'R'}
    row.update(over)
    return row


def _spec(cls: type, topic: str) -> TopicSpec:
    from ament_index_python.packages import get_package_share_directory

    from autopilot_runtime_py.messages import interface_text

    name = f'autopilot_msgs/msg/{cls.__name__}'
    desc = json.loads((Path(get_package_share_directory('autopilot_msgs')) / 'msg' / f'{cls.__name__}.json')
                      .read_text())
    hash_ = next(h['hash_string'] for h in desc['type_hashes'] if h['type_name'] == name)
    qos = json.dumps({'reliability': 'reliable', 'durability': 'volatile', 'history': 'keep_all'})
    return TopicSpec(topic, name, interface_text(name), hash_, qos)


def _gpio(i: int) -> GpioEvent:
    msg = GpioEvent(device=f'poke_{i % 3}', pin=i % 256, level=bool(i % 2), tick=i % 2**32, tick_us=10 * i,
                    backend='sim')
    msg.header.stamp.sec, msg.header.stamp.nanosec = i, 7 * i
    return msg


def _trial_msg(i: int) -> TrialData:
    return TrialData(pilot='rig1', subject='mouse1', session_id=SID, trial_number=i, task='2afc', step=1,
                     step_name='easy', fields=[
                         TrialField(name='correct', type=TrialField.TYPE_BOOL, unit='bool', bool_value=True),
                         TrialField(name='side', type=TrialField.TYPE_STRING, string_value='Ł' * i)])


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / 'mouse1.h5'


@pytest.fixture
def subject(path: Path):
    s = SubjectFile.create(path, 'mouse1', {'species': 'Mus musculus', 'sex': 'F', 'dob': '2024-01-02'})
    yield s
    s.close()


def _begin(s: SubjectFile, sid: str = SID, **meta: Any) -> bool:
    meta.setdefault('pilot', 'rig1')
    meta.setdefault('task', '2afc')
    meta.setdefault('fields', FIELDS)
    return s.begin_session(sid, meta)


# --- round trips ------------------------------------------------------------------------------

def test_typed_round_trip(path: Path, subject: SubjectFile) -> None:
    assert (TYPE_BOOL, TYPE_INT64, TYPE_FLOAT64, TYPE_STRING) == (
        TrialField.TYPE_BOOL, TrialField.TYPE_INT64, TrialField.TYPE_FLOAT64, TrialField.TYPE_STRING)
    assert _begin(subject, protocol='2afc_training', step=1, step_name='easy', started_ns=123,
                  provenance={'git': {'commit': 'abc', 'dirty': False}, 'ros': {'distro': 'jazzy'}})
    rows = [trial(1), trial(2, volume=math.nan, side='ünïcödé ✓'), trial(3, response_time=-(2**63))]
    assert subject.add_trials(SID, rows) == [1, 2, 3]
    assert subject.add_events(SID, 'gpio', [{'stamp_ns': 5, 'tick_us': 2**64 - 1, 'device': 'poke_center',
                                             'pin': 17, 'level': True, 'recv_ns': 6}]) == 1
    assert subject.add_events(SID, 'sound', [{'stamp_ns': 7, 'sound_id': 'tone_5k', 'play_id': 3, 'source': 0,
                                              'ok': True, 'latency_ms': 1.25, 'duration_ms': 100.0,
                                              'recv_ns': 8}]) == 1
    step = {'seq': 1, 'after_trial': 3, 'from_step': 1, 'to_step': 2, 'from_step_name': 'easy',
            'to_step_name': 'hard', 'protocol': '2afc_training', 'reason': 'accuracy 0.82 >= 0.80', 'stamp_ns': 9,
            'recv_ns': 10}
    assert subject.add_steps(SID, [step]) == [1]
    subject.add_history('assign', protocol='2afc_training', step=1, step_name='easy', detail={'by': 'jonny'})
    subject.set_biography({'species': 'Mus musculus', 'sex': 'F', 'genotype': 'wt'})
    subject.set_provenance(SID, {'launch': 'launch: []'})
    subject.end_session(SID, ended_ns=456)
    subject.close()

    with SubjectReader(path) as r:
        assert (r.subject, r.format_version) == ('mouse1', 1)
        assert r.biography == {'species': 'Mus musculus', 'sex': 'F', 'genotype': 'wt'}
        assert r.sessions() == [SID]
        info = r.session(SID)
        assert (info['pilot'], info['task'], info['protocol'], info['step'], info['step_name']) == (
            'rig1', '2afc', '2afc_training', 1, 'easy')
        assert (info['started_ns'], info['ended_ns'], info['state']) == (123, 456, 'ended')
        assert r.trial_fields(SID) == FIELDS
        cols = r.trials(SID)
        assert list(cols) == ['trial_number', 'start_ns', 'stamp_ns', 'recv_ns', 'step', 'step_name', 'correct',
                              'response_time', 'volume', 'side']
        assert cols['correct'].dtype == np.bool_ and cols['response_time'].dtype == np.int64
        assert cols['volume'].dtype == np.float64 and cols['side'].dtype.kind == 'U'
        assert cols['correct'].tolist() == [False, True, False]
        assert cols['response_time'].tolist() == [10, 20, -(2**63)]
        assert cols['volume'][0] == 0.25 and math.isnan(cols['volume'][1])
        assert cols['side'].tolist() == ['L', 'ünïcödé ✓', 'L']
        row = r.trial_rows(SID)[0]
        assert row == {**trial(1), 'start_ns': 0} and type(row['correct']) is bool
        gpio = r.events(SID, 'gpio')
        assert gpio['tick_us'].tolist() == [2**64 - 1] and gpio['device'].tolist() == ['poke_center']
        assert r.events(SID, 'sound')['latency_ms'].tolist() == [1.25]
        steps = r.steps(SID)
        assert steps['to_step_name'].tolist() == ['hard'] and steps['reason'].tolist() == ['accuracy 0.82 >= 0.80']
        assert r.provenance(SID) == {'git': {'commit': 'abc', 'dirty': False}, 'ros': {'distro': 'jazzy'},
                                     'launch': 'launch: []'}
        kinds = [h['kind'] for h in r.history()]
        assert kinds == ['created', 'step', 'assign', 'biography']
        assert r.history()[1]['detail']['session_id'] == SID and r.history()[1]['step_name'] == 'hard'
    with h5py.File(path, 'r') as f:  # what other tools see: typed columns, units in attrs
        assert f['sessions'][SID]['trials'].dtype['response_time'] == np.dtype('i8')
        fields = json.loads(f['sessions'][SID]['trials'].attrs['fields'])
        assert [(d['name'], d['type'], d['unit']) for d in fields][1] == ('response_time', 'int64', 'us')
        assert h5py.check_string_dtype(f['sessions'][SID]['trials'].dtype['side']).encoding == 'utf-8'


def test_resent_trials_and_steps_are_stored_once(path: Path, subject: SubjectFile) -> None:
    _begin(subject)
    assert subject.add_trials(SID, [trial(n) for n in range(1, 6)]) == [1, 2, 3, 4, 5]
    assert subject.add_trials(SID, [trial(n) for n in (3, 4, 5, 6, 6, 8)]) == [6, 8]  # dupes in batch too
    assert subject.add_trials(SID, [trial(2)]) == []
    step = {'seq': 1, 'after_trial': 3, 'from_step': 0, 'to_step': 1, 'from_step_name': 'a', 'to_step_name': 'b',
            'protocol': 'p', 'reason': 'r', 'stamp_ns': 5, 'recv_ns': 6}
    assert subject.add_steps(SID, [step, step]) == [1]
    assert subject.add_steps(SID, [step, {**step, 'seq': 2}]) == [2]
    subject.close()
    with SubjectFile.open(path) as s:  # after a restart the stored numbers are known again
        assert _begin(s) is False
        assert s.add_trials(SID, [trial(n) for n in range(1, 10)]) == [7, 9]
        assert s.add_steps(SID, [step]) == []
    with SubjectReader(path) as r:
        assert r.trials(SID)['trial_number'].tolist() == [1, 2, 3, 4, 5, 6, 8, 7, 9]
        assert r.steps(SID)['seq'].tolist() == [1, 2]
        assert [h['kind'] for h in r.history()].count('step') == 2


def test_a_different_second_copy_is_kept_as_a_conflict_and_changes_nothing_stored(path: Path,
                                                                                  subject: SubjectFile) -> None:
    """A resend (only recv_ns differs) is no conflict; a different copy is kept, with its bytes and reason, once,
    and counted in the session; what was stored first stays as it was."""
    _begin(subject, steps=['easy', 'hard'])
    assert subject.add_trials(SID, [trial(1), trial(2, volume=math.nan)]) == [1, 2]
    assert subject.differences(SID, 'trials', trial(1, recv_ns=99_999)) == []
    assert subject.differences(SID, 'trials', trial(2, volume=math.nan, recv_ns=5)) == []  # NaN is NaN
    assert subject.differences(SID, 'trials', trial(3)) == []  # not stored: nothing to differ from
    assert subject.differences(SID, 'trials', trial(1, correct=True, side='X')) == ['correct', 'side']
    forged = ser.serialize_message(_trial_msg(1))
    assert subject.add_conflict(SID, 'trial', 1, 'differs in correct, side', forged, 7_000,
                                'autopilot_msgs/msg/TrialData')
    assert not subject.add_conflict(SID, 'trial', 1, 'again', forged, 7_001)  # the same bytes: kept once
    assert subject.add_conflict(SID, 'trial', 1, 'another', forged + b'x', 7_002)
    step = {'seq': 1, 'after_trial': 3, 'from_step': 0, 'to_step': 1, 'from_step_name': 'easy',
            'to_step_name': 'hard', 'protocol': 'p', 'reason': 'r', 'stamp_ns': 5, 'recv_ns': 6}
    assert subject.add_steps(SID, [step]) == [1]
    assert subject.differences(SID, 'steps', {**step, 'to_step': 9, 'recv_ns': 8}) == ['to_step']
    assert subject.add_conflict(SID, 'step', 1, 'to_step differs', b'\x00' * 10, 7_003)
    with pytest.raises(StoreError, match='kind'):
        subject.add_conflict(SID, 'gpio', 1, 'x', b'', 1)
    subject.close()
    with SubjectReader(path) as r:
        assert r.session(SID)['conflicts'] == 3 and json.loads(r.session(SID)['steps']) == ['easy', 'hard']
        assert r.trial_rows(SID)[0] == {**trial(1), 'start_ns': 0}  # the first copy stays
        c = r.conflicts(SID)
        assert [(x.kind, x.number, x.reason, x.recv_ns) for x in c] == [
            ('trial', 1, 'differs in correct, side', 7_000), ('trial', 1, 'another', 7_002),
            ('step', 1, 'to_step differs', 7_003)]
        assert c[0].data == forged and c[0].type == 'autopilot_msgs/msg/TrialData'
        assert ser.deserialize_message(c[0].data, TrialData).trial_number == 1
        assert c[2].data == b'\x00' * 10 and c[2].type == ''


def test_trial_start_is_stored_and_may_be_missing_from_rows_and_from_tables_written_before(
        path: Path, subject: SubjectFile, monkeypatch: pytest.MonkeyPatch) -> None:
    _begin(subject)
    assert subject.add_trials(SID, [trial(1, start_ns=900), trial(2)]) == [1, 2]  # 2: a pilot without starts
    # A session whose table was made before trials had a start (an older terminal): rows with one still go in.
    from autopilot_terminal.storage import schema
    monkeypatch.setattr(schema, 'TRIAL_COLUMNS', tuple(c for c in schema.TRIAL_COLUMNS if c[0] != 'start_ns'))
    _begin(subject, 'old-session')
    monkeypatch.undo()
    assert subject.add_trials('old-session', [trial(1, start_ns=900), trial(2)]) == [1, 2]
    subject.close()
    with SubjectReader(path) as r:
        assert r.trials(SID)['start_ns'].tolist() == [900, 0]
        old = r.trials('old-session')
        assert 'start_ns' not in old and old['trial_number'].tolist() == [1, 2]


def test_bag_cdr_round_trip_in_receive_order(path: Path, subject: SubjectFile) -> None:
    trials_spec, gpio_spec = _spec(TrialData, '/rig1/trials'), _spec(GpioEvent, '/rig1/gpio/events')
    _begin(subject, topics=[trials_spec])
    trial_msgs = {100 + 10 * i: ser.serialize_message(_trial_msg(i)) for i in range(1, 40)}
    gpio_msgs = {105 + 10 * i: ser.serialize_message(_gpio(i)) for i in range(300)}
    gpio_msgs[110] = ser.serialize_message(_gpio(9999))  # a tie with a trial: registration order wins
    before = subject.restructure_count
    assert subject.add_topic(SID, *vars(gpio_spec).values()) == '1'  # a topic learnt later: one reopen
    assert subject.add_topic(SID, *vars(gpio_spec).values()) == '1'  # idempotent, no reopen
    assert subject.restructure_count == before + 1
    items_t, items_g = sorted(trial_msgs.items()), sorted(gpio_msgs.items())
    for k in range(0, 300, 64):  # interleaved batches, as the recorder would write them
        subject.append_messages(SID, trials_spec.topic, items_t[k // 8:k // 8 + 8])
        subject.append_messages(SID, gpio_spec.topic, items_g[k:k + 64])
    subject.append_messages(SID, gpio_spec.topic, [(10**12, b'')])  # an empty payload is a message too
    with pytest.raises(StoreError, match='recorded as'):
        subject.add_topic(SID, trials_spec.topic, 'std_msgs/msg/String', '', '', '{}')
    subject.close()

    with SubjectReader(path) as r:
        topics = r.topics(SID)
        assert [t.topic for t in topics] == [trials_spec.topic, gpio_spec.topic]
        t0, t1 = topics
        assert (t0.type, t0.type_hash, t0.interface_text) == (trials_spec.type, trials_spec.type_hash,
                                                                trials_spec.interface_text)
        assert t0.type_hash.startswith('RIHS01_') and 'TrialField[] fields' in t0.interface_text
        assert json.loads(t1.qos)['history'] == 'keep_all' and t1.serialization == 'cdr'
        assert (t0.count, t0.first_ns, t0.last_ns) == (len(trial_msgs), 110, 490)
        assert (t1.count, t1.first_ns, t1.last_ns) == (len(gpio_msgs) + 1, 105, 10**12)
        got = list(r.messages(SID))
        expected = sorted([(k, 0, v) for k, v in trial_msgs.items()] + [(k, 1, v) for k, v in gpio_msgs.items()]
                          + [(10**12, 1, b'')])
        assert [(m.recv_ns, m.data) for m in got] == [(k, v) for k, _, v in expected]
        assert [m.topic for m in got[:3]] == [gpio_spec.topic, trials_spec.topic, gpio_spec.topic]
        for m in got[:-1]:  # the bytes are the CDR that was recorded: they deserialize to the messages sent
            if m.topic == trials_spec.topic:
                assert ser.deserialize_message(m.data, TrialData) == _trial_msg((m.recv_ns - 100) // 10)
            else:
                i = 9999 if m.recv_ns == 110 else (m.recv_ns - 105) // 10
                assert ser.deserialize_message(m.data, GpioEvent) == _gpio(i)
        some = list(r.messages(SID, [trials_spec.topic], start_ns=200, end_ns=300))
        assert [m.recv_ns for m in some] == [200, 210, 220, 230, 240, 250, 260, 270, 280, 290]
        assert ser.deserialize_message(some[0].data, TrialData) == _trial_msg(10)


def test_structure_learnt_after_start_and_widening(path: Path, subject: SubjectFile) -> None:
    subject.begin_session(SID, {'task': 'later'})  # schema unknown at start
    with pytest.raises(StoreError, match='no trial schema'):
        subject.add_trials(SID, [trial(1)])
    subject.set_trial_fields(SID, FIELDS)
    subject.set_trial_fields(SID, FIELDS)  # same schema again: fine
    with pytest.raises(StoreError, match='keeps one schema'):
        subject.set_trial_fields(SID, FIELDS[:2])
    assert subject.add_trials(SID, [trial(1), trial(2)]) == [1, 2]
    long = 'ß' * 200 + '→ end'  # 406 UTF-8 bytes into a 64-byte column: the column grows, nothing is cut
    n = subject.restructure_count
    assert subject.add_trials(SID, [trial(3, side=long)]) == [3]
    assert subject.restructure_count == n + 1
    assert subject.add_trials(SID, [trial(4)]) == [4]  # appends after a rewrite (HDF5 cache workaround)
    subject.add_events(SID, 'gpio', [{'stamp_ns': 1, 'tick_us': 1, 'device': 'd' * 40, 'pin': 1, 'level': False,
                                      'recv_ns': 1}])
    subject.add_history('parameters', detail={'blob': 'x' * 3000})  # beyond detail's 1024 bytes
    with pytest.raises(StoreError, match='largest string column'):
        subject.add_trials(SID, [trial(5, side='x' * (MAX_STRING_BYTES + 1))])
    with pytest.raises(StoreError, match='NUL'):
        subject.add_trials(SID, [trial(5, side='a\x00')])
    assert subject.add_trials(SID, [trial(5)]) == [5]  # a refused batch leaves nothing behind
    subject.end_session(SID)
    subject.begin_session('second', {'fields': FIELDS})  # after end_session (attributes rewritten)
    assert subject.add_trials('second', [trial(1)]) == [1]
    print(f'\nstructure window: {subject.restructure_seconds / subject.restructure_count * 1e3:.2f} ms on average '
          f'over {subject.restructure_count}')
    subject.close()
    with SubjectReader(path) as r:
        assert r.trials(SID)['side'].tolist() == ['L', 'R', long, 'R', 'L']
        assert r.events(SID, 'gpio')['device'].tolist() == ['d' * 40]
        assert r.history()[-1]['detail'] == {'blob': 'x' * 3000}
        assert [c['change'].split()[0] for c in r.structure()] == [
            'create', 'begin_session', 'trial_fields', 'widen', 'widen', 'widen', 'end_session', 'begin_session']
    with h5py.File(path, 'r') as f:
        assert h5py.check_string_dtype(f[f'sessions/{SID}/trials'].dtype['side']).length >= 406


_utf8_text = st.text(st.characters(blacklist_categories=('Cs',), blacklist_characters='\x00'))


@settings(max_examples=60, deadline=None)
@given(side=st.one_of(
    st.integers(FIELD_STRING_BYTES - 3, FIELD_STRING_BYTES + 3).map(lambda n: 'x' * n),
    st.integers(FIELD_STRING_BYTES // 4 - 2, FIELD_STRING_BYTES // 2 + 2).flatmap(
        lambda n: st.text(st.characters(blacklist_categories=('Cs',), blacklist_characters='\x00'), min_size=n,
                          max_size=n)),
    st.integers(0, 3).map(lambda k: 'é' * 32 + 'a' * k),  # exactly the width, then just over
    _utf8_text),
    name=_utf8_text.filter(lambda s: len(s.encode()) <= 64))
def test_string_fields_round_trip(side: str, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 's.h5'
        with SubjectFile.create(path, 'm') as s:
            _begin(s)
            s.add_trials(SID, [trial(1, side=side, step_name=name)])
            s.add_events(SID, 'sound', [{'stamp_ns': 1, 'sound_id': side, 'play_id': 1, 'source': 0, 'ok': True,
                                         'latency_ms': 0.0, 'duration_ms': 0.0, 'recv_ns': 1}])
        with SubjectReader(path) as r:
            row = r.trial_rows(SID)[0]
            assert (row['side'], row['step_name']) == (side, name)
            assert r.events(SID, 'sound')['sound_id'].tolist() == [side]


def test_bad_rows_are_refused_with_the_column_named(subject: SubjectFile) -> None:
    with pytest.raises(StoreError, match='not begun'):
        subject.add_trials(SID, [trial(1)])
    with pytest.raises(StoreError, match='clashes'):
        _begin(subject, fields=[('step', TYPE_INT64, '')])
    with pytest.raises(StoreError, match='declared twice'):
        _begin(subject, fields=[('a', TYPE_INT64, ''), ('a', TYPE_BOOL, '')])
    with pytest.raises(StoreError, match='identifier'):
        _begin(subject, fields=[('not ok', TYPE_INT64, '')])
    with pytest.raises(StoreError, match='unknown meta'):
        _begin(subject, subjekt='x')
    _begin(subject)
    bad = [({'volume': 'much'}, "'volume' needs float"), ({'response_time': 1.5}, "'response_time' needs int"),
           ({'correct': 1}, "'correct' needs bool"), ({'side': 5}, "'side' needs a str"),
           ({'step': 70000}, "'step' .* out of range"), ({'response_time': 2**64}, "'response_time' .* out of range"),
           ({'trial_number': 0}, 'trial_number must be'), ({'extra': 1}, r"unknown \['extra'\]")]
    for over, message in bad:
        with pytest.raises(StoreError, match=message):
            subject.add_trials(SID, [trial(1), trial(2, **over)])
    row = trial(1)
    del row['volume']
    with pytest.raises(StoreError, match=r"missing \['volume'\]"):
        subject.add_trials(SID, [row])
    with pytest.raises(StoreError, match='recv_ns must be > 0'):
        subject.add_events(SID, 'gpio', [{'stamp_ns': 1, 'tick_us': 1, 'device': 'd', 'pin': 1, 'level': False,
                                          'recv_ns': 0}])
    with pytest.raises(StoreError, match='not registered'):
        subject.append_messages(SID, '/nope', [(1, b'x')])
    subject.add_topic(SID, '/t', 'std_msgs/msg/String', 'string data', 'RIHS01_x', '{}')
    with pytest.raises(StoreError, match='recv_ns must be > 0'):
        subject.append_messages(SID, '/t', [(0, b'x')])
    with pytest.raises(StoreError, match='qos_json is not JSON'):
        subject.add_topic(SID, '/u', 'std_msgs/msg/String', '', '', 'reliable')
    # events given as columns (as the CDR decoders give them) are checked the same way
    cols = {'stamp_ns': [1, 2], 'tick_us': [1, 2], 'device': ['a', 'b'], 'pin': [1, 2], 'level': [True, False],
            'recv_ns': [5, 6]}
    for over, message in (({'pin': [1]}, 'columns of different lengths'), ({'pins': [1, 2]}, r"unknown columns \['pins'\]"),
                          ({'pin': [1, 300]}, "'pin' .* out of range"), ({'recv_ns': [0, 1]}, 'recv_ns must be > 0')):
        with pytest.raises(StoreError, match=message):
            subject.add_events(SID, 'gpio', {**cols, **over})
    assert subject.add_events(SID, 'gpio', cols) == 2
    assert subject.add_events(SID, 'gpio', {k: [] for k in cols}) == 0
    assert subject.add_trials(SID, [trial(1)]) == [1]  # nothing of the refused batches was stored


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=20))
def test_uint64_columns_hold_every_value_exactly(values: list[int]) -> None:
    """A seq of 2**63 or more beside small ones (numpy alone makes that float64, which rounds) is stored exactly,
    and one past the type's range is refused by name."""
    from autopilot_terminal.storage.rows import _numbers

    out = _numbers(values, np.dtype('u8'), 'seq', 'here')
    assert out.dtype == np.dtype('u8') and [int(v) for v in out] == values
    with pytest.raises(StoreError, match=r"column 'seq' \(uint64\) value out of range"):
        _numbers([*values, 2**64], np.dtype('u8'), 'seq', 'here')
    with pytest.raises(StoreError, match=r"column 'seq' \(int64\) value out of range"):
        _numbers([*values, 2**63], np.dtype('i8'), 'seq', 'here')


def test_a_row_the_table_refuses_costs_only_itself_in_the_recorder(subject: SubjectFile) -> None:
    """The recorder writes a chunk at once and, when the table refuses it, row by row: the good rows are stored."""
    from functools import partial

    from autopilot_terminal.recorder import _write_all

    _begin(subject)
    cols = {'stamp_ns': [1, 2, 3, 4], 'tick_us': [1, 2, 3, 4], 'device': ['a', 'b', 'c', 'd'], 'pin': [1, 300, 3, 4],
            'level': [True, False, True, False], 'recv_ns': [5, 6, 7, 8]}
    written, kept, refused = _write_all(partial(subject.add_events, SID, 'gpio'), cols)
    assert written == 3 and kept['device'] == ['a', 'c', 'd']
    assert refused.startswith("1 of 4 rows refused by the table (first: ") and "'pin'" in refused
    assert _write_all(partial(subject.add_events, SID, 'gpio'), {k: v[:1] for k, v in cols.items()})[2] == ''
    with pytest.raises(StoreError, match="'pin'"):  # nothing to keep: the error itself
        _write_all(partial(subject.add_events, SID, 'gpio'), {k: [v[1], v[1]] for k, v in cols.items()})


# --- live reading and crashes ----------------------------------------------------------------

_LIVE_READER = textwrap.dedent('''
    import json, sys, time
    from autopilot_terminal.storage import SubjectReader
    path, total = sys.argv[1], int(sys.argv[2])
    r = SubjectReader(path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sessions = r.sessions()
        count = 0
        for sid in sessions:
            cols = r.trials(sid)
            nums = cols['trial_number'].tolist()
            assert nums == list(range(1, len(nums) + 1)), nums[-5:]
            assert cols['response_time'].tolist() == [10 * n for n in nums]
            count += len(nums)
        msgs = [m.data for m in r.messages(sessions[0])]
        assert msgs == [b'msg %d' % i for i in range(len(msgs))], msgs[-3:]
        print(json.dumps({'sessions': len(sessions), 'trials': count, 'msgs': len(msgs)}), flush=True)
        if count >= total:
            break
        time.sleep(0.002)
''')


def _changes(path: Path) -> list[str]:
    with h5py.File(path, 'r', swmr=True, locking=False) as f:
        return [c.decode() for c in f['structure']['change']]


def test_live_reader_in_another_process(path: Path, subject: SubjectFile, tmp_path: Path) -> None:
    _begin(subject, topics=[TopicSpec('/rig1/x', 'std_msgs/msg/String', 'string data', 'RIHS01_0', '{}')])
    total, batch = 2000, 25
    out = (tmp_path / 'reader.out').open('w+')
    reader = subprocess.Popen([sys.executable, '-c', _LIVE_READER, str(path), str(total)], stdout=out,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not Path(out.name).read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        n = m = 0
        sid = SID
        for b in range(total // batch):
            if b == total // batch // 2:  # a structure change while the reader reads
                sid = 'second'
                _begin(subject, sid)
                subject.add_topic(SID, '/rig1/late', 'std_msgs/msg/String', 'string data', 'RIHS01_1', '{}')
                n = 0
            widen = b == total // batch * 3 // 4  # the table is rewritten under the reader's feet
            subject.add_trials(sid, [trial(n + i, side='W' * 300 if widen and i == 1 else 'L')
                                     for i in range(1, batch + 1)], sync=False)
            n += batch
            subject.append_messages(SID, '/rig1/x', [(10 + m + i, b'msg %d' % (m + i)) for i in range(5)])
            m += 5
            time.sleep(0.004)
        assert reader.wait(60) == 0, reader.stderr.read() if reader.stderr else ''
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    seen = [json.loads(line) for line in Path(out.name).read_text().splitlines()]
    counts = [s['trials'] for s in seen]
    assert counts == sorted(counts) and counts[-1] == total
    partial = {c for c in counts if 0 < c < total}
    assert len(partial) >= 5, counts  # it read while rows were being appended
    assert seen[-1]['sessions'] == 2 and seen[-1]['msgs'] > 0
    assert [c.split()[0] for c in _changes(path)] == ['create', 'begin_session', 'begin_session', 'add_topics',
                                                      'widen']
    print(f'\nlive reader: {len(seen)} reads, {len(partial)} distinct partial row counts')


_KILLED_WRITER = textwrap.dedent('''
    import sys
    import rclpy.serialization as ser
    from autopilot_msgs.msg import GpioEvent
    from autopilot_terminal.storage import SubjectFile, TYPE_INT64, TYPE_STRING
    s = SubjectFile.create(sys.argv[1], 'mouse1')
    s.begin_session('S', {'fields': [('response_time', TYPE_INT64, 'us'), ('side', TYPE_STRING, '')],
                          'topics': [{'topic': '/gpio', 'type': 'autopilot_msgs/msg/GpioEvent', 'interface_text': '',
                                      'type_hash': '', 'qos_json': '{}'}]})
    n = m = 0
    while True:
        s.add_trials('S', [{'trial_number': n + i, 'stamp_ns': n + i, 'recv_ns': n + i, 'step': 0, 'step_name': 'a',
                            'response_time': 10 * (n + i), 'side': 'LR'[(n + i) % 2] * ((n + i) % 50)}
                           for i in range(1, 51)], sync=False)
        n += 50
        s.append_messages('S', '/gpio', [(m + i + 1, ser.serialize_message(GpioEvent(pin=(m + i) % 256,
                                                                                      tick_us=m + i)))
                                         for i in range(40)])
        m += 40
        print(n, m, flush=True)
''')


def _check_killed_file(path: Path, trials: int, msgs: int) -> tuple[set[int], set[int]]:
    """Every reported (flushed) row is there and right; rows of the batch the kill cut may be there too."""
    with SubjectReader(path) as r:  # SWMR read needs no h5clear
        rows = r.trials('S')
        nums = rows['trial_number'].tolist()
        assert len(set(nums)) == len(nums) and set(range(1, trials + 1)) <= set(nums)
        assert rows['response_time'].tolist() == [10 * n for n in nums]
        assert rows['side'].tolist() == ['LR'[n % 2] * (n % 50) for n in nums]
        got = list(r.messages('S'))
        recv = [m.recv_ns for m in got]
        assert recv == sorted(set(recv)) and set(range(1, msgs + 1)) <= set(recv)
        for msg in got:
            i = msg.recv_ns - 1
            assert ser.deserialize_message(msg.data, GpioEvent) == GpioEvent(pin=i % 256, tick_us=i)
        return set(nums), set(recv)


@pytest.mark.parametrize('lines', [2, 40, 150])
def test_sigkill_mid_write_keeps_every_flushed_row(tmp_path: Path, lines: int) -> None:
    path = tmp_path / 'killed.h5'
    child = subprocess.Popen([sys.executable, '-c', _KILLED_WRITER, str(path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(lines):
            line = child.stdout.readline() if child.stdout else ''
            assert line, child.stderr.read() if child.stderr else ''
        child.send_signal(signal.SIGKILL)  # the writer does not pause: this lands mid-batch
        rest, _ = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    complete = (line + rest).split('\n')[:-1]  # a line cut by the kill has no newline
    trials, msgs = map(int, complete[-1].split())
    stored, stored_msgs = _check_killed_file(path, trials, msgs)
    holes = max(stored) - len(stored), max(stored_msgs) - len(stored_msgs)
    print(f'\nkilled after {trials} reported trials / {msgs} messages: {len(stored)} / {len(stored_msgs)} '
          f'readable, holes {holes}')

    assert marked_open(path)  # still marked open: writing needs the recovery step
    with pytest.raises(StoreError, match='recover=True') as err:
        SubjectFile.open(path)
    assert 'h5clear -s' in str(err.value) and str(path) in str(err.value)
    with SubjectFile.open(path, recover=True) as s:  # the recorder restarts; the pilot resends everything
        resent = [{'trial_number': n, 'stamp_ns': n, 'recv_ns': n, 'step': 0, 'step_name': 'a',
                   'response_time': 10 * n, 'side': 'LR'[n % 2] * (n % 50)} for n in range(1, trials + 51)]
        assert s.add_trials('S', resent) == sorted(set(range(1, trials + 51)) - stored)
        s.end_session('S')
    assert not marked_open(path)
    assert _check_killed_file(path, trials + 50, msgs) == (stored | set(range(1, trials + 51)), stored_msgs)


@pytest.mark.parametrize('eoa_offset', [-20_000, 30_000])
def test_recovery_repairs_a_lagging_end_of_allocation(path: Path, eoa_offset: int) -> None:
    """What a killed SWMR writer can leave: flags set and a stored end-of-allocation behind the data (-) or
    beyond the file's end (+: space its metadata promised, never written). h5clear repairs both."""
    with SubjectFile.create(path, 'mouse1') as s:
        _begin(s)
        s.add_trials(SID, [trial(n) for n in range(1, 301)])
    mark_open_by_dead_writer(path, eoa=path.stat().st_size + eoa_offset)
    assert marked_open(path)
    with pytest.raises(StoreError, match='recover=True'):
        SubjectFile.open(path)
    with SubjectFile.open(path, recover=True) as s:  # without raising the eoa: "addr overflow" on this write
        assert s.recovered
        assert s.add_trials(SID, [trial(n) for n in range(295, 400)]) == list(range(301, 400))
    assert not marked_open(path)
    with SubjectReader(path) as r:
        assert r.trials(SID)['trial_number'].tolist() == list(range(1, 400))
        assert r.trials(SID)['response_time'].tolist() == [10 * n for n in range(1, 400)]


def test_recovery_without_h5clear_names_the_fix(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with SubjectFile.create(path, 'mouse1') as s:
        _begin(s)
        s.add_trials(SID, [trial(1)])
    mark_open_by_dead_writer(path)
    before = path.read_bytes()
    monkeypatch.setenv('PATH', str(tmp_path))  # no h5clear on it
    with pytest.raises(StoreError, match='needs h5clear, which is not installed: apt install hdf5-tools') as err:
        SubjectFile.open(path, recover=True)
    assert str(path) in str(err.value) and path.read_bytes() == before
    monkeypatch.undo()
    with SubjectFile.open(path, recover=True) as s:
        assert s.recovered and s.add_trials(SID, [trial(1), trial(2)]) == [2]


def mark_open_by_dead_writer(path: Path, eoa: int | None = None) -> None:
    """Put in ``path``'s superblock what a SWMR writer killed mid-write leaves: its write and SWMR-write flags
    and, if given, a stored end-of-allocation ``eoa`` (one that lags behind the data, say). The product never
    writes superblock bytes (it repairs them with h5clear); this test fixture does, checksummed by HDF5."""
    head = bytearray(path.read_bytes()[:48])
    assert head[8] == 3 and head[9] == 8  # superblock v3, 8-byte addresses: eoa at 28, checksum at 44
    head[11] = 0b101  # write + SWMR write access
    if eoa is not None:
        head[28:36] = eoa.to_bytes(8, 'little')
    head[44:48] = _hdf5_checksum(bytes(head[:44])).to_bytes(4, 'little')
    with open(path, 'r+b') as fh:
        fh.write(head)


def _hdf5_checksum(data: bytes) -> int:
    """HDF5's metadata checksum (Jenkins' lookup3), computed by the HDF5 library h5py loaded."""
    paths = sorted({line.split()[-1] for line in Path('/proc/self/maps').read_text().splitlines()
                    if '/libhdf5' in line and '_hl' not in line})
    fn = next(lib.H5_checksum_metadata for lib in map(ctypes.CDLL, paths) if hasattr(lib, 'H5_checksum_metadata'))
    fn.restype, fn.argtypes = ctypes.c_uint32, [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint32]
    return int(fn(data, len(data), 0))


_STRUCTURE_KILL = textwrap.dedent('''
    import sys, time, h5py
    f = h5py.File(sys.argv[1], 'r+', libver=('v110', 'v110'), locking=False)  # as in a structure window
    print('open', flush=True)
    time.sleep(60)
''')


def test_writer_killed_while_changing_structure(path: Path) -> None:
    with SubjectFile.create(path, 'mouse1') as s:
        _begin(s)
        s.add_trials(SID, [trial(1)])
    child = subprocess.Popen([sys.executable, '-c', _STRUCTURE_KILL, str(path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout and child.stdout.readline() == 'open\n'
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    t0 = time.monotonic()
    with pytest.raises(StoreError, match='marked open for writing .*h5clear -s .*recover=True'):
        SubjectReader(path, timeout=0.3)  # retried for `timeout`, then the fix
    assert time.monotonic() - t0 < 5
    with pytest.raises(StoreError, match='recover=True'):
        SubjectFile.open(path)
    with SubjectFile.open(path, recover=True) as s:
        assert s.add_trials(SID, [trial(1), trial(2)]) == [2]
    with SubjectReader(path) as r:
        assert r.trials(SID)['trial_number'].tolist() == [1, 2]
        assert r.structure()[-1]['change'] == 'recover'


# --- bad files ---------------------------------------------------------------------------------

_HOLDER = textwrap.dedent('''
    import sys
    from autopilot_terminal.storage import SubjectFile
    s = SubjectFile.open(sys.argv[1])
    s.add_trials('S', [{'trial_number': 9, 'stamp_ns': 1, 'recv_ns': 1, 'step': 0, 'step_name': '', 'n': 9}])
    print('ready', flush=True)
    sys.stdin.readline()
    s.close()
''')


def test_a_file_being_written_is_refused_to_a_second_writer(path: Path) -> None:
    with SubjectFile.create(path, 'mouse1') as s:
        s.begin_session('S', {'fields': [('n', TYPE_INT64, '')]})
        with pytest.raises(StoreError, match='already open for writing by another SubjectFile'):
            SubjectFile.open(path)  # same process
        with pytest.raises(StoreError, match='this process writes it'):
            SubjectReader(path)
    holder = subprocess.Popen([sys.executable, '-c', _HOLDER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout and holder.stdout.readline() == 'ready\n', holder.stderr.read() if holder.stderr else ''
        with pytest.raises(StoreError, match='already open for writing') as err:
            SubjectFile.open(path, recover=True)  # recover never steals a live writer's file
        assert str(path) in str(err.value)
        with SubjectReader(path) as r:  # readers are welcome meanwhile
            assert r.trials('S')['n'].tolist() == [9]
            with pytest.raises(StoreError, match='SubjectReader of this process'):
                SubjectFile.open(path)
    finally:
        holder.communicate('\n', timeout=30)
    assert holder.returncode == 0
    with SubjectFile.open(path) as s:
        assert s.add_trials('S', [{'trial_number': 9, 'stamp_ns': 1, 'recv_ns': 1, 'step': 0, 'step_name': '',
                                   'n': 9}]) == []


def test_corrupt_and_foreign_files_are_refused_and_left_alone(tmp_path: Path) -> None:
    messages = []
    junk = tmp_path / 'junk.h5'
    junk.write_bytes(b'this is not HDF5 at all' * 100)
    empty = tmp_path / 'empty.h5'
    empty.write_bytes(b'')
    plain = tmp_path / 'plain.h5'
    with h5py.File(plain, 'w') as f:
        f['x'] = [1, 2, 3]
    newer = tmp_path / 'newer.h5'
    with h5py.File(newer, 'w', libver=('v110', 'v110')) as f:
        f.attrs['format'] = 'autopilot-ros subject'
        f.attrs['format_version'] = 2
    other = tmp_path / 'other.h5'
    with h5py.File(other, 'w', libver=('v110', 'v110')) as f:
        f.attrs['format'] = 'something else'
    good = tmp_path / 'good.h5'
    with SubjectFile.create(good, 'm') as s:
        s.begin_session('S', {'fields': FIELDS})
    damaged = tmp_path / 'damaged.h5'
    data = bytearray(good.read_bytes())
    data[20] ^= 0xFF  # inside the superblock: its checksum no longer matches
    damaged.write_bytes(bytes(data))
    header = tmp_path / 'header.h5'
    data = bytearray(good.read_bytes())
    data[250] ^= 0xFF  # inside the root group's object header (checksummed): SWMR reads must not retry for long
    header.write_bytes(bytes(data))
    truncated = tmp_path / 'truncated.h5'
    truncated.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
    expect = {junk: 'not an HDF5 file', empty: 'not an HDF5 file', plain: 'not an autopilot-ros subject file|older '
              'format', newer: 'newer autopilot-ros', other: 'not an autopilot-ros subject file',
              damaged: 'damaged', header: 'damaged', truncated: 'damaged|truncated',
              tmp_path / 'missing.h5': 'no such subject file'}
    for bad, message in expect.items():
        t0 = time.monotonic()
        before = bad.read_bytes() if bad.exists() else None
        with pytest.raises(StoreError, match=message) as err:
            SubjectFile.open(bad, recover=True)
        assert str(bad) in str(err.value)
        with pytest.raises(StoreError, match=message.replace('|older format', '')):
            with SubjectReader(bad) as r:  # opening reads little: read everything
                r.sessions(), r.trials('S'), r.history(), r.topics('S')
        assert (bad.read_bytes() if bad.exists() else None) == before, f'{bad.name} was modified'
        assert time.monotonic() - t0 < 10, f'{bad.name}: took {time.monotonic() - t0:.1f} s'
        messages.append(str(err.value))
    with pytest.raises(StoreError, match='exists already'):
        SubjectFile.create(good, 'm')
    with SubjectReader(good) as r:
        assert r.sessions() == ['S']
    assert not clear_open_flag(good)  # nothing to clear on a cleanly closed file
    print('\n' + '\n'.join(messages))


# --- speed -----------------------------------------------------------------------------------

def test_throughput_of_batched_appends(path: Path, subject: SubjectFile) -> None:
    """Prints rows/s (not asserted: machines differ)."""
    _begin(subject, topics=[TopicSpec('/rig1/gpio/events', 'autopilot_msgs/msg/GpioEvent', '', '', '{}')])
    batch, batches = 1000, 20
    results = []

    def timed(label: str, fn: Any) -> None:
        t0 = time.perf_counter()
        for b in range(batches):
            fn(b)
        dt = time.perf_counter() - t0
        results.append(f'{label:<44} {batch * batches / dt:>10,.0f} rows/s')

    rows = [[trial(b * batch + i) for i in range(1, batch + 1)] for b in range(2 * batches)]
    timed('trials (9 columns), batches of 1000, flush', lambda b: subject.add_trials(SID, rows[b], sync=False))
    timed('trials, batches of 1000, flush + fsync', lambda b: subject.add_trials(SID, rows[batches + b]))
    timed('resent trials (all stored already)', lambda b: subject.add_trials(SID, rows[b]))
    gpio = [{'stamp_ns': i + 1, 'tick_us': i, 'device': 'poke_center', 'pin': 17, 'level': bool(i % 2),
             'recv_ns': i + 1} for i in range(batch)]
    timed('gpio events, batches of 1000, flush', lambda b: subject.add_events(SID, 'gpio', gpio))
    payload = ser.serialize_message(_gpio(1))
    msgs = [(i + 1, payload) for i in range(batch)]
    timed(f'bag messages ({len(payload)} B), batches of 1000, flush', lambda b: subject.append_messages(
        SID, '/rig1/gpio/events', msgs))
    t0 = time.perf_counter()
    for i in range(100):
        subject.add_trials(SID, [trial(500_000 + i)], sync=False)
    results.append(f'{"trials, one per call, flush":<44} {100 / (time.perf_counter() - t0):>10,.0f} rows/s')
    print('\n' + '\n'.join(results))
