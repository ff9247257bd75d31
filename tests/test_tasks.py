"""The shipped tasks (free water, 2AFC) driven by FakeClock + FakeHardware, and `autopilot task` as a subprocess."""

from __future__ import annotations

import math
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from autopilot_pilot.fakes import FakeRig
from autopilot_tasks.task import Input, Output, Sound, TaskError
from autopilot_tasks.tasks.free_water import FreeWater
from autopilot_tasks.tasks.two_afc import TwoAFC

ROOT = Path(__file__).resolve().parent.parent
_INSTALLED = shutil.which('autopilot')
AUTOPILOT = [_INSTALLED] if _INSTALLED else [sys.executable, '-m', 'autopilot_cli.main']


def finish(rig: FakeRig, limit_s: float = 120.0, n: int | None = None) -> None:
    """Advance the clock until the running trial (number ``n`` + 1: the one running when called) has ended."""
    n = len(rig.trials) if n is None else n
    for _ in range(int(limit_s / 0.05)):
        if len(rig.trials) > n or rig.errors:
            break
        rig.advance(0.05)
    assert not rig.errors, rig.errors
    assert len(rig.trials) == n + 1, f'trial did not end within {limit_s} s (stage {rig.stage})'


@pytest.mark.parametrize('task', [FreeWater, TwoAFC])
def test_tasks_need_only_what_the_sim_rig_has(task: type) -> None:
    gpio = yaml.safe_load((ROOT / 'launch' / 'params' / 'rig_sim.yaml').read_text())['/**/gpio']['ros__parameters']
    for role, decl in task.hardware().items():
        if isinstance(decl, Input):
            assert decl.device in gpio['inputs'], role
        elif isinstance(decl, Output):
            assert decl.device in gpio['outputs'], role
            assert gpio[f'devices.{decl.device}.kind'] == decl.kind, role
        else:
            assert isinstance(decl, Sound)


# ---- free water -----------------------------------------------------------------------------------

def test_free_water_rewards_only_the_active_port() -> None:
    rig = FakeRig(FreeWater, {'mode': 'left', 'reward_ul': 7.5})
    rig.start()
    assert rig.stage == 'available' and rig.hw.levels == {'light': True}
    rig.advance(0.5)
    rig.poke('right')
    rig.poke('right')
    assert rig.hw.of('reward') == [] and rig.stage == 'available'
    rig.advance(0.3)
    rig.poke('left')
    assert rig.hw.of('reward') == [('reward', 'left_valve', 7.5)]
    assert rig.hw.levels['light'] is False and rig.stage == 'drinking'
    finish(rig)
    t = rig.trials[0].fields
    assert t == {'port': 'left', 'rewarded': True, 'latency_ms': pytest.approx(1000.0), 'wrong_pokes': 2}
    assert rig.hw.levels['light'] is True and rig.stage == 'available'  # next trial: available again


def test_free_water_random_ports_never_reward_the_other_side() -> None:
    rig = FakeRig(FreeWater, {'iti_s': 0.5}, seed=11)
    rig.start()
    rng = random.Random(4)
    for n in range(60):
        for side in rng.sample(['left', 'right'], 2):
            rig.advance(rng.uniform(0.05, 0.4))
            rig.poke(side, hold_s=0.05)
        finish(rig, n=n)
    ports = [t.fields['port'] for t in rig.trials]
    assert 15 < ports.count('left') < 45
    rewards = rig.hw.of('reward')
    assert [r[1] for r in rewards] == [p + '_valve' for p in ports]
    # the first poke was at the wrong port in some trials, and those pokes were counted
    assert sum(t.fields['wrong_pokes'] for t in rig.trials) > 10


def test_free_water_latency_uses_the_gpio_stamp_not_the_receive_time() -> None:
    rig = FakeRig(FreeWater, {'mode': 'right'})
    rig.start()
    rig.advance(2.0)                                       # the event is handled at 2.0 s ...
    rig.edge('right', True, tick_us=1, stamp_ns=1_234_000_000)  # ... but the poke happened at 1.234 s
    finish(rig)
    assert rig.trials[0].fields['latency_ms'] == pytest.approx(1234.0)


def test_free_water_alternate_and_give_up() -> None:
    rig = FakeRig(FreeWater, {'mode': 'alternate', 'max_wait_s': 3.0})
    rig.start()
    first = rig.task.port
    finish(rig)   # nobody pokes: ends after max_wait_s, unrewarded
    t = rig.trials[0]
    assert t.fields['rewarded'] is False and math.isnan(t.fields['latency_ms']) and t.fields['port'] == first
    assert t.ended_ns == 3_000_000_000 and rig.hw.of('reward') == []
    second = rig.task.port
    rig.poke(second)
    finish(rig)
    assert [t.fields['port'] for t in rig.trials] == [first, second] and first != second
    assert rig.trials[1].fields['rewarded'] is True


