"""Weights, notes and the roster in the subject file, and what :mod:`autopilot_terminal.catalog` reads of a subject
and of protocol files: real HDF5 files in tmp_path, no ROS."""

from __future__ import annotations

import math
import os

import h5py
import numpy as np
import pytest
from test_terminal import FAST_PROTOCOL

from autopilot_core.trial_fields import BOOL, INT64
from autopilot_terminal import catalog
from autopilot_terminal.catalog import Catalog, accuracy
from autopilot_terminal.storage import StoreError, SubjectFile, SubjectReader
from autopilot_terminal.subjects import state_from_history

# As tests/test_terminal.py's (imported from there it would bring ROS into these plain tests).
FIELDS = [('correct', BOOL, ''), ('correction', BOOL, ''), ('response', INT64, '')]


def add_session(f: SubjectFile, sid: str, started_ns: int, correct: list[bool], correction: list[bool] | None = None,
                *, end: bool = True, fields: list | None = None) -> None:
    f.begin_session(sid, {'pilot': 'rig1', 'task': '2afc', 'protocol': 'fast', 'step': 1, 'step_name': '2afc',
                          'started_ns': started_ns, 'fields': FIELDS if fields is None else fields})
    correction = correction or [False] * len(correct)
    rows = [{'trial_number': i + 1, 'stamp_ns': started_ns + i, 'recv_ns': started_ns + i, 'step': 1,
             'step_name': '2afc', **({'correct': c, 'correction': k, 'response': 0} if fields is None else {})}
            for i, (c, k) in enumerate(zip(correct, correction, strict=True))]
    f.add_trials(sid, rows)
    if end:
        f.end_session(sid, ended_ns=started_ns + 10**9)


def test_weights_are_stored_and_read_back_and_files_without_them_read_fine(tmp_path):
    path = tmp_path / 'm1.h5'
    with SubjectFile.create(path, 'm1') as f:
        assert 'weights' not in f.file['subject']
        assert catalog.weight_rows(f.file) == []
    with SubjectReader(path) as r:
        assert r.weights() == []
    with SubjectFile.open(path) as f:
        f.add_weight(23.5, 'start', 'sess-1', time_ns=10)
        f.add_weight(22, 'check', time_ns=20)
        for bad in (math.nan, math.inf, -1.0, 0.0, 100000.0, 1e308, True, '23'):
            with pytest.raises(StoreError, match='is not a weight'):
                f.add_weight(bad)  # type: ignore[arg-type]
        with pytest.raises(StoreError, match='when'):
            f.add_weight(20.0, 'later')
        with pytest.raises(StoreError, match='session id'):
            f.add_weight(20.0, 'check', 'x' * 65)
    with SubjectReader(path) as r:
        assert r.weights() == [{'time_ns': 10, 'grams': 23.5, 'when': 'start', 'session_id': 'sess-1'},
                               {'time_ns': 20, 'grams': 22.0, 'when': 'check', 'session_id': ''}]
        assert r.format_version == 1


def test_notes_and_roster_rows_replay_into_the_state(tmp_path):
    with SubjectFile.create(tmp_path / 'm1.h5', 'm1') as f:
        f.add_history('roster', detail={'pilot': 'rig1'})
        f.add_note('left port sticky', 'sess-1')
        f.add_history('roster', detail={'pilot': 'rig2'})
        with pytest.raises(StoreError, match='1-1000 characters'):
            f.add_note('x' * 1001)
        with pytest.raises(StoreError, match='1-1000 characters'):
            f.add_note('  ')
        f.add_note('é' * 1000)  # wider than the detail column in bytes: widened
        rows = catalog.history_rows(f.file)
    assert [r['kind'] for r in rows] == ['created', 'roster', 'note', 'roster', 'note']
    assert rows[2]['detail'] == {'text': 'left port sticky', 'session_id': 'sess-1'}
    assert rows[4]['detail']['text'] == 'é' * 1000
    assert state_from_history('m1', rows).pilot == 'rig2'
    assert state_from_history('m1', rows[:2]).pilot == 'rig1'


def test_accuracy_leaves_out_correction_trials_and_unscored_tasks():
    t, f = True, False
    assert accuracy({'correct': np.array([t, f, t, t]), 'correction': np.array([f, f, t, f])}) == pytest.approx(2 / 3)
    assert accuracy({'correct': np.array([t, f])}) == 0.5
    assert accuracy({'correct': np.array([t]), 'correction': np.array([t])}) is None
    assert accuracy({'correct': np.array([1, 0])}) is None  # not a bool field: the task does not score
    assert accuracy({}) is None


