"""The wheel device: counts -> velocity arithmetic and the simulated wheel (hypothesis), the evdev backend on the
evdev library's own event objects through a pipe (no input device here: see the README's hardware list), and a
real wheel node: its sample rate, a simulated run, hostile input refused, start-up errors in one line."""

from __future__ import annotations

import math
import os
import subprocess
import threading
import time
from pathlib import Path

import evdev
import pytest
from autopilot_msgs.msg import SimInput, WheelMotion
from conftest import Proc
from evdev import ecodes
from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot_core import executors, qos
from autopilot_hardware.wheel.evdev_wheel import EvdevWheel, WheelDeviceError, find_device
from autopilot_hardware.wheel.motion import Sampler, SimWheel

ROOT = Path(__file__).resolve().parent.parent
WHEEL = str(ROOT / 'install' / 'autopilot_hardware' / 'lib' / 'autopilot_hardware' / 'wheel')


@settings(max_examples=200, deadline=None)
@given(st.floats(-300, 300), st.lists(st.integers(1_000_000, 100_000_000), min_size=1, max_size=80),
       st.floats(0.001, 0.1))
def test_the_published_distance_is_the_integral_of_the_commanded_speed(speed, periods_ns, cm_per_count):
    """Whatever the sampling periods: counts carry their fractions over, so the distance is off by < 1 count."""
    sim = SimWheel(cm_per_count, noise_cm_s=0.0, seed=0, start_ns=0)
    sampler = Sampler(cm_per_count, invert=False, start_ns=0)
    sim.run(speed, 0)
    t = 0
    for p in periods_ns:
        t += p
        s = sampler.sample(sim.take(t), t)
        assert s.period_us == p // 1000
        assert s.velocity_cm_s == pytest.approx(s.counts * cm_per_count / (p / 1e9))
    assert abs(s.distance_cm - speed * t / 1e9) < cm_per_count + 1e-9


def test_a_run_lasts_its_duration_and_invert_flips_the_sign() -> None:
    sim = SimWheel(0.01, noise_cm_s=0.0, seed=0, start_ns=0)
    sampler = Sampler(0.01, invert=True, start_ns=0)
    sim.run(20.0, 0, duration_s=0.5)
    samples = [sampler.sample(sim.take(t), t) for t in range(20_000_000, 1_000_000_001, 20_000_000)]
    moving = [s for s in samples if s.counts]
    assert len(moving) == 25 and all(s.velocity_cm_s == pytest.approx(-20.0) for s in moving)
    assert samples[-1].distance_cm == pytest.approx(-10.0)
    with pytest.raises(ValueError, match='cm_per_count'):
        Sampler(math.nan, False, 0)


class PipeDevice:
    """What EvdevWheel uses of an evdev.InputDevice, fed through a pipe: a byte in the pipe makes the fd readable,
    ``read()`` then returns the queued evdev.InputEvent objects (the library's own class)."""

    name, path = 'Recorded Mouse', '/dev/input/event99'

    def __init__(self) -> None:
        self.fd, self._w = os.pipe()
        self.queue: list[list[evdev.InputEvent]] = []
        self.calls: list[str] = []
        self.fail: OSError | None = None
        self.lock = threading.Lock()

    def feed(self, *events: tuple[int, int, int]) -> None:
        with self.lock:
            self.queue.append([evdev.InputEvent(0, 0, *e) for e in events])
        os.write(self._w, b'x')

    def read(self):
        os.read(self.fd, 1)
        if self.fail is not None:
            raise self.fail
        with self.lock:
            if not self.queue:
                raise BlockingIOError
            return iter(self.queue.pop(0))

    def grab(self) -> None:
        self.calls.append('grab')

    def ungrab(self) -> None:
        self.calls.append('ungrab')

    def close(self) -> None:
        self.calls.append('close')
        os.close(self._w)
        os.close(self.fd)


def settle(wheel: EvdevWheel, events: int) -> None:
    end = time.monotonic() + 5
    while wheel.events < events and time.monotonic() < end:
        time.sleep(0.005)


def test_evdev_counts_one_relative_axis_and_releases_the_device() -> None:
    dev = PipeDevice()
    wheel = EvdevWheel(dev, 'REL_Y')
    assert dev.calls == ['grab'] and 'Recorded Mouse' in wheel.description
    dev.feed((ecodes.EV_REL, ecodes.REL_Y, 5), (ecodes.EV_REL, ecodes.REL_X, 100), (ecodes.EV_SYN, 0, 0))
    dev.feed((ecodes.EV_REL, ecodes.REL_Y, -2), (ecodes.EV_KEY, ecodes.BTN_LEFT, 1), (ecodes.EV_REL, ecodes.REL_Y, 7))
    settle(wheel, 3)
    assert wheel.take(0) == 10 and wheel.take(0) == 0
    dev.fail = OSError(19, 'No such device')
    dev.feed((ecodes.EV_REL, ecodes.REL_Y, 1))
    end = time.monotonic() + 5
    while not wheel.error and time.monotonic() < end:
        time.sleep(0.005)
    assert 'No such device (unplugged?)' in wheel.error
    wheel.close()
    assert dev.calls == ['grab', 'ungrab', 'close']


