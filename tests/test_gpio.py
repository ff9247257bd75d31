"""The gpio node across processes, sim backend: events, outputs, safety, calibration, startup errors.

The node runs as its installed executable with the example rig params file (launch/params/rig_sim.yaml);
the test is another rclpy process on the same private domain. Timing is checked on ``tick_us`` (the
backend's clock), never on receive times: the sim's timing thread fires an edge no earlier than due and
late by scheduling latency only (p50 35 us, p99 3 ms at load 4 on 2 cores; up to 25 ms seen with the machine
saturated by parallel test sessions), hence [nominal, nominal + 30 ms] (see test_gpio_logic.py).
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from autopilot_msgs.msg import DigitalOutput, GpioEvent, PilotStatus, Reward, SimInput
from autopilot_msgs.srv import CalibrateValve, GetCalibration, RecordCalibration, SetDigitalOutput, SimulateInput
from conftest import call as call_service
from rclpy.node import Node

from autopilot_core import qos, stamps
from autopilot_core.executors import spin

ROOT = Path(__file__).resolve().parent.parent
GPIO = str(ROOT / 'install' / 'autopilot_hardware' / 'lib' / 'autopilot_hardware' / 'gpio')
AUTOPILOT = str(ROOT / 'install' / 'autopilot_cli' / 'bin' / 'autopilot')
RIG = str(ROOT / 'launch' / 'params' / 'rig_sim.yaml')
NS = '/rig_1'
LATE_US = 30_000


def gpio_cmd(*args: str) -> list[str]:
    return [GPIO, '--ros-args', '--params-file', RIG, '-r', f'__ns:={NS}', *args]


class Events:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.msgs: list[GpioEvent] = []
        self.sub = node.create_subscription(GpioEvent, f'{NS}/gpio/events', self.msgs.append, qos.EVENTS)

    def wait(self, n: int, device: str | None = None, timeout: float = 5.0) -> list[GpioEvent]:
        def got() -> list[GpioEvent]:
            return [m for m in self.msgs if device is None or m.device == device]
        assert spin(self.node, self.node.executor_, until=lambda: len(got()) >= n, timeout_sec=timeout), \
            [(m.device, m.level) for m in self.msgs]
        return got()


def call(node: Node, srv_type, name: str, request, timeout: float = 10.0):
    return call_service(node, node.create_client(srv_type, name), request, timeout)


def pulse_us(events: list[GpioEvent]) -> int:
    rise, fall = events[-2:]
    assert (rise.level, fall.level) == (True, False)
    return fall.tick_us - rise.tick_us


def test_inputs_outputs_calibration_and_sigint(procs, node, tmp_path):
    cal_file = tmp_path / 'cal.jsonl'
    gpio = procs(gpio_cmd('-p', f'calibration_file:={cal_file}'), name='gpio')
    gpio.wait_for_output('gpio ready')
    ev = Events(node)
    output_pub = node.create_publisher(DigitalOutput, f'{NS}/gpio/output', qos.EVENTS)
    sim_pub = node.create_publisher(SimInput, f'{NS}/gpio/sim_input', qos.EVENTS)
    reward_pub = node.create_publisher(Reward, f'{NS}/gpio/reward', qos.EVENTS)
    # Events are volatile: match before anything happens.
    assert spin(node, node.executor_, until=lambda: ev.sub.get_publisher_count() == 1
                and output_pub.get_subscription_count() == 1 and sim_pub.get_subscription_count() == 1
                and reward_pub.get_subscription_count() == 1, timeout_sec=20)

    # A poke by service: poke_left is pulled up, so a poke is a falling edge, then back high after hold_us.
    res = call(node, SimulateInput, f'{NS}/gpio/simulate_input',
               SimulateInput.Request(input=SimInput(device='poke_left', level=False, hold_us=80_000)))
    assert res.success, res.message
    down, up = ev.wait(2, 'poke_left')
    assert (down.pin, down.level, down.tick_us, down.backend) == (17, False, res.tick_us, 'sim')
    assert up.level and 80_000 <= up.tick_us - down.tick_us <= 80_000 + LATE_US
    # stamp is ROS time mapped from the tick: its differences follow tick_us, and it is "now" to < 1 s.
    stamp_ns = lambda m: stamps.to_ns(m.header.stamp)  # noqa: E731
    assert abs((stamp_ns(up) - stamp_ns(down)) - (up.tick_us - down.tick_us) * 1000) < 2000
    assert abs(stamp_ns(up) - node.get_clock().now().nanoseconds) < 1e9
    # Pokes by topic (pulled-up sensors: active low); poke_right reports falling edges only (pokes in).
    sim_pub.publish(SimInput(device='poke_right', level=False, hold_us=30_000))
    sim_pub.publish(SimInput(device='poke_center', level=False, hold_us=40_000))
    center = ev.wait(2, 'poke_center')
    assert [m.level for m in center] == [False, True]
    assert 40_000 <= center[1].tick_us - center[0].tick_us <= 40_000 + LATE_US
    assert [(m.pin, m.level) for m in ev.wait(1, 'poke_right')] == [(9, False)]

    # A 50 ms pulse, acknowledged; then a train by topic.
    res = call(node, SetDigitalOutput, f'{NS}/gpio/set_output', SetDigitalOutput.Request(
        command=DigitalOutput(device='led_center', mode=DigitalOutput.MODE_PULSE, pulse_us=50_000)))
    assert res.success, res.message
    led = ev.wait(2, 'led_center')
    assert led[0].tick_us == res.tick_us and 50_000 <= pulse_us(led) <= 50_000 + LATE_US
    output_pub.publish(DigitalOutput(device='led_center', mode=DigitalOutput.MODE_TRAIN, pulse_us=10_000,
                                     train_off_us=20_000, train_count=3))
    train = ev.wait(8, 'led_center')[2:]
    assert [m.level for m in train] == [True, False] * 3
    for i, m in enumerate(train):
        nominal = train[0].tick_us + (i // 2) * 30_000 + (i % 2) * 10_000
        assert nominal <= m.tick_us <= nominal + LATE_US

    # Refused at run time: over the valve's max_open_ms (200 ms), unknown device; the node stays up.
    res = call(node, SetDigitalOutput, f'{NS}/gpio/set_output', SetDigitalOutput.Request(
        command=DigitalOutput(device='valve_left', mode=DigitalOutput.MODE_PULSE, pulse_us=500_000)))
    assert not res.success and 'valve_left: pulse of 500 ms exceeds max_open_ms 200 ms' in res.message
    res = call(node, SimulateInput, f'{NS}/gpio/simulate_input',
               SimulateInput.Request(input=SimInput(device='poke_nope', level=True)))
    assert not res.success and "unknown device 'poke_nope'" in res.message
    output_pub.publish(DigitalOutput(device='valve_left', mode=DigitalOutput.MODE_PULSE, pulse_us=0))
    gpio.wait_for_output('gpio/output refused: valve_left: pulse of 0 us: the high time must be > 0')
    assert not [m for m in ev.msgs if m.device == 'valve_left']

    # Calibration through the CLI (runs on the node's timing), then a reward uses the fit.
    res = call(node, CalibrateValve, f'{NS}/gpio/calibrate_valve', CalibrateValve.Request(
        device='valve_left', n_openings=2, open_ms=10.0, interval_ms=5.0))
    assert res.success and res.total_open_ms == pytest.approx(20.0)
    cal = ev.wait(4, 'valve_left')
    assert [m.level for m in cal] == [True, False, True, False]
    assert 10_000 <= pulse_us(cal[:2]) <= 10_000 + LATE_US
    res = call(node, RecordCalibration, f'{NS}/gpio/record_calibration', RecordCalibration.Request(
        device='valve_left', n_openings=2, open_ms=10.0, measured_volume_ul=3.5))      # 1.75 uL per opening
    assert res.success and res.n_points == 1
    cli = subprocess.run([AUTOPILOT, 'calibrate', 'valve_left', '-n', NS, '--openings', '3', '--open-ms', '20',
                          '--interval-ms', '5'], input='a lot\n12.75\n',              # 4.25 uL per opening
                         capture_output=True, text=True, timeout=30)
    assert cli.returncode == 0, cli.stderr + cli.stdout
    assert "'a lot' is not a volume" in cli.stdout and 'valve_left: open_ms = 3 + 4 * v' in cli.stdout and '2 point(s)' in cli.stdout
    assert len(cal_file.read_text().splitlines()) == 2
    ev.wait(4 + 6, 'valve_left')
    reward_pub.publish(Reward(device='valve_left', volume_ul=4.0))                      # 3 + 4 * 4 = 19 ms
    reward = ev.wait(12, 'valve_left')
    assert 19_000 <= pulse_us(reward) <= 19_000 + LATE_US

    # SIGINT with an output high: the node drives it low (the event arrives) and exits 0.
    res = call(node, SetDigitalOutput, f'{NS}/gpio/set_output', SetDigitalOutput.Request(
        command=DigitalOutput(device='led_center', mode=DigitalOutput.MODE_LEVEL, level=True)))
    assert res.success
    ev.wait(9, 'led_center')
    gpio.signal(signal.SIGINT)
    last = ev.wait(10, 'led_center')[-1]
    assert not last.level
    assert gpio.wait(timeout=10) == 0
    assert 'all outputs off (valves closed)' in gpio.output()


def test_outputs_go_low_when_the_pilot_heartbeat_stops(procs, node, tmp_path):
    gpio = procs(gpio_cmd('-p', f'calibration_file:={tmp_path / "c.jsonl"}', '-p',
                          f'pilot_status_topic:={NS}/pilot/status', '-p', 'pilot_timeout_s:=1.0'), name='gpio')
    gpio.wait_for_output('gpio ready')
    ev = Events(node)
    status_pub = node.create_publisher(PilotStatus, f'{NS}/pilot/status', qos.STATUS)
    assert spin(node, node.executor_, until=lambda: ev.sub.get_publisher_count() == 1
                and status_pub.get_subscription_count() == 1, timeout_sec=20)
    status_pub.publish(PilotStatus(pilot='rig_1'))
    res = call(node, SetDigitalOutput, f'{NS}/gpio/set_output', SetDigitalOutput.Request(
        command=DigitalOutput(device='led_center', mode=DigitalOutput.MODE_LEVEL, level=True)))
    assert res.success
    ev.wait(1, 'led_center')
    t_last_beat = time.monotonic()
    status_pub.publish(PilotStatus(pilot='rig_1'))
    low = ev.wait(2, 'led_center', timeout=5)[-1]
    assert not low.level and time.monotonic() - t_last_beat >= 0.9
    gpio.wait_for_output('pilot heartbeat silent for 1 s: all outputs off (valves closed)')
    gpio.signal(signal.SIGTERM)              # SIGTERM stops it like SIGINT: cleanly, outputs low
    assert gpio.wait(timeout=10) == 0 and 'gpio stopped: all outputs off (valves closed)' in gpio.output()


def test_get_calibration_lists_points_and_fit_and_force_stores_a_disagreeing_point(procs, node, tmp_path):
    cal_file = tmp_path / 'cal.jsonl'
    gpio = procs(gpio_cmd('-p', f'calibration_file:={cal_file}', '-p', 'calibration_window:=3'), name='gpio')
    gpio.wait_for_output('gpio ready')

    def get(device: str) -> GetCalibration.Response:
        return call(node, GetCalibration, f'{NS}/gpio/get_calibration', GetCalibration.Request(device=device))

    def record(volume_ul: float, open_ms: float, force: bool = False) -> RecordCalibration.Response:
        return call(node, RecordCalibration, f'{NS}/gpio/record_calibration', RecordCalibration.Request(
            device='valve_left', n_openings=100, open_ms=open_ms, measured_volume_ul=volume_ul, force=force))

    res = get('')
    assert res.success and list(res.valves) == ['valve_left', 'valve_right', 'valve_center']
    assert res.file == str(cal_file)
    assert not res.points and not res.fit_coefficients
    res = get('valve_left')
    assert res.success and not res.points and not res.fit_coefficients and 'not calibrated yet' in res.fit
    res = get('led_center')
    assert not res.success and ("'led_center' is not a valve of /rig_1/gpio (valves: valve_left, valve_right, "
                                "valve_center)") in res.message
    # open_ms = 3 + 4 v: 1.75, 4.25 and 9.25 uL per opening at 10, 20 and 40 ms.
    for volume, ms in ((175.0, 10.0), (425.0, 20.0), (925.0, 40.0)):
        assert record(volume, ms).success
    res = get('valve_left')
    assert res.success and [(p.n_openings, p.open_ms, p.measured_volume_ul, p.used) for p in res.points] == [
        (100, 10.0, 175.0, True), (100, 20.0, 425.0, True), (100, 40.0, 925.0, True)]
    assert res.fit_coefficients == pytest.approx([3.0, 4.0]) and 'open_ms = 3 + 4 * v' in res.fit
    assert res.points[0].time.sec > 1_700_000_000 and res.file == str(cal_file)
    # Ten times the water the fit predicts: refused (nothing stored), then stored with force.
    res = record(9250.0, 40.0)
    assert not res.success and '10.0x off the current fit' in res.message and 'force=True' in res.message
    assert len(get('valve_left').points) == 3 and len(cal_file.read_text().splitlines()) == 3
    res = record(9250.0, 40.0, force=True)
    assert res.success and res.n_points == 3, res.message
    gpio.wait_for_output('(stored with force: the agreement check with the fit was skipped)')
    # The window is 3 points: the oldest is kept in the history, no longer used.
    res = get('valve_left')
    assert [p.used for p in res.points] == [False, True, True, True] and res.points[-1].measured_volume_ul == 9250.0
    assert len(cal_file.read_text().splitlines()) == 4
    assert not get('valve_right').points


@pytest.mark.parametrize('args, fragment', [
    (['-p', 'devices.valve_left.pin:=17'], "[FATAL] gpio: pin 17 is claimed twice, by 'poke_left' and 'valve_left'"),
    (['-p', 'devices.poke_left.pin:=40'], "[FATAL] gpio: device 'poke_left': pin 40 does not exist on this backend"),
    (['-p', 'devices.valve_left.max_open_ms:=-5.0'], "parameter 'devices.valve_left.max_open_ms': given value -5.0 "
                                                     "is out of range"),
    (['-p', 'backend:=pigpio', '-p', 'pigpio_port:=1'], '[FATAL] gpio: cannot reach pigpiod at localhost:1'),
    (['-p', 'backend:=lgpio'], '[FATAL] gpio: cannot open /dev/gpiochip0'),
    (['-p', 'outputs:=valve_left'], "[FATAL] gpio: parameter 'outputs': 'valve_left' is not a list of device names; "
                                    'write it as outputs: [name1, name2]'),
])
def test_startup_errors_exit_1_with_one_line(procs, args, fragment):
    p = procs(gpio_cmd(*args), name='bad_gpio')
    assert p.wait(timeout=20) == 1
    out = p.output()
    assert fragment in out and len(out.strip().splitlines()) == 1, out
