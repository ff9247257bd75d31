"""``autopilot check`` (issue 21, item 2): the bring-up check against a simulated rig in real processes (gpio sim
with an RGB LED added, sound null, a synthetic camera): every device exercised and seen back, the table, and the
exit code when a device does not answer."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from test_pilot import CALIBRATION, GPIO, RIG_PARAMS, SOUND

from autopilot_hardware.check_cli import Row, edges_summary, table

ROOT = Path(__file__).resolve().parent.parent
AUTOPILOT = str(ROOT / 'install' / 'autopilot_cli' / 'bin' / 'autopilot')
CAMERA = str(ROOT / 'install' / 'autopilot_hardware' / 'lib' / 'autopilot_hardware' / 'camera')
WHEEL = str(ROOT / 'install' / 'autopilot_hardware' / 'lib' / 'autopilot_hardware' / 'wheel')


def rig_with_rgb(tmp_path: Path) -> Path:
    """The sim rig's params plus a common-anode RGB cue light."""
    doc = yaml.safe_load(RIG_PARAMS.read_text())
    params = doc['/**/gpio']['ros__parameters']
    params['outputs'] = [*params['outputs'], 'cue']
    params.update({'devices.cue.kind': 'led_rgb', 'devices.cue.pin_red': 23, 'devices.cue.pin_green': 24,
                   'devices.cue.pin_blue': 25, 'devices.cue.active_low': True})
    path = tmp_path / 'rig.yaml'
    path.write_text(yaml.safe_dump(doc))
    return path


def test_check_exercises_every_device_of_a_simulated_rig(procs, tmp_path: Path) -> None:
    calibration = tmp_path / 'c.jsonl'
    calibration.write_text(CALIBRATION.read_text())
    gpio = procs([GPIO, '--ros-args', '--params-file', str(rig_with_rgb(tmp_path)), '-p',
                  f'calibration_file:={calibration}', '-r', '__ns:=/rig_9'], name='gpio')
    sound = procs([str(SOUND), '--ros-args', '-p', 'backend:=null', '-r', '__ns:=/rig_9'], name='sound')
    camera = procs([CAMERA, '--ros-args', '-p', 'backend:=synthetic', '-p', 'fps:=30.0', '-r', '__ns:=/rig_9'],
                   name='camera')
    wheel = procs([WHEEL, '--ros-args', '-p', 'backend:=sim', '-p', 'sim_speed_cm_s:=20.0', '-p', 'sim_noise_cm_s:=0.0',
                   '-r', '__ns:=/rig_9'],
                  name='wheel')
    for proc, ready in ((gpio, 'gpio ready'), (sound, 'ready'), (camera, 'camera'), (wheel, 'wheel ready')):
        proc.wait_for_output(ready)
    out = subprocess.run([AUTOPILOT, 'check', '-n', '/rig_9', '--yes'], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines()[1:] if line.strip() and
             not line.startswith(('device', ' ')) and 'checks passed' not in line}
    assert set(lines) == {'valve_left', 'valve_right', 'valve_center', 'led_center', 'cue', 'poke_left',
                          'poke_center', 'poke_right', 'sound', 'camera', 'wheel'}, out.stdout
    assert all('  ok  ' in line for line in lines.values()), out.stdout
    assert 'clicked: pin 5 high at tick' in lines['valve_left'] and 'for 10.' in lines['valve_left']
    assert 'red, green, blue: pin 23 high' in lines['cue'] and 'pin 25 high' in lines['cue']
    assert 'simulated poke: pin 17 went low' in lines['poke_left']
    assert 'onset' in lines['sound'] and 'null backend clock' in lines['sound']
    assert '640x480' in lines['camera']
    # 20 cm/s for 0.5 s; one count (0.00254 cm) more or less in a 20 ms period is 0.13 cm/s.
    moved, top = re.search(r'simulated run: ([-+.\d]+) cm, top speed ([-+.\d]+) cm/s, \d+ samples/s', lines['wheel']).groups()
    assert float(moved) == pytest.approx(10.0, abs=0.1) and float(top) == pytest.approx(20.0, abs=0.3), lines['wheel']
    assert '11 of 11 checks passed' in out.stdout


def test_check_says_what_failed_and_exits_1(procs, tmp_path: Path) -> None:
    calibration = tmp_path / 'c.jsonl'
    calibration.write_text(CALIBRATION.read_text())
    gpio = procs([GPIO, '--ros-args', '--params-file', str(RIG_PARAMS), '-p', f'calibration_file:={calibration}',
                  '-r', '__ns:=/rig_8'], name='gpio')
    gpio.wait_for_output('gpio ready')
    # No sound server: the check says so in its row; valves skipped without a yes (stdin gives none).
    # --timeout is also the CLI's wait to discover the rig: 2 s was once too short on a loaded CI host.
    out = subprocess.run([AUTOPILOT, 'check', '-n', '/rig_8', '--timeout', '5'], capture_output=True, text=True,
                         timeout=120, stdin=subprocess.DEVNULL)  # no one to say yes: no valve clicks
    assert out.returncode == 1, out.stdout + out.stderr
    rows = {line.split()[0]: line for line in out.stdout.splitlines() if line.strip()}
    assert 'valve_left' in rows, out.stdout + out.stderr
    assert 'skipped' in rows['valve_left'] and 'not clicked (answer y, or --yes)' in rows['valve_left']
    assert 'FAILED' in rows['sound'] and 'service /rig_8/sound/load not available' in rows['sound']
    assert 'failed: sound' in out.stdout


def test_edges_summary_and_table() -> None:
    from autopilot_msgs.msg import GpioEvent
    events = [GpioEvent(device='cue', pin=23, level=True, tick_us=1000), GpioEvent(device='cue', pin=23, level=False,
                                                                                 tick_us=301_000)]
    assert edges_summary(events, [23]) == (True, 'pin 23 high at tick 1000 us for 300.0 ms')
    assert edges_summary(events, [23, 24]) == (False, 'pin 24: no edge came back')
    assert edges_summary(events[:1]) == (False, 'pin 23: it never went low again')
    assert table([Row('a', 'led', 'ok', 'fine')]).splitlines() == ['device  kind  result  detail',
                                                                   'a       led   ok      fine']
