"""Stimulus sets and the stimulus manager (autopilot_tasks.stimuli), without ROS: parsing hostile input,
proportions and weights drawn as declared, correction trials, and both bias correction modes (the clipped one
against 2AFC's own rule)."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot_tasks.stimuli import BiasCorrection, Draw, Stimulus, StimulusManager, StimulusSet

TONES = {
    'groups': {
        'left': [{'id': 'tone_4k', 'kind': 'tone', 'frequency_hz': 4000, 'duration_ms': 200, 'level': -1.0},
                 {'id': 'tone_6k', 'kind': 'tone', 'frequency_hz': 6000, 'duration_ms': 200, 'weight': 3,
                  'level': -0.5}],
        'right': [{'id': 'tone_12k', 'kind': 'tone', 'frequency_hz': 12000, 'duration_ms': 200, 'level': 1.0}],
    },
    'proportions': {'left': 1, 'right': 3},
}


def within(count: int, n: int, p: float) -> bool:
    """``count`` of ``n`` draws is within 4.5 standard deviations of ``n p`` (a false alarm 1 in 150,000)."""
    return abs(count - n * p) <= 4.5 * math.sqrt(n * p * (1 - p)) + 1


def test_a_set_reads_its_groups_proportions_weights_levels_and_writes_them_back() -> None:
    s = StimulusSet.from_dict(TONES)
    assert list(s.groups) == ['left', 'right']
    assert s.probabilities() == {'left': 0.25, 'right': 0.75}
    six = s.groups['left'][1]
    assert (six.id, six.group, six.weight, six.level) == ('tone_6k', 'left', 3.0, -0.5)
    assert dict(six.spec) == {'kind': 'tone', 'frequency_hz': 6000.0, 'duration_ms': 200.0}
    assert StimulusSet.from_dict(s.to_dict()) == s
    assert [x.id for x in s.stimuli()] == ['tone_4k', 'tone_6k', 'tone_12k']


@pytest.mark.parametrize(('data', 'message'), [
    ([], 'a stimulus set is a mapping'),
    ({'groups': {}}, 'groups must map each group'),
    ({'groups': {'left': []}}, "group 'left': a non-empty list"),
    ({'groups': {'left': 'tone'}}, "group 'left': a non-empty list"),
    ({'groups': {'9left': [{'id': 'a'}]}}, "'9left' is not a name"),
    ({'groups': {'left': [{'id': 'a b'}]}}, "'a b' is not a name"),
    ({'groups': {'left': [{'id': 'a'}], 'right': [{'id': 'a'}]}}, "id 'a' is used twice"),
    ({'groups': {'left': [{'id': 'a', 'weight': 0}]}}, 'weight: 0 is out of range (> 0)'),
    ({'groups': {'left': [{'id': 'a', 'weight': math.nan}]}}, 'is not a finite number'),
    ({'groups': {'left': [{'id': 'a', 'level': '3'}]}}, "level: '3' is not a finite number"),
    ({'groups': {'left': [{'id': 'a', 'frequency_hz': 1e400}]}}, 'is not a finite number'),
    ({'groups': {'left': [{'id': 'a', 'path': 'x' * 300}]}}, 'a text of 300 characters'),
    ({'groups': {'left': [{'id': 'a', 'nested': {'b': 1}}]}}, 'dict is not a number, text or true/false'),
    ({'groups': {'left': [{'id': 'a'}]}, 'proportions': {'right': 1}}, "'right' is not a group"),
    ({'groups': {'left': [{'id': 'a'}]}, 'proportions': {'left': 0}}, 'the proportions are all 0'),
    ({'groups': {'left': [{'id': 'a'}]}, 'proportions': {'left': -1}}, 'out of range'),
    ({'groups': {'left': [{'id': 'a'}]}, 'extra': 1}, "unknown key 'extra'"),
    ({'groups': {f'g{i}': [{'id': f's{i}'}] for i in range(17)}}, '17 groups (at most 16)'),
    ({'groups': {'left': [{'id': f's{i}'} for i in range(300)]}}, 'more than 256 stimuli'),
])
def test_a_malformed_set_is_refused_with_what_is_wrong(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        StimulusSet.from_dict(data)
    assert message in str(info.value), str(info.value)


json_like = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
                         lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                     max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_like, st.fixed_dictionaries({'groups': json_like}),
                 st.fixed_dictionaries({'groups': st.dictionaries(st.sampled_from(['left', 'right', '']),
                                                                  st.lists(json_like, max_size=3), max_size=2)})))
def test_property_any_input_is_a_set_or_a_value_error(data: object) -> None:
    try:
        s = StimulusSet.from_dict(data)
    except ValueError:
        return
    assert StimulusSet.from_dict(s.to_dict()) == s


def test_groups_come_in_their_proportions_and_stimuli_by_weight() -> None:
    s = StimulusSet.from_dict(TONES)
    m = StimulusManager(s, random.Random(1))
    draws = [m.next([]) for _ in range(20_000)]
    assert within(sum(d.group == 'right' for d in draws), 20_000, 0.75)
    lefts = [d for d in draws if d.group == 'left']
    assert within(sum(d.stimulus.id == 'tone_6k' for d in lefts), len(lefts), 0.75)
    assert {d.reason for d in draws} == {'random'} and {d.p for d in draws} == {0.25, 0.75}


def trial(draw: Draw, response: str) -> dict:
    return {**draw.fields(), 'response': response, 'correct': response == draw.group,
            'correction': draw.correction}


@pytest.mark.parametrize('p', [0.0, 0.5, 1.0])
def test_correction_trials_start_with_their_probability_and_last_until_correct(p: float) -> None:
    s = StimulusSet.from_dict({'groups': {'left': [{'id': 'l'}], 'right': [{'id': 'r'}]}})
    m = StimulusManager(s, random.Random(2), correction_p=p)
    rng = random.Random(3)
    history: list[dict] = []
    started = errors = 0
    for _ in range(4000):
        d = m.next(history)
        last = history[-1] if history else None
        if last is not None and not last['correct'] and last['response'] != 'none' and not last['correction']:
            errors += 1
            started += d.correction
        if last is not None and last['correction'] and not last['correct']:
            assert d.correction and d.stimulus.id == last['stim']  # a run goes on until a correct response
        if last is not None and last['correct']:
            assert not d.correction
        history.append(trial(d, rng.choice(['left', 'right', 'none'])))
    assert within(started, errors, p) if 0 < p < 1 else started == (errors if p else 0)


def test_a_trial_without_a_response_neither_starts_nor_ends_a_run() -> None:
    s = StimulusSet.from_dict({'groups': {'left': [{'id': 'l'}], 'right': [{'id': 'r'}]}})
    m = StimulusManager(s, random.Random(4), correction_p=1.0)
    first = m.next([])
    assert not m.next([trial(first, 'none')]).correction
    wrong = 'right' if first.group == 'left' else 'left'
    run = m.next([trial(first, wrong)])
    assert run.correction and run.stimulus == first.stimulus and run.p == 1.0
    assert m.next([trial(first, wrong), trial(run, 'none')]).correction


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(['left', 'right', 'none']), st.booleans()), max_size=60),
       st.integers(1, 40), st.floats(0.0, 0.5))
def test_property_clipped_bias_is_2afcs_rule(answers: list[tuple[str, bool]], window: int, limit: float) -> None:
    """The clipped mode is the rule 2AFC documents: p_left = the fraction of right responses over the last
    ``bias_window`` non-correction trials with a response, clipped to [bias_limit, 1 - bias_limit]."""
    rights = [r == 'right' for r, c in answers if not c and r != 'none'][-window:]
    expected = min(max(sum(rights) / len(rights), limit), 1 - limit) if rights else 0.5
    base = {'left': 0.5, 'right': 0.5}
    recent = [r for r, c in answers if not c and r != 'none']
    got = BiasCorrection('clipped', window=window, limit=limit).probabilities(base, ['left'] * len(recent), recent)
    assert got['left'] == pytest.approx(expected, abs=1e-12)
    assert sum(got.values()) == pytest.approx(1.0)


def test_thresholded_linear_leans_against_a_bias_only_beyond_its_threshold() -> None:
    bias = BiasCorrection('thresholded_linear', window=100, threshold=0.2)
    base = {'left': 0.5, 'right': 0.5}
    targets = ['left', 'right'] * 50
    # 65 % right answers for 50 % right targets: 0.15 is within the threshold.
    assert bias.probabilities(base, targets, ['right'] * 65 + ['left'] * 35) == base
    # 80 % right: 0.3 over, so right comes up 0.3 less and left 0.3 more.
    p = bias.probabilities(base, targets, ['right'] * 80 + ['left'] * 20)
    assert p['left'] == pytest.approx(0.8) and p['right'] == pytest.approx(0.2)
    # Only the last `window` trials count, and a group with proportion 0 stays at 0.
    assert BiasCorrection('thresholded_linear', window=10).probabilities(
        base, targets, ['right'] * 90 + ['left', 'right'] * 5) == base
    three = {'a': 0.5, 'b': 0.5, 'c': 0.0}
    p = bias.probabilities(three, ['a', 'b'] * 50, ['a'] * 100)
    assert p['c'] == 0.0 and p['b'] > p['a'] and sum(p.values()) == pytest.approx(1.0)


def test_a_biased_animal_gets_fewer_targets_on_its_side_and_the_draw_says_why() -> None:
    s = StimulusSet.from_dict({'groups': {'left': [{'id': 'l'}], 'right': [{'id': 'r'}]}})
    m = StimulusManager(s, random.Random(5), bias=BiasCorrection('clipped', window=20, limit=0.1))
    history: list[dict] = []
    for _ in range(2000):
        d = m.next(history)
        history.append(trial(d, 'right'))  # always answers right
    later = history[100:]
    assert within(sum(t['stim_group'] == 'left' for t in later), len(later), 0.9)
    assert {t['stim_reason'] for t in later} == {'bias'}


def test_draw_fields_are_the_trial_data_a_task_records() -> None:
    d = Draw(Stimulus('tone_6k', 'left', {'kind': 'tone', 'frequency_hz': 6000.0}, 3.0, -0.5), 'bias', 0.7)
    assert d.fields() == {'stim': 'tone_6k', 'stim_group': 'left', 'stim_level': -0.5, 'stim_reason': 'bias',
                          'stim_p': 0.7, 'stim_params': '{"frequency_hz":6000.0,"kind":"tone"}'}
    assert json.loads(d.fields()['stim_params']) == {'kind': 'tone', 'frequency_hz': 6000.0}
    assert math.isnan(Draw(Stimulus('x', 'go'), 'random', 1.0).fields()['stim_level'])


@pytest.mark.parametrize(('kwargs', 'message'), [
    ({'mode': 'linear'}, "mode 'linear': one of none, clipped, thresholded_linear"),
    ({'window': 0}, 'window 0: trials, 1 to 10000'),
    ({'window': True}, 'window True'),
    ({'limit': 0.6}, 'limit: 0.6 is out of range'),
    ({'threshold': math.nan}, 'threshold: nan is not a finite number'),
])
def test_bias_correction_refuses_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as info:
        BiasCorrection(**kwargs)
    assert message in str(info.value)
