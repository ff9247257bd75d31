"""Valve calibration: measured points in an append-only JSON Lines file, and the volume -> open time fit.

A calibration run opens a valve ``n`` times for ``open_ms`` each; the user weighs what came out and
enters the total volume. Each such point is appended as one JSON line (device, time, n, open_ms, total
and per-opening volume) and fsync'd: points are never rewritten or deleted, so the file is the full history
and the fit can always be recomputed. By default the newest ``window`` points of a valve are fitted (tubing
and pressure drift: old points describe an old rig); every point stays in the file.

Fit: ``open_ms = c0 + c1*v (+ c2*v^2 ...)`` with ``v`` the volume per opening in uL, least squares with
``numpy.polynomial.polynomial.polyfit``. A solenoid valve's flow is nearly constant once open, so volume is
close to linear in open time, and c0 absorbs the opening latency (a few ms): degree 1 is the default.
With one distinct open time only a line through the origin is determined (``open_ms = c1*v``); higher
degrees are used only with more distinct open times than coefficients.

Plausibility: a point is the user typing a number off a balance, so it is checked before it is stored
(nothing stored changes when it is refused):

* ``n_openings`` a whole number in [1, 2**32 - 1] (the service's uint32), ``open_ms`` in
  [:data:`MIN_OPEN_MS`, :data:`MAX_OPEN_MS`] = [0.5, 60000] ms, ``measured_volume_ul`` finite and > 0;
* the volume per opening in [:data:`MIN_UL_PER_OPENING`, :data:`MAX_UL_PER_OPENING`] = [0.1, 1000] uL. Lab
  solenoid valves give 1-20 uL per opening for mice and up to a few hundred for rats and primates; below
  0.1 uL a drop does not form and a balance cannot resolve it over a practical run, so such a number is a
  unit slip (mL or nL entered as uL, or the volume of one opening entered for the whole run);
* once the valve's fit has :data:`CHECK_MIN_POINTS` points, the point's flow (uL per ms of opening) within
  a factor :data:`MAX_DISAGREEMENT` of the flow the valve's straight-line fit predicts for its open time
  (for an opening shorter than the fitted latency, of the median flow of the fitted points). Drift between
  sessions is tens of percent; a factor of 5 is a unit or typing slip, or a different rig. A real change
  (new valve, tubing, reservoir height) is recorded with ``force=True``, or in a new calibration file.

Reward volumes (:meth:`CalibrationStore.open_ms`) must be finite and in the same per-opening range.
Points already in a file are checked for the same ranges when it is loaded; implausible ones (written
before these checks) stay in the file but are left out of fits and listed in ``CalibrationStore.ignored``.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.polynomial import polynomial as P

#: Volume per opening accepted, uL (see the module docstring for why).
MIN_UL_PER_OPENING = 0.1
MAX_UL_PER_OPENING = 1000.0
#: Open time of a calibration point, ms: the fastest lab solenoid valves need a few tenths of a ms to open
#: at all, and no reward valve is calibrated with minute-long openings.
MIN_OPEN_MS = 0.5
MAX_OPEN_MS = 60_000.0
#: Most openings of one calibration run (CalibrateValve's n_openings is a uint32).
MAX_OPENINGS = 2**32 - 1
#: A new point's flow may differ from the fit's prediction by at most this factor ...
MAX_DISAGREEMENT = 5.0
#: ... once the fit rests on at least this many points (fewer may well be the ones that are wrong).
CHECK_MIN_POINTS = 3


class CalibrationError(ValueError):
    """A calibration that cannot be stored or used; the message names the valve and the fix."""


@dataclass(frozen=True)
class Point:
    device: str
    time: float           # Unix time of the measurement
    n_openings: int
    open_ms: float
    measured_volume_ul: float

    @property
    def volume_per_opening_ul(self) -> float:
        return self.measured_volume_ul / self.n_openings


def _number(value: object) -> float | None:
    """``value`` as a float if it is a real number (not a bool, string or None), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        return float(value)
    except OverflowError:  # an int beyond float range
        return math.inf


