"""A session's plan and bookkeeping, without ROS: what to run, scoring, graduation, limits.

The pilot node turns a RunSession goal into a :class:`Plan` (every error is a :class:`PlanError` whose text
names the goal field, the parameter or the protocol line and the fix), then feeds finished trials to a
:class:`Progress`, which says when the session should stop and when the subject graduates to the next
protocol step. Graduation history is the trials of the current step: this session's and, from the pilot's
journal, earlier sessions' of the same subject, protocol and step (``prior``), so ``sessions: 3`` and
``accuracy over the last 200`` work across days on one pilot.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autopilot_tasks.protocol import Protocol, ProtocolError, find_protocol
from autopilot_tasks.task import Task, TaskError

TaskLookup = Callable[[str], type[Task]]


class PlanError(ValueError):
    """A session goal that cannot run; the message says which field is wrong and how to fix it."""


@dataclass
class Plan:
    """What a session runs: a protocol step (or a bare task) with validated parameters."""

    subject: str
    task_name: str
    task_cls: type[Task]
    params: dict[str, Any]
    protocol: Protocol | None = None
    step: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    max_trials: int = 0
    max_duration_s: float = 0.0

    @property
    def protocol_name(self) -> str:
        return self.protocol.name if self.protocol else ''

    @property
    def step_name(self) -> str:
        return self.protocol.steps[self.step].name if self.protocol else ''

    def at_step(self, step: int) -> Plan:
        """The plan moved to protocol step ``step`` (goal overrides no longer apply: they were for the old step)."""
        assert self.protocol is not None
        s = self.protocol.steps[step]
        return Plan(self.subject, s.task_name, s.task, dict(s.parameters), self.protocol, step, {},
                    self.max_trials, self.max_duration_s)


def make_plan(*, subject: str, protocol: str, step: int, task: str, overrides: Mapping[str, Any],
              max_trials: int, max_duration_s: float, lookup_task: TaskLookup,
              protocols: Mapping[str, Protocol], protocol_dir: str | Path | None) -> Plan:
    """Check a goal and resolve it; PlanError otherwise.

    ``protocols`` are the ones loaded through the load_protocol service (they win over files);
    ``protocol_dir`` holds ``<name>.yaml`` files.
    """
    if not subject.strip():
        raise PlanError('goal.subject is empty: name the subject to run')
    if max_trials < 0 or not (max_duration_s >= 0 and math.isfinite(max_duration_s)):
        raise PlanError(f'goal limits: max_trials {max_trials} and max_duration_s {max_duration_s} must be >= 0 '
                        '(0 = no limit)')
    if protocol and task:
        raise PlanError(f'goal names both protocol {protocol!r} and task {task!r}: give one (the protocol '
                        'says the task of each step)')
    if protocol:
        proto = protocols.get(protocol)
        if proto is None:
            if not protocol_dir:
                raise PlanError(f'unknown protocol {protocol!r}: load it with the load_protocol service or set '
                                'the pilot parameter protocol_dir')
            try:
                proto = find_protocol(protocol, protocol_dir, lookup_task=lookup_task)
            except ProtocolError as exc:
                raise PlanError(str(exc)) from None
        if not 0 <= step < len(proto.steps):
            raise PlanError(f'goal.step {step}: protocol {proto.name!r} has steps 0-{len(proto.steps) - 1} '
                            f'({", ".join(s.name for s in proto.steps)})')
        s = proto.steps[step]
        plan = Plan(subject, s.task_name, s.task, dict(s.parameters), proto, step, dict(overrides),
                    max_trials, max_duration_s)
        base = s.parameters
    else:
        if not task:
            raise PlanError('goal names neither a protocol nor a task: set goal.protocol or goal.task')
        try:
            task_cls = lookup_task(task)
        except TaskError as exc:
            raise PlanError(str(exc)) from None
        plan = Plan(subject, task, task_cls, {}, None, 0, dict(overrides), max_trials, max_duration_s)
        base = {}
    try:
        plan.params = plan.task_cls.validate({**base, **overrides})
    except TaskError as exc:
        raise PlanError(str(exc)) from None
    return plan


@dataclass
class Progress:
    """Counts of a running session, and the decisions taken between trials."""

    plan: Plan
    prior: list[dict[str, Any]] = field(default_factory=list)  # earlier trials of this subject/step
    sessions_in_step: int = 0                                   # ended ones, not this one
    n_trials: int = 0
    n_scored: int = 0
    n_correct: int = 0
    step_history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fraction_correct(self) -> float:
        return self.n_correct / self.n_scored if self.n_scored else math.nan

    def add(self, fields: Mapping[str, Any]) -> None:
        self.n_trials += 1
        score = self.plan.task_cls.score(fields)
        if score is not None:
            self.n_scored += 1
            self.n_correct += bool(score)
        self.step_history.append(dict(fields))

    def limit_reached(self, elapsed_s: float) -> str | None:
        """Why the session should end now (a goal limit), or None."""
        p = self.plan
        if p.max_trials and self.n_trials >= p.max_trials:
            return f'max_trials {p.max_trials} reached'
        if p.max_duration_s and elapsed_s >= p.max_duration_s:
            return f'max_duration_s {p.max_duration_s:g} reached'
        return None

    def graduation(self) -> str | None:
        """The reason the subject moves to the next step now, or None."""
        p = self.plan
        if p.protocol is None or p.step + 1 >= len(p.protocol.steps):
            return None
        rule = p.protocol.steps[p.step].graduation
        if rule is None:
            return None
        return rule.check(self.prior + self.step_history, self.sessions_in_step)

    def graduate(self, prior: Sequence[dict[str, Any]] = (), sessions_in_step: int = 0) -> Plan:
        """Move to the next step; the new step's history starts from ``prior``."""
        self.plan = self.plan.at_step(self.plan.step + 1)
        self.prior = list(prior)
        self.sessions_in_step = sessions_in_step
        self.step_history = []
        return self.plan
