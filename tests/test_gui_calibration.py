"""The window's valve calibration dialog and /rosout log pane (issue 19 item 5), on Qt's offscreen platform.

The log pane is tested with Log messages made here (filters, the 5000-line bound, following the newest line);
the dialog first on answers made here (the plot's used and unused points, the refusal and "Store anyway"), then
against two real simulated rigs and a real terminal, driven by clicks: two valves of two rigs run at once,
weighed, recorded and refitted, and a wrong weight refused, then stored anyway.
"""

from __future__ import annotations

import time
from typing import Any

from autopilot_msgs.msg import CalibrationPoint
from autopilot_msgs.srv import CalibrateValve, GetCalibration, RecordCalibration
from builtin_interfaces.msg import Time
from PyQt5 import QtCore
from rcl_interfaces.msg import Log
from test_gui import launch_rigs, screenshot
from test_terminal import Lab, launch_terminal

from autopilot_gui.bridge import Reply
from autopilot_gui.calibration import COL, CalibrationDialog
from autopilot_gui.logpane import ALL, MAX_LINES, LogPane
from autopilot_gui.model import Lab as WindowLab
from autopilot_gui.model import PilotRow

LEFT = QtCore.Qt.MouseButton.LeftButton


def log(i: int, node: str = 'rig1.gpio', level: int = 20, text: str = '') -> Log:
    return Log(stamp=Time(sec=1_800_000_000 + i, nanosec=5_000_000), level=level, name=node,
               msg=text or f'line {i}', file='node.py', function='f', line=i)


def test_log_pane_filters_bounds_and_follows(qtbot, tmp_path):
    pane = LogPane()
    qtbot.addWidget(pane)
    pane.resize(900, 300)
    pane.show()
    pane.add([log(0, 'rig1.gpio', 10, 'debug detail'), log(1, 'rig1.pilot', 20, 'session started'),
              log(2, 'rig2.gpio', 30, 'valve_left: pulse capped at max_open_ms'), log(3, 'terminal', 40, 'disk full'),
              log(4, 'rig1.pilot', 50, 'fatal: journal unreadable')])
    nodes = [pane.node_combo.itemText(i) for i in range(pane.node_combo.count())]
    assert nodes == [ALL, 'rig1.gpio', 'rig1.pilot', 'rig2.gpio', 'terminal']
    # INFO and above by default: the DEBUG line is kept, not shown.
    assert [r.text for r in pane.model.rows] == ['session started', 'valve_left: pulse capped at max_open_ms',
                                                 'disk full', 'fatal: journal unreadable']
    index = pane.model.index(2, 0)
    assert pane.model.data(index) == time.strftime('%H:%M:%S', time.localtime(1_800_000_003)) + '.005'
    assert [pane.model.data(pane.model.index(2, c)) for c in (1, 2, 3)] == ['ERROR', 'terminal', 'disk full']
    pane.level_combo.setCurrentIndex(0)
    assert len(pane.model.rows) == 5
    pane.node_combo.setCurrentText('rig1.pilot')
    assert [r.level for r in pane.model.rows] == [20, 50]
    pane.level_combo.setCurrentText('ERROR and above')
    assert [r.text for r in pane.model.rows] == ['fatal: journal unreadable']
    pane.node_combo.setCurrentText(ALL)
    pane.level_combo.setCurrentText('DEBUG and above')
    pane.search.setText('VALVE_')
    assert [r.node for r in pane.model.rows] == ['rig2.gpio']
    pane.search.setText('rig1')  # a node's name matches too
    assert len(pane.model.rows) == 3
    pane.search.clear()

    # Bounded to the newest MAX_LINES, batch by batch, with a filter on (shown rows follow the kept ones).
    pane.level_combo.setCurrentText('WARN and above')
    for start in range(10, 10 + 2 * MAX_LINES, 500):
        pane.add([log(i, f'rig{i % 3}.gpio', 30 if i % 2 else 20) for i in range(start, start + 500)])
    assert len(pane.lines) == MAX_LINES and pane.lines[-1].text == f'line {9 + 2 * MAX_LINES}'
    assert pane.lines[0].text == f'line {10 + MAX_LINES}'
    assert len(pane.model.rows) == MAX_LINES // 2 and all(r.level == 30 for r in pane.model.rows)
    assert pane.model.rows[0] is pane.lines[1] and pane.received == 5 + 2 * MAX_LINES
    assert pane.count.text() == f'{MAX_LINES // 2} of {MAX_LINES} lines'
    # The view follows the newest line, until the user scrolls up; back at the bottom, it follows again.
    bar = pane.view.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0 and bar.value() == bar.maximum(), timeout=2000)
    bar.setValue(10)
    pane.add([log(i, 'rig1.gpio', 30) for i in range(20_000, 20_010)])
    assert bar.value() == 10
    bar.setValue(bar.maximum())
    pane.add([log(i, 'rig1.gpio', 30) for i in range(20_010, 20_020)])
    assert bar.value() == bar.maximum()
    # Cheap in bulk: 20000 lines in batches of 100 (what 30 ms of a busy lab brings) take well under a second each
    # thousand; the bound holds.
    t0 = time.perf_counter()
    for start in range(0, 20_000, 100):
        pane.add([log(i, f'rig{i % 7}.pilot', 20 + 10 * (i % 3)) for i in range(start, start + 100)])
    assert time.perf_counter() - t0 < 10.0 and len(pane.lines) == MAX_LINES
    pane.clear()
    assert not pane.model.rows and not pane.lines


