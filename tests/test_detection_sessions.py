"""Go/no-go, gap-in-noise, psychometric 2AFC and N-AFC sessions on a simulated rig with the virtual subject, in real
processes (gpio sim, sound null, pilot, subject_sim): the rates the task records match the subject's model within 4
binomial SDs.

The model: p(respond | x) = (1 - miss_rate) * (lapse / 2 + (1 - lapse) * logistic(slope * (x - bias)))
(autopilot_pilot.subject). Go/no-go: the go tone is x = +1, the no-go tone x = -1. Gap in noise: x is the gap's
log2 duration in ms, so bias 3 puts the subject's threshold at 8 ms.
"""

from __future__ import annotations

import json
import math

from test_pilot import FAST_SUBJECT, Terminal, goal, start_rig

from autopilot_pilot.subject import SubjectParams, binomial_tolerance, expected_p_right
from autopilot_tasks.tasks.go_nogo import GoNoGo


def within(trials: list[dict], p: float) -> tuple[bool, float]:
    rate = sum(t['responded'] for t in trials) / len(trials)
    return abs(rate - p) <= binomial_tolerance(p, len(trials)), rate


def test_go_nogo_hit_and_false_alarm_rates_match_the_model(procs, node, tmp_path):
    model = SubjectParams(slope=2.0, lapse=0.1)
    start_rig(procs, tmp_path, 'rig1', subject={
        'mode': 'gonogo', 'response_port': 'right', 'slope': model.slope, 'lapse': model.lapse,
        'stimulus_ids': ['go', 'nogo'], 'stimulus_values': [1.0, -1.0], 'miss_timeout_ms': 400.0})
    term = Terminal(node, 'rig1')
    n = 60
    short = {g: [{**s, 'duration_ms': 30.0} for s in items] for g, items in GoNoGo.stimuli.default['groups'].items()}
    result = term.run(goal(task='gonogo', max_trials=n, response_window_s=0.3, iti_s=0.05, punish_timeout_s=0.1,
                           stimuli=json.dumps({'groups': short}), noise_ms=30.0), timeout=240)
    assert result.success and result.n_trials == n, result.message
    trials = [{**t, 'responded': t['response'] == 'go'} for t in term.session(result.session_id)]
    go = [t for t in trials if t['stim_group'] == 'go']
    nogo = [t for t in trials if t['stim_group'] == 'nogo']
    assert len(go) >= 15 and len(nogo) >= 15, (len(go), len(nogo))
    ok, hits = within(go, expected_p_right(1.0, model))
    assert ok, (hits, expected_p_right(1.0, model))
    ok, fas = within(nogo, expected_p_right(-1.0, model))
    assert ok, (fas, expected_p_right(-1.0, model))
    # Outcomes follow from the tone and the response, and the response times from the subject's (>= rt_min).
    for t in trials:
        assert t['outcome'] == {('go', True): 'hit', ('go', False): 'miss', ('nogo', True): 'false_alarm',
                                ('nogo', False): 'correct_reject'}[(t['stim_group'], t['responded'])]
        assert math.isnan(t['rt_ms']) != t['responded']
    assert min(t['rt_ms'] for t in trials if t['responded']) >= FAST_SUBJECT['rt_min_ms'] - 1.0


