"""``autopilot setup`` (issue 21, item 1): answers checked by the gpio node's rules and the board's, the params
file a real gpio node starts from, systemd units that ``systemd-analyze verify`` accepts, and the guided
dialogue driven keystroke by keystroke through prompt_toolkit's pipe input."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot_setup.answers import Answers, AnswersError, Wheel, check
from autopilot_setup.board import backend_for, detect, for_model

ROOT = Path(__file__).resolve().parent.parent
AUTOPILOT = str(ROOT / 'install' / 'autopilot_cli' / 'bin' / 'autopilot')
GPIO = str(ROOT / 'install' / 'autopilot_hardware' / 'lib' / 'autopilot_hardware' / 'gpio')
PI4 = 'Raspberry Pi 4 Model B Rev 1.5'
RIG = {
    'role': 'pilot', 'name': 'rig_3', 'ros_domain_id': 17,
    'inputs': {'poke_left': {'pin': 17, 'pull': 'up', 'glitch_us': 200}, 'poke_right': {'pin': 9, 'pull': 'up'}},
    'outputs': {'valve_left': {'pin': 5, 'kind': 'valve', 'max_open_ms': 200, 'active_low': True},
                'cue': {'kind': 'led_rgb', 'pin_red': 23, 'pin_green': 24, 'pin_blue': 25, 'active_low': True}},
    'audio': {'backend': 'sounddevice', 'device': 'hifiberry', 'jack': True},
    'camera': {'enabled': True, 'source': 0},
    'time_sync': 'lab-terminal.local',
}


def with_(**changes: object) -> dict:
    """RIG with ``a__b__c=value`` set (a path into the nested answers)."""
    out = yaml.safe_load(yaml.safe_dump(RIG))
    for key, value in changes.items():
        *path, last = key.split('__')
        target = out
        for part in path:
            target = target[part]
        target[last] = value
    return out


# -- boards and answers ---------------------------------------------------------------------------------------
def test_the_board_picks_the_backend(tmp_path: Path) -> None:
    assert backend_for('Raspberry Pi 5 Model B Rev 1.0') == 'lgpio' and backend_for(PI4) == 'pigpio'
    assert backend_for('') == 'sim' and detect(tmp_path / 'none').backend == 'sim'
    model = tmp_path / 'model'
    model.write_bytes(b'Raspberry Pi 3 Model B Plus Rev 1.3\x00')
    board = detect(model)
    assert board.is_pi and board.backend == 'pigpio' and board.pin_problem(0) == 'GPIO 0 is reserved: the HAT ID ' \
        'EEPROM uses it'
    assert board.pin_problem(28) == 'GPIO 28 is not on the 40-pin header (use 2-27)'
    assert board.with_i2s_card().pin_problem(18) == 'GPIO 18 is reserved: the I2S sound card (HiFiBerry) uses it'


@pytest.mark.parametrize('data, fragment', [
    (with_(colour='red'), "unknown answer 'colour'; the answers are audio, camera, data_dir"),
    (with_(role='nurse'), "role 'nurse': one of pilot, terminal, child"),
    (with_(role='child'), 'wheel.enabled: a child host runs the devices another pilot uses, here a running wheel'),
    (with_(wheel={'enabled': True, 'axis': 'REL_Z'}), "wheel.axis: 'REL_Z' is not allowed"),
    (with_(wheel={'enabled': True, 'cm_per_count': 0.0}), 'wheel.cm_per_count: 0.0 is out of range'),
    (with_(wheel={'enabled': True, 'speed': 3}), 'wheel: a mapping of enabled, device, axis, cm_per_count, invert'),
    (with_(name='rig 3'), "name 'rig 3': letters, digits and '_'"),
    (with_(ros_domain_id=232), 'ros_domain_id 232: 0-101'),
    (with_(ros_domain_id='17'), "ros_domain_id: '17' is not a int"),
    (with_(inputs__poke_left__pin=0), 'inputs.poke_left: GPIO 0 is reserved: the HAT ID EEPROM uses it'),
    (with_(inputs__poke_right__pin=19), 'inputs.poke_right: GPIO 19 is reserved: the I2S sound card'),
    (with_(inputs__poke_right__pin=5), "pin 5 is claimed twice, by 'poke_right' and 'valve_left'"),
    (with_(outputs__cue__pin_green=40), "device 'cue': pin 40 does not exist on this backend (pins 0-27): fix "
                                        'devices.cue.pin_green'),
    (with_(outputs__valve_left__max_open_ms=0), "valve 'valve_left' has max_open_ms 0.0: a valve needs a limit > 0"),
    (with_(outputs__valve_left__colour='red'), "outputs.valve_left: unknown setting 'colour'; valve_left has kind, pin"),
    (with_(outputs__cue__kind='laser'), "outputs.cue.kind: 'laser' is not allowed"),
    (with_(inputs__poke_left__pull='sideways'), "inputs.poke_left.pull: 'sideways' is not allowed"),
    (with_(audio__samplerate=1), 'audio: samplerate 1 Hz (8000-192000)'),
    (with_(camera__fps=0.0), 'camera.fps 0.0: 0.5-500'),
    (with_(time_sync='a b'), "time_sync 'a b': a host name or address (pilot), or a subnet"),
    (with_(audio=[1, 2]), 'audio: a mapping of backend, device'),
])
def test_answers_that_cannot_work_are_refused_naming_the_answer(data: dict, fragment: str) -> None:
    with pytest.raises(AnswersError) as exc:
        check(Answers.from_dict(data), for_model(PI4))
    assert fragment in str(exc.value), str(exc.value)


YAMLISH = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(), st.text(max_size=8)),
                       lambda kids: st.one_of(st.lists(kids, max_size=4),
                                              st.dictionaries(st.text(max_size=8), kids, max_size=4)), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.one_of(YAMLISH, st.dictionaries(st.sampled_from([*RIG, 'x']), YAMLISH, max_size=6),
                 st.builds(lambda k, v: with_(**{k: v}), st.sampled_from(
                     ['name', 'inputs__poke_left__pin', 'outputs__cue__pin_red', 'outputs__valve_left__max_open_ms',
                      'audio__channels', 'camera__fps', 'outputs__cue__kind']), YAMLISH)))
def test_any_answers_are_usable_or_an_answers_error(data: object) -> None:
    try:
        check(Answers.from_dict(data), for_model(PI4))
    except AnswersError as exc:
        assert str(exc) and len(str(exc)) < 600


# -- the command: files a real gpio node starts from, units systemd accepts --------------------------------------
def run_setup(tmp_path: Path, answers: dict, *extra: str) -> subprocess.CompletedProcess:
    path = tmp_path / 'answers.yaml'
    path.write_text(yaml.safe_dump(answers, sort_keys=False))
    stub = tmp_path / 'bin'
    stub.mkdir(exist_ok=True)
    for exe in ('pigpiod', 'jackd'):  # systemd-analyze checks that ExecStart= names an executable
        (stub / exe).write_text('#!/bin/sh\n')
        (stub / exe).chmod(0o755)
    return subprocess.run([AUTOPILOT, 'setup', '--answers', str(path), '--config-dir', str(tmp_path / 'config'),
                           '--unit-dir', str(tmp_path / 'units'), '--user', 'root', '--pigpiod', str(stub / 'pigpiod'),
                           '--jackd', str(stub / 'jackd'), '--chrony-dir', str(tmp_path / 'chrony'), *extra],
                          capture_output=True, text=True, timeout=60)


def test_a_rig_gets_a_params_file_its_gpio_node_starts_from_and_units_systemd_accepts(procs, tmp_path: Path) -> None:
    proc = run_setup(tmp_path, RIG, '--board-model', PI4)
    assert proc.returncode == 0, proc.stderr
    config, units = tmp_path / 'config', tmp_path / 'units'
    assert Answers.from_dict(yaml.safe_load((config / 'setup.yaml').read_text())) == Answers.from_dict(RIG)
    assert sorted(p.name for p in units.iterdir()) == ['autopilot-rig.service', 'jackd.service', 'pigpiod.service']
    rig_unit = (units / 'autopilot-rig.service').read_text()
    assert 'Requires=pigpiod.service jackd.service' in rig_unit and 'KillSignal=SIGINT' in rig_unit
    assert f'gpio_params:={config / "rig_3.params.yaml"}' in rig_unit and 'gpio_backend:=pigpio' in rig_unit
    assert 'camera:=true' in rig_unit and 'Environment=ROS_DOMAIN_ID=17' in rig_unit
    assert '-d hw:hifiberry -r 48000' in (units / 'jackd.service').read_text()
    assert (tmp_path / 'chrony' / 'autopilot.conf').read_text().splitlines()[1:] == [
        'server lab-terminal.local iburst prefer minpoll 4 maxpoll 6', 'makestep 0.1 3']
    if shutil.which('systemd-analyze') is None:
        pytest.fail('systemd-analyze is missing: scripts/setup.py --test installs it (package systemd)')
    verify = subprocess.run(['systemd-analyze', 'verify', *map(str, sorted(units.iterdir()))], capture_output=True,
                            text=True, timeout=60)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    # The params file is the gpio node's: a real node (sim backend here) takes every device from it.
    gpio = procs([GPIO, '--ros-args', '--params-file', str(config / 'rig_3.params.yaml'), '-p', 'backend:=sim',
                  '-p', f'calibration_file:={tmp_path / "c.jsonl"}', '-r', '__ns:=/rig_3'], name='gpio')
    gpio.wait_for_output('gpio ready')
    assert "inputs ['poke_left', 'poke_right'], outputs ['valve_left', 'cue']" in gpio.output()


def test_a_terminal_gets_its_unit_and_a_refusal_writes_nothing(tmp_path: Path) -> None:
    proc = run_setup(tmp_path, {'role': 'terminal', 'ros_domain_id': 17, 'data_dir': '/srv/lab/data',
                                'time_sync': '192.168.1.0/24'})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / 'chrony' / 'autopilot.conf').read_text().splitlines()[1:] == ['allow 192.168.1.0/24',
                                                                                   'local stratum 10']
    unit = (tmp_path / 'units' / 'autopilot-terminal.service').read_text()
    assert 'terminal.launch.yaml data_dir:=/srv/lab/data' in unit and 'gui:=false' in unit
    assert sorted(p.name for p in (tmp_path / 'config').iterdir()) == ['setup.yaml']
    again = tmp_path / 'again'
    again.mkdir()
    proc = run_setup(again, with_(inputs__poke_left__pin=5), '--board-model', PI4)
    assert proc.returncode == 1 and proc.stderr.strip() == \
        "autopilot: error: pin 5 is claimed twice, by 'poke_left' and 'valve_left': give each device (and each " \
        'channel of an led_rgb) its own pin'
    assert not (again / 'config').exists() and not (again / 'units').exists()
    proc = subprocess.run([AUTOPILOT, 'setup', '--config-dir', str(again / 'c')], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1 and 'no terminal to ask in: give the answers as a file, --answers FILE' in proc.stderr


CHILD = {'role': 'child', 'name': 'rig_3', 'ros_domain_id': 17, 'time_sync': 'lab-terminal.local',
         'wheel': {'enabled': True, 'device': 'Logitech', 'cm_per_count': 0.005, 'invert': True}}
WHEEL = str(ROOT / 'install' / 'autopilot_hardware' / 'lib' / 'autopilot_hardware' / 'wheel')


def test_a_child_gets_its_wheel_params_and_a_unit_in_its_pilots_namespace(procs, tmp_path: Path) -> None:
    proc = run_setup(tmp_path, CHILD, '--board-model', PI4)
    assert proc.returncode == 0, proc.stderr
    config, units = tmp_path / 'config', tmp_path / 'units'
    assert sorted(p.name for p in units.iterdir()) == ['autopilot-child.service']
    unit = (units / 'autopilot-child.service').read_text()
    assert 'child.launch.yaml pilot:=rig_3 wheel_backend:=evdev' in unit
    assert f'child_params:={config / "rig_3.params.yaml"}' in unit and 'Environment=ROS_DOMAIN_ID=17' in unit
    assert 'server lab-terminal.local' in (tmp_path / 'chrony' / 'autopilot.conf').read_text()
    verify = subprocess.run(['systemd-analyze', 'verify', str(units / 'autopilot-child.service')],
                            capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    # The params file is the wheel node's: a real node (sim here: this machine has no mouse) starts from it.
    wheel = procs([WHEEL, '--ros-args', '--params-file', str(config / 'rig_3.params.yaml'), '-p', 'backend:=sim',
                   '-r', '__ns:=/rig_3'], name='wheel')
    wheel.wait_for_output('wheel ready')
    assert '0.005 cm per count, inverted' in wheel.output()
    # A pilot with a wheel of its own: the same section in its params file, rig.launch.yaml wheel:=true.
    pilot = tmp_path / 'pilot'
    pilot.mkdir()
    assert run_setup(pilot, with_(wheel={'enabled': True}), '--board-model', PI4).returncode == 0
    assert 'wheel:=true' in (pilot / 'units' / 'autopilot-rig.service').read_text()
    params = yaml.safe_load((pilot / 'config' / 'rig_3.params.yaml').read_text())
    assert params['/**/wheel']['ros__parameters']['axis'] == 'REL_Y' and '/**/gpio' in params


# -- the dialogue ------------------------------------------------------------------------------------------------
DOWN, ENTER = '\x1b[B', '\r'


def dialogue(keys: list[str], current: Answers, found: dict | None = None) -> Answers | None:
    """The dialogue driven by ``keys``; ``found``: the sound cards, cameras and mice it offers (none by default,
    whatever this machine has)."""
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from autopilot_setup.dialogue import Dialogue
    with create_pipe_input() as inp:
        for key in keys:
            inp.send_text(key)
        inp.send_text('\x03' * 3)  # keys that ran out cancel (None) instead of waiting forever
        return Dialogue(for_model(PI4), ROOT / 'launch' / 'params' / 'rig_sim.yaml', input=inp,
                        output=DummyOutput(), found=found or {}).ask(current)


def test_the_dialogue_configures_a_rig_and_shows_its_answers_as_the_defaults_next_time() -> None:
    keys = [ENTER,                       # pilot (the default)
            '\x7f' * 5 + 'rig_7' + ENTER,  # name: rig_1 erased, rig_7 typed
            '\x7f' + '42' + ENTER,       # ROS_DOMAIN_ID
            'lab-terminal.local' + ENTER,  # the terminal: this rig's clock source
            ENTER,                       # GPIO backend: auto (pigpio on this Pi 4)
            DOWN + ENTER,                # sound: null
            'n',                         # no camera
            'n',                         # no running wheel
            DOWN + ENTER,                # devices: the 3-port nose-poke layout
            ENTER,                       # devices: done (the default)
            'y']                         # start on boot
    answers = dialogue(keys, Answers())
    assert answers is not None
    assert (answers.role, answers.name, answers.ros_domain_id, answers.gpio_backend, answers.audio.backend,
            answers.time_sync) == ('pilot', 'rig_7', 42, 'auto', 'null', 'lab-terminal.local')
    assert list(answers.inputs) == ['poke_left', 'poke_center', 'poke_right']
    assert list(answers.outputs) == ['valve_left', 'valve_right', 'valve_center', 'led_center']
    assert answers.outputs['valve_left'] == {'pin': 5, 'kind': 'valve', 'max_open_ms': 200.0}
    # Again: Enter everywhere keeps every answer.
    again = dialogue([ENTER] * 11, answers)
    assert again == answers


def test_the_dialogue_edits_a_device_and_ctrl_c_cancels() -> None:
    start = Answers.from_dict(RIG)
    keys = [ENTER, ENTER, ENTER, ENTER, ENTER,   # pilot, rig_3, 17, no time sync, auto
            DOWN + ENTER,                        # sound: null
            'n',                                 # no camera
            'n',                                 # no running wheel
            ENTER,                               # devices: keep these
            DOWN + ENTER,                        # the menu starts at 'done': down wraps to 'edit poke_left'
            ENTER,                               # its name stays
            '\x7f\x7f' + '27' + ENTER,           # pin 17 -> 27
            ENTER, ENTER,                        # pull up, edges both
            '\x7f\x7f\x7f' + '0' + ENTER,        # glitch filter off
            ENTER,                               # done
            'n']                                 # not on boot
    answers = dialogue(keys, start)
    assert answers is not None and answers.inputs['poke_left'] == {'pin': 27, 'pull': 'up', 'edge': 'both',
                                                                   'glitch_us': 0}
    assert not answers.start_on_boot and answers.outputs == start.outputs
    assert dialogue([ENTER, '\x03'], start) is None
    # Renaming a device to another's name is refused; both stay as they were.
    keys = [ENTER] * 5 + [DOWN + ENTER, 'n', 'n', ENTER, DOWN + ENTER, '\x7f' * 9 + 'poke_right' + ENTER, ENTER, 'y']
    answers = dialogue(keys, start)
    assert answers is not None and answers.inputs == start.inputs


def test_the_dialogue_configures_a_child_with_its_wheel() -> None:
    keys = [DOWN + DOWN + ENTER,                 # child
            '\x7f' * 5 + 'rig_9' + ENTER,        # the rig it serves
            ENTER, ENTER,                        # domain 0, no time sync
            'Logitech' + ENTER,                  # the mouse
            DOWN + ENTER,                        # REL_X
            '\x7f' * 7 + '0.004' + ENTER,        # cm per count
            'y',                                 # inverted
            'y']                                 # on boot
    answers = dialogue(keys, Answers())
    assert answers is not None and (answers.role, answers.name) == ('child', 'rig_9')
    assert answers.wheel == Wheel(enabled=True, device='Logitech', axis='REL_X', cm_per_count=0.004, invert=True)



@pytest.mark.parametrize('text, fragment', [
    ('role: [pilot', 'not YAML: while parsing a flow sequence'),
    ('- just\n- a list\n', 'an answers file is a YAML mapping of answers (role, name, ...), not list'),
    ('name: ' + 'x' * 1_100_000, 'larger than 1000 kB; an answers file is a few lines'),
    ('role: pilot\nros_domain_id: .inf\n', 'ros_domain_id: inf is not a int'),
])
def test_a_malformed_answers_file_is_refused_naming_the_problem(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / 'answers.yaml'
    path.write_text(text)
    proc = subprocess.run([AUTOPILOT, 'setup', '--answers', str(path), '--config-dir', str(tmp_path / 'c'),
                           '--unit-dir', str(tmp_path / 'u'), '--print'], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and fragment in proc.stderr and len(proc.stderr) < 600, proc.stderr
    assert not (tmp_path / 'c').exists() and not (tmp_path / 'u').exists()


def test_the_dialogue_offers_the_cards_cameras_and_mice_it_finds(tmp_path: Path) -> None:
    from autopilot_setup import peripherals

    (tmp_path / 'cards').write_text(' 0 [sndrpihifiberry]: HifiberryDac - snd_rpi_hifiberry_dac\n'
                                    '                      snd_rpi_hifiberry_dac\n'
                                    ' 1 [Headphones     ]: bcm2835_headpho - bcm2835 Headphones\n')
    for n, (index, name) in enumerate([('0', 'USB Camera: HD'), ('1', 'USB Camera: HD'), ('0', 'unicam')]):
        node = tmp_path / 'v4l' / f'video{n * 2}'
        node.mkdir(parents=True)
        (node / 'index').write_text(index + '\n')
        (node / 'name').write_text(name + '\n')
    (tmp_path / 'input').write_text(
        'I: Bus=0019 Vendor=0000\nN: Name="gpio_keys"\nH: Handlers=kbd event0\nB: EV=3\n\n'
        'I: Bus=0003 Vendor=046d Product=c077\nN: Name="Logitech USB Optical Mouse"\nH: Handlers=mouse0 event3\n'
        'B: EV=17\nB: REL=903\n\n')
    found = {'sound': peripherals.sound_cards(tmp_path / 'cards'), 'camera': peripherals.cameras(tmp_path / 'v4l'),
             'mice': peripherals.mice(tmp_path / 'input')}
    assert [f.value for f in found['sound']] == ['sndrpihifiberry', 'Headphones']
    assert [f.label for f in found['camera']] == ['/dev/video0 (USB Camera: HD)', '/dev/video4 (unicam)']
    assert found['mice'] == [peripherals.Found('/dev/input/event3', '/dev/input/event3 (Logitech USB Optical Mouse)')]
    assert peripherals.sound_cards(tmp_path / 'none') == [] and peripherals.mice(tmp_path / 'none') == []
    keys = [ENTER, ENTER, ENTER, ENTER, ENTER,   # pilot, rig_1, 0, no time sync, auto
            ENTER,                               # sound: sounddevice
            DOWN + ENTER,                        # the HiFiBerry (after "the default card")
            ENTER, ENTER, 'n',                   # 48 kHz, 2 channels, no JACK
            'y', '\x1b[A' + ENTER,               # a camera: the second one found (above "0", the current answer)
            ENTER,                               # 30 fps
            'y', DOWN + ENTER,                   # a wheel: the Logitech mouse (after "the first mouse found")
            ENTER, ENTER, 'n',                   # REL_Y, cm per count, not inverted
            DOWN + ENTER, ENTER,                 # the 3-port layout, done
            'y']
    answers = dialogue(keys, Answers(), found)
    assert answers is not None
    assert (answers.audio.device, answers.camera.source, answers.wheel.device) == (
        'sndrpihifiberry', '/dev/video4', '/dev/input/event3')
    # "another: type it" asks for the name; a current answer not found is offered as it is.
    keys = [ENTER] * 6 + [DOWN * 3 + ENTER, 'usb' + ENTER, ENTER, ENTER, 'n', 'n', 'n', ENTER, ENTER, 'y']
    typed = dialogue(keys, Answers(), found)
    assert typed is not None and typed.audio.device == 'usb'
