"""Tasks from the entry-point group ``autopilot.tasks``: the pilot, protocols and the CLI find them here.

A package registers ``name = module:Class`` in that group (this package's setup.py does it for
``free_water`` and ``2afc``), so nothing imports task modules by name. A plugin that fails to import, or
is not a :class:`~autopilot_tasks.task.Task` subclass, is kept with its error: it is listed as broken
and named in lookup errors, while every other task keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from autopilot_tasks.task import Task, TaskError

GROUP = 'autopilot.tasks'

__all__ = ['GROUP', 'TaskPlugin', 'load_tasks', 'lookup', 'task_names']


@dataclass
class TaskPlugin:
    """One entry of the group: the task class, or why it could not be loaded."""

    name: str
    target: str                    # the entry point's value, "module:Class"
    dist: str                      # the distribution that registered it
    cls: type[Task] | None = None
    error: str = ''


def _load(ep: EntryPoint, dist: str) -> TaskPlugin:
    plugin = TaskPlugin(ep.name, ep.value, dist)
    try:
        obj = ep.load()
    except Exception as exc:  # noqa: BLE001 - one broken task file must not hide the others
        plugin.error = f'{type(exc).__name__}: {exc}'
    else:
        if isinstance(obj, type) and issubclass(obj, Task) and obj.stages:
            plugin.cls = obj
        else:
            plugin.error = f'{ep.value} is not a Task subclass with stages'
    return plugin


def _entry_points(group: str) -> dict[str, EntryPoint]:
    eps: dict[str, EntryPoint] = {}
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        eps.setdefault(ep.name, ep)  # the first on the path wins, as for console scripts
    return eps


def load_tasks(group: str = GROUP) -> list[TaskPlugin]:
    """Every registered task, sorted by name; broken ones carry their error instead of a class."""
    return [_load(ep, getattr(getattr(ep, 'dist', None), 'name', '') or '?')
            for ep in _entry_points(group).values()]


def task_names(group: str = GROUP) -> list[str]:
    """Names of the tasks that load."""
    return [p.name for p in load_tasks(group) if p.cls is not None]


def lookup(name: str, group: str = GROUP) -> type[Task]:
    """The task class registered as ``name`` (only that one is imported); TaskError naming the known
    tasks, or saying why this one is broken."""
    eps = _entry_points(group)
    ep = eps.get(name)
    if ep is None:
        known = ', '.join(eps) or '(none)'
        raise TaskError(f"unknown task {name!r}; known tasks: {known} (entry-point group '{group}', "
                        'see `autopilot task list`)')
    plugin = _load(ep, getattr(getattr(ep, 'dist', None), 'name', '') or '?')
    if plugin.cls is None:
        raise TaskError(f'task {name!r} is broken: {plugin.target} (from {plugin.dist}): {plugin.error}')
    return plugin.cls
