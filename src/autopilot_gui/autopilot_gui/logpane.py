"""The window's log pane: /rosout lines in a table, filtered by node, minimum severity and text.

The window hands it the bridge's ``log`` events in batches (:meth:`LogPane.add`). It keeps the newest
:data:`MAX_LINES` lines; only the lines of a new batch are tested against the filters (a changed filter, a
user's click, re-tests the kept lines once), and a batch reaches the view as one row insertion, so hundreds of
lines a second cost little. The view follows the newest line unless the user scrolled up; scrolling back to the
bottom follows again.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from PyQt5 import QtCore, QtGui, QtWidgets

#: Lines kept (older ones are dropped; every node's own log file has them all).
MAX_LINES = 5000
#: rcl_interfaces/msg/Log levels.
LEVELS = {10: 'DEBUG', 20: 'INFO', 30: 'WARN', 40: 'ERROR', 50: 'FATAL'}
COLOURS = {10: '#757575', 30: '#e65100', 40: '#c62828', 50: '#b71c1c'}
HEADERS = ('Time', 'Severity', 'Node', 'Message')
ALL = 'all nodes'
#: A message longer than this is cut in the table (its tooltip shows the first 4000 characters).
MAX_TEXT = 1000


@dataclass(frozen=True)
class Line:
    """One /rosout message as the pane shows it."""

    stamp: float      # seconds since the epoch, the message's own stamp
    level: int
    node: str
    text: str
    where: str        # file:line (function)

    @property
    def severity(self) -> str:
        return LEVELS.get(self.level, str(self.level))


def line_of(msg: Any) -> Line:
    """A Log message as a :class:`Line` (bounded: a hostile message cannot make the table huge)."""
    stamp = int(msg.stamp.sec) + int(msg.stamp.nanosec) * 1e-9
    where = f'{str(msg.file)[-200:]}:{int(msg.line)} ({str(msg.function)[:100]})'
    return Line(stamp, int(msg.level), str(msg.name)[:200], str(msg.msg)[:4000], where)


class LogModel(QtCore.QAbstractTableModel):
    """The lines that pass the filters, oldest first (the pane keeps the rest)."""

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.rows: list[Line] = []

    def rowCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(HEADERS)

    def headerData(self, section: int, orientation: QtCore.Qt.Orientation, role: int = QtCore.Qt.ItemDataRole.DisplayRole) -> Any:
        if role == QtCore.Qt.ItemDataRole.DisplayRole and orientation == QtCore.Qt.Orientation.Horizontal:
            return HEADERS[section]
        return None

    def data(self, index: QtCore.QModelIndex, role: int = QtCore.Qt.ItemDataRole.DisplayRole) -> Any:
        line = self.rows[index.row()]
        col = index.column()
        if role == QtCore.Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return time.strftime('%H:%M:%S', time.localtime(line.stamp)) + f'.{int(line.stamp % 1 * 1000):03d}'
            if col == 1:
                return line.severity
            if col == 2:
                return line.node
            return line.text[:MAX_TEXT].replace('\n', ' ⏎ ')
        if role == QtCore.Qt.ItemDataRole.ForegroundRole and line.level in COLOURS:
            return QtGui.QBrush(QtGui.QColor(COLOURS[line.level]))
        if role == QtCore.Qt.ItemDataRole.ToolTipRole:
            return f'{line.node} [{line.severity}] {line.where}\n{line.text}'
        return None

    def append(self, lines: list[Line]) -> None:
        if lines:
            self.beginInsertRows(QtCore.QModelIndex(), len(self.rows), len(self.rows) + len(lines) - 1)
            self.rows.extend(lines)
            self.endInsertRows()

    def drop_first(self, n: int) -> None:
        if n > 0:
            self.beginRemoveRows(QtCore.QModelIndex(), 0, n - 1)
            del self.rows[:n]
            self.endRemoveRows()

    def reset(self, lines: list[Line]) -> None:
        self.beginResetModel()
        self.rows = lines
        self.endResetModel()


class LogPane(QtWidgets.QWidget):
    """See the module docstring."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.lines: deque[Line] = deque()
        self.nodes: set[str] = set()
        self.received = 0
        bar = QtWidgets.QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        self.node_combo = QtWidgets.QComboBox(self)
        self.node_combo.setObjectName('logNode')
        self.node_combo.addItem(ALL)
        self.node_combo.setMinimumContentsLength(16)
        self.node_combo.setSizeAdjustPolicy(QtWidgets.QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.level_combo = QtWidgets.QComboBox(self)
        self.level_combo.setObjectName('logLevel')
        for level, name in LEVELS.items():
            self.level_combo.addItem(f'{name} and above', level)
        self.level_combo.setCurrentIndex(1)  # INFO: DEBUG is on only when a node was started with it
        self.search = QtWidgets.QLineEdit(self)
        self.search.setObjectName('logSearch')
        self.search.setPlaceholderText('search messages and nodes')
        self.search.setClearButtonEnabled(True)
        self.count = QtWidgets.QLabel(self)
        clear = QtWidgets.QPushButton('Clear', self)
        clear.clicked.connect(self.clear)
        bar.addWidget(QtWidgets.QLabel('Log:', self))
        bar.addWidget(self.node_combo)
        bar.addWidget(self.level_combo)
        bar.addWidget(self.search, 1)
        bar.addWidget(self.count)
        bar.addWidget(clear)
        self.model = LogModel(self)
        self.view = QtWidgets.QTableView(self)
        self.view.setObjectName('logTable')
        self.view.setModel(self.model)
        self.view.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.view.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.view.setWordWrap(False)
        self.view.setAlternatingRowColors(True)
        vertical, horizontal = self.view.verticalHeader(), self.view.horizontalHeader()
        assert vertical is not None and horizontal is not None
        vertical.setVisible(False)
        vertical.setDefaultSectionSize(20)
        vertical.setSectionResizeMode(QtWidgets.QHeaderView.Fixed)  # no per-row measuring: cheap for many rows
        horizontal.setStretchLastSection(True)
        metrics = self.view.fontMetrics()
        for col, sample in enumerate(('00:00:00.000', 'Severity', 'rig_1.subject_sim')):
            self.view.setColumnWidth(col, metrics.horizontalAdvance(sample) + 16)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(bar)
        lay.addWidget(self.view, 1)
        self.node_combo.currentIndexChanged.connect(self.refilter)
        self.level_combo.currentIndexChanged.connect(self.refilter)
        self.search.textChanged.connect(self.refilter)
        self._count()

    # -- filters ------------------------------------------------------------------------------------------
    def node_filter(self) -> str:
        text = self.node_combo.currentText()
        return '' if text == ALL else text

    def min_level(self) -> int:
        return int(self.level_combo.currentData())

    def _passes(self) -> Any:
        node, level, needle = self.node_filter(), self.min_level(), self.search.text().strip().lower()

        def passes(line: Line) -> bool:
            return (line.level >= level and (not node or line.node == node)
                    and (not needle or needle in line.text.lower() or needle in line.node.lower()))
        return passes

    def refilter(self) -> None:
        """Re-test the kept lines (a filter changed) and follow the newest again."""
        passes = self._passes()
        self.model.reset([line for line in self.lines if passes(line)])
        self.view.scrollToBottom()
        self._count()

    # -- lines ----------------------------------------------------------------------------------------------
    def add(self, msgs: Iterable[Any]) -> None:
        """A batch of rcl_interfaces/msg/Log messages (or :class:`Line`), oldest first."""
        new = [m if isinstance(m, Line) else line_of(m) for m in msgs]
        if not new:
            return
        self.received += len(new)
        new = new[-MAX_LINES:]
        scroll = self.view.verticalScrollBar()
        follow = scroll is None or scroll.value() >= scroll.maximum() - 2
        # Bound first: lines leaving the kept ones leave the view too (the view's rows are a subsequence).
        over = len(self.lines) + len(new) - MAX_LINES
        if over > 0:
            gone = [self.lines.popleft() for _ in range(min(over, len(self.lines)))]
            shown = self.model.rows
            k = 0
            for line in gone:  # the oldest shown rows are among the oldest kept lines, in order
                if k < len(shown) and shown[k] is line:
                    k += 1
            self.model.drop_first(k)
        self.lines.extend(new)
        fresh = {m.node for m in new} - self.nodes
        if fresh:
            self.nodes |= fresh
            self._add_nodes(fresh)
        passes = self._passes()
        self.model.append([line for line in new if passes(line)])
        if follow:
            self.view.scrollToBottom()
        self._count()

    def _add_nodes(self, fresh: set[str]) -> None:
        self.node_combo.blockSignals(True)
        for name in sorted(fresh):
            names = [self.node_combo.itemText(i) for i in range(1, self.node_combo.count())]
            at = 1 + sum(n < name for n in names)
            self.node_combo.insertItem(at, name)
        self.node_combo.blockSignals(False)

    def clear(self) -> None:
        self.lines.clear()
        self.model.reset([])
        self._count()

    def _count(self) -> None:
        self.count.setText(f'{len(self.model.rows)} of {len(self.lines)} lines')
