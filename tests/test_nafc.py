"""N-AFC on the fake rig (no ROS): each port's stimulus set, request rewards, punishment and timeout,
correction trials, bias correction over N ports, what is recorded, and a four-port subclass."""

from __future__ import annotations

import json
import math

import pytest

from autopilot_pilot.fakes import FakeRig
from autopilot_tasks.task import Input, Output, TaskError
from autopilot_tasks.tasks.nafc import NAFC, tone

FAST = {'response_window_s': 1.0, 'punish_timeout_s': 0.5, 'iti_s': 0.2, 'correction_p': 0.0, 'bias_mode': 'none'}


def run_trial(rig: FakeRig, port: str | None, *, hold_s: float = 0.05, rt_s: float = 0.2) -> dict:
    """A centre poke, then a poke at ``port`` (None: no response); the finished trial's fields."""
    n = len(rig.trials)
    rig.poke('center', hold_s=hold_s)
    if port is not None:
        rig.advance(rt_s)
        rig.poke(port, hold_s=0.05)
    for _ in range(100):
        if len(rig.trials) > n:
            break
        rig.advance(0.1)
    return rig.trials[-1].fields


def two_sets() -> dict:
    """Two sounds per port, the right port twice as often."""
    return {'groups': {'left': [tone('low_a', 4000.0), tone('low_b', 5000.0)],
                       'right': [tone('high_a', 12000.0), tone('high_b', 14000.0)]},
            'proportions': {'left': 1.0, 'right': 2.0}}


@pytest.mark.parametrize('request_ul', [0.0, 2.0])
def test_a_correct_response_pays_its_port_and_a_request_reward_pays_the_centre(request_ul: float) -> None:
    rig = FakeRig(NAFC, {**FAST, 'request_reward_ul': request_ul, 'stimuli': two_sets()}, seed=2)
    rig.start()
    assert rig.stage == 'wait_center' and ('set', 'center_led', True) in rig.hw.calls
    target = rig.task.stim_group
    f = run_trial(rig, target)
    assert f['correct'] and f['response'] == target and f['reward_given_ul'] == 5.0
    rewards = rig.hw.of('reward')
    assert rewards == ([('reward', 'center_valve', 2.0)] if request_ul else []) + [('reward', f'{target}_valve', 5.0)]
    assert f['request_given_ul'] == request_ul
    assert f['rt_ms'] == pytest.approx(200.0, abs=0.5)          # centre out -> port in
    assert f['stim'] in {'low_a', 'low_b', 'high_a', 'high_b'} and f['stim_reason'] == 'random'
    assert json.loads(f['stim_params'])['kind'] == 'tone' and math.isnan(f['stim_level'])
    assert [c[1] for c in rig.hw.of('play')] == [f['stim']] and not rig.errors


def test_a_wrong_response_plays_noise_and_times_out_and_no_response_is_none() -> None:
    rig = FakeRig(NAFC, {**FAST, 'punish_timeout_s': 2.0}, seed=4)
    rig.start()
    target = rig.task.stim_group
    wrong = 'left' if target == 'right' else 'right'
    rig.poke('center', hold_s=0.0)
    rig.advance(0.1)
    rig.poke(wrong, hold_s=0.0)
    assert rig.stage == 'punish' and rig.hw.of('play')[-1][1] == 'noise'
    rig.advance(1.99)
    assert len(rig.trials) == 0
    rig.advance(0.02)
    f = rig.trials[0].fields
    assert (f['response'], f['correct'], f['reward_given_ul']) == (wrong, False, 0.0)
    f = run_trial(rig, None)
    assert f['response'] == 'none' and not f['correct'] and math.isnan(f['rt_ms'])
    assert not rig.hw.of('reward')


def test_each_port_comes_up_in_its_proportion_with_each_of_its_sounds() -> None:
    rig = FakeRig(NAFC, {**FAST, 'stimuli': two_sets()}, seed=5)
    rig.start()
    for _ in range(300):
        run_trial(rig, 'left')
    groups = [t.fields['stim_group'] for t in rig.trials]
    assert abs(groups.count('right') - 200) <= 4.5 * math.sqrt(300 * 2 / 9)
    stims = {t.fields['stim'] for t in rig.trials}
    assert stims == {'low_a', 'low_b', 'high_a', 'high_b'}
    assert all(t.fields['stim'].startswith('low') == (t.fields['stim_group'] == 'left') for t in rig.trials)


def test_correction_trials_repeat_the_sound_until_correct_and_are_not_scored() -> None:
    rig = FakeRig(NAFC, {**FAST, 'correction_p': 1.0, 'stimuli': two_sets()}, seed=6)
    rig.start()
    first = rig.task.stim
    wrong = 'left' if rig.task.stim_group == 'right' else 'right'
    run_trial(rig, wrong)
    run_trial(rig, None)                                        # no response: the run goes on
    run_trial(rig, wrong)
    assert [t.fields['stim'] for t in rig.trials] == [first] * 3
    assert [t.fields['correction'] for t in rig.trials] == [False, True, True]
    run_trial(rig, rig.task.stim_group)                        # correct: the run ends
    run_trial(rig, rig.task.stim_group)
    assert [t.fields['correction'] for t in rig.trials][3:] == [True, False]
    assert NAFC.score_excludes == ('correction',)


@pytest.mark.parametrize('mode', ['clipped', 'thresholded_linear'])
def test_bias_correction_draws_more_targets_at_the_port_the_animal_avoids(mode: str) -> None:
    rig = FakeRig(NAFC, {**FAST, 'bias_mode': mode, 'bias_window': 20}, seed=7)
    rig.start()
    for _ in range(200):
        run_trial(rig, 'right')                                # an animal that always goes right
    late = [t.fields for t in rig.trials[50:]]
    left = sum(t['stim_group'] == 'left' for t in late) / len(late)
    assert left > 0.7, left                                    # unbiased would be 0.5
    assert {t['stim_reason'] for t in late} == {'bias'}


def test_a_stimulus_set_must_name_the_ports() -> None:
    with pytest.raises(TaskError, match='stimuli: groups left, middle; this task needs one group per port: left, right'):
        FakeRig(NAFC, {**FAST, 'stimuli': {'groups': {'left': [tone('a', 1000.0)], 'middle': [tone('b', 2000.0)]}}})


class FourPorts(NAFC):
    """Four response ports: the two of NAFC and two more."""

    ports = ('far_left', 'left', 'right', 'far_right')
    stimuli = NAFC.stimuli.__class__({'groups': {p: [tone(f'tone_{p}', hz)] for p, hz in (
        ('far_left', 3000.0), ('left', 6000.0), ('right', 10000.0), ('far_right', 16000.0))}}, 'Four tones')
    far_left = Input('poke_far_left')
    far_right = Input('poke_far_right')
    far_left_valve = Output('valve_far_left', kind='valve')
    far_right_valve = Output('valve_far_right', kind='valve')


def test_more_ports_are_a_subclass_that_declares_their_roles() -> None:
    rig = FakeRig(FourPorts, {**FAST}, seed=8)
    rig.start()
    for _ in range(80):
        run_trial(rig, rig.task.stim_group)
    assert {t.fields['stim_group'] for t in rig.trials} == set(FourPorts.ports)
    assert all(t.fields['correct'] for t in rig.trials)
    assert {c[1] for c in rig.hw.of('reward')} == {f'{p}_valve' for p in FourPorts.ports}
    with pytest.raises(TypeError, match="port 'middle' needs an Input role 'middle' and an Output role 'middle_valve'"):
        type('Broken', (NAFC,), {'ports': ('left', 'middle', 'right')})