def test_subject_summary_sessions_history_and_weights(tmp_path):
    path = tmp_path / 'm1.h5'
    with SubjectFile.create(path, 'm1', {'species': 'Mus musculus'}) as f:
        f.add_history('assign', protocol='fast', step=1, step_name='2afc',
                      detail={'steps': ['2afc with correction', '2afc']})
        add_session(f, 'b', 2000, [True, False, True, False], [False, False, False, True])
        add_session(f, 'a', 1000, [True, True])
        add_session(f, 'c', 3000, [], fields=[])  # no score fields
        add_session(f, 'd', 4000, [True, False, False], end=False)
        f.add_weight(25.0, 'start', 'd', time_ns=5)
        f.add_weight(24.0, 'stop', 'd', time_ns=6)
        info = Catalog().subject(f.file)
    assert info.subject == 'm1' and info.biography == {'species': 'Mus musculus'}
    assert info.state.protocol == 'fast' and info.state.steps == ['2afc with correction', '2afc']
    assert [s.session_id for s in info.sessions] == ['a', 'b', 'c', 'd']
    assert [s.trials for s in info.sessions] == [2, 4, 0, 3] and info.trials == 9
    assert [s.accuracy for s in info.sessions] == [1.0, pytest.approx(2 / 3), None, pytest.approx(1 / 3)]
    assert [s.state for s in info.sessions] == ['ended', 'ended', 'ended', 'running']
    assert info.sessions[0].ended_ns == 1000 + 10**9 and info.sessions[3].ended_ns == 0
    assert info.last is not None and info.last.session_id == 'd'
    assert [w['grams'] for w in info.weights] == [25.0, 24.0]
    assert catalog.weight_ratio(info.weights) == '24 g, 96% of the baseline 25 g'
    # The same through a reader in another open (the CLI's way).
    with SubjectReader(path) as r:
        again = Catalog().subject(r.file)
    assert again.sessions == info.sessions and again.weights == info.weights


def test_ended_sessions_are_read_once(tmp_path, monkeypatch):
    reads: list[str] = []
    real = catalog.read_session
    monkeypatch.setattr(catalog, 'read_session', lambda g, sid: reads.append(sid) or real(g, sid))
    cat = Catalog()
    with SubjectFile.create(tmp_path / 'm1.h5', 'm1') as f:
        for i in range(300):
            add_session(f, f's{i:03d}', 1000 + i, [True, False])
        add_session(f, 'live', 10**6, [True], end=False)
        assert len(cat.sessions(f.file)) == 301 and len(reads) == 301
        reads.clear()
        sessions = cat.sessions(f.file)
        assert reads == ['live'] and sum(s.trials for s in sessions) == 601
        # A trial resent to an ended session (a restarted terminal) is counted: its table grew.
        f.add_trials('s007', [{'trial_number': 3, 'stamp_ns': 1, 'recv_ns': 1, 'step': 1, 'step_name': '2afc',
                               'correct': True, 'correction': False, 'response': 0}])
        reads.clear()
        assert [s.trials for s in cat.sessions(f.file) if s.session_id == 's007'] == [3]
        assert sorted(reads) == ['live', 's007']


def test_scan_reports_a_bad_file_and_reads_the_others(tmp_path):
    from autopilot_terminal.recorder import Recorder

    data = tmp_path / 'data'
    data.mkdir()
    SubjectFile.create(data / 'm1.h5', 'm1').close()
    (data / 'junk.h5').write_bytes(b'not HDF5 ' * 100)
    (data / 'bad name.h5').write_bytes(b'')
    with h5py.File(data / 'plain.h5', 'w') as h:
        h['x'] = 1
    rec = Recorder(data)
    try:
        subjects, problems = rec.call(lambda r: catalog.scan(r, Catalog())).result(10)
    finally:
        rec.close()
    assert [s.subject for s in subjects] == ['m1']
    assert len(problems) == 3, problems
    assert str(data / 'bad name.h5') in problems[0] and 'not a subject name' in problems[0]
    assert str(data / 'junk.h5') in problems[1] and str(data / 'plain.h5') in problems[2]


