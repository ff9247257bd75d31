"""The Terminal window (issue 19) against a real terminal and two simulated rigs, on Qt's offscreen platform.

Each rig is the ``rig`` executable (gpio, sound, pilot and a virtual subject in one process); the terminal is
its installed executable; the window is the real one, its ROS side on its own thread, driven by clicks
(pytest-qt). Screenshots go to the test's directory, and to ``$AUTOPILOT_SCREENSHOTS`` when set (that is how
docs/screenshots/ is made: ``AUTOPILOT_SCREENSHOTS=docs/screenshots pytest tests/test_gui.py``).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from PyQt5 import QtCore, QtWidgets
from test_pilot import CALIBRATION, FAST_SUBJECT, RIG_PARAMS
from test_terminal import RIG, Lab, launch_terminal

from autopilot_gui.window import MainWindow


def launch_rigs(procs, tmp_path: Path, names: list[str]) -> dict[str, object]:
    rigs = {}
    for i, ns in enumerate(names):
        calibration = tmp_path / f'{ns}-calibration.jsonl'
        shutil.copy(CALIBRATION, calibration)
        own = tmp_path / f'{ns}.yaml'
        own.write_text(yaml.safe_dump({
            '/**/gpio': {'ros__parameters': {'calibration_file': str(calibration)}},
            '/**/sound': {'ros__parameters': {'backend': 'null'}},
            '/**/pilot': {'ros__parameters': {'journal_path': str(tmp_path / f'{ns}-journal.sqlite3'),
                                              'seed': 7 + i, 'resend_interval_s': 0.5}},
            '/**/subject_sim': {'ros__parameters': {'seed': 5 + i, **FAST_SUBJECT}}}))
        rigs[ns] = procs([RIG, '--virtual-subject', '--ros-args', '-r', f'__ns:=/{ns}', '--params-file',
                          str(RIG_PARAMS), '--params-file', str(own)], name=ns)
    return rigs


def screenshot(widget: QtWidgets.QWidget, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f'{name}.png'
    assert widget.grab().save(str(path)), f'could not save {path}'
    if os.environ.get('AUTOPILOT_SCREENSHOTS'):
        out = Path(os.environ['AUTOPILOT_SCREENSHOTS'])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, out / path.name)
    return path


def row_text(w: MainWindow, pilot: str, column: str) -> str:
    from autopilot_gui.model import COLUMNS

    r = w.table.rows.get(pilot)
    if r is None:
        return ''  # no row yet
    item = w.table.item(r, COLUMNS.index(column))
    return item.text() if item is not None else ''


def trials_shown(w: MainWindow, pilot: str) -> int:
    text = row_text(w, pilot, 'trials')
    return int(text) if text.isdigit() else 0


def answer_weight(qtbot, w: MainWindow, subject: str, when: str, grams: float) -> None:
    qtbot.waitUntil(lambda: w.findChild(QtWidgets.QDialog, f'weight_{subject}_{when}') is not None, timeout=10_000)
    dlg = w.findChild(QtWidgets.QDialog, f'weight_{subject}_{when}')
    dlg.grams.setValue(grams)
    dlg.accept()


def test_control_panel_runs_a_session_from_clicks(procs, node, tmp_path, qtbot, window):
    from test_camera import camera

    launch_rigs(procs, tmp_path, ['rig1', 'rig2'])
    # rig1 has a camera (raw frames only): its picture shows next to rig1's plots.
    procs(camera('backend:=synthetic', 'fps:=15.0', 'width:=320', 'height:=240') + ['-r', '__ns:=/rig1'],
          name='camera')
    launch_terminal(procs, tmp_path)
    lab = Lab(node, ['rig1', 'rig2'])
    lab.wait_online('rig1', 'rig2')
    assert lab.create('mouse1').success and lab.assign('mouse1').success
    w = window()
    # Pilots appear by themselves, online; the subject is offered on every idle rig.
    qtbot.waitUntil(lambda: set(w.table.rows) == {'rig1', 'rig2'} and w.connected, timeout=20_000)
    qtbot.waitUntil(lambda: w.table.combos['rig1'].findText('mouse1') >= 0, timeout=20_000)
    assert row_text(w, 'rig1', 'state') == 'idle'
    w.table.combos['rig1'].setCurrentText('mouse1')
    w.table.refresh()
    assert w.table.buttons['rig1']['start'].isEnabled()
    assert not w.table.buttons['rig1']['stop'].isEnabled()

    # Live trials come best effort: one lost on the way (dropped here, before the window reads it) is asked of the
    # terminal once the heartbeat has counted it for a while.
    handle = w.handle

    def lose_trial_2(ev):
        if ev.kind == 'trial' and ev.pilot == 'rig1' and ev.payload.trial_number == 2:
            return False
        return handle(ev)
    w.handle = lose_trial_2
    qtbot.mouseClick(w.table.buttons['rig1']['start'], QtCore.Qt.MouseButton.LeftButton)
    answer_weight(qtbot, w, 'mouse1', 'start', 24.5)
    qtbot.waitUntil(lambda: row_text(w, 'rig1', 'state') == 'running', timeout=30_000)
    qtbot.waitUntil(lambda: trials_shown(w, 'rig1') >= 6, timeout=60_000)
    # The row's accuracy comes from the trials the window heard; the plots were made from the task's declaration.
    qtbot.waitUntil(lambda: row_text(w, 'rig1', 'accuracy').endswith('%'), timeout=10_000)
    qtbot.waitUntil(lambda: 'rig1' in w.plots, timeout=10_000)
    assert w.plots['rig1'].spec.title == '2AFC'
    assert not w.bar.text() or 'started' in w.bar.text(), w.bar.text()
    # Every trial the pilot counted reached the plots (the heartbeat may run ahead by the trials in flight).
    qtbot.waitUntil(lambda: len(w.lab.pilots['rig1'].trials) >= trials_shown(w, 'rig1') >= 6, timeout=10_000)
    qtbot.waitUntil(lambda: [t.number for t in w.lab.pilots['rig1'].session_trials()][:3] == [1, 2, 3], timeout=10_000)
    qtbot.waitUntil(lambda: 'rig1' not in w._stale, timeout=5_000)
    qtbot.waitUntil(lambda: w.plots['rig1'].camera is not None, timeout=15_000)
    frame = w.plots['rig1'].camera.image
    assert frame.shape[:2] == (240, 320) and frame.std() > 0, frame.shape
    screenshot(w, tmp_path, 'gui-control-panel')

    qtbot.mouseClick(w.table.buttons['rig1']['pause'], QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: row_text(w, 'rig1', 'state') == 'paused', timeout=20_000)
    assert w.table.buttons['rig1']['pause'].text() == 'Resume'
    qtbot.mouseClick(w.table.buttons['rig1']['pause'], QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: row_text(w, 'rig1', 'state') == 'running', timeout=20_000)
    qtbot.mouseClick(w.table.buttons['rig1']['stop'], QtCore.Qt.MouseButton.LeftButton)
    answer_weight(qtbot, w, 'mouse1', 'stop', 24.1)
    qtbot.waitUntil(lambda: row_text(w, 'rig1', 'state') == 'idle', timeout=20_000)
    # Errors from services land in the window with the fix: starting a subject with no protocol.
    assert lab.create('mouse9').success
    qtbot.waitUntil(lambda: w.table.combos['rig2'].findText('mouse9') >= 0, timeout=20_000)
    w.weigh_at = 'none'
    w.on_action('start', 'rig2', 'mouse9')
    qtbot.waitUntil(lambda: 'mouse9' in w.bar.text(), timeout=20_000)
    assert 'protocol' in w.bar.text(), w.bar.text()


def test_two_windows_agree_and_reconnect_when_the_terminal_comes_back(procs, node, tmp_path, qtbot, window):
    launch_rigs(procs, tmp_path, ['rig1'])
    terminal = launch_terminal(procs, tmp_path)
    lab = Lab(node, ['rig1'])
    lab.wait_online('rig1')
    assert lab.create('mouse1').success and lab.assign('mouse1').success
    a = window()
    qtbot.waitUntil(lambda: 'rig1' in a.table.rows and a.connected
                    and a.table.combos['rig1'].findText('mouse1') >= 0, timeout=20_000)
    a.weigh_at = 'none'
    a.on_action('start', 'rig1', 'mouse1')
    qtbot.waitUntil(lambda: trials_shown(a, 'rig1') >= 4, timeout=60_000)
    # A second window opened mid-session fills in the trials it missed from the terminal's file (get_trials).
    b = window()
    for w in (a, b):
        qtbot.waitUntil(lambda w=w: row_text(w, 'rig1', 'state') == 'running'
                        and trials_shown(w, 'rig1') >= 6, timeout=60_000)
        assert w.table.combos['rig1'].currentText() == 'mouse1'
    qtbot.waitUntil(lambda: {t.number for t in b.lab.pilots['rig1'].trials} >= set(range(1, 6)), timeout=15_000)
    numbers = [t.number for t in b.lab.pilots['rig1'].trials]
    assert numbers == sorted(numbers) and [t.index for t in b.lab.pilots['rig1'].trials] == list(range(len(numbers)))
    b.on_action('stop', 'rig1', '')
    for w in (a, b):
        qtbot.waitUntil(lambda w=w: row_text(w, 'rig1', 'state') == 'idle', timeout=20_000)
    # b asked for the stop weight (its lab weighs at both ends, the terminal's default); a did not stop anything.
    answer_weight(qtbot, b, 'mouse1', 'stop', 23.9)
    assert a.findChild(QtWidgets.QDialog, 'weight_mouse1_stop') is None

    assert terminal.stop() == 0, terminal.output()
    for w in (a, b):
        qtbot.waitUntil(lambda w=w: not w.connected and not w.table.isEnabled(), timeout=15_000)
        assert 'reconnecting' in w.status_label.text()
    screenshot(a, tmp_path, 'gui-terminal-lost')
    launch_terminal(procs, tmp_path, 'terminal-2')
    for w in (a, b):
        qtbot.waitUntil(lambda w=w: w.connected and w.table.isEnabled() and lab_online(w, 'rig1'), timeout=30_000)


def lab_online(w: MainWindow, pilot: str) -> bool:
    row = w.lab.pilots.get(pilot)
    return row is not None and row.online


def test_subjects_window_creates_weighs_notes_and_shows_the_record(procs, node, tmp_path, qtbot, window):
    launch_rigs(procs, tmp_path, ['rig1'])
    launch_terminal(procs, tmp_path)
    lab = Lab(node, ['rig1'])
    lab.wait_online('rig1')
    w = window()
    qtbot.waitUntil(lambda: w.connected and 'rig1' in w.table.rows, timeout=20_000)
    sw = w.open_subjects()
    qtbot.addWidget(sw)
    dlg = sw.new_subject()
    qtbot.waitUntil(lambda: dlg.protocol.findText('fast') >= 0, timeout=15_000)  # the terminal's protocols
    dlg.name.setText('mouse7')
    dlg.genotype.setText('Pvalb-Cre')
    dlg.sex.setCurrentText('F')
    dlg.protocol.setCurrentText('fast')
    screenshot(dlg, tmp_path, 'gui-new-subject')
    dlg.submit()
    qtbot.waitUntil(lambda: 'mouse7' in w.lab.subjects and w.lab.subjects['mouse7'].protocol == 'fast', timeout=20_000)
    bio = w.lab.subjects['mouse7'].biography_json
    assert '"genotype": "Pvalb-Cre"' in bio and '"sex": "F"' in bio, bio
    qtbot.waitUntil(lambda: sw.table.rowCount() == 1, timeout=5_000)
    sw.table.selectRow(0)
    qtbot.waitUntil(lambda: sw.record is not None and sw.record.summary.subject == 'mouse7', timeout=15_000)

    # The roster: on rig1, which then offers mouse7 first.
    sw.rig.setCurrentText('rig1')
    sw.set_rig()
    qtbot.waitUntil(lambda: w.lab.subjects['mouse7'].pilot == 'rig1', timeout=15_000)
    assert w.lab.roster('rig1')[0] == 'mouse7'
    sw.grams.setValue(25.5)
    sw.add_weight()
    qtbot.waitUntil(lambda: sw.record is not None and len(sw.record.weights) == 1, timeout=15_000)
    assert sw.record.weights[0].grams == pytest.approx(25.5) and sw.record.weights[0].when == 'check'
    sw.note.setText('drank well, bright and alert')
    sw.add_note()
    qtbot.waitUntil(lambda: sw.notes.count() == 1 and 'bright' in sw.notes.item(0).text(), timeout=15_000)

    # A session run elsewhere (the CLI, another window) shows up in the record with its accuracy.
    assert lab.start('mouse7', 'rig1', max_trials=8).success
    qtbot.waitUntil(lambda: sw.record is not None and len(sw.record.sessions) == 1
                    and sw.record.sessions[0].state != 'running' and sw.record.sessions[0].trials == 8,
                    timeout=60_000)
    assert 0.0 <= sw.record.sessions[0].accuracy <= 1.0
    assert sw.sessions.rowCount() == 1
    sw.step.setCurrentIndex(1)
    sw.reason.setText('ready for the hard version')
    sw.set_step()
    qtbot.waitUntil(lambda: w.lab.subjects['mouse7'].step == 1, timeout=15_000)
    qtbot.waitUntil(lambda: any(h.kind == 'step' and 'ready for the hard' in h.detail_json
                                for h in sw.record.history), timeout=15_000)
    for i, name in enumerate(('overview', 'sessions', 'protocol-history', 'weights', 'notes')):
        sw.tabs.setCurrentIndex(i)
        qtbot.wait(50)
        screenshot(sw, tmp_path, f'gui-subject-{name}')
    # 2AFC declares no stimulus level: the psychometric tab says so (its curve is tested in test_gui_model).
    sw.tabs.setCurrentWidget(sw.psycho_tab)
    qtbot.waitUntil(lambda: 'declares no stimulus level' in sw.psycho_note.text(), timeout=15_000)


def test_gui_from_the_launch_file_and_the_cli(procs, node, tmp_path, ros_env):
    """`gui:=true` on terminal.launch.yaml opens the window next to the terminal; `autopilot gui` opens another
    on any host; Ctrl-C of the launch closes both the terminal and its window."""
    import signal

    from conftest import AUTOPILOT, cli
    from test_terminal import LAUNCH_FILE

    from autopilot_core.executors import spin

    (tmp_path / 'protocols').mkdir()
    launch = procs([*AUTOPILOT, 'launch', str(LAUNCH_FILE), 'gui:=true', f'data_dir:={tmp_path / "data"}',
                    f'protocol_dir:={tmp_path / "protocols"}'], name='launch')
    assert spin(node, node.executor_, timeout_sec=40, until=lambda: any(
        n.startswith('gui_') for n, _ in node.get_node_names_and_namespaces())), launch.output()
    shot = tmp_path / 'cli-window.png'
    result = cli(ros_env, 'gui', '--seconds', '4', '--screenshot', str(shot), timeout=60)
    assert result.returncode == 0, result.stderr
    assert shot.stat().st_size > 5000
    # Bad arguments are refused before any window opens; an unwritable screenshot is an error, not a silent miss.
    for bad in ('nan', 'inf', '-1', '1e308', 'soon'):
        result = cli(ros_env, 'gui', '--seconds', bad, timeout=30)
        assert result.returncode == 2 and '--seconds' in result.stderr, (bad, result.stderr)
    result = cli(ros_env, 'gui', '--seconds', '1', '--screenshot', str(tmp_path / 'no' / 'dir.png'), timeout=60)
    assert result.returncode == 1 and 'cannot write' in result.stderr, result.stderr
    launch.signal(signal.SIGINT)
    assert launch.wait(30) == 0, launch.output()
    out = launch.output()
    assert 'Traceback' not in out, out


def test_hostile_messages_leave_the_window_drawing(node, qtbot, window):
    """Forged registry, trials, GPIO events and camera frames (huge strings, NaN, 1e308, wrong types and sizes,
    garbage JPEG) reach the window from a node posing as the terminal and a rig: it keeps drawing, counts what
    it refused, and no exception leaves a Qt slot (pytest-qt fails the test on one)."""
    from autopilot_msgs.msg import GpioEvent, PilotEntry, PilotRegistry, PilotStatus, TrialData, TrialField
    from sensor_msgs.msg import Image

    from autopilot_core import qos
    from autopilot_core.executors import spin

    reg_pub = node.create_publisher(PilotRegistry, '/terminal/pilots', qos.STATUS)
    trial_pub = node.create_publisher(TrialData, '/rig1/trials', qos.TRIALS)
    gpio_pub = node.create_publisher(GpioEvent, '/rig1/gpio/events', qos.EVENTS)
    raw_pub = node.create_publisher(Image, '/rig1/camera/image', qos.STREAM)
    w = window()
    reg = PilotRegistry(pilots=[PilotEntry(pilot='rig1', online=True, last_status=PilotStatus(
        pilot='rig1', state=PilotStatus.STATE_RUNNING, task='2afc', subject='m' * 10_000, session_id='s1',
        message='x' * 1_000_000, step=65535))])
    reg.pilots += [PilotEntry(pilot=name) for name in ('not a ROS name!', '../up', '9starts_with_digit', '')]
    reg.pilots += [PilotEntry(pilot=f'p{i}', online=bool(i % 2)) for i in range(700)]  # more than MAX_PILOTS
    node.create_timer(1.0, lambda: reg_pub.publish(reg))  # as a terminal does: the window stays connected

    def pumped(check: Callable[[], bool]) -> Callable[[], bool]:
        return lambda: spin(node, node.executor_, timeout_sec=0.05) is not None and check()
    qtbot.waitUntil(pumped(lambda: 'rig1' in w.lab.pilots and w.connected), timeout=30_000)
    assert spin(node, node.executor_, timeout_sec=10, until=lambda: trial_pub.get_subscription_count() >= 1)
    node_spin = lambda s: spin(node, node.executor_, timeout_sec=s)  # noqa: E731
    node_spin(0.5)
    # One good trial gives rig1 its plots, in view: the window then takes rig1's GPIO events too.
    good = TrialData(pilot='rig1', subject='m', session_id='s1', trial_number=1, task='2afc',
                     fields=[TrialField(name='correct', type=TrialField.TYPE_BOOL, bool_value=True)])
    trial_pub.publish(good)
    qtbot.waitUntil(pumped(lambda: 'rig1' in w.plots and gpio_pub.get_subscription_count() >= 1), timeout=20_000)
    node_spin(0.5)
    bad_fields = [
        [TrialField(name='correct', type=TrialField.TYPE_BOOL, bool_value=True),
         TrialField(name='rt_ms', type=TrialField.TYPE_FLOAT64, float_value=math.nan),
         TrialField(name='response', type=TrialField.TYPE_STRING, string_value='r' * 1_000_000)],
        [TrialField(name='rt_ms', type=TrialField.TYPE_FLOAT64, float_value=1e308),
         TrialField(name='correct', type=TrialField.TYPE_INT64, int_value=-(2**63))],
        [TrialField(name='weird', type=9)],  # an unknown type code
        [TrialField(name='', type=TrialField.TYPE_BOOL)],
    ]
    for n in range(1, 41):
        msg = TrialData(pilot='rig1' if n % 7 else 'rig2', subject='m', session_id='s1' if n % 5 else 'x' * 5000,
                        trial_number=n % 13, task='2afc' if n % 3 else 'no_such_task', fields=bad_fields[n % 4])
        msg.header.stamp.sec = n
        trial_pub.publish(msg)
        gpio_pub.publish(GpioEvent(device='d' * 5000 if n % 2 else 'poke', level=bool(n % 2)))
        raw_pub.publish(Image(height=480, width=640, encoding='bgr8', step=1920, data=bytes(100)))  # too short
        raw_pub.publish(Image(height=2, width=2, encoding='mono16', step=4, data=bytes(8)))  # unknown encoding
    node_spin(1.0)
    qtbot.wait(1000)
    assert len(w.lab.pilots) <= 500 and w.lab.bad_trials > 0
    assert w.isVisible() and w.table.rowCount() == len(w.lab.pilots)
    # Still answering: a fresh registry is drawn.
    reg.pilots = [PilotEntry(pilot='rig1', online=False)]
    qtbot.waitUntil(pumped(lambda: not w.lab.pilots['rig1'].online), timeout=10_000)
