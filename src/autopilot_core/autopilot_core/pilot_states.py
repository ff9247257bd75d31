"""PilotStatus states by name: the words the pilot's log, the terminal and the CLI all use."""

from __future__ import annotations

from autopilot_msgs.msg import PilotStatus

IDLE, RUNNING, PAUSED, ERROR = (PilotStatus.STATE_IDLE, PilotStatus.STATE_RUNNING, PilotStatus.STATE_PAUSED,
                                PilotStatus.STATE_ERROR)
NAMES: dict[int, str] = {IDLE: 'idle', RUNNING: 'running', PAUSED: 'paused', ERROR: 'error'}
#: States in which the pilot has a session (running or paused).
IN_SESSION = frozenset((RUNNING, PAUSED))


def name(state: int) -> str:
    """The state's word, or ``unknown (N)`` for a number no pilot sends."""
    return NAMES.get(state, f'unknown ({state})')
