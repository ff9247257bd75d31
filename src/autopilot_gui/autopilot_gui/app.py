"""``autopilot gui`` and the ``gui`` executable (``gui:=true`` on terminal.launch.yaml): open the Terminal window.

Any host of the ROS domain can run it, as many times as wanted: the window is a client of the terminal node.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from typing import Any

from autopilot_cli.base import CommandError, CommandExtension


def seconds(text: str) -> float:
    """--seconds: 0 or a finite number of seconds up to a day (Qt's timer takes an int of milliseconds)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a number of seconds, got {text!r}') from None
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError(f'expected 0 to 86400 seconds, got {text!r}')
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--terminal', default='/terminal', metavar='NODE',
                        help='the terminal node to follow (default: %(default)s)')
    parser.add_argument('--screenshot', metavar='FILE.png',
                        help='save a picture of the window after --seconds and exit (documentation, checks)')
    parser.add_argument('--seconds', type=seconds, default=0.0, metavar='S',
                        help='close the window after this many seconds (0: when closed by hand; at most a day)')


def run(args: argparse.Namespace) -> int:
    """Open the window, spin the bridge, close both on Ctrl-C, SIGTERM or the window's close."""
    if not os.environ.get('DISPLAY') and not os.environ.get('WAYLAND_DISPLAY') \
            and not os.environ.get('QT_QPA_PLATFORM'):
        raise CommandError('no display: run it on the lab PC\'s desktop, over `ssh -X`, or without a screen with '
                           'QT_QPA_PLATFORM=offscreen (with --screenshot)')
    from PyQt5 import QtCore, QtWidgets

    from .bridge import Bridge
    from .window import MainWindow

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(['autopilot gui'])
    bridge = Bridge(args.terminal)
    bridge.start()
    try:
        window = MainWindow(bridge)
        window.show()

        def on_error(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
            # PyQt aborts the process on an exception that leaves a slot; a bug is reported, the window stays.
            traceback.print_exception(kind, exc, tb)
            window.bar.show_message(f'internal error: {kind.__name__}: {exc} (details in the output of '
                                    '`autopilot gui`; please report it)')
        sys.excepthook = on_error
        # Qt's loop does not run Python's signal handlers: a short timer lets them in, and they quit the loop.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: app.quit())
        wake = QtCore.QTimer()
        wake.timeout.connect(lambda: None)
        wake.start(200)
        failed: list[int] = []
        if args.seconds > 0 or args.screenshot:
            def finish() -> None:
                if args.screenshot and not window.grab().save(args.screenshot):
                    print(f'gui: error: cannot write {args.screenshot}: give a writable path ending in .png',
                          file=sys.stderr)
                    failed.append(1)
                app.quit()
            QtCore.QTimer.singleShot(int(max(args.seconds, 0.1) * 1000), finish)
        app.exec_()
        window.close()
    finally:
        bridge.stop()
    return 1 if failed else 0


class GuiCommand(CommandExtension):
    """Open the Terminal window (pilots, live plots, subjects, protocols, calibration, log)."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        super().add_arguments(parser, cli_name)
        add_arguments(parser)

    def main(self, *, parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
        return run(args)


def main(argv: list[str] | None = None) -> int:
    """The ``gui`` executable, as launch files start it (ROS arguments removed first)."""
    from rclpy.utilities import remove_ros_args

    parser = argparse.ArgumentParser(prog='gui', description=__doc__.split('\n')[0])
    add_arguments(parser)
    args = parser.parse_args(remove_ros_args(sys.argv if argv is None else argv)[1:])
    try:
        return run(args)
    except CommandError as exc:
        print(f'gui: error: {exc}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
