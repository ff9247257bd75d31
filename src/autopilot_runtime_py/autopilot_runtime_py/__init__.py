"""Interfaces by name and messages to and from YAML, dicts and CSV: rosidl_runtime_py's job, for the pip path.

rosidl_runtime_py is not on PyPI; :mod:`autopilot_runtime_py.messages` covers what the CLI, the recorder and
the bag tools need of it.
"""