def test_protocols_are_summarised_validated_and_saved_atomically(tmp_path):
    pdir = tmp_path / 'protocols'
    pdir.mkdir()
    (pdir / 'fast.yaml').write_text(FAST_PROTOCOL)
    (pdir / 'broken.yaml').write_text(FAST_PROTOCOL.replace('task: 2afc\n    parameters: {iti_s: 0.05, response_'
                                                            'window_s: 3.0, punish_timeout_s: 0.1, tone_ms: 30.0, '
                                                            'noise_ms: 30.0,\n                 reward_ul: 5.0',
                                                            'task: nope\n    parameters: {iti_s: 0.05, response_'
                                                            'window_s: 3.0, punish_timeout_s: 0.1, tone_ms: 30.0, '
                                                            'noise_ms: 30.0,\n                 reward_ul: 5.0')
                                      .replace('name: fast', 'name: broken'))
    (pdir / 'notes.txt').write_text('not a protocol')
    infos = [catalog.protocol_info(p) for p in catalog.protocol_files(pdir)]
    assert [i.name for i in infos] == ['broken', 'fast']
    fast = infos[1]
    assert fast.error == '' and fast.steps == ('2afc with correction', '2afc') and fast.tasks == ('2afc', '2afc')
    assert len(fast.sha256) == 64 and fast.text == FAST_PROTOCOL
    assert f'{pdir / "broken.yaml"}:' in infos[0].error and 'steps[1].task' in infos[0].error
    assert infos[0].tasks == ('2afc', 'nope')
    with pytest.raises(ValueError, match="unknown protocol 'nope' .*known: broken, fast"):
        catalog.find_protocol(pdir, 'nope')
    with pytest.raises(ValueError, match='is not valid'):
        catalog.find_protocol(pdir, '../fast')
    # Saving: validated before anything is written, never over a file unless asked, atomically.
    new = FAST_PROTOCOL.replace('name: fast', 'name: fast2')
    assert catalog.save_protocol(pdir, 'fast2', new, False) == pdir / 'fast2.yaml'
    assert (pdir / 'fast2.yaml').read_text() == new
    with pytest.raises(ValueError, match='exists already; save with overwrite'):
        catalog.save_protocol(pdir, 'fast2', new, False)
    edited = new.replace('reward_ul: 6.0', 'reward_ul: 7.0')
    catalog.save_protocol(pdir, 'fast2', edited, True)
    assert (pdir / 'fast2.yaml').read_text() == edited
    with pytest.raises(ValueError, match=r'fast2.yaml:\d+: steps\[1\].task'):
        catalog.save_protocol(pdir, 'fast2', edited.replace('task: 2afc\n    parameters: {iti_s: 0.05, response_'
                                                            'window_s: 3.0, punish_timeout_s: 0.1, tone_ms: 30.0, '
                                                            'noise_ms: 30.0,\n                 reward_ul: 5.0',
                                                            'task: nope\n    parameters: {iti_s: 0.05, response_'
                                                            'window_s: 3.0, punish_timeout_s: 0.1, tone_ms: 30.0, '
                                                            'noise_ms: 30.0,\n                 reward_ul: 5.0'), True)
    with pytest.raises(ValueError, match=r':3: not valid YAML'):
        catalog.save_protocol(pdir, 'x', 'name: x\nsteps:\n  - [', False)
    with pytest.raises(ValueError, match='differs from the file name'):
        catalog.save_protocol(pdir, 'other', FAST_PROTOCOL, False)
    for bad in ('../x', '', '.hidden', 'a b', 'x' * 65):
        with pytest.raises(ValueError, match='is not valid'):
            catalog.save_protocol(pdir, bad, FAST_PROTOCOL, False)
    with pytest.raises(ValueError, match='bytes; at most'):
        catalog.save_protocol(pdir, 'big', 'x' * (1 << 20) + 'x', False)
    assert (pdir / 'fast2.yaml').read_text() == edited
    assert sorted(os.listdir(pdir)) == ['broken.yaml', 'fast.yaml', 'fast2.yaml', 'notes.txt']  # no temp file left

    def crash(fd: int) -> None:
        raise OSError('disk full')
    with pytest.raises(OSError, match='disk full'):
        catalog.save_protocol(pdir, 'fast2', FAST_PROTOCOL.replace('name: fast', 'name: fast2'), True, sync=crash)
    assert (pdir / 'fast2.yaml').read_text() == edited
    assert sorted(os.listdir(pdir)) == ['broken.yaml', 'fast.yaml', 'fast2.yaml', 'notes.txt']
