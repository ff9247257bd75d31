"""``autopilot setup``: configure this host as the lab's terminal or as a rig, then start it on boot.

    autopilot setup                              # the guided dialogue (over SSH too); current answers as defaults
    autopilot setup --answers rig_3.yaml         # the same, from a file (fleets, scripts, tests)
    sudo autopilot setup --answers rig_3.yaml --enable   # and enable the systemd units

Writes ``<config-dir>/setup.yaml`` (the answers), ``<config-dir>/<name>.params.yaml`` (a rig's devices, sound
card and camera) and the systemd units (:mod:`.render`) into ``--unit-dir``; ``--enable`` runs
``systemctl daemon-reload`` and ``systemctl enable`` on them. ``--print`` shows every file and writes nothing.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from autopilot_cli.base import CommandError, CommandExtension
from autopilot_setup import board as boards
from autopilot_setup.answers import Answers, AnswersError, check
from autopilot_setup.render import CHRONY_CONF, Paths, chrony_conf, params_file, units

CONFIG_DIR = Path('~/.autopilot')
UNIT_DIR = Path('/etc/systemd/system')
CHRONY_DIR = Path('/etc/chrony/conf.d')
ANSWERS_FILE = 'setup.yaml'
MAX_ANSWERS_BYTES = 1_000_000


def repo_root() -> Path:
    """The checkout this command runs from (its scripts/activate.sh starts the units' environment)."""
    from ament_index_python.packages import get_package_prefix
    return Path(get_package_prefix('autopilot_setup')).resolve().parent.parent


def read_answers(path: Path) -> Answers:
    try:
        if path.stat().st_size > MAX_ANSWERS_BYTES:
            raise CommandError(f'{path}: larger than {MAX_ANSWERS_BYTES // 1000} kB; an answers file is a few lines')
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CommandError(f'cannot read {path}: {exc.strerror}') from None
    except yaml.YAMLError as exc:
        raise CommandError(f'{path}: not YAML: {str(exc).splitlines()[0]}') from None
    try:
        return Answers.from_dict(data if data is not None else {})
    except (AnswersError, TypeError) as exc:
        raise CommandError(f'{path}: {exc}') from None


class SetupCommand(CommandExtension):
    """Configure this host as terminal or rig: params file and systemd units, guided or from --answers."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.description = (
            "Configure this host as the lab's terminal or as a rig: a guided dialogue (current answers as the\n"
            'defaults), or --answers FILE. Writes the answers, the rig\'s params file (devices, sound card, camera)\n'
            'and systemd units that start it on boot; --enable enables them (as root).')
        parser.add_argument('--answers', type=Path, help='answers file (YAML; see autopilot_setup.answers): no dialogue')
        parser.add_argument('--config-dir', type=Path, default=None,
                            help=f'where setup.yaml and the params file go (default {CONFIG_DIR} of --user)')
        parser.add_argument('--unit-dir', type=Path, default=UNIT_DIR,
                            help=f'where the systemd units go (default {UNIT_DIR})')
        parser.add_argument('--chrony-dir', type=Path, default=CHRONY_DIR,
                            help=f'where the chrony drop-in goes when time_sync is answered (default {CHRONY_DIR})')
        parser.add_argument('--enable', action='store_true', help='systemctl daemon-reload and enable the units')
        parser.add_argument('--print', dest='print_only', action='store_true', help='show the files; write nothing')
        parser.add_argument('--user', default=os.environ.get('SUDO_USER') or getpass.getuser(),
                            help='account the services run as (default: you, also under sudo)')
        parser.add_argument('--board-model', default=None,
                            help="configure for this board instead of this machine's, e.g. 'Raspberry Pi 5 Model B "
                                 "Rev 1.0' (preparing a card on a PC)")
        parser.add_argument('--repo', type=Path, default=None, help='the autopilot-ros checkout the units start '
                                                                     '(default: this one)')
        parser.add_argument('--pigpiod', default='/usr/bin/pigpiod', help='the pigpiod executable')
        parser.add_argument('--jackd', default='/usr/bin/jackd', help='the jackd executable')

    def main(self, *, parser: argparse.ArgumentParser, args: argparse.Namespace) -> int | str:
        board = boards.detect() if args.board_model is None else boards.for_model(args.board_model)
        # The services run as --user: under sudo, ~ would be root's, which that account cannot read.
        config_dir = (args.config_dir or Path(f'~{args.user}') / CONFIG_DIR.name).expanduser()
        answers_path = config_dir / ANSWERS_FILE
        repo = (args.repo or repo_root()).resolve()
        if args.answers is not None:
            answers = read_answers(args.answers)
        else:
            if not sys.stdin.isatty():
                raise CommandError('no terminal to ask in: give the answers as a file, --answers FILE')
            from autopilot_setup.dialogue import Dialogue
            current = read_answers(answers_path) if answers_path.exists() else Answers()
            print(f'Board: {board.model or "not a Raspberry Pi"} (GPIO backend {board.backend}). '
                  f'Defaults: {answers_path if answers_path.exists() else "none yet"}.')
            asked = Dialogue(board, repo / 'launch' / 'params' / 'rig_sim.yaml').ask(current)
            if asked is None:
                print('cancelled: nothing written')
                return 1
            answers = asked
        try:
            check(answers, board)
        except AnswersError as exc:
            raise CommandError(str(exc)) from None
        paths = Paths(repo=repo, config_dir=config_dir, user=args.user, pigpiod=args.pigpiod, jackd=args.jackd)
        files: dict[Path, str] = {answers_path: yaml.safe_dump(answers.to_dict(), sort_keys=False)}
        params = config_dir / f'{answers.name}.params.yaml'
        if answers.role != 'terminal':
            files[params] = params_file(answers, board, answers_path)
        system_files = {args.unit_dir / name: text for name, text in units(answers, board, paths, params).items()}
        files.update(system_files)
        chrony = chrony_conf(answers)
        if chrony is not None:
            files[args.chrony_dir / CHRONY_CONF] = chrony
            system_files[args.chrony_dir / CHRONY_CONF] = chrony
        if args.print_only:
            for path, text in files.items():
                print(f'# ---- {path}\n{text}')
            return 0
        for path, text in files.items():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                if path not in system_files and os.geteuid() == 0 and args.user != 'root':
                    # Written under sudo: the account that runs the rig (and setup, next time) owns its files.
                    shutil.chown(path.parent, args.user)
                    shutil.chown(path, args.user)
            except (OSError, LookupError) as exc:
                raise CommandError(f'cannot write {path}: {getattr(exc, "strerror", None) or exc}' +
                                   (' (run it with sudo, or give --unit-dir)' if path in system_files else '')) from None
            print(f'wrote {path}')
        if args.enable:
            if not answers.start_on_boot:
                print('start_on_boot is false: units written, not enabled')
                return 0
            names = [p.name for p in system_files if p.suffix == '.service']
            commands = [['systemctl', 'daemon-reload'], ['systemctl', 'enable', *names]]
            if chrony is not None:
                commands.append(['systemctl', 'try-restart', 'chrony'])  # reads its new drop-in
            for cmd in commands:
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    raise CommandError(f'{" ".join(cmd)}: {proc.stderr.strip() or proc.returncode}')
            print(f'enabled {", ".join(names)}: they start on the next boot (now: systemctl start {names[-1]})')
        return 0
