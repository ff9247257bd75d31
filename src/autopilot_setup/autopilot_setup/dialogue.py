"""The guided dialogue of ``autopilot setup``, in a terminal (over SSH too): questionary prompts, the current
answers as defaults, every answer checked as it is typed and the whole checked at the end.

``input``/``output`` are prompt_toolkit's, for tests (a pipe input and a dummy output); a real run uses the
terminal. Ctrl-C at any question cancels the dialogue (``ask`` returns None) and nothing is written.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import questionary
import yaml
from questionary import Choice

from autopilot_hardware.gpio.config import EDGES, KINDS, PULLS, RGB
from autopilot_hardware.wheel.evdev_wheel import AXES
from autopilot_setup import peripherals
from autopilot_setup.answers import (
    AUDIO_BACKENDS,
    MAX_DOMAIN_ID,
    Answers,
    AnswersError,
    check,
    device_values,
)
from autopilot_setup.board import Board
from autopilot_setup.peripherals import Found


class Cancelled(Exception):
    """The user pressed Ctrl-C (questionary answers None)."""


def layout_from_params(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(inputs, outputs) of a gpio params file (e.g. launch/params/rig_sim.yaml, the simulated 3-port rig)."""
    doc = yaml.safe_load(path.read_text())
    params = next(v['ros__parameters'] for k, v in doc.items() if k.endswith('gpio'))
    devices: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        if key.startswith('devices.'):
            _, name, setting = key.split('.', 2)
            devices.setdefault(name, {})[setting] = value
    return ({n: devices.get(n, {}) for n in params.get('inputs', [])},
            {n: devices.get(n, {}) for n in params.get('outputs', [])})


def _number(kind: type[int] | type[float], lo: float, hi: float) -> Callable[[str], bool | str]:
    """A questionary validator: ``kind(text)`` in ``[lo, hi]``, or the message saying what is wanted."""
    def ok(text: str) -> bool | str:
        try:
            value = kind(text)
        except ValueError:
            return f'{"a whole number" if kind is int else "a number"}, {lo:g}-{hi:g}'
        return lo <= value <= hi or f'{lo:g}-{hi:g}'
    return ok


OTHER = '\0other'


def detected() -> dict[str, list[Found]]:
    """What this host has plugged in, for the pickers (:mod:`.peripherals`)."""
    return {'sound': peripherals.sound_cards(), 'camera': peripherals.cameras(), 'mice': peripherals.mice()}


