"""The Terminal window: the pilot table on top, each pilot's live plots below, the log at the bottom.

It drains the :class:`~.bridge.Bridge` every 30 ms on the UI thread (a cheap, non-blocking take of what the ROS
thread queued) and hands each event to the :class:`~.model.Lab`; widgets redraw from the model. Every request
goes out as a queued service call whose reply comes back as an event: a click never waits. Errors land in the
message bar, naming the fix. While the terminal is not heard, the window is greyed and says so; it comes back
by itself when the terminal's registry does.
"""

from __future__ import annotations

import collections
import functools
import gc
import math
import time
from collections.abc import Callable
from typing import Any

from autopilot_msgs.srv import GetTrials, PilotCommand, RecordWeight, StartSession
from PyQt5 import QtCore, QtWidgets
from rcl_interfaces.srv import GetParameters
from rclpy.parameter import parameter_value_to_python

from .bridge import Bridge, Event, Reply
from .calibration import CalibrationDialog
from .logpane import LogPane
from .model import REPAIR_S, Lab
from .plots import PilotPlots, spec_for
from .protocols import ProtocolEditor
from .subjects import SubjectsWindow
from .widgets import MessageBar, PilotTable, WeightDialog

DRAIN_MS = 30
#: Table cells (ages, offline times) are redrawn this often even without events.
TICK_S = 0.5
#: A pilot's plots are redrawn at most this often (new trials within it are drawn together).
PLOT_S = 0.1
#: Plot redraws stop for this drain once it has taken this long (the rest are drawn in the next drains).
DRAW_BUDGET_S = 0.02
#: Camera frames are shown at most this often (the newest one; the others are never decoded).
FRAME_S = 0.2
#: The window's widgets are put out of the collector's sight once none has been made for this long (see _settle).
SETTLE_S = 2.0
WEIGH_AT = ('none', 'start', 'stop', 'both')


