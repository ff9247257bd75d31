"""A pilot's live plots (pyqtgraph), drawn from the plot its task declares (:mod:`autopilot_tasks.plot`).

Rows, all with the trial as x (a pilot's trials one after another, sessions marked by a dashed line):
points, rolling means and shaded trials on the first; a row per :class:`Line` in its unit; trial times in
seconds; and the GPIO raster of the current trial (each device's high time as a bar, against seconds since the
trial began). The view follows the newest trials until the user zooms or scrolls (mouse), and again after a
double click. The spec is the task's own when its class is installed here, else the default built from the
fields the trials carry, so a task this host lacks is still drawn.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt5 import QtCore

from autopilot_tasks.plot import Line, Plot, Points, Psychometric, RollingMean, Shade, TrialTimes, default_plot

from .model import PilotRow, Trial, psychometric

TRUE, FALSE, NEUTRAL = (46, 125, 50), (198, 40, 40), (120, 120, 120)
PALETTE = [(21, 101, 192), (239, 108, 0), (106, 27, 154), (0, 131, 143), (93, 64, 55)]
#: Trials drawn at most (older ones stay in the model and the subject file).
DRAWN = 1000
#: Heights given to a str field's values at most (a forged or runaway field would otherwise fill the axis).
MAX_CATEGORIES = 16
ROW_HEIGHT = 130

_specs: dict[tuple[str, tuple[tuple[str, int, str], ...]], Plot] = {}


def spec_for(task: str, fields: Sequence[tuple[str, int, str]]) -> Plot:
    """The plot of ``task``: its declared one when the task is installed here and fits the trials' fields,
    else :func:`default_plot` of those fields."""
    key = (task, tuple(fields))
    if key not in _specs:
        spec = None
        try:
            from autopilot_tasks.registry import lookup

            spec = lookup(task).plot_spec()
            if spec.check({name: kind for name, kind, _ in fields}) is not None:
                spec = None  # another version of the task than the pilot's: its fields decide
        except Exception:  # noqa: BLE001 - not installed here, or a broken task file: the fields still draw
            spec = None
        _specs[key] = spec or default_plot(fields, title=task)
    return _specs[key]


def _hex(rgb: tuple[int, ...]) -> str:
    return '#' + ''.join(f'{v:02x}' for v in rgb[:3])


def key(spec: Plot) -> str:
    """The first row's legend as one line of HTML in its title (a legend box inside would hide trials)."""
    parts, colour_index = [], 0
    for e in spec.elements:
        if isinstance(e, Points) and e.color_by:
            parts.append(f'<span style="color:{_hex(TRUE)}">●</span> {e.color_by} '
                         f'<span style="color:{_hex(FALSE)}">●</span> not')
        elif isinstance(e, Points):
            parts.append(f'<span style="color:{_hex(NEUTRAL)}">●</span> {e.field}')
        elif isinstance(e, RollingMean):
            colour = PALETTE[colour_index % len(PALETTE)]
            colour_index += 1
            parts.append(f'<span style="color:{_hex(colour)}">━</span> {e.field}, mean of {e.window}'
                         + (f' ({e.skip} left out)' if e.skip else ''))
        elif isinstance(e, Shade):
            parts.append(f'<span style="color:#ffa000">▮</span> {e.field}')
    return f'<span style="font-size:8pt">{" &nbsp; ".join(parts)}</span>' if parts else ''


def decode_frame(msg: Any) -> np.ndarray | None:
    """An RGB or grey uint8 array of a camera message, or None when it does not hold a frame it claims."""
    if hasattr(msg, 'format'):  # CompressedImage
        import cv2

        buf = np.frombuffer(bytes(msg.data), np.uint8)
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
        if img is None:
            return None
        return img[:, :, ::-1].copy() if img.ndim == 3 else img
    channels = {'mono8': 1, 'bgr8': 3, 'rgb8': 3}.get(msg.encoding)
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if channels is None or not 0 < h <= 8192 or not 0 < w <= 8192 or step < w * channels \
            or len(msg.data) < step * h:
        return None
    rows = np.frombuffer(msg.data, np.uint8, count=step * h).reshape(h, step)[:, :w * channels]
    img = rows.reshape(h, w, channels) if channels == 3 else rows
    return img[:, :, ::-1].copy() if msg.encoding == 'bgr8' else img


