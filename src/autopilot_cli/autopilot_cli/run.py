"""``autopilot run PKG EXE [args]``: run a package's executable, found as ``ros2 run`` finds it.

The executable is ``<prefix>/lib/<PKG>/<EXE>``, the prefix the ament index gives for PKG (AMENT_PREFIX_PATH,
plus the wheels' venv). The process is replaced by the executable (``exec``), so signals, exit status and
the terminal go straight to it; ``--prefix 'gdb -ex run --args'`` runs it under another command.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from autopilot_cli.base import CommandError, CommandExtension
from autopilot_runtime_py.messages import ament_prefixes, install_hint


def package_prefix(package: str) -> str:
    from ament_index_python import get_resource, get_resources

    ament_prefixes()
    try:
        _, prefix = get_resource('packages', package)
    except (LookupError, ValueError):
        known = sorted(get_resources('packages'))
        close = [k for k in known if package.replace('-', '_') in k or k in package][:10]
        hint = f'; similar: {", ".join(close)}' if close else ''
        raise CommandError(f"Package '{package}' not found on AMENT_PREFIX_PATH ({install_hint(package)}; "
                           f"for a workspace package, source its install/setup.bash){hint}") from None
    return prefix


def executables(package: str) -> list[Path]:
    """Executable files under ``<prefix>/lib/<package>`` (hidden directories skipped), sorted."""
    base = Path(package_prefix(package)) / 'lib' / package
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith('.'))
        found += [Path(dirpath) / f for f in sorted(filenames) if os.access(Path(dirpath) / f, os.X_OK)]
    return found


class RunCommand(CommandExtension):
    """Run a package specific executable (as `ros2 run`, for the pip path without ros2cli)."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        self._parser = parser
        parser.add_argument('--prefix', help='Prefix command, which should go before the executable. Command '
                                             "must be wrapped in quotes if it contains spaces "
                                             "(e.g. --prefix 'gdb -ex run --args').")
        parser.add_argument('package_name', help='Name of the ROS package')
        parser.add_argument('executable_name', help='Name of the executable')
        parser.add_argument('argv', nargs=argparse.REMAINDER,
                            help='Pass arbitrary arguments to the executable (e.g. --ros-args -r __ns:=/rig1)')

    def main(self, *, parser: argparse.ArgumentParser, args: Any) -> int:
        matches = [p for p in executables(args.package_name) if p.name == args.executable_name]
        if not matches:
            available = [p.name for p in executables(args.package_name)]
            listing = ', '.join(available) if available else 'none'
            raise CommandError(f"No executable '{args.executable_name}' in package '{args.package_name}' "
                               f"(executables: {listing})")
        if len(matches) > 1:
            raise CommandError('Multiple executables found:\n' + '\n'.join(f'- {p}' for p in matches))
        cmd = [str(matches[0]), *args.argv]
        if args.prefix:
            cmd = shlex.split(args.prefix) + cmd
            if shutil.which(cmd[0]) is None:
                raise CommandError(f'prefix command {cmd[0]!r} not found on PATH')
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            os.execvp(cmd[0], cmd)
        except OSError as exc:
            raise CommandError(f'cannot run {cmd[0]}: {exc.strerror}') from None
        return 0  # not reached
