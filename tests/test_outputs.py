"""Outputs (issue 20, item 5): active-low devices, RGB LEDs, timed output series, on every backend.

Active-low is a safety property: an active-low valve is closed when its pin is HIGH, so "every output
off" must drive it high, from the claim on, on every path (stop, heartbeat loss, a refused command, the
end of a pulse or series). The sim backend keeps the electrical level of each pin (``electrical``), so the
tests read the pin as a scope would; pigpio and lgpio are checked on the calls they make to their
daemon/library, the sim through its real timing thread.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from autopilot_msgs.msg import DigitalOutput, PilotStatus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rclpy.parameter import Parameter
from test_gpio_logic import LATE_US, FakePi, Recorder, values_for

from autopilot_core import qos
from autopilot_core.executors import spin
from autopilot_hardware.gpio import backends as gb
from autopilot_hardware.gpio.backends import SimBackend
from autopilot_hardware.gpio.calibration import CalibrationStore
from autopilot_hardware.gpio.colors import NAMED, ColorError, parse_color
from autopilot_hardware.gpio.config import ConfigError, build_table
from autopilot_hardware.gpio.controller import (
    COMMAND_ERRORS,
    MODE_COLOR,
    MODE_LEVEL,
    MODE_PULSE,
    MODE_PWM,
    MODE_SERIES,
    MODE_TRAIN,
    GpioController,
)
from autopilot_hardware.gpio.limits import LimitError, check_series, series_intervals

VALVE, LED, R, G, B = 5, 6, 23, 24, 25


class DutySim(SimBackend):
    """The sim backend, also remembering each pin's last PWM duty (the sim reports PWM as one edge)."""

    def __init__(self, on_edge) -> None:
        super().__init__(on_edge)
        self.duty: dict[int, float] = {}

    def pwm(self, pin: int, frequency_hz: float, duty: float) -> int:
        t = super().pwm(pin, frequency_hz, duty)
        self.duty[pin] = duty
        return t

    def write(self, pin: int, level: bool) -> int:
        if pin in self.duty:
            self.duty[pin] = float(level)  # a write ends PWM (all_low's path)
        return super().write(pin, level)


def rig_values() -> dict[str, object]:
    return values_for({}, {'valve': VALVE, 'led': LED, 'cue': 0}, **{
        'devices.valve.kind': 'valve', 'devices.valve.max_open_ms': 100.0, 'devices.valve.active_low': True,
        'devices.cue.kind': 'led_rgb', 'devices.cue.pin_red': R, 'devices.cue.pin_green': G,
        'devices.cue.pin_blue': B, 'devices.cue.active_low': True})


@pytest.fixture
def rig(tmp_path: Path):
    rec = Recorder()
    b = DutySim(rec)
    store = CalibrationStore(tmp_path / 'c.jsonl')
    store.record('valve', 100, 10.0, 200.0)
    c = GpioController(build_table([], ['valve', 'led', 'cue'], rig_values(), 27), b, store)
    c.claim_all()
    yield c, b, rec
    c.close()


