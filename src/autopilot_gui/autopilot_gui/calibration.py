"""The valve calibration dialog: run valves of several rigs at once, type the weighed water, record, see the fit.

Built on the gpio node's services of each rig (``/<rig>/gpio/get_calibration``, ``calibrate_valve``,
``record_calibration``) through a ``request`` callable like :meth:`.window.MainWindow.request`: every call is
queued and answered later, so nothing here waits for ROS. A row per valve of each chosen rig: its run
(openings, open time, interval; "Run" or "Run all"), the water weighed after it in grams (recorded as uL:
1 g of water = 1 mL = 1000 uL), "Record", and the fit. A point the gpio node refuses because it disagrees with
the fit (a unit slip, usually) can be stored anyway when the valve or its plumbing really changed. The plot
shows every shown valve's points (uL per opening against open time; points the fit no longer rests on grey)
with its fit line; the history table lists the selected valve's points.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyqtgraph as pg
from autopilot_msgs.srv import CalibrateValve, GetCalibration, RecordCalibration
from numpy.polynomial import polynomial as P
from PyQt5 import QtCore, QtGui, QtWidgets, sip

from autopilot_core import stamps

from .bridge import Reply
from .model import Lab

#: Microlitres per gram of water (1 g = 1 mL = 1000 uL): the balance gives grams, the gpio node takes uL.
UL_PER_GRAM = 1000.0
COLUMNS = ('Valve', 'Openings', 'Open ms', 'Interval ms', '', 'Status', 'Water (g)', '', 'Fit: open ms =')
COL = {name: i for i, name in enumerate(COLUMNS) if name}
RUN_COL, RECORD_COL = 4, 7
HISTORY = ('Recorded', 'Openings', 'Open ms', 'Total uL', 'uL / opening', 'In fit')
PALETTE = [(21, 101, 192), (239, 108, 0), (46, 125, 50), (106, 27, 154), (0, 131, 143), (93, 64, 55)]
UNUSED = (189, 189, 189)
RED, GREEN = '#c62828', '#2e7d32'
#: The run's end is awaited this much longer than its nominal length (the node's timing, the reply's trip).
SETTLE_S = 0.3
RIGS_S = 1.0

Request = Callable[..., int]


@dataclass
class ValveRow:
    """A valve's row: its widgets and what the dialog knows of it."""

    rig: str
    device: str
    openings: QtWidgets.QSpinBox
    open_ms: QtWidgets.QDoubleSpinBox
    interval_ms: QtWidgets.QDoubleSpinBox
    run: QtWidgets.QPushButton
    grams: QtWidgets.QDoubleSpinBox
    record: QtWidgets.QPushButton
    timer: QtCore.QTimer
    running_until: float = 0.0          # time.time() of the run's end; 0 when not running
    ran: tuple[int, float] | None = None  # (openings, open ms) of the last run: what the weighed water came from
    offer_force: bool = False
    busy: bool = False
    points: list[Any] = field(default_factory=list)  # CalibrationPoint, oldest first
    coefficients: list[float] = field(default_factory=list)
    fit: str = ''
    file: str = ''

    @property
    def key(self) -> tuple[str, str]:
        return self.rig, self.device

    @property
    def label(self) -> str:
        return f'{self.rig} {self.device}'


