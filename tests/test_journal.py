"""The pilot's trial journal: append/ack semantics, reopening, SIGKILL durability, bad and locked files."""

from __future__ import annotations

import math
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from autopilot_pilot.journal import SCHEMA_VERSION, Journal, JournalError


@pytest.fixture
def journal(tmp_path: Path):
    j = Journal(tmp_path / 'journal.sqlite')
    yield j
    j.close()


def _session(j: Journal, sid: str = 's1', **kw) -> None:
    kw.setdefault('subject', 'mouse1')
    kw.setdefault('task', '2afc')
    j.begin_session(sid, **kw)


def test_append_ack_unacked(journal: Journal) -> None:
    _session(journal, protocol='2afc_training', step=1, step_name='2afc easy', parameters={'reward_ul': 5.0})
    assert journal.next_trial_number('s1') == 1
    for n in range(1, 6):
        assert journal.append('s1', n, f'trial {n}'.encode(), {'correct': n % 2 == 0})
    assert journal.last_trial_number('s1') == 5 and journal.next_trial_number('s1') == 6
    assert [t.trial_number for t in journal.unacked()] == [1, 2, 3, 4, 5]
    assert journal.unacked()[1].meta == {'correct': True}
    assert [t.trial_number for t in journal.unacked(limit=2)] == [1, 2]

    assert journal.ack('s1', [2, 4, 99]) == 2  # 99 is not journalled: ignored
    assert journal.ack('s1', [2, 4]) == 0  # idempotent
    assert journal.ack('s1', []) == 0
    assert journal.ack('other', [1]) == 0
    assert [t.trial_number for t in journal.unacked()] == [1, 3, 5]
    acked = journal.trial('s1', 2)
    assert acked is not None and acked.acked and acked.acked_ns is not None
    st = journal.stats()
    assert (st.sessions, st.open_sessions, st.trials, st.unacked_trials) == (1, 1, 5, 3)


def test_unacked_ordered_by_session_then_number(journal: Journal) -> None:
    _session(journal, 'b-older', started_ns=100)
    _session(journal, 'a-newer', started_ns=200)
    journal.append('a-newer', 2, b'x')
    journal.append('b-older', 3, b'x')
    journal.append('a-newer', 1, b'x')
    journal.append('b-older', 1, b'x')
    assert [(t.session_id, t.trial_number) for t in journal.unacked()] == [
        ('b-older', 1), ('b-older', 3), ('a-newer', 1), ('a-newer', 2)]


def test_append_deduplicates(journal: Journal) -> None:
    _session(journal)
    assert journal.append('s1', 1, b'\x00\x01payload') is True
    assert journal.append('s1', 1, bytearray(b'\x00\x01payload')) is False  # a retry: no duplicate
    with pytest.raises(JournalError, match=r"trial 1 of session 's1' is already journalled with a different "
                                           r'payload.*next free: 2'):
        journal.append('s1', 1, b'something else')
    assert journal.stats().trials == 1
    assert journal.trial('s1', 1).payload == b'\x00\x01payload'


def test_append_needs_a_session_and_sane_input(journal: Journal) -> None:
    with pytest.raises(JournalError, match="unknown session 'nope'; call begin_session first"):
        journal.append('nope', 1, b'x')
    _session(journal)
    with pytest.raises(JournalError, match='trial_number must be >= 1'):
        journal.append('s1', 0, b'x')
    with pytest.raises(JournalError, match='payload must be bytes'):
        journal.append('s1', 1, 'text')  # type: ignore[arg-type]
    with pytest.raises(JournalError, match='meta must be JSON-serialisable'):
        journal.append('s1', 1, b'x', {'f': object()})
    assert journal.stats().trials == 0


def test_sessions(journal: Journal) -> None:
    s = journal.begin_session('s1', subject='m1', task='free_water', protocol='p', parameters={'reward_ul': 8.0},
                              started_ns=10)
    assert s.state == 'running' and not s.ended and s.parameters == {'reward_ul': 8.0}
    # begin again after a crash: same session back, unchanged
    assert journal.begin_session('s1', subject='m1', task='free_water', protocol='p') == s
    with pytest.raises(JournalError, match="session 's1' already exists for subject 'm1'"):
        journal.begin_session('s1', subject='m2', task='free_water', protocol='p')
    _session(journal, 's2', started_ns=20)
    assert [x.session_id for x in journal.open_sessions()] == ['s1', 's2']
    assert journal.update_session('s2', state='paused', parameters={'a': 1}).state == 'paused'
    assert journal.end_session('s1', ended_ns=99) is True
    assert journal.end_session('s1', ended_ns=123) is False  # the first end time stays
    assert journal.session('s1').ended_ns == 99 and journal.session('s1').state == 'ended'
    assert [x.session_id for x in journal.open_sessions()] == ['s2']
    assert [x.session_id for x in journal.sessions()] == ['s1', 's2']
    assert journal.session('nope') is None
    with pytest.raises(JournalError, match='unknown session'):
        journal.end_session('nope')
    assert journal.stats('s1').open_sessions == 0 and journal.stats().open_sessions == 1


