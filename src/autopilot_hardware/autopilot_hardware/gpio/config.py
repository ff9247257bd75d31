"""The rig's GPIO devices from flat ROS parameters, and the checks on commands to them.

Layout in a params file (ROS parameters are flat typed values, so devices are listed by name and each
device's settings are ``devices.<name>.<setting>``, declared for the listed names only)::

    /**/gpio:
      ros__parameters:
        backend: sim                 # sim | pigpio | lgpio
        inputs: [poke_left, poke_center]
        outputs: [valve_left, led_center]
        devices.poke_left.pin: 17    # BCM number (lgpio: line offset on the chip)
        devices.poke_left.pull: up   # up | down | off
        devices.poke_left.edge: both # rising | falling | both: which edges become events
        devices.poke_left.glitch_us: 200   # level must be steady this long to count (pigpio's glitch filter)
        devices.valve_left.pin: 5
        devices.valve_left.kind: valve     # valve | led | led_rgb | ttl
        devices.valve_left.max_open_ms: 500  # longest opening of a valve on ANY path (> 0; see gpio.limits)
        devices.valve_left.active_low: false # true: the pin is driven low to open (e.g. a low-side relay board)
        devices.led_center.pwm_frequency_hz: 800.0
        devices.cue.kind: led_rgb          # three PWM channels as one device: pin_red, pin_green, pin_blue
        devices.cue.pin_red: 23            # (no .pin); active_low: true for a common-anode LED

An output's ``kind`` is declared first, because it decides which settings the device has.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from autopilot_core.params import ParamSpec

PULLS = ('up', 'down', 'off')
EDGES = ('rising', 'falling', 'both')
KINDS = ('valve', 'led', 'led_rgb', 'ttl')
#: The channels of an led_rgb, in the order of its colour's components.
RGB = ('red', 'green', 'blue')
#: BCM GPIOs a pigpio/Raspberry Pi can address; the sim backend accepts the 40-pin header's 0-27.
MAX_PIN = 53
_NAME = re.compile(r'^[A-Za-z][A-Za-z0-9_]*$')
#: Default longest valve opening: a reward is 10-100 ms; seconds-long openings flood the rig.
DEFAULT_MAX_OPEN_MS = 1000.0


class ConfigError(ValueError):
    """A device configuration that cannot be used; the message names the device and the fix."""


@dataclass(frozen=True)
class Device:
    name: str
    pin: int
    is_input: bool
    pull: str = 'off'
    edge: str = 'both'
    glitch_us: int = 0
    kind: str = 'ttl'
    max_open_ms: float = 0.0
    pwm_frequency_hz: float = 800.0
    active_low: bool = False
    #: led_rgb: the red, green and blue channels' pins (``pin`` is the red one).
    rgb_pins: tuple[int, ...] = ()

    @property
    def max_open_us(self) -> int:
        """Longest high time allowed (0: unlimited)."""
        return int(self.max_open_ms * 1000)

    @property
    def pins(self) -> tuple[int, ...]:
        """Every pin the device drives or reads."""
        return self.rgb_pins or (self.pin,)


def input_specs(name: str) -> tuple[ParamSpec, ...]:
    p = f'devices.{name}.'
    return (
        ParamSpec(p + 'pin', -1, f'GPIO of input {name} (BCM number; lgpio: line offset)', min=-1, max=255,
                  read_only=True),
        ParamSpec(p + 'pull', 'off', f'Pull resistor of {name}', choices=PULLS, read_only=True),
        ParamSpec(p + 'edge', 'both', f'Edges of {name} that become events', choices=EDGES, read_only=True),
        ParamSpec(p + 'glitch_us', 0, f'Glitch filter of {name}: a level must be steady this long to count',
                  unit='us', min=0, max=300_000, read_only=True),
    )


def kind_spec(name: str) -> ParamSpec:
    return ParamSpec(f'devices.{name}.kind', 'ttl', f'What {name} drives (valves get a maximum open time; led_rgb '
                     'is three PWM channels)', choices=KINDS, read_only=True)


def output_specs(name: str, kind: str) -> tuple[ParamSpec, ...]:
    """The settings of output ``name`` of ``kind`` (declared after the kind, which decides them)."""
    p = f'devices.{name}.'
    common = (
        ParamSpec(p + 'active_low', False, f'{name} is active when its pin is low (a low-side relay board, a '
                  'common-anode LED): every output is driven to its inactive level from startup on', read_only=True),
        ParamSpec(p + 'pwm_frequency_hz', 800.0, f'PWM frequency of {name} when a command gives none',
                  unit='Hz', min=1.0, max=40_000.0, read_only=True),
    )
    if kind == 'led_rgb':
        return (*(ParamSpec(p + f'pin_{c}', -1, f'GPIO of the {c} channel of {name} (BCM number; lgpio: line '
                            'offset)', min=-1, max=255, read_only=True) for c in RGB), *common)
    return (
        ParamSpec(p + 'pin', -1, f'GPIO of output {name} (BCM number; lgpio: line offset)', min=-1, max=255,
                  read_only=True),
        ParamSpec(p + 'max_open_ms', DEFAULT_MAX_OPEN_MS,
                  f'Longest opening of {name} when it is a valve, on every path (> 0; gpio.limits)', unit='ms',
                  min=0.0, max=60_000.0, read_only=True),
        *common,
    )


def check_names(inputs: Sequence[str], outputs: Sequence[str]) -> None:
    seen: set[str] = set()
    for name in [*inputs, *outputs]:
        if not _NAME.match(name):
            raise ConfigError(f"device name {name!r} in inputs/outputs is not valid: use letters, digits and "
                              f"'_', starting with a letter (it becomes parameter devices.<name>.pin)")
        if name in seen:
            both = 'both inputs and outputs' if name in inputs and name in outputs else 'twice'
            raise ConfigError(f'device {name!r} is listed {both}: list each device once')
        seen.add(name)


def build_table(inputs: Sequence[str], outputs: Sequence[str], values: Mapping[str, object],
                pin_limit: int = MAX_PIN) -> dict[str, Device]:
    """Devices by name from the declared ``devices.<name>.*`` values; ConfigError on the first problem."""
    check_names(inputs, outputs)
    table: dict[str, Device] = {}
    by_pin: dict[int, str] = {}
    for name in [*inputs, *outputs]:
        p = f'devices.{name}.'
        rgb = name in outputs and values.get(p + 'kind') == 'led_rgb'
        pins = []
        for setting in [f'pin_{c}' for c in RGB] if rgb else ['pin']:
            pin = int(values[p + setting])  # type: ignore[call-overload]
            if pin < 0:
                raise ConfigError(f"device {name!r} has no {setting.replace('_', ' ')}: set devices.{name}.{setting} "
                                  f"in the params file (or -p devices.{name}.{setting}:=<BCM number>)")
            if pin > pin_limit:
                raise ConfigError(f'device {name!r}: pin {pin} does not exist on this backend (pins 0-{pin_limit}): '
                                  f'fix devices.{name}.{setting}')
            if pin in by_pin:
                raise ConfigError(f'pin {pin} is claimed twice, by {by_pin[pin]!r} and {name!r}: give each device '
                                  f'(and each channel of an led_rgb) its own pin')
            by_pin[pin] = name
            pins.append(pin)
        pin = pins[0]
        if name in inputs:
            dev = Device(name, pin, True, pull=str(values[p + 'pull']), edge=str(values[p + 'edge']),
                         glitch_us=int(values[p + 'glitch_us']))  # type: ignore[call-overload]
        else:
            kind = str(values[p + 'kind'])
            if kind == 'valve' and not float(values[p + 'max_open_ms']) > 0:  # type: ignore[arg-type]
                raise ConfigError(f"valve {name!r} has max_open_ms {values[p + 'max_open_ms']}: a valve needs a "
                                  f"limit > 0; set devices.{name}.max_open_ms (e.g. 500)")
            dev = Device(name, pin, False, kind=kind,
                         max_open_ms=float(values[p + 'max_open_ms']) if kind == 'valve' else 0.0,  # type: ignore[arg-type]
                         pwm_frequency_hz=float(values[p + 'pwm_frequency_hz']),  # type: ignore[arg-type]
                         active_low=bool(values.get(p + 'active_low', False)), rgb_pins=tuple(pins) if rgb else ())
        table[name] = dev
    return table


def lookup(table: Mapping[str, Device], name: str, want_input: bool | None = None) -> Device:
    """The device called ``name``; ConfigError naming the known ones (and the right kind) otherwise."""
    dev = table.get(name)
    if dev is None:
        known = ', '.join(sorted(table)) or 'none'
        raise ConfigError(f'unknown device {name!r} (devices: {known}); add it to inputs/outputs in the params file')
    if want_input is not None and dev.is_input != want_input:
        raise ConfigError(f"device {name!r} is an {'input' if dev.is_input else 'output'}, "
                          f"not an {'input' if want_input else 'output'}")
    return dev


def check_high_time(dev: Device, high_us: int, what: str = 'pulse') -> None:
    """Refuse a high time that is not positive or exceeds the device's maximum open time."""
    if high_us <= 0:
        raise ConfigError(f'{dev.name}: {what} of {high_us} us: the high time must be > 0')
    if dev.max_open_us and high_us > dev.max_open_us:
        raise ConfigError(f'{dev.name}: {what} of {high_us / 1000:g} ms exceeds max_open_ms '
                          f'{dev.max_open_ms:g} ms; shorten it or raise devices.{dev.name}.max_open_ms')
