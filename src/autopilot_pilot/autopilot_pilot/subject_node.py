"""``subject_sim``: a virtual animal for a simulated rig (the model is :mod:`autopilot_pilot.subject`).

Run it in the rig's namespace (``subject_sim --ros-args -r __ns:=/rig_1``); its names are relative:

* subscribes ``sound/onsets`` (SoundOnset): an onset whose ``sound_id`` is in ``stimulus_ids`` is a stimulus
  with the signed value at the same index of ``stimulus_values``; other ids (a punishment noise, a cue)
  and failed plays are ignored. The reaction time counts from the onset's stamp.
* subscribes ``gpio/events`` (GpioEvent): a valve named by ``left_valve_device``/``right_valve_device``
  going high is a reward (counted; free water prefers that port); events of its own poke devices confirm
  that its pokes registered.
* publishes ``gpio/sim_input`` (SimInput): a poke drives the port's device to ``poke_active_level`` for
  ``poke_hold_ms`` (the gpio node returns it to the other level), like a nose breaking the beam;
* with ``response_port`` ``wheel``, publishes ``<wheel_node>/sim_input`` (SimInput): a "respond" decision runs
  the simulated wheel (:mod:`autopilot_hardware.wheel`) for ``run_ms``, on this host or a child's.

The subject starts once a gpio node listens on ``gpio/sim_input`` (a poke published earlier would be
lost: the topic is volatile). Every response (or miss) is one log line; the counts are logged as a summary
when the node stops. They are not published: no message of autopilot_msgs fits, and the pilot's trial
data already records what the task saw. Timing uses one-shot ROS timers, never sleeps.

The model's parameters (bias, slope, lapse, times, mode, ...) can be changed on the running node with
``ros2 param set`` / ``autopilot param set``; devices, stimuli and the seed are read-only.
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import fields

from autopilot_msgs.msg import GpioEvent, SimInput, SoundOnset
from rcl_interfaces.msg import SetParametersResult
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.timer import Timer

from autopilot_core import intra, qos, stamps
from autopilot_core.executors import run_node
from autopilot_core.params import ParameterError, ParamSpec, check_unknown, declare
from autopilot_pilot.subject import MODES, ParamsError, Response, SubjectParams, VirtualSubject

PARAMS = (
    ParamSpec('mode', '2afc', 'Behaviour: 2afc (center poke, answer stimuli left or right), gonogo (center poke, '
              'respond at response_port or hold back), detect (no center poke: respond at response_port to a '
              'stimulus, e.g. a gap in noise), free_water (poke left/right at random intervals) or idle',
              choices=MODES),
    ParamSpec('response_port', 'right', 'gonogo and detect: the port a "respond" decision pokes (wheel: it runs '
              'on the wheel instead)', choices=('left', 'right', 'center', 'wheel'), read_only=True),
    ParamSpec('seed', 0, 'Seed of the random draws: the same seed and the same stimuli give the same choices',
              min=0, max=2**31 - 1, read_only=True),
    ParamSpec('bias', 0.0, 'Shift of the psychometric curve: the stimulus value with p(right) = 0.5 '
              '(> 0: a left-biased animal)', unit='stimulus units', min=-100.0, max=100.0),
    ParamSpec('slope', 5.0, 'Steepness of p(right) = lapse/2 + (1 - lapse) * logistic(slope * (x - bias))',
              unit='1/stimulus units', min=0.0, max=1000.0),
    ParamSpec('lapse', 0.05, 'Probability that a choice is a random guess: p(right) stays within '
              '[lapse/2, 1 - lapse/2]', unit='probability', min=0.0, max=1.0),
    ParamSpec('miss_rate', 0.0, 'Probability of not responding to a stimulus', unit='probability',
              min=0.0, max=1.0),
    ParamSpec('rt_mean_ms', 450.0, 'Mean reaction time, onset to side poke (shifted lognormal)', unit='ms',
              min=0.0, max=60_000.0),
    ParamSpec('rt_sd_ms', 150.0, 'Standard deviation of the reaction time (0: always rt_mean_ms)', unit='ms',
              min=0.0, max=60_000.0),
    ParamSpec('rt_min_ms', 150.0, 'Shortest reaction time (the lognormal shift; must be < rt_mean_ms when '
              'rt_sd_ms > 0)', unit='ms', min=0.0, max=60_000.0),
    ParamSpec('center_delay_mean_ms', 1000.0, 'Mean delay from the end of a trial to the next center poke '
              '(lognormal)', unit='ms', min=0.0, max=600_000.0),
    ParamSpec('center_delay_sd_ms', 500.0, 'Standard deviation of the center-poke delay', unit='ms',
              min=0.0, max=600_000.0),
    ParamSpec('stimulus_wait_ms', 3000.0, 'After a center poke with no stimulus this long, the next center '
              'delay starts', unit='ms', min=0.0, max=600_000.0),
    ParamSpec('miss_timeout_ms', 5000.0, 'A miss sits out this long before the next center delay (make it at '
              "least the task's response window)", unit='ms', min=0.0, max=600_000.0),
    ParamSpec('free_water_interval_mean_ms', 2000.0, 'free_water: mean interval between pokes (lognormal)',
              unit='ms', min=0.0, max=600_000.0),
    ParamSpec('free_water_interval_sd_ms', 1000.0, 'free_water: standard deviation of the interval', unit='ms',
              min=0.0, max=600_000.0),
    ParamSpec('free_water_stay', 0.7, 'free_water: probability of poking the last rewarded port (else left or '
              'right at random)', unit='probability', min=0.0, max=1.0),
    ParamSpec('poke_hold_ms', 100.0, 'How long a poke holds the beam (SimInput.hold_us); keep it above the '
              "poke's glitch filter", unit='ms', min=0.01, max=60_000.0),
    ParamSpec('run_ms', 1000.0, 'response_port wheel: how long a "respond" decision runs (the wheel node\'s '
              'sim_speed_cm_s sets how fast)', unit='ms', min=1.0, max=600_000.0),
    ParamSpec('wheel_node', 'wheel', 'response_port wheel: the wheel node whose <name>/sim_input a run drives',
              read_only=True),
    ParamSpec('poke_active_level', False, 'Level of a poke device while poked (pull-up sensors: false)',
              read_only=True),
    ParamSpec('stimulus_ids', ['tone_left', 'tone_right'], 'Sound ids that are stimuli (index-aligned with '
              'stimulus_values); onsets of other ids are ignored', read_only=True),
    ParamSpec('stimulus_values', [-1.0, 1.0], 'Signed stimulus value of each of stimulus_ids (< 0: left '
              'is correct, > 0: right)', unit='stimulus units', read_only=True),
    ParamSpec('center_device', 'poke_center', 'GPIO input device of the center port', read_only=True),
    ParamSpec('left_device', 'poke_left', 'GPIO input device of the left port', read_only=True),
    ParamSpec('right_device', 'poke_right', 'GPIO input device of the right port', read_only=True),
    ParamSpec('left_valve_device', 'valve_left', 'Valve whose opening is a reward at the left port',
              read_only=True),
    ParamSpec('right_valve_device', 'valve_right', 'Valve whose opening is a reward at the right port',
              read_only=True),
)

#: Parameters that are fields of SubjectParams (all but mode and the read-only wiring).
MODEL_FIELDS = tuple(f.name for f in fields(SubjectParams))


def stimulus_table(ids: list[str], values: list[float]) -> dict[str, float]:
    """``{sound_id: x}`` from the two parallel parameters; ValueError naming the problem."""
    if len(ids) != len(values):
        raise ValueError(f'stimulus_ids has {len(ids)} entries but stimulus_values has {len(values)}; '
                         'give one value per id, e.g. stimulus_ids: [tone_left, tone_right], '
                         'stimulus_values: [-1.0, 1.0]')
    table: dict[str, float] = {}
    for sound_id, x in zip(ids, values, strict=True):
        if not sound_id:
            raise ValueError('stimulus_ids has an empty id')
        if sound_id in table:
            raise ValueError(f'stimulus_ids lists {sound_id!r} twice')
        if not math.isfinite(x):
            raise ValueError(f'stimulus_values: {x!r} for {sound_id!r} is not a finite number')
        table[sound_id] = float(x)
    return table


class RosClock:
    """The subject's Clock on a node: ROS time and one-shot timers (cancelled and destroyed as they fire)."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> Timer:
        timer: Timer | None = None

        def fire() -> None:
            self.cancel(timer)
            fn()

        # A zero period would be a busy timer until cancelled; 1 us is "now" for all purposes here.
        timer = self.node.create_timer(max(delay_s, 1e-6), fire)
        return timer

    def cancel(self, handle: object) -> None:
        if isinstance(handle, Timer):
            handle.cancel()
            self.node.destroy_timer(handle)