def _value(t: Trial, name: str) -> Any:
    return t.values.get(name)


def _number(v: Any) -> float:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)) and math.isfinite(float(v)):
        return float(v)
    return math.nan


class PilotPlots(pg.GraphicsLayoutWidget):
    """See the module docstring."""

    def __init__(self, pilot: str, spec: Plot, units: dict[str, str], parent: Any = None) -> None:
        super().__init__(parent)
        self.pilot, self.spec = pilot, spec
        self.setBackground('w')
        self.follow = True
        self._categories: dict[str, dict[str, float]] = {}
        self.plots: list[pg.PlotItem] = []
        title = f'{pilot}: {spec.title}' if spec.title else pilot
        self.main = self._row(f'{title}&nbsp;&nbsp;&nbsp;{key(spec)}', '')
        self.main.showAxis('right')  # rolling means read off 0..1 here; the left axis names the points' heights
        self.main.getAxis('right').setLabel('mean')
        self.lines = [(e, self._row('', f'{e.field} ({units.get(e.field, "")})' if units.get(e.field) else e.field))
                      for e in spec.elements if isinstance(e, Line)]
        self.times = self._row('', 's: <span style="color:#1565c0">trial</span>, '
                                   '<span style="color:#ef6c00">gap</span>') if any(isinstance(e, TrialTimes) for e in spec.elements) \
            else None
        self.raster = self.addPlot(row=len(self.plots) + 1, col=0)
        self.raster.setLabel('left', 'GPIO')
        self.raster.setLabel('bottom', 's since the trial began')
        self.raster.getAxis('bottom').enableAutoSIPrefix(False)
        self.raster.setMouseEnabled(x=True, y=False)
        self.psycho = None
        if any(isinstance(e, Psychometric) for e in spec.elements):
            self.psycho = self.addPlot(row=0, col=1, title='psychometric')
            self.psycho.setYRange(0, 1)
        self.camera: pg.ImageItem | None = None
        self.setMinimumHeight(ROW_HEIGHT * (len(self.plots) + 1))
        for p in self.plots[1:]:
            p.setXLink(self.main)
        self.main.getViewBox().sigRangeChangedManually.connect(self._stop_following)
        self.scene().sigMouseClicked.connect(self._clicked)
        self._session_lines: list[Any] = []
        self._items: dict[str, Any] = {}
        self._last: PilotRow | None = None  # the row drawn last
        self._lead = max([spec.window, *(e.window for e in spec.elements if isinstance(e, RollingMean))])
        self._ticks: dict[int, Any] = {}  # id(axis) -> the ticks it was given last
        self._main_y: tuple[float, float] | None = None  # the main row's fixed y range; None: autorange
        #: How long this widget's last paints took (a moving average, s): the window's redraw budget counts it,
        #: since Qt paints what a redraw changed right after the drain that made it.
        self.paint_s = 0.0

    def paintEvent(self, ev: Any) -> None:
        t0 = time.perf_counter()
        super().paintEvent(ev)
        self.paint_s = 0.7 * self.paint_s + 0.3 * (time.perf_counter() - t0)

    def _set_ticks(self, axis: Any, ticks: list[list[tuple[float, str]]]) -> None:
        """Give ``axis`` these ticks unless it has them: new ticks make pyqtgraph re-render the axis (a large part
        of a paint in bench/gui.py when it was done on every redraw)."""
        if self._ticks.get(id(axis)) != ticks:
            self._ticks[id(axis)] = ticks
            axis.setTicks(ticks)

    def _row(self, title: str, label: str) -> pg.PlotItem:
        p = self.addPlot(row=len(self.plots), col=0, title=title or None)
        p.setLabel('left', label)
        p.showGrid(x=False, y=True, alpha=0.2)
        self.plots.append(p)
        return p

    def _stop_following(self, *_: Any) -> None:
        if self.follow:
            self.follow = False
            if self._last is not None:
                self.draw(self._last)  # all DRAWN trials now, for the user to scroll back through

    def _clicked(self, event: Any) -> None:
        if event.double():
            self.follow = True

    def show_frame(self, msg: Any) -> bool:
        """The rig camera's newest frame (sensor_msgs Image mono8/bgr8/rgb8, or CompressedImage JPEG/PNG), shown
        right of the plots; False when it cannot be decoded (a wrong size or encoding is never trusted)."""
        frame = decode_frame(msg)
        if frame is None:
            return False
        if self.camera is None:
            box = self.addViewBox(row=0, col=2, rowspan=len(self.plots) + 1, lockAspect=True, invertY=True,
                                  enableMouse=False)
            box.setMinimumWidth(240)
            self.camera = pg.ImageItem(axisOrder='row-major')
            box.addItem(self.camera)
        self.camera.setImage(frame, autoLevels=False, levels=(0, 255))
        return True

    # -- drawing ---------------------------------------------------------------------------------------------
    def draw(self, row: PilotRow) -> None:
        self._last = row
        # Following the newest trials, only what the view shows is drawn, with enough before it for the rolling
        # means to be whole at its left edge: at 50 pilots drawing DRAWN trials per redraw was most of the window's
        # time (bench/gui.py).
        n = min(DRAWN, self.spec.window + self._lead) if self.follow else DRAWN
        trials = list(itertools.islice(reversed(row.trials), n))[::-1]
        if not trials:
            return
        x = np.array([t.index for t in trials], dtype=float)
        colour_index = 0
        for e in self.spec.elements:
            if isinstance(e, Points):
                self._points(e, trials, x)
            elif isinstance(e, RollingMean):
                self._rolling(e, trials, x, PALETTE[colour_index % len(PALETTE)])
                colour_index += 1
            elif isinstance(e, Shade):
                self._shade(e, trials, x)
            elif isinstance(e, Psychometric) and self.psycho is not None:
                self._psychometric(e, trials)
        for e, plot in self.lines:
            self._curve(plot, f'line:{e.field}', x, [_number(_value(t, e.field)) for t in trials], PALETTE[0])
        if self.times is not None:
            durations = [(t.stamp_ns - t.start_ns) / 1e9 if t.start_ns > 0 else math.nan for t in trials]
            gaps = [math.nan] + [(b.start_ns - a.stamp_ns) / 1e9 if b.start_ns > 0 and b.session_id == a.session_id
                                 else math.nan for a, b in zip(trials, trials[1:], strict=False)]
            self._curve(self.times, 'times:duration', x, durations, PALETTE[0], name='duration')
            self._curve(self.times, 'times:iti', x, gaps, PALETTE[1], name='since the last')
        self._sessions(trials)
        self._raster(row, trials[-1])
        self._fix_main_y()
        if self.follow:
            # The view moves in steps of a tenth of its width, not on every trial: the axes (and the views'
            # ranges) are re-rendered only on a step.
            step = max(1, self.spec.window // 10)
            hi = math.ceil((x[-1] + 1) / step) * step
            self.main.setXRange(max(hi - self.spec.window, x[0] - 0.5), hi, padding=0)

    def _fix_main_y(self) -> None:
        """Hold the first row's y range at 0..1 (with room) while everything on it is there (sides, fractions,
        shading), so pyqtgraph need not find its bounds on each paint; autorange when a value is outside."""
        lo, hi = math.inf, -math.inf
        for item in self.main.listDataItems():
            if isinstance(item, (pg.ScatterPlotItem, pg.PlotDataItem)):
                _, ys = item.getData()
                if ys is not None and len(ys):
                    lo, hi = min(lo, float(np.nanmin(ys))), max(hi, float(np.nanmax(ys)))
        bounded = (-0.15, 1.15) if -0.1 <= lo and hi <= 1.1 or lo > hi else None
        if bounded != self._main_y:
            self._main_y = bounded
            if bounded is None:
                self.main.enableAutoRange(axis='y')
            else:
                self.main.setYRange(*bounded, padding=0)

    def _item(self, plot: pg.PlotItem, key: str, make: Any) -> Any:
        item = self._items.get(key)
        if item is None:
            item = self._items[key] = make()
            plot.addItem(item)
        return item

    def _curve(self, plot: pg.PlotItem, key: str, x: np.ndarray, y: Sequence[float], colour: tuple[int, int, int],
               name: str | None = None) -> None:
        item = self._item(plot, key, lambda: pg.PlotDataItem(pen=pg.mkPen(colour, width=1.5), symbol='o',
                                                              symbolSize=4, symbolBrush=colour, symbolPen=None,
                                                              name=name))
        ys = np.array(y, dtype=float)
        # NaN (not measured) and inf are gaps, not points (pyqtgraph's bounds choke on them): only neighbours that
        # were both kept are joined.
        idx = np.flatnonzero(np.isfinite(ys))
        joined = np.append(np.diff(idx) == 1, False) if len(idx) else np.zeros(0, bool)
        item.setData(x[idx], ys[idx], connect=joined)

    def _points(self, e: Points, trials: list[Trial], x: np.ndarray) -> None:
        cats = self._categories.setdefault(e.field, dict(e.y) if e.y else {})
        ys = []
        for t in trials:
            v = _value(t, e.field)
            if isinstance(v, str):
                if v not in cats and not e.y and len(cats) < MAX_CATEGORIES:
                    cats[v] = float(len(cats))
                ys.append(cats.get(v, math.nan))
            else:
                ys.append(_number(v))
        if not e.y and cats:  # categories spread over 0..1 in order of first appearance
            top = max(len(cats) - 1, 1)
            ys = [y / top if math.isfinite(y) else y for y in ys]
            self._set_ticks(self.main.getAxis('left'), [[(i / top, c) for c, i in cats.items()]])
        elif e.y:
            self._set_ticks(self.main.getAxis('left'), [[(float(v), k) for k, v in e.y.items()]])
        # One scatter per colour, each a single brush: per-point brushes make pyqtgraph re-render every symbol
        # (88 % of a redraw in bench/gui.py).
        ys_arr = np.array(ys, dtype=float)
        groups: dict[bool | None, list[int]] = {True: [], False: [], None: []}
        for i, t in enumerate(trials):
            c = _value(t, e.color_by) if e.color_by else None
            if math.isfinite(ys_arr[i]):
                groups[c if isinstance(c, bool) else None].append(i)
        for outcome, colour in ((True, TRUE), (False, FALSE), (None, NEUTRAL)):
            label = (f'{e.field} ({e.color_by})' if outcome else f'{e.field} (not {e.color_by})'
                     if outcome is False else e.field if not e.color_by else None)
            item = self._item(self.main, f'points:{e.field}:{outcome}', lambda c=colour, n=label: pg.ScatterPlotItem(
                size=8, pen=None, brush=pg.mkBrush(*c), name=n))
            idx = groups[outcome]
            item.setData(x[idx], ys_arr[idx])

    def _rolling(self, e: RollingMean, trials: list[Trial], x: np.ndarray, colour: tuple[int, int, int]) -> None:
        xs, ys, window = [], [], []
        for xi, t in zip(x, trials, strict=True):
            if e.skip and _value(t, e.skip) is True:
                continue
            v = _number(_value(t, e.field))
            if math.isnan(v):
                continue
            window.append(v)
            if len(window) > e.window:
                window.pop(0)
            xs.append(xi)
            ys.append(sum(window) / len(window))
        label = f'{e.field}, mean of {e.window}' + (f' ({e.skip} left out)' if e.skip else '')
        item = self._item(self.main, f'rolling:{e.field}', lambda: pg.PlotDataItem(pen=pg.mkPen(colour, width=2),
                                                                                   name=label))
        item.setData(np.array(xs), np.array(ys))
        if e.chance is not None:
            self._item(self.main, f'chance:{e.field}', lambda: pg.InfiniteLine(
                pos=e.chance, angle=0, pen=pg.mkPen(NEUTRAL, style=QtCore.Qt.PenStyle.DashLine)))

    def _shade(self, e: Shade, trials: list[Trial], x: np.ndarray) -> None:
        on = [xi for xi, t in zip(x, trials, strict=True) if _value(t, e.field) is True]
        item = self._item(self.main, f'shade:{e.field}', lambda: pg.BarGraphItem(
            x=[], height=[], width=1.0, y0=-0.1, brush=pg.mkBrush(255, 160, 0, 60), pen=None, name=e.field))
        item.setOpts(x=np.array(on), height=np.full(len(on), 1.2), width=1.0, y0=-0.1)
        item.setZValue(-10)

    def _psychometric(self, e: Psychometric, trials: list[Trial]) -> None:
        """The current session's curve."""
        assert self.psycho is not None
        sid = trials[-1].session_id
        curve = psychometric((t.values for t in trials if t.session_id == sid), e.level, e.choice, e.positive)
        item = self._item(self.psycho, 'psychometric', lambda: pg.PlotDataItem(
            pen=pg.mkPen(PALETTE[0], width=2), symbol='o', symbolBrush=PALETTE[0]))
        item.setData(np.array([c[0] for c in curve]), np.array([c[1] for c in curve]))

    def _sessions(self, trials: list[Trial]) -> None:
        """A dashed line before the first trial of each session after the first drawn."""
        starts = [b.index for a, b in zip(trials, trials[1:], strict=False) if a.session_id != b.session_id]
        for line in self._session_lines[len(starts):]:
            self.main.removeItem(line)
        del self._session_lines[len(starts):]
        for i, at in enumerate(starts):
            if i < len(self._session_lines):
                self._session_lines[i].setPos(at - 0.5)
                continue
            line = pg.InfiniteLine(pos=at - 0.5, angle=90, pen=pg.mkPen((60, 60, 60), style=QtCore.Qt.PenStyle.DashLine),
                                   label='new session', labelOpts={'position': 0.9, 'color': (60, 60, 60)})
            self.main.addItem(line)
            self._session_lines.append(line)

    def _raster(self, row: PilotRow, last: Trial) -> None:
        """Each device's active time since the last trial ended (the trial now running), as bars: an output's
        high level (valve open, LED on), an input's active level (low for one pulled up: a broken beam)."""
        since = last.stamp_ns
        events = [ev for ev in row.gpio if ev[0] >= since]
        devices = sorted({d for _, d, _ in events})
        bars_x, bars_w, bars_y = [], [], []
        high: dict[str, float] = {}
        end = max((ev[0] for ev in events), default=since)
        for stamp, device, level in events:
            t = (stamp - since) / 1e9
            if level != (device in row.active_low):
                high[device] = t
            elif device in high:
                start = high.pop(device)
                bars_x.append((start + t) / 2)
                bars_w.append(max(t - start, 0.005))
                bars_y.append(devices.index(device))
        for device, start in high.items():  # still high
            t = (end - since) / 1e9
            bars_x.append((start + t) / 2)
            bars_w.append(max(t - start, 0.005))
            bars_y.append(devices.index(device))
        item = self._item(self.raster, 'raster', lambda: pg.BarGraphItem(
            x=[], height=[], width=[], brush=pg.mkBrush(*PALETTE[0]), pen=None))
        item.setOpts(x=np.array(bars_x), width=np.array(bars_w), y=np.array(bars_y, dtype=float),
                     height=np.full(len(bars_x), 0.6))
        self._set_ticks(self.raster.getAxis('left'), [[(i, d) for i, d in enumerate(devices)]])
        if self._ticks.get(-1) != len(devices):
            self._ticks[-1] = len(devices)
            self.raster.setYRange(-0.5, max(len(devices), 1) - 0.5, padding=0.05)
