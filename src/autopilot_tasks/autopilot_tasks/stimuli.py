"""Stimulus sets and the manager that draws each trial's stimulus: reusable parts of any task (no ROS).

A :class:`StimulusSet` groups stimuli by the response they call for (a side: ``left``/``right``; a class:
``go``/``nogo``), each group drawn with a proportion and each stimulus within it with a weight, as Autopilot's
``Proportional`` manager does; a stimulus may carry a ``level`` (a psychometric task's graded difficulty). It is
plain data, built from the mapping a protocol's YAML gives (:meth:`StimulusSet.from_dict`, which refuses any
malformed or oversized input with a ``ValueError`` naming the problem) and written back (:meth:`to_dict`).

A :class:`StimulusManager` draws the stimulus of each trial from a set and the trials so far:

* **correction trials**: after an incorrect response the next trial repeats the stimulus with probability
  ``correction_p`` (1: always, 0: never), and a correction run goes on until a correct response; a trial
  without a response neither starts nor ends a run;
* **bias correction** (:class:`BiasCorrection`): ``clipped``, the rule 2AFC has used (a group is drawn in
  proportion to how rarely the animal answers it, clipped to ``[limit, 1 - limit]``), or ``thresholded_linear``
  (Autopilot's: once the answers' rate for a group differs from its targets' rate by more than ``threshold``,
  the group is drawn that much less often, so a side the animal over-answers comes up less);
* otherwise the group by its proportion, and the stimulus by its weight.

What it drew and why is a :class:`Draw`, whose :meth:`Draw.fields` are the trial data a task records.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ['BIAS_MODES', 'BiasCorrection', 'Draw', 'Stimulus', 'StimulusManager', 'StimulusSet']

#: Bounds on what a set may hold: a protocol file is input like any other.
MAX_GROUPS = 16
MAX_STIMULI = 256
MAX_SPEC_KEYS = 32
MAX_TEXT = 200
BIAS_MODES = ('none', 'clipped', 'thresholded_linear')
_NAME = re.compile(r'[A-Za-z][A-Za-z0-9_]{0,63}$')


@dataclass(frozen=True)
class Stimulus:
    """One stimulus: the id it is loaded and played under, its group, its parameters (the sound's ``kind``,
    ``frequency_hz``, ...), its weight within the group and its level (None when the task has none)."""

    id: str
    group: str
    spec: Mapping[str, Any] = field(default_factory=dict)
    weight: float = 1.0
    level: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {'id': self.id, **self.spec}
        if self.weight != 1.0:
            out['weight'] = self.weight
        if self.level is not None:
            out['level'] = self.level
        return out


def _number(value: Any, where: str, *, lo: float = 0.0, hi: float = math.inf, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f'{where}: {value!r} is not a finite number')
    if value < lo or value > hi or (positive and value <= 0):
        raise ValueError(f'{where}: {value!r} is out of range ({"> 0" if positive else f">= {lo:g}"}'
                         f'{"" if hi == math.inf else f", <= {hi:g}"})')
    return float(value)


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        shown = value[:40] + '...' if isinstance(value, str) and len(value) > 40 else value
        raise ValueError(f'{where}: {shown!r} is not a name (a letter, then letters, digits or _, at most 64)')
    return value


def _spec_value(value: Any, where: str) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return _number(value, where, lo=-math.inf)
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise ValueError(f'{where}: a text of {len(value)} characters (at most {MAX_TEXT})')
        return value
    raise ValueError(f'{where}: {type(value).__name__} is not a number, text or true/false')


@dataclass(frozen=True)
class StimulusSet:
    """Stimuli by group, each group with its proportion (see the module docstring)."""

    groups: Mapping[str, tuple[Stimulus, ...]]
    proportions: Mapping[str, float]

    @classmethod
    def from_dict(cls, data: Any) -> StimulusSet:
        """A set from ``{'groups': {group: [stimulus, ...]}, 'proportions': {group: p}}`` (proportions optional:
        equal; they need not sum to 1). A stimulus is a mapping with ``id`` and optionally ``weight`` and
        ``level``; its other keys are its parameters. ValueError names what is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError(f'a stimulus set is a mapping with groups (and proportions), got {type(data).__name__}')
        unknown = set(data) - {'groups', 'proportions'}
        if unknown:
            raise ValueError(f'stimulus set: unknown key {sorted(map(str, unknown))[0]!r} (keys: groups, proportions)')
        raw = data.get('groups')
        if not isinstance(raw, Mapping) or not raw:
            raise ValueError('stimulus set: groups must map each group (a side or class) to a list of stimuli')
        if len(raw) > MAX_GROUPS:
            raise ValueError(f'stimulus set: {len(raw)} groups (at most {MAX_GROUPS})')
        groups: dict[str, tuple[Stimulus, ...]] = {}
        ids: set[str] = set()
        total = 0
        for g, items in raw.items():
            group = _name(g, 'stimulus set group')
            if not isinstance(items, Sequence) or isinstance(items, (str, bytes)) or not items:
                raise ValueError(f'stimulus set group {group!r}: a non-empty list of stimuli')
            total += len(items)
            if total > MAX_STIMULI:
                raise ValueError(f'stimulus set: more than {MAX_STIMULI} stimuli')
            out = []
            for i, item in enumerate(items):
                where = f'stimulus set group {group!r} item {i + 1}'
                if not isinstance(item, Mapping):
                    raise ValueError(f'{where}: a mapping with an id, got {type(item).__name__}')
                sid = _name(item.get('id'), f'{where} id')
                if sid in ids:
                    raise ValueError(f'{where}: id {sid!r} is used twice; every stimulus needs its own')
                ids.add(sid)
                spec = {str(k): _spec_value(v, f'{where} {k}') for k, v in item.items()
                        if k not in ('id', 'weight', 'level')}
                if len(spec) > MAX_SPEC_KEYS:
                    raise ValueError(f'{where}: {len(spec)} parameters (at most {MAX_SPEC_KEYS})')
                weight = _number(item.get('weight', 1.0), f'{where} weight', positive=True)
                level = item.get('level')
                out.append(Stimulus(sid, group, spec, weight,
                                    None if level is None else _number(level, f'{where} level', lo=-math.inf)))
            groups[group] = tuple(out)
        raw_p = data.get('proportions') or {}
        if not isinstance(raw_p, Mapping):
            raise ValueError('stimulus set: proportions must map groups to numbers')
        for g in raw_p:
            if g not in groups:
                raise ValueError(f'stimulus set proportions: {g!r} is not a group (groups: {", ".join(groups)})')
        proportions = {g: _number(raw_p.get(g, 1.0), f'stimulus set proportion of {g!r}') for g in groups}
        if not sum(proportions.values()) > 0:
            raise ValueError('stimulus set: the proportions are all 0; at least one group must be drawn')
        return cls(groups, proportions)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {'groups': {g: [s.to_dict() for s in items] for g, items in self.groups.items()}}
        if len(set(self.proportions.values())) > 1:
            out['proportions'] = dict(self.proportions)
        return out

    def stimuli(self) -> list[Stimulus]:
        """Every stimulus, group by group."""
        return [s for items in self.groups.values() for s in items]

    def probabilities(self) -> dict[str, float]:
        """Each group's proportion as a probability."""
        total = sum(self.proportions.values())
        return {g: p / total for g, p in self.proportions.items()}

    def pick(self, group: str, rng: random.Random) -> Stimulus:
        """A stimulus of ``group`` by weight."""
        items = self.groups[group]
        return rng.choices(items, weights=[s.weight for s in items])[0]


