"""``wheel``: a running wheel's motion as a stream of velocity samples (Autopilot's ``Wheel`` on a child Pi).

Topics (relative to the node, so ``__ns:=/<pilot>`` places a child's wheel beside the pilot's own devices):

* ``~/velocity`` (autopilot_msgs/WheelMotion, QoS STREAM): one sample every ``period_ms``, stamped with the
  period's end on this host's clock; counts, velocity in cm/s, distance since the start, the measured period
  and a sequence number. A task reads it through a ``Stream`` role; the terminal records it when
  ``wheel/velocity`` is in its ``stream_topics`` (as a typed table of the session, and in the bag).
* ``~/sim_input`` (SimInput, backend sim only): ``level`` true runs the wheel forward at ``sim_speed_cm_s``
  for ``hold_us`` (0: until a ``level`` false), what a virtual subject does instead of a mouse running.

Backends: ``evdev`` (a USB optical mouse against the wheel's surface, :mod:`.evdev_wheel`) and ``sim``
(:class:`~.motion.SimWheel`). Sampling runs on a thread of its own with deadlines on the monotonic clock, so
the executor's load never changes the period; velocity divides by the measured period (:mod:`.motion`).
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from typing import Any

from autopilot_msgs.msg import SimInput, WheelMotion
from rclpy.node import Node

from autopilot_core import guard, qos, stamps
from autopilot_core.checks import InputError
from autopilot_core.executors import run_node
from autopilot_core.params import ParameterError, ParamSpec, check_unknown, declare
from autopilot_hardware.plugins import DeviceInfo
from autopilot_hardware.wheel.evdev_wheel import AXES, EvdevWheel, WheelDeviceError, find_device
from autopilot_hardware.wheel.motion import Sampler, SimWheel

PARAMS = (
    ParamSpec('backend', 'evdev', 'Where counts come from: a mouse or other relative-axis input device (evdev), '
              'or a simulated wheel (sim)', choices=('evdev', 'sim'), read_only=True),
    ParamSpec('device', '', 'evdev: the input device, a path (/dev/input/event3) or part of its name; "": the '
              'first device with motion on axis', read_only=True),
    ParamSpec('axis', 'REL_Y', 'evdev: the relative axis that turns with the wheel', choices=AXES, read_only=True),
    ParamSpec('cm_per_count', 0.00254, 'Wheel surface travel per count (a 1000 cpi mouse: 0.00254). Calibrate: '
              'turn the wheel once, divide its circumference by the counts', unit='cm', min=1e-6, max=100.0,
              read_only=True),
    ParamSpec('invert', False, 'Flip the sign so that forward running is positive', read_only=True),
    ParamSpec('period_ms', 20.0, 'Sampling period: one WheelMotion per period', unit='ms', min=1.0, max=1000.0,
              read_only=True),
    ParamSpec('frame_id', 'wheel', 'header.frame_id of the samples: the wheel device name', read_only=True),
    ParamSpec('sim_speed_cm_s', 25.0, 'sim: speed of a run asked on ~/sim_input', unit='cm/s', min=-500.0,
              max=500.0),
    ParamSpec('sim_noise_cm_s', 0.5, 'sim: standard deviation of the motion noise per sample', unit='cm/s',
              min=0.0, max=100.0),
    ParamSpec('sim_seed', 0, 'sim: seed of the motion noise', min=0, max=2**31 - 1, read_only=True),
)

DEVICE = DeviceInfo(
    name='wheel', kind='running wheel', package='autopilot_hardware', executable='wheel',
    backends=('evdev', 'sim'),
    description='Velocity samples of a running wheel (USB mouse via evdev, or simulated) on ~/velocity',
    parameters=PARAMS,
)

#: Longest simulated run one SimInput asks for (a uint32 of microseconds allows 71 minutes).
MAX_SIM_RUN_S = 600.0


class WheelNode(Node):
    """Parameters, the sample publisher and the sampling thread; counting is the backend's."""

    def __init__(self, **node_options: Any) -> None:
        super().__init__('wheel', **node_options)
        p = declare(self, PARAMS)
        check_unknown(self)  # a misspelt params-file key is an error, not silently ignored
        self.period_s = p['period_ms'] / 1000
        self.frame_id = p['frame_id']
        start = time.monotonic_ns()
        self.sampler = Sampler(p['cm_per_count'], p['invert'], start)
        self.sim: SimWheel | None = None
        self.backend: Any
        if p['backend'] == 'sim':
            self.backend = self.sim = SimWheel(p['cm_per_count'], p['sim_noise_cm_s'], p['sim_seed'], start)
            guard.create_subscription(self, SimInput, '~/sim_input', self.on_sim_input, qos.EVENTS)
            self.add_post_set_parameters_callback(self._on_params)
        else:
            try:
                self.backend = EvdevWheel(find_device(p['device'], p['axis']), p['axis'])
            except WheelDeviceError as exc:
                raise ParameterError(self.get_name(), 'device', str(exc)) from None
        self.pub = self.create_publisher(WheelMotion, '~/velocity', qos.STREAM)
        self._seq = itertools.count(1)
        self.samples = 0
        self._reported = ''
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_loop, name='wheel-sampler', daemon=True)
        self._thread.start()
        self.get_logger().info(
            f'wheel ready: {self.backend.description}, {1 / self.period_s:g} Hz on {self.pub.topic_name}, '
            f'{p["cm_per_count"]:g} cm per count{", inverted" if p["invert"] else ""}')

    def _on_params(self, params: list[Any]) -> None:
        for prm in params:
            if prm.name == 'sim_noise_cm_s' and self.sim is not None:
                self.sim.noise_cm_s = prm.value

    def on_sim_input(self, msg: SimInput) -> None:
        if msg.device not in ('', self.frame_id):
            raise InputError(f'sim_input for device {msg.device[:64]!r}: this wheel is {self.frame_id!r}')
        assert self.sim is not None
        hold_s = msg.hold_us / 1e6
        if hold_s > MAX_SIM_RUN_S:
            raise InputError(f'sim_input hold_us {msg.hold_us}: at most {MAX_SIM_RUN_S:g} s per run')
        speed = self.get_parameter('sim_speed_cm_s').value if msg.level else 0.0
        self.sim.run(speed, time.monotonic_ns(), hold_s)

    def _sample_loop(self) -> None:
        msg = WheelMotion()
        msg.header.frame_id = self.frame_id
        deadline = time.monotonic()
        try:
            while True:
                deadline += self.period_s
                delay = deadline - time.monotonic()
                if delay < -self.period_s:  # far behind (a stalled host): start again from now, no burst
                    deadline = time.monotonic()
                if self._stop.wait(max(delay, 0.0)):
                    return
                now = time.monotonic_ns()
                s = self.sampler.sample(self.backend.take(now), now)
                stamps.stamp(msg.header.stamp, time.time_ns())
                msg.counts = max(-2**31, min(2**31 - 1, s.counts))
                msg.velocity_cm_s, msg.distance_cm, msg.period_us = s.velocity_cm_s, s.distance_cm, s.period_us
                msg.seq = next(self._seq)
                self.pub.publish(msg)
                self.samples += 1
                error = getattr(self.backend, 'error', '')
                if error and error != self._reported:
                    self._reported = error
                    self.get_logger().error(f'{error}: publishing zero motion until the node restarts')
        except Exception as exc:  # noqa: BLE001 - reported; a shutdown mid-publish ends the loop quietly
            if self.context.ok() and not self._stop.is_set():
                self.get_logger().error(f'wheel sampling stopped: {type(exc).__name__}: {exc}')

    def close(self) -> None:
        """Stop sampling and release the device; safe to call twice."""
        stop = getattr(self, '_stop', None)
        if stop is None or stop.is_set():
            return
        stop.set()
        self._thread.join(timeout=2.0)
        self.backend.close()
        self.get_logger().info(f'wheel stopped after {self.samples} samples, '
                               f'{self.sampler.total * self.sampler.cm_per_count:.1f} cm')

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(WheelNode, args)


if __name__ == '__main__':
    sys.exit(main())
