"""The protocol editor (issue 19 item 4): build a protocol's steps from the registered tasks, see it checked by
the pilots' own code on every edit, save it through the terminal, and put subjects on it.

Three panes. Left: the terminal's protocols (``list_protocols``; one the pilots would refuse is red with its
error), New / Open (``get_protocol``), and the assignment of one or many subjects to a protocol and step
(``assign_protocol`` for each). Middle: the draft's name and description, its steps (add, remove, move) and the
selected step's form: name, task (the registered tasks, with the task's description), a row per parameter made
from the task's :class:`~autopilot_tasks.task.Param` (checkbox, spin box bounded by min/max with the unit, combo
of choices, or a line; the description beside it; reset to the default), and the graduation rule. Right: the
YAML the terminal will save (read-only, the wrong line marked), the status of the pilots' check, and Save (which
asks before replacing a file). The draft (:mod:`.protocol_model`) is the one truth: widgets write into it and
everything shown is redrawn from it. Every request is queued through the window; nothing here waits for ROS.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from typing import Any, Protocol, TypeGuard

from autopilot_msgs.srv import AssignProtocol, GetProtocol, ListProtocols, SaveProtocol
from PyQt5 import QtCore, QtGui, QtWidgets

from autopilot_tasks import registry
from autopilot_tasks.task import Param

from .bridge import Reply
from .model import Lab
from .protocol_model import RULES, Draft, DraftError, DraftStep, task_class
from .widgets import GREEN, GREY, RED

RULE_NAMES = ('none', *RULES)
INT_LIMIT = 2**31 - 1  # a QSpinBox holds a C int
#: How often the subjects list looks at the window's model (it changes with the terminal's latched list).
SUBJECTS_MS = 500


class Host(Protocol):
    """What the editor needs of the window (:class:`~.window.MainWindow` is one)."""

    lab: Lab

    def request(self, srv_type: Any, name: str, req: Any, done: Callable[[Reply], None], *,
                idempotent: bool = False) -> int: ...


def _json_or_text(text: str) -> Any:
    """The mapping ``text`` holds as JSON, else the text itself (the check then says what is wrong with it)."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict) else text