class MainWindow(QtWidgets.QMainWindow):
    """See the module docstring."""

    def __init__(self, bridge: Bridge, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge, self.lab = bridge, Lab()
        self.setWindowTitle(f'autopilot-ros terminal ({bridge.terminal})')
        self._pending: dict[int, Callable[[Reply], None]] = {}
        self._dialogs: list[QtWidgets.QDialog] = []
        self.weigh_at = 'both'
        self.connected = False
        self._ticked = 0.0
        self._framed = 0.0
        self.events_handled = 0
        self.longest_drain_s = 0.0

        central = QtWidgets.QWidget(self)
        lay = QtWidgets.QVBoxLayout(central)
        self.bar = MessageBar(central)
        lay.addWidget(self.bar)
        self.status_label = QtWidgets.QLabel('waiting for the terminal…', central)
        self.status_label.setObjectName('connection')
        lay.addWidget(self.status_label)
        self.table = PilotTable(self.lab, self.on_action, central)
        self.table.setObjectName('pilots')
        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical, central)
        split.addWidget(self.table)
        scroll = QtWidgets.QScrollArea(split)
        scroll.setWidgetResizable(True)
        holder = QtWidgets.QWidget(scroll)
        self.plot_layout = QtWidgets.QVBoxLayout(holder)
        self.plot_layout.addStretch(1)
        scroll.setWidget(holder)
        split.addWidget(scroll)
        self.log_pane = LogPane(split)
        self.log_pane.setObjectName('log')
        split.addWidget(self.log_pane)
        split.setSizes([220, 600, 160])
        lay.addWidget(split, 1)
        self.setCentralWidget(central)
        self.resize(1200, 900)
        self.plots: dict[str, PilotPlots] = {}
        self._stale: set[str] = set()
        self._backfilled: set[tuple[str, str]] = set()
        self._repairing: dict[str, float] = {}  # pilot -> when its missing trials were last asked for
        self._drawn: dict[str, float] = {}
        # Pilot's stamp -> drawn, per trial (bench/gui.py); the newest only, so a window open for weeks stays small.
        self.trial_latency_s: collections.deque[float] = collections.deque(maxlen=100_000)
        self._drawn_upto: dict[str, int] = {}

        self.subjects_window: SubjectsWindow | None = None
        self.calibration: CalibrationDialog | None = None
        self.protocol_editor: ProtocolEditor | None = None
        menu = self.menuBar()
        assert menu is not None
        lab_menu = menu.addMenu('&Lab')
        assert lab_menu is not None
        openers: list[tuple[str, Callable[[], Any]]] = [
            ('&Subjects…', self.open_subjects), ('&Protocols…', self.open_protocols),
            ('&Calibrate valves…', self.open_calibration)]
        for text, opener in openers:
            action = lab_menu.addAction(text)
            assert action is not None
            action.triggered.connect(functools.partial(_opened, opener))

        self.timer = QtCore.QTimer(self)
        self.timer.timeout.connect(self.drain)
        self.timer.start(DRAIN_MS)
        self._built, self._settled, self._built_at = 0, -1, 0.0
        self._settle()
        self._ask_settings()

    # -- the bridge's events -----------------------------------------------------------------------------------
    def drain(self) -> None:
        t0 = time.perf_counter()
        events = self.bridge.drain()
        logs = [ev.payload for ev in events if ev.kind == 'log']
        if logs:
            self.log_pane.add(logs)
        changed = False
        for ev in events:
            changed |= self.handle(ev)
        self.events_handled += len(events)
        now = time.monotonic()
        online = self.bridge.terminal_online()
        if online != self.connected:
            self._set_connected(online)
            changed = True
        if changed or now - self._ticked > TICK_S:
            self._ticked = now
            self.table.refresh(now)
            self._repair(now)
            if self._built != self._settled and now - self._built_at >= SETTLE_S:
                self._settle()
            self.bridge.show({p for p, plots in self.plots.items()
                              if not plots.viewport().visibleRegion().isEmpty() or not self.isVisible()})
        # Stale plots, the longest undrawn first, within a budget that counts the paint each redraw will cause
        # (Qt paints right after this drain): what is left waits for the next drain, so the UI is never blocked
        # for long however many pilots have new trials. Hidden plots wait until shown.
        painting = 0.0
        for pilot in sorted(self._stale, key=lambda p: self._drawn.get(p, 0.0)):
            if time.perf_counter() - t0 + painting > DRAW_BUDGET_S:
                break
            plots = self.plots.get(pilot)
            if plots is not None and plots.viewport().visibleRegion().isEmpty() and self.isVisible():
                continue
            if now - self._drawn.get(pilot, 0.0) >= PLOT_S:
                self._draw(pilot, now)
                plots = self.plots.get(pilot)
                painting += plots.paint_s if plots is not None else 0.0
        if now - self._framed >= FRAME_S:
            self._framed = now
            for pilot, msg in self.bridge.images().items():
                if pilot in self.plots:
                    self.plots[pilot].show_frame(msg)
        self.longest_drain_s = max(self.longest_drain_s, time.perf_counter() - t0)

    def _settle(self) -> None:
        """Put what the window is built of (Qt, pyqtgraph, rclpy, and each pilot's row and plots: tens of thousands of
        Python objects per plot) out of the collector's sight, so a full collection scans only the trials and
        messages that came after: bench/gui.py measured 85-95 ms pauses of the UI thread at 50 pilots before. Run
        when the window is built and again once its rows and plots have not changed for SETTLE_S; the one full
        collection it takes first also frees a replaced plot (frozen objects die by reference count, cycles only
        here)."""
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self._settled = self._built

    def _changed_shape(self) -> None:
        self._built += 1
        self._built_at = time.monotonic()

    def handle(self, ev: Event) -> bool:
        """One event into the model; True when the table should be redrawn."""
        if ev.kind == 'registry':
            known = set(self.lab.pilots)
            self.lab.registry(ev.payload)
            for pilot in set(self.lab.pilots) - known:
                self._ask_gpio_layout(pilot)
                self._changed_shape()
            self._backfill()
            return True
        if ev.kind == 'subjects':
            self.lab.subject_list(ev.payload)
            if self.subjects_window is not None:
                self.subjects_window.refresh()
            return True
        if ev.kind == 'trial':
            if self.lab.trial(ev.pilot, ev.payload) is not None:
                self._stale.add(ev.pilot)
            return False  # the row's trial cells follow at the table's tick
        if ev.kind == 'gpio':
            self.lab.gpio(ev.pilot, ev.payload)
            if ev.pilot in self.plots:
                self._stale.add(ev.pilot)
            return False
        if ev.kind == 'reply':
            done = self._pending.pop(ev.payload.token, None)
            if done is not None:
                done(ev.payload)
            return True
        if ev.kind == 'error':
            self.bar.show_message(f'internal error in the window\'s ROS thread: {ev.payload}')
        return False

    def _draw(self, pilot: str, now: float) -> None:
        """Redraw ``pilot``'s plots (made on its first trial, from its task's declared plot)."""
        self._stale.discard(pilot)
        self._drawn[pilot] = now
        row = self.lab.pilots.get(pilot)
        if row is None or not row.trials:
            return
        spec = spec_for(row.trial_task, row.fields)
        plots = self.plots.get(pilot)
        if plots is not None and plots.spec != spec:  # another task now: its own plot
            plots.setParent(None)
            plots.deleteLater()
            plots = None
        if plots is None:
            plots = self.plots[pilot] = PilotPlots(pilot, spec, {n: u for n, _, u in row.fields})
            plots.setObjectName(f'plots_{pilot}')
            names = sorted(self.plots)
            self.plot_layout.insertWidget(names.index(pilot), plots)
            self._changed_shape()
        plots.draw(row)
        # Trial-to-plot latency (bench/gui.py): from the pilot's stamp of each trial drawn for the first time.
        upto, now_ns = self._drawn_upto.get(pilot, -1), time.time_ns()
        for t in reversed(row.trials):
            if t.index <= upto:
                break
            self.trial_latency_s.append((now_ns - t.stamp_ns) / 1e9)
        self._drawn_upto[pilot] = row.trials[-1].index

    def _set_connected(self, online: bool) -> None:
        self.connected = online
        self.table.setEnabled(online)
        if online:
            self.status_label.setText(f'terminal {self.bridge.terminal}: connected')
            self._ask_settings()
        else:
            self.status_label.setText(f'terminal {self.bridge.terminal} not heard: reconnecting… (is it running? '
                                      '`autopilot launch terminal.launch.yaml`)')

    # -- requests -----------------------------------------------------------------------------------------------
    def request(self, srv_type: Any, name: str, req: Any, done: Callable[[Reply], None], *,
                idempotent: bool = False) -> int:
        token = self.bridge.call(srv_type, name, req, idempotent=idempotent)
        self._pending[token] = done
        return token

    def answered(self, what: str, then: Callable[[Any], None] | None = None) -> Callable[[Reply], None]:
        """A reply handler: an error or ``success = false`` goes to the message bar, else ``then(response)``."""
        def done(reply: Reply) -> None:
            if reply.error:
                self.bar.show_message(f'{what}: {reply.error}')
            elif hasattr(reply.response, 'success') and not reply.response.success:
                self.bar.show_message(f'{what}: {reply.response.message}')
            elif then is not None:
                then(reply.response)
        return done

    def _ask_settings(self) -> None:
        def got(reply: Reply) -> None:
            if reply.error or not reply.response.values:
                return
            value = parameter_value_to_python(reply.response.values[0])
            if value in WEIGH_AT:
                self.weigh_at = value
        self.request(GetParameters, 'get_parameters', GetParameters.Request(names=['weigh_at']), got,
                     idempotent=True)

    def open_subjects(self) -> SubjectsWindow:
        """The subjects window (one per main window), raised if open."""
        if self.subjects_window is None:
            self.subjects_window = SubjectsWindow(self)
        self.subjects_window.show()
        self.subjects_window.raise_()
        return self.subjects_window

    def open_protocols(self) -> ProtocolEditor:
        """The protocol editor (one per window, non-modal), raised if open."""
        if self.protocol_editor is None:
            self.protocol_editor = ProtocolEditor(self)
        self.protocol_editor.show()
        self.protocol_editor.raise_()
        return self.protocol_editor

    def open_calibration(self) -> CalibrationDialog:
        """The valve calibration dialog (one per window, non-modal), raised if open."""
        if self.calibration is None:
            self.calibration = CalibrationDialog(self.request, self.lab, self)
        self.calibration.show()
        self.calibration.raise_()
        return self.calibration

    def _backfill(self) -> None:
        """Ask the terminal once for the stored trials of each session running when the window first sees it."""
        for pilot, row in self.lab.pilots.items():
            key = (pilot, row.session_id)
            if not row.session_id or not row.subject or key in self._backfilled:
                continue
            self._backfilled.add(key)
            self._ask_trials(pilot, row.subject, row.session_id, 1, stored=True)

    def _repair(self, now: float) -> None:
        """Ask the terminal for the trials a pilot counted that never arrived live (taken best effort, so a
        stalled window never holds back a pilot): at most one request per pilot every REPAIR_S."""
        for pilot, row in self.lab.pilots.items():
            first = self.lab.missing(pilot, now)
            if first is None or now - self._repairing.get(pilot, -math.inf) < REPAIR_S:
                continue
            self._repairing[pilot] = now
            self._ask_trials(pilot, row.subject, row.session_id, first)

    def _ask_trials(self, pilot: str, subject: str, session_id: str, first: int, *, stored: bool = False) -> None:
        """The terminal's stored trials of a session from trial ``first`` on, merged into ``pilot``'s plots;
        ``stored``: a session joined late, whose trials count for no latency (bench/gui.py)."""
        def got(reply: Reply) -> None:
            if not reply.error and reply.response.success and self.lab.backfill(pilot, reply.response.trials):
                self._stale.add(pilot)
                if stored:
                    self._drawn_upto[pilot] = self.lab.pilots[pilot].trials[-1].index
        req = GetTrials.Request(subject=subject, session_id=session_id, first_trial=first, max_trials=0)
        self.request(GetTrials, 'get_trials', req, got, idempotent=True)

    def _ask_gpio_layout(self, pilot: str) -> None:
        """Which inputs of ``pilot``'s gpio node are pulled up (active low), for the raster."""
        base = f'/{pilot}/gpio/get_parameters'

        def pulls(reply: Reply, inputs: list[str]) -> None:
            if reply.error:
                return
            row = self.lab.pilots.get(pilot)
            values = [parameter_value_to_python(v) for v in reply.response.values]
            if row is not None:
                row.active_low = {d for d, pull in zip(inputs, values, strict=False) if pull == 'up'}

        def got(reply: Reply) -> None:
            if reply.error or not reply.response.values:
                return  # no gpio node (yet): the raster shows raw levels
            inputs = [str(d) for d in (parameter_value_to_python(reply.response.values[0]) or [])][:64]
            self.request(GetParameters, base, GetParameters.Request(names=[f'devices.{d}.pull' for d in inputs]),
                         lambda r: pulls(r, inputs), idempotent=True)
        self.request(GetParameters, base, GetParameters.Request(names=['inputs']), got, idempotent=True)

    def on_action(self, action: str, pilot: str, subject: str) -> None:
        """A row's button: start (after the weight, if the lab weighs at start), pause/resume, stop."""
        row = self.lab.pilots.get(pilot)
        if row is None:
            return
        if action == 'start':
            if not subject:
                self.bar.show_message(f'{pilot}: choose a subject to start (create one under Subjects)')
                return
            if self.weigh_at in ('start', 'both'):
                self.ask_weight(subject, 'start', '', lambda: self.start(subject, pilot))
            else:
                self.start(subject, pilot)
        elif action == 'pause':
            what = 'resume' if row.state == 'paused' else 'pause'
            self.request(PilotCommand, f'{what}_session', PilotCommand.Request(pilot=pilot),
                         self.answered(f'{what} {pilot}'))
        elif action == 'stop':
            sid, running = row.session_id, row.subject

            def stopped(_resp: Any) -> None:
                if self.weigh_at in ('stop', 'both') and running:
                    self.ask_weight(running, 'stop', sid, None)
            self.request(PilotCommand, 'stop_session', PilotCommand.Request(pilot=pilot),
                         self.answered(f'stop {pilot}', stopped))

    def start(self, subject: str, pilot: str) -> None:
        self.request(StartSession, 'start_session', StartSession.Request(subject=subject, pilot=pilot),
                     self.answered(f'start {subject} on {pilot}',
                                   lambda r: self.bar.show_message(f'{subject} started on {pilot}', 'info')))

    def ask_weight(self, subject: str, when: str, session_id: str, then: Callable[[], None] | None) -> WeightDialog:
        """The weight prompt; OK stores it (then ``then``), Skip goes on without, Cancel stops there."""
        summary = self.lab.subjects.get(subject)
        baseline = float(summary.baseline_weight_g) if summary is not None else math.nan
        dlg = WeightDialog(subject, when, baseline, self)
        dlg.setObjectName(f'weight_{subject}_{when}')

        def finished(code: int) -> None:
            self._dialogs.remove(dlg)
            if code == QtWidgets.QDialog.Accepted:
                req = RecordWeight.Request(subject=subject, grams=dlg.grams.value(), when=when, session_id=session_id)
                self.request(RecordWeight, 'record_weight', req, self.answered(f'weight of {subject}'))
            if code != QtWidgets.QDialog.Rejected and then is not None:
                then()
        dlg.finished.connect(finished)
        self._dialogs.append(dlg)
        dlg.open()
        return dlg

    def closeEvent(self, event: Any) -> None:
        self.timer.stop()
        super().closeEvent(event)


def _opened(opener: Callable[[], Any], *_: Any) -> None:
    """A menu action's slot: open the window or dialog (what ``opener`` returns is for tests)."""
    opener()
