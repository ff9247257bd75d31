"""A task's trial fields as typed ``TrialField`` messages and back (the wire form of TrialData.fields)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autopilot_msgs.msg import TrialField

from autopilot_tasks.task import Field

_TYPES = {bool: TrialField.TYPE_BOOL, int: TrialField.TYPE_INT64, float: TrialField.TYPE_FLOAT64,
          str: TrialField.TYPE_STRING}
_SLOTS = {TrialField.TYPE_BOOL: 'bool_value', TrialField.TYPE_INT64: 'int_value',
          TrialField.TYPE_FLOAT64: 'float_value', TrialField.TYPE_STRING: 'string_value'}


def to_trial_fields(values: Mapping[str, Any], declared: Mapping[str, Field]) -> list[TrialField]:
    """One TrialField per declared field, in declaration order, typed by the declaration (not the value)."""
    out = []
    for name, spec in declared.items():
        kind = _TYPES[spec.type]
        f = TrialField(name=name, type=kind, unit=spec.unit)
        setattr(f, _SLOTS[kind], spec.type(values[name]))
        out.append(f)
    return out


def from_trial_fields(fields: list[TrialField]) -> dict[str, Any]:
    """``{name: value}`` from TrialField messages (the value of the member their ``type`` names)."""
    return {f.name: getattr(f, _SLOTS[f.type]) for f in fields}
