"""The tasks shipped with the pilot, registered in the entry-point group ``autopilot.tasks``.

* ``free_water`` (:class:`~autopilot_tasks.tasks.free_water.FreeWater`): shaping, water at the active port;
* ``2afc`` (:class:`~autopilot_tasks.tasks.two_afc.TwoAFC`): two-alternative sound discrimination.

Each file imports only the task API (:mod:`autopilot_tasks.task` and :mod:`autopilot_tasks.plot`);
docs/tasks.md shows how to write one.
"""