def point(sec: int, n: int, ms: float, ul: float, used: bool) -> CalibrationPoint:
    return CalibrationPoint(time=Time(sec=sec), n_openings=n, open_ms=ms, measured_volume_ul=ul, used=used)


def test_calibration_dialog_logic_on_answers_made_here(qtbot):
    """The dialog's own logic, its requests answered here with real response messages (no ROS needed)."""
    calls: list[tuple[Any, str, Any, Any]] = []

    def request(srv_type: Any, name: str, req: Any, done: Any, idempotent: bool = False) -> int:
        calls.append((srv_type, name, req, done))
        return len(calls)

    def answer(response: Any = None, error: str = '') -> tuple[Any, str, Any]:
        srv_type, name, req, done = calls.pop(0)
        done(Reply(0, name, response, error))
        return srv_type, name, req

    lab = WindowLab()
    lab.pilots['rig1'] = PilotRow('rig1', online=True)
    lab.pilots['rig9'] = PilotRow('rig9', online=False)
    dlg = CalibrationDialog(request, lab)
    qtbot.addWidget(dlg)
    dlg.show()
    assert list(dlg.rig_items) == ['rig1']  # online pilots only
    dlg.choose('rig1')
    assert answer(GetCalibration.Response(success=True, valves=['valve_a'], file='/x.jsonl'))[1] == \
        '/rig1/gpio/get_calibration'
    # Four points, the oldest outside the fit's window: grey in the plot and the history.
    res = GetCalibration.Response(success=True, valves=['valve_a'], fit_coefficients=[3.0, 4.0], file='/x.jsonl',
                                  fit='valve_a: open_ms = 3 + 4 * v (v: uL per opening; 3 point(s))', points=[
                                      point(1_800_000_000, 100, 10.0, 900.0, False),
                                      point(1_800_000_100, 100, 10.0, 175.0, True),
                                      point(1_800_000_200, 100, 20.0, 425.0, True),
                                      point(1_800_000_300, 100, 40.0, 925.0, True)])
    srv_type, _name, req = answer(res)
    assert srv_type is GetCalibration and req.device == 'valve_a'
    key = ('rig1', 'valve_a')
    assert dlg.table.item(0, COL['Fit: open ms =']).text() == '3 + 4 * v (3 points)'
    scatter = [i for i in dlg.plot.getPlotItem().items if type(i).__name__ == 'ScatterPlotItem'][0]
    colours = [spot.brush().color().getRgb()[:3] for spot in scatter.points()]
    assert colours[0] == (189, 189, 189) and len(set(colours[1:])) == 1 and colours[1] != colours[0]
    assert dlg.selected == key and dlg.history.rowCount() == 4 and dlg.history.item(0, 5).text() == 'no'
    curve = [i for i in dlg.plot.getPlotItem().items if type(i).__name__ == 'PlotDataItem'][0]
    xs, ys = curve.getData()
    assert abs(xs[0] - (3 + 4 * ys[0])) < 1e-9  # the line is the fit: open_ms = 3 + 4 v

    # A run: the row says until when, then asks for the weight.
    row = dlg.rows[key]
    row.openings.setValue(3)
    row.open_ms.setValue(20.0)
    row.interval_ms.setValue(10.0)
    qtbot.mouseClick(row.run, LEFT)
    assert not row.run.isEnabled() and dlg.status_of(key) == 'starting…'
    srv_type, _name, req = answer(CalibrateValve.Response(success=True, message='valve_a: 3 x 20 ms',
                                                          total_open_ms=60.0))
    assert srv_type is CalibrateValve and (req.n_openings, req.open_ms, req.interval_ms) == (3, 20.0, 10.0)
    assert dlg.status_of(key).startswith('running… until ') and not row.record.isEnabled()
    qtbot.waitUntil(lambda: dlg.status_of(key).startswith('weigh'), timeout=3000)
    row.grams.setValue(0.0128)                                          # 12.8 uL: 4.27 uL per opening
    assert dlg.status_of(key) == '12.8 uL = 4.27 uL per opening'
    qtbot.mouseClick(row.record, LEFT)
    message = ('valve_a: 128 uL from 3 x 20 ms is 2.13 uL/ms, 10.0x off ... Weigh again and check the units (the '
               'total of the whole run, in uL); if the valve, tubing or reservoir height changed, record the point '
               'with force=True or start a new calibration file (parameter calibration_file)')
    _t, _n, req = answer(RecordCalibration.Response(success=False, message=message))
    assert req.measured_volume_ul == 12.8 and not req.force and (req.n_openings, req.open_ms) == (3, 20.0)
    assert row.record.text() == 'Store anyway' and 'click "Store anyway"' in dlg.status.text()
    qtbot.mouseClick(row.record, LEFT)
    _t, _n, req = answer(RecordCalibration.Response(success=True, message='valve_a: open_ms = ...', n_points=4))
    assert req.force and row.record.text() == 'Record' and dlg.status_of(key) == 'recorded 12.8 uL (forced)'
    assert calls[0][2].device == 'valve_a'  # the fit is read again
    # A new number takes the offer back: it is checked again first.
    row.offer_force = True
    row.grams.setValue(0.0130)
    assert row.record.text() == 'Record'
    # Errors name the fix in the status line.
    answer(error='/rig1/gpio/get_calibration is not available: is the terminal running …')
    assert 'is the rig running (with its gpio node)' in dlg.status.text()
    qtbot.mouseClick(row.run, LEFT)
    answer(CalibrateValve.Response(success=False, message='valve_a: opening of 300000 us exceeds max_open_ms'))
    assert dlg.status_of(key) == 'not started' and 'max_open_ms' in dlg.status.text() and row.run.isEnabled()
    dlg.choose('rig1', False)
    assert not dlg.rows and dlg.table.rowCount() == 0 and dlg.history.rowCount() == 0


