"""Entry point of ``autopilot``: finds commands in the ``autopilot.command`` entry-point group.

Shaped like ros2cli: a command is a class with ``add_arguments(parser, cli_name)`` and ``main(parser=, args=)``;
commands with verbs (``topic echo``) keep one small class per verb. Other packages add their own commands
to the entry-point group, so this package never imports them.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import entry_points

from autopilot_cli.base import CommandError, CommandExtension, add_extensions

GROUP = 'autopilot.command'


def load_commands() -> dict[str, type[CommandExtension]]:
    commands: dict[str, type[CommandExtension]] = {}
    for ep in entry_points(group=GROUP):
        if ep.name in commands:
            continue  # the first on the path wins, as for console scripts
        try:
            commands[ep.name] = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the whole CLI down
            print(f'autopilot: cannot load command {ep.name!r} from {ep.value}: {exc}', file=sys.stderr)
    return dict(sorted(commands.items()))


def build_parser(commands: dict[str, type[CommandExtension]]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='autopilot',
        description='autopilot-ros command line. On a ROS 2 install `ros2` does the same graph work; '
                    'these commands mirror its syntax and output for the pip (wheels) path, where '
                    'ros2cli, launch and rosbag2 are not installable.',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_extensions(parser, 'autopilot', commands, '_extension')
    return parser


def main(argv: list[str] | None = None) -> int:
    commands = load_commands()
    parser = build_parser(commands)
    args = parser.parse_args(argv)
    ext = getattr(args, '_extension', None)
    if ext is None:
        parser.print_help()
        return 0
    try:
        rc = ext.main(parser=parser, args=args)
    except CommandError as exc:
        print(f'autopilot: error: {exc}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `autopilot ... | head`: the reader left. Say nothing more, and keep Python's exit-time
        # flush of stdout from raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for a process ended by SIGPIPE
    return int(rc or 0) if not isinstance(rc, str) else _print_error(rc)


def _print_error(message: str) -> int:
    # ros2cli convention: a verb returning a string prints it to stderr and exits 1.
    print(message, file=sys.stderr)
    return 1


def run() -> None:
    """The ``autopilot`` executable: :func:`main`, then exit without Python's finalization.

    Every command has shut its ROS context down and closed its files when ``main`` returns, or has given up
    on a teardown that hung (``graph._tear_down``, on a thread of its own); finalizing rclpy and Fast DDS
    objects after that would wait on the same hang, which once in ~80 concurrent calls on a loaded 2-core
    machine kept a command that had printed its whole answer from exiting (CI, test_cli_graph).
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # the reader left, or the stream is closed: nothing to keep
            pass
    os._exit(code)


if __name__ == '__main__':
    run()
