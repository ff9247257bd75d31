"""``gpio``: the rig's digital inputs and outputs as a ROS node (backends sim | pigpio | lgpio).

Endpoints (relative, so the rig namespace places them: ``/rig_1/gpio/events``):

* ``gpio/events`` (GpioEvent, qos.EVENTS): every input edge and output change, with the backend's tick,
  its unwrapped ``tick_us`` (use differences of it for timing) and ``stamp`` mapped from the tick
  (:mod:`autopilot_hardware.gpio.ticks` documents the mapping error);
* ``gpio/output`` (DigitalOutput) fast path and ``gpio/set_output`` (SetDigitalOutput) with an ack;
* ``gpio/reward`` (Reward): volume -> valve open time through the valve's calibration;
* ``gpio/sim_input`` (SimInput) and ``gpio/simulate_input`` (SimulateInput): drive sim inputs;
* ``gpio/calibrate_valve`` and ``gpio/record_calibration``: valve calibration (``autopilot calibrate``, the
  window's calibration dialog); ``gpio/get_calibration``: the valves, and a valve's points and fit.

Safety: a valve is never open longer than its ``max_open_ms`` in one opening, whatever commands arrive
(:mod:`autopilot_hardware.gpio.limits`, applied by GpioController on every path); every output is driven
inactive (low; high for an ``active_low`` one) when the node stops and when the pilot's heartbeat
(``pilot_status_topic``, by default the pilot of this namespace) has been silent for ``pilot_timeout_s``. Every callback is guarded
(:mod:`autopilot_core.guard`): a malformed or refused command is logged, counted on ``/diagnostics`` and
changes nothing. Device layout: :mod:`autopilot_hardware.gpio.config`.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from autopilot_msgs.msg import CalibrationPoint, DigitalOutput, GpioEvent, PilotStatus, Reward, SimInput
from autopilot_msgs.srv import CalibrateValve, GetCalibration, RecordCalibration, SetDigitalOutput, SimulateInput
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.parameter import Parameter

from autopilot_core import guard, intra, qos, stamps
from autopilot_core.executors import run_node
from autopilot_core.params import ParamSpec, check_unknown, declare
from autopilot_hardware.gpio.backends import Backend, Edge, make_backend
from autopilot_hardware.gpio.calibration import CalibrationStore
from autopilot_hardware.gpio.config import (
    ConfigError,
    build_table,
    check_names,
    input_specs,
    kind_spec,
    output_specs,
)
from autopilot_hardware.gpio.controller import COMMAND_ERRORS, Done, GpioController
from autopilot_hardware.gpio.ticks import TickClock
from autopilot_hardware.plugins import DeviceInfo

BACKENDS = ('sim', 'pigpio', 'lgpio')
#: How often the heartbeat watchdog looks at the pilot's last beat.
BEAT_CHECK_S = 0.1
CALIBRATION_DIR = Path('~/.autopilot/calibration')

PARAMS = (
    ParamSpec('backend', 'sim', 'GPIO backend', choices=BACKENDS, read_only=True),
    ParamSpec('inputs', [], 'Input device names; each needs devices.<name>.pin (and .pull, .edge, .glitch_us)',
              type=Parameter.Type.STRING_ARRAY, read_only=True),
    ParamSpec('outputs', [], 'Output device names; each needs devices.<name>.pin (and .kind, .max_open_ms)',
              type=Parameter.Type.STRING_ARRAY, read_only=True),
    ParamSpec('pigpio_host', 'localhost', 'Host of pigpiod (backend pigpio)', read_only=True),
    ParamSpec('pigpio_port', 8888, 'Port of pigpiod (backend pigpio)', min=1, max=65535, read_only=True),
    ParamSpec('lgpio_chip', 0, 'gpiochip number (backend lgpio): /dev/gpiochip<N>', min=0, max=64, read_only=True),
    ParamSpec('calibration_file', '', 'Valve calibration history (JSON Lines, append-only); "": '
              '~/.autopilot/calibration/<namespace>.jsonl', read_only=True),
    ParamSpec('calibration_degree', 1, 'Polynomial degree of the volume -> open time fit', min=1, max=3,
              read_only=True),
    ParamSpec('calibration_window', 20, 'Newest calibration points of a valve used by its fit', min=1,
              max=10_000, read_only=True),
    ParamSpec('pilot_status_topic', 'status', 'Pilot heartbeat (PilotStatus) to watch; relative names are in this '
              'node\'s namespace (the default is the heartbeat of the rig\'s own pilot: /<rig>/status); "": none',
              read_only=True),
    ParamSpec('pilot_timeout_s', 1.5, 'Turn every output off (valves closed; active-low ones driven high) when '
              'the pilot heartbeat (2 Hz) is silent this long', unit='s', min=0.5, max=3600.0),
    ParamSpec('clock_sync_s', 10.0, 'Interval of tick -> ROS time re-synchronisation', unit='s',
              min=0.5, max=600.0, read_only=True),
)

DEVICE = DeviceInfo(
    name='gpio', kind='digital I/O', package='autopilot_hardware', executable='gpio', backends=BACKENDS,
    description='Named pokes, licks, valves, LEDs and TTL lines with microsecond edge timing and valve calibration',
    parameters=PARAMS,
)


LISTS = ('inputs', 'outputs')


def declare_string_list(node: Node, spec: ParamSpec) -> list[str]:
    """Declare a string-array parameter whose default is empty; an absent or empty value means no devices.

    Declared dynamically typed and writable first: rclpy would type an absent value's ``[]`` as a byte array and
    refuse a given value of another type with a message that names no fix. The value is checked here, then the
    parameter gets its own descriptor (string array, read-only), so it reads ``[]`` (not "not set") over the
    parameter services when not given.
    """
    fix = f'write it as {spec.name}: [name1, name2] (command line: -p "{spec.name}:=[name1, name2]")'
    loose = spec.descriptor()
    loose.dynamic_typing, loose.read_only = True, False
    param = node.declare_parameter(spec.name, None, loose)
    value = param.value
    if value is None or (isinstance(value, (list, tuple)) and not value):
        value = []
    elif not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{node.get_name()}: parameter '{spec.name}': {value!r} is not a list of device names; "
                          f'{fix}')
    if param.type_ != Parameter.Type.STRING_ARRAY:  # absent, or an empty list rclpy typed otherwise
        node.set_parameters([Parameter(spec.name, Parameter.Type.STRING_ARRAY, list(value))])
    node.set_descriptor(spec.name, spec.descriptor())
    return list(value)


def default_calibration_path(namespace: str) -> Path:
    token = namespace.strip('/').replace('/', '_') or 'default'
    return CALIBRATION_DIR / f'{token}.jsonl'


class GpioNode(Node):
    def __init__(self, **node_options: Any) -> None:
        """``node_options``: rclpy Node keywords (``context``, ``namespace``, ``parameter_overrides``...)."""
        super().__init__('gpio', **node_options)
        p = declare(self, [s for s in PARAMS if s.name not in LISTS])
        inputs, outputs = (declare_string_list(self, s) for s in PARAMS if s.name in LISTS)
        try:
            check_names(inputs, outputs)
        except ConfigError as exc:
            raise ConfigError(f'{self.get_name()}: {exc}') from None
        kinds = declare(self, [kind_spec(n) for n in outputs])  # the kind decides which settings follow
        values = {**kinds, **declare(self, [s for n in inputs for s in input_specs(n)] +
                                     [s for n in outputs for s in output_specs(n, kinds[f'devices.{n}.kind'])])}
        check_unknown(self)  # devices.valve_left.max_open_msec is an error naming max_open_ms, before any pin is claimed
        self.backend_name = p['backend']
        # Intra-process (autopilot_core.intra): a pilot composed into this process gets events and sends
        # commands without DDS; other processes still get everything over DDS.
        self.event_pub = intra.create_publisher(self, GpioEvent, 'gpio/events', qos.EVENTS)
        self.pins: dict[int, str] = {}
        self.run_id = int.from_bytes(os.urandom(4), 'little') or 1
        self._seq = itertools.count(1)  # next() is atomic under the GIL: edges come from the backend's thread
        self.tick_clock: TickClock | None = None
        self.closed = False
        try:
            backend: Backend = make_backend(self.backend_name, self.on_edge, host=p['pigpio_host'],
                                            port=p['pigpio_port'], chip=p['lgpio_chip'])
        except COMMAND_ERRORS as exc:
            raise ConfigError(f'{self.get_name()}: {exc}') from None
        try:
            table = build_table(inputs, outputs, values, pin_limit=backend.pin_limit)
            path = Path(p['calibration_file'] or default_calibration_path(self.get_namespace())).expanduser()
            store = CalibrationStore(path, degree=p['calibration_degree'], window=p['calibration_window'])
            self.ctl = GpioController(table, backend, store)
            self.store = store
            self.valves = [d.name for d in table.values() if d.kind == 'valve']
            self.pins = {pin: d.name for d in table.values() for pin in d.pins}
            self.tick_clock = TickClock(backend.now_us, lambda: self.get_clock().now().nanoseconds)
            self.ctl.claim_all()
        except Exception as exc:  # noqa: BLE001 - any failure: release the pins, then one line naming it
            backend.close()
            raise ConfigError(f'{self.get_name()}: {exc}') from None

        self.guard = guard.of(self)
        # Every command topic intra (guarded, as guard.create_subscription): a composed pilot's outputs and
        # rewards arrive in the order it sent them, never one over DDS overtaken by another in-process.
        intra.create_subscription(self, DigitalOutput, 'gpio/output', self.on_output, qos.EVENTS)
        intra.create_subscription(self, Reward, 'gpio/reward', self.on_reward, qos.EVENTS)
        # Intra too: a virtual subject composed into the process pokes without DDS, and a poke's local chain
        # (event -> pilot -> output) runs right after this callback (autopilot_core.intra).
        intra.create_subscription(self, SimInput, 'gpio/sim_input', self.on_sim_input, qos.EVENTS)
        guard.create_service(self, SetDigitalOutput, 'gpio/set_output', self.srv_set_output)
        guard.create_service(self, SimulateInput, 'gpio/simulate_input', self.srv_simulate)
        guard.create_service(self, CalibrateValve, 'gpio/calibrate_valve', self.srv_calibrate)
        guard.create_service(self, RecordCalibration, 'gpio/record_calibration', self.srv_record)
        guard.create_service(self, GetCalibration, 'gpio/get_calibration', self.srv_get_calibration)
        # Re-sync also reads the tick regularly, which keeps pigpio's tick unwrapping valid (< 35 min).
        self.create_timer(p['clock_sync_s'], self.tick_clock.sync)

        self.last_beat: float | None = None
        self.beat_lost = False
        self._beat_stop = threading.Event()
        if p['pilot_status_topic']:
            guard.create_subscription(self, PilotStatus, p['pilot_status_topic'], self.on_beat, qos.STATUS)
            # Its own thread, not an executor timer: an executor stalled in a publish (Fast DDS waits up to its
            # 1 s shared-memory health check on a port whose process was just killed: the pilot's) would hold
            # the check back with it, and the outputs on past the timeout.
            threading.Thread(target=self._watch_beat, name='gpio-heartbeat', daemon=True).start()
        self.get_logger().info(
            f'gpio ready: backend {self.backend_name}, inputs {inputs or "none"}, outputs {outputs or "none"}, '
            f'calibration {store.path}, tick->ROS time error <= {self.tick_clock.error_ns / 1000:.1f} us at sync')

    # -- events ------------------------------------------------------------------------------------
    def on_edge(self, edge: Edge) -> None:
        device = self.pins.get(edge.pin)
        if device is None or self.tick_clock is None:
            return
        # seq numbers every event of this run, so a receiver can tell (and the pilot's journal fill) a gap.
        msg = GpioEvent(device=device, pin=edge.pin, level=edge.level, tick=edge.tick, tick_us=edge.tick_us,
                        backend=self.backend_name, run_id=self.run_id, seq=next(self._seq))
        # Straight into the header: an rclpy Time + to_msg() costs 5 us warm, several times that on a CPU
        # woken by the edge, and this is the closed loop's path (bench/closed_loop.py).
        stamp = msg.header.stamp
        stamps.stamp(stamp, self.tick_clock.to_ros_ns(edge.tick_us))
        self.event_pub.publish(msg)

    # -- commands ----------------------------------------------------------------------------------
    def _output(self, m: DigitalOutput) -> Done:
        return self.ctl.output(m.device, m.mode, level=m.level, pulse_us=m.pulse_us, pwm_duty=m.pwm_duty,
                               pwm_frequency_hz=m.pwm_frequency_hz, train_off_us=m.train_off_us,
                               train_count=m.train_count, color=m.color, series_levels=m.series_levels,
                               series_us=m.series_us, series_repeat=m.series_repeat)

    def _topic(self, what: str, fn: Any, *args: Any) -> None:
        try:
            done = fn(*args)
        except COMMAND_ERRORS as exc:
            self.guard.refuse(self.resolve_topic_name(what), str(exc))
            return
        if done.message:
            self.get_logger().info(done.message)

    def on_output(self, msg: DigitalOutput) -> None:
        self._topic('gpio/output', self._output, msg)

    def on_reward(self, msg: Reward) -> None:
        self._topic('gpio/reward', self.ctl.reward, msg.device, msg.volume_ul)

    def on_sim_input(self, msg: SimInput) -> None:
        self._topic('gpio/sim_input', self.ctl.simulate, msg.device, msg.level, msg.hold_us)

    def srv_set_output(self, req: SetDigitalOutput.Request, res: SetDigitalOutput.Response) -> SetDigitalOutput.Response:
        try:
            done = self._output(req.command)
            res.success, res.tick_us, res.message = True, done.tick_us, done.message
        except COMMAND_ERRORS as exc:
            res.success, res.message = False, str(exc)
        return res

    def srv_simulate(self, req: SimulateInput.Request, res: SimulateInput.Response) -> SimulateInput.Response:
        try:
            done = self.ctl.simulate(req.input.device, req.input.level, req.input.hold_us)
            res.success, res.tick_us = True, done.tick_us
        except COMMAND_ERRORS as exc:
            res.success, res.message = False, str(exc)
        return res

    def srv_calibrate(self, req: CalibrateValve.Request, res: CalibrateValve.Response) -> CalibrateValve.Response:
        try:
            done, _duration = self.ctl.calibrate(req.device, req.n_openings, req.open_ms, req.interval_ms)
            res.success, res.message = True, done.message
            res.total_open_ms = req.n_openings * round(req.open_ms * 1000) / 1000
            self.get_logger().info(f'calibration run: {done.message}')
        except COMMAND_ERRORS as exc:
            res.success, res.message = False, str(exc)
        return res

    def valve(self, device: str) -> str:
        """``device`` if it is one of this node's valves, else a ConfigError naming them."""
        if device not in self.valves:
            raise ConfigError(f'{device!r} is not a valve of {self.get_fully_qualified_name()} (valves: '
                              f'{", ".join(self.valves) or "none"}); valves are outputs with kind: valve')
        return device

    def srv_record(self, req: RecordCalibration.Request, res: RecordCalibration.Response) -> RecordCalibration.Response:
        try:
            coefficients, n, text = self.ctl.record(req.device, req.n_openings, req.open_ms, req.measured_volume_ul,
                                                    force=req.force)
            res.success, res.message, res.fit_coefficients, res.n_points = True, text, coefficients, n
            if req.force:
                text += ' (stored with force: the agreement check with the fit was skipped)'
            self.get_logger().info(f'calibration: {text}')
        except COMMAND_ERRORS as exc:
            res.success, res.message = False, str(exc)
        return res

    def srv_get_calibration(self, req: GetCalibration.Request, res: GetCalibration.Response
                            ) -> GetCalibration.Response:
        res.valves, res.file = list(self.valves), str(self.store.path)
        if not req.device:
            res.success = True
            return res
        try:
            marked, coefficients, text = self.store.history(self.valve(req.device))
        except COMMAND_ERRORS as exc:
            res.success, res.message = False, str(exc)
            return res
        for point, used in marked:
            stamp = CalibrationPoint().time
            t = point.time  # a hand-edited file may hold anything here: 0 rather than a failed answer
            ok = isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) and 0 <= t < 2**31
            stamps.stamp(stamp, round(t * 1e9) if ok else 0)
            res.points.append(CalibrationPoint(time=stamp, n_openings=point.n_openings, open_ms=point.open_ms,
                                               measured_volume_ul=point.measured_volume_ul, used=used))
        res.success, res.fit_coefficients, res.fit = True, coefficients, text
        return res

    # -- safety ------------------------------------------------------------------------------------
    def on_beat(self, _msg: PilotStatus) -> None:
        self.last_beat = time.monotonic()
        if self.beat_lost:
            self.beat_lost = False
            self.get_logger().info('pilot heartbeat back')

    def _watch_beat(self) -> None:
        while not self._beat_stop.wait(BEAT_CHECK_S):
            try:
                self.check_beat()
            except Exception as exc:  # noqa: BLE001 - the watchdog must outlive one bad check
                self.get_logger().error(f'heartbeat check failed: {type(exc).__name__}: {exc}')

    def check_beat(self) -> None:
        # Only after a first beat: the GPIO node usually starts before its pilot.
        if self.last_beat is None or self.beat_lost:
            return
        timeout = self.get_parameter('pilot_timeout_s').value
        if time.monotonic() - self.last_beat > timeout:
            self.beat_lost = True
            self.ctl.all_low()
            self.get_logger().warning(f'pilot heartbeat silent for {timeout:g} s: all outputs off (valves closed)')

    def close(self) -> None:
        """Called by run_node on SIGINT/SIGTERM: every output low, and the events of it delivered."""
        if self.closed:
            return
        self.closed = True
        self._beat_stop.set()
        self.ctl.close()
        self.get_logger().info('gpio stopped: all outputs off (valves closed)')
        self.event_pub.wait_for_all_acked(Duration(seconds=1.0))

    def destroy_node(self) -> None:
        # Also on paths that skip close() (an exception while spinning): outputs never stay high.
        if hasattr(self, 'ctl'):
            self.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(GpioNode, args)


if __name__ == '__main__':
    sys.exit(main())
