"""Go/no-go and gap-in-noise on the fake rig (no ROS): every outcome, the timing of each window, what is recorded,
the stimulus proportions, and d'."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest

from autopilot_pilot.fakes import FakeRig
from autopilot_tasks.tasks.gap_in_noise import GapInNoise, parse_gaps
from autopilot_tasks.tasks.go_nogo import GoNoGo, d_prime

FAST = {'response_window_s': 1.0, 'punish_timeout_s': 0.5, 'iti_s': 0.2}


def tones(go: float, nogo: float) -> dict:
    """A go/no-go stimulus set with these proportions (the default tones)."""
    return {**GoNoGo.stimuli.default, 'proportions': {'go': go, 'nogo': nogo}}


def run_go_nogo_trial(rig: FakeRig, respond: bool) -> dict:
    n = len(rig.trials)
    rig.poke('center', hold_s=0.05)
    if respond:
        rig.advance(0.2)
        rig.poke('port', hold_s=0.05)
    for _ in range(100):
        if len(rig.trials) > n:
            break
        rig.advance(0.1)
    return rig.trials[-1].fields


@pytest.mark.parametrize(('group', 'respond', 'outcome', 'water'), [
    ('go', True, 'hit', 5.0), ('go', False, 'miss', 0.0),
    ('nogo', True, 'false_alarm', 0.0), ('nogo', False, 'correct_reject', 0.0)])
def test_go_nogo_outcomes(group: str, respond: bool, outcome: str, water: float) -> None:
    rig = FakeRig(GoNoGo, {**FAST, 'stimuli': tones(1.0, 0.0) if group == 'go' else tones(0.0, 1.0)})
    rig.start()
    assert rig.stage == 'wait_center' and ('set', 'center_led', True) in rig.hw.calls
    f = run_go_nogo_trial(rig, respond)
    assert (f['stim_group'], f['outcome'], f['correct']) == (group, outcome, outcome in ('hit', 'correct_reject'))
    assert f['response'] == ('go' if respond else 'none') and f['reward_given_ul'] == water
    assert [c[1] for c in rig.hw.of('play')] == [group] + (['noise'] if outcome == 'false_alarm' else [])
    assert (f['rt_ms'] == pytest.approx(200.0 - 0.0, abs=0.5)) if respond else math.isnan(f['rt_ms'])
    assert not rig.errors


def test_go_nogo_response_window_and_timeout_timing() -> None:
    rig = FakeRig(GoNoGo, {**FAST, 'stimuli': tones(0.0, 1.0), 'punish_timeout_s': 2.0})
    rig.start()
    rig.poke('center', hold_s=0.0)
    rig.advance(0.99)
    assert rig.stage == 'respond'
    rig.advance(0.02)
    assert rig.stage == 'iti'                 # the window is 1 s from the centre poke
    rig.advance(0.2)
    assert len(rig.trials) == 1
    rig.poke('center', hold_s=0.0)
    rig.poke('port', hold_s=0.0)              # false alarm: 2 s timeout
    rig.advance(1.99)
    assert len(rig.trials) == 1 and rig.stage == 'punish'
    rig.advance(0.02)
    assert len(rig.trials) == 2 and rig.trials[1].fields['outcome'] == 'false_alarm'


def test_go_nogo_draws_go_in_its_proportion_and_repeats_after_errors() -> None:
    rig = FakeRig(GoNoGo, {**FAST, 'stimuli': tones(0.7, 0.3)}, seed=3)
    rig.start()
    for _ in range(300):
        run_go_nogo_trial(rig, respond=False)
    groups = [t.fields['stim_group'] for t in rig.trials]
    assert abs(groups.count('go') - 210) <= 4.5 * math.sqrt(300 * 0.21)
    assert not any(t.fields['correction'] for t in rig.trials)
    rig = FakeRig(GoNoGo, {**FAST, 'stimuli': tones(1.0, 0.0), 'correction_p': 1.0})
    rig.start()
    for _ in range(3):
        run_go_nogo_trial(rig, respond=False)            # misses: the go tone repeats as correction trials
    assert [(t.fields['correction'], t.fields['stim_reason']) for t in rig.trials] == [
        (False, 'random'), (True, 'correction'), (True, 'correction')]
    assert GoNoGo.score(rig.trials[1].fields) is None     # correction trials are not scored


def test_the_stimulus_set_is_a_parameter_from_yaml_or_json_and_is_checked() -> None:
    import json

    from autopilot_tasks.protocol import load_protocol
    from autopilot_tasks.task import TaskError

    two_each = {'groups': {'go': [{'id': 'go_a', 'kind': 'tone', 'frequency_hz': 4000.0, 'duration_ms': 50.0},
                                  {'id': 'go_b', 'kind': 'noise', 'duration_ms': 50.0, 'weight': 3}],
                           'nogo': [{'id': 'nogo', 'kind': 'gammatone', 'frequency_hz': 9000.0, 'duration_ms': 50.0}]}}
    values = GoNoGo.validate({'stimuli': json.dumps(two_each)})    # as a ROS parameter carries it
    assert values['stimuli'] == GoNoGo.validate({'stimuli': two_each})['stimuli']
    rig = FakeRig(GoNoGo, {**FAST, 'stimuli': two_each}, seed=2)
    rig.start()
    assert rig.hw.sounds['go_b'] == {'kind': 'noise', 'duration_ms': 50.0}
    for _ in range(200):
        run_go_nogo_trial(rig, respond=True)
    played = [t.fields['stim'] for t in rig.trials if t.fields['stim_group'] == 'go']
    assert abs(played.count('go_b') - 0.75 * len(played)) <= 4.5 * math.sqrt(len(played) * 0.75 * 0.25)
    with pytest.raises(TaskError, match="groups go, maybe; a go/no-go set has the groups go and nogo"):
        GoNoGo.validate({'stimuli': {'groups': {'go': [{'id': 'a'}], 'maybe': [{'id': 'b'}]}}})
    with pytest.raises(TaskError, match="id 'a' is used twice"):
        GoNoGo.validate({'stimuli': {'groups': {'go': [{'id': 'a'}], 'nogo': [{'id': 'a'}]}}})
    with pytest.raises(TaskError, match='not JSON'):
        GoNoGo.validate({'stimuli': '{groups'})
    for hostile in ('[' * 100_000, '{"groups": ' * 50_000, 'x' * 1_000_000, json.dumps({'groups': {'go': 1e308}})):
        with pytest.raises(TaskError, match='stimuli'):
            GoNoGo.validate({'stimuli': hostile})
    proto = load_protocol("""