# ---- 2AFC ---------------------------------------------------------------------------------------

def run_2afc_trial(rig: FakeRig, response: str | None, hold_s: float = 0.15, move_s: float = 0.3) -> dict:
    """Centre poke, then a poke at ``response`` ('left', 'right', 'target', 'other') or none; returns the fields."""
    assert rig.stage == 'wait_center'
    n = len(rig.trials)
    target = rig.task.target
    rig.advance(0.2)
    rig.poke('center', hold_s)
    if response is not None:
        rig.advance(move_s)
        side = {'target': target, 'other': 'right' if target == 'left' else 'left'}.get(response, response)
        rig.poke(side, 0.05)
    finish(rig, n=n)
    return rig.trials[-1].fields


def test_2afc_loads_its_sounds_in_setup() -> None:
    rig = FakeRig(TwoAFC, {'left_tone_hz': 4000, 'right_tone_hz': 16000, 'tone_ms': 150, 'noise_amplitude': 0.05})
    rig.start()
    loads = {c[1]: c[2] for c in rig.hw.of('load_sound')}
    assert set(loads) == {'tone_left', 'tone_right', 'noise'}
    assert loads['tone_left'] == {'kind': 'tone', 'frequency_hz': 4000.0, 'duration_ms': 150.0, 'amplitude': 0.1,
                                  'ramp_ms': 5.0}
    assert loads['tone_right']['frequency_hz'] == 16000.0
    assert loads['noise']['kind'] == 'noise' and loads['noise']['amplitude'] == 0.05
    assert rig.hw.calls.index(('set', 'center_led', True)) > max(
        i for i, c in enumerate(rig.hw.calls) if c[0] == 'load_sound')


def test_2afc_full_correct_trial() -> None:
    rig = FakeRig(TwoAFC, {'reward_ul': 6.0, 'iti_s': 2.0}, onset_latency_s=0.004)
    rig.start()
    target = rig.task.target
    rig.hw.clear()
    t = run_2afc_trial(rig, 'target')
    assert t['target'] == target and t['response'] == target and t['correct'] is True
    assert t['correction'] is False and t['stim'] == 'tone_' + target and t['p_left'] == 0.5
    assert t['rt_ms'] == pytest.approx(300.0) and t['hold_ms'] == pytest.approx(150.0)
    assert t['onset_ms'] == pytest.approx(4.0) and t['reward_given_ul'] == 6.0
    kinds = [c[:2] for c in rig.hw.calls]
    assert kinds[:4] == [('play', 'tone_' + target), ('set', 'center_led'), ('reward', target + '_valve'),
                         ('set', 'center_led')]
    assert rig.hw.of('reward') == [('reward', target + '_valve', 6.0)]
    assert [s for s, _ in rig.trials[0].stage_log] == ['wait_center', 'wait_response', 'iti']
    # the trial ends iti_s after the reward
    reward_t = rig.hw.times[rig.hw.calls.index(rig.hw.of('reward')[0])]
    assert rig.trials[0].ended_ns - reward_t == 2_000_000_000
    assert TwoAFC.score(t) is True


def test_2afc_error_plays_noise_and_times_out() -> None:
    rig = FakeRig(TwoAFC, {'punish_timeout_s': 4.0})
    rig.start()
    rig.hw.clear()
    t = run_2afc_trial(rig, 'other')
    assert t['correct'] is False and t['response'] != t['target'] and t['reward_given_ul'] == 0.0
    assert rig.hw.of('reward') == []
    noise = [c for c in rig.hw.of('play') if c[1] == 'noise']
    assert len(noise) == 1
    noise_t = rig.hw.times[rig.hw.calls.index(noise[0])]
    assert rig.trials[0].ended_ns - noise_t == 4_000_000_000
    assert [s for s, _ in rig.trials[0].stage_log] == ['wait_center', 'wait_response', 'punish']
    assert TwoAFC.score(t) is False