def fit_curve(coefficients: list[float], points: list[Any], n: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """(open ms, uL per opening) along the fit ``open_ms = c0 + c1*v + ...``, over the volumes of the used points
    (widened a little); empty without a fit."""
    vols = [p.measured_volume_ul / p.n_openings for p in points if p.used and p.n_openings] or \
        [p.measured_volume_ul / p.n_openings for p in points if p.n_openings]
    if not coefficients or not vols:
        return np.array([]), np.array([])
    lo, hi = min(vols), max(vols)
    span = (hi - lo) or hi
    v = np.linspace(max(lo - 0.15 * span, 0.0), hi + 0.15 * span, n)
    ms = P.polyval(v, coefficients)
    keep = np.isfinite(ms) & (ms > 0)
    return ms[keep], v[keep]


def to_ul(grams: float) -> float:
    """Microlitres of ``grams`` of water, rounded past the balance's resolution (0.0163 g is 16.3 uL, not
    16.299999999999997 in the calibration file)."""
    return round(grams * UL_PER_GRAM, 6)


def _short_fit(text: str) -> str:
    """'valve_left: open_ms = 3 + 4 * v (v: uL per opening; 3 point(s))' -> '3 + 4 * v (3 points)'."""
    body = text.split(': ', 1)[-1].removeprefix('open_ms = ')
    if '(v: uL per opening; ' in body:
        eq, rest = body.split(' (v: uL per opening; ', 1)
        rest = rest[:-1] if rest.endswith(')') else rest
        return f'{eq} ({rest.replace("point(s)", "points")})'
    return body


class CalibrationDialog(QtWidgets.QDialog):
    """See the module docstring. ``request(srv_type, name, request, done, idempotent=...)`` queues a call."""

    def __init__(self, request: Request, lab: Lab, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName('calibration')
        self.setWindowTitle('Valve calibration')
        self.setModal(False)
        self.request, self.lab = request, lab
        self.rows: dict[tuple[str, str], ValveRow] = {}
        self.order: list[tuple[str, str]] = []
        self.rig_items: dict[str, QtWidgets.QListWidgetItem] = {}
        self.selected: tuple[str, str] | None = None
        self._colours: dict[tuple[str, str], tuple[int, int, int]] = {}

        lay = QtWidgets.QVBoxLayout(self)
        intro = QtWidgets.QLabel(
            'Choose rigs; each of their valves gets a row. <b>Run</b> opens the valve the given number of times: '
            'collect the water, weigh it, type its weight in <b>grams</b> (it is recorded in microlitres: '
            '1 g of water = 1 mL = 1000 uL) and <b>Record</b>. Each point refits the valve\'s '
            'volume &rarr; open time curve that rewards use.', self)
        intro.setWordWrap(True)
        lay.addWidget(intro)
        top = QtWidgets.QHBoxLayout()
        top.addWidget(QtWidgets.QLabel('Rigs:', self))
        self.rig_list = QtWidgets.QListWidget(self)
        self.rig_list.setObjectName('rigs')
        self.rig_list.setFlow(QtWidgets.QListView.LeftToRight)
        self.rig_list.setFixedHeight(34)
        self.rig_list.itemChanged.connect(self._rig_toggled)
        top.addWidget(self.rig_list, 1)
        self.run_all = QtWidgets.QPushButton('Run all', self)
        self.run_all.setObjectName('runAll')
        self.run_all.setToolTip('Run every ticked valve at once (each with its own openings and times)')
        self.run_all.clicked.connect(self.run_ticked)
        top.addWidget(self.run_all)
        refresh = QtWidgets.QPushButton('Refresh', self)
        refresh.setToolTip('Read the valves and fits of the chosen rigs again')
        refresh.clicked.connect(self.refresh)
        top.addWidget(refresh)
        lay.addLayout(top)

        self.table = QtWidgets.QTableWidget(0, len(COLUMNS), self)
        self.table.setObjectName('valves')
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        for col, tip in ((COL['Water (g)'], 'Grams of water collected over the whole run; recorded as uL '
                                            '(1 g = 1000 uL)'),
                         (COL['Fit: open ms ='], 'open_ms = c0 + c1 * v, v in uL per opening (the reward volume)')):
            header = self.table.horizontalHeaderItem(col)
            if header is not None:
                header.setToolTip(tip)
        vertical, horizontal = self.table.verticalHeader(), self.table.horizontalHeader()
        assert vertical is not None and horizontal is not None
        vertical.setVisible(False)
        horizontal.setSectionResizeMode(QtWidgets.QHeaderView.ResizeToContents)
        horizontal.setStretchLastSection(True)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.table.currentCellChanged.connect(lambda r, *_: self._select_row(r))

        self.plot = pg.PlotWidget(self, background='w')
        self.plot.setObjectName('calibrationPlot')
        self.plot.setLabel('bottom', 'open time per opening (ms)')
        self.plot.setLabel('left', 'water per opening (uL)')
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.addLegend(offset=(10, 5), labelTextSize='8pt')
        self.plot.setMinimumHeight(240)
        right = QtWidgets.QWidget(self)
        rlay = QtWidgets.QVBoxLayout(right)
        rlay.setContentsMargins(0, 0, 0, 0)
        self.history_title = QtWidgets.QLabel('History: select a valve', right)
        self.history_title.setWordWrap(True)
        self.history = QtWidgets.QTableWidget(0, len(HISTORY), right)
        self.history.setObjectName('history')
        self.history.setHorizontalHeaderLabels(list(HISTORY))
        hv, hh = self.history.verticalHeader(), self.history.horizontalHeader()
        assert hv is not None and hh is not None
        hv.setVisible(False)
        hh.setSectionResizeMode(QtWidgets.QHeaderView.ResizeToContents)
        self.history.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        rlay.addWidget(self.history_title)
        rlay.addWidget(self.history, 1)
        lower = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal, self)
        lower.addWidget(self.plot)
        lower.addWidget(right)
        lower.setSizes([520, 580])
        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical, self)
        split.addWidget(self.table)
        split.addWidget(lower)
        split.setSizes([200, 320])
        lay.addWidget(split, 1)

        self.status = QtWidgets.QLabel('', self)
        self.status.setObjectName('status')
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.status)
        self.resize(1240, 760)

        self.rig_timer = QtCore.QTimer(self)
        self.rig_timer.timeout.connect(self.refresh_rigs)
        self.refresh_rigs()

    # -- status ----------------------------------------------------------------------------------------------
    def say(self, text: str, error: bool = True) -> None:
        self.status.setStyleSheet(f'color: {RED if error else GREEN};')
        self.status.setText(text)

    def _failed(self, rig: str, what: str, reply: Reply) -> str | None:
        """The error of a reply in words naming the fix, or None when it succeeded."""
        if reply.error:
            if 'is not available' in reply.error:
                return (f'{rig}: {reply.service} is not available: is the rig running (with its gpio node) on this '
                        'ROS domain? Start it, then Refresh')
            return f'{rig}: {what}: {reply.error}'
        if not reply.response.success:
            return f'{rig}: {what}: {reply.response.message}'
        return None

    def _call(self, rig: str, srv_type: Any, service: str, req: Any, done: Callable[[Reply], None],
              idempotent: bool = False) -> None:
        def guarded(reply: Reply) -> None:
            if not sip.isdeleted(self):  # a reply may outlive a dialog the window deleted
                done(reply)
        self.request(srv_type, f'/{rig}/gpio/{service}', req, guarded, idempotent=idempotent)

    # -- rigs --------------------------------------------------------------------------------------------------
    def refresh_rigs(self) -> None:
        """Online pilots become choices; a rig gone offline stays (greyed) while its rows are shown."""
        online = {name for name, row in self.lab.pilots.items() if row.online}
        self.rig_list.blockSignals(True)
        for name in sorted(online - set(self.rig_items)):
            item = QtWidgets.QListWidgetItem(name)
            item.setFlags(QtCore.Qt.ItemFlags(QtCore.Qt.ItemFlag.ItemIsUserCheckable) | QtCore.Qt.ItemFlag.ItemIsEnabled)
            item.setCheckState(QtCore.Qt.CheckState.Unchecked)
            self.rig_items[name] = item
            self.rig_list.addItem(item)
        for name, item in self.rig_items.items():
            item.setForeground(QtGui.QBrush(QtGui.QColor('#000000' if name in online else '#9e9e9e')))
            item.setToolTip(name if name in online else f'{name}: offline')
        self.rig_list.blockSignals(False)

    def choose(self, rig: str, on: bool = True) -> None:
        """Tick (or untick) ``rig``, as a click does."""
        self.rig_items[rig].setCheckState(QtCore.Qt.CheckState.Checked if on else QtCore.Qt.CheckState.Unchecked)

    def _rig_toggled(self, item: QtWidgets.QListWidgetItem) -> None:
        rig = item.text()
        if item.checkState() == QtCore.Qt.CheckState.Checked:
            self._ask_valves(rig)
        else:
            for key in [k for k in self.order if k[0] == rig]:
                self._remove(key)
            self._replot()

    def _checked(self, rig: str) -> bool:
        item = self.rig_items.get(rig)
        return item is not None and item.checkState() == QtCore.Qt.CheckState.Checked

    def refresh(self) -> None:
        for rig in self.rig_items:
            if self._checked(rig):
                self._ask_valves(rig)

    def _ask_valves(self, rig: str) -> None:
        def got(reply: Reply) -> None:
            why = self._failed(rig, 'valves', reply)
            if why:
                self.say(why)
                return
            if not self._checked(rig):
                return
            valves = list(reply.response.valves)
            if not valves:
                self.say(f'{rig}: its gpio node drives no valve (outputs with kind: valve in the rig\'s params file)')
            for device in valves:
                if (rig, device) not in self.rows:
                    self._add(rig, device)
                self._ask_fit((rig, device))
        self._call(rig, GetCalibration, 'get_calibration', GetCalibration.Request(device=''), got, idempotent=True)

    def _ask_fit(self, key: tuple[str, str]) -> None:
        rig, device = key

        def got(reply: Reply) -> None:
            row = self.rows.get(key)
            if row is None:
                return
            why = self._failed(rig, f'calibration of {device}', reply)
            if why:
                self.say(why)
                return
            self.show_calibration(key, reply.response)
        self._call(rig, GetCalibration, 'get_calibration', GetCalibration.Request(device=device), got, idempotent=True)

    def show_calibration(self, key: tuple[str, str], res: Any) -> None:
        """A GetCalibration answer for the row ``key``: its fit cell, the plot, and the history if selected."""
        row = self.rows[key]
        row.points, row.coefficients, row.fit, row.file = list(res.points), list(res.fit_coefficients), res.fit, \
            res.file
        cell = self.table.item(self.order.index(key), COL['Fit: open ms ='])
        if cell is not None:
            cell.setText(_short_fit(row.fit) if row.coefficients else 'not calibrated yet')
            cell.setToolTip(f'{row.fit}\nfile on the rig: {row.file}')
        if self.selected is None:
            self.table.selectRow(self.order.index(key))
        self._replot()
        if self.selected == key:
            self._fill_history()

    # -- rows --------------------------------------------------------------------------------------------------
    def _add(self, rig: str, device: str) -> None:
        key = (rig, device)
        r = sum(k < key for k in self.order)  # rows sorted by rig, then valve
        self.table.insertRow(r)
        name = QtWidgets.QTableWidgetItem(f'{rig} {device}')
        name.setFlags(name.flags() | QtCore.Qt.ItemFlag.ItemIsUserCheckable)
        name.setCheckState(QtCore.Qt.CheckState.Checked)
        name.setToolTip('Ticked: run by "Run all"')
        self.table.setItem(r, COL['Valve'], name)

        def spin(lo: float, hi: float, value: float, decimals: int, suffix: str = '') -> QtWidgets.QDoubleSpinBox:
            s = QtWidgets.QDoubleSpinBox(self.table)
            s.setRange(lo, hi)
            s.setDecimals(decimals)
            s.setValue(value)
            s.setSuffix(suffix)
            s.setMaximumWidth(110 if suffix else 80)
            return s
        openings = QtWidgets.QSpinBox(self.table)
        openings.setRange(1, 100_000)
        openings.setValue(100)
        openings.setMaximumWidth(80)
        open_ms = spin(0.5, 60_000.0, 20.0, 1)
        interval_ms = spin(1.0, 60_000.0, 200.0, 0)
        grams = spin(0.0, 1000.0, 0.0, 4, ' g')
        grams.setToolTip('Water collected over the whole run, in grams (0.1 mg = 0.1 uL); recorded as uL')
        run = QtWidgets.QPushButton('Run', self.table)
        run.setMaximumWidth(60)
        record = QtWidgets.QPushButton('Record', self.table)
        record.setMinimumWidth(record.fontMetrics().horizontalAdvance('Store anyway') + 24)  # its text may change
        record.setEnabled(False)
        timer = QtCore.QTimer(self)
        timer.setSingleShot(True)
        row = ValveRow(rig, device, openings, open_ms, interval_ms, run, grams, record, timer)
        for obj, tag in ((openings, 'openings'), (open_ms, 'openMs'), (interval_ms, 'intervalMs'), (run, 'run'),
                         (grams, 'grams'), (record, 'record')):
            obj.setObjectName(f'{tag}_{rig}_{device}')
        self.table.setCellWidget(r, COL['Openings'], openings)
        self.table.setCellWidget(r, COL['Open ms'], open_ms)
        self.table.setCellWidget(r, COL['Interval ms'], interval_ms)
        self.table.setCellWidget(r, RUN_COL, run)
        self.table.setItem(r, COL['Status'], QtWidgets.QTableWidgetItem('ready'))
        self.table.setCellWidget(r, COL['Water (g)'], grams)
        self.table.setCellWidget(r, RECORD_COL, record)
        self.table.setItem(r, COL['Fit: open ms ='], QtWidgets.QTableWidgetItem('…'))
        self.rows[key] = row
        self.order.insert(r, key)
        self._colours[key] = PALETTE[len(self._colours) % len(PALETTE)]  # kept while the dialog lives
        run.clicked.connect(lambda _=False: self.run(key))
        record.clicked.connect(lambda _=False: self.record(key, force=row.offer_force))
        grams.valueChanged.connect(lambda _v: self._weighed(key))
        timer.timeout.connect(lambda: self._run_over(key))

    def _remove(self, key: tuple[str, str]) -> None:
        row = self.rows.pop(key)
        row.timer.stop()
        self.table.removeRow(self.order.index(key))
        self.order.remove(key)
        if self.selected == key:
            self.selected = None
            self._fill_history()

    def set_status(self, key: tuple[str, str], text: str, colour: str = '#000000') -> None:
        item = self.table.item(self.order.index(key), COL['Status'])
        if item is not None:
            item.setText(text)
            item.setForeground(QtGui.QBrush(QtGui.QColor(colour)))

    def status_of(self, key: tuple[str, str]) -> str:
        item = self.table.item(self.order.index(key), COL['Status'])
        return item.text() if item is not None else ''

    def _enable(self, row: ValveRow) -> None:
        running = row.running_until > 0
        row.run.setEnabled(not running and not row.busy)
        row.record.setEnabled(not running and not row.busy and row.grams.value() > 0)
        row.record.setText('Store anyway' if row.offer_force else 'Record')
        row.record.setStyleSheet(f'color: {RED};' if row.offer_force else '')

    # -- runs ---------------------------------------------------------------------------------------------------
    def run_ticked(self) -> None:
        """Run every ticked valve that is not running already."""
        started = 0
        for r, key in enumerate(self.order):
            item = self.table.item(r, COL['Valve'])
            row = self.rows[key]
            if item is not None and item.checkState() == QtCore.Qt.CheckState.Checked and row.run.isEnabled():
                self.run(key)
                started += 1
        if not started:
            self.say('no valve to run: choose a rig, and tick its valves (first column)')

    def run(self, key: tuple[str, str]) -> None:
        """Start the row's calibration run (calibrate_valve); the row says until when it runs."""
        row = self.rows[key]
        n, open_ms, interval_ms = row.openings.value(), row.open_ms.value(), row.interval_ms.value()
        row.busy, row.offer_force = True, False
        self.set_status(key, 'starting…')
        self._enable(row)

        def done(reply: Reply) -> None:
            if self.rows.get(key) is not row:
                return
            row.busy = False
            why = self._failed(row.rig, f'run {row.device}', reply)
            if why:
                self.set_status(key, 'not started', RED)
                self.say(why)
            else:
                # The node's own sum of the open times (what it commanded, rounded to its resolution) plus the gaps.
                seconds = (reply.response.total_open_ms + (n - 1) * interval_ms) / 1000
                row.running_until, row.ran = time.time() + seconds, (n, open_ms)
                self.set_status(key, f'running… until {time.strftime("%H:%M:%S", time.localtime(row.running_until))}',
                                '#1565c0')
                row.timer.start(int((seconds + SETTLE_S) * 1000))
                self.say(f'{row.label}: {reply.response.message}', error=False)
            self._enable(row)
        self._call(row.rig, CalibrateValve, 'calibrate_valve', CalibrateValve.Request(
            device=row.device, n_openings=n, open_ms=open_ms, interval_ms=interval_ms), done)

    def _run_over(self, key: tuple[str, str]) -> None:
        row = self.rows.get(key)
        if row is None:
            return
        row.running_until = 0.0
        self.set_status(key, f'weigh: type the grams of water of {row.ran[0] if row.ran else "?"} openings, '
                             'then Record', '#e65100')
        row.grams.setFocus()
        self._enable(row)

    def _weighed(self, key: tuple[str, str]) -> None:
        row = self.rows[key]
        if row.offer_force:  # another number: check it again before any force
            row.offer_force = False
        n = row.ran[0] if row.ran else row.openings.value()
        ul = to_ul(row.grams.value())
        if row.running_until == 0 and not row.busy and ul > 0:
            self.set_status(key, f'{ul:.4g} uL = {ul / n:.3g} uL per opening')
        self._enable(row)

    # -- records ------------------------------------------------------------------------------------------------
    def record(self, key: tuple[str, str], force: bool = False) -> None:
        """Record the weighed water of the row's last run (record_calibration; ``force``: store it even if it
        disagrees with the fit). Without a run in this dialog, the row's openings and open time are taken."""
        row = self.rows[key]
        grams = row.grams.value()
        if not grams > 0:
            self.say(f'{row.label}: type the weight of the water collected, in grams, then Record')
            return
        n, open_ms = row.ran or (row.openings.value(), row.open_ms.value())
        ul = to_ul(grams)
        row.busy = True
        self._enable(row)
        self.set_status(key, 'recording…')

        def done(reply: Reply) -> None:
            if self.rows.get(key) is not row:
                return
            row.busy = False
            if not reply.error and not reply.response.success and 'force=True' in reply.response.message:
                row.offer_force = True
                self.set_status(key, 'refused: off the fit (below)', RED)
                message = reply.response.message.replace(
                    'record the point with force=True or start a new calibration file (parameter calibration_file)',
                    'click "Store anyway"')
                self.say(f'{row.rig}: {message}')
            elif why := self._failed(row.rig, f'record {row.device}', reply):
                self.set_status(key, 'not recorded', RED)
                self.say(why)
            else:
                row.offer_force = False
                self.set_status(key, f'recorded {ul:.4g} uL' + (' (forced)' if force else ''), GREEN)
                self.say(f'{row.rig}: {reply.response.message}', error=False)
                self._ask_fit(key)
            self._enable(row)
        self._call(row.rig, RecordCalibration, 'record_calibration', RecordCalibration.Request(
            device=row.device, n_openings=n, open_ms=open_ms, measured_volume_ul=ul, force=force), done)

    # -- plot and history ---------------------------------------------------------------------------------------
    def _select_row(self, r: int) -> None:
        self.selected = self.order[r] if 0 <= r < len(self.order) else None
        self._fill_history()

    def _replot(self) -> None:
        self.plot.clear()
        legend = self.plot.getPlotItem().legend
        if legend is not None:
            legend.clear()
        for key in self.order:
            row = self.rows[key]
            colour = self._colours[key]
            xs = [p.open_ms for p in row.points if p.n_openings]
            ys = [p.measured_volume_ul / p.n_openings for p in row.points if p.n_openings]
            brushes = [pg.mkBrush(*(colour if p.used else UNUSED)) for p in row.points if p.n_openings]
            if xs:  # unnamed: the legend lists each valve once, by its fit line's colour
                self.plot.addItem(pg.ScatterPlotItem(xs, ys, brush=brushes, size=9, pen=pg.mkPen('w', width=0.5)))
            ms, vol = fit_curve(row.coefficients, row.points)
            if len(ms):
                self.plot.addItem(pg.PlotDataItem(ms, vol, pen=pg.mkPen(colour, width=2), name=row.label))

    def _fill_history(self) -> None:
        row = self.rows.get(self.selected) if self.selected else None
        self.history.setRowCount(0)
        if row is None:
            self.history_title.setText('History: select a valve')
            return
        used = sum(p.used for p in row.points)
        self.history_title.setText(f'<b>{row.label}</b>: {len(row.points)} points, the fit rests on {used} '
                                   f'(grey: no longer used)<br>{row.fit}<br><small>{row.file}</small>')
        self.history.setRowCount(len(row.points))
        for r, p in enumerate(row.points):
            when = stamps.to_ns(p.time) / 1e9
            per = p.measured_volume_ul / p.n_openings if p.n_openings else math.nan
            texts = [time.strftime('%y-%m-%d %H:%M', time.localtime(when)), str(p.n_openings), f'{p.open_ms:g}',
                     f'{p.measured_volume_ul:.4g}', f'{per:.3g}', 'yes' if p.used else 'no']
            for c, text in enumerate(texts):
                item = QtWidgets.QTableWidgetItem(text)
                if not p.used:
                    item.setForeground(QtGui.QBrush(QtGui.QColor('#9e9e9e')))
                self.history.setItem(r, c, item)
        self.history.scrollToBottom()

    def showEvent(self, event: Any) -> None:
        self.refresh_rigs()
        self.rig_timer.start(int(RIGS_S * 1000))
        super().showEvent(event)

    def hideEvent(self, event: Any) -> None:
        self.rig_timer.stop()  # hidden, kept by the window: shown again as it was
        super().hideEvent(event)
