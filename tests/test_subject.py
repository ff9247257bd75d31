"""The virtual subject: its psychometric model on a fake clock, and the subject_sim node on a simulated rig.

Model tests compare measured proportions with the model's formula within ``binomial_tolerance`` (4 sigma);
they are seeded, so they never flake, and the tolerance says how far a correct model could be off.
The process tests run the installed gpio (sim), sound (null) and subject_sim executables in namespace /rig1
and check, from a separate rclpy node, that the subject pokes the center by itself and answers a played
tone with a poke on the side the tone stands for, after the configured reaction time.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Callable
from pathlib import Path

import pytest
from autopilot_msgs.msg import DigitalOutput, GpioEvent, SoundOnset, SoundPlay, SoundSpec
from autopilot_msgs.srv import LoadSound
from conftest import call
from rcl_interfaces.srv import SetParameters
from rclpy.node import Node
from rclpy.parameter import Parameter

from autopilot_core import qos
from autopilot_core.executors import spin
from autopilot_pilot.fakes import FakeClock
from autopilot_pilot.subject import (
    Delay,
    ParamsError,
    SubjectParams,
    VirtualSubject,
    binomial_tolerance,
    decide,
    expected_accuracy,
    expected_p_right,
)

ROOT = Path(__file__).resolve().parent.parent
GPIO = str(ROOT / 'install' / 'autopilot_hardware' / 'lib' / 'autopilot_hardware' / 'gpio')
SOUND = str(ROOT / 'install' / 'autopilot_hardware' / 'lib' / 'autopilot_hardware' / 'sound')
SUBJECT = str(ROOT / 'install' / 'autopilot_pilot' / 'lib' / 'autopilot_pilot' / 'subject_sim')
RIG = str(ROOT / 'launch' / 'params' / 'rig_sim.yaml')
NS = '/rig1'
MS = 1_000_000


# -- running the fake clock ------------------------------------------------------------------------
def run_until(clock: FakeClock, condition: Callable[[], bool]) -> None:
    """Jump from one due callback to the next until ``condition`` holds."""
    while not condition():
        due = clock.next_due_ns()
        assert due is not None, 'condition never held and nothing is due'
        clock.advance((due - clock.now_ns()) / 1e9)


def make_subject(params: SubjectParams, seed: int = 0, mode: str = '2afc') -> tuple[VirtualSubject, FakeClock, list]:
    clock = FakeClock()
    pokes: list[tuple[int, str]] = []
    subject = VirtualSubject(params, clock, lambda port: pokes.append((clock.now_ns(), port)), seed=seed, mode=mode)
    return subject, clock, pokes


def run_session(params: SubjectParams, seed: int, xs: list[float], onset_lag_ms: float = 5.0) -> tuple[VirtualSubject, list]:
    """Present xs[k] 50 ms after each center poke (onset stamped ``onset_lag_ms`` before it arrives)."""
    subject, clock, pokes = make_subject(params, seed)
    subject.start()
    for x in xs:
        run_until(clock, lambda: subject.state == 'waiting')
        clock.advance(0.050)
        subject.on_stimulus(x, onset_ns=clock.now_ns() - round(onset_lag_ms * MS))
        run_until(clock, lambda: subject.state in ('center_delay', 'waiting') and not subject._pending)
    return subject, pokes


# -- the formula -----------------------------------------------------------------------------------
def test_p_right_formula_floor_ceiling_and_accuracy():
    p = SubjectParams(bias=0.2, slope=4.0, lapse=0.1)
    assert expected_p_right(0.2, p) == pytest.approx(0.5)
    for x in (-1.0, -0.3, 0.0, 0.5, 1.0):
        z = 4.0 * (x - 0.2)
        assert expected_p_right(x, p) == pytest.approx(0.05 + 0.9 / (1 + math.exp(-z)))
    # Lapse floor and ceiling: a random guess on a fraction `lapse` of trials, however clear the stimulus.
    assert expected_p_right(-1e6, p) == pytest.approx(0.05) and expected_p_right(1e6, p) == pytest.approx(0.95)
    assert expected_p_right(0.7, SubjectParams(slope=0.0, lapse=0.0)) == 0.5
    # Accuracy: p(right) for x > 0, p(left) for x < 0, chance at 0; symmetric without bias.
    q = SubjectParams(bias=0.0, slope=3.0, lapse=0.2)
    assert expected_accuracy(0.5, q) == pytest.approx(expected_accuracy(-0.5, q)) == pytest.approx(expected_p_right(0.5, q))
    assert expected_accuracy(0.0, q) == 0.5
    assert expected_accuracy(-1.0, p) == pytest.approx(1 - expected_p_right(-1.0, p))
    assert binomial_tolerance(0.5, 10_000) == pytest.approx(4 * 0.005)


@pytest.mark.parametrize('x', [-1.0, -0.25, 0.0, 0.1, 0.4, 1.0])
def test_decisions_match_the_formula_within_binomial_tolerance(x):
    params = SubjectParams(bias=0.1, slope=4.0, lapse=0.2, miss_rate=0.1)
    rng = random.Random(11)
    n = 20_000
    decisions = [decide(x, params, rng) for _ in range(n)]
    responded = [d for d in decisions if d.side is not None]
    assert abs((n - len(responded)) / n - 0.1) <= binomial_tolerance(0.1, n)
    p = expected_p_right(x, params)
    measured = sum(d.side == 'right' for d in responded) / len(responded)
    assert abs(measured - p) <= binomial_tolerance(p, len(responded)), (measured, p)
    lapses = sum(d.lapsed for d in responded) / len(responded)
    assert abs(lapses - 0.2) <= binomial_tolerance(0.2, len(responded))


def test_lapse_floor_and_ceiling_measured():
    params = SubjectParams(slope=1000.0, lapse=0.3)
    rng = random.Random(5)
    n = 20_000
    for x, p in ((-1.0, 0.15), (1.0, 0.85)):
        measured = sum(decide(x, params, rng).side == 'right' for _ in range(n)) / n
        assert abs(measured - p) <= binomial_tolerance(p, n), (x, measured)


def test_bias_shifts_the_fifty_percent_point():
    biased = SubjectParams(bias=0.4, slope=5.0, lapse=0.0)
    unbiased = biased.with_(bias=0.0)
    for x in (-0.5, 0.0, 0.4, 1.0):
        assert expected_p_right(x, biased) == pytest.approx(expected_p_right(x - 0.4, unbiased))
    rng = random.Random(2)
    n = 20_000
    at_bias = sum(decide(0.4, biased, rng).side == 'right' for _ in range(n)) / n
    at_zero = sum(decide(0.0, biased, rng).side == 'right' for _ in range(n)) / n
    assert abs(at_bias - 0.5) <= binomial_tolerance(0.5, n)
    p0 = expected_p_right(0.0, biased)  # ~0.12: bias > 0 is a left-biased animal
    assert p0 < 0.2 and abs(at_zero - p0) <= binomial_tolerance(p0, n)


def test_reaction_time_distribution_mean_sd_and_shift():
    rt = Delay(mean_ms=450.0, sd_ms=150.0, min_ms=150.0)
    rng = random.Random(3)
    samples = [rt.sample_ms(rng) for _ in range(50_000)]
    assert min(samples) >= 150.0
    assert abs(statistics.fmean(samples) - 450.0) <= 4 * 150.0 / math.sqrt(len(samples))
    assert statistics.stdev(samples) == pytest.approx(150.0, rel=0.04)
    assert statistics.median(samples) < statistics.fmean(samples)  # right-skewed, like real reaction times
    mu, sigma = rt.lognormal()
    assert math.exp(mu + sigma ** 2 / 2) == pytest.approx(300.0)  # mean of the lognormal part: 450 - 150
    assert Delay(300.0, 0.0, 100.0).sample_ms(rng) == 300.0


def test_params_are_checked_and_name_the_parameter():
    cases = [
        (dict(lapse=1.5), 'lapse'),
        (dict(miss_rate=-0.1), 'miss_rate'),
        (dict(slope=-1.0), 'slope'),
        (dict(bias=math.nan), 'bias'),
        (dict(rt_mean_ms=100.0, rt_min_ms=150.0), 'rt_mean_ms'),
        (dict(center_delay_sd_ms=-5.0), 'center_delay_sd_ms'),
        (dict(free_water_interval_mean_ms=0.0), 'free_water_interval_mean_ms'),
    ]
    for kw, name in cases:
        with pytest.raises(ParamsError) as info:
            SubjectParams(**kw)
        assert info.value.parameter == name and name in str(info.value)
    assert SubjectParams(rt_mean_ms=150.0, rt_sd_ms=0.0, rt_min_ms=150.0).rt.sample_ms(random.Random()) == 150.0


# -- the behaviour on a clock ----------------------------------------------------------------------
FIXED = SubjectParams(bias=0.0, slope=50.0, lapse=0.0, rt_mean_ms=300.0, rt_sd_ms=0.0, rt_min_ms=0.0,
                      center_delay_mean_ms=1000.0, center_delay_sd_ms=0.0, stimulus_wait_ms=2000.0,
                      miss_timeout_ms=4000.0)


def test_2afc_center_pokes_retries_responses_and_misses():
    subject, clock, pokes = make_subject(FIXED)
    subject.start()
    clock.advance(0.999)
    assert pokes == []
    clock.advance(0.001)
    assert pokes == [(1000 * MS, 'center')] and subject.state == 'waiting'
    # No stimulus within stimulus_wait_ms: the trial is over, the next center poke follows a center delay.
    clock.advance(3.0)
    assert pokes[-1] == (4000 * MS, 'center') and subject.counts.retries == 1
    # A stimulus whose onset was stamped 20 ms before it arrived: the poke is 300 ms after the onset.
    clock.advance(0.5)
    response = subject.on_stimulus(1.0, onset_ns=clock.now_ns() - 20 * MS, label='tone_right')
    assert response is not None and (response.side, response.rt_ms) == ('right', 300.0)
    assert subject.on_stimulus(-1.0) is None and subject.counts.ignored == 1  # committed to the response
    clock.advance(0.279)
    assert pokes[-1][1] == 'center'
    clock.advance(0.001)
    assert pokes[-1] == (4780 * MS, 'right') and response.poke_ns == 4780 * MS
    clock.advance(1.0)
    assert pokes[-1] == (5780 * MS, 'center')
    # A miss: the subject sits out miss_timeout_ms, then a center delay.
    subject.set_params(FIXED.with_(miss_rate=1.0))
    clock.advance(0.1)
    miss = subject.on_stimulus(-1.0)
    assert miss is not None and miss.side is None and subject.state == 'missed'
    clock.advance(4.999)
    assert pokes[-1] == (5780 * MS, 'center')
    clock.advance(0.001)
    assert pokes[-1] == (10880 * MS, 'center')
    assert (subject.counts.responses, subject.counts.misses, subject.counts.center_pokes) == \
        ({'left': 0, 'right': 1}, 1, 4)
    subject.stop()
    clock.advance(100.0)
    assert len(pokes) == 5


@pytest.mark.parametrize('mode', ['gonogo', 'detect'])
def test_gonogo_and_detect_respond_at_one_port_with_the_models_probability(mode: str):
    """p(respond | x) = (1 - miss_rate) p(right | x): a go tone (x = +1) and a no-go tone (x = -1) give the hit and
    false alarm rates; "detect" never pokes the center and answers only stimuli."""
    params = SubjectParams(slope=2.0, lapse=0.1, miss_rate=0.1, rt_mean_ms=100.0, rt_sd_ms=0.0, rt_min_ms=0.0,
                           center_delay_mean_ms=50.0, center_delay_sd_ms=0.0, miss_timeout_ms=200.0)
    clock = FakeClock()
    pokes: list[str] = []
    subject = VirtualSubject(params, clock, pokes.append, seed=4, mode=mode, response_port='left')
    subject.start()
    n = 2000
    responded = {1.0: 0, -1.0: 0}
    for k in range(n):
        x = 1.0 if k % 2 == 0 else -1.0
        if mode == 'gonogo':
            run_until(clock, lambda: subject.state == 'waiting')
        before = len([p for p in pokes if p == 'left'])
        subject.on_stimulus(x)
        clock.advance(0.5)
        responded[x] += len([p for p in pokes if p == 'left']) - before
    for x, count in responded.items():
        p = (1 - params.miss_rate) * expected_p_right(x, params)
        assert abs(count / (n / 2) - p) <= binomial_tolerance(p, n // 2), (x, count, p)
    assert set(pokes) == ({'left', 'center'} if mode == 'gonogo' else {'left'})
    assert subject.counts.withheld + subject.counts.misses + sum(subject.counts.responses.values()) == n


def test_same_seed_and_stimuli_give_the_same_pokes():
    params = SubjectParams(lapse=0.1, slope=3.0, miss_rate=0.1, miss_timeout_ms=2000.0)
    xs = [random.Random(1).choice([-1.0, -0.3, 0.3, 1.0]) for _ in range(200)]
    _, first = run_session(params, 42, xs)
    _, again = run_session(params, 42, xs)
    _, other = run_session(params, 43, xs)
    assert first == again and len(first) > 200
    assert first != other


def test_choices_do_not_depend_on_timing_parameters():
    xs = [(-1.0) ** k * 0.2 for k in range(300)]
    a, _ = run_session(SubjectParams(lapse=0.1, slope=3.0), 7, xs)
    b, _ = run_session(SubjectParams(lapse=0.1, slope=3.0, rt_mean_ms=900.0, rt_sd_ms=400.0,
                                     center_delay_mean_ms=200.0, stimulus_wait_ms=100.0), 7, xs, onset_lag_ms=40.0)
    assert [r.side for r in a.history] == [r.side for r in b.history]
    assert [r.rt_ms for r in a.history] != [r.rt_ms for r in b.history]


def test_measured_accuracy_over_a_session_matches_the_model():
    params = SubjectParams(bias=-0.1, slope=4.0, lapse=0.1, miss_rate=0.05, rt_mean_ms=400.0, rt_sd_ms=120.0,
                           rt_min_ms=200.0, center_delay_mean_ms=500.0, center_delay_sd_ms=200.0)
    levels = [-1.0, -0.4, -0.1, 0.1, 0.4, 1.0]
    rng = random.Random(9)
    subject, pokes = run_session(params, 2024, [rng.choice(levels) for _ in range(6000)], onset_lag_ms=0.0)
    assert len(subject.history) == 6000
    responded = [r for r in subject.history if r.side is not None]
    n_miss = len(subject.history) - len(responded)
    assert abs(n_miss / len(subject.history) - 0.05) <= binomial_tolerance(0.05, len(subject.history))
    for x in levels:
        trials = [r for r in responded if r.x == x]
        correct = sum((r.side == 'right') == (x > 0) for r in trials) / len(trials)
        p = expected_accuracy(x, params)
        assert abs(correct - p) <= binomial_tolerance(p, len(trials)), (x, correct, p)
    # Reaction times as drawn are what the pokes show (onset -> poke), with the model's mean and sd.
    assert all(abs(r.poke_ns - r.onset_ns - r.rt_ms * MS) < 1000 for r in responded)
    rts = [r.rt_ms for r in responded]
    assert abs(statistics.fmean(rts) - 400.0) <= 4 * 120.0 / math.sqrt(len(rts)) and min(rts) >= 200.0
    assert [p for _, p in pokes].count('left') + [p for _, p in pokes].count('right') == len(responded)


def test_free_water_pokes_sides_and_prefers_the_rewarded_port():
    params = SubjectParams(free_water_interval_mean_ms=1000.0, free_water_interval_sd_ms=500.0, free_water_stay=0.8)
    subject, clock, pokes = make_subject(params, seed=4, mode='free_water')
    subject.start()
    run_until(clock, lambda: len(pokes) >= 4000)
    sides = [p for _, p in pokes]
    assert set(sides) == {'left', 'right'}
    n = len(sides)
    assert abs(sides.count('left') / n - 0.5) <= binomial_tolerance(0.5, n)
    gaps = [(b - a) / MS for (a, _), (b, _) in itertools.pairwise(pokes)]
    assert abs(statistics.fmean(gaps) - 1000.0) <= 4 * 500.0 / math.sqrt(len(gaps))
    # After a reward on the left: p(left) = stay + (1 - stay) / 2 = 0.9.
    subject.on_reward('left')
    start = len(pokes)
    run_until(clock, lambda: len(pokes) >= start + 4000)
    later = [p for _, p in pokes[start:]]
    assert abs(later.count('left') / len(later) - 0.9) <= binomial_tolerance(0.9, len(later))
    assert subject.counts.rewards == {'left': 1, 'right': 0}
    assert subject.on_stimulus(1.0) is None  # not doing 2AFC
    # Switching modes: idle does nothing; 2afc starts with a center poke.
    subject.set_mode('idle')
    n_before = len(pokes)
    clock.advance(60.0)
    assert len(pokes) == n_before and subject.state == 'idle'
    subject.set_mode('2afc')
    run_until(clock, lambda: len(pokes) > n_before)
    assert pokes[-1][1] == 'center'


# -- the node on a simulated rig -------------------------------------------------------------------
def subject_cmd(*args: str) -> list[str]:
    return [SUBJECT, '--ros-args', '-r', f'__ns:={NS}', *args]


def stamp_ns(msg: GpioEvent | SoundOnset) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


class Rig:
    """The test's view of /rig1: gpio events, sound onsets, sound play and gpio output."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.events: list[GpioEvent] = []
        self.onsets: list[SoundOnset] = []
        self.event_sub = node.create_subscription(GpioEvent, f'{NS}/gpio/events', self.events.append, qos.EVENTS)
        self.onset_sub = node.create_subscription(SoundOnset, f'{NS}/sound/onsets', self.onsets.append, qos.EVENTS)
        self.play_pub = node.create_publisher(SoundPlay, f'{NS}/sound/play', qos.EVENTS)
        self.output_pub = node.create_publisher(DigitalOutput, f'{NS}/gpio/output', qos.EVENTS)
        self.load_cli = node.create_client(LoadSound, f'{NS}/sound/load')

    def spin_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        ok = spin(self.node, self.node.executor_, until=condition, timeout_sec=timeout)
        assert ok, f'{what}; gpio events: {[(m.device, m.level) for m in self.events]}'

    def of(self, *devices: str) -> list[GpioEvent]:
        return [m for m in self.events if m.device in devices]

    def load(self, sound_id: str, **kw: float) -> None:
        spec = SoundSpec(id=sound_id, kind=SoundSpec.KIND_TONE, frequency_hz=2000.0, duration_ms=100.0, amplitude=0.2)
        for k, v in kw.items():
            setattr(spec, k, v)
        res = call(self.node, self.load_cli, LoadSound.Request(sound=spec))
        assert res.success, res.message

    def play(self, sound_id: str, play_id: int) -> SoundOnset:
        msg = SoundPlay(sound_id=sound_id, play_id=play_id)
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.play_pub.publish(msg)
        self.spin_until(lambda: any(o.play_id == play_id for o in self.onsets), 10, f'no onset for play {play_id}')
        onset = next(o for o in self.onsets if o.play_id == play_id)
        assert onset.ok, onset.message
        return onset