def test_2afc_correction_trials_repeat_the_target_until_correct() -> None:
    rig = FakeRig(TwoAFC, {'punish_timeout_s': 0.5, 'iti_s': 0.5}, seed=5)
    rig.start()
    first = run_2afc_trial(rig, 'other')
    second = run_2afc_trial(rig, 'other')
    third = run_2afc_trial(rig, None)          # no response keeps the correction run going
    fourth = run_2afc_trial(rig, 'target')
    fifth = run_2afc_trial(rig, 'target')
    assert first['correction'] is False
    for t in (second, third, fourth):
        assert t['correction'] is True and t['target'] == first['target']
        assert t['p_left'] == (1.0 if first['target'] == 'left' else 0.0)
    assert fifth['correction'] is False
    assert TwoAFC.score(second) is None and TwoAFC.score(fourth) is None  # out of accuracy


def test_2afc_no_response_ends_with_none_and_no_correction() -> None:
    rig = FakeRig(TwoAFC, {'response_window_s': 2.0, 'iti_s': 1.0})
    rig.start()
    rig.hw.clear()
    t = run_2afc_trial(rig, None)
    assert t['response'] == 'none' and t['correct'] is False and math.isnan(t['rt_ms'])
    assert t['hold_ms'] == pytest.approx(150.0) and t['reward_given_ul'] == 0.0
    assert rig.hw.of('reward') == [] and [c for c in rig.hw.of('play') if c[1] == 'noise'] == []
    log = rig.trials[0].stage_log
    assert [s for s, _ in log] == ['wait_center', 'wait_response', 'iti']
    assert log[2][1] - log[1][1] == 2_000_000_000   # the window, measured from the centre poke
    assert run_2afc_trial(rig, 'target')['correction'] is False


def test_2afc_rt_comes_from_gpio_ticks() -> None:
    rig = FakeRig(TwoAFC)
    rig.start()
    target = rig.task.target
    rig.advance(1.0)
    rig.edge('center', True, tick_us=50_000_000)
    rig.advance(0.9)                                   # receive times are 0.9 s and 1.0 s apart ...
    rig.edge('center', False, tick_us=50_180_000)      # ... the ticks 180 ms and 250 ms
    rig.advance(1.0)
    rig.edge(target, True, tick_us=50_430_000)
    finish(rig)
    t = rig.trials[0].fields
    assert t['hold_ms'] == pytest.approx(180.0) and t['rt_ms'] == pytest.approx(250.0)


def test_2afc_response_without_centre_out_edge_has_nan_rt() -> None:
    rig = FakeRig(TwoAFC)
    rig.start()
    target = rig.task.target
    rig.edge('center', True)
    rig.advance(0.5)
    rig.edge(target, True)
    finish(rig)
    t = rig.trials[0].fields
    assert t['correct'] is True and math.isnan(t['rt_ms']) and math.isnan(t['hold_ms'])


def simulate_biased(params: dict, n: int, seed: int) -> list[dict]:
    """A responder that answers correctly half the time and otherwise goes right."""
    rig = FakeRig(TwoAFC, {'punish_timeout_s': 0.0, 'iti_s': 0.0, **params}, seed=seed)
    rig.start()
    rng = random.Random(seed + 1000)  # not the task's stream: the responder must not know the draws
    for _ in range(n):
        run_2afc_trial(rig, 'target' if rng.random() < 0.5 else 'right', hold_s=0.05, move_s=0.05)
    return [t.fields for t in rig.trials]


def test_2afc_bias_correction_shifts_targets_against_the_bias() -> None:
    on = simulate_biased({'correction_trials': False}, 300, seed=2)
    off = simulate_biased({'correction_trials': False, 'bias_correction': False}, 300, seed=2)
    left_on = sum(t['target'] == 'left' for t in on) / len(on)
    left_off = sum(t['target'] == 'left' for t in off) / len(off)
    assert all(t['p_left'] == 0.5 for t in off)
    assert 0.4 < left_off < 0.6
    # P(right) = 0.5 * (1 - p_left) + 0.5 and p_left tracks P(right): the fixed point is p_left = 2/3
    assert left_on > 0.6 and left_on - left_off > 0.1
    assert 0.6 < sum(t['p_left'] for t in on[40:]) / len(on[40:]) < 0.75
    assert sum(t['response'] == 'right' for t in off) / len(off) > 0.7   # the responder really is biased


def test_2afc_p_left_follows_the_documented_formula() -> None:
    window, limit = 10, 0.25
    trials = simulate_biased({'bias_window': window, 'bias_limit': limit}, 200, seed=9)
    assert any(t['correction'] for t in trials)
    for i, t in enumerate(trials):
        if t['correction']:
            assert t['p_left'] == (1.0 if t['target'] == 'left' else 0.0)
            continue
        recent = [u['response'] for u in trials[:i] if not u['correction'] and u['response'] != 'none'][-window:]
        expected = 0.5 if not recent else min(max(recent.count('right') / len(recent), limit), 1 - limit)
        assert t['p_left'] == pytest.approx(expected), i


