"""Small widgets the window is built of: the message bar, the weight prompt, and the pilot table.

They draw what :mod:`.model` holds and turn clicks into requests; none of them waits for anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from PyQt5 import QtCore, QtGui, QtWidgets

from .model import COLUMNS, Lab

INFO_MS = 8000
GREEN, GREY, AMBER, RED = '#2e7d32', '#9e9e9e', '#f9a825', '#c62828'
STATE_COLOURS = {'running': GREEN, 'paused': AMBER, 'error': RED, 'idle': '#1565c0'}


class MessageBar(QtWidgets.QFrame):
    """One line at the top of the window: the newest error (red) or notice, until dismissed or replaced."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName('messageBar')
        self.label = QtWidgets.QLabel(self)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QtWidgets.QToolButton(self)
        close.setText('✕')
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 4, 4)
        lay.addWidget(self.label, 1)
        lay.addWidget(close)
        self.history: list[tuple[str, str]] = []
        # A child timer dies with the bar: a notice's expiry can never reach a deleted widget.
        self._expiry = QtCore.QTimer(self)
        self._expiry.setSingleShot(True)
        self._expiry.timeout.connect(self.hide)
        self.hide()

    def show_message(self, text: str, level: str = 'error') -> None:
        self.history.append((level, text))
        colour = {'error': '#ffebee', 'warn': '#fff8e1'}.get(level, '#e8f5e9')
        self.setStyleSheet(f'#messageBar {{ background: {colour}; border: 1px solid #bbb; border-radius: 3px; }}')
        self.label.setText(text)
        self.show()
        if level == 'info':  # a notice goes by itself; an error stays until read
            self._expiry.start(INFO_MS)
        else:
            self._expiry.stop()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ''


class WeightDialog(QtWidgets.QDialog):
    """Asks for a subject's weight (grams) before or after its session; never modal to the rest of the window."""

    def __init__(self, subject: str, when: str, baseline_g: float, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.subject, self.when = subject, when
        self.setWindowTitle(f'Weight of {subject}')
        form = QtWidgets.QFormLayout(self)
        self.grams = QtWidgets.QDoubleSpinBox(self)
        self.grams.setRange(0.0, 2000.0)
        self.grams.setDecimals(2)
        self.grams.setSuffix(' g')
        form.addRow(QtWidgets.QLabel(f'{subject}: weight {"before" if when == "start" else "after"} the session'))
        form.addRow('Weight', self.grams)
        self.ratio = QtWidgets.QLabel('')
        form.addRow('Of baseline', self.ratio)
        self.baseline_g = baseline_g
        self.grams.valueChanged.connect(self._ratio)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.Ok | QtWidgets.QDialogButtonBox.Cancel)
        skip = buttons.addButton('Skip', QtWidgets.QDialogButtonBox.DestructiveRole)
        assert skip is not None
        skip.clicked.connect(lambda: self.done(2))
        self.skip = skip
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self._ratio()

    def _ratio(self) -> None:
        g = self.grams.value()
        if math.isfinite(self.baseline_g) and self.baseline_g > 0 and g > 0:
            self.ratio.setText(f'{g / self.baseline_g:.0%} of {self.baseline_g:.1f} g')
        else:
            self.ratio.setText('no baseline yet' if g > 0 else '')

    def _accept(self) -> None:
        if self.grams.value() <= 0:
            self.ratio.setText('enter the weight in grams (or Skip)')
            return
        self.accept()


