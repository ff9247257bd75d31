"""``autopilot check``: bring-up of a rig. Each configured device is exercised in turn and a table says what works.

    autopilot check -n /rig_1              # asks before each valve click and waits for each poke
    autopilot check -n /rig_1 --yes        # clicks the valves without asking

* LEDs and TTL lines: a 300 ms pulse (an RGB LED: red, green, blue in turn), seen back as edges with their ticks;
* valves: one 10 ms click each, after a yes (``--yes``: without asking), seen back the same way;
* inputs: "poke <port> now", and the edge it makes, with its tick; on the sim backend the check pokes itself
  through ``gpio/simulate_input`` (said so in the table), which is how CI runs it;
* sound: a 1 kHz calibration tone, with its onset latency and how the onset was stamped;
* camera (when a camera node runs in the namespace): one frame, its size and age;
* a running wheel (when a wheel node runs in the namespace, on this host or a child's): "turn the wheel forward",
  and the distance and top speed its samples show, with their rate; on the sim backend the check runs it through
  ``wheel/sim_input``. Turned backwards is a failure that names the fix (``invert``).

Exit code 0 when everything checked works (skipped devices do not count), 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autopilot_msgs.msg import DigitalOutput, GpioEvent, SimInput, SoundOnset, SoundSpec, WheelMotion
from autopilot_msgs.srv import LoadSound, PlaySound, SetDigitalOutput, SimulateInput
from rcl_interfaces.srv import GetParameters
from rclpy.node import Node
from sensor_msgs.msg import Image

from autopilot_cli.base import CommandError, CommandExtension
from autopilot_cli.graph import call_service, cli_executor, cli_node, positive_float
from autopilot_core import qos, stamps
from autopilot_core.executors import spin

LED_PULSE_MS = 300.0
WHEEL_RUN_US = 500_000   # the sim wheel's run in a check
WHEEL_MIN_CM = 1.0       # the wheel works once it has moved this far
VALVE_CLICK_MS = 10.0
TONE = SoundSpec(id='_check_tone', kind=SoundSpec.KIND_TONE, frequency_hz=1000.0, duration_ms=200.0, amplitude=0.05,
                 ramp_ms=5.0)
ONSET_SOURCES = {SoundOnset.SOURCE_DAC: 'DAC time', SoundOnset.SOURCE_CALLBACK: 'callback time',
                 SoundOnset.SOURCE_NULL: 'null backend clock'}


@dataclass
class Row:
    device: str
    kind: str
    result: str   # ok | FAILED | skipped
    detail: str


def table(rows: list[Row]) -> str:
    """The rows in columns, as ``ros2`` prints its tables."""
    head = ('device', 'kind', 'result', 'detail')
    cells = [head, *((r.device, r.kind, r.result, r.detail) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    return '\n'.join('  '.join(c[i].ljust(widths[i]) for i in range(3)) + '  ' + c[3] for c in cells)


def edges_summary(events: list[GpioEvent], pins: list[int] | None = None) -> tuple[bool, str]:
    """Whether every pin (``pins``, else any) went high and low again, and the first rise's tick and high time."""
    by_pin: dict[int, list[GpioEvent]] = {}
    for e in events:
        by_pin.setdefault(e.pin, []).append(e)
    want = pins if pins is not None else list(by_pin) or [-1]
    parts = []
    for pin in want:
        seen = by_pin.get(pin, [])
        rise = next((e for e in seen if e.level), None)
        fall = next((e for e in seen if rise is not None and not e.level and e.tick_us > rise.tick_us), None)
        if rise is None or fall is None:
            return False, f'pin {pin}: ' + ('no edge came back' if not seen else 'it never went low again')
        parts.append(f'pin {pin} high at tick {rise.tick_us} us for {(fall.tick_us - rise.tick_us) / 1000:.1f} ms')
    return True, '; '.join(parts)