class ParamRow:
    """A parameter's widgets: its label, the editor made for its type, reset, and the description."""

    def __init__(self, param: Param, parent: QtWidgets.QWidget, changed: Callable[[str, Any], None]) -> None:
        self.param, self.name = param, param.name
        self.label = QtWidgets.QLabel(param.name, parent)
        tip = f'{param.description}\nallowed: {param.allowed()}; default {param.default!r}'.strip()
        self.note = QtWidgets.QLabel(param.description, parent)
        self.note.setWordWrap(True)
        self.note.setStyleSheet(f'color: {GREY};')
        self.reset = QtWidgets.QToolButton(parent)
        self.reset.setText('↺')
        self.reset.setToolTip(f'reset to the default ({_shown(param.default)})')
        self.reset.clicked.connect(lambda: changed(self.name, param.default))
        self.editor = self._make(parent, changed)
        self.editor.setObjectName(f'param_{param.name}')
        for w in (self.label, self.editor, self.note):
            w.setToolTip(tip)

    def _make(self, parent: QtWidgets.QWidget, changed: Callable[[str, Any], None]) -> QtWidgets.QWidget:
        p = self.param
        suffix = f' {p.unit}' if p.unit else ''
        if p.choices is not None:
            combo = QtWidgets.QComboBox(parent)
            for c in p.choices:
                combo.addItem(_shown(c))
            combo.currentIndexChanged.connect(lambda i: changed(self.name, p.choices[i]) if p.choices and i >= 0 else None)
            return combo
        if p.type is bool:
            box = QtWidgets.QCheckBox(parent)
            box.toggled.connect(lambda on: changed(self.name, bool(on)))
            return box
        if p.type is int:
            spin = QtWidgets.QSpinBox(parent)
            spin.setRange(int(max(p.min, -INT_LIMIT)) if p.min is not None else -INT_LIMIT,
                          int(min(p.max, INT_LIMIT)) if p.max is not None else INT_LIMIT)
            spin.setSuffix(suffix)
            spin.setKeyboardTracking(False)  # typing "25" is one edit, not "2" then "25"
            spin.valueChanged.connect(lambda v: changed(self.name, int(v)))
            return spin
        if p.type is float:
            dspin = QtWidgets.QDoubleSpinBox(parent)
            dspin.setDecimals(_decimals(p.default, p.min, p.max))
            dspin.setRange(p.min if p.min is not None else -1e12, p.max if p.max is not None else 1e12)
            if p.min is not None and p.max is not None and p.max > p.min:
                dspin.setSingleStep(max(10.0 ** math.floor(math.log10((p.max - p.min) / 100)),
                                        10.0 ** -dspin.decimals()))
            dspin.setSuffix(suffix)
            dspin.setKeyboardTracking(False)
            dspin.valueChanged.connect(lambda v: changed(self.name, float(v)))
            return dspin
        line = QtWidgets.QLineEdit(parent)
        if p.type is dict:  # a stimulus set: edited as JSON text, kept in the draft as the mapping once it parses
            line.textChanged.connect(lambda t: changed(self.name, _json_or_text(t)))
        else:
            line.textChanged.connect(lambda t: changed(self.name, t))
        return line

    def show(self, value: Any, given: bool) -> None:
        """Show ``value`` (as far as the widget can: an out-of-range one is marked, not clamped in the draft)."""
        p, w = self.param, self.editor
        w.blockSignals(True)
        try:
            if isinstance(w, QtWidgets.QComboBox):
                w.setCurrentIndex(list(p.choices or ()).index(value) if value in (p.choices or ()) else -1)
            elif isinstance(w, QtWidgets.QCheckBox):
                w.setChecked(value is True)
            elif isinstance(w, QtWidgets.QDoubleSpinBox):
                if _number(value):
                    w.setDecimals(max(w.decimals(), _decimals(value)))
                    w.setValue(float(value))
            elif isinstance(w, QtWidgets.QSpinBox):
                if _number(value) and float(value).is_integer():
                    w.setValue(int(value))
            elif isinstance(w, QtWidgets.QLineEdit):
                text = json.dumps(value) if isinstance(value, dict) else str(value)
                if w.text() != text:
                    w.setText(text)
        finally:
            w.blockSignals(False)
        problem = p.check(value)
        font = self.label.font()
        font.setBold(given)
        self.label.setFont(font)
        self.label.setText(f'{p.name}{" *" if given else ""}')
        self.reset.setEnabled(given)
        if problem:
            self.label.setStyleSheet(f'color: {RED};')
            self.note.setStyleSheet(f'color: {RED};')
            self.note.setText(f'{_shown(value)}: {problem}')
        else:
            self.label.setStyleSheet('')
            self.note.setStyleSheet(f'color: {GREY};')
            self.note.setText(p.description)


