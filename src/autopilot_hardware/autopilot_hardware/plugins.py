"""Device plugins: how a device node describes itself to ``autopilot hardware list``.

Every device node module exports ``DEVICE = DeviceInfo(...)`` and registers it in the entry-point
group ``autopilot.hardware`` (see this package's setup.py); third-party packages do the same for their
own devices, so the suite lists them without importing anything by name.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from autopilot_core.params import ParamSpec

GROUP = 'autopilot.hardware'


@dataclass(frozen=True)
class DeviceInfo:
    """What a device node is: name, kind, backends, the executable that runs it and its parameters."""

    name: str                      # short name, e.g. "gpio"
    kind: str                      # what it is for, e.g. "digital I/O", "sound", "camera"
    package: str                   # ROS package holding the executable
    executable: str                # `ros2 run <package> <executable>`
    backends: tuple[str, ...]      # values of its `backend` parameter, e.g. ("pigpio", "lgpio", "sim")
    description: str               # one line
    parameters: tuple[ParamSpec, ...] = field(default_factory=tuple)


@dataclass
class Plugin:
    """One entry of the ``autopilot.hardware`` group: its DeviceInfo, or why it could not be loaded."""

    name: str
    target: str                    # the entry point's value, "module:ATTRIBUTE"
    dist: str                      # the distribution (package) that registered it
    info: DeviceInfo | None = None
    error: str = ''


def load_plugins(group: str = GROUP) -> list[Plugin]:
    """Every registered device, sorted by name; a plugin that fails to import is returned with its error."""
    from importlib.metadata import entry_points

    plugins: list[Plugin] = []
    seen: set[str] = set()
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        if ep.name in seen:
            continue  # the first on the path wins, as for console scripts
        seen.add(ep.name)
        dist = getattr(getattr(ep, 'dist', None), 'name', '') or '?'
        plugin = Plugin(ep.name, ep.value, dist)
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not hide the others
            plugin.error = f'{type(exc).__name__}: {exc}'
        else:
            if isinstance(obj, DeviceInfo):
                plugin.info = obj
            else:
                plugin.error = f'{ep.value} is a {type(obj).__name__}, expected autopilot_hardware.plugins.DeviceInfo'
        plugins.append(plugin)
    return plugins


def _fmt_default(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _fmt_range(spec: ParamSpec) -> str:
    parts = []
    if spec.min is not None or spec.max is not None:
        parts.append(f'[{"-inf" if spec.min is None else spec.min}, {"inf" if spec.max is None else spec.max}]')
    if spec.choices:
        parts.append('one of ' + ', '.join(spec.choices))
    if spec.read_only:
        parts.append('read-only')
    return '; '.join(parts)


def format_device(plugin: Plugin, descriptions: bool = False) -> list[str]:
    """Lines describing one plugin (or the one line saying why it is broken)."""
    if plugin.info is None:
        return [f'{plugin.name}: BROKEN plugin {plugin.target} (from {plugin.dist}): {plugin.error}; '
                f'reinstall {plugin.dist} or remove its autopilot.hardware entry point']
    d = plugin.info
    lines = [f'{d.name} [{d.kind}]  backends: {", ".join(d.backends) or "-"}',
             f'  executable: ros2 run {d.package} {d.executable}   (entry point {plugin.target})',
             f'  {d.description}']
    if d.parameters:
        rows = [('name', 'type', 'default', 'unit', 'range')]
        rows += [(p.name, p.ros_type().name.lower(), _fmt_default(p.default), p.unit, _fmt_range(p))
                 for p in d.parameters]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines.append('  parameters:')
        for i, r in enumerate(rows):
            line = '    ' + '  '.join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + '  ' + r[4]
            lines.append(line.rstrip())
            if descriptions and i:
                lines.append(f'      {d.parameters[i - 1].description}')
    else:
        lines.append('  parameters: none')
    return lines


try:  # the CLI classes need autopilot_core's CLI; device nodes importing DeviceInfo do not
    from autopilot_cli.base import CommandExtension, VerbExtension
except ImportError:  # pragma: no cover - autopilot_core always ships its CLI today
    CommandExtension = VerbExtension = object  # type: ignore[assignment,misc]


class ListVerb(VerbExtension):
    """List registered device plugins: kind, backends, executable and parameters."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('-s', '--short', action='store_true', help='one line per device, without parameters')

    def main(self, *, args: argparse.Namespace) -> int:
        plugins = load_plugins()
        if not plugins:
            print(f'no device plugins registered (entry-point group {GROUP!r})')
            return 0
        for i, plugin in enumerate(plugins):
            lines = format_device(plugin)
            if getattr(args, 'short', False):
                lines = lines[:1]
            elif i:
                print()
            print('\n'.join(lines))
        return 0


class ShowVerb(VerbExtension):
    """Show one device plugin in full, with parameter descriptions."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('name', help='device name, as `hardware list` prints it')

    def main(self, *, args: argparse.Namespace) -> int | str:
        name = args.name
        plugins = {p.name: p for p in load_plugins()}
        plugin = plugins.get(name)
        if plugin is None:
            return (f"autopilot: error: no device plugin {name!r}; registered: {', '.join(plugins) or 'none'} "
                    f"(see `autopilot hardware list`)")
        if plugin.info is None:
            return format_device(plugin)[0]
        print('\n'.join(format_device(plugin, descriptions=True)))
        return 0


class HardwareCommand(CommandExtension):
    """List device plugins (entry-point group autopilot.hardware) and their parameters."""

    verbs = {'list': ListVerb, 'show': ShowVerb}
