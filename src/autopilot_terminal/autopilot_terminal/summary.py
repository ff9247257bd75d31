"""A one-page summary figure of a subject's training: :func:`summary_png` (matplotlib, Agg: no display needed).

For subjects whose trials are scored (a boolean ``correct`` column; 2AFC and the like):

* top: accuracy over trials, a rolling mean over the last :data:`WINDOW` scored trials (correction trials,
  flagged ``correction``, left out, as the tasks score them), restarted each session so that one day's end
  does not blur the next day's start; chance at 0.5; sessions as alternating shaded bands; protocol steps
  as a coloured strip along the top, labelled with the step names (from each trial's ``step_name``);
* middle: side bias, the rolling fraction of ``right`` among left/right ``response``s (correction trials
  left out) minus 0.5: above zero the subject favours the right;
* bottom: per session, the number of trials (bars, coloured by the step the session ended in) and the
  accuracy (points, right axis).

A subject whose trials carry a stimulus level (``stim_level``, a psychometric task) gets a psychometric panel:
the fraction of ``right`` responses per level over the last session with levels (correction trials left out),
and the fitted curve ``lapse / 2 + (1 - lapse) * logistic(slope * (x - bias))`` (:func:`fit_psychometric`, the
virtual subject's model) with its parameters.

A subject that has been weighed (``/subject/weights``) gets a last panel: its weights over the days, with its
first weight and 80 % of it as lines (the usual limit for water restriction), start and stop weighings marked.

Subjects without scored trials (e.g. only free-water shaping sessions) get, where the task records it
(``rewarded``, or ``reward_given_ul`` > 0), the rolling fraction of rewarded trials on top, and the
per-session panel with the rewarded trials drawn solid over all trials. The trial axis counts every trial
of the subject, scored or not, so sessions of other tasks keep their place (marked "not scored"). A
subject with no sessions raises ``ValueError`` naming the file: there is nothing to show. Only
conventional column names are read, never a task's code.

Library code: the figure is a bare :class:`matplotlib.figure.Figure` rendered by the Agg canvas, never
pyplot, and styles apply in an ``rc_context``: no global backend or style changes, so the Terminal's Qt GUI
(and a user's notebook) can import this module safely.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.typing import RcKeyType

from .storage import SubjectReader

__all__ = ['WINDOW', 'summary_figure', 'summary_png']

#: Scored trials per rolling window.
WINDOW = 20
#: Figure size (inches) and resolution: 1200 x 960 pixels.
FIGSIZE = (10.0, 8.0)
DPI = 120
_STEP_COLOURS = ('#4C72B0', '#DD8452', '#55A868', '#C44E52', '#8172B3', '#937860', '#DA8BC3', '#8C8C8C',
                 '#CCB974', '#64B5CD')
_ACCURACY = '#1f3b73'
_STYLE: dict[RcKeyType, Any] = {'font.size': 10, 'axes.titlesize': 11, 'axes.labelsize': 10, 'xtick.labelsize': 9, 'ytick.labelsize': 9,
          'legend.fontsize': 9, 'axes.spines.top': False, 'axes.spines.right': False}
_BIAS_RIGHT, _BIAS_LEFT = '#d1495b', '#2e86ab'


@dataclass
class _Session:
    sid: str
    start: dt.datetime
    task: str
    first: int  # global index (1-based) of the session's first trial
    n: int
    steps: list[str] = field(default_factory=list)  # step name per trial
    correct: np.ndarray | None = None  # per trial; None: not scored
    correction: np.ndarray | None = None
    response: np.ndarray | None = None
    rewarded: np.ndarray | None = None
    level: np.ndarray | None = None  # stim_level per trial (psychometric tasks)
    last_step: str = ''

    @property
    def scored(self) -> np.ndarray | None:
        """Mask of the trials that count for accuracy (scored, not correction trials)."""
        if self.correct is None:
            return None
        return ~self.correction if self.correction is not None else np.ones(self.n, bool)

    @property
    def accuracy(self) -> float:
        mask = self.scored
        if mask is None or self.correct is None or not mask.any():
            return float('nan')
        return float(self.correct[mask].mean())


def summary_png(path: Path | str, out: Path | str) -> Path:
    """Write the summary figure of subject file ``path`` to the PNG ``out``; returns ``out``."""
    out = Path(out)
    summary_figure(path).savefig(out, dpi=DPI, format='png')
    return out


def summary_figure(path: Path | str) -> Figure:
    """The summary figure (see the module doc); ValueError if the subject has no sessions."""
    path = Path(path)
    subject, biography, sessions, weights = _load(path)
    if not sessions:
        raise ValueError(f'{path}: subject {subject} has no sessions yet; nothing to plot (run a session first)')
    with mpl.rc_context(_STYLE):  # styles are read when artists are made: build the whole figure inside
        return _figure(subject, biography, sessions, weights)


def _figure(subject: str, biography: dict, sessions: list[_Session], weights: list[dict[str, Any]]) -> Figure:
    scored = any(s.correct is not None for s in sessions)
    rewarded = any(s.rewarded is not None for s in sessions)
    n_trials = sum(s.n for s in sessions)
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout='constrained')
    step_colour = _step_colours(sessions)
    psycho = next((x for x in reversed(sessions) if x.level is not None and x.response is not None), None)
    rows = (3.2, 1.6, 2.2) if scored else (3.2, 2.6) if rewarded else (2.6,)
    extra = [h for h, want in ((2.0, psycho is not None), (1.6, bool(weights))) if want]
    grid = fig.add_gridspec(len(rows) + len(extra), 1, height_ratios=(*rows, *extra))
    if scored:
        ax_top = fig.add_subplot(grid[0])
        ax_bias = fig.add_subplot(grid[1], sharex=ax_top)
        _rate_panel(ax_top, sessions, step_colour, n_trials, _accuracy_series, chance=True,
                    ylabel=f'accuracy\n(last {WINDOW} scored trials)',
                    title='Accuracy (correction trials excluded); shading: sessions; strip: protocol steps')
        _bias_panel(ax_bias, sessions)
        ax_sess = fig.add_subplot(grid[2])
    elif rewarded:  # e.g. free water: how often the subject collected the reward
        ax_top = fig.add_subplot(grid[0])
        _rate_panel(ax_top, sessions, step_colour, n_trials, _reward_series, chance=False,
                    ylabel=f'rewarded\n(last {WINDOW} trials)',
                    title='Rewarded trials (no scored trials); shading: sessions; strip: protocol steps')
        ax_top.set_xlabel('trial (all sessions)')
        ax_top.tick_params(labelbottom=True)
        ax_sess = fig.add_subplot(grid[1])
    else:
        ax_sess = fig.add_subplot(grid[0])
    _session_panel(ax_sess, sessions, scored)
    if psycho is not None:
        _psychometric_panel(fig.add_subplot(grid[len(rows)]), psycho)
    if weights:
        _weight_panel(fig.add_subplot(grid[len(rows) + (psycho is not None)]), weights)

    first, last = sessions[0].start, sessions[-1].start
    dates = first.strftime('%Y-%m-%d') + ('' if last.date() == first.date() else f' to {last:%Y-%m-%d}')
    fig.suptitle(f'{subject}: {len(sessions)} session{"s" * (len(sessions) != 1)}, {n_trials} trials, {dates}',
                 fontsize=13, fontweight='bold')
    # The bottom row: the steps' colours (as in the strip and the bars) and the biography, on every figure.
    handles = [Patch(color=c) for c in step_colour.values()]
    fig.legend(handles, list(step_colour), loc='outside lower right', ncols=min(len(step_colour), 6),
               frameon=False, fontsize=8, title='protocol steps:', title_fontsize=8,
               alignment='left')
    bio = ', '.join(f'{k} {biography[k]}' for k in ('species', 'sex', 'genotype', 'dob') if biography.get(k))
    if bio:
        fig.text(0.01, 0.005, bio, fontsize=8, color='0.4', ha='left', va='bottom')
    return fig


# --- data --------------------------------------------------------------------------------------

def _load(path: Path) -> tuple[str, dict, list[_Session], list[dict[str, Any]]]:
    with SubjectReader(path) as reader:
        subject, biography, weights = reader.subject, reader.biography, reader.weights()
        sessions: list[_Session] = []
        first = 1
        for sid in reader.sessions():
            attrs = reader.session(sid)
            trials = reader.trials(sid)
            n = int(trials['trial_number'].size) if trials else 0
            s = _Session(sid, dt.datetime.fromtimestamp(int(attrs.get('started_ns', 0)) / 1e9),
                         str(attrs.get('task', '')), first, n, last_step=str(attrs.get('step_name', '')))
            if n:
                order = np.argsort(trials['trial_number'], kind='stable')
                cols = {k: v[order] for k, v in trials.items()}
                s.steps = [name or f'step {step}' for name, step in zip(cols['step_name'].tolist(),
                                                                       cols['step'].tolist(), strict=True)]
                s.last_step = s.steps[-1]
                s.correct = _bool(cols.get('correct'))
                s.correction = _bool(cols.get('correction'))
                response = cols.get('response')
                s.response = response if response is not None and response.dtype.kind == 'U' else None
                s.rewarded = _rewarded(cols)
                level = cols.get('stim_level')
                s.level = level.astype(float) if level is not None and level.dtype.kind == 'f' else None
            sessions.append(s)
            first += n
    return subject, biography, sessions, weights


def _bool(col: np.ndarray | None) -> np.ndarray | None:
    return col.astype(bool) if col is not None and col.dtype.kind == 'b' else None


def _rewarded(cols: dict[str, np.ndarray]) -> np.ndarray | None:
    if 'rewarded' in cols and cols['rewarded'].dtype.kind == 'b':
        return cols['rewarded']
    if 'reward_given_ul' in cols and cols['reward_given_ul'].dtype.kind in 'iuf':
        return np.nan_to_num(cols['reward_given_ul']) > 0
    return None


def _rolling(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` values (fewer at the start); NaN for the first few (< 5)."""
    c = np.concatenate(([0.0], np.cumsum(values, dtype=float)))
    i = np.arange(1, values.size + 1)
    lo = np.maximum(i - window, 0)
    mean = (c[i] - c[lo]) / (i - lo)
    mean[: min(5, window) - 1] = np.nan  # a mean of one or two trials is noise, not a curve
    return mean


