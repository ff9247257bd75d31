"""Names on the graph: turn host names and user text into valid ROS names."""

from __future__ import annotations

import re
import socket

_INVALID = re.compile(r'[^A-Za-z0-9_]')


def sanitize(name: str, fallback: str = 'pilot') -> str:
    """A valid ROS node/namespace token from arbitrary text: ``rig-3.lab`` -> ``rig_3_lab``.

    ROS names allow letters, digits and underscores, must not start with a digit and must not
    contain ``__``; an empty result becomes ``fallback``.
    """
    token = _INVALID.sub('_', name.strip())
    token = re.sub('_+', '_', token).strip('_')
    if not token:
        return fallback
    if token[0].isdigit():
        token = f'_{token}' if fallback == '' else f'{fallback}_{token}'
    return token


def host_namespace() -> str:
    """This host's name as a namespace token (the default pilot namespace)."""
    return sanitize(socket.gethostname().split('.')[0])


def node_label(namespace: str, fallback: str) -> str:
    """The last namespace token (``/rig_1`` -> ``rig_1``), or ``fallback`` for the root namespace."""
    token = namespace.rstrip('/').rsplit('/', 1)[-1]
    return token or fallback