@dataclass(frozen=True)
class BiasCorrection:
    """How the groups' probabilities lean against the animal's recent bias (see the module docstring).

    ``window``: the recent trials with a response it looks at (correction trials left out). ``limit``
    (``clipped``): no group below this probability. ``threshold`` (``thresholded_linear``): the smallest
    difference between a group's answer rate and target rate that is corrected.
    """

    mode: str = 'none'
    window: int = 20
    limit: float = 0.2
    threshold: float = 0.2

    def __post_init__(self) -> None:
        if self.mode not in BIAS_MODES:
            raise ValueError(f'bias correction mode {self.mode!r}: one of {", ".join(BIAS_MODES)}')
        if isinstance(self.window, bool) or not isinstance(self.window, int) or not 1 <= self.window <= 10_000:
            raise ValueError(f'bias correction window {self.window!r}: trials, 1 to 10000')
        _number(self.limit, 'bias correction limit', hi=0.5)
        _number(self.threshold, 'bias correction threshold', hi=1.0)

    def probabilities(self, base: Mapping[str, float], targets: Sequence[str],
                      responses: Sequence[str]) -> dict[str, float]:
        """The groups' probabilities for the next trial, from ``base`` (the set's) and the recent trials'
        targets and responses (answered, non-correction trials, oldest first)."""
        targets, responses = list(targets)[-self.window:], list(responses)[-self.window:]
        if self.mode == 'none' or not responses:
            return dict(base)
        n = len(responses)
        answered = {g: responses.count(g) / n for g in base}
        if self.mode == 'clipped':
            # A group comes up as often as the animal answers the others: 2AFC's p_left = fraction of rights.
            raw = {g: 1.0 - answered[g] for g in base if base[g] > 0}
            total = sum(raw.values()) or 1.0
            p = {g: raw.get(g, 0.0) / total for g in base}
            lo, hi = self.limit, 1.0 - self.limit
            p = {g: min(max(v, lo), hi) if base[g] > 0 else 0.0 for g, v in p.items()}
        else:
            targeted = {g: targets.count(g) / n for g in base}
            bias = {g: answered[g] - targeted[g] for g in base}
            if max(abs(b) for b in bias.values()) <= self.threshold:
                return dict(base)
            p = {g: max(base[g] - bias[g], 0.0) if base[g] > 0 else 0.0 for g in base}
        total = sum(p.values())
        return {g: v / total for g, v in p.items()} if total > 0 else dict(base)


