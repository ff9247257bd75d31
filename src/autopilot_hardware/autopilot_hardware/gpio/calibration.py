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
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.polynomial import polynomial as P


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


def check_point(device: str, n_openings: int, open_ms: float, measured_volume_ul: float) -> None:
    if n_openings < 1:
        raise CalibrationError(f'{device}: n_openings must be >= 1 (got {n_openings})')
    if not open_ms > 0:
        raise CalibrationError(f'{device}: open_ms must be > 0 (got {open_ms})')
    if not measured_volume_ul > 0 or not np.isfinite(measured_volume_ul):
        raise CalibrationError(f'{device}: measured_volume_ul must be a positive volume in uL (got {measured_volume_ul})')


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
        if self.path.exists():
            for lineno, line in enumerate(self.path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    self.points.append(Point(**json.loads(line)))
                except (ValueError, TypeError) as exc:
                    raise CalibrationError(f'{self.path}:{lineno}: unreadable calibration line ({exc}); '
                                           f'fix or remove that line') from None

    def record(self, device: str, n_openings: int, open_ms: float, measured_volume_ul: float) -> Point:
        check_point(device, n_openings, open_ms, measured_volume_ul)
        point = Point(device, time.time(), int(n_openings), float(open_ms), float(measured_volume_ul))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, 'a') as f:
            f.write(json.dumps(asdict(point)) + '\n')
            f.flush()
            os.fsync(f.fileno())
        self.points.append(point)
        return point

    def used_points(self, device: str) -> list[Point]:
        return [p for p in self.points if p.device == device][-self.window:]

    def fit(self, device: str) -> list[float]:
        pts = self.used_points(device)
        if not pts:
            raise CalibrationError(f'{device} has no calibration: run `autopilot calibrate {device}` first')
        return fit(pts, self.degree)

    def open_ms(self, device: str, volume_ul: float) -> float:
        if not volume_ul > 0:
            raise CalibrationError(f'{device}: reward volume must be > 0 uL (got {volume_ul})')
        ms = open_ms_for(self.fit(device), volume_ul)
        if not ms > 0:
            raise CalibrationError(f'{device}: the calibration gives {ms:.3g} ms for {volume_ul:g} uL; '
                                   f'add calibration points near this volume')
        return ms