class SubjectNode(Node):
    def __init__(self) -> None:
        super().__init__('subject_sim')
        self.closed = False
        p = declare(self, PARAMS)
        check_unknown(self)  # a misspelt params-file key is an error, not silently ignored

        def fix(name: str) -> str:
            return f'Fix it in the params file or with --ros-args -p {name}:=<value>'

        try:
            self.stimuli = stimulus_table(list(p['stimulus_ids']), list(p['stimulus_values']))
        except ValueError as exc:
            raise ParameterError(self.get_name(), 'stimulus_ids', f'{exc}. {fix("stimulus_ids")}') from None
        try:
            params = SubjectParams(**{k: p[k] for k in MODEL_FIELDS})
        except ParamsError as exc:
            raise ParameterError(self.get_name(), exc.parameter, f'{exc}. {fix(exc.parameter)}') from None
        self.hold_us = round(p['poke_hold_ms'] * 1000)
        self.active_level = p['poke_active_level']
        self.port_devices = {'center': p['center_device'], 'left': p['left_device'], 'right': p['right_device']}
        self.valve_sides = {p['left_valve_device']: 'left', p['right_valve_device']: 'right'}
        self.sent = 0
        # Per poke device: monotonic send times of pokes not yet seen on gpio/events, oldest first.
        self.unconfirmed: dict[str, deque[float]] = {d: deque() for d in self.port_devices.values()}

        self.subject = VirtualSubject(params, RosClock(self), self.poke, seed=p['seed'], mode=p['mode'],
                                      on_response=self.log_response, response_port=p['response_port'])
        # Intra-process when composed with the rig (autopilot_pilot.rig), DDS otherwise.
        self.sim_pub = intra.create_publisher(self, SimInput, 'gpio/sim_input', qos.EVENTS)
        self.wheel_pub = self.create_publisher(SimInput, f'{p["wheel_node"]}/sim_input', qos.EVENTS) \
            if p['response_port'] == 'wheel' else None
        intra.create_subscription(self, SoundOnset, 'sound/onsets', self.on_onset, qos.EVENTS)
        intra.create_subscription(self, GpioEvent, 'gpio/events', self.on_gpio, qos.EVENTS)
        self.add_on_set_parameters_callback(self.check_params)
        self.add_post_set_parameters_callback(self.apply_params)
        self.wait_timer: Timer | None = self.create_timer(0.1, self.wait_for_gpio)
        stimuli = ', '.join(f'{k}={v:+g}' for k, v in self.stimuli.items()) or 'none'
        self.get_logger().info(
            f'subject_sim ready: mode {p["mode"]}, seed {p["seed"]}, bias {params.bias:g}, slope {params.slope:g}, '
            f'lapse {params.lapse:g}, miss rate {params.miss_rate:g}, rt {params.rt_mean_ms:g} +- {params.rt_sd_ms:g} '
            f'ms (>= {params.rt_min_ms:g}), stimuli {stimuli}; waiting for a gpio node on gpio/sim_input')

    # -- start -------------------------------------------------------------------------------------
    def wait_for_gpio(self) -> None:
        pub = self.wheel_pub or self.sim_pub  # the node a response drives
        if pub.get_subscription_count() == 0 or self.wait_timer is None:
            return
        self.destroy_timer(self.wait_timer)
        self.wait_timer = None
        self.get_logger().info(f'{pub.topic_name} matched: subject starts ({self.subject.mode})')
        self.subject.start()

    # -- output ------------------------------------------------------------------------------------
    def poke(self, port: str) -> None:
        if port == 'wheel' and self.wheel_pub is not None:
            run = SimInput(level=True, hold_us=round(self.get_parameter('run_ms').value * 1000))
            stamps.stamp(run.header.stamp, self.get_clock().now().nanoseconds)
            self.wheel_pub.publish(run)
            self.sent += 1
            self.get_logger().debug('run on the wheel')
            return
        device = self.port_devices[port]
        msg = SimInput(device=device, level=self.active_level, hold_us=self.hold_us)
        stamps.stamp(msg.header.stamp, self.get_clock().now().nanoseconds)
        self.sim_pub.publish(msg)
        self.sent += 1
        self.unconfirmed[device].append(time.monotonic())
        self.get_logger().debug(f'poke {port} ({device})')

    def log_response(self, r: Response) -> None:
        c = self.subject.counts
        what = ('miss' if r.side is None else 'withheld' if r.rt_ms is None
                else f'{r.side}{" (lapse)" if r.lapsed else ""}, rt {r.rt_ms:.0f} ms')
        self.get_logger().info(
            f'response {r.number}: {r.label} x={r.x:+g} -> {what}; left {c.responses["left"]}, right '
            f'{c.responses["right"]}, misses {c.misses}, rewards {sum(c.rewards.values())}')

    # -- input -------------------------------------------------------------------------------------
    def on_onset(self, msg: SoundOnset) -> None:
        x = self.stimuli.get(msg.sound_id)
        if x is None or not msg.ok:
            return
        onset_ns = stamps.to_ns(msg.header.stamp)
        if self.subject.on_stimulus(x, onset_ns=onset_ns or None, label=msg.sound_id) is None:
            self.get_logger().debug(f'stimulus {msg.sound_id} (play {msg.play_id}) ignored in state '
                                    f'{self.subject.state}')

    def on_gpio(self, msg: GpioEvent) -> None:
        side = self.valve_sides.get(msg.device)
        if side is not None and msg.level:
            self.subject.on_reward(side)
            self.get_logger().info(f'reward at {side} ({msg.device}); rewards left '
                                   f'{self.subject.counts.rewards["left"]}, right {self.subject.counts.rewards["right"]}')
        elif self.unconfirmed.get(msg.device):
            # One event per sent poke confirms it (a poke may give two edges, or one with edge: rising).
            self.unconfirmed[msg.device].popleft()

    # -- parameters --------------------------------------------------------------------------------
    def _model_params(self, changed: list[Parameter]) -> SubjectParams:
        values = {k: self.get_parameter(k).value for k in MODEL_FIELDS}
        values.update({q.name: float(q.value) for q in changed if q.name in MODEL_FIELDS})
        return SubjectParams(**values)

    def check_params(self, changed: list[Parameter]) -> SetParametersResult:
        # Ranges are checked by declare()'s callback; this catches combinations (rt_mean_ms <= rt_min_ms).
        if not any(q.name in MODEL_FIELDS for q in changed):
            return SetParametersResult(successful=True)
        try:
            self._model_params(changed)
        except (ValueError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def apply_params(self, changed: list[Parameter]) -> None:
        if any(q.name in MODEL_FIELDS for q in changed):
            self.subject.set_params(self._model_params([]))
        for q in changed:
            if q.name == 'poke_hold_ms':
                self.hold_us = round(q.value * 1000)
            elif q.name == 'mode' and q.value != self.subject.mode:
                self.subject.set_mode(q.value)
        self.get_logger().info('parameters set: ' + ', '.join(f'{q.name}={q.value}' for q in changed))

    # -- stop --------------------------------------------------------------------------------------
    def close(self) -> None:
        """Called by run_node on SIGINT/SIGTERM: stop poking, log the counts."""
        if self.closed:
            return
        self.closed = True
        self.subject.stop()
        seen = self.sent - sum(len(q) for q in self.unconfirmed.values())
        self.get_logger().info(f'subject_sim stopped: {self.subject.counts.summary()}; pokes sent {self.sent}, '
                               f'{seen} seen on gpio/events')
        # The last pokes' events may still be on their way: only those older than the hold plus 1 s are lost.
        cutoff = time.monotonic() - self.hold_us / 1e6 - 1.0
        lost = {d: n for d, q in self.unconfirmed.items() if (n := sum(t < cutoff for t in q))}
        if lost:
            self.get_logger().warning(f'pokes never seen on gpio/events: {lost} (is a gpio node with backend sim '
                                      'and these devices running in this namespace?)')
        self.sim_pub.wait_for_all_acked(Duration(seconds=1.0))

    def destroy_node(self) -> None:
        if hasattr(self, 'subject'):
            self.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(SubjectNode, args)


if __name__ == '__main__':
    sys.exit(main())
