"""What clients send the pilot, checked: a RunSession goal becomes a Plan; parameter lists become values.

Bounded before anything else is done with them (names, how many parameters): goals and requests may come from
anything on the domain. Errors are InputError or PlanError, whose text the pilot refuses the request with.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rclpy.parameter import Parameter

from autopilot_core.checks import sequence, text
from autopilot_pilot.session import Plan, make_plan
from autopilot_tasks import registry
from autopilot_tasks.protocol import Protocol

#: Bounds on what a client may send: names, parameters per request.
MAX_NAME = 256
MAX_PARAMETERS = 256


def parameter_values(params: Any) -> dict[str, Any]:
    """rcl_interfaces/Parameter messages of a goal or request -> {name: value}; InputError when too many or odd."""
    sequence('parameters', params, MAX_PARAMETERS)
    return {text('parameter name', p.name, MAX_NAME, empty=False): Parameter.from_parameter_msg(p).value
            for p in params}


def goal_plan(goal: Any, protocols: Mapping[str, Protocol], protocol_dir: str | Path | None) -> Plan:
    """The Plan of a RunSession goal (tasks from the registry); InputError or PlanError naming what is wrong."""
    for what, value in (('subject', goal.subject), ('protocol', goal.protocol), ('task', goal.task)):
        text(what, value, MAX_NAME)
    return make_plan(subject=goal.subject, protocol=goal.protocol, step=goal.step, task=goal.task,
                     overrides=parameter_values(goal.parameters), max_trials=goal.max_trials,
                     max_duration_s=goal.max_duration_s, lookup_task=registry.lookup, protocols=protocols,
                     protocol_dir=protocol_dir)
