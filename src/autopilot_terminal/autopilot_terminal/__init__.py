"""The terminal: pilot registry, subjects, recorder, session control, exports and GUI.

The terminal and the pilot meet only over topics, services and actions: the terminal never imports
autopilot_pilot. It checks protocols with the same plain-Python code the pilots load them with
(``autopilot_tasks.protocol`` and its task registry, :func:`.subjects.check_protocol`), so it accepts exactly
the protocols a pilot accepts instead of a second, drifting copy of the rules.
"""
