"""The files a host's answers become: the rig's params file and the systemd units that start it on boot.

* ``<name>.params.yaml``: one ROS 2 params file for the rig's nodes (``/**/gpio``: backend and devices,
  ``/**/sound``, ``/**/camera``, ``/**/wheel``), given to rig.launch.yaml as ``gpio_params`` (each node reads its
  section); a child's holds its ``/**/wheel`` and goes to child.launch.yaml as ``child_params``.
* ``autopilot-rig.service``, ``autopilot-child.service`` or ``autopilot-terminal.service``: the launch file under
  systemd, restarted on
  failure, stopped with SIGINT (every node's clean stop: valves closed, files closed), ordered after the network
  and the daemons it needs; ``pigpiod.service`` (pigpio backend: localhost only, as the gpio node connects to
  it there) and ``jackd.service`` (audio.jack) when asked for.

Units run the launch through ``bash -c '. <repo>/scripts/activate.sh && exec autopilot launch ...'`` so the
same environment as an interactive shell (the venv or the sourced ROS) starts the rig. Rendering is pure:
files are returned as text, :mod:`.command` writes them.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

from autopilot_setup.answers import Answers, backend, device_values
from autopilot_setup.board import Board

CHRONY_CONF = 'autopilot.conf'
RIG_UNIT = 'autopilot-rig.service'
TERMINAL_UNIT = 'autopilot-terminal.service'
CHILD_UNIT = 'autopilot-child.service'
PIGPIOD_UNIT = 'pigpiod.service'
JACKD_UNIT = 'jackd.service'


@dataclass(frozen=True)
class Paths:
    """Where things are on the host being configured."""

    repo: Path                       # the autopilot-ros checkout (scripts/activate.sh, launch/)
    config_dir: Path                 # setup.yaml and the params file
    user: str                        # the account the services run as
    pigpiod: str = '/usr/bin/pigpiod'
    jackd: str = '/usr/bin/jackd'


def params_file(answers: Answers, board: Board, answers_path: Path) -> str:
    """The rig's params file (YAML), for the gpio, sound, camera and wheel nodes; a child's for its wheel."""
    a = answers
    wheel = {'/**/wheel': {'ros__parameters': a.wheel.params()}} if a.wheel.enabled else {}
    if a.role == 'child':
        return (f'# Child of pilot {a.name}: written by `autopilot setup` from {answers_path} (run it again to change).\n'
                f'# Started by {CHILD_UNIT}.\n' + yaml.safe_dump(wheel, sort_keys=False, default_flow_style=False))
    gpio: dict[str, object] = {'backend': backend(a, board), 'inputs': list(a.inputs), 'outputs': list(a.outputs)}
    gpio.update(device_values(a))
    sound: dict[str, object] = {'backend': a.audio.backend, 'device': a.audio.device,
                                'samplerate': a.audio.samplerate, 'channels': a.audio.channels}
    doc: dict[str, object] = {'/**/gpio': {'ros__parameters': gpio}, '/**/sound': {'ros__parameters': sound}}
    if a.camera.enabled:
        doc['/**/camera'] = {'ros__parameters': {'backend': 'opencv', 'source': a.camera.source, 'fps': a.camera.fps}}
    doc.update(wheel)
    header = (f'# Rig {a.name}: written by `autopilot setup` from {answers_path} (run it again to change).\n'
              f'# Board: {board.model or "not a Raspberry Pi"}. Started by {RIG_UNIT}.\n')
    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def chrony_conf(answers: Answers) -> str | None:
    """chrony's drop-in (``/etc/chrony/conf.d/autopilot.conf``) that syncs the lab to the terminal, or None.

    A pilot (or child) takes the terminal as its preferred server and steps its clock at boot when it is far off (a Pi has
    no real-time clock: it boots with a stale time); the terminal serves its clock to the lab's subnet, also
    when it has no upstream source itself (``local``), so a lab without internet still agrees on one time.
    """
    a = answers
    if not a.time_sync:
        return None
    head = '# Written by `autopilot setup`: the lab\'s clocks follow the terminal (autopilot_terminal.clocksync).\n'
    if a.role != 'terminal':  # a pilot or a child: both stamp what the terminal compares
        return head + f'server {a.time_sync} iburst prefer minpoll 4 maxpoll 6\nmakestep 0.1 3\n'
    return head + f'allow {a.time_sync}\nlocal stratum 10\n'


def _launch(paths: Paths, launch_file: str, args: dict[str, str]) -> str:
    words = ['autopilot', 'launch', str(paths.repo / 'launch' / launch_file),
             *(f'{k}:={v}' for k, v in args.items())]
    inner = f'. {shlex.quote(str(paths.repo / "scripts" / "activate.sh"))} && exec {shlex.join(words)}'
    return f'/bin/bash -c {shlex.quote(inner)}'


def _unit(description: str, after: list[str], requires: list[str], service: dict[str, str],
          environment: dict[str, str]) -> str:
    lines = ['[Unit]', f'Description={description}', 'Wants=network-online.target',
             f'After={" ".join(["network-online.target", *after])}']
    if requires:
        lines.append(f'Requires={" ".join(requires)}')
    lines += ['', '[Service]']
    lines += [f'Environment={k}={v}' for k, v in environment.items()]
    lines += [f'{k}={v}' for k, v in service.items()]
    lines += ['', '[Install]', 'WantedBy=multi-user.target', '']
    return '\n'.join(lines)


def units(answers: Answers, board: Board, paths: Paths, params: Path) -> dict[str, str]:
    """Unit file name -> text, for this host."""
    a = answers
    env = {'ROS_DOMAIN_ID': str(a.ros_domain_id), 'PYTHONUNBUFFERED': '1'}
    common = {'Type': 'simple', 'User': paths.user, 'WorkingDirectory': str(paths.repo),
              # SIGINT is every node's clean stop (valves closed, subject files closed); launch escalates after it.
              'KillSignal': 'SIGINT', 'TimeoutStopSec': '30', 'Restart': 'on-failure', 'RestartSec': '5'}
    out: dict[str, str] = {}
    if a.role == 'terminal':
        start = _launch(paths, 'terminal.launch.yaml', {
            'data_dir': a.data_dir, 'protocol_dir': a.protocol_dir, 'gui': 'false'})
        out[TERMINAL_UNIT] = _unit('autopilot-ros terminal: pilot registry, subjects, recording', [], [],
                                   {**common, 'ExecStart': start}, env)
        return out
    if a.role == 'child':
        start = _launch(paths, 'child.launch.yaml', {'pilot': a.name, 'wheel_backend': 'evdev',
                                                      'child_params': str(params)})
        out[CHILD_UNIT] = _unit(f'autopilot-ros child of {a.name}: a running wheel', [], [],
                                {**common, 'ExecStart': start}, {**env, 'AUTOPILOT_PILOT': a.name})
        return out
    gpio_backend = backend(a, board)
    after, requires = [], []
    if gpio_backend == 'pigpio':
        # -l: listen on localhost only (pigpiod would otherwise take commands from the whole network).
        out[PIGPIOD_UNIT] = _unit('pigpio daemon (GPIO with DMA timing) for the autopilot-ros rig', [], [],
                                  {'Type': 'forking', 'ExecStart': f'{paths.pigpiod} -l'}, {})
        after.append(PIGPIOD_UNIT)
        requires.append(PIGPIOD_UNIT)
    if a.audio.backend == 'sounddevice' and a.audio.jack:
        # ALSA names the card (aplay -l: e.g. sndrpihifiberry); a device given as hw:... is taken as it is.
        device = a.audio.device or '0'
        device = device if device.startswith('hw:') else f'hw:{device}'
        out[JACKD_UNIT] = _unit('JACK audio server for the autopilot-ros rig', [], [], {
            'Type': 'simple', 'User': paths.user, 'LimitRTPRIO': '95', 'LimitMEMLOCK': 'infinity',
            'ExecStart': f'{paths.jackd} -R -d alsa -d {device} -r {a.audio.samplerate} -p 256 -n 2',
            'Restart': 'on-failure', 'RestartSec': '2'}, {})
        after.append(JACKD_UNIT)
        requires.append(JACKD_UNIT)
    start = _launch(paths, 'rig.launch.yaml', {
        'pilot': a.name, 'gpio_backend': gpio_backend, 'gpio_params': str(params),
        'sound_backend': a.audio.backend, 'virtual_subject': 'false', 'camera': str(a.camera.enabled).lower(),
        'wheel': str(a.wheel.enabled).lower()})
    out[RIG_UNIT] = _unit(f'autopilot-ros rig {a.name}: gpio, sound and the pilot', after, requires,
                          {**common, 'ExecStart': start}, {**env, 'AUTOPILOT_PILOT': a.name})
    return out
