"""What every autopilot-ros node needs, and nothing else.

* :mod:`autopilot_core.qos`: named QoS profiles for the suite's kinds of traffic;
* :mod:`autopilot_core.params`: typed parameter declaration with descriptors and clear errors;
* :mod:`autopilot_core.executors`: executor choice and spinning (with timeouts) for every node;
* :mod:`autopilot_core.aio`: waiting inside async callbacks without blocking the executor;
* :mod:`autopilot_core.checks` and :mod:`autopilot_core.guard`: hostile input refused with a reason;
* :mod:`autopilot_core.stamps`, :mod:`autopilot_core.trial_fields`, :mod:`autopilot_core.pilot_states`: the one
  place for each conversion of the suite's messages;
* :mod:`autopilot_core.intra`: intra-process delivery between nodes composed in one process;
* :mod:`autopilot_core.rclpy_private`: every use of rclpy internals, pinned to the rclpy versions tested;
* :mod:`autopilot_core.provenance`: what produced the data (versions, git, ROS, host).

The ``autopilot`` command is in ``autopilot_cli``, its launch runner in ``autopilot_launch``, message YAML in
``autopilot_runtime_py``.
"""

__version__ = '0.1.0'
