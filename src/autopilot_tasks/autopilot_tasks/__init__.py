"""Tasks and protocols, without ROS: what a pilot runs and a terminal (or GUI) checks before assigning.

* :mod:`autopilot_tasks.task`: the task API, what a task file imports;
* :mod:`autopilot_tasks.plot`: the live plot a task declares (what the Terminal draws);
* :mod:`autopilot_tasks.registry`: the tasks of the entry-point group ``autopilot.tasks``;
* :mod:`autopilot_tasks.protocol`: protocol YAML files (steps, parameters, graduation), found and checked;
* :mod:`autopilot_tasks.tasks`: the tasks shipped with the suite.

Never imports autopilot_pilot or autopilot_terminal: both import this package.
"""
