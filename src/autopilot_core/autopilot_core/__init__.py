"""What every autopilot-ros host shares.

* :mod:`autopilot_core.qos`: named QoS profiles for the suite's kinds of traffic;
* :mod:`autopilot_core.params`: typed parameter declaration with descriptors and clear errors;
* :mod:`autopilot_core.executors`: executor choice and spinning (with timeouts) for every node;
* :mod:`autopilot_core.provenance`: what produced the data (versions, git, ROS, host);
* :mod:`autopilot_core.launch`: the ROS 2 YAML launch format runner behind ``autopilot launch``;
* :mod:`autopilot_core.cli`: the ``autopilot`` command line.
"""

__version__ = '0.1.0'
