"""Task plot declarations (autopilot_tasks.plot): checks at class creation, default_plot, JSON round trip."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autopilot_core import trial_fields
from autopilot_tasks import registry
from autopilot_tasks.plot import (
    Line,
    Plot,
    Points,
    Psychometric,
    RollingMean,
    Shade,
    TrialTimes,
    default_plot,
    kind_of,
)
from autopilot_tasks.task import Event, Field, Task


def make_task(plot: object, **fields: Field) -> type[Task]:
    """A task class named Probe with ``fields`` and ``plot``: class creation runs the checks."""

    def only(self: Task, event: Event) -> None:
        """The one stage."""

    return type('Probe', (Task,), {**fields, 'plot': plot, 'stages': ('only',), 'only': only})


FIELDS = dict(level=Field(float, '', 'Stimulus level'), response=Field(str), correct=Field(bool),
              correction=Field(bool), rt_ms=Field(float, 'ms'), n=Field(int))


def test_a_full_declaration_validates() -> None:
    plot = Plot(Points('response', y={'left': 0, 'right': 1}, color_by='correct'),
                RollingMean('correct', window=30, chance=0.5, skip='correction'), Shade('correction'),
                Line('rt_ms'), Line('n'), Psychometric('level', 'response', 'right'), TrialTimes(), title='t')
    task = make_task(plot, **FIELDS)
    assert task.plot_spec() is plot
    assert make_task(Plot(Psychometric('level', choice='correct', positive=True)), **FIELDS)


@pytest.mark.parametrize('element, words', [
    (Line('missing'), ["Line('missing')", "field 'missing' is not a trial field", 'level, response']),
    (Line('response'), ["field 'response' has type str, needs int or float"]),
    (RollingMean('response'), ["RollingMean('response')", 'has type str, needs bool or int or float']),
    (RollingMean('correct', skip='rt_ms'), ["skip 'rt_ms' has type float, needs bool"]),
    (RollingMean('correct', chance=2.0), ['chance of a bool field is a fraction in [0, 1]']),
    (Shade('n'), ["Shade('n')", "field 'n' has type int, needs bool"]),
    (Points('correct', y={'True': 1}), ["field 'correct' has type bool, needs str"]),
    (Points('response', color_by='rt_ms'), ["color_by 'rt_ms' has type float, needs bool or str"]),
    (Psychometric('response'), ["level 'response' has type str"]),
    (Psychometric('level', choice='correct'), ["positive 'right' is not a value of the bool field 'correct'"]),
    (Psychometric('level', positive=True), ["positive True is not a value of the str field 'response'"]),
])
def test_errors_name_the_task_element_and_field(element: object, words: list[str]) -> None:
    with pytest.raises(TypeError) as err:
        make_task(Plot(TrialTimes(), element), **FIELDS)  # type: ignore[arg-type]
    assert str(err.value).startswith('Probe: plot element ')
    for word in words:
        assert word in str(err.value)


def test_plot_must_be_a_plot() -> None:
    with pytest.raises(TypeError, match=r'Probe: plot must be a Plot\(\.\.\.\)'):
        make_task({'data': {'target': 'point'}}, **FIELDS)


@pytest.mark.parametrize('build, words', [
    (lambda: Line('not a name'), 'Line field must be a field name'),
    (lambda: Line(3), 'Line field must be a field name'),
    (lambda: RollingMean('x', window=0), r'window must be an int in \[1, 100000\]'),
    (lambda: RollingMean('x', window=True), 'window must be an int'),
    (lambda: RollingMean('x', chance=math.nan), 'chance must be a finite number'),
    (lambda: Points('x', y={}), 'Points y must map 1 to 64 values'),
    (lambda: Points('x', y={1: 0}), "keys are the str field's values"),
    (lambda: Points('x', y={'a': 'high'}), r"Points y\['a'\] must be a finite number"),
    (lambda: Psychometric('x', positive=1), 'positive must be a str or bool'),
    (lambda: Plot(), 'Plot takes 1 to 32 elements, got 0'),
    (lambda: Plot('points'), 'Plot elements are Points, RollingMean'),
    (lambda: Plot(Line('x'), window=-1), 'Plot window'),
    (lambda: Plot(Line('x'), title=None), 'Plot title'),
])
def test_bad_arguments_fail_at_construction(build, words: str) -> None:
    with pytest.raises(TypeError, match=words):
        build()


def test_inherited_plot_is_checked_again_in_a_subclass() -> None:
    base = make_task(Plot(Shade('correction')), **FIELDS)
    with pytest.raises(TypeError, match="Derived: plot element Shade.*'correction' is not a trial field"):
        type('Derived', (base,), {'correction': None})


def test_elements_are_frozen_and_hashable() -> None:
    points = Points('response', y={'left': 0}, color_by='correct')
    with pytest.raises(AttributeError):
        points.field = 'x'  # type: ignore[misc]
    with pytest.raises(TypeError):
        points.y['right'] = 1  # type: ignore[index]
    assert hash(points) == hash(Points('response', y={'left': 0.0}, color_by='correct'))
    assert points == Points('response', y={'left': 0.0}, color_by='correct')


def test_kind_of_reads_python_types_type_codes_and_stored_names() -> None:
    for tp, kind in [(bool, 'bool'), (int, 'int'), (float, 'float'), (str, 'str')]:
        assert kind_of(tp) == kind
        assert kind_of(trial_fields.CODE_OF[tp]) == kind  # the TrialField constants, not copies going stale
        assert kind_of(trial_fields.TYPE_NAMES[trial_fields.CODE_OF[tp]]) == kind
    for other in (True, 0, 5, 'int', list, [], None):
        assert kind_of(other) is None


# ---- default_plot -----------------------------------------------------------------------------------------


def codes(*fields: tuple[str, type, str]) -> list[tuple[str, object, str]]:
    """As the Terminal has them from TrialData: type codes, not Python types."""
    return [(name, trial_fields.CODE_OF[tp], unit) for name, tp, unit in fields]


def test_default_for_a_two_choice_task() -> None:
    fields = codes(('target', str, ''), ('response', str, ''), ('correct', bool, ''), ('correction', bool, ''),
                   ('rt_ms', float, 'ms'), ('p_left', float, ''))
    plot = default_plot(fields, title='2afc')
    assert plot == Plot(Points('response', color_by='correct'), RollingMean('correct', skip='correction'),
                        Shade('correction'), Line('rt_ms'), TrialTimes(), title='2afc')
    assert plot.check({name: tp for name, tp, _ in fields}) is None


@pytest.mark.parametrize('fields, expected', [
    ([], [TrialTimes()]),
    ([('correct', bool, '')], [Points('correct', color_by='correct'), RollingMean('correct'), TrialTimes()]),
    ([('port', str, ''), ('rewarded', bool, ''), ('latency_ms', float, 'ms'), ('wrong_pokes', int, '')],
     [Points('port', color_by='rewarded'), RollingMean('rewarded'), Line('latency_ms'), TrialTimes()]),
    ([('n_pokes', int, ''), ('label', str, '')], [Line('n_pokes'), TrialTimes()]),
    ([('a_s', float, 's'), ('b_us', int, 'us'), ('c_ns', int, 'ns'), ('d_ms', float, 'ms')],
     [Line('a_s'), Line('b_us'), Line('c_ns'), TrialTimes()]),
    ([('timeout', bool, ''), ('choice', str, '')], [Points('choice'), Shade('timeout'), TrialTimes()]),
])
def test_default_for_various_fields(fields: list, expected: list) -> None:
    assert default_plot(codes(*fields)).elements == tuple(expected)
    assert default_plot(fields).elements == tuple(expected)  # Python types give the same


def test_default_skips_what_it_cannot_read() -> None:
    assert default_plot([('x', 99, ''), ('not a name', 1, ''), ('y', 'float64', None)]).elements == (
        Line('y'), TrialTimes())


def test_tasks_without_a_plot_get_the_default() -> None:
    task = make_task(None, **FIELDS)
    assert task.plot_spec() == default_plot([(n, f.type, f.unit) for n, f in FIELDS.items()], title='Probe')


def test_every_registered_task_declares_a_plot_that_fits() -> None:
    plugins = registry.load_tasks()
    assert {'2afc', 'free_water', 'echo'} <= {p.name for p in plugins}
    for plugin in plugins:
        assert plugin.cls is not None, plugin.error
        plot = plugin.cls.plot_spec()
        assert plot.check({name: f.type for name, f in plugin.cls.fields().items()}) is None
        assert Plot.from_dict(json.loads(json.dumps(plot.to_dict()))) == plot


# ---- to_dict / from_dict ----------------------------------------------------------------------------------

names = st.from_regex(r'[a-z_][a-z0-9_]{0,20}', fullmatch=True)
numbers = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10**6, 10**6)
elements = st.one_of(
    st.builds(Points, names, st.none() | st.dictionaries(st.text(max_size=10), numbers, min_size=1, max_size=5),
              st.none() | names),
    st.builds(RollingMean, names, st.integers(1, 100_000), st.none() | numbers, st.none() | names),
    st.builds(Line, names),
    st.builds(Shade, names),
    st.builds(Psychometric, names, names, st.text(max_size=10) | st.booleans()),
    st.just(TrialTimes()),
)
plots = st.builds(lambda els, title, window: Plot(*els, title=title, window=window),
                  st.lists(elements, min_size=1, max_size=8), st.text(max_size=50), st.integers(1, 100_000))


@given(plots)
def test_json_round_trip(plot: Plot) -> None:
    text = json.dumps(plot.to_dict(), allow_nan=False)
    again = Plot.from_dict(json.loads(text))
    assert again == plot
    assert again.to_dict() == plot.to_dict()


@pytest.mark.parametrize('data, words', [
    ([], 'a plot is a mapping, got list'),
    ({'elements': [], 'colour': 'red'}, "unknown keys [\"'colour'\"]"),
    ({'elements': 'line'}, 'plot elements must be a list'),
    ({'elements': [{'kind': 'line', 'field': 'x'}] * 33}, 'plot elements must be a list of at most 32'),
    ({'elements': []}, 'plot: Plot takes 1 to 32 elements, got 0'),
    ({'elements': [3]}, 'plot element 0 is a mapping, got int'),
    ({'elements': [{'kind': 'bar', 'field': 'x'}]}, "plot element 0: unknown kind 'bar'; kinds: points"),
    ({'elements': [{'kind': ['line']}]}, "unknown kind ['line']"),
    ({'elements': [{'field': 'x'}]}, 'unknown kind None'),
    ({'elements': [{'kind': 'line'}]}, "plot element 0 (line): .*missing 1 required positional argument: 'field'"),
    ({'elements': [{'kind': 'line', 'field': 'x', 'unit': 'ms'}]}, "plot element 0 (line): unknown keys"),
    ({'elements': [{'kind': 'line', 'field': 'x; rm -rf'}]}, 'plot element 0 (line): Line field must be'),
    ({'elements': [{'kind': 'line', 'field': 'x' * 65}]}, 'Line field must be a field name'),
    ({'elements': [{'kind': 'rolling_mean', 'field': 'x', 'window': 1.5}]}, 'window must be an int'),
    ({'elements': [{'kind': 'rolling_mean', 'field': 'x', 'chance': 10**400}]}, 'chance must be a finite number'),
    ({'elements': [{'kind': 'rolling_mean', 'field': 'x', 'chance': '0.5'}]}, 'chance must be a finite number'),
    ({'elements': [{'kind': 'points', 'field': 'x', 'y': [0, 1]}]}, 'Points y must map'),
    ({'elements': [{'kind': 'points', 'field': 'x', 'y': {str(i): i for i in range(65)}}]}, 'Points y must map'),
    ({'elements': [{'kind': 'trial_times', 'field': 'x'}]}, 'plot element 0 (trial_times): unknown keys'),
    ({'elements': [{'kind': 'line', 'field': 'x'}], 'window': 10**9}, 'plot: Plot window'),
    ({'elements': [{'kind': 'line', 'field': 'x'}], 'title': 'x' * 201}, 'plot: Plot title'),
])
def test_from_dict_refuses_hostile_input(data: object, words: str) -> None:
    with pytest.raises(ValueError) as err:
        Plot.from_dict(data)
    if '.*' in words:
        assert all(part in str(err.value) for part in words.split('.*'))
    else:
        assert words in str(err.value)


@given(st.recursive(st.none() | st.booleans() | numbers | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=3), max_leaves=20))
def test_from_dict_of_any_json_is_a_plot_or_value_error(data: object) -> None:
    for candidate in (data, {'elements': data}, {'elements': [data]},
                      {'elements': [{'kind': 'points', 'field': 'x', 'y': data}]}):
        try:
            plot = Plot.from_dict(candidate)
        except ValueError:
            continue
        assert Plot.from_dict(plot.to_dict()) == plot
