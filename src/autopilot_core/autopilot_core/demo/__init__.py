"""A small real graph for the foundation's demo and tests: synthetic trials, a recorder-like listener
that acknowledges them, and a session action server.

These are example nodes built the way every node of the suite is built (typed parameters, named QoS,
autopilot_core.executors.run_node); the real pilot and terminal live in their own packages. Logic is
in :mod:`autopilot_core.demo.logic`, plain Python that tests call without ROS.
"""
