"""``rig``: a pilot host's nodes composed in one process and spun by one executor.

The ``gpio`` and ``sound`` nodes and the ``pilot`` (with ``--virtual-subject`` also ``subject_sim``), with
the names, namespace and parameters they have as separate processes: give each its settings in a params
file keyed by node name (``/**/gpio:``, ``/**/sound:``, ``/**/pilot:``, as ``launch/params/*.yaml`` are),
because a ``-p name:=value`` on the command line reaches every node of the process.

Why: between nodes of one process, GPIO events, output commands, sound plays and onsets skip DDS
(:mod:`autopilot_core.intra`), so the closed loop (edge -> task -> output) takes ~0.25 ms instead of the
~1.4 ms two DDS hops cost across processes (``bench/closed_loop.py``). Everything is still published on
DDS for the terminal, ``ros2 topic`` and rqt. The price: one GIL and one failure domain; a node that
crashes takes the rig down (its outputs are still driven low on the way out).

    ros2 run autopilot_pilot rig --virtual-subject --ros-args -r __ns:=/rig_1 \\
        --params-file launch/params/rig_sim.yaml --params-file my_rig.yaml
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from rclpy.node import Node
from rclpy.utilities import remove_ros_args

from autopilot_core.executors import run_nodes


def factories(virtual_subject: bool) -> list[Callable[[], Node]]:
    """Node constructors in start order: hardware first, so the pilot finds it; the subject last."""
    from autopilot_hardware.gpio.node import GpioNode
    from autopilot_hardware.sound.node import SoundServer
    from autopilot_pilot.node import PilotNode
    from autopilot_pilot.subject_node import SubjectNode

    nodes: list[Callable[[], Node]] = [GpioNode, SoundServer, PilotNode]
    return nodes + ([SubjectNode] if virtual_subject else [])


def main(args: list[str] | None = None) -> int:
    argv = sys.argv if args is None else args
    parser = argparse.ArgumentParser(prog='rig', description=__doc__.split('\n\n')[0])
    parser.add_argument('--virtual-subject', action='store_true',
                        help='also run subject_sim (the simulated animal) in the process')
    opts = parser.parse_args(remove_ros_args(argv)[1:])
    return run_nodes(factories(opts.virtual_subject), argv)


if __name__ == '__main__':
    sys.exit(main())