def check_point(device: str, n_openings: object, open_ms: object, measured_volume_ul: object) -> None:
    """CalibrationError naming the value and the fix unless the point is a plausible measurement."""
    n = _number(n_openings)
    if n is None or not math.isfinite(n) or n != int(n) or not 1 <= n <= MAX_OPENINGS:
        raise CalibrationError(f'{device}: n_openings must be a whole number of openings in [1, {MAX_OPENINGS}] '
                               f'(got {n_openings!r})')
    t = _number(open_ms)
    if t is None or not math.isfinite(t) or not MIN_OPEN_MS <= t <= MAX_OPEN_MS:
        raise CalibrationError(f'{device}: open_ms must be the open time of each opening in [{MIN_OPEN_MS:g}, '
                               f'{MAX_OPEN_MS:g}] ms (got {open_ms!r})')
    v = _number(measured_volume_ul)
    if v is None or not math.isfinite(v) or not v > 0:
        raise CalibrationError(f'{device}: measured_volume_ul must be a positive volume in uL (got '
                               f'{measured_volume_ul!r}): the total weighed after all {int(n)} openings')
    per = v / n
    if not MIN_UL_PER_OPENING <= per <= MAX_UL_PER_OPENING:
        raise CalibrationError(
            f'{device}: {v:g} uL over {int(n)} openings is {per:.3g} uL per opening, outside the plausible '
            f'[{MIN_UL_PER_OPENING:g}, {MAX_UL_PER_OPENING:g}] uL of a solenoid valve; enter the total of the whole '
            'run in microlitres (1 mg of water = 1 uL; 1 mL = 1000 uL)')


def fit(points: list[Point], degree: int = 1) -> list[float]:
    """Coefficients c0..cd of open_ms = sum(c_i * v^i); CalibrationError without points."""
    if not points:
        raise CalibrationError('no calibration points')
    v = np.array([p.volume_per_opening_ul for p in points])
    t = np.array([p.open_ms for p in points])
    distinct = len({round(p.open_ms, 6) for p in points})
    if distinct < 2:
        # One open time: only the slope through the origin is determined.
        return [0.0, float(np.dot(v, t) / np.dot(v, v))]
    deg = max(1, min(degree, distinct - 1))
    return [float(c) for c in P.polyfit(v, t, deg)]


def open_ms_for(coefficients: list[float], volume_ul: float) -> float:
    with np.errstate(over='ignore', invalid='ignore'):  # callers check the result is finite
        return float(P.polyval(volume_ul, coefficients))


def describe(device: str, coefficients: list[float], n_points: int) -> str:
    terms = ' + '.join(f'{c:.4g}' + ('' if i == 0 else ' * v' if i == 1 else f' * v^{i}')
                       for i, c in enumerate(coefficients))
    return f'{device}: open_ms = {terms} (v: uL per opening; {n_points} point(s))'