def test_subject_pokes_the_center_and_answers_tones_on_a_simulated_rig(procs, node, tmp_path):
    gpio = procs([GPIO, '--ros-args', '--params-file', RIG, '-r', f'__ns:={NS}', '-p',
                  f'calibration_file:={tmp_path / "cal.jsonl"}'], name='gpio')
    sound = procs([SOUND, '--ros-args', '-r', f'__ns:={NS}', '-p', 'backend:=null'], name='sound')
    # A decisive, punctual animal: no lapses or misses, a fixed 300 ms reaction time; it retries the center
    # after 700 ms without a stimulus.
    subject = procs(subject_cmd('-p', 'seed:=3', '-p', 'lapse:=0.0', '-p', 'slope:=50.0', '-p', 'miss_rate:=0.0',
                                '-p', 'rt_mean_ms:=300.0', '-p', 'rt_sd_ms:=0.0', '-p', 'rt_min_ms:=0.0',
                                '-p', 'center_delay_mean_ms:=300.0', '-p', 'center_delay_sd_ms:=100.0',
                                '-p', 'stimulus_wait_ms:=700.0'), name='subject_sim')
    rig = Rig(node)
    gpio.wait_for_output('gpio ready')
    sound.wait_for_output('sound server ready')
    subject.wait_for_output('gpio/sim_input matched')
    # Volatile topics: every endpoint matched before anything is played; the subject hears the onsets too.
    rig.spin_until(lambda: rig.event_sub.get_publisher_count() == 1 and rig.onset_sub.get_publisher_count() == 1
                   and rig.play_pub.get_subscription_count() == 1 and rig.output_pub.get_subscription_count() == 1
                   and node.count_subscribers(f'{NS}/sound/onsets') == 2
                   and node.count_subscribers(f'{NS}/gpio/events') == 2, 20, 'endpoints not matched')
    rig.load('tone_left', frequency_hz=2000.0)
    rig.load('tone_right', frequency_hz=8000.0)
    rig.load('noise', kind=SoundSpec.KIND_NOISE)

    # With nothing played, the subject pokes the center again and again (pull-up poke: low while poked).
    rig.spin_until(lambda: len([m for m in rig.of('poke_center') if not m.level]) >= 2, 10, 'no center pokes')
    assert not rig.of('poke_left', 'poke_right')

    # tone_right (x = +1) -> poke_right. That device reports falling edges only: the poke itself, 300 ms on.
    onset = rig.play('tone_right', 1)
    rig.spin_until(lambda: rig.of('poke_right'), 5, 'no poke_right after tone_right')
    poke = rig.of('poke_right')[0]
    assert not poke.level
    assert 300 - 5 <= (stamp_ns(poke) - stamp_ns(onset)) / MS <= 300 + 300
    subject.wait_for_output('response 1: tone_right x=+1 -> right, rt 300 ms')

    # tone_left (x = -1) -> poke_left, whose falling edge is the poke itself: 300 ms after the onset.
    onset = rig.play('tone_left', 2)
    rig.spin_until(lambda: rig.of('poke_left'), 5, 'no poke_left after tone_left')
    poke = rig.of('poke_left')[0]
    assert not poke.level
    assert 300 - 5 <= (stamp_ns(poke) - stamp_ns(onset)) / MS <= 300 + 300

    # A sound that is not a stimulus is ignored.
    rig.spin_until(lambda: len(rig.of('poke_left')) == 2, 5, 'poke_left never released')
    rig.play('noise', 3)
    assert not spin(node, node.executor_, timeout_sec=1.0,
                    until=lambda: len(rig.of('poke_left', 'poke_right')) > 3)

    # A valve opening is a reward the subject counts.
    rig.output_pub.publish(DigitalOutput(device='valve_left', mode=DigitalOutput.MODE_PULSE, pulse_us=20_000))
    subject.wait_for_output('reward at left (valve_left)')
    rig.spin_until(lambda: len(rig.of('poke_center')) >= 6, 10, 'center pokes stopped after the responses')

    assert subject.stop() == 0
    out = subject.output()
    assert 'subject_sim stopped: responses 2 (left 1, right 1), misses 0' in out, out
    assert 'rewards 1 (left 1, right 0)' in out and 'never seen' not in out, out


