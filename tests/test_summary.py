"""The per-subject summary figure (``autopilot plot FILE``): a real PNG of the promised size, the right
numbers on it (rolling accuracy without correction trials, steps, sessions), and clear errors.

The design was checked by eye on subjects made by test_export_nwb.make_subject (2AFC with free water first,
free water only, one session, 54 sessions); an example is what `autopilot plot` writes for such a file.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import cli, cli_many, error_line, ok
from test_export_nwb import make_subject

from autopilot_terminal.storage import SubjectFile, SubjectReader
from autopilot_terminal.summary import DPI, FIGSIZE, WINDOW, summary_figure, summary_png

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk (after checking it is a PNG)."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE and head[12:16] == b'IHDR', head
    return struct.unpack('>II', head[16:24])


@pytest.fixture(scope='module')
def two_afc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp('summary') / 'mouse7.h5'
    make_subject(path, free_water=1, two_afc=4)
    return path


def test_png_of_the_promised_size(two_afc: Path, tmp_path: Path) -> None:
    out = summary_png(two_afc, tmp_path / 's.png')
    assert png_size(out) == (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI)) == (1200, 960)
    assert out.stat().st_size > 30_000  # a drawn figure, not an empty canvas


def test_the_figure_shows_accuracy_without_correction_trials_steps_and_sessions(two_afc: Path) -> None:
    fig = summary_figure(two_afc)
    with SubjectReader(two_afc) as r:
        sids = r.sessions()
        n = sum(r.trials(s)['trial_number'].size for s in sids)
        first = r.trials(sids[0])['trial_number'].size + 1  # the first 2AFC trial, on the all-trials axis
        t = r.trials(sids[1])
        days = [dt.datetime.fromtimestamp(r.session(s)['started_ns'] / 1e9).strftime('%Y-%m-%d') for s in sids]
    assert fig.get_suptitle() == f'mouse7: 5 sessions, {n} trials, {days[0]} to {days[-1]}'  # local dates
    acc, bias, sess, twin = fig.axes
    # The first accuracy line is the first 2AFC session: a trailing mean over scored trials only.
    order = np.argsort(t['trial_number'])
    correct, correction = t['correct'][order], t['correction'][order]
    assert correction.any() and (~correction).any()
    x, y = acc.lines[0].get_data()
    scored = np.flatnonzero(~correction)
    np.testing.assert_array_equal(x, first + scored)
    values = correct[scored].astype(float)
    for i in (10, 30, 60):
        assert y[i] == pytest.approx(values[max(0, i - WINDOW + 1):i + 1].mean())
    assert np.isnan(y[:4]).all()
    texts = {tx.get_text() for tx in acc.texts}
    assert {'tones_easy', 'tones_hard', 'not scored', ' chance', '1', '5'} <= texts  # free_water: too narrow
    assert [t.get_text() for t in fig.legends[0].texts] == ['free_water', 'tones_easy', 'tones_hard']
    assert acc.get_ylim()[0] == 0 and bias.get_ylim() == (-0.55, 0.55)
    assert [p.get_height() for p in sess.patches] == _counts(two_afc)  # one bar per session: its trials
    assert len(twin.lines[0].get_xdata()) == 4  # accuracy points for the four 2AFC sessions only


def _counts(path: Path) -> list[int]:
    with SubjectReader(path) as r:
        return [r.trials(s)['trial_number'].size for s in r.sessions()]


def test_free_water_only_subject(tmp_path: Path) -> None:
    path = tmp_path / 'fw1.h5'
    make_subject(path, subject='fw1', free_water=3, two_afc=0)
    fig = summary_figure(path)
    top, sess = fig.axes  # rewarded fraction over trials, then trials per session; no accuracy, no bias
    assert 'Rewarded' in top.get_title('left') and 'chance' not in {t.get_text().strip() for t in top.texts}
    assert len(sess.patches) == 6  # all trials and rewarded trials, per session
    assert png_size(summary_png(path, tmp_path / 'fw.png')) == (1200, 960)


def test_weights_get_a_panel_with_the_first_weight_and_80_percent(tmp_path: Path) -> None:
    path = tmp_path / 'w1.h5'
    make_subject(path, subject='w1', free_water=1, two_afc=2)
    day = 86_400 * 10**9
    with SubjectReader(path) as r:
        start = min(r.session(s)['started_ns'] for s in r.sessions())
    with SubjectFile.open(path) as f:
        for i, (grams, when) in enumerate([(25.0, 'start'), (23.5, 'stop'), (21.0, 'start'), (19.5, 'check')]):
            f.add_weight(grams, when, time_ns=start + i * day // 2)
    fig = summary_figure(path)
    weights = fig.axes[-1]
    assert weights.get_ylabel() == 'weight (g)' and 'last 19.5 g (78% of the first)' in weights.get_title('left')
    assert list(weights.lines[0].get_ydata()) == [25.0, 23.5, 21.0, 19.5]
    assert {ln.get_ydata()[0] for ln in weights.lines if ln.get_linestyle() == '--'} == {25.0, 20.0}
    assert [t.get_text() for t in weights.get_legend().texts] == ['before a session', 'after a session', 'other']
    out = summary_png(path, tmp_path / 'w.png')
    assert png_size(out) == (1200, 960)
    if os.environ.get('AUTOPILOT_SCREENSHOTS'):
        shutil.copy(out, Path(os.environ['AUTOPILOT_SCREENSHOTS']) / 'summary-weights.png')


def test_a_psychometric_session_gets_its_curve_and_the_fit_finds_the_parameters(tmp_path: Path) -> None:
    from autopilot_msgs.msg import TrialField

    from autopilot_terminal.summary import fit_psychometric

    bias, slope, lapse = 0.15, 6.0, 0.1
    rng = np.random.default_rng(3)
    levels = rng.choice([-1.0, -0.5, -0.25, -0.1, 0.1, 0.25, 0.5, 1.0], 3000)
    p_right = lapse / 2 + (1 - lapse) / (1 + np.exp(-slope * (levels - bias)))
    right = rng.random(levels.size) < p_right
    fit = fit_psychometric(levels, right)
    assert fit == pytest.approx((bias, slope, lapse), abs=0.06, rel=0.2), fit
    path = tmp_path / 'ps1.h5'
    fields = [('target', TrialField.TYPE_STRING, ''), ('response', TrialField.TYPE_STRING, ''),
              ('correct', TrialField.TYPE_BOOL, ''), ('correction', TrialField.TYPE_BOOL, ''),
              ('stim_level', TrialField.TYPE_FLOAT64, '')]
    t0 = 1_714_550_400 * 10**9
    with SubjectFile.create(path, 'ps1', {'species': 'mouse'}) as f:
        f.begin_session('s1', {'pilot': 'rig1', 'task': 'psychometric_2afc', 'protocol': '', 'step': 0,
                               'step_name': 'graded', 'started_ns': t0, 'fields': fields})
        n = 600
        f.add_trials('s1', [{'trial_number': k + 1, 'stamp_ns': t0 + k * 10**9, 'recv_ns': t0 + k * 10**9 + 1,
                             'step': 0, 'step_name': 'graded', 'target': 'left' if levels[k] < 0 else 'right',
                             'response': 'right' if right[k] else 'left',
                             'correct': bool(right[k]) == (levels[k] > 0), 'correction': False,
                             'stim_level': float(levels[k])} for k in range(n)])
        f.end_session('s1', ended_ns=t0 + n * 10**9)
    fig = summary_figure(path)
    panel = next(ax for ax in fig.axes if ax.get_xlabel() == 'stimulus level (stim_level)')
    points = panel.collections[0].get_offsets()
    assert len(points) == 8 and panel.get_title('left').startswith('Psychometric curve')
    for x, y in points:                                  # each level's fraction of right responses
        assert y == pytest.approx(right[:n][levels[:n] == x].mean())
    assert 'bias +0.' in panel.get_title('left') and len(panel.lines[0].get_xdata()) == 200
    out = summary_png(path, tmp_path / 'ps.png')
    if os.environ.get('AUTOPILOT_SCREENSHOTS'):
        shutil.copy(out, Path(os.environ['AUTOPILOT_SCREENSHOTS']) / 'summary-psychometric.png')


def test_a_subject_without_sessions_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / 'new.h5'
    SubjectFile.create(path, 'new', {}).close()
    with pytest.raises(ValueError, match=f'{path}: subject new has no sessions yet; nothing to plot'):
        summary_png(path, tmp_path / 'x.png')
    assert not (tmp_path / 'x.png').exists()


def test_cli_plot(two_afc: Path, tmp_path: Path) -> None:
    out = ok(cli(None, 'plot', str(two_afc)))
    default = two_afc.with_name('mouse7_summary.png')
    assert out == f'wrote {default}\n' and png_size(default) == (1200, 960)
    target = tmp_path / 'fig.png'

    missing, foreign, empty = tmp_path / 'nope.h5', tmp_path / 'other.h5', tmp_path / 'new.h5'
    with h5py.File(foreign, 'w') as f:
        f['x'] = 1
    SubjectFile.create(empty, 'new', {}).close()
    errors = [error_line(r) for r in cli_many(
        None, ('plot', str(missing)), ('plot', str(two_afc), '-o', str(tmp_path / 'fig.pdf')),
        ('plot', str(foreign), '-o', str(target)), ('plot', str(empty)))]
    assert errors[0] == f'autopilot: error: {missing}: no such file; give the subject file (<data dir>/<subject>.h5)'
    assert errors[1] == (f'autopilot: error: {tmp_path / "fig.pdf"}: the summary is a PNG; give an output path '
                         'ending in .png')
    assert 'not an autopilot-ros subject file' in errors[2]
    assert errors[3].endswith('subject new has no sessions yet; nothing to plot (run a session first)')