name: p
steps:
  - name: s
    task: gonogo
    parameters:
      stimuli:
        groups:
          go: [{id: up, kind: fm_sweep, frequency_hz: 4000, end_frequency_hz: 8000, duration_ms: 100}]
          nogo: [{id: down, kind: fm_sweep, frequency_hz: 8000, end_frequency_hz: 4000, duration_ms: 100}]
        proportions: {go: 2, nogo: 1}
""")
    assert proto.steps[0].parameters['stimuli']['proportions'] == {'go': 2.0, 'nogo': 1.0}
    with pytest.raises(ValueError, match=r':7: steps\[0\].parameters: GoNoGo: stimuli: groups go, sideways'):
        load_protocol("""
name: p
steps:
  - name: s
    task: gonogo
    parameters:
      stimuli:
        groups: {go: [{id: a}], sideways: [{id: b}]}
""")


def test_d_prime() -> None:
    z = NormalDist().inv_cdf
    trials = ([{'stim_group': 'go', 'outcome': 'hit'}] * 8 + [{'stim_group': 'go', 'outcome': 'miss'}] * 2
              + [{'stim_group': 'nogo', 'outcome': 'false_alarm'}] * 3
              + [{'stim_group': 'nogo', 'outcome': 'correct_reject'}] * 7
              + [{'stim_group': 'go', 'outcome': 'miss', 'correction': True}] * 50)
    assert d_prime(trials) == pytest.approx(z(8.5 / 11) - z(3.5 / 11))
    perfect = [{'stim_group': 'go', 'outcome': 'hit'}] * 10 + [{'stim_group': 'nogo', 'outcome': 'correct_reject'}] * 10
    assert math.isfinite(d_prime(perfect)) and d_prime(perfect) > 2.5
    assert math.isnan(d_prime([{'stim_group': 'go', 'outcome': 'hit'}]))


GAP = {'gaps_ms': '4 16', 'foreperiod_min_s': 1.0, 'foreperiod_max_s': 1.0, 'response_window_s': 0.5,
       'timeout_s': 1.0, 'iti_s': 0.2, 'catch_fraction': 0.0}


def test_gap_in_noise_noise_runs_on_and_a_gap_opens_the_window_at_its_onset() -> None:
    rig = FakeRig(GapInNoise, GAP, onset_latency_s=0.004)
    rig.start()
    noise = [c for c in rig.hw.of('play') if c[1] == 'noise']
    assert len(noise) == 1 and rig.hw.sounds['noise']['loop'] is True
    assert {'gap_4ms', 'gap_16ms'} <= set(rig.hw.sounds) and rig.hw.sounds['gap_4ms']['kind'] == 'gap'
    rig.advance(1.0)                                  # the foreperiod: the gap is played
    assert rig.hw.of('play')[-1][1].startswith('gap_') and rig.stage == 'foreperiod'
    rig.advance(0.004)                                # its onset opens the window
    assert rig.stage == 'respond'
    rig.advance(0.1)
    rig.poke('port', hold_s=0.05)
    rig.advance(0.3)
    f = rig.trials[0].fields
    assert (f['outcome'], f['responded'], f['correct'], f['reward_given_ul']) == ('hit', True, True, 5.0)
    assert f['rt_ms'] == pytest.approx(100.0, abs=0.5) and f['gap_onset_ms'] == pytest.approx(1004.0, abs=0.5)
    assert f['gap_ms'] in (4.0, 16.0) and f['foreperiod_s'] == 1.0
    for _ in range(3):                                 # misses; the noise is never started again
        rig.advance(1.8)
    assert [t.fields['outcome'] for t in rig.trials[1:]] == ['miss'] * (len(rig.trials) - 1)
    assert len([c for c in rig.hw.of('play') if c[1] == 'noise']) == 1 and not rig.errors


def test_gap_in_noise_catch_trials_early_pokes_and_the_noise_after_a_pause() -> None:
    rig = FakeRig(GapInNoise, {**GAP, 'catch_fraction': 0.9, 'gaps_ms': '8'}, seed=2)
    rig.start()
    rig.poke('port', hold_s=0.05)                     # during the foreperiod: early, a timeout
    rig.advance(1.0)
    assert rig.trials[0].fields['outcome'] == 'early' and math.isnan(rig.trials[0].fields['rt_ms'])
    outcomes = []
    for _ in range(20):
        n = len(rig.trials)
        rig.advance(1.0)                               # the foreperiod
        catch = rig.stage == 'respond' and rig.task.gap_ms == 0
        rig.advance(0.1)
        rig.poke('port', hold_s=0.05)
        while len(rig.trials) == n:
            rig.advance(0.1)
        outcomes.append((catch, rig.trials[-1].fields['outcome']))
    assert {o for c, o in outcomes if c} == {'false_alarm'} and {o for c, o in outcomes if not c} <= {'hit'}
    assert sum(c for c, _ in outcomes) >= 12          # 90 % catch trials
    rig.runner.pause()
    while rig.runner.state != 'paused':
        rig.advance(0.2)
    assert rig.hw.of('stop_sound')                    # the runner stopped the noise ...
    rig.runner.resume()
    assert [c[1] for c in rig.hw.of('play')].count('noise') == 2  # ... and the next trial starts it again
    assert not rig.errors


@pytest.mark.parametrize(('text', 'message'), [
    ('', 'give 1 to 32 gap durations, got 0'), ('2 x', "'x' is not a number"), ('0.1', 'out of range'),
    (' '.join(['2'] * 33), 'got 33')])
def test_gap_durations_are_checked_when_a_protocol_is_loaded(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_gaps(text)
    from autopilot_tasks.task import TaskError
    with pytest.raises(TaskError, match='gaps_ms'):
        GapInNoise.validate({'gaps_ms': text})
    assert parse_gaps('2, 4,8') == [2.0, 4.0, 8.0]


def test_psychometric_2afc_draws_graded_tones_around_the_boundary() -> None:
    from autopilot_tasks.tasks.psychometric_2afc import PsychometricTwoAFC, parse_levels

    rig = FakeRig(PsychometricTwoAFC, {'levels': '0.25 1', 'boundary_hz': 8000.0, 'span_octaves': 1.0,
                                       'correction_trials': False, 'bias_correction': False, 'iti_s': 0.1,
                                       'punish_timeout_s': 0.1, 'tone_ms': 30.0}, seed=5)
    rig.start()
    freqs = {sid: spec['frequency_hz'] for sid, spec in rig.hw.sounds.items() if sid.startswith('tone_')}
    assert freqs == pytest.approx({'tone_m1': 4000.0, 'tone_m0_25': 8000 * 2 ** -0.25, 'tone_p0_25': 8000 * 2 ** 0.25,
                                   'tone_p1': 16000.0})
    for _ in range(400):
        rig.poke('center', hold_s=0.02)
        rig.poke('left', hold_s=0.02)              # always left: right targets are errors
        rig.advance(0.2)
    levels = [t.fields['stim_level'] for t in rig.trials]
    assert set(levels) == {-1.0, -0.25, 0.25, 1.0}
    for x in set(levels):                            # each level equally often (4.5 SDs)
        assert abs(levels.count(x) - len(levels) / 4) <= 4.5 * math.sqrt(len(levels) * 3 / 16)
    for t in rig.trials:                             # the side follows the level's sign, the tone its level
        f = t.fields
        assert f['target'] == ('left' if f['stim_level'] < 0 else 'right') and f['correct'] == (f['target'] == 'left')
        assert rig.hw.sounds[f['stim']]['frequency_hz'] == pytest.approx(8000 * 2 ** f['stim_level'])
    assert not rig.errors and PsychometricTwoAFC.plot_spec().title == 'Psychometric 2AFC'
    assert 'left_tone_hz' not in PsychometricTwoAFC.params()
    with pytest.raises(ValueError, match='out of range'):
        parse_levels('0 0.5')
    from autopilot_tasks.task import TaskError
    with pytest.raises(TaskError, match='above 20 kHz'):
        PsychometricTwoAFC.validate({'boundary_hz': 12000.0, 'span_octaves': 1.0})