def test_gap_detection_rates_follow_the_gap_length(procs, node, tmp_path):
    model = SubjectParams(bias=3.0, slope=2.0, lapse=0.05)
    start_rig(procs, tmp_path, 'rig1', subject={
        'mode': 'detect', 'response_port': 'left', 'bias': model.bias, 'slope': model.slope, 'lapse': model.lapse,
        'stimulus_ids': ['gap_2ms', 'gap_32ms'], 'stimulus_values': [1.0, 5.0], 'miss_timeout_ms': 0.0})
    term = Terminal(node, 'rig1')
    n = 60
    result = term.run(goal(task='gap_in_noise', max_trials=n, gaps_ms='2 32', catch_fraction=0.2,
                           foreperiod_min_s=0.1, foreperiod_max_s=0.2, response_window_s=0.3, timeout_s=0.1,
                           iti_s=0.05), timeout=240)
    assert result.success and result.n_trials == n, result.message
    trials = term.session(result.session_id)
    assert not [t for t in trials if t['outcome'] in ('early', 'aborted')], 'the subject never pokes unprompted'
    by_gap = {g: [t for t in trials if t['gap_ms'] == g] for g in (0.0, 2.0, 32.0)}
    assert all(len(v) >= 5 for v in by_gap.values()), {g: len(v) for g, v in by_gap.items()}
    assert not any(t['responded'] for t in by_gap[0.0])  # catch trials: no gap, no response
    for gap, x in ((2.0, 1.0), (32.0, 5.0)):
        ok, rate = within(by_gap[gap], expected_p_right(x, model))
        assert ok, (gap, rate, expected_p_right(x, model))
    # The response time runs from the gap's onset stamp to the poke's GPIO stamp: the subject's RT shows.
    rts = [t['rt_ms'] for t in trials if t['responded']]
    assert rts and min(rts) >= FAST_SUBJECT['rt_min_ms'] - 2.0 and sorted(rts)[len(rts) // 2] < 200.0
    assert all(t['gap_onset_ms'] >= 100.0 for t in trials if t['gap_ms'] > 0)


def test_psychometric_2afc_fraction_right_per_level_matches_the_model(procs, node, tmp_path):
    from test_pilot import FAST_TASK

    model = SubjectParams(slope=3.0, lapse=0.05)
    levels = [-1.0, -0.25, 0.25, 1.0]
    ids = [f'tone_{x:+g}'.replace('.', '_').replace('+', 'p').replace('-', 'm') for x in levels]
    start_rig(procs, tmp_path, 'rig1', subject={'slope': model.slope, 'lapse': model.lapse, 'stimulus_ids': ids,
                                                'stimulus_values': levels})
    term = Terminal(node, 'rig1')
    n = 100
    result = term.run(goal(task='psychometric_2afc', max_trials=n, levels='0.25 1', correction_trials=False,
                           bias_correction=False, **FAST_TASK), timeout=240)
    assert result.success and result.n_trials == n, result.message
    trials = term.session(result.session_id)
    assert {t['stim'] for t in trials} == set(ids) and {t['response'] for t in trials} <= {'left', 'right'}
    for x in levels:
        at = [t for t in trials if t['stim_level'] == x]
        assert all(t['stim'] == ids[levels.index(x)] for t in at)
        p = expected_p_right(x, model)
        rate = sum(t['response'] == 'right' for t in at) / len(at)
        assert abs(rate - p) <= binomial_tolerance(p, len(at)), (x, rate, p, len(at))


def test_nafc_with_two_sounds_per_port_and_request_rewards_matches_the_model(procs, node, tmp_path):
    from autopilot_tasks.tasks.nafc import tone

    model = SubjectParams(slope=3.0, lapse=0.05)
    values = {'far_l': -1.0, 'near_l': -0.25, 'near_r': 0.25, 'far_r': 1.0}
    start_rig(procs, tmp_path, 'rig1', subject={'slope': model.slope, 'lapse': model.lapse,
                                                'stimulus_ids': list(values), 'stimulus_values': list(values.values())})
    term = Terminal(node, 'rig1')
    sounds = {sid: {**tone(sid, 4000.0 + 2000.0 * i), 'duration_ms': 30.0} for i, sid in enumerate(values)}
    stimuli = {'groups': {'left': [sounds['far_l'], sounds['near_l']], 'right': [sounds['near_r'], sounds['far_r']]}}
    n = 80
    result = term.run(goal(task='nafc', max_trials=n, stimuli=json.dumps(stimuli), request_reward_ul=1.0,
                           correction_p=0.0, bias_mode='none', response_window_s=3.0, iti_s=0.05,
                           punish_timeout_s=0.1, noise_ms=30.0), timeout=240)
    assert result.success and result.n_trials == n, result.message
    trials = term.session(result.session_id)
    assert {t['response'] for t in trials} <= {'left', 'right'} and all(t['request_given_ul'] == 1.0 for t in trials)
    for sid, x in values.items():
        at = [t for t in trials if t['stim'] == sid]
        assert at and all(t['stim_group'] == ('left' if x < 0 else 'right') for t in at)
        p = expected_p_right(x, model)
        rate = sum(t['response'] == 'right' for t in at) / len(at)
        assert abs(rate - p) <= binomial_tolerance(p, len(at)), (sid, rate, p, len(at))
    for t in trials:
        assert t['correct'] == (t['response'] == t['stim_group'])
        assert t['reward_given_ul'] == (5.0 if t['correct'] else 0.0)