class Dialogue:
    """Asks for a host's answers, starting from ``current``; ``sim_layout``: the preset device layout file;
    ``found``: the sound cards, cameras and mice to offer (default: this host's)."""

    def __init__(self, board: Board, sim_layout: Path, *, input: Any = None, output: Any = None,
                 found: dict[str, list[Found]] | None = None) -> None:
        self.board = board
        self.sim_layout = sim_layout
        self.io = {k: v for k, v in (('input', input), ('output', output)) if v is not None}
        self.found = detected() if found is None else found

    # -- one question each -----------------------------------------------------------------------------------
    def _answer(self, question: Any) -> Any:
        value = question.unsafe_ask() if self.io else question.ask()
        if value is None:
            raise Cancelled
        return value

    def text(self, message: str, default: str, validate: Any = None) -> str:
        return str(self._answer(questionary.text(message, default=default, validate=validate, **self.io)))

    def select(self, message: str, choices: list[Any], default: Any = None) -> Any:
        return self._answer(questionary.select(message, choices=choices, default=default, **self.io))

    def confirm(self, message: str, default: bool) -> bool:
        return bool(self._answer(questionary.confirm(message, default=default, **self.io)))

    def pick(self, message: str, kind: str, current: str, typed: str, default: str | None = None) -> str:
        """One of the ``kind`` devices found on this host, the current answer, ``default`` ('' labelled so), or
        typed after ``typed``; only the typed question when nothing was found."""
        found = self.found.get(kind, [])
        if not found:
            return self.text(typed, current)
        choices = ([Choice(default, '')] if default is not None else []) + [Choice(f.label, f.value) for f in found]
        if current and current not in [c.value for c in choices]:
            choices.append(Choice(f'{current} (the current answer)', current))
        choices.append(Choice('another: type it', OTHER))
        values = [c.value for c in choices]
        answer = self.select(message, choices, current if current in values else values[0])
        return self.text(typed, current) if answer == OTHER else str(answer)

    # -- the dialogue ----------------------------------------------------------------------------------------
    def ask(self, current: Answers) -> Answers | None:
        """The answers, checked; None when cancelled."""
        try:
            return self._ask(copy.deepcopy(current))
        except (Cancelled, KeyboardInterrupt):
            return None

    def _ask(self, a: Answers) -> Answers:
        a.role = self.select('What is this host?', [
            Choice('pilot: a rig (GPIO, sound and the pilot that runs tasks)', 'pilot'),
            Choice("terminal: the lab's computer (subjects, sessions, recording)", 'terminal'),
            Choice("child: devices another rig's pilot uses (a running wheel)", 'child')], a.role)
        if a.role == 'pilot':
            a.name = self.text('Name of this rig (its ROS namespace):', a.name,
                               lambda t: _valid(lambda: check_name(t)))
        elif a.role == 'child':
            a.name = self.text('Name of the rig this child serves (its devices appear in its namespace):', a.name,
                               lambda t: _valid(lambda: check_name(t)))
        a.ros_domain_id = int(self.text(f'ROS_DOMAIN_ID (the same on every host of the lab, 0-{MAX_DOMAIN_ID}):',
                                        str(a.ros_domain_id), _number(int, 0, MAX_DOMAIN_ID)))
        if a.role != 'terminal':
            a.time_sync = self.text("The terminal's host name or address (this host's clock follows it, chrony; "
                                    'empty: leave the clock alone):', a.time_sync)
        else:
            a.time_sync = self.text('The subnet this terminal serves its clock to, e.g. 192.168.1.0/24 (chrony; '
                                    'empty: none):', a.time_sync)
        if a.role == 'terminal':
            a.data_dir = self.text('Directory of the subject files:', a.data_dir)
            a.protocol_dir = self.text('Directory of the protocol files:', a.protocol_dir)
        elif a.role == 'child':
            a.wheel.enabled = True
            self._wheel(a)
        else:
            detected = f'auto (this board: {self.board.model or "not a Raspberry Pi"} -> {self.board.backend})'
            a.gpio_backend = self.select('GPIO backend:', [Choice(detected, 'auto'), Choice('pigpio (Pi 1-4)', 'pigpio'),
                                                           Choice('lgpio (Pi 5, any gpiochip)', 'lgpio'),
                                                           Choice('sim (no pins: a simulated rig)', 'sim')],
                                         a.gpio_backend)
            self._audio(a)
            self._camera(a)
            a.wheel.enabled = self.confirm('A running wheel on this rig (a USB mouse under it)?', a.wheel.enabled)
            if a.wheel.enabled:
                self._wheel(a)
            self._devices(a)
        a.start_on_boot = self.confirm('Start it on boot (systemd)?', a.start_on_boot)
        while True:
            try:
                check(a, self.board)
                return a
            except AnswersError as exc:
                self.say(f'! {exc}')
                if a.role != 'pilot':
                    raise Cancelled from None
                self._devices(a)

    def say(self, text: str) -> None:
        print(text, flush=True)

    def _audio(self, a: Answers) -> None:
        au = a.audio
        au.backend = self.select('Sound:', [Choice('sounddevice (PortAudio; JACK when jackd runs)', 'sounddevice'),
                                            Choice('null (no sound card: silent, real-time clocked)', 'null')],
                                 au.backend if au.backend in AUDIO_BACKENDS else 'sounddevice')
        if au.backend == 'sounddevice':
            au.device = self.pick('Sound card:', 'sound', au.device,
                                  'Sound card (name substring, e.g. hifiberry; empty: the default):', 'the default card')
            au.samplerate = int(self.select('Sample rate:', ['44100', '48000', '96000', '192000'],
                                            str(au.samplerate) if au.samplerate in (44100, 48000, 96000, 192000)
                                            else '48000'))
            au.channels = int(self.text('Output channels (2: stereo speakers):', str(au.channels), _number(int, 1, 32)))
            au.jack = self.confirm('Run a JACK server for it (lowest latency)?', au.jack)

    def _camera(self, a: Answers) -> None:
        cam = a.camera
        cam.enabled = self.confirm('A camera on this rig?', cam.enabled)
        if cam.enabled:
            cam.source = self.pick('Camera:', 'camera', cam.source, 'Camera (index, /dev/videoN or a file):')
            cam.fps = float(self.text('Frame rate (Hz):', f'{cam.fps:g}', _number(float, 0.5, 500)))

    def _wheel(self, a: Answers) -> None:
        w = a.wheel
        w.device = self.pick('The mouse under the wheel:', 'mice', w.device,
                             'The mouse (/dev/input/eventN or part of its name; empty: the first mouse found):',
                             'the first mouse found')
        w.axis = self.select('The mouse axis that turns with the wheel:', list(AXES), w.axis if w.axis in AXES
                             else 'REL_Y')
        w.cm_per_count = float(self.text('Wheel travel per count, cm (1000 cpi mouse: 0.00254; calibrate later):',
                                         f'{w.cm_per_count:g}', _number(float, 1e-6, 100.0)))
        w.invert = self.confirm('Does running forward read negative (invert it)?', w.invert)

    def _devices(self, a: Answers) -> None:
        keep = f'keep these ({len(a.inputs)} inputs, {len(a.outputs)} outputs: ' \
               f'{", ".join([*a.inputs, *a.outputs]) or "none"})'
        start = self.select('GPIO devices:', [Choice(keep, 'keep'),
                                              Choice('the 3-port nose-poke rig (the simulated rig\'s layout)', 'sim'),
                                              Choice('none, I add them one by one', 'none')], 'keep')
        if start == 'sim':
            a.inputs, a.outputs = layout_from_params(self.sim_layout)
        elif start == 'none':
            a.inputs, a.outputs = {}, {}
        while True:
            choices = [Choice(f'edit {n} (input, pin {s.get("pin")})', ('edit', 'inputs', n)) for n, s in a.inputs.items()]
            choices += [Choice(f'edit {n} ({s.get("kind", "ttl")}, ' + _pins(s) + ')', ('edit', 'outputs', n))
                        for n, s in a.outputs.items()]
            choices += [Choice('add an input (poke, lick, beam break)', ('add', 'inputs', '')),
                        Choice('add an output (valve, LED, RGB LED, TTL)', ('add', 'outputs', '')),
                        Choice('done', ('done', '', ''))]
            what, group, name = self.select('Devices:', choices, choices[-1].value)
            if what == 'done':
                try:
                    device_values(a)
                    return
                except AnswersError as exc:
                    self.say(f'! {exc}')
                    continue
            devices = getattr(a, group)
            self._device(devices, group, name)

    def _device(self, devices: dict[str, dict[str, Any]], group: str, name: str) -> None:
        s = dict(devices.get(name, {}))
        new = self.text('Name (empty: remove it):' if name else 'Name:', name)
        if not new:
            devices.pop(name, None)
            return
        if new != name and new in devices:
            self.say(f'! {new} is already a device: edit it, or give this one another name')
            return
        if group == 'inputs':
            s['pin'] = int(self.text('GPIO (BCM number):', str(s.get('pin', '')), _number(int, 0, 255)))
            s['pull'] = self.select('Pull resistor:', list(PULLS), s.get('pull', 'up'))
            s['edge'] = self.select('Edges that become events:', list(EDGES), s.get('edge', 'both'))
            s['glitch_us'] = int(self.text('Glitch filter (us; 0: off):', str(s.get('glitch_us', 0)),
                                           _number(int, 0, 300_000)))
        else:
            s['kind'] = self.select('Kind:', list(KINDS), s.get('kind', 'ttl'))
            if s['kind'] == 'led_rgb':
                s.pop('pin', None)
                s.pop('max_open_ms', None)
                for c in RGB:
                    s[f'pin_{c}'] = int(self.text(f'GPIO of the {c} channel:', str(s.get(f'pin_{c}', '')),
                                                  _number(int, 0, 255)))
            else:
                for c in RGB:
                    s.pop(f'pin_{c}', None)
                s['pin'] = int(self.text('GPIO (BCM number):', str(s.get('pin', '')), _number(int, 0, 255)))
                if s['kind'] == 'valve':
                    s['max_open_ms'] = float(self.text('Longest opening (ms, on every path):',
                                                       f'{s.get("max_open_ms", 200.0):g}',
                                                       _number(float, 1.0, 60_000.0)))
            s['active_low'] = self.confirm('Active low (a low-side relay board, a common-anode LED)?',
                                           bool(s.get('active_low', False)))
        devices.pop(name, None)
        devices[new] = s


def _pins(settings: dict[str, Any]) -> str:
    if 'pin_red' in settings:
        return 'pins ' + '/'.join(str(settings.get(f'pin_{c}')) for c in RGB)
    return f'pin {settings.get("pin")}'


def check_name(text: str) -> None:
    check(Answers(role='terminal', name=text), Board('', 'sim'))


def _valid(fn: Callable[[], None]) -> bool | str:
    try:
        fn()
    except AnswersError as exc:
        return str(exc)
    return True