def test_calibration_dialog_and_log_pane_on_two_real_rigs(procs, node, tmp_path, qtbot, window):
    launch_rigs(procs, tmp_path, ['rig1', 'rig2'])
    launch_terminal(procs, tmp_path)
    Lab(node, ['rig1', 'rig2']).wait_online('rig1', 'rig2')
    w = window()
    pane = w.log_pane  # the window's own, fed from /rosout
    qtbot.waitUntil(lambda: all(r in w.lab.pilots and w.lab.pilots[r].online for r in ('rig1', 'rig2')),
                    timeout=20_000)

    dlg = w.open_calibration()
    qtbot.waitUntil(lambda: {'rig1', 'rig2'} <= set(dlg.rig_items), timeout=5000)
    dlg.choose('rig1')
    dlg.choose('rig2')
    keys = {(r, v) for r in ('rig1', 'rig2') for v in ('valve_left', 'valve_right', 'valve_center')}
    qtbot.waitUntil(lambda: set(dlg.rows) == keys and all(len(dlg.rows[k].points) == 3 for k in keys),
                    timeout=30_000)
    assert all('3 points' in dlg.table.item(dlg.order.index(k), COL['Fit: open ms =']).text() for k in keys)
    # valve_left of rig1 and valve_right of rig2, at once: the other four unticked.
    runs = [('rig1', 'valve_left'), ('rig2', 'valve_right')]
    for key in keys - set(runs):
        dlg.table.item(dlg.order.index(key), COL['Valve']).setCheckState(QtCore.Qt.CheckState.Unchecked)
    for key in runs:
        row = dlg.rows[key]
        row.openings.setValue(5)
        row.open_ms.setValue(30.0)
        row.interval_ms.setValue(50.0)                                  # 5 x 30 + 4 x 50 = 350 ms
    qtbot.mouseClick(dlg.run_all, LEFT)
    qtbot.waitUntil(lambda: all(dlg.status_of(k).startswith('running… until') for k in runs), timeout=20_000)
    assert all(dlg.status_of(k) == 'ready' for k in keys - set(runs))
    qtbot.waitUntil(lambda: all(dlg.status_of(k).startswith('weigh') for k in runs), timeout=10_000)
    # The fits predict 3.5 (rig1 valve_left) and 3.3 uL (rig2 valve_right) per 30 ms opening.
    for key, grams in zip(runs, (0.0176, 0.0163), strict=True):
        dlg.rows[key].grams.setValue(grams)
        qtbot.mouseClick(dlg.rows[key].record, LEFT)
    qtbot.waitUntil(lambda: all(dlg.status_of(k).startswith('recorded') for k in runs), timeout=20_000)
    qtbot.waitUntil(lambda: all(len(dlg.rows[k].points) == 4 for k in runs), timeout=20_000)
    assert [p.measured_volume_ul for p in dlg.rows[runs[1]].points][-1] == 16.3
    assert all('4 points' in dlg.table.item(dlg.order.index(k), COL['Fit: open ms =']).text() for k in runs)
    lines = (tmp_path / 'rig1-calibration.jsonl').read_text().splitlines()
    assert len(lines) == 9 + 1 and '"n_openings": 5, "open_ms": 30.0, "measured_volume_ul": 17.6}' in lines[-1]

    # Ten times the water (a slip of the decimal point): refused with the plausibility message, then stored anyway.
    key = runs[0]
    row = dlg.rows[key]
    row.grams.setValue(0.176)
    qtbot.mouseClick(row.record, LEFT)
    qtbot.waitUntil(lambda: row.record.text() == 'Store anyway', timeout=20_000)
    assert 'off the current fit' in dlg.status.text() and 'click "Store anyway"' in dlg.status.text()
    assert len((tmp_path / 'rig1-calibration.jsonl').read_text().splitlines()) == 10
    dlg.table.selectRow(dlg.order.index(key))
    assert dlg.selected == key and dlg.history.rowCount() == 4
    scatters = [i for i in dlg.plot.getPlotItem().items if type(i).__name__ == 'ScatterPlotItem']
    assert sorted(len(s.points()) for s in scatters) == [3, 3, 3, 3, 4, 4]
    qtbot.wait(200)
    screenshot(dlg, tmp_path, 'gui-calibration')  # the refusal: the message, and the offer to store anyway
    qtbot.mouseClick(row.record, LEFT)
    qtbot.waitUntil(lambda: dlg.status_of(key) == 'recorded 176 uL (forced)', timeout=20_000)
    qtbot.waitUntil(lambda: len(row.points) == 5, timeout=20_000)
    assert len((tmp_path / 'rig1-calibration.jsonl').read_text().splitlines()) == 11
    assert dlg.history.rowCount() == 5 and '5 point(s)' in dlg.history_title.text()

    # The rigs' /rosout lines reached the pane: the calibration runs and records among them.
    qtbot.waitUntil(lambda: any('calibration run' in ln.text for ln in pane.lines), timeout=10_000)
    gpio = next(ln.node for ln in pane.lines if 'calibration run' in ln.text)
    assert gpio.endswith('gpio') and 'rig' in gpio
    pane.node_combo.setCurrentText(gpio)
    assert pane.model.rows and all(r.node == gpio for r in pane.model.rows)
    pane.node_combo.setCurrentText(ALL)
    pane.resize(1000, 420)
    pane.show()
    qtbot.wait(200)
    screenshot(pane, tmp_path, 'gui-log')
    dlg.close()
