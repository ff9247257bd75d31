#!/usr/bin/env python3
"""A node with no parameter services (as a C node or one built with start_parameter_services=False):
what `autopilot param list` meets among the nodes of a graph. Prints READY once up; Ctrl-C ends it."""

import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


def main() -> int:
    rclpy.init(args=sys.argv)
    node = Node('mute_peer', start_parameter_services=False)
    print('READY', flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