def test_subject_free_water_on_a_simulated_rig(procs, node, tmp_path):
    gpio = procs([GPIO, '--ros-args', '--params-file', RIG, '-r', f'__ns:={NS}', '-p',
                  f'calibration_file:={tmp_path / "cal.jsonl"}'], name='gpio')
    rig = Rig(node)
    rig.spin_until(lambda: rig.event_sub.get_publisher_count() == 1, 20, 'gpio events not matched')
    gpio.wait_for_output('gpio ready')
    subject = procs(subject_cmd('-p', 'mode:=free_water', '-p', 'free_water_interval_mean_ms:=150.0',
                                '-p', 'free_water_interval_sd_ms:=50.0', '-p', 'poke_hold_ms:=20.0'),
                    name='subject_sim')
    # poke_left gives two edges per poke, poke_right (falling only) one.
    rig.spin_until(lambda: len(rig.of('poke_left')) // 2 + len(rig.of('poke_right')) >= 8, 15, 'too few pokes')
    assert not rig.of('poke_center')

    # Parameters change on the running node; a combination the model cannot use is refused with the reason.
    set_cli = node.create_client(SetParameters, f'{NS}/subject_sim/set_parameters')
    res = call(node, set_cli, SetParameters.Request(parameters=[
        Parameter('rt_mean_ms', value=100.0).to_parameter_msg()]))
    assert not res.results[0].successful and 'must be greater than rt_min_ms (150)' in res.results[0].reason
    res = call(node, set_cli, SetParameters.Request(parameters=[Parameter('mode', value='idle').to_parameter_msg()]))
    assert res.results[0].successful, res.results[0].reason
    subject.wait_for_output('parameters set: mode=idle')
    spin(node, node.executor_, timeout_sec=0.3)  # a poke sent just before the switch may still arrive
    n = len(rig.of('poke_left', 'poke_right'))
    assert not spin(node, node.executor_, timeout_sec=1.0, until=lambda: len(rig.of('poke_left', 'poke_right')) > n)
    assert subject.stop() == 0
    assert 'free-water pokes' in subject.output()


@pytest.mark.parametrize('args, fragment', [
    (['-p', 'stimulus_values:=[1.0]'], "parameter 'stimulus_ids': stimulus_ids has 2 entries but stimulus_values "
                                       'has 1'),
    (['-p', 'rt_mean_ms:=100.0'], "parameter 'rt_mean_ms': rt_mean_ms (100) must be greater than rt_min_ms (150)"),
    (['-p', 'mode:=sleepy'], "parameter 'mode'"),
])
def test_bad_parameters_exit_1_with_one_line(procs, args, fragment):
    p = procs(subject_cmd(*args), name='bad_subject')
    assert p.wait(timeout=20) == 1
    out = p.output()
    assert '[FATAL]' in out and fragment in out and len(out.strip().splitlines()) == 1, out
