"""The parsed form of a YAML launch file: one dataclass per action, values kept as unevaluated templates.

Every value carries its :class:`~autopilot_launch.errors.Where` (file, line, key path), so that an
error found while evaluating it (an unset ``$(var)``, a missing package) points at the line it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autopilot_launch.errors import Where
from autopilot_launch.substitutions import Template


@dataclass(frozen=True)
class Val:
    """A template and where it was written."""

    t: Template
    where: Where


@dataclass
class Condition:
    """``if:`` (``negate`` False) or ``unless:`` (True)."""

    expr: Val
    negate: bool


@dataclass
class Action:
    where: Where
    condition: Condition | None


@dataclass
class DeclareArg(Action):
    name: str
    default: Val | None
    description: str | None
    choices: list[str] | None

    @property
    def full_description(self) -> str:
        """The description as ``launch`` shows it, with its choices."""
        if self.description is None:
            return 'no description given' if self.choices is None else f'One of: {self.choices}'
        if self.choices is None:
            return self.description
        text = self.description if self.description.endswith('.') else self.description + '.'
        return f'{text} Valid choices are: {self.choices}'


@dataclass
class Let(Action):
    name: Val
    value: Val


@dataclass
class SetEnv(Action):
    name: Val
    value: Val


@dataclass
class UnsetEnv(Action):
    name: Val


@dataclass
class AppendEnv(Action):
    name: Val
    value: Val
    prepend: bool
    separator: Val | None


@dataclass
class PushNamespace(Action):
    namespace: Val


@dataclass
class Log(Action):
    message: Val


@dataclass
class ParamValue:
    """An inline parameter value: a literal (bool, int, float, str or a list of them) or templates.

    Strings holding substitutions are kept as :data:`Template` tuples (alone or as list items) and are
    converted by YAML rules after substitution, as ``launch_ros`` does; plain strings stay strings.
    ``type`` is the ``type:`` attribute (``str``, ``int``, ``list_of_float``, ``yaml``...) or None.
    """

    value: Any
    type: str | None
    where: Where


@dataclass
class SetParameter(Action):
    name: Val
    value: ParamValue


@dataclass
class SetRemap(Action):
    src: Val
    dst: Val


@dataclass
class InlineParam:
    """One leaf of inline ``param:`` entries: ``name`` is the dotted path of templates (nested params)."""

    name: tuple[Val, ...]
    value: ParamValue


@dataclass
class ParamFile:
    """``param: [{from: FILE}]``; with ``allow_substs`` its text is substituted before use."""

    path: Val
    allow_substs: bool | Val


@dataclass
class ProcessAction(Action):
    """What ``node`` and ``executable`` share (``launch``'s ExecuteProcess attributes)."""

    cwd: Val | None = None
    label: Val | None = None  # executable's ``name`` / node's ``exec_name``: the output prefix
    output: Val | None = None
    respawn: Val | None = None
    respawn_delay: float | None = None
    respawn_max_retries: int | None = None
    sigterm_timeout: float | None = None
    sigkill_timeout: float | None = None
    shell: bool = False
    emulate_tty: bool = False
    launch_prefix: Val | None = None
    on_exit_shutdown: bool = False
    env: list[tuple[Val, Val]] = field(default_factory=list)


@dataclass
class Executable(ProcessAction):
    cmd: list[Val] = field(default_factory=list)


@dataclass
class Node(ProcessAction):
    pkg: Val | None = None
    exec: Val | None = None
    name: Val | None = None
    namespace: Val | None = None
    args: list[Val] = field(default_factory=list)
    ros_args: list[Val] = field(default_factory=list)
    params: list[InlineParam | ParamFile] = field(default_factory=list)
    remaps: list[tuple[Val, Val]] = field(default_factory=list)


@dataclass
class Group(Action):
    scoped: bool
    forwarding: bool
    keep: list[tuple[Val, Val]]
    children: list[Action]


@dataclass
class Include(Action):
    file: Val
    args: list[tuple[Val, Val]]


@dataclass
class LaunchFile:
    path: str
    actions: list[Action]