def wait_until(cond, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


# -- configuration -------------------------------------------------------------------------------------
def test_table_has_active_low_and_rgb_devices_and_names_what_is_missing():
    table = build_table([], ['valve', 'led', 'cue'], rig_values(), 27)
    assert table['valve'].active_low and not table['led'].active_low
    assert table['cue'].rgb_pins == (R, G, B) and table['cue'].pins == (R, G, B) and table['led'].pins == (LED,)
    v = rig_values()
    v['devices.cue.pin_green'] = -1
    with pytest.raises(ConfigError, match=r"device 'cue' has no pin green: set devices.cue.pin_green"):
        build_table([], ['valve', 'led', 'cue'], v, 27)
    v['devices.cue.pin_green'] = VALVE
    with pytest.raises(ConfigError, match=r"pin 5 is claimed twice, by 'valve' and 'cue'"):
        build_table([], ['valve', 'led', 'cue'], v, 27)


@pytest.mark.parametrize('text, rgb', [('red', (1, 0, 0)), (' Amber ', (1, 0.75, 0)), ('#ff8000', (1, 128 / 255, 0)),
                                       ('OFF', (0, 0, 0)), ('#FFFFFF', (1, 1, 1))])
def test_colours_by_name_or_hex(text, rgb):
    assert parse_color(text) == pytest.approx(rgb)


@given(st.one_of(st.text(max_size=50), st.binary(max_size=20), st.integers(), st.none(),
                 st.integers(0, 100_000).map(lambda n: '#' * n)))
def test_any_colour_text_is_three_duties_or_a_color_error_naming_the_choices(text):
    try:
        rgb = parse_color(text)  # type: ignore[arg-type]
    except ColorError as exc:
        assert 'give a name (off, black, white, red' in str(exc) and len(str(exc)) < 400
    else:
        assert len(rgb) == 3 and all(0.0 <= x <= 1.0 for x in rgb)
        assert text.strip().lower() in NAMED or text.strip().startswith('#')


# -- active-low: the electrical level on every path ----------------------------------------------------
def test_an_active_low_valve_is_closed_high_from_its_claim_through_every_path(rig):
    c, b, rec = rig
    assert b.electrical(VALVE) is True and b.electrical(LED) is False   # closed: high; an active-high LED: low
    assert all(b.electrical(p) for p in (R, G, B))                       # a common-anode LED is dark when high
    c.output('valve', MODE_PULSE, pulse_us=20_000)
    assert b.electrical(VALVE) is False                                 # open: pulled low
    assert wait_until(lambda: b.electrical(VALVE))                       # the pulse's end closes it: high
    rise, fall = [e for e in rec.edges if e.pin == VALVE][-2:]
    assert (rise.level, fall.level) == (True, False)                     # events speak logical levels
    assert 20_000 <= fall.tick_us - rise.tick_us <= 20_000 + LATE_US
    c.reward('valve', 2.0)                                               # 10 ms by the calibration
    assert b.electrical(VALVE) is False
    c.all_low()                                                          # the heartbeat check's path
    assert b.electrical(VALVE) is True
    c.output('valve', MODE_LEVEL, level=True)                            # "open" = a capped opening
    assert wait_until(lambda: b.electrical(VALVE), timeout=0.1 + LATE_US / 1e6 + 0.5)
    with pytest.raises(COMMAND_ERRORS):                                  # a refused command changes nothing
        c.output('valve', MODE_PULSE, pulse_us=500_000)
    assert b.electrical(VALVE) is True
    time.sleep(0.11)                                                     # closed as long as it was open
    c.output('valve', MODE_SERIES, series_levels=[True, False, True], series_us=[10_000, 30_000, 10_000])
    assert wait_until(lambda: len([e for e in rec.edges if e.pin == VALVE]) >= 10) and b.electrical(VALVE)
    c.output('valve', MODE_PULSE, pulse_us=50_000)
    c.close()                                                            # the node's stop path
    assert b.electrical(VALVE) is True and b.electrical(LED) is False and all(b.electrical(p) for p in (R, G, B))


def test_active_low_on_pigpio_inverts_claims_writes_waves_pwm_and_reported_levels(monkeypatch):
    import pigpio
    monkeypatch.setattr(pigpio, 'pi', FakePi)
    rec = Recorder()
    b = gb.PigpioBackend(rec, 'localhost', 8888)
    pi = b.pi
    b.claim_output(5, active_low=True)
    b.claim_output(6)
    # The inactive level is written before the pin becomes an output: an active-low valve never opens at startup.
    assert pi.calls[:2] == [('write', 5, 1), ('set_mode', 5, pigpio.OUTPUT)] and ('write', 6, 0) in pi.calls
    b.pulses(5, 10_000, 20_000, 2)
    assert [(p.gpio_on, p.gpio_off, p.delay) for p in pi.waves[0]] == \
        [(0, 1 << 5, 10_000), (1 << 5, 0, 20_000), (0, 1 << 5, 10_000), (1 << 5, 0, 1)]
    b.write(5, True)
    assert pi.calls[-1] == ('write', 5, 0)
    b.pwm(5, 800.0, 0.25)
    assert pi.calls[-1] == ('set_PWM_dutycycle', 5, 750)                 # low (active) a quarter of the time
    assert [(e.pin, e.level) for e in rec.edges] == [(5, True)]          # the PWM reported once, as it began
    b._cb(5, 0, 1000)                                                     # its 800 Hz edges: not events
    b._cb(5, 1, 1400)
    b.write(5, True)                                                      # a command ends the PWM from "off"
    assert pi.calls[-2:] == [('write', 5, 1), ('write', 5, 0)] and rec.edges[-1].level is False
    b._cb(5, 0, 2000)                                                     # the pin went low: logically on
    b._cb(6, 0, 2010)
    assert [(e.pin, e.level) for e in rec.edges][-2:] == [(5, True), (6, False)]
    rec.edges.clear()
    b.series(5, [(True, 1000), (False, 2000), (True, 3000), (False, 4000)], 2)
    wave = [(p.gpio_on, p.gpio_off, p.delay) for p in pi.waves[max(pi.waves)]]
    assert wave == [(0, 32, 1000), (32, 0, 2000), (0, 32, 3000), (32, 0, 4000), (0, 32, 1000), (32, 0, 2000),
                    (0, 32, 3000), (32, 0, 1)]                            # trailing low dropped, ends inactive (high)
    b.close()
    assert ('write', 5, 1) in pi.calls[-4:] and ('write', 6, 0) in pi.calls[-4:]


class FakeLgpio:
    """The lgpio calls the backend makes, recorded (no gpiochip on a CI machine)."""

    SET_ACTIVE_LOW, SET_PULL_UP, SET_PULL_DOWN, SET_PULL_NONE = 4, 32, 64, 128
    RISING_EDGE, FALLING_EDGE, BOTH_EDGES = 1, 2, 3
    error = RuntimeError

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.lock = threading.Lock()

    def gpiochip_open(self, chip: int) -> int:
        return 7

    def gpio_get_chip_info(self, h: int) -> tuple:
        return (0, 54, 'gpiochip0', 'pinctrl')

    def __getattr__(self, name: str):
        def call(*args: object) -> int:
            with self.lock:
                self.calls.append((name, *args[1:]))
            return 0
        call.__name__ = name
        return call


def test_active_low_on_lgpio_is_the_line_flag_and_a_series_is_timed_and_replaced(monkeypatch):
    import sys
    fake = FakeLgpio()
    monkeypatch.setitem(sys.modules, 'lgpio', fake)
    rec = Recorder()
    b = gb.LgpioBackend(rec, 0)
    b.claim_output(5, active_low=True)
    b.claim_output(6)
    assert fake.calls[:2] == [('gpio_claim_output', 5, 0, FakeLgpio.SET_ACTIVE_LOW), ('gpio_claim_output', 6, 0, 0)]
    t0 = b.series(6, [(True, 20_000), (False, 20_000), (True, 20_000)], 1)
    edges = rec.wait(4)
    assert [e.level for e in edges] == [True, False, True, False]
    for e, nominal in zip(edges, (0, 20_000, 40_000, 60_000), strict=True):
        assert t0 + nominal <= e.tick_us <= t0 + nominal + LATE_US
    rec.edges.clear()
    b.series(6, [(True, 50_000), (False, 50_000)], 3)
    b.write(6, False)                                                     # replaces the series: nothing more runs
    time.sleep(0.2)
    assert [e.level for e in rec.edges] == [True, False]
    b.close()


# -- series --------------------------------------------------------------------------------------------
def test_series_run_each_step_at_its_nominal_time_then_end_inactive(rig):
    c, b, rec = rig
    t0 = c.output('led', MODE_SERIES, series_levels=[True, False, True, True, False], series_us=[
        10_000, 5_000, 10_000, 10_000, 5_000], series_repeat=2).tick_us
    edges = rec.wait(4 + 4)
    led = [e for e in edges if e.pin == LED]
    assert [e.level for e in led] == [True, False, True, False] * 2
    for e, nominal in zip(led, (0, 10_000, 15_000, 35_000, 40_000, 50_000, 55_000, 75_000), strict=True):
        assert t0 + nominal <= e.tick_us <= t0 + nominal + LATE_US
    assert series_intervals(0, [(True, 10), (False, 5), (True, 10), (True, 10)], 1) == [(0, 10), (15, 35)]


@pytest.mark.parametrize('levels, durations, repeat, fragment', [
    ([], [], 1, 'a series of 0 steps; 1 to 1000'),
    ([True] * 1001, [100] * 1001, 1, 'a series of 1001 steps'),
    ([True, False], [100], 1, '2 series levels but 1 durations: give one duration per level'),
    ([True], [10], 1, 'a series step of 10 us; each step lasts at least 50 us'),
    ([True, False], [100, 100], 10_001, 'series_repeat 10001; 1 to 10000'),
    ([True, False] * 500, [100] * 1000, 100, '1000 steps x 100 repeats; at most 20000'),
    ([True], [4_000_000_000], 1, 'the series lasts 4000 s; at most 3600 s'),
])
def test_series_bounds_name_the_fix(levels, durations, repeat, fragment):
    with pytest.raises(LimitError, match=fragment):
        check_series('led', levels, durations, repeat)


def test_a_valve_series_counts_as_openings_and_is_refused_whole_past_the_limit(rig):
    c, b, rec = rig
    with pytest.raises(LimitError, match='open 150 ms in one opening, over its max_open_ms of 100 ms'):
        # 60 + 90 ms open with 30 ms closed between: closed less than it was open, so one opening
        c.output('valve', MODE_SERIES, series_levels=[True, False, True], series_us=[60_000, 30_000, 90_000])
    assert b.electrical(VALVE) is True and [e for e in rec.edges if e.pin == VALVE] == []
    c.output('valve', MODE_SERIES, series_levels=[True, False], series_us=[20_000, 40_000], series_repeat=3)
    assert wait_until(lambda: len([e for e in rec.edges if e.pin == VALVE]) == 6)
    assert b.electrical(VALVE) is True


# -- led_rgb -------------------------------------------------------------------------------------------
def test_rgb_colours_set_three_channels_and_every_other_mode_shows_the_commands_colour(rig):
    c, b, rec = rig
    c.output('cue', MODE_COLOR, color='orange')
    assert [b.duty[p] for p in (R, G, B)] == pytest.approx([1.0, 0.5, 0.0])
    c.output('cue', MODE_LEVEL, level=False)
    assert [b.duty[p] for p in (R, G, B)] == [0.0, 0.0, 0.0] and all(b.electrical(p) for p in (R, G, B))
    c.output('cue', MODE_LEVEL, level=True)                               # no colour: white
    assert [b.duty[p] for p in (R, G, B)] == [1.0, 1.0, 1.0]
    c.output('cue', MODE_PULSE, pulse_us=30_000, color='#00ff00')
    assert [b.duty[p] for p in (R, G, B)] == [0.0, 1.0, 0.0]
    assert wait_until(lambda: b.duty[G] == 0.0)                           # dark again when the pulse ends
    green = [e for e in rec.edges if e.pin == G][-2:]
    assert 30_000 <= green[1].tick_us - green[0].tick_us <= 30_000 + LATE_US
    c.output('cue', MODE_TRAIN, pulse_us=20_000, train_off_us=20_000, train_count=3, color='blue')
    assert wait_until(lambda: len([e for e in rec.edges if e.pin == B]) == 6)
    c.output('cue', MODE_SERIES, series_levels=[True, False] * 5, series_us=[50_000] * 10, color='red')
    c.output('cue', MODE_COLOR, color='off')                              # replaces the running series
    n = len(rec.edges)
    time.sleep(0.15)
    assert len(rec.edges) == n and b.duty[R] == 0.0
    c.output('cue', MODE_SERIES, series_levels=[True, False] * 5, series_us=[50_000] * 10, color='red')
    c.all_low()                                                           # the heartbeat check stops it too
    time.sleep(0.15)
    assert b.duty[R] == 0.0 and all(b.electrical(p) for p in (R, G, B))


@pytest.mark.parametrize('device, mode, kwargs, fragment', [
    ('cue', MODE_COLOR, {}, "cue: MODE_COLOR needs a colour"),
    ('cue', MODE_COLOR, {'color': 'chartreuse'}, "colour 'chartreuse' is not known: give a name"),
    ('cue', MODE_PWM, {'pwm_duty': 0.5}, 'an led_rgb is dimmed by its colour'),
    ('cue', 9, {}, 'cue: unknown mode 9'),
    ('led', MODE_COLOR, {'color': 'red'}, 'a colour .* is for led_rgb outputs; led is a ttl'),
    ('valve', MODE_PULSE, {'pulse_us': 1000, 'color': 'red'}, 'is for led_rgb outputs; valve is a valve'),
    ('cue', MODE_PULSE, {'pulse_us': 10, 'color': 'red'}, 'high time of 10 us; at least 50 us'),
    ('cue', MODE_COLOR, {'color': 'x' * 1_000_000}, r"colour 'xxxx.*\(1000000 characters\) is not known"),
])
def test_bad_rgb_commands_are_refused_and_change_nothing(rig, device, mode, kwargs, fragment):
    c, b, rec = rig
    with pytest.raises(COMMAND_ERRORS, match=fragment):
        c.output(device, mode, **kwargs)
    assert rec.edges == [] and b.duty == {}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cmds=st.lists(st.tuples(st.sampled_from(['cue', 'valve', 'led']), st.integers(0, 6), st.booleans(),
                               st.integers(0, 300_000), st.sampled_from(['', 'red', '#102030', 'nope', 'off']),
                               st.lists(st.booleans(), max_size=5), st.lists(st.integers(0, 60_000), max_size=5),
                               st.integers(0, 3)), max_size=12))