class CalibrationStore:
    """Append-only calibration points of every valve of one GPIO node, and their current fits."""

    def __init__(self, path: Path, degree: int = 1, window: int = 20) -> None:
        self.path = Path(path).expanduser()
        self.degree = degree
        self.window = window
        self.points: list[Point] = []
        #: (line number, why) of points in the file that fail check_point: kept in the file, never fitted.
        self.ignored: list[tuple[int, str]] = []
        if self.path.exists():
            for lineno, line in enumerate(self.path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    point = Point(**json.loads(line))
                except (ValueError, TypeError) as exc:
                    raise CalibrationError(f'{self.path}:{lineno}: unreadable calibration line ({exc}); '
                                           f'fix or remove that line') from None
                try:
                    check_point(str(point.device), point.n_openings, point.open_ms, point.measured_volume_ul)
                except CalibrationError as exc:
                    self.ignored.append((lineno, f'{self.path}:{lineno}: not used: {exc}'))
                    continue
                self.points.append(point)

    def record(self, device: str, n_openings: int, open_ms: float, measured_volume_ul: float, *,
               force: bool = False) -> Point:
        """Append a measured point; CalibrationError (nothing stored) if it is implausible.

        ``force``: store a point that disagrees with the current fit (the valve or its plumbing changed);
        the range checks hold regardless.
        """
        check_point(device, n_openings, open_ms, measured_volume_ul)
        point = Point(device, time.time(), int(n_openings), float(open_ms), float(measured_volume_ul))
        if not force:
            self._check_agrees(point)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, 'a') as f:
            f.write(json.dumps(asdict(point)) + '\n')
            f.flush()
            os.fsync(f.fileno())
        self.points.append(point)
        return point

    def _check_agrees(self, point: Point) -> None:
        """CalibrationError if ``point``'s flow is off the current fit's by more than MAX_DISAGREEMENT."""
        pts = self.used_points(point.device)
        if len(pts) < CHECK_MIN_POINTS:
            return
        # The volume the line predicts for the point's open time: the user sets the time and weighs the volume,
        # so a slip shows there (predicting the time instead hides a 10x volume slip in the opening latency).
        # Always the straight line, whatever the store's degree: a factor 5 dwarfs any real curvature, and a
        # line does not swing wildly outside the fitted volumes as a polynomial can.
        c0, c1 = fit(pts, 1)
        predicted = (point.open_ms - c0) / c1 if c1 > 0 else math.nan
        if math.isfinite(predicted) and predicted > 0:
            expected = predicted / point.open_ms
            basis = f'it gives {predicted:.3g} uL per opening for {point.open_ms:g} ms'
        else:  # an opening shorter than the fitted latency (or a fit that makes no sense): the points' own flows
            expected = statistics.median(p.volume_per_opening_ul / p.open_ms for p in pts)
            basis = 'the median of its points'
        flow = point.volume_per_opening_ul / point.open_ms
        factor = max(flow / expected, expected / flow)
        if factor > MAX_DISAGREEMENT:
            raise CalibrationError(
                f'{point.device}: {point.measured_volume_ul:g} uL from {point.n_openings} x {point.open_ms:g} ms is '
                f'{flow:.3g} uL/ms, {factor:.1f}x off the current fit\'s {expected:.3g} uL/ms ({basis}; '
                f'{len(pts)} points; at most {MAX_DISAGREEMENT:g}x is accepted). Weigh again and check the units '
                '(the total of the whole run, in uL); if the valve, tubing or reservoir height changed, record the '
                'point with force=True or start a new calibration file (parameter calibration_file)')

    def used_points(self, device: str) -> list[Point]:
        return [p for p in self.points if p.device == device][-self.window:]

    def fit(self, device: str) -> list[float]:
        pts = self.used_points(device)
        if not pts:
            raise CalibrationError(f'{device} has no calibration: run `autopilot calibrate {device}` first')
        return fit(pts, self.degree)

    def summary(self, device: str) -> tuple[list[float], int, str]:
        """The valve's fit coefficients, the number of points it rests on and the fit in words (as recorded)."""
        coefficients = self.fit(device)
        n = len(self.used_points(device))
        return coefficients, n, describe(device, coefficients, n)

    def history(self, device: str) -> tuple[list[tuple[Point, bool]], list[float], str]:
        """Every stored point of ``device`` oldest first, each with whether the fit rests on it; the fit's
        coefficients and words (none and a hint when the valve has no point yet)."""
        mine = [p for p in self.points if p.device == device]
        first_used = max(0, len(mine) - self.window)
        marked = [(p, i >= first_used) for i, p in enumerate(mine)]
        if not mine:
            return [], [], f'{device}: not calibrated yet (run it, weigh the water, record the point)'
        coefficients, _n, text = self.summary(device)
        return marked, coefficients, text

    def open_ms(self, device: str, volume_ul: float) -> float:
        """The open time giving ``volume_ul`` per opening; CalibrationError for an implausible volume or result."""
        v = _number(volume_ul)
        if v is None or not math.isfinite(v) or not MIN_UL_PER_OPENING <= v <= MAX_UL_PER_OPENING:
            raise CalibrationError(f'{device}: reward volume must be a number of uL in [{MIN_UL_PER_OPENING:g}, '
                                   f'{MAX_UL_PER_OPENING:g}] (got {volume_ul!r})')
        ms = open_ms_for(self.fit(device), v)
        if not math.isfinite(ms) or not ms > 0:
            raise CalibrationError(f'{device}: the calibration gives {ms:.3g} ms for {volume_ul:g} uL; '
                                   f'add calibration points near this volume')
        return ms
