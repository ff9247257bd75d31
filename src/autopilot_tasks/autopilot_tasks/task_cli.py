"""``autopilot task list|show``: the registered tasks and what each declares (no ROS graph needed).

``list`` prints one line per task (name, class, first docstring line), sorted by name, so scripts can
rely on it as on ``ros2 ... list``; a task whose plugin does not load is listed as BROKEN with the reason.
``show NAME`` prints the parameters (type, default, unit, range, description), the hardware roles with
their default devices, the trial fields and the stages.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import yaml

from autopilot_cli.base import CommandError, CommandExtension, VerbExtension
from autopilot_tasks.registry import GROUP, TaskPlugin, load_tasks
from autopilot_tasks.task import Input, Output, Param, Sound, Stimuli, Stream, Task, type_name


def _table(rows: Sequence[Sequence[str]], indent: str = '  ') -> list[str]:
    """Left-aligned columns, two spaces apart, no trailing blanks."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [(indent + '  '.join(c.ljust(w) for c, w in zip(r, widths, strict=True))).rstrip() for r in rows]


def _range(p: Param) -> str:
    parts = []
    if p.min is not None or p.max is not None:
        parts.append(f'[{"-inf" if p.min is None else p.min}, {"inf" if p.max is None else p.max}]')
    if p.choices is not None:
        parts.append('one of ' + ', '.join(str(c) for c in p.choices))
    return '; '.join(parts) or '-'


def _role_kind(decl: Input | Output | Sound | Stream) -> str:
    if isinstance(decl, Stream):
        return f'stream ({decl.field} of {decl.msg_type}{f", {decl.unit}" if decl.unit else ""})'
    if isinstance(decl, Input):
        return f'input (active {"high" if decl.active_level else "low"})'
    if isinstance(decl, Output):
        return f'output ({decl.kind})'
    return f'sound (channel {decl.channel})' if decl.channel else 'sound'


def _class_path(cls: type) -> str:
    return f'{cls.__module__}:{cls.__qualname__}'


def format_task(name: str, cls: type[Task]) -> list[str]:
    """What ``task show`` prints."""
    lines = [f'{name}: {_class_path(cls)}', f'  {cls.description()}', '']
    params = cls.params()
    lines.append('parameters:' if params else 'parameters: none')
    if params:
        lines += _table([('name', 'type', 'default', 'unit', 'range', 'description')] + [
            (n, 'stimuli' if isinstance(p, Stimuli) else type_name(p.type), _default(p), p.unit or '-',
             _range(p), p.description) for n, p in params.items()])
        for n, p in params.items():
            if isinstance(p, Stimuli):  # too big for a cell: the default set below the table, as YAML
                lines.append(f'  {n} (default):')
                lines += ['    ' + line for line in
                          yaml.safe_dump(p.default, sort_keys=False, default_flow_style=None, width=110).splitlines()]
    hardware = cls.hardware()
    lines.append('hardware:' if hardware else 'hardware: none')
    if hardware:
        lines += _table([('role', 'kind', 'default device', 'description')] + [
            (role, _role_kind(d), d.device, d.description) for role, d in hardware.items()])
    fields = cls.fields()
    lines.append('trial fields:' if fields else 'trial fields: none')
    if fields:
        lines += _table([('name', 'type', 'unit', 'description')] + [
            (n, type_name(f.type), f.unit or '-', f.description) for n, f in fields.items()])
    lines.append(f'stages: {", ".join(cls.stages)} (each trial starts in {cls.stages[0]})')
    if cls.score_field is None:
        lines.append('score: none (not scored)')
    else:
        excl = f' (trials with {" or ".join(cls.score_excludes)} true do not count)' if cls.score_excludes else ''
        lines.append(f'score: {cls.score_field}{excl}')
    return lines


def _default(p: Param) -> str:
    if isinstance(p, Stimuli):
        return f'{p.describe()} (below)'
    return repr(p.default) if p.type is str else str(p.default)


def _broken(p: TaskPlugin) -> str:
    return f'BROKEN {p.target} (from {p.dist}): {p.error}'


class ListVerb(VerbExtension):
    """List registered tasks: name, class, description."""

    def main(self, *, args: argparse.Namespace) -> int:
        plugins = load_tasks()
        if not plugins:
            print(f'no tasks registered (entry-point group {GROUP!r})')
            return 0
        rows = [(p.name, _class_path(p.cls), p.cls.description()) if p.cls is not None else (p.name, _broken(p), '')
                for p in plugins]
        print('\n'.join(_table(rows, indent='')))
        return 0


class ShowVerb(VerbExtension):
    """Show one task: parameters, hardware roles, trial fields and stages."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('name', help='task name, as `autopilot task list` prints it')

    def main(self, *, args: argparse.Namespace) -> int:
        plugins = {p.name: p for p in load_tasks()}
        plugin = plugins.get(args.name)
        if plugin is None:
            known = ', '.join(n for n, p in plugins.items() if p.cls is not None) or 'none'
            raise CommandError(f'unknown task {args.name!r}; known tasks: {known} (see `autopilot task list`)')
        if plugin.cls is None:
            raise CommandError(f'task {args.name!r} is {_broken(plugin)}')
        print('\n'.join(format_task(plugin.name, plugin.cls)))
        return 0


class TaskCommand(CommandExtension):
    """List the registered tasks (entry-point group autopilot.tasks) and show what each declares."""

    verbs = {'list': ListVerb, 'show': ShowVerb}
