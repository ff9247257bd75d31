"""``autopilot calibrate``: run a valve calibration on a rig's gpio node and record the weighed volume.

    autopilot calibrate valve_left -n /rig_1 --openings 100 --open-ms 20 --interval-ms 200
    (weigh the water)  Measured total volume [uL]: 410
    valve_left: open_ms = 3.1 + 4.1 * v (v: uL per opening; 3 point(s))

Calls ``/<NS>/gpio/calibrate_valve``, waits for the run to finish, then asks for the measured volume
(or takes ``--volume-ul``) and calls ``/<NS>/gpio/record_calibration``, which stores the point (never
overwriting earlier ones) and refits the valve's volume -> open time curve that rewards use.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from autopilot_msgs.srv import CalibrateValve, RecordCalibration
from rclpy.node import Node

from autopilot_cli.base import CommandExtension
from autopilot_cli.graph import call_service, cli_executor, cli_node, positive_float, positive_int


def service_name(namespace: str, node: str, service: str) -> str:
    ns = '/' + namespace.strip('/') if namespace.strip('/') else ''
    return f'{ns}/{node}/{service}'


class CalibrateCommand(CommandExtension):
    """Calibrate a reward valve: open it N times, enter the weighed volume, store the fit."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('device', help='valve device name, e.g. valve_left')
        parser.add_argument('-n', '--namespace', default='', help='rig namespace of the gpio node, e.g. /rig_1')
        parser.add_argument('--node', default='gpio', help='name of the gpio node (default: gpio)')
        parser.add_argument('--openings', type=positive_int, default=100, help='number of openings (default 100)')
        parser.add_argument('--open-ms', type=positive_float, default=20.0, help='open time per opening, ms')
        parser.add_argument('--interval-ms', type=positive_float, default=200.0,
                            help='closed time between openings, ms (default 200)')
        parser.add_argument('--volume-ul', type=positive_float, default=None,
                            help='measured total volume in uL (asked for when not given)')
        parser.add_argument('--timeout', type=positive_float, default=10.0,
                            help='longest wait for the gpio node and each answer, s (default 10)')

    def _call(self, node: Node, srv_type: Any, name: str, request: Any, timeout: float) -> Any:
        return call_service(node, node.executor_, srv_type, name, request, timeout,  # type: ignore[attr-defined]
                            server='the gpio node')

    def main(self, *, parser: argparse.ArgumentParser, args: argparse.Namespace) -> int | str:
        with cli_node('calibrate') as node:
            node.executor_ = cli_executor(node)  # type: ignore[attr-defined]
            try:
                return self._run(node, args)
            finally:
                node.executor_.shutdown()  # type: ignore[attr-defined]

    def _run(self, node: Node, args: argparse.Namespace) -> int | str:
        cal = service_name(args.namespace, args.node, 'calibrate_valve')
        res = self._call(node, CalibrateValve, cal, CalibrateValve.Request(
            device=args.device, n_openings=args.openings, open_ms=args.open_ms, interval_ms=args.interval_ms),
            args.timeout)
        if not res.success:
            return res.message
        print(f'calibrating: {res.message}', flush=True)
        duration = (args.openings * args.open_ms + (args.openings - 1) * args.interval_ms) / 1000
        time.sleep(duration + 0.2)  # the node runs the openings on its own timing; wait for the last one
        volume = args.volume_ul
        if volume is None:
            while True:
                text = input(f'Measured total volume of {args.openings} openings [uL]: ').strip()
                try:
                    volume = float(text)
                    if volume > 0:
                        break
                except ValueError:
                    pass
                print(f'{text!r} is not a volume: enter a number of microlitres > 0')
        rec = service_name(args.namespace, args.node, 'record_calibration')
        res = self._call(node, RecordCalibration, rec, RecordCalibration.Request(
            device=args.device, n_openings=args.openings, open_ms=args.open_ms, measured_volume_ul=volume),
            args.timeout)
        if not res.success:
            return res.message
        print(res.message)
        print('coefficients (open_ms = c0 + c1*v + ...): ' + ', '.join(f'{c:.6g}' for c in res.fit_coefficients))
        return 0