def test_evdev_refuses_a_bad_axis_and_names_a_missing_device() -> None:
    with pytest.raises(WheelDeviceError, match="axis 'REL_Z'"):
        EvdevWheel(PipeDevice(), 'REL_Z')
    with pytest.raises(WheelDeviceError, match='/dev/input/event99: .*evtest'):
        find_device('/dev/input/event99', 'REL_Y')
    if not evdev.list_devices():  # this machine has no input devices
        with pytest.raises(WheelDeviceError, match="no input device with REL_Y motion named like 'Logitech'; found: none"):
            find_device('Logitech', 'REL_Y')


def wheel_proc(procs, *params: str) -> Proc:
    args = [a for p in params for a in ('-p', p)]
    return procs([WHEEL, '--ros-args', '-r', '__ns:=/rig_w', *args], name='wheel')


def test_a_sim_wheel_node_samples_at_its_rate_runs_when_told_and_refuses_bad_input(procs, node) -> None:
    wheel = wheel_proc(procs, 'backend:=sim', 'sim_noise_cm_s:=0.0', 'sim_speed_cm_s:=30.0', 'cm_per_count:=0.01')
    got: list[WheelMotion] = []
    node.create_subscription(WheelMotion, '/rig_w/wheel/velocity', got.append, qos.STREAM)
    run = node.create_publisher(SimInput, '/rig_w/wheel/sim_input', qos.EVENTS)
    wheel.wait_for_output('wheel ready')

    def spin(seconds: float) -> None:
        executors.spin(node, node.executor_, timeout_sec=seconds)

    spin(2.0)
    assert executors.spin(node, node.executor_, until=lambda: run.get_subscription_count() > 0, timeout_sec=20)
    first = len(got)
    assert first >= 40, first
    for bad in (SimInput(device='valve_left', level=True, hold_us=1000), SimInput(level=True, hold_us=4_000_000_000)):
        run.publish(bad)  # another device; a run of 66 minutes
    spin(0.5)
    run.publish(SimInput(level=True, hold_us=500_000))
    spin(1.5)
    samples = got[first:]
    assert [m.seq for m in samples] == list(range(samples[0].seq, samples[0].seq + len(samples)))
    moving = [m for m in samples if m.counts]
    assert 20 <= len(moving) <= 28, [m.counts for m in samples]  # 0.5 s at 50 Hz, and the partial ends
    assert sum(m.counts for m in samples) * 0.01 == pytest.approx(15.0, abs=0.02)  # 30 cm/s for 0.5 s
    assert max(m.velocity_cm_s for m in samples) == pytest.approx(30.0, rel=0.05)
    assert all(m.header.frame_id == 'wheel' and 15_000 < m.period_us < 40_000 for m in samples[1:])
    out = wheel.output()
    # Both refused (the second only counted: one log line per endpoint per 5 s); had the 66-minute run been taken,
    # the wheel would still be running and the distance above would be off.
    assert "sim_input for device 'valve_left': this wheel is 'wheel'" in out
    assert wheel.stop() == 0 and 'wheel stopped after' in wheel.output()


@pytest.mark.parametrize('params, expected', [
    (('backend:=evdev', 'device:=/dev/input/event99'), "parameter 'device': /dev/input/event99"),
    (('backend:=evdev', 'axis:=REL_Z'), "parameter 'axis'"),
    (('backend:=sim', 'period_ms:=0.0'), "parameter 'period_ms'"),
])
def test_startup_errors_exit_1_with_one_line(ros_env, params, expected) -> None:
    res = subprocess.run([WHEEL, '--ros-args', *[a for p in params for a in ('-p', p)]], env=ros_env,
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 1, res
    fatal = [line for line in (res.stdout + res.stderr).splitlines() if line.startswith('[FATAL]')]
    assert len(fatal) == 1 and expected in fatal[0], res.stdout + res.stderr


def test_the_child_launch_file_starts_a_wheel_in_the_pilots_namespace(procs, node) -> None:
    """launch/child.launch.yaml through ``autopilot launch``: the wheel under /<pilot>, its params file applied."""
    import sys

    got: list[WheelMotion] = []
    node.create_subscription(WheelMotion, '/rig_k/wheel/velocity', got.append, qos.STREAM)
    launch = procs([sys.executable, '-m', 'autopilot_cli.main', 'launch', str(ROOT / 'launch' / 'child.launch.yaml'),
                    'pilot:=rig_k', 'wheel_backend:=sim'], name='child-launch')
    assert executors.spin(node, node.executor_, until=lambda: len(got) >= 10, timeout_sec=30), launch.output()
    assert got[-1].header.frame_id == 'wheel' and 'cm per count' in launch.output()
    assert '0.00254 cm per count' in launch.output()  # from launch/params/wheel.yaml
    assert launch.stop() == 0, launch.output()