def _step_colours(sessions: Sequence[_Session]) -> dict[str, str]:
    names: list[str] = []
    for s in sessions:
        for name in (*dict.fromkeys(s.steps), s.last_step):
            if name not in names:
                names.append(name)
    return {name: _STEP_COLOURS[i % len(_STEP_COLOURS)] for i, name in enumerate(names)}


# --- panels ------------------------------------------------------------------------------------

def _session_bands(ax: Axes, sessions: Sequence[_Session]) -> None:
    for k, s in enumerate(sessions):
        if k % 2 == 1 and s.n:  # the first session unshaded: a single session has a plain background
            ax.axvspan(s.first - 0.5, s.first + s.n - 0.5, color='0.93', zorder=0, lw=0)


def _accuracy_series(s: _Session) -> tuple[np.ndarray, np.ndarray] | None:
    mask = s.scored
    return None if mask is None or s.correct is None or not mask.any() else (mask, s.correct[mask])


def _reward_series(s: _Session) -> tuple[np.ndarray, np.ndarray] | None:
    return None if s.rewarded is None or not s.n else (np.ones(s.n, bool), s.rewarded)


def _rate_panel(ax: Axes, sessions: Sequence[_Session], step_colour: dict[str, str], n_trials: int,
                series: Callable[[_Session], tuple[np.ndarray, np.ndarray] | None], *, chance: bool, ylabel: str,
                title: str) -> None:
    """A rolling fraction over trials (per session), with session bands, numbers and the step strip."""
    _session_bands(ax, sessions)
    every = max(1, int(np.ceil(len(sessions) / 25)))
    for k, s in enumerate(sessions, 1):
        if not s.n:
            continue
        middle = s.first + (s.n - 1) / 2
        got = series(s)
        if got is not None:
            mask, values = got
            lw = 1.6 if n_trials < 1500 else 1.0 if n_trials < 4000 else 0.7  # thousands of trials: thinner
            ax.plot(s.first + np.flatnonzero(mask), _rolling(values.astype(float), WINDOW), color=_ACCURACY, lw=lw,
                    zorder=3)
        elif s.n / max(n_trials, 1) > 0.04:  # e.g. free water among 2AFC: say why there is a gap
            ax.text(middle, 0.25, 'not scored', ha='center', va='center', fontsize=8, color='0.5', style='italic',
                    rotation=90 if s.n / max(n_trials, 1) < 0.08 else 0)
        if (k - 1) % every == 0 and s.n / max(n_trials, 1) > 0.008:  # session numbers, as in the session panel
            ax.text(middle, 0.03, str(k), ha='center', va='bottom', fontsize=7.5, color='0.45')
    if chance:
        ax.axhline(0.5, color='0.35', ls='--', lw=1, zorder=2)
        ax.text(1.0, 0.5, ' chance', transform=ax.get_yaxis_transform(), va='center', ha='left', fontsize=8,
                color='0.35')
    ax.set_ylim(0, 1.16)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_ylabel(ylabel)
    ax.set_xlim(0.5, max(n_trials, 1) + 0.5)
    ax.grid(axis='y', color='0.85', lw=0.6)
    ax.tick_params(labelbottom=False)
    ax.set_title(title, loc='left')
    # The protocol-step strip along the top (above 1.0): one run per contiguous step.
    runs = _step_runs(sessions)
    for name, lo, hi in runs:
        ax.axvspan(lo - 0.5, hi + 0.5, ymin=0.905, ymax=0.985, color=step_colour[name], lw=0, zorder=2)
        if (hi - lo + 1) / max(n_trials, 1) > 0.0078 * len(name) + 0.008:  # room for the name (8 pt, ~1030 px)
            ax.text((lo + hi) / 2, 1.095, name, ha='center', va='center', fontsize=8, color='white',
                    fontweight='bold', clip_on=True, zorder=4)
    for name, lo, _ in runs[1:]:
        ax.axvline(lo - 0.5, color=step_colour[name], lw=1, ls=':', zorder=2)


