"""Typed ROS parameters with descriptors, declared from one table per node.

A node lists its parameters as :class:`ParamSpec` rows (name, default, description, unit, range,
choices, read-only) and calls :func:`declare`. Everything ``ros2 param describe``, rqt and
``autopilot param`` show comes from these descriptors, and a bad value gives one error that names
the parameter, the value and what is allowed:

* at start-up (a params file or ``--ros-args -p``) :func:`declare` raises :class:`ParameterError`,
  which :func:`autopilot_core.executors.run_node` prints before exiting non-zero;
* at run time (``ros2 param set``) the set is refused with the same text as its reason, and the
  node stays up.

An integer given for a floating-point parameter (``-p rate_hz:=5``) is accepted as 5.0: nobody
means anything else by it, and refusing it is the most common parameter error in ROS.

A key given for a parameter the node never declares (a misspelling: ``max_open_msec`` for
``max_open_ms``) is an error too: rclpy keeps such overrides and silently ignores them, so the node would
run with the default. :func:`check_unknown`, called by a node once it has declared everything, raises
:class:`UnknownParameterError` naming each such key and the nearest declared name.
"""

from __future__ import annotations

import contextlib
import difflib
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rcl_interfaces.srv import ListParameters
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

from autopilot_core import rclpy_private

Type = Parameter.Type

_TYPE_NAMES = {
    Type.BOOL: 'bool', Type.INTEGER: 'integer', Type.DOUBLE: 'double', Type.STRING: 'string',
    Type.BYTE_ARRAY: 'byte array', Type.BOOL_ARRAY: 'bool array', Type.INTEGER_ARRAY: 'integer array',
    Type.DOUBLE_ARRAY: 'double array', Type.STRING_ARRAY: 'string array',
}


class ParameterError(ValueError):
    """A parameter value that cannot be used; the message names parameter, value, rule and fix."""

    def __init__(self, node_name: str, name: str, message: str) -> None:
        super().__init__(f"{node_name}: parameter '{name}': {message}")
        self.parameter = name