class ProtocolEditor(QtWidgets.QDialog):
    """See the module docstring. ``host``: the window (``request`` and ``lab``)."""

    def __init__(self, host: Host, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent if parent is not None else host if isinstance(host, QtWidgets.QWidget) else None)
        self.setObjectName('protocolEditor')
        self.setWindowTitle('Protocols')
        self.setModal(False)
        self.host, self.lab = host, host.lab
        self.draft = Draft(name='new_protocol')
        self.saved_text = ''
        self.current: int | None = None
        self.known: dict[str, Any] = {}  # name -> ProtocolSummary, from list_protocols
        self.param_rows: dict[str, ParamRow] = {}
        self._subjects_seen: tuple = ()
        self._assigning: dict[str, str] = {}
        self._step_name = ''
        self._loading = False

        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal, self)
        split.addWidget(self._left())
        split.addWidget(self._middle())
        split.addWidget(self._right())
        split.setSizes([340, 760, 420])
        lay = QtWidgets.QVBoxLayout(self)
        lay.addWidget(split)
        self.resize(1540, 880)

        self.timer = QtCore.QTimer(self)
        self.timer.timeout.connect(self.refresh_subjects)
        self.timer.start(SUBJECTS_MS)
        self.set_draft(self.draft)
        self.refresh_subjects()
        self.list_protocols()

    # -- layout ------------------------------------------------------------------------------------------
    def _left(self) -> QtWidgets.QWidget:
        pane = QtWidgets.QWidget(self)
        lay = QtWidgets.QVBoxLayout(pane)
        lay.setContentsMargins(0, 0, 0, 0)
        box = QtWidgets.QGroupBox('On the terminal', pane)
        b = QtWidgets.QVBoxLayout(box)
        self.protocol_list = QtWidgets.QListWidget(box)
        self.protocol_list.setObjectName('protocols')
        self.protocol_list.setWordWrap(True)
        self.protocol_list.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.protocol_list.itemDoubleClicked.connect(lambda _item: self.open_selected())
        b.addWidget(self.protocol_list)
        row = QtWidgets.QHBoxLayout()
        self.refresh_button = self._button('Refresh', self.list_protocols, row)
        self.new_button = self._button('New', self.new, row)
        self.open_button = self._button('Open', self.open_selected, row)
        b.addLayout(row)
        lay.addWidget(box, 2)

        box = QtWidgets.QGroupBox('Assign subjects', pane)
        form = QtWidgets.QFormLayout(box)
        self.subject_list = QtWidgets.QListWidget(box)
        self.subject_list.setObjectName('subjects')
        self.subject_list.setWordWrap(True)
        self.subject_list.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.subject_list.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection)
        self.subject_list.itemSelectionChanged.connect(self._assign_ready)
        form.addRow(self.subject_list)
        self.assign_protocol = QtWidgets.QComboBox(box)
        self.assign_protocol.setObjectName('assignProtocol')
        self.assign_protocol.currentIndexChanged.connect(self._assign_steps)
        form.addRow('Protocol', self.assign_protocol)
        self.assign_step = QtWidgets.QComboBox(box)
        self.assign_step.setObjectName('assignStep')
        form.addRow('Start at', self.assign_step)
        self.assign_button = QtWidgets.QPushButton('Assign', box)
        self.assign_button.setObjectName('assign')
        self.assign_button.clicked.connect(self.assign)
        form.addRow(self.assign_button)
        lay.addWidget(box, 3)
        return pane

    def _middle(self) -> QtWidgets.QWidget:
        pane = QtWidgets.QWidget(self)
        lay = QtWidgets.QVBoxLayout(pane)
        lay.setContentsMargins(0, 0, 0, 0)
        top = QtWidgets.QFormLayout()
        self.name_edit = QtWidgets.QLineEdit(pane)
        self.name_edit.setObjectName('protocolName')
        self.name_edit.setToolTip('the file name on the terminal: <protocol_dir>/<name>.yaml')
        self.name_edit.textChanged.connect(lambda t: self._edit(lambda: setattr(self.draft, 'name', t.strip())))
        top.addRow('Protocol', self.name_edit)
        self.description_edit = QtWidgets.QLineEdit(pane)
        self.description_edit.setObjectName('protocolDescription')
        self.description_edit.textChanged.connect(
            lambda t: self._edit(lambda: setattr(self.draft, 'description', t.strip())))
        top.addRow('Description', self.description_edit)
        lay.addLayout(top)

        box = QtWidgets.QGroupBox('Steps', pane)
        b = QtWidgets.QHBoxLayout(box)
        self.step_list = QtWidgets.QListWidget(box)
        self.step_list.setObjectName('steps')
        self.step_list.setMaximumHeight(130)
        self.step_list.currentRowChanged.connect(self.select_step)
        b.addWidget(self.step_list, 1)
        buttons = QtWidgets.QVBoxLayout()
        self.add_button = self._button('Add', self.add_step, buttons)
        self.remove_button = self._button('Remove', self.remove_step, buttons)
        self.up_button = self._button('Up', lambda: self.move_step(-1), buttons)
        self.down_button = self._button('Down', lambda: self.move_step(1), buttons)
        buttons.addStretch(1)
        b.addLayout(buttons)
        lay.addWidget(box)

        self.step_box = QtWidgets.QGroupBox('Step', pane)
        form = QtWidgets.QFormLayout(self.step_box)
        self.step_name = QtWidgets.QLineEdit(self.step_box)
        self.step_name.setObjectName('stepName')
        self.step_name.textChanged.connect(lambda t: self._edit_step(lambda s: setattr(s, 'name', t)))
        form.addRow('Name', self.step_name)
        self.task_combo = QtWidgets.QComboBox(self.step_box)
        self.task_combo.setObjectName('task')
        self.tasks = registry.load_tasks()
        for plugin in self.tasks:
            self.task_combo.addItem(plugin.name if plugin.cls else f'{plugin.name} (broken)', plugin.name)
            if plugin.cls is None:
                self.task_combo.setItemData(self.task_combo.count() - 1, plugin.error, QtCore.Qt.ItemDataRole.ToolTipRole)
        self.task_combo.currentIndexChanged.connect(self._task_chosen)
        form.addRow('Task', self.task_combo)
        self.task_about = QtWidgets.QLabel(self.step_box)
        self.task_about.setWordWrap(True)
        self.task_about.setStyleSheet(f'color: {GREY};')
        form.addRow('', self.task_about)
        scroll = QtWidgets.QScrollArea(self.step_box)
        scroll.setWidgetResizable(True)
        self.param_holder = QtWidgets.QWidget(scroll)
        self.param_grid = QtWidgets.QGridLayout(self.param_holder)
        self.param_grid.setColumnStretch(3, 1)
        scroll.setWidget(self.param_holder)
        form.addRow(QtWidgets.QLabel('Parameters (bold *: written to the file; the rest keep the task default)'))
        form.addRow(scroll)

        self.rule_combo = QtWidgets.QComboBox(self.step_box)
        self.rule_combo.setObjectName('graduation')
        self.rule_combo.addItems(['none: stay until moved on', 'after n trials', 'on accuracy', 'after n sessions'])
        self.rule_combo.currentIndexChanged.connect(lambda _i: self._graduation())
        form.addRow('Graduation', self.rule_combo)
        grad = QtWidgets.QHBoxLayout()
        self.count_spin = self._spin(grad, 'count', 'n', 1, 1_000_000)
        self.accuracy_spin = QtWidgets.QDoubleSpinBox(self.step_box)
        self.accuracy_spin.setObjectName('accuracy')
        self.accuracy_spin.setRange(0.0, 1.0)
        self.accuracy_spin.setDecimals(3)
        self.accuracy_spin.setSingleStep(0.05)
        self.accuracy_spin.setKeyboardTracking(False)
        self.accuracy_spin.setPrefix('≥ ')
        self.accuracy_spin.setToolTip('fraction correct of the scored trials (correction trials never count)')
        self.accuracy_spin.valueChanged.connect(lambda _v: self._graduation())
        grad.addWidget(self.accuracy_spin)
        self.window_spin = self._spin(grad, 'window', 'over the last', 1, 1_000_000)
        self.window_spin.setSuffix(' scored trials')
        grad.addStretch(1)
        form.addRow('', grad)
        lay.addWidget(self.step_box, 1)
        return pane

    def _right(self) -> QtWidgets.QWidget:
        pane = QtWidgets.QWidget(self)
        lay = QtWidgets.QVBoxLayout(pane)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(QtWidgets.QLabel('YAML, as the terminal will save it'))
        self.preview = QtWidgets.QPlainTextEdit(pane)
        self.preview.setObjectName('preview')
        self.preview.setReadOnly(True)
        self.preview.setFont(QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont))
        self.preview.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.NoWrap)
        lay.addWidget(self.preview, 1)
        self.status = QtWidgets.QLabel(pane)
        self.status.setObjectName('status')
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.status)
        self.notice = QtWidgets.QLabel(pane)
        self.notice.setObjectName('notice')
        self.notice.setWordWrap(True)
        self.notice.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.notice)
        row = QtWidgets.QHBoxLayout()
        row.addStretch(1)
        self.save_button = self._button('Save on the terminal', self.save, row)
        self.save_button.setObjectName('save')
        lay.addLayout(row)
        return pane

    def _button(self, text: str, slot: Callable[[], None], layout: QtWidgets.QLayout) -> QtWidgets.QPushButton:
        button = QtWidgets.QPushButton(text, self)
        button.setObjectName(text.lower())
        button.clicked.connect(lambda _checked=False: slot())
        layout.addWidget(button)
        return button

    def _spin(self, layout: QtWidgets.QHBoxLayout, name: str, prefix: str, lo: int, hi: int) -> QtWidgets.QSpinBox:
        spin = QtWidgets.QSpinBox(self.step_box)
        spin.setObjectName(name)
        spin.setRange(lo, hi)
        spin.setPrefix(f'{prefix} ')
        spin.setKeyboardTracking(False)
        spin.valueChanged.connect(lambda _v: self._graduation())
        layout.addWidget(spin)
        return spin

    # -- the draft ---------------------------------------------------------------------------------------
    def set_draft(self, draft: Draft, saved_text: str = '') -> None:
        """Edit ``draft`` from now on (``saved_text``: what the terminal has of it, for the unsaved mark)."""
        self.draft, self.saved_text = draft, saved_text
        self._loading = True
        try:
            self.name_edit.setText(draft.name)
            self.description_edit.setText(draft.description)
        finally:
            self._loading = False
        self._fill_steps(0 if draft.steps else None)

    def _fill_steps(self, select: int | None) -> None:
        self._loading = True
        try:
            self.step_list.clear()
            for i, step in enumerate(self.draft.steps):
                self.step_list.addItem(_step_text(i, step))
            self.step_list.setCurrentRow(select if select is not None else -1)
        finally:
            self._loading = False
        self.select_step(select if select is not None else -1)

    def select_step(self, row: int) -> None:
        """Show step ``row``'s form (none when -1)."""
        if self._loading:
            return
        self.current = row if 0 <= row < len(self.draft.steps) else None
        self.step_box.setEnabled(self.current is not None)
        self._fill_form()
        self.changed()

    def _fill_form(self) -> None:
        """The step form from the draft: the parameter rows are made again for the step's task."""
        self._loading = True
        try:
            while self.param_grid.count():
                item = self.param_grid.takeAt(0)
                widget = item.widget() if item is not None else None
                if widget is not None:
                    widget.hide()
                    widget.deleteLater()
            for r in range(self.param_grid.rowCount()):
                self.param_grid.setRowStretch(r, 0)
            self.param_rows = {}
            step = self.draft.steps[self.current] if self.current is not None else None
            self.step_name.setText(step.name if step else '')
            if step is None:
                self.task_about.setText('add a step')
                return
            index = self.task_combo.findData(step.task)
            if index < 0:
                self.task_combo.addItem(f'{step.task} (unknown)', step.task)
                index = self.task_combo.count() - 1
            self.task_combo.setCurrentIndex(index)
            cls = task_class(step.task)
            self.task_about.setText(cls.description() if cls is not None else
                                    f'task {step.task!r} is not registered here (see `autopilot task list`)')
            for r, param in enumerate(cls.params().values() if cls is not None else ()):
                row = ParamRow(param, self.param_holder, self._param_changed)
                self.param_rows[param.name] = row
                for c, w in enumerate((row.label, row.editor, row.reset, row.note)):
                    self.param_grid.addWidget(w, r, c)
                    w.show()  # now, not when the layout's queued show runs: a screenshot may come first
            self.param_grid.setRowStretch(len(self.param_rows), 1)
            self._fill_graduation(step)
        finally:
            self._loading = False

    def _fill_graduation(self, step: DraftStep) -> None:
        """The graduation widgets from ``step`` (a value the widget cannot hold stays in the draft, marked)."""
        rule = step.rule()
        grad = step.graduation or {}
        widgets = (self.rule_combo, self.count_spin, self.window_spin, self.accuracy_spin)
        for w in widgets:
            w.blockSignals(True)
        self.rule_combo.setCurrentIndex(RULE_NAMES.index(rule))
        for spin, key in ((self.count_spin, 'trials' if rule == 'trials' else 'sessions'),
                          (self.window_spin, 'window')):
            value = grad.get(key)
            if _number(value):
                spin.setValue(int(min(max(value, spin.minimum()), spin.maximum())))
        accuracy = grad.get('accuracy')
        if _number(accuracy):
            self.accuracy_spin.setValue(float(accuracy))
        for w in widgets:
            w.blockSignals(False)

    def changed(self) -> None:
        """After every edit: the YAML, the pilots' check, the marks; all from the draft."""
        text = self.draft.to_yaml()
        if self.preview.toPlainText() != text:
            self.preview.setPlainText(text)
        problem = self.draft.problem()
        name_problem = self.draft.name_problem()
        marks = []
        if problem is not None:
            self._say(self.status, str(problem), RED)
            if problem.line:
                mark = QtWidgets.QTextEdit.ExtraSelection()
                mark.format.setBackground(QtGui.QColor('#ffcdd2'))
                mark.format.setProperty(QtGui.QTextFormat.Property.FullWidthSelection, True)
                doc = self.preview.document()
                if doc is not None:
                    mark.cursor = QtGui.QTextCursor(doc.findBlockByNumber(problem.line - 1))
                    marks.append(mark)
        elif name_problem is not None:
            self._say(self.status, name_problem, RED)
        else:
            n = len(self.draft.steps)
            self._say(self.status, f'valid: {n} step{"s" if n != 1 else ""}', GREEN)
        self.preview.setExtraSelections(marks)
        self.save_button.setEnabled(problem is None and name_problem is None)
        for i, step in enumerate(self.draft.steps):
            item = self.step_list.item(i)
            if item is not None and item.text() != _step_text(i, step):
                item.setText(_step_text(i, step))
        current = self.draft.steps[self.current] if self.current is not None else None
        for name, row in self.param_rows.items():
            given = current is not None and name in current.parameters
            row.show(current.parameters[name] if current is not None and given else row.param.default, given)
        rule = current.rule() if current is not None else 'none'
        self.count_spin.setVisible(rule in ('trials', 'sessions'))
        self.count_spin.setSuffix(' trials' if rule == 'trials' else ' sessions')
        self.accuracy_spin.setVisible(rule == 'accuracy')
        self.window_spin.setVisible(rule == 'accuracy')
        self.remove_button.setEnabled(current is not None)
        self.up_button.setEnabled(self.current is not None and self.current > 0)
        self.down_button.setEnabled(self.current is not None and self.current < len(self.draft.steps) - 1)
        dirty = text != self.saved_text
        self.setWindowTitle(f'Protocols: {self.draft.name or "(no name)"}{" (not saved)" if dirty else ""}')

    def _edit(self, change: Callable[[], None]) -> None:
        if self._loading:
            return
        change()
        self.changed()

    def _edit_step(self, change: Callable[[DraftStep], None]) -> None:
        if self.current is not None:
            step = self.draft.steps[self.current]
            self._edit(lambda: change(step))

    def _param_changed(self, name: str, value: Any) -> None:
        if self.current is not None and not self._loading:
            self.draft.set_parameter(self.current, name, value)
            self.changed()

    def _task_chosen(self, index: int) -> None:
        task = self.task_combo.itemData(index)
        if self._loading or self.current is None or not task or task == self.draft.steps[self.current].task:
            return
        self.draft.set_task(self.current, str(task))
        self._fill_form()
        self.changed()

    def _graduation(self) -> None:
        if self.current is None or self._loading:
            return
        step = self.draft.steps[self.current]
        rule = RULE_NAMES[max(self.rule_combo.currentIndex(), 0)]
        if rule == step.rule():
            self.draft.set_graduation(self.current, rule, {
                'trials': self.count_spin.value(), 'sessions': self.count_spin.value(),
                'accuracy': self.accuracy_spin.value(), 'window': self.window_spin.value()})
        else:  # another rule starts from its defaults
            self.draft.set_graduation(self.current, rule)
            self._fill_graduation(step)
        self.changed()

    # -- steps -------------------------------------------------------------------------------------------
    def add_step(self) -> None:
        """A new step after the selected one, on the same task (or the first registered task)."""
        base = self.draft.steps[self.current].task if self.current is not None else \
            next((p.name for p in self.tasks if p.cls is not None), '')
        at = self.current + 1 if self.current is not None else len(self.draft.steps)
        self.draft.steps.insert(at, DraftStep(name=self.draft.new_step_name(base), task=base))
        self._fill_steps(at)

    def remove_step(self) -> None:
        if self.current is None:
            return
        del self.draft.steps[self.current]
        self._fill_steps(min(self.current, len(self.draft.steps) - 1) if self.draft.steps else None)

    def move_step(self, by: int) -> None:
        i = self.current
        if i is None or not 0 <= i + by < len(self.draft.steps):
            return
        steps = self.draft.steps
        steps[i], steps[i + by] = steps[i + by], steps[i]
        self._fill_steps(i + by)

    # -- the terminal ------------------------------------------------------------------------------------
    def list_protocols(self) -> None:
        self.host.request(ListProtocols, 'list_protocols', ListProtocols.Request(), self._listed, idempotent=True)

    def _listed(self, reply: Reply) -> None:
        if reply.error:
            self._say(self.notice, f'cannot list the protocols: {reply.error}', RED)
            return
        self.known = {p.name: p for p in reply.response.protocols}
        chosen = self.draft.name if self.draft.name in self.known else self._selected_protocol()
        assign_chosen = self.assign_protocol.currentData()
        self.protocol_list.clear()
        self.assign_protocol.blockSignals(True)
        self.assign_protocol.clear()
        for name, p in self.known.items():
            item = QtWidgets.QListWidgetItem(f'{name}: refused: {_short_error(p.error, p.file)}' if p.error else
                                             f'{name} ({len(p.step_names)} steps: {", ".join(p.tasks)})')
            item.setData(QtCore.Qt.ItemDataRole.UserRole, name)
            item.setToolTip(f'{p.file}\n{p.error or "valid: " + " -> ".join(p.step_names)}')
            if p.error:
                item.setForeground(QtGui.QColor(RED))
            self.protocol_list.addItem(item)
            if name == chosen:
                item.setSelected(True)
                self.protocol_list.setCurrentItem(item)
            if not p.error:
                self.assign_protocol.addItem(name, name)
        index = self.assign_protocol.findData(assign_chosen if assign_chosen else self.draft.name)
        self.assign_protocol.setCurrentIndex(max(index, 0))
        self.assign_protocol.blockSignals(False)
        self._assign_steps()

    def _selected_protocol(self) -> str:
        item = self.protocol_list.currentItem()
        return str(item.data(QtCore.Qt.ItemDataRole.UserRole)) if item is not None else ''

    def new(self) -> None:
        def fresh() -> None:
            self.protocol_list.clearSelection()
            self.protocol_list.setCurrentItem(None)
            self.set_draft(Draft(name='new_protocol'))
            self._say(self.notice, 'a new protocol: add its steps, then save it on the terminal', GREY)
        self._unless_unsaved(fresh)

    def open_selected(self) -> None:
        """Open the selected protocol of the terminal (asks first when the draft is not saved)."""
        name = self._selected_protocol()
        if name:
            self._unless_unsaved(lambda: self.open_protocol(name))

    def open_protocol(self, name: str) -> None:
        """Ask the terminal for protocol ``name``'s text and edit it."""
        self.host.request(GetProtocol, 'get_protocol', GetProtocol.Request(name=name),
                          lambda reply: self._opened(name, reply), idempotent=True)

    def _opened(self, name: str, reply: Reply) -> None:
        if reply.error or not reply.response.success:
            self._say(self.notice, f'cannot open {name}: {reply.error or reply.response.message}', RED)
            return
        try:
            draft = Draft.from_yaml(reply.response.text, name)
        except DraftError as exc:
            self._say(self.notice, f'{name} cannot be edited here: {exc}', RED)
            return
        note, as_read = '', draft.to_yaml()
        if draft.name != name:  # the terminal finds protocols by file name; saving writes that name
            note = f' (its name: {draft.name!r} becomes {name!r}, the file name, when saved)'
            draft.name = name
        self.set_draft(draft, as_read)
        self._say(self.notice, f'opened {reply.response.protocol.file}{note}', GREY)

    def save(self) -> None:
        """Save the draft as ``<protocol_dir>/<name>.yaml``; replacing a file is asked first."""
        if self.draft.problem() is not None or self.draft.name_problem() is not None:
            return
        name, text = self.draft.name, self.draft.to_yaml()
        if name in self.known:
            self.ask('overwrite', f'The terminal has a protocol {name!r} already. Replace it?',
                     lambda: self._send_save(name, text, True))
        else:
            self._send_save(name, text, False)

    def _send_save(self, name: str, text: str, overwrite: bool) -> None:
        self._say(self.notice, f'saving {name}…', GREY)
        req = SaveProtocol.Request(name=name, text=text, overwrite=overwrite)
        self.host.request(SaveProtocol, 'save_protocol', req, lambda reply: self._saved(name, text, overwrite, reply))

    def _saved(self, name: str, text: str, overwrite: bool, reply: Reply) -> None:
        if reply.error:
            self._say(self.notice, f'save {name}: {reply.error}', RED)
            return
        if not reply.response.success:
            if not overwrite and 'exists already' in reply.response.message:  # appeared since the list
                self.ask('overwrite', f'{reply.response.message}. Replace it?',
                         lambda: self._send_save(name, text, True))
            else:
                self._say(self.notice, f'save {name}: {reply.response.message}', RED)
            return
        if self.draft.name == name and self.draft.to_yaml() == text:
            self.saved_text = text
        self._say(self.notice, f'saved {reply.response.path}', GREEN)
        self.changed()
        self.list_protocols()

    # -- assignment --------------------------------------------------------------------------------------
    def refresh_subjects(self) -> None:
        """The subjects list from the window's model, when it changed (the selection is kept)."""
        subjects = self.lab.subjects
        seen = tuple((s, m.protocol, int(m.step), m.step_name) for s, m in sorted(subjects.items()))
        if seen == self._subjects_seen:
            return
        self._subjects_seen = seen
        chosen = {i.data(QtCore.Qt.ItemDataRole.UserRole) for i in self.subject_list.selectedItems()}
        self.subject_list.clear()
        for subject, protocol, step, step_name in seen:
            where = f'{protocol}, step {step}: {step_name}' if protocol else 'no protocol'
            item = QtWidgets.QListWidgetItem(f'{subject}  ({where})')
            item.setData(QtCore.Qt.ItemDataRole.UserRole, subject)
            self.subject_list.addItem(item)
            item.setSelected(subject in chosen)
        self._assign_ready()

    def _assign_steps(self) -> None:
        summary = self.known.get(str(self.assign_protocol.currentData() or ''))
        chosen = self.assign_step.currentText()  # kept when the protocol still has that step
        self.assign_step.clear()
        for i, step in enumerate(summary.step_names if summary is not None else ()):
            self.assign_step.addItem(f'{i}: {step}', i)
        self.assign_step.setCurrentIndex(max(self.assign_step.findText(chosen), 0))
        self._assign_ready()

    def _assign_ready(self) -> None:
        self.assign_button.setEnabled(bool(self.subject_list.selectedItems()) and self.assign_step.count() > 0
                                      and not self._assigning)

    def assign(self) -> None:
        """Put every selected subject on the chosen protocol and step (one assign_protocol each)."""
        protocol = str(self.assign_protocol.currentData() or '')
        step = self.assign_step.currentData()
        subjects = [str(i.data(QtCore.Qt.ItemDataRole.UserRole)) for i in self.subject_list.selectedItems()]
        if not protocol or step is None or not subjects or self._assigning:
            return
        self._assigning = {s: '' for s in subjects}
        self.assign_button.setEnabled(False)
        self._say(self.notice, f'assigning {protocol} to {len(subjects)} subject(s)…', GREY)
        for subject in subjects:
            req = AssignProtocol.Request(subject=subject, protocol=protocol, step=int(step))
            self.host.request(AssignProtocol, 'assign_protocol', req, functools.partial(self._assigned, subject, protocol))

    def _assigned(self, subject: str, protocol: str, reply: Reply) -> None:
        ok = not reply.error and reply.response.success
        self._assigning[subject] = 'ok' if ok else (reply.error or reply.response.message or 'refused')
        if ok:
            self._step_name = reply.response.step_name
        if any(not v for v in self._assigning.values()):
            return  # more replies to come
        done = [s for s, v in self._assigning.items() if v == 'ok']
        failed = {s: v for s, v in self._assigning.items() if v != 'ok'}
        self._assigning = {}
        text = f'assigned {protocol} to {len(done)} of {len(done) + len(failed)}'
        if done:
            text += f' ({", ".join(done)}) at step {self._step_name!r}'
        if failed:
            text += '; refused: ' + '; '.join(f'{s}: {why}' for s, why in failed.items())
        self._say(self.notice, text, RED if failed else GREEN)
        self._assign_ready()

    # -- small things ------------------------------------------------------------------------------------
    def ask(self, name: str, text: str, then: Callable[[], None]) -> QtWidgets.QMessageBox:
        """A yes/no question that does not block (``then`` on Yes); ``name`` is its object name (tests)."""
        box = QtWidgets.QMessageBox(self)
        box.setIcon(QtWidgets.QMessageBox.Icon.Question)
        box.setWindowTitle('Protocols')
        box.setText(text)
        box.setStandardButtons(QtWidgets.QMessageBox.Yes | QtWidgets.QMessageBox.No)
        box.setObjectName(name)
        box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        yes = box.button(QtWidgets.QMessageBox.StandardButton.Yes)
        box.buttonClicked.connect(lambda button: then() if button is yes else None)
        box.open()
        return box

    def _unless_unsaved(self, then: Callable[[], None]) -> None:
        if self.draft.to_yaml() != self.saved_text and self.draft.steps:
            self.ask('discard', f'{self.draft.name or "The draft"} is not saved. Discard the changes?', then)
        else:
            then()

    @staticmethod
    def _say(label: QtWidgets.QLabel, text: str, colour: str) -> None:
        label.setText(text)
        label.setStyleSheet(f'color: {colour};')

    def closeEvent(self, event: Any) -> None:
        self.timer.stop()
        super().closeEvent(event)


def _step_text(i: int, step: DraftStep) -> str:
    rule = step.graduation
    then = ('stays' if not rule else ', '.join(f'{k} {v}' for k, v in rule.items()))
    return f'{i}. {step.name}  [{step.task}]  → {then}'


def _short_error(error: str, file: str) -> str:
    """The terminal's error without the file's path (the list names the protocol): 'line 5: steps[0]...'."""
    if file and error.startswith(file + ':'):
        rest = error[len(file) + 1:]
        line, sep, tail = rest.partition(': ')
        return f'line {line}: {tail}' if sep and line.isdigit() else rest
    return error


def _shown(value: Any) -> str:
    return {True: 'true', False: 'false'}.get(value, str(value)) if isinstance(value, bool) else str(value)


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _decimals(*values: Any) -> int:
    """Decimals a float spin box needs to show ``values`` exactly (2 to 6)."""
    need = 2
    for v in values:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            text = repr(float(v))
            need = max(need, 6 if 'e' in text else len(text.partition('.')[2]))
    return min(need, 6)
