"""The window's model without Qt or ROS processes: rows from the registry, trials kept once, backfill, curves."""

from __future__ import annotations

import math

from autopilot_msgs.msg import PilotEntry, PilotRegistry, PilotStatus, SubjectList, SubjectSummary, TrialData
from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot_core import trial_fields
from autopilot_gui.model import COLUMNS, MAX_TRIALS, REPAIR_S, Lab, psychometric


def registry(*entries: tuple[str, bool, int, str]) -> PilotRegistry:
    msg = PilotRegistry()
    for name, online, state, sid in entries:
        st_ = PilotStatus(pilot=name, state=state, task='2afc' if sid else '', subject='m1' if sid else '',
                          session_id=sid, protocol='fast' if sid else '', step=1, trial_count=3)
        msg.pilots.append(PilotEntry(pilot=name, online=online, last_seen_s=0.5, last_status=st_))
    return msg


def trial(pilot: str, sid: str, n: int, correct: bool | None = True, correction: bool = False) -> TrialData:
    values = {'response': 'left', 'correction': correction}
    if correct is not None:
        values['correct'] = correct
    fields = [trial_fields.make(k, trial_fields.CODE_OF[type(v)], '', v) for k, v in values.items()]
    msg = TrialData(pilot=pilot, subject='m1', session_id=sid, trial_number=n, task='2afc', fields=fields)
    msg.header.stamp.sec = 1000 + n
    return msg


def test_rows_appear_by_themselves_and_go_grey_when_forgotten() -> None:
    lab = Lab()
    lab.registry(registry(('rig2', True, PilotStatus.STATE_IDLE, ''), ('rig1', True, PilotStatus.STATE_RUNNING, 's1')))
    assert list(lab.pilots) == ['rig1', 'rig2']
    cells = dict(zip(('pilot', 'state', 'task', 'subject', 'step'), lab.cells('rig1', now=0.0), strict=False))
    assert cells == {'pilot': 'rig1', 'state': 'running', 'task': '2afc', 'subject': 'm1', 'step': '1'}
    subjects = SubjectList(subjects=[SubjectSummary(subject='m1', protocol='fast', step_names=['easy', 'hard'],
                                                    pilot='rig1'), SubjectSummary(subject='a0', pilot='rig2')])
    lab.subject_list(subjects)
    assert lab.cells('rig1', now=0.0)[4] == '1: hard'  # the step's name, from the subject list
    assert lab.roster('rig2') == ['a0', 'm1'] and lab.roster('rig1') == ['m1', 'a0']
    lab.registry(registry(('rig1', True, PilotStatus.STATE_RUNNING, 's1')))  # rig2 forgotten by the terminal
    assert not lab.pilots['rig2'].online and lab.cells('rig2', now=0.0)[1].startswith('offline')


def test_the_clock_column_shows_each_pilots_offset_and_ignores_nonsense() -> None:
    lab = Lab()
    msg = registry(('rig1', True, PilotStatus.STATE_IDLE, ''))
    msg.pilots[0].clock_offset_ms = msg.pilots[0].clock_delay_ms = math.nan  # the terminal's "not measured yet"
    lab.registry(msg)
    assert lab.cells('rig1', now=0.0)[COLUMNS.index('clock')] == '-'
    msg.pilots[0].clock_offset_ms, msg.pilots[0].clock_delay_ms = 501.26, 0.8
    lab.registry(msg)
    assert lab.cells('rig1', now=0.0)[COLUMNS.index('clock')] == '+501.3 ms (\u00b10.4)'
    for bad in (math.nan, math.inf, 1e308):
        msg.pilots[0].clock_offset_ms = bad
        lab.registry(msg)
        assert lab.cells('rig1', now=0.0)[COLUMNS.index('clock')] == '-'