class UnknownParameterError(ParameterError):
    """Params-file or ``-p`` keys the node has no parameter for; ``unknown`` maps each to its nearest
    declared name (None if nothing is close). ``parameter`` is the first of them."""

    def __init__(self, node_name: str, unknown: Mapping[str, str | None]) -> None:
        parts = [f"unknown parameter '{key}'" + (f" (did you mean '{near}'?)" if near else '')
                 for key, near in unknown.items()]
        # A `/**:` section, or a -p to a process composing several nodes, reaches every node: say where keys go.
        ValueError.__init__(self, f'{node_name}: ' + '; '.join(parts) + '. Correct or remove '
                            f'{"it" if len(parts) == 1 else "them"} in the params file or --ros-args -p; keys '
                            'for another node go in its own section (/**/<its name>:), not in /**: or a -p')
        self.parameter = next(iter(unknown))
        self.unknown = dict(unknown)


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its default fixes the type unless ``type`` is given (needed for empty arrays)."""

    name: str
    default: Any
    description: str
    unit: str = ''
    min: float | None = None
    max: float | None = None
    step: float = 0
    choices: Sequence[str] = field(default_factory=tuple)
    read_only: bool = False
    type: Type | None = None

    def ros_type(self) -> Type:
        if self.type is not None:
            return self.type
        if isinstance(self.default, float):
            return Type.DOUBLE
        return Type.from_parameter_value(self.default)

    def descriptor(self) -> ParameterDescriptor:
        ptype = self.ros_type()
        desc = self.description + (f' [{self.unit}]' if self.unit else '')
        constraints = []
        d = ParameterDescriptor(name=self.name, type=ptype.value, description=desc, read_only=self.read_only)
        if self.min is not None or self.max is not None:
            lo = self.min if self.min is not None else -math.inf
            hi = self.max if self.max is not None else math.inf
            if ptype == Type.INTEGER:
                d.integer_range = [IntegerRange(from_value=int(max(lo, -2**63)), to_value=int(min(hi, 2**63 - 1)),
                                                step=int(self.step))]
            elif ptype == Type.DOUBLE:
                d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi),
                                                             step=float(self.step))]
            else:
                constraints.append(f'between {lo} and {hi}')
        if self.choices:
            constraints.append('one of: ' + ', '.join(self.choices))
        d.additional_constraints = '; '.join(constraints)
        return d

    def allowed(self) -> str:
        """Human text of what values are allowed."""
        parts = [_TYPE_NAMES.get(self.ros_type(), str(self.ros_type()))]
        if self.min is not None or self.max is not None:
            lo = '-inf' if self.min is None else self.min
            hi = 'inf' if self.max is None else self.max
            parts.append(f'in [{lo}, {hi}]' + (f' {self.unit}' if self.unit else ''))
        if self.choices:
            parts.append('one of ' + ', '.join(repr(c) for c in self.choices))
        return ' '.join(parts)

    def check(self, value: Any) -> str | None:
        """Why ``value`` is not allowed, or None when it is (type, range, choices)."""
        ptype = self.ros_type()
        if _is_empty_array(value) and ptype in _ARRAY_TYPES:
            return None  # an empty list has no element type of its own (rclpy calls it a byte array)
        if Type.from_parameter_value(value) != ptype:
            return (f'{value!r} has type {_TYPE_NAMES.get(Type.from_parameter_value(value), "?")}, '
                    f'expected {self.allowed()}')
        if ptype in (Type.INTEGER, Type.DOUBLE):
            if isinstance(value, float) and math.isnan(value):
                return f'NaN is not allowed, expected {self.allowed()}'
            if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
                return f'{value!r} is out of range, allowed {self.allowed()}'
        if self.choices and value not in self.choices:
            return f'{value!r} is not allowed, expected {self.allowed()}'
        return None


_ARRAY_TYPES = (Type.BYTE_ARRAY, Type.BOOL_ARRAY, Type.INTEGER_ARRAY, Type.DOUBLE_ARRAY, Type.STRING_ARRAY)


def _is_empty_array(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and not value


def _declare_one(node: Node, spec: ParamSpec, value: Any) -> Parameter:
    if _is_empty_array(value) and spec.ros_type() != Type.BYTE_ARRAY:
        # rclpy would declare [] as a byte array whatever the descriptor says: declare the type
        # first, then set the empty value with that type.
        # A read-only parameter refuses that set, so it is declared writable and made read-only after.
        writable = spec.descriptor()
        writable.read_only = False
        node.declare_parameter(spec.name, spec.ros_type(), writable, ignore_override=True)
        node.set_parameters([Parameter(spec.name, spec.ros_type(), [])])
        if spec.read_only:
            node.set_descriptor(spec.name, spec.descriptor())
        return node.get_parameter(spec.name)
    return node.declare_parameter(spec.name, value, spec.descriptor(), ignore_override=True)


def _coerce(spec: ParamSpec, value: Any) -> Any:
    if spec.ros_type() == Type.DOUBLE and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if spec.ros_type() == Type.DOUBLE_ARRAY and isinstance(value, (list, tuple)) and \
            all(isinstance(v, int) and not isinstance(v, bool) for v in value) and value:
        return [float(v) for v in value]
    return value


def declare(node: Node, specs: Iterable[ParamSpec]) -> dict[str, Any]:
    """Declare ``specs`` on ``node`` and return their values; raise ParameterError on a bad value.

    Also installs the run-time checks (choices, int-to-double) for later ``param set`` calls.
    """
    specs = list(specs)
    by_name = {s.name: s for s in specs}
    # Overrides from params files and -p; rclpy has no public getter before declaration.
    overrides: dict[str, Parameter] = rclpy_private.parameter_overrides(node)
    values: dict[str, Any] = {}
    for spec in specs:
        value = spec.default
        if spec.name in overrides:
            value = _coerce(spec, overrides[spec.name].value)
        problem = spec.check(value)
        if problem:
            src = 'given' if spec.name in overrides else 'default'
            raise ParameterError(node.get_name(), spec.name,
                                 f'{src} value {problem}. Fix it in the params file or with '
                                 f'--ros-args -p {spec.name}:=<value>')
        try:
            param = _declare_one(node, spec, value)
        except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
            raise ParameterError(node.get_name(), spec.name, str(exc)) from None
        values[spec.name] = param.value

    def pre_set(params: list[Parameter]) -> list[Parameter]:
        out = []
        for p in params:
            spec = by_name.get(p.name)
            if spec is not None and p.type_ != Type.NOT_SET:
                coerced = _coerce(spec, p.value)
                if coerced is not p.value:
                    p = Parameter(p.name, value=coerced)
            out.append(p)
        return out

    def on_set(params: list[Parameter]) -> SetParametersResult:
        for p in params:
            spec = by_name.get(p.name)
            if spec is None or p.type_ == Type.NOT_SET:
                continue
            problem = spec.check(p.value)
            if problem:
                return SetParametersResult(successful=False, reason=f"parameter '{p.name}': {problem}")
        return SetParametersResult(successful=True)

    node.add_pre_set_parameters_callback(pre_set)
    node.add_on_set_parameters_callback(on_set)
    return values


#: Parameters rclpy reads from the overrides itself; a params file may give them to any node.
RCLPY_PARAMETERS = frozenset({'use_sim_time', 'start_type_description_service'})
#: Prefixes of rclpy's own parameter families (QoS overrides are declared only by endpoints that allow them).
RCLPY_PREFIXES = ('qos_overrides.',)


def unknown_parameters(node: Node, known: Iterable[str] = ()) -> dict[str, str | None]:
    """Override keys (params files, ``-p``) that ``node`` has not declared, each with its nearest declared name.

    ``known``: names to accept besides the declared ones. rclpy's own parameters are ignored.
    """
    # rclpy has no public getter for the overrides (allow_undeclared_parameters=False keeps them all the same):
    # the private dict declare() reads, through autopilot_core.rclpy_private (pinned to the tested rclpy).
    overrides: Mapping[str, Parameter] = rclpy_private.parameter_overrides(node)
    declared = set(node.list_parameters([], ListParameters.Request.DEPTH_RECURSIVE).names) | set(known)
    unknown: dict[str, str | None] = {}
    for key in sorted(overrides):
        if key in declared or key in RCLPY_PARAMETERS or key.startswith(RCLPY_PREFIXES):
            continue
        near = difflib.get_close_matches(key, sorted(declared), n=1, cutoff=0.6)
        unknown[key] = near[0] if near else None
    return unknown


#: While nodes are built for one process (:func:`composed`): (node, known) whose check waits for all of them.
_deferred: list[tuple[Node, tuple[str, ...]]] | None = None


def check_unknown(node: Node, known: Iterable[str] = ()) -> None:
    """Raise :class:`UnknownParameterError` (a ParameterError) if an override names no declared parameter.

    Call it once the node has declared all its parameters (those declared from other parameters' values,
    such as ``devices.<name>.*``, included) and before it opens hardware, so the error leaves nothing open.
    Inside :func:`composed` the check waits for the process's other nodes (see there).
    """
    if _deferred is not None:
        _deferred.append((node, tuple(known)))
        return
    unknown = unknown_parameters(node, known)
    if unknown:
        raise UnknownParameterError(node.get_name(), unknown)


@contextlib.contextmanager
def composed() -> Iterator[None]:
    """Build several nodes of one process (``executors.run_nodes``) with the unknown-key check deferred to the end.

    A ``-p name:=value`` on the command line reaches every node of a process (rclpy has no per-node ``-p``),
    so in a composed process a key is unknown only when no node of it declares it. Keys of a node's own
    params-file section that only another node declares slip through there: give such settings per node.
    """
    global _deferred
    entries: list[tuple[Node, tuple[str, ...]]] = []
    _deferred = entries
    try:
        yield
    finally:
        _deferred = None
    names = {n for node, known in entries
             for n in (*node.list_parameters([], ListParameters.Request.DEPTH_RECURSIVE).names, *known)}
    for node, _known in entries:
        check_unknown(node, names)
