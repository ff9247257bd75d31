"""Nothing grows with the number of trials: timers, subscriptions and memory of the pilot over a long session.

The pilot reports its timer and subscription counts and its RSS on ``/diagnostics``
(:mod:`autopilot_core.guard`). A session of short 2AFC trials runs on a simulated rig. Timers must be back
where they were before the session once it ended, and never more than a trial's few during it;
subscriptions and memory are read once the session has settled (after ``WARMUP`` trials) and at its end:
subscriptions must not change; memory may grow only by what the session keeps on purpose (each trial's fields, for
graduation and bias correction: well under ``MAX_BYTES_PER_TRIAL``).
The default run is short; ``-m soak`` runs ``AUTOPILOT_SOAK_TRIALS`` (default 5000) trials.
"""

from __future__ import annotations

import os

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from test_pilot import FAST_TASK, Terminal, goal, journal_of, start_rig

from autopilot_core.executors import spin

WARMUP = 30
#: What one trial may add to the pilot's memory: its fields in the task history and the session's progress.
MAX_BYTES_PER_TRIAL = 4096
#: RSS moves by allocator pages and a Python arena at a time whatever the code does.
RSS_SLACK_KB = 4096


def run_soak(procs, node, tmp_path, n: int) -> dict:
    rig = start_rig(procs, tmp_path, 'rig1')
    term = Terminal(node, 'rig1')
    diag: dict[str, dict[str, str]] = {}
    timers_seen: list[int] = []

    def on_diag(m: DiagnosticArray) -> None:
        for s in m.status:
            diag[s.name] = {k.key: k.value for k in s.values}
            if s.name == '/rig1/pilot: input':
                timers_seen.append(int(diag[s.name]['timers']))
    node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 50)
    term.spin_until(lambda: bool(timers_seen), 20, 'no diagnostics from the pilot')
    idle = dict(diag['/rig1/pilot: input'])
    handle = term.send(goal(task='2afc', max_trials=n, correction_trials=False, bias_correction=False, **FAST_TASK))
    assert handle.accepted
    result_future = handle.get_result_async()

    def pilot() -> dict[str, str]:
        return diag.get('/rig1/pilot: input', {})

    def trials() -> int:
        return len(term.trials)

    term.spin_until(lambda: trials() >= WARMUP, 120, f'{trials()} trials')
    spin(node, node.executor_, timeout_sec=2.5)  # a diagnostics period: the counts of the warmed-up session
    start = dict(pilot())
    start_trials = trials()
    assert spin(node, node.executor_, until=result_future, timeout_sec=n * 2.0 + 60), f'{trials()} of {n} trials'
    # A wait in flight holds a one-shot timer for a moment (a service answered, a coroutine's deadline): what the
    # session leaked stays, so wait up to a few diagnostics periods for the idle count.
    spin(node, node.executor_, timeout_sec=2.5)
    spin(node, node.executor_, timeout_sec=10, until=lambda: pilot().get('timers') == idle['timers'])
    end = dict(pilot())
    result = result_future.result().result
    assert result.success and result.n_trials == n, result.message
    grown_kb = int(end['rss_kb']) - int(start['rss_kb'])
    figures = {'trials': n, 'timers_idle_before_after': (idle['timers'], end['timers']),
               'timers_max_in_session': max(timers_seen),
               'subscriptions': (start['subscriptions'], end['subscriptions']),
               'rss_kb': (int(start['rss_kb']), int(end['rss_kb'])),
               'bytes_per_trial': round(grown_kb * 1024 / (n - start_trials), 1)}
    print(figures)
    assert idle['timers'] == end['timers'], figures  # every timer of the session is gone with it
    assert max(timers_seen) <= int(idle['timers']) + 4, figures  # a trial holds a few, never an accumulation
    assert start['subscriptions'] == end['subscriptions'], figures
    assert grown_kb <= RSS_SLACK_KB + (n - start_trials) * MAX_BYTES_PER_TRIAL / 1024, figures
    stats = journal_of(rig).stats(result.session_id)
    assert (stats.trials, stats.unacked_trials) == (n, 0)
    return figures


def test_timers_subscriptions_and_memory_stay_flat_over_a_session(procs, node, tmp_path):
    run_soak(procs, node, tmp_path, 70)


@pytest.mark.soak
@pytest.mark.timeout(4 * 3600)
def test_soak_thousands_of_trials(procs, node, tmp_path):
    run_soak(procs, node, tmp_path, int(os.environ.get('AUTOPILOT_SOAK_TRIALS', '5000')))