def test_step_changes_resent_until_acked(journal: Journal) -> None:
    _session(journal, step=0, step_name='free water')
    for n in range(1, 4):
        journal.append('s1', n, b'x')
    seq = journal.record_step('s1', after_trial=3, from_step=0, to_step=1, reason='3 trials >= 3',
                              payload=b'cdr', step_name='2afc easy', parameters={'reward_ul': 5.0})
    assert seq == 1
    s = journal.session('s1')
    assert (s.step, s.step_name, s.parameters) == (1, '2afc easy', {'reward_ul': 5.0})
    assert journal.record_step('s1', after_trial=3, from_step=1, to_step=0, reason='manual') == 2
    pending = journal.unacked_steps()
    assert [(c.seq, c.after_trial, c.from_step, c.to_step, c.payload) for c in pending] == [
        (1, 3, 0, 1, b'cdr'), (2, 3, 1, 0, b'')]
    assert journal.ack_steps('s1', [1]) == 1 and journal.ack_steps('s1', [1]) == 0
    assert [c.seq for c in journal.unacked_steps()] == [2]
    assert [c.acked for c in journal.steps('s1')] == [True, False]
    assert journal.stats().unacked_steps == 1
    with pytest.raises(JournalError, match='unknown session'):
        journal.record_step('nope', after_trial=0, from_step=0, to_step=1, reason='')


def test_reopen_after_close_keeps_everything(tmp_path: Path) -> None:
    from autopilot_msgs.msg import TrialData, TrialField
    from rclpy.serialization import deserialize_message, serialize_message

    msg = TrialData(pilot='p1', subject='m1', session_id='s1', trial_number=1, task='2afc',
                    fields=[TrialField(name='correct', type=TrialField.TYPE_BOOL, bool_value=True)])
    cdr = serialize_message(msg)
    path = tmp_path / 'sub' / 'dir' / 'journal.sqlite'  # parents are created
    with Journal(path) as j:
        _session(j)
        j.append('s1', 1, cdr, {'correct': True})
        j.append('s1', 2, b'two')
        j.ack('s1', [2])
        j.record_step('s1', after_trial=2, from_step=0, to_step=1, reason='r')
    assert j.closed
    with pytest.raises(JournalError, match='is closed'):
        j.unacked()
    with Journal(path) as j:
        (pending,) = j.unacked()
        assert pending.payload == cdr  # the resend is byte-identical
        assert deserialize_message(pending.payload, TrialData) == msg
        assert j.next_trial_number('s1') == 3 and [s.session_id for s in j.open_sessions()] == ['s1']
        assert [c.to_step for c in j.unacked_steps()] == [1]
        assert j.integrity_check() == ['ok']
        assert j.append('s1', 1, cdr) is False
    with sqlite3.connect(path) as db:
        assert db.execute('PRAGMA user_version').fetchone()[0] == SCHEMA_VERSION
        assert db.execute('PRAGMA journal_mode').fetchone()[0] == 'wal'


def test_second_thread_may_append(journal: Journal) -> None:
    _session(journal, 'a')
    _session(journal, 'b')
    errors: list[BaseException] = []

    def run(sid: str) -> None:
        try:
            for n in range(1, 101):
                journal.append(sid, n, f'{sid}{n}'.encode())
        except BaseException as exc:  # noqa: B036, BLE001 - reported to the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(sid,)) for sid in 'ab']
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert journal.last_trial_number('a') == journal.last_trial_number('b') == 100
    assert journal.stats().unacked_trials == 200


def test_durable_append_time(journal: Journal, capsys: pytest.CaptureFixture[str]) -> None:
    """A measurement, not a requirement: how long one fsync'd append takes on this machine's disk."""
    _session(journal)
    payload = os.urandom(300)  # about a TrialData with a dozen fields
    times = []
    for n in range(1, 301):
        t0 = time.perf_counter()
        journal.append('s1', n, payload)
        times.append(time.perf_counter() - t0)
    times.sort()
    with capsys.disabled():
        print(f'\ndurable append ({journal.path.parent}): median {statistics.median(times) * 1e3:.2f} ms, '
              f'p95 {times[int(len(times) * 0.95)] * 1e3:.2f} ms, max {times[-1] * 1e3:.2f} ms over {len(times)}')


# ------------------------------------------------------------------------------------------- crashes

_WRITER = textwrap.dedent('''
    import sys
    from autopilot_pilot.journal import Journal
    j = Journal(sys.argv[1])
    j.begin_session('s1', subject='m1', task='2afc')
    n = j.next_trial_number('s1')
    while True:
        j.append('s1', n, b'%d' % n * 40, {'n': n})
        print(n, flush=True)  # printed only after append returned: the trial is durable now
        n += 1
''')


