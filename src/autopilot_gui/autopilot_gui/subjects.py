"""Subjects: the new-subject form, and a subject's record (protocol timeline, sessions, weights, notes).

Everything is asked of the terminal (get_subject, create_subject, record_weight, add_note, set_subject_pilot,
set_subject_step) through the window's :meth:`~.window.MainWindow.request`: the window never opens a subject
file, so any host of the domain shows the same record. The list follows /terminal/subjects; the open subject is
asked again when its summary there changes.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from autopilot_msgs.srv import (
    AddNote,
    CreateSubject,
    GetSubject,
    GetTrials,
    RecordWeight,
    SetSubjectPilot,
    SetSubjectStep,
)
from PyQt5 import QtCore, QtWidgets

from autopilot_core import stamps, trial_fields
from autopilot_tasks.plot import Psychometric

from .model import psychometric
from .plots import spec_for

SPECIES = ('Mus musculus', 'Rattus norvegicus', 'Meriones unguiculatus', 'Macaca mulatta')
SEXES = ('F', 'M', 'U')
SUBJECT_COLUMNS = ('subject', 'rig', 'protocol', 'step', 'sessions', 'trials', 'last session', 'weight')


def stamp_s(t: Any) -> float:
    return stamps.to_ns(t) / 1e9


def when(t: Any) -> str:
    s = stamp_s(t)
    return dt.datetime.fromtimestamp(s).strftime('%Y-%m-%d %H:%M') if s > 0 else '-'


def weight_text(summary: Any) -> str:
    g, base = float(summary.last_weight_g), float(summary.baseline_weight_g)
    if not math.isfinite(g):
        return '-'
    return f'{g:.1f} g' + (f' ({g / base:.0%})' if math.isfinite(base) and base > 0 else '')


def biography(form: dict[str, Any]) -> dict[str, Any]:
    """The biography JSON object of the new-subject form: empty fields left out."""
    return {k: v for k, v in form.items() if v not in ('', None)}


class NewSubjectDialog(QtWidgets.QDialog):
    """Typed biography fields; OK creates the subject on the terminal (and assigns a protocol when chosen)."""

    def __init__(self, window: Any, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.window_ = window
        self.setWindowTitle('New subject')
        form = QtWidgets.QFormLayout(self)
        self.name = QtWidgets.QLineEdit(self)
        self.name.setPlaceholderText('letters, digits, _ and - (it names the file)')
        self.species = QtWidgets.QComboBox(self)
        self.species.setEditable(True)
        self.species.addItems(SPECIES)
        self.strain = QtWidgets.QLineEdit(self)
        self.strain.setPlaceholderText('e.g. C57BL/6J')
        self.genotype = QtWidgets.QLineEdit(self)
        self.genotype.setPlaceholderText('e.g. wt, Pvalb-Cre')
        self.sex = QtWidgets.QComboBox(self)
        self.sex.addItems(SEXES)
        self.dob = QtWidgets.QDateEdit(QtCore.QDate.currentDate().addDays(-60), self)
        self.dob.setCalendarPopup(True)
        self.dob.setDisplayFormat('yyyy-MM-dd')
        self.tag = QtWidgets.QLineEdit(self)
        self.tag.setPlaceholderText('ear tag, RFID, cage card')
        self.description = QtWidgets.QLineEdit(self)
        self.protocol = QtWidgets.QComboBox(self)
        self.protocol.addItem('')
        for row in (('Name', self.name), ('Species', self.species), ('Strain', self.strain),
                    ('Genotype', self.genotype), ('Sex', self.sex), ('Date of birth', self.dob), ('Tag', self.tag),
                    ('Description', self.description), ('Protocol', self.protocol)):
            form.addRow(*row)
        self.status = QtWidgets.QLabel('', self)
        self.status.setWordWrap(True)
        form.addRow(self.status)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.Ok | QtWidgets.QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.submit)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        from autopilot_msgs.srv import ListProtocols

        self.window_.request(ListProtocols, 'list_protocols', ListProtocols.Request(), self._protocols,
                             idempotent=True)

    def _protocols(self, reply: Any) -> None:
        if reply.error:
            return
        self.protocol.addItems([p.name for p in reply.response.protocols if not p.error])

    def fields(self) -> dict[str, Any]:
        return biography({'species': self.species.currentText().strip(), 'strain': self.strain.text().strip(),
                          'genotype': self.genotype.text().strip(), 'sex': self.sex.currentText(),
                          'dob': self.dob.date().toString('yyyy-MM-dd'), 'tag': self.tag.text().strip(),
                          'description': self.description.text().strip()})

    def submit(self) -> None:
        name = self.name.text().strip()
        if not name:
            self.status.setText('give the subject a name')
            return
        req = CreateSubject.Request(subject=name, biography_json=json.dumps(self.fields()))
        self.status.setText(f'creating {name}…')
        self.window_.request(CreateSubject, 'create_subject', req, lambda r: self._created(name, r))

    def _created(self, name: str, reply: Any) -> None:
        if reply.error or not reply.response.success:
            self.status.setText(reply.error or reply.response.message)
            return
        protocol = self.protocol.currentText()
        if protocol:
            from autopilot_msgs.srv import AssignProtocol

            self.window_.request(AssignProtocol, 'assign_protocol',
                                 AssignProtocol.Request(subject=name, protocol=protocol, step=0),
                                 self.window_.answered(f'assign {protocol} to {name}'))
        self.window_.bar.show_message(f'subject {name} created', 'info')
        self.accept()


class SubjectsWindow(QtWidgets.QWidget):
    """The subjects of the terminal on the left, the chosen one's record on the right."""

    def __init__(self, window: Any) -> None:
        super().__init__(None, QtCore.Qt.WindowType.Window)
        self.window_ = window
        self.setWindowTitle('Subjects')
        self.resize(1150, 720)
        self.current = ''
        self.record: Any = None
        self._asked_for: tuple[str, int, str] | None = None
        lay = QtWidgets.QHBoxLayout(self)
        left = QtWidgets.QVBoxLayout()
        self.table = QtWidgets.QTableWidget(0, len(SUBJECT_COLUMNS), self)
        self.table.setObjectName('subjects')
        self.table.setHorizontalHeaderLabels([c.capitalize() for c in SUBJECT_COLUMNS])
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SingleSelection)
        vertical = self.table.verticalHeader()
        if vertical is not None:
            vertical.setVisible(False)
        self.table.itemSelectionChanged.connect(self._selected)
        header = self.table.horizontalHeader()
        if header is not None:
            header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeToContents)
        left.addWidget(self.table, 1)
        new = QtWidgets.QPushButton('New subject…', self)
        new.setObjectName('new_subject')
        new.clicked.connect(self._new_clicked)
        left.addWidget(new)
        lay.addLayout(left, 5)
        self.tabs = QtWidgets.QTabWidget(self)
        lay.addWidget(self.tabs, 6)
        self._overview()
        self._sessions_tab()
        self._timeline_tab()
        self._weights_tab()
        self._notes_tab()
        self._psychometric_tab()
        self.status = QtWidgets.QLabel('', self)
        self.refresh()

    # -- tabs --------------------------------------------------------------------------------------------------
    def _overview(self) -> None:
        w = QtWidgets.QWidget(self)
        form = QtWidgets.QFormLayout(w)
        self.title = QtWidgets.QLabel('choose a subject', w)
        self.title.setStyleSheet('font-weight: bold; font-size: 14pt')
        form.addRow(self.title)
        self.bio = QtWidgets.QLabel('', w)
        self.bio.setWordWrap(True)
        form.addRow('Biography', self.bio)
        self.protocol_label = QtWidgets.QLabel('', w)
        form.addRow('Protocol', self.protocol_label)
        step_row = QtWidgets.QHBoxLayout()
        self.step = QtWidgets.QComboBox(w)
        self.step.setObjectName('step')
        self.reason = QtWidgets.QLineEdit(w)
        self.reason.setPlaceholderText('why (kept in the history)')
        set_step = QtWidgets.QPushButton('Move to step', w)
        set_step.setObjectName('set_step')
        set_step.clicked.connect(self.set_step)
        step_row.addWidget(self.step, 2)
        step_row.addWidget(self.reason, 3)
        step_row.addWidget(set_step)
        form.addRow('Step', step_row)
        rig_row = QtWidgets.QHBoxLayout()
        self.rig = QtWidgets.QComboBox(w)
        self.rig.setObjectName('rig')
        set_rig = QtWidgets.QPushButton('Set rig', w)
        set_rig.setObjectName('set_rig')
        set_rig.clicked.connect(self.set_rig)
        rig_row.addWidget(self.rig, 1)
        rig_row.addWidget(set_rig)
        form.addRow('Trains on', rig_row)
        self.last = QtWidgets.QLabel('', w)
        form.addRow('Last session', self.last)
        self.weight_label = QtWidgets.QLabel('', w)
        form.addRow('Weight', self.weight_label)
        self.tabs.addTab(w, 'Overview')

    def _sessions_tab(self) -> None:
        w = QtWidgets.QWidget(self)
        lay = QtWidgets.QVBoxLayout(w)
        self.summary_plot = pg.PlotWidget(w, background='w', title='training summary: accuracy per session')
        self.summary_plot.setLabel('left', 'fraction correct')
        self.summary_plot.setLabel('bottom', 'session')
        self.summary_plot.setYRange(0, 1)
        self.summary_plot.addLine(y=0.5, pen=pg.mkPen((150, 150, 150), style=QtCore.Qt.PenStyle.DashLine))
        lay.addWidget(self.summary_plot, 2)
        self.sessions = QtWidgets.QTableWidget(0, 8, w)
        self.sessions.setObjectName('sessions')
        self.sessions.setHorizontalHeaderLabels(['Start', 'Pilot', 'Task', 'Step', 'Trials', 'Accuracy', 'State',
                                                 'Session'])
        self.sessions.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        vertical = self.sessions.verticalHeader()
        if vertical is not None:
            vertical.setVisible(False)
        lay.addWidget(self.sessions, 3)
        self.tabs.addTab(w, 'Sessions')

    def _timeline_tab(self) -> None:
        self.timeline = pg.PlotWidget(self, background='w', title='protocol steps over time',
                                      axisItems={'bottom': pg.DateAxisItem()})
        self.timeline.setLabel('left', 'step')
        self.tabs.addTab(self.timeline, 'Protocol history')

    def _weights_tab(self) -> None:
        w = QtWidgets.QWidget(self)
        lay = QtWidgets.QVBoxLayout(w)
        self.weights_plot = pg.PlotWidget(w, background='w', title='weight',
                                          axisItems={'bottom': pg.DateAxisItem()})
        self.weights_plot.setLabel('left', 'g')
        lay.addWidget(self.weights_plot, 3)
        row = QtWidgets.QHBoxLayout()
        self.grams = QtWidgets.QDoubleSpinBox(w)
        self.grams.setObjectName('grams')
        self.grams.setRange(0.0, 2000.0)
        self.grams.setDecimals(2)
        self.grams.setSuffix(' g')
        add = QtWidgets.QPushButton('Add weight', w)
        add.setObjectName('add_weight')
        add.clicked.connect(self.add_weight)
        row.addWidget(QtWidgets.QLabel('Weighed now:', w))
        row.addWidget(self.grams)
        row.addWidget(add)
        row.addStretch(1)
        lay.addLayout(row)
        self.tabs.addTab(w, 'Weights')

    def _notes_tab(self) -> None:
        w = QtWidgets.QWidget(self)
        lay = QtWidgets.QVBoxLayout(w)
        self.notes = QtWidgets.QListWidget(w)
        self.notes.setObjectName('notes')
        lay.addWidget(self.notes, 1)
        row = QtWidgets.QHBoxLayout()
        self.note = QtWidgets.QLineEdit(w)
        self.note.setObjectName('note')
        self.note.setPlaceholderText('a note on the subject (health, behaviour, handling)')
        self.note.setMaxLength(1000)
        add = QtWidgets.QPushButton('Add note', w)
        add.setObjectName('add_note')
        add.clicked.connect(self.add_note)
        self.note.returnPressed.connect(self.add_note)
        row.addWidget(self.note, 1)
        row.addWidget(add)
        lay.addLayout(row)
        self.tabs.addTab(w, 'Notes')

    def _psychometric_tab(self) -> None:
        w = QtWidgets.QWidget(self)
        lay = QtWidgets.QVBoxLayout(w)
        row = QtWidgets.QHBoxLayout()
        self.psycho_session = QtWidgets.QComboBox(w)
        self.psycho_session.setObjectName('psycho_session')
        self.psycho_session.activated.connect(lambda _i: self.ask_psychometric())
        row.addWidget(QtWidgets.QLabel('Session:', w))
        row.addWidget(self.psycho_session, 1)
        lay.addLayout(row)
        self.psycho_note = QtWidgets.QLabel('', w)
        self.psycho_note.setWordWrap(True)
        lay.addWidget(self.psycho_note)
        self.psycho_plot = pg.PlotWidget(w, background='w', title='psychometric curve')
        self.psycho_plot.setYRange(0, 1)
        lay.addWidget(self.psycho_plot, 1)
        self.tabs.addTab(w, 'Psychometric')
        self.tabs.currentChanged.connect(lambda i: self.ask_psychometric() if self.tabs.widget(i) is w else None)
        self.psycho_tab = w
        self.curve: list[tuple[float, float, int]] = []

    def ask_psychometric(self) -> None:
        """The chosen session's stored trials, for its task's declared psychometric curve."""
        sid = self.psycho_session.currentData()
        if not self.current or not sid:
            return
        name = self.current
        self.window_.request(GetTrials, 'get_trials', GetTrials.Request(subject=name, session_id=sid, max_trials=5000),
                             lambda r: self._draw_psychometric(name, r), idempotent=True)

    def _draw_psychometric(self, name: str, reply: Any) -> None:
        if name != self.current:
            return
        self.psycho_plot.clear()
        self.curve = []
        if reply.error or not reply.response.success:
            self.psycho_note.setText(reply.error or reply.response.message)
            return
        trials = reply.response.trials
        if not trials:
            self.psycho_note.setText('no trials stored in this session')
            return
        fields = [(f.name, int(f.type), f.unit) for f in trials[-1].fields]
        spec = spec_for(trials[-1].task, fields)
        element = next((e for e in spec.elements if isinstance(e, Psychometric)), None)
        if element is None:
            self.psycho_note.setText(f'task {trials[-1].task!r} declares no stimulus level (a Psychometric element '
                                     'in its plot), so it has no psychometric curve')
            return
        self.curve = psychometric([trial_fields.to_dict(t.fields) for t in trials], element.level, element.choice,
                                  element.positive)
        self.psycho_note.setText(f'{len(trials)} trials{" (the first 5000)" if reply.response.more else ""}: '
                                 f'fraction {element.choice} = {element.positive!r} per {element.level}')
        self.psycho_plot.setLabel('bottom', element.level)
        self.psycho_plot.setLabel('left', f'P({element.choice} = {element.positive})')
        if self.curve:
            self.psycho_plot.plot([c[0] for c in self.curve], [c[1] for c in self.curve],
                                  pen=pg.mkPen((21, 101, 192), width=2), symbol='o', symbolBrush=(21, 101, 192))

    # -- data --------------------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """The list from the window's copy of /terminal/subjects; the open subject asked again if it changed."""
        lab = self.window_.lab
        names = sorted(lab.subjects)
        if [self._name(r) for r in range(self.table.rowCount())] != names:
            self.table.setRowCount(len(names))
        for r, name in enumerate(names):
            s = lab.subjects[name]
            cells = [name, s.pilot or '-', s.protocol or '-', f'{s.step}: {s.step_name}' if s.protocol else '-',
                     str(s.sessions), str(s.trials), when(s.last_session_start), weight_text(s)]
            for c, text in enumerate(cells):
                item = self.table.item(r, c)
                if item is None:
                    self.table.setItem(r, c, QtWidgets.QTableWidgetItem(text))
                elif item.text() != text:
                    item.setText(text)
        pilots = [''] + list(lab.pilots)
        if [self.rig.itemText(i) for i in range(self.rig.count())] != pilots:
            keep = self.rig.currentText()
            self.rig.clear()
            self.rig.addItems(pilots)
            self.rig.setCurrentText(keep)
        summary = lab.subjects.get(self.current)
        if summary is not None:
            key = (self.current, int(summary.trials) + int(summary.sessions), f'{summary.step}{summary.pilot}'
                   f'{summary.last_weight_g}{summary.last_session_state}')
            if key != self._asked_for:
                self.ask()

    def _name(self, r: int) -> str:
        item = self.table.item(r, 0)
        return item.text() if item is not None else ''

    def _selected(self) -> None:
        model = self.table.selectionModel()
        rows = model.selectedRows() if model is not None else []
        if rows:
            self.show_subject(self._name(rows[0].row()))

    def show_subject(self, name: str) -> None:
        self.current = name
        self.title.setText(name)
        self.ask()

    def ask(self) -> None:
        summary = self.window_.lab.subjects.get(self.current)
        if summary is not None:
            self._asked_for = (self.current, int(summary.trials) + int(summary.sessions),
                               f'{summary.step}{summary.pilot}{summary.last_weight_g}{summary.last_session_state}')
        name = self.current
        self.window_.request(GetSubject, 'get_subject', GetSubject.Request(subject=name),
                             lambda r: self._got(name, r), idempotent=True)

    def _got(self, name: str, reply: Any) -> None:
        if name != self.current:
            return  # another subject was chosen meanwhile
        if reply.error or not reply.response.success:
            self.window_.bar.show_message(f'subject {name}: {reply.error or reply.response.message}')
            return
        self.record = r = reply.response
        s = r.summary
        try:
            bio = json.loads(s.biography_json or '{}')
        except ValueError:
            bio = {}
        self.bio.setText(', '.join(f'{k}: {v}' for k, v in sorted(bio.items())) or 'none')
        self.protocol_label.setText(s.protocol or 'none assigned (Protocols… to assign one)')
        steps = [f'{i}: {n}' for i, n in enumerate(s.step_names)]
        if [self.step.itemText(i) for i in range(self.step.count())] != steps:
            self.step.clear()
            self.step.addItems(steps)
        self.step.setCurrentIndex(int(s.step) if s.step < len(steps) else -1)
        self.rig.setCurrentText(s.pilot)
        self.last.setText(f'{when(s.last_session_start)}, {s.last_session_state}' if s.last_session_id else 'none')
        self.weight_label.setText(weight_text(s))
        self._draw_sessions(r.sessions)
        chosen = self.psycho_session.currentData()
        self.psycho_session.clear()
        for sess in reversed(r.sessions):
            self.psycho_session.addItem(f'{when(sess.start)}  {sess.task}  {sess.trials} trials', sess.session_id)
        if chosen:
            self.psycho_session.setCurrentIndex(max(self.psycho_session.findData(chosen), 0))
        self._draw_timeline(r.history, r.sessions, list(s.step_names))
        self._draw_weights(r.weights, float(s.baseline_weight_g))
        self.notes.clear()
        for h in r.history:
            if h.kind == 'note':
                try:
                    text = json.loads(h.detail_json).get('text', '')
                except ValueError:
                    text = h.detail_json
                self.notes.addItem(f'{when(h.time)}  {text}')

    def _draw_sessions(self, sessions: Any) -> None:
        self.sessions.setRowCount(len(sessions))
        for r, s in enumerate(reversed(sessions)):
            acc = '-' if not math.isfinite(s.accuracy) else f'{s.accuracy:.0%}'
            for c, text in enumerate([when(s.start), s.pilot, s.task, f'{s.step}: {s.step_name}', str(s.trials), acc,
                                      s.state, s.session_id[:8]]):
                self.sessions.setItem(r, c, QtWidgets.QTableWidgetItem(text))
        self.sessions.resizeColumnsToContents()
        self.summary_plot.clear()
        self.summary_plot.addLine(y=0.5, pen=pg.mkPen((150, 150, 150), style=QtCore.Qt.PenStyle.DashLine))
        xs = [i + 1 for i, s in enumerate(sessions) if math.isfinite(s.accuracy)]
        ys = [s.accuracy for s in sessions if math.isfinite(s.accuracy)]
        self.summary_plot.setXRange(0.5, max(len(sessions), 1) + 0.5, padding=0)
        self.summary_plot.getAxis('bottom').setTicks([[(i, str(i)) for i in range(1, len(sessions) + 1)]]
                                                     if len(sessions) <= 20 else None)
        if xs:
            self.summary_plot.plot(xs, ys, pen=pg.mkPen((21, 101, 192), width=2), symbol='o',
                                   symbolBrush=(21, 101, 192))

    def _draw_timeline(self, history: Any, sessions: Any, step_names: list[str]) -> None:
        self.timeline.clear()
        points = [(stamp_s(h.time), int(h.step)) for h in history
                  if h.kind in ('assign', 'step') and stamp_s(h.time) > 0]
        if not points:
            return
        # A staircase: each step holds until the next change, the last one until now.
        ends = [p[0] for p in points[1:]] + [max(dt.datetime.now().timestamp(), points[-1][0])]
        xs = [x for p, end in zip(points, ends, strict=True) for x in (p[0], end)]
        ys = [float(p[1]) for p in points for _ in (0, 1)]
        self.timeline.plot(np.array(xs), np.array(ys), pen=pg.mkPen((21, 101, 192), width=2))
        self.timeline.plot(np.array([p[0] for p in points]), np.array([float(p[1]) for p in points]), pen=None,
                           symbol='o', symbolBrush=(21, 101, 192))
        self.timeline.getAxis('left').setTicks([[(i, f'{i}: {n}') for i, n in enumerate(step_names)]])
        for h in history:  # a protocol (re)assigned: named where it happened
            if h.kind == 'assign' and stamp_s(h.time) > 0:
                text = pg.TextItem(f'assigned {h.protocol}', color=(60, 60, 60), anchor=(0, 1))
                text.setPos(stamp_s(h.time), int(h.step))
                self.timeline.addItem(text)
        for s in sessions:  # each session a tick at the bottom
            self.timeline.addLine(x=stamp_s(s.start), pen=pg.mkPen((200, 200, 200)))

    def _draw_weights(self, weights: Any, baseline: float) -> None:
        self.weights_plot.clear()
        if math.isfinite(baseline) and baseline > 0:
            for frac, colour in ((1.0, (120, 120, 120)), (0.8, (198, 40, 40))):
                self.weights_plot.addLine(y=baseline * frac, pen=pg.mkPen(colour, style=QtCore.Qt.PenStyle.DashLine),
                                          label=f'{frac:.0%} of baseline', labelOpts={'position': 0.2, 'color': (90, 90, 90)})
        if weights:
            xs = np.array([stamp_s(w.time) for w in weights])
            self.weights_plot.plot(xs, np.array([w.grams for w in weights]), pen=pg.mkPen((21, 101, 192), width=2),
                                   symbol='o', symbolBrush=(21, 101, 192))

    # -- changes -------------------------------------------------------------------------------------------------
    def _changed(self, what: str) -> Any:
        return self.window_.answered(what, lambda _r: self.ask())

    def _new_clicked(self) -> None:
        self.new_subject()

    def new_subject(self) -> NewSubjectDialog:
        dlg = NewSubjectDialog(self.window_, self)
        dlg.setObjectName('new_subject_dialog')
        dlg.open()
        return dlg

    def set_step(self) -> None:
        if not self.current or self.step.currentIndex() < 0:
            return
        req = SetSubjectStep.Request(subject=self.current, step=self.step.currentIndex(),
                                     reason=self.reason.text().strip() or 'set in the Terminal window')
        self.window_.request(SetSubjectStep, 'set_subject_step', req, self._changed(f'step of {self.current}'))

    def set_rig(self) -> None:
        if self.current:
            req = SetSubjectPilot.Request(subject=self.current, pilot=self.rig.currentText())
            self.window_.request(SetSubjectPilot, 'set_subject_pilot', req, self._changed(f'rig of {self.current}'))

    def add_weight(self) -> None:
        if self.current and self.grams.value() > 0:
            req = RecordWeight.Request(subject=self.current, grams=self.grams.value(), when='check', session_id='')
            self.window_.request(RecordWeight, 'record_weight', req, self._changed(f'weight of {self.current}'))

    def add_note(self) -> None:
        text = self.note.text().strip()
        if self.current and text:
            self.note.clear()
            self.window_.request(AddNote, 'add_note', AddNote.Request(subject=self.current, text=text),
                                 self._changed(f'note on {self.current}'))