def _step_runs(sessions: Sequence[_Session]) -> list[tuple[str, int, int]]:
    runs: list[tuple[str, int, int]] = []
    for s in sessions:
        for i, name in enumerate(s.steps):
            x = s.first + i
            if runs and runs[-1][0] == name:
                runs[-1] = (name, runs[-1][1], x)
            else:
                runs.append((name, x, x))
    return runs


def _bias_panel(ax: Axes, sessions: Sequence[_Session]) -> None:
    _session_bands(ax, sessions)
    for s in sessions:
        if s.response is None:
            continue
        mask = np.isin(s.response, ('left', 'right'))
        if s.correction is not None:
            mask &= ~s.correction
        if not mask.any():
            continue
        x = s.first + np.flatnonzero(mask)
        bias = _rolling((s.response[mask] == 'right').astype(float), WINDOW) - 0.5
        ax.plot(x, bias, color='0.25', lw=1.1, zorder=3)
        ax.fill_between(x, bias, 0, where=bias > 0, color=_BIAS_RIGHT, alpha=0.35, lw=0, interpolate=True)
        ax.fill_between(x, bias, 0, where=bias < 0, color=_BIAS_LEFT, alpha=0.35, lw=0, interpolate=True)
    ax.axhline(0, color='0.35', lw=0.8)
    ax.set_ylim(-0.55, 0.55)
    ax.set_yticks([-0.5, 0, 0.5])
    ax.set_ylabel('side bias\n(P(right) − 0.5)')
    ax.set_xlabel('trial (all sessions)')
    ax.text(0.005, 0.96, 'right', transform=ax.transAxes, color=_BIAS_RIGHT, fontsize=8, va='top', fontweight='bold')
    ax.text(0.005, 0.04, 'left', transform=ax.transAxes, color=_BIAS_LEFT, fontsize=8, va='bottom',
            fontweight='bold')
    ax.grid(axis='y', color='0.85', lw=0.6)


