"""Plain-Python logic of the demo nodes: a seeded synthetic-trial source and a deduplicating tally."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from autopilot_msgs.msg import TrialField

#: (name, type, unit) of the demo task's trial fields, in order.
FIELDS: tuple[tuple[str, int, str], ...] = (
    ('target_side', TrialField.TYPE_STRING, ''),
    ('stimulus_hz', TrialField.TYPE_FLOAT64, 'Hz'),
    ('response_time_us', TrialField.TYPE_INT64, 'us'),
    ('correct', TrialField.TYPE_BOOL, ''),
)


def make_field(name: str, ftype: int, unit: str, value: object) -> TrialField:
    """A TrialField carrying ``value`` in the member ``ftype`` selects."""
    f = TrialField(name=name, type=ftype, unit=unit)
    if ftype == TrialField.TYPE_BOOL:
        f.bool_value = bool(value)
    elif ftype == TrialField.TYPE_INT64:
        f.int_value = int(value)  # type: ignore[call-overload]
    elif ftype == TrialField.TYPE_FLOAT64:
        f.float_value = float(value)  # type: ignore[arg-type]
    elif ftype == TrialField.TYPE_STRING:
        f.string_value = str(value)
    else:
        raise ValueError(f'field {name!r}: unknown TrialField type {ftype}')
    return f


def field_value(f: TrialField) -> object:
    """The value a TrialField carries, by its type."""
    return {TrialField.TYPE_BOOL: f.bool_value, TrialField.TYPE_INT64: f.int_value,
            TrialField.TYPE_FLOAT64: f.float_value, TrialField.TYPE_STRING: f.string_value}[f.type]


class SyntheticTrials:
    """A seeded 2AFC-like subject: stimulus frequency picks the side, a psychometric curve the answer."""

    def __init__(self, seed: int = 0, lapse: float = 0.1) -> None:
        self._rng = random.Random(seed)
        self.lapse = lapse

    def next(self) -> list[TrialField]:
        rng = self._rng
        stim = rng.choice((2000.0, 4000.0, 8000.0, 16000.0))
        target = 'left' if stim < 6000 else 'right'
        # Harder near the boundary: log-distance from 6 kHz drives accuracy.
        p_correct = self.lapse / 2 + (1 - self.lapse) / (1 + math.exp(-3 * abs(math.log2(stim / 6000))))
        correct = rng.random() < p_correct
        rt_us = int(rng.lognormvariate(math.log(350_000), 0.3))
        return [make_field(n, t, u, v) for (n, t, u), v in zip(FIELDS, (target, stim, rt_us, correct), strict=True)]


@dataclass
class TrialTally:
    """Counts trials once each, keyed by (pilot, session, trial number), as the terminal must."""

    seen: set[tuple[str, str, int]] = field(default_factory=set)
    correct: int = 0
    duplicates: int = 0

    def add(self, pilot: str, session_id: str, trial_number: int, fields: list[TrialField]) -> bool:
        """Record a trial; False if it was already recorded (a resend)."""
        key = (pilot, session_id, trial_number)
        if key in self.seen:
            self.duplicates += 1
            return False
        self.seen.add(key)
        self.correct += any(f.name == 'correct' and f.type == TrialField.TYPE_BOOL and f.bool_value
                            for f in fields)
        return True

    @property
    def count(self) -> int:
        return len(self.seen)

    def summary(self) -> str:
        pilots = len({k[0] for k in self.seen})
        pct = f'{100 * self.correct / self.count:.0f}% correct' if self.count else 'no trials'
        return f'{self.count} trials from {pilots} pilot(s), {pct}, {self.duplicates} duplicates ignored'