def test_sigkill_loses_no_appended_trial(tmp_path: Path) -> None:
    path = tmp_path / 'journal.sqlite'
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    printed: set[int] = set()
    for round_ in range(6):
        out_path = tmp_path / f'out{round_}.txt'
        with open(out_path, 'wb') as out:
            child = subprocess.Popen([sys.executable, '-c', _WRITER, str(path)], stdout=out, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 30
            while out_path.read_bytes().count(b'\n') < 3:
                assert child.poll() is None, child.stderr.read().decode()
                assert time.monotonic() < deadline, 'the writer printed nothing'
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.3))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
            child.stderr.close()
        lines = out_path.read_bytes().split(b'\n')[:-1]  # the last one may be cut short
        printed |= {int(x) for x in lines}
        with Journal(path) as j:
            assert j.integrity_check() == ['ok'], f'seed {seed}'
            numbers = [t.trial_number for t in j.trials('s1')]
            missing = printed - set(numbers)
            assert not missing, f'seed {seed}, round {round_}: printed but not journalled: {sorted(missing)[:10]}'
            # no holes and no duplicates: at most the one trial being appended when the kill came is extra
            assert numbers == list(range(1, len(numbers) + 1))
            assert len(numbers) - max(printed) in (0, 1), f'seed {seed}'
            assert all(t.payload == b'%d' % t.trial_number * 40 for t in j.trials('s1'))


# ------------------------------------------------------------------------------------------- bad files

def test_garbage_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / 'journal.sqlite'
    path.write_bytes(b'not a database at all\n' * 300)
    with pytest.raises(JournalError) as info:
        Journal(path)
    text = str(info.value)
    assert str(path) in text and 'corrupt or not a journal' in text
    assert 'move the file aside' in text and 'journal_path' in text


def test_damaged_pages_are_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / 'journal.sqlite'
    with Journal(path) as j:
        _session(j)
        for n in range(1, 301):
            j.append('s1', n, os.urandom(200))
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 5 * page
    data[2 * page:4 * page] = b'\xa5' * (2 * page)  # clobber b-tree pages, keep the header valid
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError, match=r'is corrupt.*move the file aside'):
        Journal(path)


def test_other_sqlite_database_is_not_a_journal(tmp_path: Path) -> None:
    path = tmp_path / 'other.db'
    with sqlite3.connect(path) as db:
        db.execute('CREATE TABLE animals (name TEXT)')
    db.close()
    with pytest.raises(JournalError, match=r'SQLite database but not a pilot journal \(tables: animals\)'):
        Journal(path)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / 'journal.sqlite'
    Journal(path).close()
    db = sqlite3.connect(path)
    db.execute(f'PRAGMA user_version={SCHEMA_VERSION + 1}')
    db.close()
    with pytest.raises(JournalError, match=f'schema version {SCHEMA_VERSION + 1}, written by a newer'):
        Journal(path)


def test_directory_and_unwritable_paths(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match='is a directory'):
        Journal(tmp_path)
    blocker = tmp_path / 'file'
    blocker.write_text('')
    with pytest.raises(JournalError, match='cannot create the directory of journal'):
        Journal(blocker / 'journal.sqlite')


_HOLDER = textwrap.dedent('''
    import sys, time
    from autopilot_pilot.journal import Journal
    j = Journal(sys.argv[1])
    print('ready', flush=True)
    sys.stdin.read()  # hold the journal until the test closes our stdin
''')


def test_journal_locked_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / 'journal.sqlite'
    holder = subprocess.Popen([sys.executable, '-c', _HOLDER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b'ready\n', holder.stderr.read().decode()
        t0 = time.monotonic()
        with pytest.raises(JournalError) as info:
            Journal(path, timeout=0.2)
        assert time.monotonic() - t0 < 5
        text = str(info.value)
        assert str(path) in text and 'locked by another process' in text and 'journal_path' in text
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
        holder.stdout.close()
        holder.stderr.close()
    with Journal(path) as j:  # free again once the holder has gone
        assert j.stats().sessions == 0


def test_step_history_reads_trials_whose_fields_hold_nan(journal: Journal) -> None:
    # A miss has no reaction time (NaN): the journal stores it, and graduation must still read the history.
    _session(journal, 'a', protocol='p', step=1)
    _session(journal, 'b', subject='other', protocol='p', step=1)
    journal.append('a', 1, b'1', {'step': 1, 'fields': {'correct': False, 'rt_ms': math.nan}})
    journal.append('a', 2, b'2', {'step': 0, 'fields': {'correct': True}})
    journal.append('a', 3, b'3', {'step': 1, 'fields': {'correct': True, 'rt_ms': 250.0}})
    journal.append('a', 4, b'4', {'step': 1})  # no fields: not a scored trial
    journal.append('b', 1, b'1', {'step': 1, 'fields': {'correct': True}})
    fields, n_sessions = journal.step_history('mouse1', 'p', 1)
    assert [f['correct'] for f in fields] == [False, True] and math.isnan(fields[0]['rt_ms'])
    assert n_sessions == 0
    journal.end_session('a')
    assert journal.step_history('mouse1', 'p', 1)[1] == 1
