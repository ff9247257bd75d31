"""The protocol editor (issue 19 item 4): its draft model as plain Python, then the dialog against a real terminal.

The model tests need no ROS: every shipped protocol file survives a round trip through the draft, and the errors
of a draft are the pilots' own (:func:`autopilot_tasks.protocol.load_protocol` on the draft's YAML), naming the
line of that YAML and the field. The dialog test drives the real editor in a real window (pytest-qt, offscreen)
against a real terminal: a protocol is built by setting widgets, checked, saved, listed and assigned.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PyQt5 import QtCore, QtWidgets
from test_gui import screenshot
from test_terminal import Lab, launch_terminal

from autopilot_gui.protocol_model import Draft, DraftError, DraftStep, scalar
from autopilot_gui.protocols import ProtocolEditor
from autopilot_tasks.protocol import load_protocol, load_protocol_file

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / 'protocols').glob('*.yaml'))
LEFT = QtCore.Qt.MouseButton.LeftButton


def line_of(text: str, needle: str) -> int:
    """The 1-based line of ``text`` that holds ``needle`` (once)."""
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    assert len(hits) == 1, (needle, hits)
    return hits[0]


def two_steps() -> Draft:
    return Draft(name='two_step', description='water, then the task', steps=[
        DraftStep('free water', 'free_water', {'reward_ul': 8.0, 'mode': 'alternate'}, {'trials': 20}),
        DraftStep('2afc', '2afc', {'punish_timeout_s': 1.0}, {'accuracy': 0.8, 'window': 50})])


# -- the model ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('path', SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_protocol_survives_a_round_trip(path):
    assert SHIPPED, 'no protocols/*.yaml'
    draft = Draft.from_yaml(path.read_text(), path.stem)
    assert draft.problem() is None
    text = draft.to_yaml()
    # What the pilots load from the editor's text is what they load from the person's file.
    ours, theirs = load_protocol(text, name=path.stem), load_protocol_file(path)
    assert (ours.name, ours.description) == (theirs.name, theirs.description)
    assert len(ours.steps) == len(theirs.steps) >= 2
    for a, b in zip(ours.steps, theirs.steps, strict=True):
        assert (a.name, a.task_name, a.parameters, a.graduation) == (b.name, b.task_name, b.parameters, b.graduation)
    # And the text is stable: opening it again gives the same draft and the same text.
    again = Draft.from_yaml(text, path.stem)
    assert again == draft and again.to_yaml() == text
    assert text.startswith(f'name: {path.stem}\n') and '  - name: ' in text


def test_the_yaml_is_written_as_a_person_writes_it():
    text = two_steps().to_yaml()
    assert text == (
        'name: two_step\n'
        'description: water, then the task\n'
        'steps:\n'
        '  - name: free water\n'
        '    task: free_water\n'
        '    parameters:\n'
        '      reward_ul: 8.0\n'
        '      mode: alternate\n'
        '    graduation: {trials: 20}\n'
        '\n'
        '  - name: 2afc\n'
        '    task: 2afc\n'
        '    parameters:\n'
        '      punish_timeout_s: 1.0\n'
        '    graduation: {accuracy: 0.8, window: 50}\n')
    assert two_steps().problem() is None and two_steps().name_problem() is None


def test_errors_are_the_pilots_own_with_line_and_field():
    draft = two_steps()
    draft.steps[1].graduation = {'accuracy': 1.5, 'window': 50}
    err = draft.problem()
    assert err is not None and err.path == 'steps[1].graduation.accuracy'
    assert err.line == line_of(draft.to_yaml(), 'accuracy: 1.5')
    assert str(err).startswith(f'two_step.yaml:{err.line}: steps[1].graduation.accuracy: 1.5 is out of range')

    draft = two_steps()
    draft.set_parameter(0, 'reward_ul', 99.0)  # free_water allows 0.5 to 50 uL
    err = draft.problem()
    assert err is not None and err.path == 'steps[0].parameters.reward_ul'
    assert err.line == line_of(draft.to_yaml(), 'reward_ul: 99.0') and 'out of range' in err.message
    assert 'uL' in err.message

    draft = two_steps()
    draft.steps[0].graduation = {'accuracy': 0.8, 'window': 10}  # free water scores no trials
    err = draft.problem()
    assert err is not None and err.path == 'steps[0].graduation.accuracy' and 'score' in err.message

    draft = two_steps()
    draft.steps[1].name = 'free water'
    err = draft.problem()
    assert err is not None and err.path == 'steps[1].name' and 'unique' in err.message

    draft = two_steps()
    draft.steps[0].task = 'no_such_task'
    err = draft.problem()
    assert err is not None and err.path == 'steps[0].task' and 'unknown task' in err.message

    assert 'steps' in str(Draft(name='empty').problem())
    assert 'name' in str(Draft(steps=two_steps().steps).problem())
    assert Draft(name='has space').name_problem() is not None
    assert Draft(name='-x').name_problem() is not None and Draft(name='ok_1-2').name_problem() is None


def test_defaults_are_not_written_and_a_new_task_keeps_only_what_it_declares():
    draft = two_steps()
    draft.set_parameter(0, 'reward_ul', 5)  # the default 5.0, given as an int
    draft.set_parameter(0, 'iti_s', 2.0)
    assert draft.steps[0].parameters == {'mode': 'alternate', 'iti_s': 2.0}
    draft.set_parameter(1, 'correction_trials', True)  # the default
    draft.set_parameter(1, 'bias_correction', False)
    assert draft.steps[1].parameters == {'punish_timeout_s': 1.0, 'bias_correction': False}
    assert 'correction_trials' not in draft.to_yaml()
    # Parameters are written in the task's declaration order, whatever order they were set in.
    draft.set_parameter(0, 'reward_ul', 9.0)
    assert draft.to_yaml().index('reward_ul') < draft.to_yaml().index('mode') < draft.to_yaml().index('iti_s')
    # free_water -> 2afc: reward_ul and iti_s are 2AFC parameters too, mode is not.
    draft.set_task(0, '2afc')
    assert draft.steps[0].parameters == {'reward_ul': 9.0, 'iti_s': 2.0}
    draft.set_graduation(0, 'sessions')
    assert draft.steps[0].graduation == {'sessions': 1} and draft.steps[0].rule() == 'sessions'
    draft.set_graduation(0, 'accuracy', {'accuracy': 0.7})
    assert draft.steps[0].graduation == {'accuracy': 0.7, 'window': 100}
    draft.set_graduation(0, 'none')
    assert draft.steps[0].graduation is None and draft.steps[0].rule() == 'none'
    assert draft.new_step_name('2afc') == '2afc 2' and draft.new_step_name('echo') == 'echo'
    assert draft.problem() is None


def test_a_stimulus_set_is_written_as_yaml_and_checked_like_any_parameter(qtbot):
    """The editor's row for a Stimuli parameter (JSON text in a line edit) and the draft's YAML of it."""
    from autopilot_gui.protocols import ParamRow
    from autopilot_tasks.tasks.go_nogo import GoNoGo

    draft = Draft(name='gng', description='', steps=[DraftStep('gng', 'gonogo', {}, None)])
    sounds = {'groups': {'go': [{'id': 'up', 'kind': 'fm_sweep', 'frequency_hz': 4000.0, 'end_frequency_hz': 8000.0,
                                 'duration_ms': 100.0}],
                         'nogo': [{'id': 'down', 'kind': 'fm_sweep', 'frequency_hz': 8000.0,
                                   'end_frequency_hz': 4000.0, 'duration_ms': 100.0}]}}
    edits: list = []
    holder = QtWidgets.QWidget()
    qtbot.addWidget(holder)
    row = ParamRow(GoNoGo.params()['stimuli'], holder, lambda name, value: edits.append((name, value)))
    row.show(GoNoGo.stimuli.default, False)
    assert '"nogo"' in row.editor.text()                   # JSON, not a Python repr
    import json
    row.editor.setText(json.dumps(sounds))
    assert edits[-1] == ('stimuli', sounds)                 # the mapping, once the text parses
    row.editor.setText('{"groups": ')
    assert edits[-1] == ('stimuli', '{"groups": ')           # text the check refuses, kept as typed
    draft.set_parameter(0, 'stimuli', sounds)
    assert draft.problem() is None
    assert load_protocol(draft.to_yaml()).steps[0].parameters['stimuli']['groups']['go'][0]['id'] == 'up'
    draft.set_parameter(0, 'stimuli', '{"groups": ')
    problem = draft.problem()
    assert problem is not None and 'stimuli' in str(problem) and 'not JSON' in str(problem)


def test_opening_keeps_wrong_values_and_refuses_what_it_cannot_hold():
    text = ('name: bad\nsteps:\n  - name: water\n    task: free_water\n'
            '    parameters: {reward_ul: 99, mode: sideways}\n    graduation: {trials: 0}\n')
    draft = Draft.from_yaml(text)
    assert draft.steps[0].parameters == {'reward_ul': 99, 'mode': 'sideways'}
    assert draft.steps[0].graduation == {'trials': 0}
    err = draft.problem()
    assert err is not None and err.path == 'steps[0].parameters.reward_ul'
    with pytest.raises(DraftError, match=r"bad\.yaml:3: steps\[0\]: unknown key 'nmae'.*did you mean 'name'"):
        Draft.from_yaml('steps:\n  - task: free_water\n    nmae: x\n', 'bad')
    with pytest.raises(DraftError, match=r'^x\.yaml:3: malformed YAML'):
        Draft.from_yaml('name: x\nsteps: [\n', 'x')
    with pytest.raises(DraftError, match='mapping'):
        Draft.from_yaml('- just a list\n', 'x')
    # The file's stem names a protocol without name:.
    assert Draft.from_yaml('steps:\n  - {name: a, task: free_water}\n', 'stem').name == 'stem'


@pytest.mark.parametrize('value', ['yes', 'no', '5', 'a: b', '#hash', 'x\ny', ' padded ', 'null', '', 'é', 1e-07,
                                   0.1, 12000.0, 3, True, False])
def test_scalars_read_back_as_written(value):
    import yaml

    assert yaml.safe_load(f'k: {scalar(value)}')['k'] == value
    draft = Draft(name='q', description=str(value), steps=[DraftStep(f's {value}', 'free_water')])
    again = Draft.from_yaml(draft.to_yaml())
    assert (again.steps[0].name, again.description) == (f's {value}', str(value))
    assert again.problem() is None


# -- the dialog against a real terminal ------------------------------------------------------------------------

def list_names(editor) -> dict[str, str]:
    out = {}
    for i in range(editor.protocol_list.count()):
        item = editor.protocol_list.item(i)
        out[item.data(QtCore.Qt.ItemDataRole.UserRole)] = item.text()
    return out


def select_protocol(editor, name: str) -> None:
    for i in range(editor.protocol_list.count()):
        item = editor.protocol_list.item(i)
        if item.data(QtCore.Qt.ItemDataRole.UserRole) == name:
            editor.protocol_list.setCurrentItem(item)
            return
    raise AssertionError(f'{name} not listed: {list_names(editor)}')


def answer(qtbot, editor, name: str, yes: bool = True) -> None:
    qtbot.waitUntil(lambda: editor.findChild(QtWidgets.QMessageBox, name) is not None, timeout=10_000)
    box = editor.findChild(QtWidgets.QMessageBox, name)
    button = box.button(QtWidgets.QMessageBox.Yes if yes else QtWidgets.QMessageBox.No)
    qtbot.mouseClick(button, LEFT)
    qtbot.waitUntil(lambda: editor.findChild(QtWidgets.QMessageBox, name) is None, timeout=5_000)


def test_build_check_save_and_assign_a_protocol(procs, node, tmp_path, qtbot, window):
    protocol_dir = tmp_path / 'protocols'
    protocol_dir.mkdir()
    (protocol_dir / 'bad.yaml').write_text('name: bad\nsteps:\n  - name: water\n    task: free_water\n'
                                           '    parameters: {reward_ul: 99.0}\n')
    launch_terminal(procs, tmp_path)
    lab = Lab(node, [])
    assert lab.create('mouse1').success and lab.create('mouse2').success
    w = window()
    editor = ProtocolEditor(w)
    qtbot.addWidget(editor)
    editor.show()

    # The terminal's protocols, the one the pilots would refuse marked with its line and field.
    qtbot.waitUntil(lambda: {'bad', 'fast'} <= set(list_names(editor)), timeout=20_000)
    assert list_names(editor)['bad'].startswith('bad: refused: line 5: steps[0].parameters.reward_ul: 99.0 is out of '
                                                'range'), list_names(editor)['bad']
    assert 'refused' not in list_names(editor)['fast']
    select_protocol(editor, 'bad')
    qtbot.mouseClick(editor.open_button, LEFT)
    qtbot.waitUntil(lambda: editor.draft.name == 'bad', timeout=10_000)
    assert 'steps[0].parameters.reward_ul: 99.0 is out of range' in editor.status.text()
    assert not editor.save_button.isEnabled()
    row = editor.param_rows['reward_ul']
    assert '99.0' in row.note.text() and row.reset.isEnabled()  # the row says what the file has
    qtbot.mouseClick(row.reset, LEFT)  # back to the default: nothing written, valid
    assert 'reward_ul' not in editor.preview.toPlainText() and editor.status.text() == 'valid: 1 step'

    # A new two-step protocol, built by setting widgets.
    qtbot.mouseClick(editor.new_button, LEFT)
    answer(qtbot, editor, 'discard')  # the change to 'bad' was not saved
    assert editor.draft.steps == [] and 'steps' in editor.status.text()
    editor.name_edit.setText('two_step')
    editor.description_edit.setText('water, then the task')
    qtbot.mouseClick(editor.add_button, LEFT)
    editor.task_combo.setCurrentIndex(editor.task_combo.findData('free_water'))
    editor.step_name.setText('free water')
    editor.param_rows['reward_ul'].editor.setValue(8.0)
    editor.param_rows['mode'].editor.setCurrentText('alternate')
    editor.rule_combo.setCurrentIndex(1)  # after n trials
    editor.count_spin.setValue(20)
    qtbot.mouseClick(editor.add_button, LEFT)
    assert editor.current == 1
    editor.task_combo.setCurrentIndex(editor.task_combo.findData('2afc'))
    editor.step_name.setText('2afc')
    assert editor.task_about.text() and 'reward_ul' in editor.param_rows
    editor.param_rows['punish_timeout_s'].editor.setValue(1.0)
    editor.param_rows['correction_trials'].editor.setChecked(False)
    editor.rule_combo.setCurrentIndex(2)  # on accuracy
    editor.accuracy_spin.setValue(0.0)
    # The pilots refuse an accuracy of 0: said with the line of the preview and the field, Save refused.
    text = editor.preview.toPlainText()
    assert editor.status.text().startswith(f'two_step.yaml:{line_of(text, "accuracy: 0.0")}: '
                                           'steps[1].graduation.accuracy: 0.0 is out of range'), editor.status.text()
    assert not editor.save_button.isEnabled()
    screenshot(editor, tmp_path, 'gui-protocol-editor-refused')
    editor.accuracy_spin.setValue(0.8)
    editor.window_spin.setValue(50)
    assert editor.status.text() == 'valid: 2 steps', editor.status.text()
    assert editor.draft == Draft('two_step', 'water, then the task', [
        DraftStep('free water', 'free_water', {'reward_ul': 8.0, 'mode': 'alternate'}, {'trials': 20}),
        DraftStep('2afc', '2afc', {'punish_timeout_s': 1.0, 'correction_trials': False},
                  {'accuracy': 0.8, 'window': 50})])
    # Moving a step down and back up again.
    editor.step_list.setCurrentRow(0)
    qtbot.mouseClick(editor.down_button, LEFT)
    assert [s.name for s in editor.draft.steps] == ['2afc', 'free water'] and editor.current == 1
    qtbot.mouseClick(editor.up_button, LEFT)
    assert [s.name for s in editor.draft.steps] == ['free water', '2afc']

    # Saved through the terminal, listed by it, and the file is the preview.
    qtbot.mouseClick(editor.save_button, LEFT)
    qtbot.waitUntil(lambda: 'two_step' in list_names(editor), timeout=20_000)
    assert editor.notice.text().startswith('saved '), editor.notice.text()
    assert (protocol_dir / 'two_step.yaml').read_text() == editor.preview.toPlainText()
    assert list_names(editor)['two_step'] == 'two_step (2 steps: free_water, 2afc)'
    assert 'not saved' not in editor.windowTitle()
    # Saving again asks before replacing the file.
    editor.step_list.setCurrentRow(1)
    editor.param_rows['punish_timeout_s'].editor.setValue(2.0)
    assert 'not saved' in editor.windowTitle()
    qtbot.mouseClick(editor.save_button, LEFT)
    answer(qtbot, editor, 'overwrite')
    qtbot.waitUntil(lambda: 'punish_timeout_s: 2.0' in (protocol_dir / 'two_step.yaml').read_text(), timeout=20_000)
    assert (protocol_dir / 'two_step.yaml').read_text() == editor.preview.toPlainText()

    # Two subjects at once onto its second step.
    qtbot.waitUntil(lambda: editor.subject_list.count() == 2, timeout=20_000)
    for i in range(2):
        editor.subject_list.item(i).setSelected(True)
    editor.assign_protocol.setCurrentIndex(editor.assign_protocol.findData('two_step'))
    assert [editor.assign_step.itemText(i) for i in range(editor.assign_step.count())] == ['0: free water', '1: 2afc']
    editor.assign_step.setCurrentIndex(1)
    qtbot.mouseClick(editor.assign_button, LEFT)
    qtbot.waitUntil(lambda: editor.notice.text().startswith('assigned'), timeout=20_000)
    assert editor.notice.text() == "assigned two_step to 2 of 2 (mouse1, mouse2) at step '2afc'", editor.notice.text()
    # /terminal/subjects says so (the window's model is that topic), and the list shows it.
    qtbot.waitUntil(lambda: all(w.lab.subjects[s].protocol == 'two_step' for s in ('mouse1', 'mouse2')),
                    timeout=20_000)
    for s in ('mouse1', 'mouse2'):
        summary = w.lab.subjects[s]
        assert (summary.step, summary.step_name, list(summary.step_names)) == (1, '2afc', ['free water', '2afc'])
    qtbot.waitUntil(lambda: 'two_step, step 1: 2afc' in editor.subject_list.item(0).text(), timeout=5_000)
    editor.step_list.setCurrentRow(1)
    editor.param_rows['reward_ul'].editor.setValue(60.0)  # clamped by the spin box to its max, 50 uL
    assert editor.draft.steps[1].parameters['reward_ul'] == 50.0
    path = screenshot(editor, tmp_path, 'gui-protocol-editor')
    assert path.stat().st_size > 10_000
