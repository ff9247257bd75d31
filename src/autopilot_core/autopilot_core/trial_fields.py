"""Trial fields: Python values to and from ``autopilot_msgs/TrialField`` (the wire form of TrialData.fields).

The one place a trial field's type code, its message member and its Python type are tied together; the
pilot builds fields here, the terminal reads and checks them here (once, before anything is recorded).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from autopilot_msgs.msg import TrialField

from .checks import MAX_TEXT, InputError, sequence, text

BOOL, INT64, FLOAT64, STRING = (TrialField.TYPE_BOOL, TrialField.TYPE_INT64, TrialField.TYPE_FLOAT64,
                                TrialField.TYPE_STRING)
#: Type code -> the name stored in files and shown to users.
TYPE_NAMES: dict[int, str] = {BOOL: 'bool', INT64: 'int64', FLOAT64: 'float64', STRING: 'string'}
#: Python type a task declares -> type code.
CODE_OF: dict[type, int] = {bool: BOOL, int: INT64, float: FLOAT64, str: STRING}
_MEMBER = {BOOL: 'bool_value', INT64: 'int_value', FLOAT64: 'float_value', STRING: 'string_value'}
_PYTHON = {code: t for t, code in CODE_OF.items()}


def make(name: str, code: int, unit: str, value: Any) -> TrialField:
    """A TrialField carrying ``value`` (converted to the type ``code`` names) in the member that type uses."""
    if code not in _MEMBER:
        raise ValueError(f'field {name!r}: type code {code} is none of {TYPE_NAMES}')
    f = TrialField(name=name, type=code, unit=unit)
    setattr(f, _MEMBER[code], _PYTHON[code](value))
    return f


def value(f: TrialField) -> Any:
    """The value a TrialField carries: the member its ``type`` names."""
    return getattr(f, _MEMBER[f.type])


def to_dict(fields: Iterable[TrialField]) -> dict[str, Any]:
    """``{name: value}`` of TrialField messages."""
    return {f.name: value(f) for f in fields}


def from_values(values: Mapping[str, Any], declared: Mapping[str, tuple[type, str]]) -> list[TrialField]:
    """One TrialField per declared ``name: (python type, unit)``, in declaration order, typed by the declaration."""
    return [make(name, CODE_OF[t], unit, values[name]) for name, (t, unit) in declared.items()]


def checked(fields: Sequence[TrialField], reserved: Collection[str] = (), *, max_fields: int = 1000,
            max_name: int = 64, max_text: int = MAX_TEXT) -> list[tuple[str, int, str, Any]]:
    """``[(name, type code, unit, value)]`` of received fields, or InputError naming the first bad one.

    The only check of received trial fields: sizes first (they bound the cost of the rest), then each name is
    a Python identifier, unique in the trial and none of ``reserved`` (the fixed columns), a known type code,
    a bounded unit and string.
    """
    sequence('TrialData.fields', fields, max_fields)
    out: list[tuple[str, int, str, Any]] = []
    seen: set[str] = set()
    for f in fields:
        text('TrialData field name', f.name, max_name, empty=False)
        if not f.name.isidentifier() or f.name in reserved or f.name in seen:
            raise InputError(f'TrialData field {f.name!r}: a field name is a Python identifier, unique in the '
                             f'trial and none of {sorted(reserved)}: not recorded')
        seen.add(f.name)
        if f.type not in _MEMBER:
            raise InputError(f'TrialData field {f.name}: type {f.type} is none of {TYPE_NAMES}: not recorded')
        text(f'TrialData field {f.name} unit', f.unit, max_name)
        text(f'TrialData field {f.name}', f.string_value, max_text)
        out.append((f.name, f.type, f.unit, value(f)))
    return out
