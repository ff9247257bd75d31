"""What ``autopilot setup`` asks, as one YAML-friendly record, and every check on it.

An answers file (``autopilot setup --answers FILE``; the dialogue writes the same file as
``<config_dir>/setup.yaml`` and shows it as the defaults when run again)::

    role: pilot                # pilot (a rig: gpio, sound, the pilot), terminal (the lab's computer) or child
                               # (devices another host's pilot uses: a running wheel)
    name: rig_1                # the pilot's namespace and name (a child: the pilot it serves); the terminal is /terminal
    ros_domain_id: 17          # every host of the lab the same (0-101)
    gpio_backend: auto         # auto (from the board) | pigpio | lgpio | sim
    inputs:
      poke_left: {pin: 17, pull: up, edge: both, glitch_us: 200}
    outputs:
      valve_left: {pin: 5, kind: valve, max_open_ms: 200}
      cue: {kind: led_rgb, pin_red: 23, pin_green: 24, pin_blue: 25, active_low: true}
    audio: {backend: sounddevice, device: hifiberry, samplerate: 48000, channels: 2, jack: false}
    camera: {enabled: false, source: '0', fps: 30.0}
    wheel: {enabled: false, device: '', axis: REL_Y, cm_per_count: 0.00254, invert: false}   # a child's (or pilot's)
    data_dir: ~/autopilot/data        # terminal
    protocol_dir: ~/autopilot/protocols
    time_sync: terminal.local  # pilot: the terminal's host, its clock's source (chrony); terminal: the subnet
                               # it serves time to (e.g. 192.168.1.0/24); '' leaves the clock alone
    start_on_boot: true

Device settings are the gpio node's own (:mod:`autopilot_hardware.gpio.config`), checked by its own rules
(names, pins claimed twice, a valve without max_open_ms), plus the board's (:mod:`.board`); the wheel's are the
wheel node's parameters, checked by their declarations (:mod:`autopilot_hardware.wheel.node`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from autopilot_core.params import ParamSpec
from autopilot_hardware.gpio.config import ConfigError, build_table, input_specs, kind_spec, output_specs
from autopilot_hardware.wheel.node import PARAMS as WHEEL_PARAMS
from autopilot_setup.board import Board

ROLES = ('pilot', 'terminal', 'child')
BACKENDS = ('auto', 'pigpio', 'lgpio', 'sim')
AUDIO_BACKENDS = ('sounddevice', 'null')
_NAME = re.compile(r'^[A-Za-z][A-Za-z0-9_]{0,62}$')
#: A host name, an IPv4/IPv6 address, or a subnet in CIDR form: what chrony's server and allow take.
_HOST = re.compile(r'^[A-Za-z0-9:.\-]{1,253}(/[0-9]{1,3})?$')
#: ROS_DOMAIN_ID values that work with the default port range on every host (ROS 2 docs: 0-101).
MAX_DOMAIN_ID = 101


class AnswersError(ValueError):
    """Answers that cannot configure a host; the message names the answer and the fix."""


@dataclass
class Audio:
    backend: str = 'sounddevice'
    device: str = ''
    samplerate: int = 48000
    channels: int = 2
    jack: bool = False


@dataclass
class Camera:
    enabled: bool = False
    source: str = '0'
    fps: float = 30.0


@dataclass
class Wheel:
    enabled: bool = False
    device: str = ''
    axis: str = 'REL_Y'
    cm_per_count: float = 0.00254
    invert: bool = False

    def params(self) -> dict[str, object]:
        """The wheel node's parameters (evdev: a USB mouse under the wheel)."""
        return {'backend': 'evdev', 'device': self.device, 'axis': self.axis, 'cm_per_count': self.cm_per_count,
                'invert': self.invert}


@dataclass
class Answers:
    role: str = 'pilot'
    name: str = 'rig_1'
    ros_domain_id: int = 0
    gpio_backend: str = 'auto'
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    audio: Audio = field(default_factory=Audio)
    camera: Camera = field(default_factory=Camera)
    wheel: Wheel = field(default_factory=Wheel)
    data_dir: str = '~/autopilot/data'
    protocol_dir: str = '~/autopilot/protocols'
    time_sync: str = ''
    start_on_boot: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Answers:
        """Answers from a parsed YAML mapping; AnswersError names an unknown or mistyped answer."""
        if not isinstance(data, Mapping):
            raise AnswersError(f'an answers file is a YAML mapping of answers (role, name, ...), not '
                               f'{type(data).__name__}')
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise AnswersError(f'unknown answer {_shown(unknown[0])}; the answers are {", ".join(sorted(known))}')
        values: dict[str, Any] = dict(data)
        for key, sub in (('audio', Audio), ('camera', Camera), ('wheel', Wheel)):
            given = values.get(key, {})
            if not isinstance(given, Mapping) or set(given) - set(sub.__dataclass_fields__):
                raise AnswersError(f'{key}: a mapping of {", ".join(sub.__dataclass_fields__)}')
            values[key] = sub(**{k: _typed(f'{key}.{k}', v, sub.__dataclass_fields__[k].default)
                                 for k, v in given.items()})
        for key in ('inputs', 'outputs'):
            given = values.get(key) or {}
            if not isinstance(given, Mapping) or not all(isinstance(v, Mapping) for v in given.values()):
                raise AnswersError(f'{key}: a mapping of device name -> its settings ({{pin: 17, ...}})')
            values[key] = {str(k): dict(v) for k, v in given.items()}
        defaults = cls()
        for key in ('role', 'name', 'ros_domain_id', 'gpio_backend', 'data_dir', 'protocol_dir', 'time_sync',
                    'start_on_boot'):
            if key in values:
                values[key] = _typed(key, values[key], getattr(defaults, key))
        return cls(**values)


