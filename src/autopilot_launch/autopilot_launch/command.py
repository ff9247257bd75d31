"""``autopilot launch``: run a ROS 2 YAML launch file, as ``ros2 launch`` does, on the pip path where launch is missing.

Same command line as ``ros2 launch``: ``autopilot launch FILE [name:=value ...]`` or
``autopilot launch PACKAGE FILE_NAME [name:=value ...]`` (the file is looked up under the package's share
directory), with ``-s/--show-args``, ``-p/--print`` (here: print the resolved commands without starting
anything; also ``--dry-run``), ``-a``, ``--launch-prefix`` and ``--launch-prefix-filter``. The files are
the ROS 2 YAML launch format and run unchanged under ``ros2 launch``; see
:mod:`autopilot_launch` for what is supported and where it differs.
"""

from __future__ import annotations

import argparse
import os
import sys

from autopilot_cli.base import CommandError, CommandExtension
from autopilot_launch.errors import LaunchError


class LaunchCommand(CommandExtension):
    """Run a ROS 2 YAML launch file (same files and syntax as `ros2 launch`)."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.description = (
            'Run a launch file in the ROS 2 YAML launch format. The same file runs under `ros2 launch` on a\n'
            'ROS install; this command stands in for it on the pip path, where launch is not installable.\n'
            'A bad file is reported with file, line and key before anything starts.\n'
            'Ctrl-C stops every process: SIGINT, then SIGTERM after sigterm_timeout (5 s) and SIGKILL after\n'
            'sigkill_timeout (5 s more); a second Ctrl-C escalates at once.\n'
            'Logs: $ROS_LOG_DIR (else $ROS_HOME/log, else ~/.ros/log)/<time>-<host>-<pid>/launch.log;\n'
            "'latest' links to the newest run, params/ holds the parameter files given to the nodes.")
        parser.add_argument('-n', '--noninteractive', action='store_true',
                            help='accepted for ros2 launch compatibility (processes never read stdin here)')
        parser.add_argument('-d', '--debug', action='store_true', help='print each command as it starts')
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument('-p', '--print', '--print-description', '--dry-run', dest='print', action='store_true',
                          help='print the resolved commands, environment and parameter files; start nothing')
        mode.add_argument('-s', '--show-args', '--show-arguments', dest='show_args', action='store_true',
                          help='show the arguments that may be given to the launch file')
        parser.add_argument('-a', '--show-all-subprocesses-output', action='store_true',
                            help="show every process's output on the screen (output: both)")
        parser.add_argument('--launch-prefix',
                            help="command put before every executable, e.g. 'xterm -e gdb -ex run --args'")
        parser.add_argument('--launch-prefix-filter',
                            help='regex on executable names selecting where --launch-prefix applies')
        parser.add_argument('package_name', metavar='package_name_or_file',
                            help='a launch file, or the package holding it')
        parser.add_argument('launch_file_name', nargs='?', help='the launch file name when a package is given')
        parser.add_argument('launch_arguments', nargs='*',
                            help="arguments to the launch file: '<name>:=<value>' (the last of duplicates wins)")

    def main(self, *, parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
        from autopilot_launch.evaluate import Evaluator, collect_args, describe_plan, format_args
        from autopilot_launch.runner import Runner, log_base_dir, new_log_dir_name

        path, launch_arguments = self._resolve(args)
        try:
            configs = parse_launch_arguments(launch_arguments)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if args.launch_prefix_filter is not None and args.launch_prefix is None:
            raise CommandError('--launch-prefix-filter needs --launch-prefix')
        if args.launch_prefix is not None:
            configs['launch-prefix'] = args.launch_prefix
        if args.launch_prefix_filter is not None:
            configs['launch-prefix-filter'] = args.launch_prefix_filter
        override = 'both' if args.show_all_subprocesses_output else os.environ.get('OVERRIDE_LAUNCH_PROCESS_OUTPUT')
        try:
            if args.show_args:
                sys.stdout.write(format_args(collect_args(path)))
                return 0
            if args.print:
                # The parameter files a run would write are shown with their text, not written: --print
                # leaves nothing behind.
                params_dir = os.path.join(new_log_dir_name(log_base_dir()), 'params')
                evaluator = Evaluator(configs, params_dir=params_dir, output_override=override, write_files=False)
                plan = evaluator.evaluate(path)
                _warn_undeclared(evaluator.undeclared())
                sys.stdout.write(describe_plan(plan))
                return 0
            log_dir = new_log_dir_name(log_base_dir())
            evaluator = Evaluator(configs, params_dir=os.path.join(log_dir, 'params'), log_dir=log_dir,
                                  output_override=override)
            plan = evaluator.evaluate(path)
        except LaunchError as exc:
            raise CommandError(str(exc)) from None
        _warn_undeclared(evaluator.undeclared())
        return Runner(plan, log_dir, debug=args.debug).run()

    @staticmethod
    def _resolve(args: argparse.Namespace) -> tuple[str, list[str]]:
        first = args.package_name
        rest = list(args.launch_arguments)
        if os.path.isfile(first):
            if args.launch_file_name is not None:
                rest.insert(0, args.launch_file_name)  # single-file mode: it was a launch argument
            return first, rest
        if ':=' in first or first.endswith(('.yaml', '.yml', '.py', '.xml')) or args.launch_file_name is None:
            raise CommandError(f'launch file not found: {first}')
        if ':=' in args.launch_file_name:
            raise CommandError(f'launch file not found: {first} (or give PACKAGE FILE_NAME)')
        return find_launch_file(first, args.launch_file_name), rest


def _warn_undeclared(names: list[str]) -> None:
    for name in names:
        print(f"[WARNING] [launch]: launch argument '{name}' was given but no arg declares it (a typo?)",
              file=sys.stderr)


def parse_launch_arguments(items: list[str]) -> dict[str, str]:
    """``name:=value`` items as ``ros2 launch`` reads them (the last of duplicates wins)."""
    out: dict[str, str] = {}
    for item in items:
        if ':=' not in item or item.startswith(':='):
            raise ValueError(f"malformed launch argument '{item}', expected format '<name>:=<value>'")
        name, value = item.split(':=', 1)
        out[name] = value
    return out


def find_launch_file(package: str, file_name: str) -> str:
    """The file named ``file_name`` under the package's share directory (one match, as ros2 launch wants)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        share = get_package_share_directory(package)
    except (PackageNotFoundError, ValueError):
        raise CommandError(f"package '{package}' not found (AMENT_PREFIX_PATH: "
                           f"{os.environ.get('AMENT_PREFIX_PATH', '(unset)')})") from None
    matches = [os.path.join(root, f) for root, _dirs, files in os.walk(share, followlinks=True)
               for f in files if f == file_name]
    if not matches:
        raise CommandError(f"file '{file_name}' was not found in the share directory of package '{package}' "
                           f'({share})')
    if len(matches) > 1:
        raise CommandError(f"file '{file_name}' was found more than once in the share directory of package "
                           f"'{package}': {', '.join(sorted(matches))}")
    return matches[0]
