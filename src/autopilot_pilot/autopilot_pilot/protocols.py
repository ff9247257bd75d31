"""ProtocolBook: the protocols a client loaded into the pilot (``load_protocol``), checked and bounded in number."""

from __future__ import annotations

from autopilot_core.checks import InputError, text
from autopilot_tasks import registry
from autopilot_tasks.protocol import Protocol, load_protocol

#: Protocols loaded at most (a client may send any number: each is kept until the pilot restarts).
MAX_PROTOCOLS = 256
#: Longest protocol name and YAML text a client may send.
MAX_NAME = 256
MAX_TEXT = 1_000_000


class ProtocolBook:
    """Loaded protocols by name; a load with a name already loaded replaces it."""

    def __init__(self, limit: int = MAX_PROTOCOLS) -> None:
        self.limit = limit
        self.protocols: dict[str, Protocol] = {}

    def load(self, name: str, yaml_text: str) -> Protocol:
        """Check ``yaml_text`` (ProtocolError names the line and field) and keep it under its name (``name``, or
        the text's own when empty); InputError for an oversized request or when the book is full."""
        text('name', name, MAX_NAME)
        text('yaml_text', yaml_text, MAX_TEXT)
        if name not in self.protocols and len(self.protocols) >= self.limit:
            raise InputError(f'{len(self.protocols)} protocols are loaded already (at most {self.limit}): restart '
                             'the pilot, or give it protocol_dir')
        proto = load_protocol(yaml_text, source=f'protocol {name!r}', lookup_task=registry.lookup, name=name or None)
        self.protocols[proto.name] = proto
        return proto


def describe(proto: Protocol) -> str:
    """``protocol 'x': 2 steps (a, b)``."""
    return f'protocol {proto.name!r}: {len(proto.steps)} steps ({", ".join(s.name for s in proto.steps)})'
