"""Hypothesis strategies for hostile ROS input: any rosidl message or request, and bytes that are none.

Built from the generated types' own ``SLOT_TYPES`` (rosidl_parser definitions), so a new field or a new
interface is fuzzed without touching this file. Values lean to what breaks code: NaN, inf, 1e308, the
ends of every integer range, empty and very long strings, long sequences, deep nesting of the message's
own structure, and the names a rig really uses (so generated commands reach the device and session logic
instead of stopping at "unknown device").
"""

from __future__ import annotations

import importlib
from typing import Any

from hypothesis import strategies as st
from rclpy.serialization import serialize_message
from rosidl_parser import definition as d

INT_RANGES = {
    'int8': (-2**7, 2**7 - 1), 'uint8': (0, 2**8 - 1), 'octet': (0, 255), 'char': (0, 255),
    'int16': (-2**15, 2**15 - 1), 'uint16': (0, 2**16 - 1), 'int32': (-2**31, 2**31 - 1),
    'uint32': (0, 2**32 - 1), 'int64': (-2**63, 2**63 - 1), 'uint64': (0, 2**64 - 1),
}
#: One value in this many is very large (a 1 MB string, a 100,000-item sequence): rare, so a run stays short.
HUGE = 40


def resolve(type_name: str) -> Any:
    """'pkg/msg/Name' (or 'pkg/srv/Name') -> the generated class."""
    pkg, kind, name = type_name.split('/')
    return getattr(importlib.import_module(f'{pkg}.{kind}'), name)


def _names(names: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(names or ['x']),
        st.text(max_size=30),
        st.sampled_from(['', ' ', '../../etc/passwd', 'a/b', '\x00', 'é' * 10, '{' * 1000, '[' * 1000]),
        st.integers(0, HUGE).flatmap(lambda n: st.just('x' * 1_000_000) if n == 0 else st.text(max_size=5)),
    )


def _float(bits: int) -> st.SearchStrategy[float]:
    extremes = [0.0, -0.0, 1e-12, -1.0, 1.0, 150.0, 1e308, -1e308, float('nan'), float('inf'), float('-inf')]
    if bits == 32:
        extremes = [x for x in extremes if abs(x) < 3.4e38 or x != x or abs(x) == float('inf')]
    return st.one_of(st.sampled_from(extremes), st.floats(width=bits, allow_nan=True, allow_infinity=True))


def value(slot: Any, names: list[str], depth: int = 0) -> st.SearchStrategy[Any]:
    if isinstance(slot, d.BasicType):
        t = slot.typename
        if t == 'boolean':
            return st.booleans()
        if t in ('float', 'double'):
            return _float(32 if t == 'float' else 64)
        if t == 'octet':
            return st.binary(min_size=1, max_size=1)
        if t == 'char':
            return st.characters(max_codepoint=127)
        lo, hi = INT_RANGES[t]
        return st.one_of(st.sampled_from([lo, hi, 0, 1, min(hi, 200_000), min(hi, 200_001)]), st.integers(lo, hi))
    if isinstance(slot, (d.UnboundedString, d.UnboundedWString)):
        return _names(names)
    if isinstance(slot, (d.BoundedString, d.BoundedWString)):
        return st.text(max_size=slot.maximum_size)
    if isinstance(slot, d.NamespacedType):
        return message(resolve('/'.join([*slot.namespaces, slot.name])), names, depth + 1)
    if isinstance(slot, d.Array):
        return st.lists(value(slot.value_type, names, depth + 1), min_size=slot.size, max_size=slot.size)
    if isinstance(slot, (d.BoundedSequence, d.UnboundedSequence)):
        limit = getattr(slot, 'maximum_size', None)
        small = st.lists(value(slot.value_type, names, depth + 1), max_size=min(limit or 8, 8))
        if limit is not None or depth > 1:
            return small
        # Rarely, very long: a TrialData with 100,000 fields, 100,000 trial numbers in one ack. Of small items:
        # 100,000 megabyte strings would exhaust the fuzzer's memory (seen: 23 GB), not test the node.
        huge = _small(slot.value_type, names).map(lambda v: [v] * 100_000)
        return st.integers(0, HUGE).flatmap(lambda n: huge if n == 0 else small)
    raise TypeError(f'no strategy for {slot!r}')


def _small(slot: Any, names: list[str]) -> st.SearchStrategy[Any]:
    """A small value of ``slot``'s type (an element of a very long sequence)."""
    if isinstance(slot, (d.UnboundedString, d.UnboundedWString)):
        return st.sampled_from(names or ['x'])
    if isinstance(slot, d.NamespacedType):
        return st.just(resolve('/'.join([*slot.namespaces, slot.name]))())
    if isinstance(slot, (d.BoundedSequence, d.UnboundedSequence)):
        return st.just([])
    return value(slot, names, 4)  # numbers, and fixed arrays (of their exact size)


def message(cls: Any, names: list[str], depth: int = 0) -> st.SearchStrategy[Any]:
    """Instances of ``cls`` with every field generated (fields beyond depth 3 keep their defaults)."""
    fields = list(cls.get_fields_and_field_types())
    if depth > 3:
        return st.just(cls())
    return st.fixed_dictionaries({f: value(s, names, depth) for f, s in zip(fields, cls.SLOT_TYPES, strict=True)}
                                 ).map(lambda kw: cls(**kw))


def raw(cls: Any, names: list[str]) -> st.SearchStrategy[bytes]:
    """Bytes that are not a valid ``cls``: random, a valid message cut short, or one with bytes flipped.

    At least 4 bytes (a CDR encapsulation header's length): Fast DDS delivers nothing shorter, and a sample
    it cannot deliver stalls the rest of that writer's reliable stream (the fuzzer's own, not the rig's:
    seen here with b''), which would silence the fuzzer, not test the node."""
    def cut(data: bytes, at: int) -> bytes:
        return data[:max(4, at % max(len(data), 1))]

    def flip(data: bytes, at: int, x: int) -> bytes:
        b = bytearray(data)
        if b:
            b[at % len(b)] ^= x or 0xFF
        return bytes(b)

    valid = message(cls, names, depth=2).map(serialize_message)
    return st.one_of(
        st.binary(min_size=4, max_size=64),
        st.builds(cut, valid, st.integers(0, 10_000)),
        st.builds(flip, valid, st.integers(0, 10_000), st.integers(0, 255)),
        st.just(b'\x00\x01\x00\x00' + (2**31).to_bytes(4, 'little') + b'abc'),  # a string that claims 2 GB
    )