def test_2afc_update_params_reloads_changed_sounds_at_the_next_trial() -> None:
    rig = FakeRig(TwoAFC)
    rig.start()
    rig.runner.update_params({'right_tone_hz': 9000})
    rig.hw.clear()
    run_2afc_trial(rig, 'target')
    loads = rig.hw.of('load_sound')
    assert {c[1] for c in loads} == {'tone_left', 'tone_right', 'noise'}
    assert [c[2]['frequency_hz'] for c in loads if c[1] == 'tone_right'] == [9000.0]
    rig.hw.clear()
    run_2afc_trial(rig, 'target')
    assert rig.hw.of('load_sound') == []     # unchanged: not reloaded


def test_2afc_tones_must_differ() -> None:
    with pytest.raises(TaskError, match=r'^TwoAFC: left_tone_hz and right_tone_hz are both 8000.0 Hz'):
        TwoAFC.validate({'left_tone_hz': 8000, 'right_tone_hz': 8000.0})


def test_2afc_failed_onset_leaves_onset_nan_and_logs() -> None:
    rig = FakeRig(TwoAFC)
    rig.hw.on_onset = lambda sid, pid, stamp, ok: rig.runner.handle_onset(sid, pid, stamp, False)
    rig.start()
    t = run_2afc_trial(rig, 'target')
    assert math.isnan(t['onset_ms']) and any('did not play' in line for line in rig.logs)


# ---- autopilot task (CLI) -------------------------------------------------------------------------

def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*AUTOPILOT, 'task', *args], capture_output=True, text=True, timeout=60)


def test_cli_task_list() -> None:
    out = cli('list')
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    names = [line.split()[0] for line in lines]
    assert names == sorted(names) and {'2afc', 'free_water'} <= set(names)
    row = {line.split()[0]: line for line in lines}
    assert row['2afc'].split(None, 2)[1] == 'autopilot_tasks.tasks.two_afc:TwoAFC'
    assert row['2afc'].split(None, 2)[2] == TwoAFC.description()
    assert row['free_water'].split(None, 2)[1] == 'autopilot_tasks.tasks.free_water:FreeWater'
    assert cli('list').stdout == out.stdout


def test_cli_task_show_2afc() -> None:
    out = cli('show', '2afc')
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.startswith('2afc: autopilot_tasks.tasks.two_afc:TwoAFC\n')
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith('  ') and line.split()}
    assert rows['reward_ul'][:5] == ['reward_ul', 'float', '5.0', 'uL', '[0.5,']
    assert rows['bias_window'][:4] == ['bias_window', 'int', '20', 'trials']
    assert rows['correction_trials'][:3] == ['correction_trials', 'bool', 'True']
    assert rows['center'][:5] == ['center', 'input', '(active', 'low)', 'poke_center']
    assert rows['left_valve'][:4] == ['left_valve', 'output', '(valve)', 'valve_left']
    assert rows['rt_ms'][:3] == ['rt_ms', 'float', 'ms']
    for name in TwoAFC.params():
        assert name in rows
    for name in TwoAFC.fields():
        assert name in rows
    assert 'stages: wait_center, wait_response, punish, iti' in text
    assert 'score: correct (trials with correction true do not count)' in text


def test_cli_task_show_unknown() -> None:
    out = cli('show', 'no_such_task')
    assert out.returncode == 1
    assert "unknown task 'no_such_task'" in out.stderr and '2afc' in out.stderr and 'free_water' in out.stderr
    assert out.stdout == ''


# ---- docs/tasks.md ------------------------------------------------------------------------------

def test_docs_show_the_real_free_water_file_and_a_test_that_passes() -> None:
    blocks = re.findall(r'```python\n(.*?)```', (ROOT / 'docs' / 'tasks.md').read_text(), re.S)
    source = (ROOT / 'src' / 'autopilot_tasks' / 'autopilot_tasks' / 'tasks' / 'free_water.py').read_text()
    example = blocks[0]
    assert example[example.index('class FreeWater'):] in source
    test_block = next(b for b in blocks if 'def test_rewards_only_the_active_port' in b)
    namespace: dict = {}
    exec(compile(test_block, 'docs/tasks.md', 'exec'), namespace)
    namespace['test_rewards_only_the_active_port']()
