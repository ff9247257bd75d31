"""TrialWriter: trials are journalled before they are published, in order, off the caller's thread."""

from __future__ import annotations

import threading

from autopilot_pilot.journal import Journal
from autopilot_pilot.writer import TrialWriter


def test_each_trial_is_durable_before_it_is_published_and_order_is_kept(tmp_path):
    journal = Journal(tmp_path / 'j.sqlite3')
    journal.begin_session('s1', subject='m1', task='2afc')
    published: list[tuple[bytes, bool, str]] = []

    def publish(payload: bytes) -> None:
        number = int(payload.decode())
        in_journal = journal.trial('s1', number) is not None
        published.append((payload, in_journal, threading.current_thread().name))

    errors: list[tuple[str, bool]] = []
    writer = TrialWriter(journal, publish, lambda text, fatal: errors.append((text, fatal)))
    for n in range(1, 51):
        writer.submit('s1', n, str(n).encode(), {'n': n}, n)
    assert writer.flush(10)
    assert [p[0] for p in published] == [str(n).encode() for n in range(1, 51)]
    assert all(in_journal for _, in_journal, _ in published), 'a trial was published before it was journalled'
    assert {name for _, _, name in published} == {'trial-writer'}
    assert errors == [] and journal.stats('s1').trials == 50
    writer.close()
    journal.close()


def test_a_trial_that_cannot_be_journalled_is_reported_and_not_published(tmp_path):
    journal = Journal(tmp_path / 'j.sqlite3')
    journal.begin_session('s1', subject='m1', task='2afc')
    published: list[bytes] = []
    errors: list[tuple[str, bool]] = []
    writer = TrialWriter(journal, published.append, lambda text, fatal: errors.append((text, fatal)))
    writer.submit('s1', 1, b'first', {}, 1)
    writer.submit('s1', 1, b'other bytes, same number', {}, 2)  # trial numbers are never reused
    writer.submit('s9', 1, b'unknown session', {}, 3)
    assert writer.flush(10)
    assert published == [b'first']
    assert [fatal for _, fatal in errors] == [True, True]
    assert errors[0][0].startswith('trial 1 could not be journalled')

    def broken_publish(_payload: bytes) -> None:
        raise RuntimeError('context is shut down')
    writer.publish = broken_publish
    writer.submit('s1', 2, b'second', {}, 4)
    assert writer.flush(10)
    assert errors[-1] == ('trial 2 journalled but not published (context is shut down); it will be resent', False)
    assert journal.trial('s1', 2) is not None and not journal.trial('s1', 2).acked
    writer.close()
    journal.close()