def _shown(value: Any, limit: int = 60) -> str:
    """``value``'s repr, cut to ``limit`` characters: an answer may be a megabyte of anything."""
    text = repr(value)
    return text if len(text) <= limit else f'{text[:limit]}... ({len(text)} characters)'


def _typed(name: str, value: Any, default: Any) -> Any:
    """``value`` if it has the type of ``default`` (an int is a float too), else AnswersError."""
    want = type(default)
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if want is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # source: 0 in YAML is an int
    if not isinstance(value, want) or (want is int and isinstance(value, bool)):
        raise AnswersError(f'{name}: {_shown(value)} is not a {want.__name__}')
    return value


def backend(answers: Answers, board: Board) -> str:
    """The GPIO backend the answers pick (``auto``: the board's)."""
    return board.backend if answers.gpio_backend == 'auto' else answers.gpio_backend


def device_values(answers: Answers) -> dict[str, object]:
    """The gpio node's ``devices.<name>.<setting>`` values (defaults filled in), checked one by one."""
    values: dict[str, object] = {}
    for direction, devices in (('input', answers.inputs), ('output', answers.outputs)):
        for name, settings in devices.items():
            if len(name) > 60:
                raise AnswersError(f'{direction}s: device name {_shown(name)} is longer than 60 characters')
            if direction == 'input':
                specs = input_specs(name)
            else:
                kind = settings.get('kind', 'ttl')
                spec = kind_spec(name)
                problem = _check(spec, kind)
                if problem:
                    raise AnswersError(f'outputs.{name}.kind: {problem}')
                specs = (spec, *output_specs(name, str(kind)))
            by_setting = {s.name.rsplit('.', 1)[1]: s for s in specs}
            unknown = sorted(set(settings) - set(by_setting))
            if unknown:
                raise AnswersError(f'{direction}s.{name}: unknown setting {_shown(unknown[0])}; {name} has '
                                   f'{", ".join(by_setting)}')
            for setting, spec in by_setting.items():
                value = settings.get(setting, spec.default)
                if isinstance(spec.default, float) and isinstance(value, int) and not isinstance(value, bool):
                    value = float(value)
                problem = _check(spec, value)
                if problem:
                    raise AnswersError(f'{direction}s.{name}.{setting}: {problem}')
                values[spec.name] = value
    return values


def _check(spec: ParamSpec, value: Any) -> str | None:
    """The gpio node's own check of ``value`` for ``spec``; a value no parameter can hold (a mapping) too."""
    try:
        problem = spec.check(value)
    except (TypeError, ValueError):
        return f'{_shown(value)} is not a {type(spec.default).__name__}'
    return None if problem is None else problem if len(problem) < 300 else f'{_shown(value)} is not allowed'


def check(answers: Answers, board: Board) -> None:
    """Raise AnswersError naming the first answer that cannot work on ``board``."""
    a = answers
    if a.role not in ROLES:
        raise AnswersError(f'role {_shown(a.role)}: one of {", ".join(ROLES)}')
    if not _NAME.match(a.name):
        raise AnswersError(f"name {_shown(a.name)}: letters, digits and '_', starting with a letter (it becomes "
                           'the namespace /<name>)')
    if not 0 <= a.ros_domain_id <= MAX_DOMAIN_ID:
        raise AnswersError(f'ros_domain_id {a.ros_domain_id}: 0-{MAX_DOMAIN_ID}, the same on every host of the lab')
    if a.time_sync and not _HOST.match(a.time_sync):
        raise AnswersError(f'time_sync {_shown(a.time_sync)}: a host name or address (pilot), or a subnet such as '
                           f'192.168.1.0/24 (terminal)')
    if a.role == 'terminal':
        for key in ('data_dir', 'protocol_dir'):
            if not getattr(a, key).strip():
                raise AnswersError(f'{key}: give a directory')
        return
    if a.wheel.enabled:
        specs = {s.name: s for s in WHEEL_PARAMS}
        for key, value in a.wheel.params().items():
            problem = _check(specs[key], value)
            if problem:
                raise AnswersError(f'wheel.{key}: {problem}')
    if a.role == 'child':
        if not a.wheel.enabled:
            raise AnswersError('wheel.enabled: a child host runs the devices another pilot uses, here a running '
                               'wheel: set wheel.enabled: true')
        return
    if a.gpio_backend not in BACKENDS:
        raise AnswersError(f'gpio_backend {_shown(a.gpio_backend)}: one of {", ".join(BACKENDS)}')
    if a.audio.backend not in AUDIO_BACKENDS:
        raise AnswersError(f'audio.backend {_shown(a.audio.backend)}: one of {", ".join(AUDIO_BACKENDS)}')
    if not 8000 <= a.audio.samplerate <= 192_000 or not 1 <= a.audio.channels <= 32:
        raise AnswersError(f'audio: samplerate {a.audio.samplerate} Hz (8000-192000) and channels '
                           f'{a.audio.channels} (1-32)')
    if not 0.5 <= a.camera.fps <= 500:
        raise AnswersError(f'camera.fps {a.camera.fps}: 0.5-500')
    values = device_values(a)
    if 'hifiberry' in a.audio.device.lower():
        board = board.with_i2s_card()
    try:
        table = build_table(list(a.inputs), list(a.outputs), values, pin_limit=max(board.pins))
    except ConfigError as exc:
        raise AnswersError(str(exc)) from None
    for dev in table.values():
        for pin in dev.pins:
            problem = board.pin_problem(pin)
            if problem:
                raise AnswersError(f'{"inputs" if dev.is_input else "outputs"}.{dev.name}: {problem}')
