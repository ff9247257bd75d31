#!/usr/bin/env python3
"""A plain rclpy node for the launch tests: it reports what the launcher gave it, then spins.

Prints one line ``PROBE {json}`` with its fully qualified name, every parameter it was given (declared
from the overrides), the names ``chatter``, ``~/private`` and ``/abs`` resolve to after remapping, its own
arguments (those before ``--ros-args``), its logger level, its pid and the environment variables named by ``--env A,B``.
If ``--pid-file PATH`` is given it appends its pid there first (respawn tests count the lines).

Without ROS (these act before rclpy is imported, so they are fast):
``--die CODE`` prints ``--lines N`` lines (``probe line <i>``) and exits with CODE at once;
``--ignore-sigint`` ignores SIGINT (shutdown escalation tests); ``--exit-after S`` exits 0 after S seconds.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time


def own_args(argv: list[str]) -> list[str]:
    return argv[1:argv.index('--ros-args')] if '--ros-args' in argv else argv[1:]


def option(args: list[str], name: str, default: str | None = None) -> str | None:
    return args[args.index(name) + 1] if name in args else default


def main() -> int:
    args = own_args(sys.argv)
    pid_file = option(args, '--pid-file')
    if pid_file:
        with open(pid_file, 'a') as f:
            f.write(f'{os.getpid()}\n')
    if '--die' in args:
        for i in range(int(option(args, '--lines', '0') or 0)):
            print(f'probe line {i}', flush=True)
        print('probe dying on purpose', file=sys.stderr, flush=True)
        return int(option(args, '--die') or 1)
    if '--ignore-sigint' in args:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print(f'PROBE_IGNORING {os.getpid()}', flush=True)
        while True:
            time.sleep(0.1)

    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.node import Node

    rclpy.init(args=sys.argv)
    node = Node('launch_probe', automatically_declare_parameters_from_overrides=True)
    env_names = (option(args, '--env', '') or '').split(',')
    report = {
        'fqn': node.get_fully_qualified_name(),
        'params': {name: p.value for name, p in node._parameters.items()
                   if name not in ('use_sim_time', 'start_type_description_service')},
        'log_level': node.get_logger().get_effective_level(),
        'topics': {t: node.resolve_topic_name(t) for t in ('chatter', '~/private', '/abs')},
        'args': args,
        'pid': os.getpid(),
        'env': {k: os.environ.get(k) for k in env_names if k},
    }
    node.create_publisher(__import__('std_msgs.msg', fromlist=['String']).String, 'chatter', 10)
    print('PROBE ' + json.dumps(report, sort_keys=True, default=list), flush=True)
    deadline = float(option(args, '--exit-after', 'inf') or 'inf')
    start = time.monotonic()
    try:
        while rclpy.ok() and time.monotonic() - start < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