def test_trials_are_kept_once_from_their_own_pilot_and_scored_like_the_tasks() -> None:
    lab = Lab()
    lab.registry(registry(('rig1', True, PilotStatus.STATE_RUNNING, 's1')))
    assert lab.trial('rig1', trial('rig1', 's1', 1, True)) is not None
    assert lab.trial('rig1', trial('rig1', 's1', 1, True)) is None  # a resend
    assert lab.trial('rig1', trial('rig2', 's1', 2, True)) is None and lab.bad_trials == 1  # another rig's name
    assert lab.trial('rig9', trial('rig9', 's1', 1, True)) is None  # a pilot the terminal does not list
    lab.trial('rig1', trial('rig1', 's1', 2, False))
    lab.trial('rig1', trial('rig1', 's1', 3, False, correction=True))  # left out of accuracy
    lab.trial('rig1', trial('rig1', 's1', 4, None))  # not scored
    assert lab.pilots['rig1'].accuracy() == 0.5
    assert lab.cells('rig1', now=1e9)[6] == '50%'


def test_backfill_puts_stored_trials_before_the_live_ones_and_renumbers() -> None:
    lab = Lab()
    lab.registry(registry(('rig1', True, PilotStatus.STATE_RUNNING, 's2')))
    lab.trial('rig1', trial('rig1', 's1', 9))   # an older session, seen live
    for n in (7, 8):
        lab.trial('rig1', trial('rig1', 's2', n))
    added = lab.backfill('rig1', [trial('rig1', 's2', n) for n in range(1, 9)])
    assert added == 6
    row = lab.pilots['rig1']
    assert [(t.session_id, t.number) for t in row.trials] == [('s1', 9)] + [('s2', n) for n in range(1, 9)]
    assert [t.index for t in row.trials] == list(range(9))
    assert lab.backfill('rig1', [trial('rig1', 's2', 3)]) == 0


def test_a_trial_the_heartbeat_counted_but_never_arrived_is_asked_for_after_a_while() -> None:
    lab = Lab()
    lab.registry(registry(('rig1', True, PilotStatus.STATE_RUNNING, 's2')))  # the heartbeat counts 3 trials
    lab.trial('rig1', trial('rig1', 's1', 2))  # another session's trial 2 is not this one's
    for n in (1, 3, 4, 5):  # the heartbeat lags the trials: a count alone would not show the gap
        lab.trial('rig1', trial('rig1', 's2', n))
    # Trial 2 may be in flight: not asked for at once, then asked for until it is there.
    assert lab.missing('rig1', now=100.0) is None
    assert lab.missing('rig1', now=100.0 + REPAIR_S / 2) is None
    assert lab.missing('rig1', now=100.0 + REPAIR_S) == 2
    assert lab.missing('rig1', now=200.0) == 2
    assert lab.backfill('rig1', [trial('rig1', 's2', n) for n in (1, 2, 3)], now=200.0) == 1
    assert lab.missing('rig1', now=300.0) is None
    assert [t.number for t in lab.pilots['rig1'].session_trials()] == [1, 2, 3, 4, 5]
    # A trial counted and lost at the end waits as long; an idle pilot or an unknown one has nothing missing.
    st_ = registry(('rig1', True, PilotStatus.STATE_RUNNING, 's2'))
    st_.pilots[0].last_status.trial_count = 6
    lab.registry(st_)
    assert lab.missing('rig1', now=300.0) is None and lab.missing('rig1', now=300.0 + REPAIR_S) == 6
    lab.registry(registry(('rig1', True, PilotStatus.STATE_IDLE, '')))
    assert lab.missing('rig1', now=400.0) is None and lab.missing('rig9') is None


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3 * MAX_TRIALS), st.sampled_from([True, False, None]), st.booleans()),
                min_size=1, max_size=50), st.integers(0, MAX_TRIALS + 10))
def test_trials_stay_bounded_unique_and_tallied(trials: list[tuple[int, bool | None, bool]], filler: int) -> None:
    lab = Lab()
    lab.registry(registry(('rig1', True, PilotStatus.STATE_RUNNING, 's1')))
    for n in range(filler):  # an older session, pushed out by the cap as the new one grows
        lab.trial('rig1', trial('rig1', 's0', n + 1))
    for n, correct, correction in trials:
        lab.trial('rig1', trial('rig1', 's1', n, correct, correction))
    row = lab.pilots['rig1']
    assert len(row.trials) == min(len({n for n, _, _ in trials}) + filler, MAX_TRIALS)
    assert len({(t.session_id, t.number) for t in row.trials}) == len(row.trials)
    # The running tally says what a scan of the kept trials says.
    for sid in ('s0', 's1'):
        scored = [t.values['correct'] for t in row.session_trials(sid)
                  if isinstance(t.values.get('correct'), bool) and not t.values['correction']]
        assert row.accuracy(sid) == (sum(scored) / len(scored) if scored else None)


