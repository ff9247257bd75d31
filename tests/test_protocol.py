"""Protocol files: parsing, errors naming line and field, graduation rules, the shipped example.

Includes hypothesis properties: any text, YAML-shaped junk and mutations of a valid file give a Protocol
or a ProtocolError, never another exception.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autopilot_tasks.protocol import (
    AccuracyGraduation,
    ProtocolError,
    SessionsGraduation,
    TrialsGraduation,
    find_protocol,
    list_protocols,
    load_protocol,
    load_protocol_file,
)
from autopilot_tasks.task import Field, Param, Task, TaskError

ROOT = Path(__file__).resolve().parent.parent


class Water(Task):
    """Fake free water: does not score."""

    reward_ul = Param(5.0, 'uL', 'Water per poke', min=0.5, max=50.0)
    mode = Param('random', '', 'Side', choices=('random', 'left', 'right'))
    port = Field(str)
    stages = ('wait',)

    def wait(self, event: Any) -> None:
        pass


class Choice(Task):
    """Fake 2AFC: scores 'correct', flags 'correction'."""

    reward_ul = Param(5.0, 'uL', 'Water per correct response', min=0.5, max=50.0)
    correction_trials = Param(True)
    bias_window = Param(20, 'trials', min=1, max=1000)
    left_hz = Param(5000.0, 'Hz', min=100.0, max=20000.0)
    right_hz = Param(12000.0, 'Hz', min=100.0, max=20000.0)
    correct = Field(bool)
    correction = Field(bool)
    stages = ('wait',)

    @classmethod
    def check_params(cls, values: dict) -> str | None:
        return 'the tones must differ' if values['left_hz'] == values['right_hz'] else None

    def wait(self, event: Any) -> None:
        pass


TASKS: dict[str, type[Task]] = {'free_water': Water, '2afc': Choice}


def lookup(name: str) -> type[Task]:
    try:
        return TASKS[name]
    except KeyError:
        raise TaskError(f'unknown task {name!r}; known tasks: {", ".join(TASKS)}') from None


def load(text: str, **kw: Any):
    return load_protocol(textwrap.dedent(text), source='protocols/2afc.yaml', lookup_task=lookup, **kw)


def error(text: str, **kw: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        load(text, **kw)
    assert '\n' not in str(info.value), str(info.value)
    return info.value


GOOD = """\
    name: 2afc_training
    description: shaping
    steps:
      - name: free water
        task: free_water
        parameters: {reward_ul: 8.0}
        graduation: {trials: 50}
      - name: 2afc easy
        task: 2afc
        parameters: {reward_ul: 5, correction_trials: true}
        graduation: {accuracy: 0.8, window: 50}
      - name: 2afc
        task: 2afc
        graduation: {sessions: 3}
