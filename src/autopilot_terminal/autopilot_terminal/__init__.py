"""The terminal: pilot registry, subjects, recorder, session control, exports and GUI.

Never imports autopilot_pilot: the two meet only over topics, services and actions.
"""