def _session_panel(ax: Axes, sessions: Sequence[_Session], scored: bool) -> None:
    x = np.arange(1, len(sessions) + 1)
    counts = np.array([s.n for s in sessions])
    step_colour = _step_colours(sessions)
    colours = [step_colour[s.last_step] for s in sessions]
    rewarded = np.array([int(s.rewarded.sum()) if s.rewarded is not None else 0 for s in sessions])
    show_rewarded = not scored and any(s.rewarded is not None for s in sessions)
    ax.bar(x, counts, color=colours, alpha=0.4 if show_rewarded else 0.55, width=0.8, zorder=2)
    title = 'Per session: trials (bars, coloured by the protocol step the session ended in)'
    if show_rewarded:
        ax.bar(x, rewarded, color=colours, width=0.8, zorder=3)
        ax.legend([Patch(color='0.35'), Patch(color='0.35', alpha=0.4)], ['rewarded trials', 'all trials'],
                  loc='upper left', frameon=False, ncols=2)
    ax.set_ylabel('trials per session')
    pad = 0.6 + max(0.0, (3 - len(sessions)) / 2)  # one or two sessions: bars of a sensible width, centred
    ax.set_xlim(1 - pad, len(sessions) + pad)
    ax.set_ylim(0, max(1, int(counts.max())) * 1.18)
    ax.grid(axis='y', color='0.88', lw=0.6, zorder=0)
    ticks = x[::max(1, int(np.ceil(len(sessions) / 20)))]  # at most ~20 labels
    ax.set_xticks(ticks)
    multi_day = len({s.start.date() for s in sessions}) > 1
    ax.set_xticklabels([f'{k}\n{sessions[k - 1].start:%m-%d}' if multi_day else f'{k}\n{sessions[k - 1].start:%H:%M}'
                        for k in ticks])
    ax.set_xlabel('session (number, start ' + ('date' if multi_day else 'time') + ')')
    if scored:
        acc = np.array([s.accuracy for s in sessions])
        twin = ax.twinx()
        twin.spines['right'].set_visible(True)
        twin.spines['top'].set_visible(False)
        ok = ~np.isnan(acc)
        twin.plot(x[ok], acc[ok], 'o-', color=_ACCURACY, ms=5, lw=1.2, zorder=4)
        twin.axhline(0.5, color=_ACCURACY, ls=':', lw=0.9, alpha=0.6)
        twin.set_ylim(0, 1.05)
        twin.set_ylabel('accuracy', color=_ACCURACY)
        twin.tick_params(axis='y', colors=_ACCURACY)
        title += ' and accuracy (points)'
    ax.set_title(title, loc='left')