class PilotTable(QtWidgets.QTableWidget):
    """One row per pilot: the model's cells, a subject chooser, and start / pause / stop."""

    ACTIONS = ('start', 'pause', 'stop')

    def __init__(self, lab: Lab, on_action: Callable[[str, str, str], None],
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(0, len(COLUMNS) + 1, parent)
        self.lab, self.on_action = lab, on_action
        headers = [c.capitalize() for c in COLUMNS] + ['']
        headers[COLUMNS.index('subject')] = 'Subject'
        self.setHorizontalHeaderLabels(headers)
        vertical, horizontal = self.verticalHeader(), self.horizontalHeader()
        assert vertical is not None and horizontal is not None
        vertical.setVisible(False)
        self.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.setSelectionMode(QtWidgets.QAbstractItemView.NoSelection)
        # Fixed widths, fitted when rows are added: ResizeToContents re-measured every row on each setText (96 ms
        # a refresh at 50 pilots in bench/gui.py).
        horizontal.setSectionResizeMode(QtWidgets.QHeaderView.Interactive)
        horizontal.setStretchLastSection(True)
        self.rows: dict[str, int] = {}
        self.combos: dict[str, QtWidgets.QComboBox] = {}
        self.buttons: dict[str, dict[str, QtWidgets.QPushButton]] = {}
        self._shown: dict[str, tuple[str, str]] = {}
        self._widest: dict[int, int] = {}  # per column, the longest text it was fitted to
        bar = self.verticalScrollBar()
        if bar is not None:
            bar.valueChanged.connect(lambda _: self.refresh())  # rows scrolled into view are filled at once

    def selected_subject(self, pilot: str) -> str:
        return self.combos[pilot].currentText()

    def refresh(self, now: float | None = None) -> None:
        """Add rows for new pilots and fill the rows in view (a row scrolled to is filled then)."""
        added = False
        for pilot in self.lab.pilots:
            if pilot not in self.rows:
                self._add_row(pilot)
                added = True
        first, last = self._rows_in_view()
        for pilot, r in self.rows.items():
            if first <= r <= last:
                self._fill(pilot, now)
        if added:
            self.resizeColumnsToContents()

    def _rows_in_view(self) -> tuple[int, int]:
        """The first and last row the viewport shows (all rows while the table is not shown)."""
        viewport = self.viewport()
        if not self.isVisible() or viewport is None:
            return 0, self.rowCount() - 1
        top, bottom = self.rowAt(0), self.rowAt(viewport.height() - 1)
        return (0 if top < 0 else top), (self.rowCount() - 1 if bottom < 0 else bottom)

    def _add_row(self, pilot: str) -> None:
        r = self.rowCount()
        self.insertRow(r)
        self.rows[pilot] = r
        for c in range(len(COLUMNS)):
            self.setItem(r, c, QtWidgets.QTableWidgetItem(''))
        combo = QtWidgets.QComboBox(self)
        combo.setObjectName(f'subject_{pilot}')
        combo.setMinimumContentsLength(10)
        self.combos[pilot] = combo
        self.setCellWidget(r, COLUMNS.index('subject'), combo)
        box = QtWidgets.QWidget(self)
        lay = QtWidgets.QHBoxLayout(box)
        lay.setContentsMargins(2, 0, 2, 0)
        self.buttons[pilot] = {}
        for action in self.ACTIONS:
            b = QtWidgets.QPushButton(action.capitalize(), box)
            b.setObjectName(f'{action}_{pilot}')
            b.clicked.connect(lambda _=False, a=action, p=pilot: self.on_action(a, p, self.selected_subject(p)))
            lay.addWidget(b)
            self.buttons[pilot][action] = b
        self.setCellWidget(r, len(COLUMNS), box)

    def _fill(self, pilot: str, now: float | None) -> None:
        row, r = self.lab.pilots[pilot], self.rows[pilot]
        cells = self.lab.cells(pilot, now)
        for c, text in enumerate(cells):
            item = self.item(r, c)
            if item is not None and item.text() != text:
                item.setText(text)
                if len(text) > self._widest.get(c, 0):  # a longer text than the column was fitted to
                    self._widest[c] = len(text)
                    self.resizeColumnToContents(c)
        first = self.item(r, 0)
        if first is not None:
            colour = STATE_COLOURS.get(row.state, GREY) if row.online else GREY
            tip = f'{row.pilot} on {row.host or "?"}: {row.state}' + (f'\n{row.message}' if row.message else '')
            if self._shown.get(pilot) != (colour, tip):  # only what changed: 50 rows redraw every 0.5 s
                self._shown[pilot] = (colour, tip)
                first.setIcon(_dot(colour))
                first.setToolTip(tip)
        grey = QtGui.QColor(GREY if not row.online else '#000000')
        for c in range(len(COLUMNS)):
            item = self.item(r, c)
            if item is not None and item.foreground().color() != grey:
                item.setForeground(grey)
        combo = self.combos[pilot]
        wanted = [row.subject] if row.session_id else self.lab.roster(pilot)
        if [combo.itemText(i) for i in range(combo.count())] != wanted:
            keep = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(wanted)
            if keep in wanted and not row.session_id:
                combo.setCurrentText(keep)
            combo.blockSignals(False)
        combo.setEnabled(row.online and not row.session_id)
        b = self.buttons[pilot]
        b['start'].setEnabled(row.online and row.state == 'idle' and bool(combo.currentText()))
        b['pause'].setText('Resume' if row.state == 'paused' else 'Pause')
        b['pause'].setEnabled(row.online and row.state in ('running', 'paused'))
        b['stop'].setEnabled(row.online and row.state in ('running', 'paused'))


_DOTS: dict[str, QtGui.QIcon] = {}


def _dot(colour: str) -> QtGui.QIcon:
    if colour in _DOTS:
        return _DOTS[colour]
    pix = QtGui.QPixmap(12, 12)
    pix.fill(QtCore.Qt.GlobalColor.transparent)
    p = QtGui.QPainter(pix)
    p.setRenderHint(QtGui.QPainter.Antialiasing)
    p.setBrush(QtGui.QColor(colour))
    p.setPen(QtCore.Qt.PenStyle.NoPen)
    p.drawEllipse(1, 1, 10, 10)
    p.end()
    _DOTS[colour] = QtGui.QIcon(pix)
    return _DOTS[colour]

