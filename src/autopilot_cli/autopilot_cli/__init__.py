"""The ``autopilot`` command line: ``ros2``-style commands and verbs for the pip path, where ros2cli is not installable."""