@dataclass(frozen=True)
class Draw:
    """A trial's stimulus: which, its group, why (``random``, ``bias`` or ``correction``) and the probability
    its group had (1 on a correction trial)."""

    stimulus: Stimulus
    reason: str
    p: float

    @property
    def group(self) -> str:
        return self.stimulus.group

    @property
    def correction(self) -> bool:
        return self.reason == 'correction'

    def fields(self) -> dict[str, Any]:
        """The trial data: ``stim`` (id), ``stim_group``, ``stim_level`` (NaN without one), ``stim_reason``,
        ``stim_p`` and ``stim_params`` (its parameters as compact JSON)."""
        s = self.stimulus
        return {'stim': s.id, 'stim_group': s.group, 'stim_level': math.nan if s.level is None else s.level,
                'stim_reason': self.reason, 'stim_p': self.p,
                'stim_params': json.dumps(dict(s.spec), sort_keys=True, separators=(',', ':'))}


class StimulusManager:
    """Draws each trial's stimulus from ``stimuli`` (see the module docstring); ``rng`` is the task's
    ``self.random``, so a session replays from its seed."""

    def __init__(self, stimuli: StimulusSet, rng: random.Random, *, correction_p: float = 0.0,
                 bias: BiasCorrection | None = None) -> None:
        self.stimuli = stimuli
        self.rng = rng
        self.correction_p = _number(correction_p, 'correction_p', hi=1.0)
        self.bias = bias or BiasCorrection()

    def next(self, history: Sequence[Mapping[str, Any]], *, group: str = 'stim_group', response: str = 'response',
             correct: str = 'correct', correction: str = 'correction', stim: str = 'stim') -> Draw:
        """The next trial's stimulus, from the finished trials' field dicts (``self.history``); the keyword
        arguments name the fields that hold each trial's group, response, outcome, correction flag and
        stimulus id. A trial's response is ``''`` or ``'none'`` when there was none."""
        last = history[-1] if history else None
        if last is not None and self.correction_p > 0 and not last.get(correct):
            answered = last.get(response) not in (None, '', 'none')
            in_run = bool(last.get(correction))
            # An error starts a run (with probability correction_p); a run goes on until a correct response,
            # and a trial without a response neither starts nor ends one.
            if in_run or (answered and self.rng.random() < self.correction_p):
                again = self._find(last.get(stim), last.get(group))
                if again is not None:
                    return Draw(again, 'correction', 1.0)
        base = self.stimuli.probabilities()
        recent = [t for t in history if not t.get(correction) and t.get(response) not in (None, '', 'none')]
        p = self.bias.probabilities(base, [str(t.get(group)) for t in recent], [str(t.get(response)) for t in recent])
        groups = list(p)
        chosen = self.rng.choices(groups, weights=[p[g] for g in groups])[0]
        reason = 'bias' if any(abs(p[g] - base[g]) > 1e-12 for g in groups) else 'random'
        return Draw(self.stimuli.pick(chosen, self.rng), reason, p[chosen])

    def _find(self, sid: Any, group: Any) -> Stimulus | None:
        for s in self.stimuli.stimuli():
            if s.id == sid and s.group == group:
                return s
        return None
