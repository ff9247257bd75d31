"""The terminal: pilot registry, subjects, recorder, session control, exports and GUI.

The terminal and the pilot meet only over topics, services and actions: the terminal never imports the
pilot's node. It does import one plain-Python part of autopilot_pilot, the protocol parser and the task
registry (``autopilot_pilot.protocol``, ``.registry`` and the task API they load), so that it accepts exactly
the protocols a pilot accepts (:func:`.subjects.check_protocol`) instead of a second, drifting copy of the rules.
"""