class CheckCommand(CommandExtension):
    """Bring-up check of a rig: blink, click, poke, play and grab each device, then a table of what works."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.description = (__doc__ or '').split('\n\n')[0].replace('``', '')
        parser.add_argument('-n', '--namespace', default=os.environ.get('AUTOPILOT_PILOT', ''),
                            help='the rig (its namespace), e.g. /rig_1 (default: $AUTOPILOT_PILOT)')
        parser.add_argument('--yes', action='store_true', help='click each valve without asking')
        parser.add_argument('--poke-timeout', type=positive_float, default=30.0,
                            help='how long to wait for each poke, s (default 30)')
        parser.add_argument('--timeout', type=positive_float, default=10.0,
                            help='longest wait for a node and each answer, s (default 10)')

    def main(self, *, parser: argparse.ArgumentParser, args: argparse.Namespace) -> int | str:
        ns = '/' + args.namespace.strip('/') if args.namespace.strip('/') else ''
        with cli_node('check') as node:
            node.executor_ = cli_executor(node)  # type: ignore[attr-defined]
            try:
                rows = Check(node, ns, args).run()
            finally:
                node.executor_.shutdown()  # type: ignore[attr-defined]
        print(table(rows))
        failed = [r.device for r in rows if r.result == 'FAILED']
        print(f'\n{len(rows) - len(failed)} of {len(rows)} checks passed' + (f'; failed: {", ".join(failed)}'
                                                                           if failed else ''))
        return 1 if failed else 0


class Check:
    """One bring-up run on ``node`` against the rig at ``ns``."""

    def __init__(self, node: Node, ns: str, args: argparse.Namespace) -> None:
        self.node, self.ns, self.args = node, ns, args
        self.events: list[GpioEvent] = []
        node.create_subscription(GpioEvent, f'{ns}/gpio/events', self.events.append, qos.EVENTS)

    def call(self, srv_type: Any, name: str, request: Any) -> Any:
        executor = self.node.executor_  # type: ignore[attr-defined]
        return call_service(self.node, executor, srv_type, f'{self.ns}/{name}', request, self.args.timeout,
                            server='the rig')

    def wait(self, until: Callable[[], bool], timeout: float) -> bool:
        return spin(self.node, self.node.executor_, until=until, timeout_sec=timeout)  # type: ignore[attr-defined]

    def params(self, names: list[str]) -> list[Any]:
        res = self.call(GetParameters, 'gpio/get_parameters', GetParameters.Request(names=names))
        return list(res.values)

    def run(self) -> list[Row]:
        backend, inputs, outputs = self.params(['backend', 'inputs', 'outputs'])
        self.sim = backend.string_value == 'sim'
        outs = list(outputs.string_array_value)
        ins = list(inputs.string_array_value)
        kinds = [v.string_value for v in self.params([f'devices.{o}.kind' for o in outs])] if outs else []
        # The events subscription must be matched before the first command, or its edges go unseen.
        self.wait(lambda: self.node.count_publishers(f'{self.ns}/gpio/events') > 0, self.args.timeout)
        rows = [self.output(name, kind) for name, kind in zip(outs, kinds, strict=True)]
        pulls = [v.string_value for v in self.params([f'devices.{i}.pull' for i in ins])] if ins else []
        rows += [self.input(name, pull) for name, pull in zip(ins, pulls, strict=True)]
        rows.append(self.sound())
        nodes = {n for n, s in self.node.get_node_names_and_namespaces() if s == (self.ns or '/')}
        if 'camera' in nodes:
            rows.append(self.camera())
        if 'wheel' in nodes:
            rows.append(self.wheel())
        return rows

    def _drive(self, command: DigitalOutput) -> str | None:
        res = self.call(SetDigitalOutput, 'gpio/set_output', SetDigitalOutput.Request(command=command))
        return None if res.success else res.message

    def _pins_of(self, name: str, timeout: float) -> list[GpioEvent]:
        self.wait(lambda: False, timeout)
        return [e for e in self.events if e.device == name]

    def output(self, name: str, kind: str) -> Row:
        if kind == 'valve':
            if not self.args.yes:
                try:
                    answer = input(f'Click {name} once ({VALVE_CLICK_MS:g} ms of water)? [y/N] ').strip().lower()
                except EOFError:  # no one to ask (stdin closed): no water without a yes
                    answer = ''
                if answer not in ('y', 'yes'):
                    return Row(name, kind, 'skipped', 'not clicked (answer y, or --yes)')
            ms = VALVE_CLICK_MS
        else:
            ms = LED_PULSE_MS
        self.events.clear()
        colours = ('red', 'green', 'blue') if kind == 'led_rgb' else ('',)
        for colour in colours:
            problem = self._drive(DigitalOutput(device=name, mode=DigitalOutput.MODE_PULSE, pulse_us=round(ms * 1000),
                                                color=colour))
            if problem:
                return Row(name, kind, 'FAILED', problem)
            self.wait(lambda: False, ms / 1000 + 0.15)
        seen = self._pins_of(name, 0.3)
        pins = sorted({e.pin for e in seen}) if kind == 'led_rgb' else None
        ok, detail = edges_summary(seen, pins)
        if ok and kind == 'led_rgb' and len(pins or []) != 3:
            ok, detail = False, f'{len(pins or [])} of 3 channels came back: {detail}'
        what = 'red, green, blue' if kind == 'led_rgb' else ('clicked' if kind == 'valve' else 'pulsed')
        return Row(name, kind, 'ok' if ok else 'FAILED', f'{what}: {detail}')

    def input(self, name: str, pull: str) -> Row:
        self.events.clear()
        if self.sim:
            # A poke pulls a pulled-up input low (and a pulled-down one high), for 50 ms.
            res = self.call(SimulateInput, 'gpio/simulate_input',
                            SimulateInput.Request(input=SimInput(device=name, level=pull != 'up', hold_us=50_000)))
            if not res.success:
                return Row(name, 'input', 'FAILED', res.message)
            how, timeout = 'simulated poke', self.args.timeout
        else:
            print(f'Poke {name} now (within {self.args.poke_timeout:g} s)...', flush=True)
            how, timeout = 'poke', self.args.poke_timeout
        if not self.wait(lambda: any(e.device == name for e in self.events), timeout):
            return Row(name, 'input', 'FAILED', f'no edge within {timeout:g} s: check the wiring, pin and pull')
        e = next(e for e in self.events if e.device == name)
        return Row(name, 'input', 'ok', f'{how}: pin {e.pin} went {"high" if e.level else "low"} at tick '
                                        f'{e.tick_us} us')

    def sound(self) -> Row:
        try:
            res = self.call(LoadSound, 'sound/load', LoadSound.Request(sound=TONE))
        except CommandError as exc:
            return Row('sound', 'sound', 'FAILED', str(exc))
        if not res.success:
            return Row('sound', 'sound', 'FAILED', res.message)
        play_id = time.time_ns() % 1_000_000_000
        onset = self.call(PlaySound, 'sound/play_sound', PlaySound.Request(sound_id=TONE.id, play_id=play_id)).onset
        if not onset.ok:
            return Row('sound', 'sound', 'FAILED', onset.message or 'the tone did not play')
        return Row('sound', 'sound', 'ok', f'1 kHz tone: onset {onset.latency_ms:.1f} ms after the command '
                                           f'({ONSET_SOURCES.get(onset.source, "?")})')

    def wheel(self) -> Row:
        samples: list[WheelMotion] = []
        self.node.create_subscription(WheelMotion, f'{self.ns}/wheel/velocity', samples.append, qos.STREAM)
        if not self.wait(lambda: len(samples) >= 5, self.args.timeout):
            return Row('wheel', 'wheel', 'FAILED', f'no samples on {self.ns}/wheel/velocity within '
                                                   f'{self.args.timeout:g} s')
        res = self.call(GetParameters, 'wheel/get_parameters', GetParameters.Request(names=['backend']))
        start = samples[-1].distance_cm
        if res.values and res.values[0].string_value == 'sim':
            run = self.node.create_publisher(SimInput, f'{self.ns}/wheel/sim_input', qos.EVENTS)
            self.wait(lambda: run.get_subscription_count() > 0, self.args.timeout)
            run.publish(SimInput(level=True, hold_us=WHEEL_RUN_US))
            how, timeout = 'simulated run', WHEEL_RUN_US / 1e6 + 1.0
        else:
            print(f'Turn the wheel forward by hand now (within {self.args.poke_timeout:g} s)...', flush=True)
            how, timeout = 'turned', self.args.poke_timeout
        first = len(samples)
        if not self.wait(lambda: abs(samples[-1].distance_cm - start) >= WHEEL_MIN_CM, timeout):
            return Row('wheel', 'wheel', 'FAILED', f'moved {samples[-1].distance_cm - start:.2f} cm within {timeout:g} s: '
                                                   'check the mouse (device, axis) and that it reads the wheel')
        self.wait(lambda: False, 0.5)  # the rest of the motion
        moved = samples[-1].distance_cm - start
        rate = (len(samples) - first) / max(sum(m.period_us for m in samples[first:]) / 1e6, 1e-9)
        top = max((m.velocity_cm_s for m in samples[first:]), key=abs)
        detail = f'{how}: {moved:+.1f} cm, top speed {top:+.1f} cm/s, {rate:.0f} samples/s'
        if moved < 0:
            return Row('wheel', 'wheel', 'FAILED', f'{detail}: forward reads negative, set invert: true')
        return Row('wheel', 'wheel', 'ok', detail)

    def camera(self) -> Row:
        frames: list[Image] = []
        self.node.create_subscription(Image, f'{self.ns}/camera/image', frames.append, qos.STREAM)
        if not self.wait(lambda: bool(frames), self.args.timeout):
            return Row('camera', 'camera', 'FAILED', f'no frame on {self.ns}/camera/image within {self.args.timeout:g} s')
        f = frames[0]
        age_ms = (self.node.get_clock().now().nanoseconds - stamps.to_ns(f.header.stamp)) / 1e6
        return Row('camera', 'camera', 'ok', f'{f.width}x{f.height} {f.encoding} frame, {age_ms:.0f} ms old')