def test_generated_output_commands_leave_the_active_low_valve_closed_after_all_low(rig, cmds):
    c, b, rec = rig
    for device, mode, level, us, color, levels, durations, repeat in cmds:
        try:
            c.output(device, mode, level=level, pulse_us=us, train_off_us=us, train_count=repeat, color=color,
                     series_levels=levels, series_us=durations, series_repeat=repeat)
        except COMMAND_ERRORS as exc:
            assert str(exc)
    c.all_low()
    time.sleep(0.002)
    assert b.electrical(VALVE) is True and all(b.electrical(p) for p in (R, G, B)) and not b.electrical(LED)


# -- the node: heartbeat loss and stop in a real rclpy process ------------------------------------------
def test_the_gpio_node_keeps_an_active_low_valve_closed_on_heartbeat_loss_and_stop(rclpy_context, tmp_path):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from autopilot_hardware.gpio.node import GpioNode
    overrides = [Parameter(k, value=v) for k, v in {
        'backend': 'sim', 'outputs': ['valve', 'cue'], 'calibration_file': str(tmp_path / 'c.jsonl'),
        'pilot_status_topic': '/rig_x/status', 'pilot_timeout_s': 0.5,
        'devices.valve.pin': VALVE, 'devices.valve.kind': 'valve', 'devices.valve.max_open_ms': 1000.0,
        'devices.valve.active_low': True, 'devices.cue.kind': 'led_rgb', 'devices.cue.pin_red': R,
        'devices.cue.pin_green': G, 'devices.cue.pin_blue': B, 'devices.cue.active_low': True}.items()]
    gpio = GpioNode(context=rclpy_context, namespace='/rig_x', parameter_overrides=overrides)
    pilot = Node('pilot_stand_in', context=rclpy_context)
    ex = SingleThreadedExecutor(context=rclpy_context)
    ex.add_node(gpio)
    ex.add_node(pilot)
    try:
        backend = gpio.ctl.backend
        assert isinstance(backend, SimBackend) and backend.electrical(VALVE) is True
        beat = pilot.create_publisher(PilotStatus, '/rig_x/status', qos.STATUS)
        out = pilot.create_publisher(DigitalOutput, '/rig_x/gpio/output', qos.EVENTS)
        assert spin(pilot, ex, until=lambda: beat.get_subscription_count() and out.get_subscription_count(),
                    timeout_sec=10)
        beat.publish(PilotStatus(pilot='rig_x'))
        out.publish(DigitalOutput(device='valve', mode=DigitalOutput.MODE_PULSE, pulse_us=900_000))
        out.publish(DigitalOutput(device='cue', mode=DigitalOutput.MODE_COLOR, color='green'))
        assert spin(pilot, ex, until=lambda: not backend.electrical(VALVE) and not backend.electrical(G),
                    timeout_sec=5)
        # No more beats: within pilot_timeout_s the node drives everything inactive, the valve's pin high.
        assert spin(pilot, ex, until=lambda: backend.electrical(VALVE) and backend.electrical(G), timeout_sec=5)
        assert gpio.beat_lost
        beat.publish(PilotStatus(pilot='rig_x'))  # back: commands work again (the valve's opening was cut short, and
        out.publish(DigitalOutput(device='cue', mode=DigitalOutput.MODE_COLOR, color='#00ff00'))  # it must rest)
        assert spin(pilot, ex, until=lambda: not backend.electrical(G), timeout_sec=5)
        gpio.close()                                                        # SIGINT/SIGTERM's path
        assert backend.electrical(VALVE) is True and backend.electrical(G) is True
    finally:
        ex.shutdown()
        gpio.destroy_node()
        pilot.destroy_node()