def _weight_panel(ax: Axes, weights: list[dict[str, Any]]) -> None:
    """Weights (g) over time; the first weight and 80 % of it as lines; start/stop weighings marked."""
    when = mdates.date2num([dt.datetime.fromtimestamp(int(w['time_ns']) / 1e9) for w in weights])
    grams = np.array([float(w['grams']) for w in weights])
    ax.plot(when, grams, color='0.35', lw=1.2, zorder=2)
    for kind, marker, label in (('start', 'o', 'before a session'), ('stop', 's', 'after a session')):
        pick = [i for i, w in enumerate(weights) if w.get('when') == kind]
        if pick:
            ax.plot(when[pick], grams[pick], marker, color=_ACCURACY, ms=4, ls='none', label=label,
                    zorder=3)
    other = [i for i, w in enumerate(weights) if w.get('when') not in ('start', 'stop')]
    if other:
        ax.plot(when[other], grams[other], 'D', color='0.35', ms=3, ls='none', label='other', zorder=3)
    base = grams[0]
    ax.axhline(base, color='0.6', lw=0.8, ls='--')
    ax.axhline(0.8 * base, color=_BIAS_RIGHT, lw=0.8, ls='--')
    ax.text(0.005, base, ' first weight', transform=ax.get_yaxis_transform(), fontsize=8, color='0.45', va='bottom')
    ax.text(0.005, 0.8 * base, ' 80 %', transform=ax.get_yaxis_transform(), fontsize=8, color=_BIAS_RIGHT,
            va='bottom')
    low = min(float(grams.min()), 0.8 * base)
    ax.set_ylim(low * 0.95, max(float(grams.max()), base) * 1.05)
    ax.set_ylabel('weight (g)')
    ax.set_title(f'Weights: {len(weights)}, last {grams[-1]:g} g ({grams[-1] / base:.0%} of the first)', loc='left')
    ax.legend(loc='lower right', bbox_to_anchor=(1.0, 1.0), frameon=False, ncols=3, fontsize=8)  # above, never on data
    locator = mdates.AutoDateLocator(maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def fit_psychometric(levels: np.ndarray, right: np.ndarray) -> tuple[float, float, float]:
    """(bias, slope, lapse) of ``lapse / 2 + (1 - lapse) * logistic(slope * (x - bias))`` fitted to trials'
    levels and whether each answered right, by maximum likelihood (scipy's bounded L-BFGS-B): bias within the
    levels' range, slope in [0, 100], lapse in [0, 0.5]."""
    from scipy.optimize import minimize

    x, y = np.asarray(levels, float), np.asarray(right, bool)
    lo, hi = float(x.min()), float(x.max())

    def nll(theta: np.ndarray) -> float:
        bias, slope, lapse = theta
        p = lapse / 2 + (1 - lapse) / (1 + np.exp(-slope * (x - bias)))
        p = np.clip(p, 1e-9, 1 - 1e-9)
        return float(-(np.log(p[y]).sum() + np.log(1 - p[~y]).sum()))

    span = max(hi - lo, 1e-6)
    start = np.array([(lo + hi) / 2, 4.0 / span, 0.05])
    res = minimize(nll, start, method='L-BFGS-B', bounds=[(lo, hi), (0.0, 100.0), (0.0, 0.5)])
    bias, slope, lapse = (float(v) for v in res.x)
    return bias, slope, lapse


def _psychometric_panel(ax: Axes, s: _Session) -> None:
    """Fraction of right responses per level in session ``s`` (points sized by trials), and the fitted curve."""
    assert s.level is not None and s.response is not None
    answered = np.isin(s.response, ('left', 'right')) & np.isfinite(s.level)
    if s.correction is not None:
        answered &= ~s.correction
    x, right = s.level[answered], s.response[answered] == 'right'
    levels = np.unique(x)
    frac = np.array([right[x == v].mean() for v in levels])
    count = np.array([(x == v).sum() for v in levels])
    ax.scatter(levels, frac, s=12 + 60 * count / max(int(count.max()), 1), color=_ACCURACY, zorder=3,
               label='fraction right (size: trials)')
    title = f'Psychometric curve, session of {s.start:%Y-%m-%d %H:%M} ({int(answered.sum())} trials)'
    if levels.size >= 2:
        bias, slope, lapse = fit_psychometric(x, right)
        grid = np.linspace(levels.min(), levels.max(), 200)
        ax.plot(grid, lapse / 2 + (1 - lapse) / (1 + np.exp(-slope * (grid - bias))), color=_BIAS_RIGHT, lw=1.5,
                label='fit', zorder=2)
        title += f': bias {bias:+.2f}, slope {slope:.1f}, lapse {lapse:.2f}'
    ax.axhline(0.5, color='0.6', lw=0.8, ls='--')
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel('stimulus level (stim_level)')
    ax.set_ylabel('P(right)')
    ax.set_title(title, loc='left')
    ax.legend(loc='upper left', frameon=False, fontsize=8)  # the curve is low on the left: that corner is free
