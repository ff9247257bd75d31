"""Every use of rclpy's private internals in the suite, pinned to the rclpy versions it is tested against.

Tested against rclpy 7.1.5 (ROS 2 Jazzy; the ``ros-rclpy`` 7.1.6 wheel carries it): :data:`TESTED`, checked
against ``importlib.metadata.version('rclpy')``. On any other version :data:`SUPPORTED` is False and
:mod:`autopilot_core.intra` switches itself off (plain DDS endpoints, one warning saying why), and
``tests/test_intra.py::test_rclpy_version_is_one_the_private_access_is_tested_against`` fails naming the
version: check each function below against the new rclpy, run tests/test_intra.py, then add the version.

Nothing here is public rclpy API; each function says what it reads. Used by :mod:`autopilot_core.intra`; the
parameter overrides also by :mod:`autopilot_core.params` and the camera node.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

from rclpy.executors import Executor
from rclpy.node import Node
from rclpy.parameter import Parameter

#: rclpy versions (``importlib.metadata.version('rclpy')``) this module has been tested against.
TESTED = frozenset({'7.1.5'})


def _rclpy_version() -> str | None:
    try:
        return importlib.metadata.version('rclpy')
    except importlib.metadata.PackageNotFoundError:
        return None


#: The installed rclpy's version (None when it has no package metadata).
VERSION = _rclpy_version()
SUPPORTED = VERSION in TESTED


def unsupported_reason() -> str:
    """Why the private access is not used ('' when it is)."""
    if SUPPORTED:
        return ''
    return (f'rclpy {VERSION or "(version unknown)"} is not one autopilot_core.rclpy_private is tested against '
            f'({", ".join(sorted(TESTED))})')


def _events_executor_type() -> type | None:
    # rclpy.experimental.EventsExecutor is a factory function; the class it returns lives in the C extension.
    try:
        from rclpy.impl.implementation_singleton import rclpy_implementation
        return rclpy_implementation.EventsExecutor
    except (ImportError, AttributeError):  # an rclpy without it
        return None


#: The class of the executors ``rclpy.experimental.EventsExecutor()`` makes, or None.
EVENTS_EXECUTOR: type | None = _events_executor_type()


def is_events_executor(executor: object) -> bool:
    return EVENTS_EXECUTOR is not None and type(executor) is EVENTS_EXECUTOR


def executor_runs_tasks(executor: Executor) -> bool:
    """False once ``executor.shutdown()`` ran: an rclpy Executor drops its wake-up guard condition (``_guard``)."""
    return getattr(executor, '_guard', None) is not None


def destroyed(entity: Any) -> bool:
    """A Publisher/Subscription destroyed (directly or by ``Node.destroy_node``): its C handle's pointer is 0."""
    return entity.handle.pointer == 0


def parameter_overrides(node: Node) -> dict[str, Parameter]:
    """The parameter values given to ``node`` (params files, ``-p``), declared or not; rclpy has no public getter.

    The dict rclpy itself reads when a parameter is declared (``Node._parameter_overrides``): an entry changed
    before its parameter is declared is what the declaration gets."""
    return getattr(node, '_parameter_overrides', {})
