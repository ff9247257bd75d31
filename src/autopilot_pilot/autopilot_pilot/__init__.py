"""The pilot: runs a task against the hardware nodes and reports trials to the terminal.

Never imports autopilot_terminal: the two meet only over topics, services and actions.
"""