"""


def test_valid_protocol() -> None:
    p = load(GOOD)
    assert p.name == '2afc_training' and p.description == 'shaping' and p.source == 'protocols/2afc.yaml'
    assert [s.name for s in p.steps] == ['free water', '2afc easy', '2afc']
    assert [s.task for s in p.steps] == [Water, Choice, Choice]
    assert [s.task_name for s in p.steps] == ['free_water', '2afc', '2afc']
    assert [s.line for s in p.steps] == [4, 8, 12]
    assert p.steps[0].parameters == {'reward_ul': 8.0, 'mode': 'random'}
    assert p.steps[1].parameters['reward_ul'] == 5.0 and type(p.steps[1].parameters['reward_ul']) is float
    assert p.steps[2].parameters == Choice.defaults()
    assert p.steps[0].graduation == TrialsGraduation(50)
    assert p.steps[1].graduation == AccuracyGraduation(0.8, 50, 'correct', ('correction',))
    assert p.steps[2].graduation == SessionsGraduation(3)
    assert p.index('2afc easy') == 1
    with pytest.raises(KeyError, match="no step 'nope'; steps: 'free water', '2afc easy', '2afc'"):
        p.index('nope')


def test_optional_parts() -> None:
    p = load("""\
        name: x
        steps:
          - {name: only, task: 2afc, parameters: null, graduation: null}
          - name: merged
            <<: {task: free_water}
    """)
    assert p.steps[0].parameters == Choice.defaults() and p.steps[0].graduation is None
    assert p.steps[1].task is Water and p.description == ''
    # without name: the given default (load_protocol_file passes the file's stem)
    assert load('steps: [{name: a, task: 2afc}]', name='from_stem').name == 'from_stem'


# Each case: YAML, the expected "line: path: message" (a regex), checked against str(ProtocolError).
ERRORS = [
    ('malformed yaml', 'name: x\nsteps:\n  - name: [a\n', r'4: malformed YAML: .*column'),
    ('empty', '', r'1: empty protocol'),
    ('not a mapping', '- a\n- b\n', r'1: a protocol must be a mapping \(name, description, steps\), got a list'),
    ('unknown top key', 'name: x\nstep: []\n',
     r"2: unknown key 'step' in a protocol: did you mean 'steps'\? allowed: name, description, steps"),
    ('no steps', 'name: x\n', r'1: a protocol needs steps'),
    ('empty steps', 'name: x\nsteps: []\n', r'2: steps: must be a non-empty list of steps'),
    ('no name in a string', 'steps: [{name: a, task: 2afc}]\n', r'1: a protocol read from a string needs name'),
    ('name not a string', 'name: [a]\nsteps: [{name: a, task: 2afc}]\n',
     r'1: name: the protocol name must be a non-empty string, got a list'),
    ('step not a mapping', 'name: x\nsteps:\n  - {name: a, task: 2afc}\n  - just text\n',
     r"4: steps\[1\]: a step must be a mapping \(name, task, parameters, graduation\), got 'just text'"),
    ('step without task', 'name: x\nsteps:\n  - name: a\n    parameters: {}\n',
     r"3: steps\[0\]: a step needs 'task'"),
    ('unknown step key', 'name: x\nsteps:\n  - name: a\n    task: 2afc\n    graduaton: {trials: 3}\n',
     r"5: steps\[0\]: unknown key 'graduaton' in a step: did you mean 'graduation'\? "
     r'allowed: name, task, parameters, graduation'),
    ('duplicate key', 'name: x\nsteps:\n  - name: a\n    task: 2afc\n    name: b\n',
     r'5: steps\[0\].name: duplicate key \(first at line 3\)'),
    ('duplicate step name', 'name: x\nsteps:\n  - {name: a, task: 2afc}\n  - name: b\n    task: 2afc\n'
     '  - name: a\n    task: 2afc\n',
     r"6: steps\[2\].name: 'a' is already the name of steps\[0\] \(line 3\); step names must be unique"),
    ('empty step name', "name: x\nsteps:\n  - {name: '', task: 2afc}\n",
     r'3: steps\[0\].name: a step name must be a non-empty string, got an empty string'),
    ('unknown task', 'name: x\nsteps:\n  - name: a\n    task: 3afc\n',
     r"4: steps\[0\].task: unknown task '3afc'; known tasks: free_water, 2afc"),
    ('task not a string', 'name: x\nsteps:\n  - name: a\n    task: [2afc]\n',
     r'4: steps\[0\].task: task \(a registered task name\) must be a non-empty string, got a list'),
    ('unknown parameter', 'name: x\nsteps:\n  - name: a\n    task: 2afc\n    parameters:\n      reward_ul: 5.0\n'
     '      corection_trials: true\n',
     r"7: steps\[0\].parameters: unknown parameter 'corection_trials' in the parameters of task '2afc': "
     r"did you mean 'correction_trials'\? allowed: reward_ul, correction_trials, bias_window"),
    ('parameter out of range', 'name: x\nsteps:\n  - name: a\n    task: 2afc\n    parameters:\n'
     '      correction_trials: true\n      reward_ul: 99\n',
     r'7: steps\[0\].parameters.reward_ul: 99 is out of range, allowed float in \[0.5, 50.0\] uL'),
    ('parameter wrong type', 'name: x\nsteps:\n  - name: a\n    task: 2afc\n    parameters: {bias_window: 2.5}\n',
     r"5: steps\[0\].parameters.bias_window: 2.5 has type float, expected int in \[1, 1000\] trials"),
    ('parameter choices', 'name: x\nsteps:\n  - name: a\n    task: free_water\n    parameters: {mode: up}\n',
     r"5: steps\[0\].parameters.mode: 'up' is not allowed, expected str one of 'random', 'left', 'right'"),
    ('parameter rule', 'name: x\nsteps:\n  - name: a\n    task: 2afc\n    parameters:\n      left_hz: 7000\n'
     '      right_hz: 7000\n',
     r'6: steps\[0\].parameters: Choice: the tones must differ'),
    ('parameters not a mapping', 'name: x\nsteps:\n  - name: a\n    task: 2afc\n    parameters: [1, 2]\n',
     r"5: steps\[0\].parameters: the parameters of task '2afc' must be a mapping"),
    ('bad date', 'name: x\nsteps:\n  - name: a\n    task: 2afc\n    parameters: {reward_ul: 2001-13-01}\n',
     r"5: steps\[0\].parameters.reward_ul: bad value '2001-13-01': month must be in 1..12"),
    ('accuracy out of range', 'name: x\nsteps:\n  - name: a\n    task: 2afc\n    graduation:\n'
     '      window: 50\n      accuracy: 1.5\n',
     r'7: steps\[0\].graduation.accuracy: 1.5 is out of range, allowed float in \(0, 1\]'),
    ('accuracy zero', 'name: x\nsteps:\n  - name: a\n    task: 2afc\n    graduation: {accuracy: 0, window: 5}\n',
     r'5: steps\[0\].graduation.accuracy: 0 is out of range, allowed float in \(0, 1\]'),
    ('accuracy nan', 'name: x\nsteps:\n  - name: a\n    task: 2afc\n    graduation: {accuracy: .nan, window: 5}\n',
     r'5: steps\[0\].graduation.accuracy: nan is out of range'),
    ('accuracy not a number', 'name: x\nsteps:\n  - name: a\n    task: 2afc\n    graduation: {accuracy: yes, '
     'window: 5}\n',
     r"5: steps\[0\].graduation.accuracy: expected a float in \(0, 1\], got 'yes'"),
    ('accuracy without window', 'name: x\nsteps:\n  - name: a\n    task: 2afc\n    graduation: {accuracy: 0.8}\n',
     r"5: steps\[0\].graduation: 'accuracy' needs 'window'"),
    ('two rules', 'name: x\nsteps:\n  - name: a\n    task: 2afc\n    graduation: {trials: 5, sessions: 2}\n',
     r'5: steps\[0\].graduation: has trials and sessions; a graduation is exactly one of '
     r'\{trials: n\}, \{accuracy: x, window: n\} or \{sessions: n\}'),
    ('no rule', 'name: x\nsteps:\n  - name: a\n    task: 2afc\n    graduation: {}\n',
     r'5: steps\[0\].graduation: has none of trials, accuracy, sessions'),
    ('window with trials', 'name: x\nsteps:\n  - name: a\n    task: 2afc\n    graduation:\n      trials: 5\n'
     '      window: 3\n',
     r"7: steps\[0\].graduation.window: 'window' does not go with 'trials'"),
    ('unknown graduation key', 'name: x\nsteps:\n  - name: a\n    task: 2afc\n    graduation: {trails: 5}\n',
     r"5: steps\[0\].graduation: unknown key 'trails' in graduation .*: did you mean 'trials'\?"),
    ('trials zero', 'name: x\nsteps:\n  - name: a\n    task: 2afc\n    graduation: {trials: 0}\n',
     r'5: steps\[0\].graduation.trials: 0 is out of range, allowed int >= 1'),
    ('sessions not an int', 'name: x\nsteps:\n  - name: a\n    task: 2afc\n    graduation: {sessions: 1.5}\n',
     r"5: steps\[0\].graduation.sessions: expected an integer >= 1, got '1.5'"),
    ('graduation not a mapping', 'name: x\nsteps:\n  - name: a\n    task: 2afc\n    graduation: 50\n',
     r'5: steps\[0\].graduation: graduation .* must be a mapping'),
    ('accuracy on a task that does not score', 'name: x\nsteps:\n  - name: a\n    task: free_water\n'
     '    graduation: {accuracy: 0.8, window: 10}\n',
     r"5: steps\[0\].graduation.accuracy: task 'free_water' does not score its trials"),
    ('two documents', 'name: x\n---\nname: y\n', r'2: malformed YAML: expected a single document'),
    ('control character', 'name: x\nsteps: \x07\n', r'2: malformed YAML: unacceptable character'),
]


@pytest.mark.parametrize('text,expected', [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_errors_name_line_and_field(text: str, expected: str) -> None:
    exc = error(text)
    assert re.match(r'protocols/2afc\.yaml:' + expected, str(exc)), str(exc)
    assert exc.source == 'protocols/2afc.yaml' and exc.line >= 1


def test_error_attributes() -> None:
    exc = error('name: x\nsteps:\n  - name: a\n    task: 2afc\n    graduation: {accuracy: 1.5, window: 5}\n')
    assert (exc.line, exc.path) == (5, 'steps[0].graduation.accuracy')
    assert exc.message == '1.5 is out of range, allowed float in (0, 1]'
    assert isinstance(exc, ValueError)


def test_a_broken_task_package_is_a_protocol_error() -> None:
    def broken(name: str) -> type[Task]:
        raise ImportError('No module named numpyy')

    with pytest.raises(ProtocolError, match=r"^<string>:1: steps\[0\].task: cannot load task 'a': ImportError: "
                                            'No module named numpyy$'):
        load_protocol('{name: x, steps: [{name: s, task: a}]}', lookup_task=broken)


# ------------------------------------------------------------------------------------------- properties

_ANY_TEXT = st.text(max_size=80) | st.sampled_from([
    '[' * 1000, '{' * 1000 + '}' * 1000, 'a: &x [*x]', 'steps: &x [*x]', 'name: !!binary zz',
    'name: !!python/object:os.system x', '!!set {a}', 'steps: [{name: a, task: !custom x}]', '? [a]\n: b',
    'steps:\n  - name: a\n    task: 2afc\n    parameters: {reward_ul: &x [*x]}', '<<: 5', '"\\x', '%YAML 9.9\n---\na',
])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ANY_TEXT)
def test_any_text_gives_a_protocol_or_a_protocol_error(text: str) -> None:
    try:
        load_protocol(text, lookup_task=lookup)
    except ProtocolError as exc:
        assert '\n' not in str(exc) and exc.line >= 1


_keys = st.sampled_from(['name', 'description', 'steps', 'task', 'parameters', 'graduation', 'trials',
                         'accuracy', 'window', 'sessions', 'reward_ul', 'correction_trials', 'mode', 'x'])
_scalars = (st.none() | st.booleans() | st.integers(-5, 200) | st.floats(allow_nan=True) | st.text(max_size=6)
            | st.sampled_from(['2afc', 'free_water', 'left', 'a', 'b']))
_yamlish = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5),
                        max_leaves=25)
_step = st.fixed_dictionaries(
    {'name': st.sampled_from(['a', 'b', 'c']) | _scalars,
     'task': st.sampled_from(['2afc', 'free_water']) | _yamlish},
    optional={'parameters': st.dictionaries(_keys, _scalars, max_size=3) | _yamlish,
              'graduation': st.dictionaries(_keys, _scalars, max_size=2) | _yamlish})
_doc = st.fixed_dictionaries({'name': st.just('p') | _scalars, 'steps': st.lists(_step, min_size=1, max_size=4)},
                             optional={'description': _scalars}) | _yamlish


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_doc, st.booleans())
def test_yaml_shaped_junk_gives_a_protocol_or_a_protocol_error(doc: Any, flow: bool) -> None:
    text = yaml.safe_dump(doc, default_flow_style=flow, allow_unicode=True)
    try:
        p = load_protocol(text, lookup_task=lookup)
    except ProtocolError as exc:
        assert '\n' not in str(exc) and 1 <= exc.line <= text.count('\n') + 1
    else:
        assert p.steps and all(s.task in (Water, Choice) for s in p.steps)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_valid_file_gives_a_protocol_or_a_protocol_error(data: st.DataObject) -> None:
    text = textwrap.dedent(GOOD)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 6))
        insert = data.draw(st.text(alphabet=' \n:-{}[],#&*!|>\'"0123456789.abc\t', max_size=4))
        text = text[:at] + insert + text[at + cut:]
    try:
        load_protocol(text, lookup_task=lookup)
    except ProtocolError as exc:
        assert '\n' not in str(exc) and exc.line >= 1


# ------------------------------------------------------------------------------------------- graduation

def _trials(*scores: bool | None, correction_at: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    return [{'correct': s, 'correction': i in correction_at} for i, s in enumerate(scores)]


def test_trials_graduation() -> None:
    g = TrialsGraduation(3)
    assert g.check([], 0) is None and g.check(_trials(True, False), 5) is None
    assert g.check(_trials(True, False, None), 0) == '3 trials >= 3 in this step'
    assert str(g) == 'after 3 trials'


def test_sessions_graduation() -> None:
    g = SessionsGraduation(2)
    assert g.check(_trials(True) * 100, 1) is None
    assert g.check([], 2) == '2 sessions >= 2 in this step'
    assert g.check([], 3) == '3 sessions >= 2 in this step'


def test_accuracy_graduation_window_and_exact_threshold() -> None:
    g = AccuracyGraduation(0.8, 5)
    assert g.check(_trials(True, True, True, True), 0) is None  # fewer scored trials than the window
    assert g.check(_trials(True, True, True, True, False), 0) == \
        'accuracy 0.80 >= 0.80 over the last 5 scored trials'  # 4/5 is exactly 0.8: passes
    assert g.check(_trials(True, True, True, False, False), 0) is None
    # only the last 5 count: early errors are forgotten
    assert g.check(_trials(False, False, False, True, True, True, True, True), 0) == \
        'accuracy 1.00 >= 0.80 over the last 5 scored trials'
    assert g.check(_trials(True, True, True, True, True, False, False), 0) is None
    # 0.7 * 10 is not 7 in floats; the comparison is exact
    assert AccuracyGraduation(0.7, 10).check(_trials(*[True] * 7, *[False] * 3), 0) is not None
    assert AccuracyGraduation(0.825, 40).check(_trials(*[True] * 33, *[False] * 7), 0) == \
        'accuracy 0.825 >= 0.825 over the last 40 scored trials'


def test_accuracy_leaves_out_correction_and_unscored_trials() -> None:
    g = AccuracyGraduation(0.75, 4)
    # Errors on correction trials (2, 3) and trials without a bool score (None, 1, missing) are not scored.
    history = _trials(True, True, False, False, None, True, correction_at=(2, 3))
    history += [{'correct': 1, 'correction': False}, {'correction': False}]
    assert g.check(history, 0) is None  # 3 scored trials < window 4
    history += _trials(False)
    # scored: T T T F -> 0.75; had the correction trials counted, the last 4 would be F F T F
    assert g.check(history, 0) == 'accuracy 0.75 >= 0.75 over the last 4 scored trials'
    # correct correction trials do not help either
    assert g.check(_trials(True, True, True, True, correction_at=(0, 1, 2, 3)), 0) is None
    # a task's own score_excludes fields work the same way
    g2 = AccuracyGraduation(0.5, 2, 'hit', ('correction', 'probe'))
    assert g2.check([{'hit': True, 'probe': True}, {'hit': False}, {'hit': True}], 0) == \
        'accuracy 0.50 >= 0.50 over the last 2 scored trials'
    assert g2.check([{'hit': False}, {'hit': True, 'probe': True}, {'hit': False}], 0) is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=60), st.integers(1, 20),
       st.floats(0.01, 1.0))
def test_accuracy_matches_a_plain_count(trials: list[tuple[bool, bool]], window: int, accuracy: float) -> None:
    history = [{'correct': c, 'correction': k} for c, k in trials]
    scored = [c for c, k in trials if not k]
    reason = AccuracyGraduation(accuracy, window).check(history, 0)
    if len(scored) < window:
        assert reason is None
        return
    hits = sum(scored[-window:])
    if hits > accuracy * window + 1e-9:
        assert reason is not None and reason.endswith(f'over the last {window} scored trials')
    elif hits < accuracy * window - 1e-9:
        assert reason is None


# ------------------------------------------------------------------------------------------- files

def test_shipped_example_loads_with_the_registered_tasks() -> None:
    from autopilot_tasks import registry

    path = ROOT / 'protocols' / '2afc_training.yaml'
    p = load_protocol_file(path)  # default lookup: the registry
    assert p.name == '2afc_training' and p.source == str(path)
    assert [s.task for s in p.steps] == [registry.lookup('free_water'), registry.lookup('2afc'),
                                        registry.lookup('2afc')]
    assert isinstance(p.steps[0].graduation, TrialsGraduation)
    acc = p.steps[1].graduation
    assert isinstance(acc, AccuracyGraduation) and 'correction' in acc.excludes
    assert acc.score_field == registry.lookup('2afc').score_field
    assert p.steps[1].parameters['correction_trials'] is True and p.steps[2].parameters['correction_trials'] is False
    assert p.steps[2].graduation is None
    assert find_protocol('2afc_training', ROOT / 'protocols', lookup_task=registry.lookup) == p


def test_protocol_directory(tmp_path: Path) -> None:
    (tmp_path / 'shaping.yaml').write_text('steps: [{name: a, task: free_water}]\n')
    (tmp_path / 'other.yml').write_text('name: called_so\nsteps: [{name: a, task: 2afc}]\n')
    (tmp_path / 'notes.txt').write_text('')
    (tmp_path / 'broken.yaml').write_text('steps:\n  - name: a\n    task: 2afc\n    graduation: {trials: -1}\n')
    assert list(list_protocols(tmp_path)) == ['broken', 'other', 'shaping']
    assert list_protocols(tmp_path / 'missing') == {}
    p = find_protocol('shaping', tmp_path, lookup_task=lookup)
    assert p.name == 'shaping' and p.steps[0].task is Water  # the name defaults to the file's stem
    assert find_protocol('other', tmp_path, lookup_task=lookup).name == 'called_so'
    with pytest.raises(ProtocolError, match=r"unknown protocol 'shapin': did you mean 'shaping'\? "
                                            'available: broken, other, shaping'):
        find_protocol('shapin', tmp_path, lookup_task=lookup)
    with pytest.raises(ProtocolError, match=r"invalid protocol name '\.\./etc/passwd'"):
        find_protocol('../etc/passwd', tmp_path, lookup_task=lookup)
    with pytest.raises(ProtocolError, match=r'broken\.yaml:4: steps\[0\]\.graduation\.trials: -1 is out of range'):
        find_protocol('broken', tmp_path, lookup_task=lookup)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError, match=r'missing\.yaml: cannot read protocol file: No such file'):
        load_protocol_file(tmp_path / 'missing.yaml', lookup_task=lookup)
    bad = tmp_path / 'latin1.yaml'
    bad.write_bytes(b'name: caf\xe9\n')
    with pytest.raises(ProtocolError, match=r'latin1\.yaml: not UTF-8 text'):
        load_protocol_file(bad, lookup_task=lookup)