def test_psychometric_curve_per_level() -> None:
    values = [{'level': lv, 'response': r} for lv, r in
              [(-1.0, 'left'), (-1.0, 'left'), (-1.0, 'right'), (0.0, 'right'), (0.0, 'left'), (1.0, 'right'),
               (1.0, 'none'), (math.nan, 'right'), (True, 'right')]]
    assert psychometric(values, 'level', 'response', 'right') == [(-1.0, 1 / 3, 3), (0.0, 0.5, 2), (1.0, 1.0, 1)]


def test_the_window_never_touches_subject_files() -> None:
    """DESIGN.md: one writer per file. The window is a client of the terminal: it imports neither h5py nor the
    terminal's storage or recorder, so it cannot open a subject file, on any host."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / 'src' / 'autopilot_gui' / 'autopilot_gui'
    imported = set()
    for path in root.glob('*.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
    assert not {m for m in imported if m.split('.')[0] in ('h5py', 'autopilot_terminal', 'autopilot_pilot')}, imported


def test_the_table_fills_the_rows_in_view_and_a_row_scrolled_to_at_once(qtbot) -> None:
    """A real PilotTable (offscreen): 40 pilots, a table 6 rows high; the texts of rows out of view are filled when
    they are scrolled to, not on every tick (bench/gui.py: the table's refresh was a large part of a drain)."""
    from autopilot_gui.widgets import PilotTable

    lab = Lab()
    lab.registry(registry(*[(f'rig{i:02d}', True, PilotStatus.STATE_RUNNING, f's{i}') for i in range(40)]))
    table = PilotTable(lab, lambda *_: None)
    qtbot.addWidget(table)
    table.resize(900, 200)
    table.show()
    qtbot.waitExposed(table)
    table.refresh(now=0.0)
    state = COLUMNS.index('state')
    assert table.item(0, state).text() == 'running'
    assert table.item(39, state).text() == ''           # out of view: not filled yet
    table.scrollToBottom()                              # the scroll bar's signal fills what came into view
    assert table.item(39, state).text() == 'running'
    # Every row is filled while the table is not shown (a window being built, or a test reading it).
    table.hide()
    lab.registry(registry(*[(f'rig{i:02d}', True, PilotStatus.STATE_PAUSED, f's{i}') for i in range(40)]))
    table.refresh(now=0.0)
    assert {table.item(r, state).text() for r in range(40)} == {'paused'}


def test_plots_following_draw_what_the_view_shows_and_all_once_the_user_scrolls(qtbot) -> None:
    from autopilot_gui.plots import DRAWN, PilotPlots, spec_for

    lab = Lab()
    lab.registry(registry(('rig1', True, PilotStatus.STATE_RUNNING, 's1')))
    for n in range(1, 1501):
        lab.trial('rig1', trial('rig1', 's1', n, correct=n % 3 != 0))
    row = lab.pilots['rig1']
    spec = spec_for('2afc', row.fields)
    plots = PilotPlots('rig1', spec, {})
    qtbot.addWidget(plots)
    plots.draw(row)
    points = [i for k, i in plots._items.items() if k.startswith('points:')]
    drawn = sum(len(i.getData()[0]) for i in points)
    assert drawn == spec.window + max(spec.window, 20)   # the view, and a rolling mean's worth before it
    lo, hi = plots.main.getViewBox().viewRange()[0]
    assert hi >= row.trials[-1].index + 1 and hi - lo == spec.window
    plots._stop_following()                              # what a mouse zoom or drag does
    assert sum(len(i.getData()[0]) for i in points) == DRAWN
