"""``autopilot interface``: list, packages, package, show and proto, as ``ros2 interface`` (pip path, no ros2cli).

Interfaces are found through the ament index (``rosidl_interfaces`` resources on AMENT_PREFIX_PATH, the
wheels' venv included), the definitions read from ``<prefix>/share/<pkg>/msg|srv|action``.
"""

from __future__ import annotations

import argparse
import sys

from autopilot_cli.base import CommandError, CommandExtension, VerbExtension
from autopilot_runtime_py.messages import (
    KINDS,
    InterfaceNotFoundError,
    get_interface,
    install_hint,
    interface_packages,
    interface_text,
    list_interfaces,
    message_to_yaml,
)

_TITLES = {'msg': 'Messages', 'srv': 'Services', 'action': 'Actions'}


class _Verb(VerbExtension):
    def main(self, *, args: argparse.Namespace) -> int | str | None:
        try:
            return self.run(args)
        except InterfaceNotFoundError as exc:
            raise CommandError(str(exc)) from None

    def run(self, args: argparse.Namespace) -> int | str | None:
        raise NotImplementedError


def _chosen_kinds(args: argparse.Namespace) -> list[str]:
    """The kinds picked with -m/-s/-a (empty: none picked)."""
    flags = (args.only_msgs, args.only_srvs, args.only_actions)
    return [k for k, flag in zip(KINDS, flags, strict=True) if flag]


class ListVerb(_Verb):
    """List all interface types available."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('-m', '--only-msgs', action='store_true', help='Print out only the message types')
        parser.add_argument('-s', '--only-srvs', action='store_true', help='Print out only the service types')
        parser.add_argument('-a', '--only-actions', action='store_true', help='Print out only the action types')

    def run(self, args: argparse.Namespace) -> int:
        chosen = _chosen_kinds(args)
        for kind in chosen or KINDS:
            print(f'{_TITLES[kind]}:')
            for pkg, names in list_interfaces(kind).items():
                for name in names:
                    print(f'    {pkg}/{name}')
        return 0


class PackagesVerb(_Verb):
    """List all packages that generate interfaces."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('-m', '--only-msgs', action='store_true', help='Only list packages with messages')
        parser.add_argument('-s', '--only-srvs', action='store_true', help='Only list packages with services')
        parser.add_argument('-a', '--only-actions', action='store_true', help='Only list packages with actions')

    def run(self, args: argparse.Namespace) -> int:
        chosen = _chosen_kinds(args)
        if chosen:
            packages = set().union(*(list_interfaces(k) for k in chosen))
        else:
            packages = set(interface_packages())
        print(*sorted(packages), sep='\n')
        return 0


class PackageVerb(_Verb):
    """Output a list of available interface types within one package."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('package_name', help="Name of the ROS package (e.g. 'example_interfaces')")

    def run(self, args: argparse.Namespace) -> int | str:
        if args.package_name not in interface_packages():
            return f"Unknown package '{args.package_name}': {install_hint(args.package_name)}"
        for kind in KINDS:
            for name in list_interfaces(kind, [args.package_name]).get(args.package_name, []):
                print(f'{args.package_name}/{name}')
        return 0


class ShowVerb(_Verb):
    """Output the interface definition."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        group = parser.add_mutually_exclusive_group()
        group.add_argument('--all-comments', action='store_true',
                           help='Show all comments, including for nested interface definitions')
        group.add_argument('--no-comments', action='store_true', help='Show no comments or whitespace')
        parser.add_argument('type', help="Show an interface definition (e.g. 'example_interfaces/msg/String' or "
                                         "'std_msgs/String'); '-' reads the type from stdin")

    def run(self, args: argparse.Namespace) -> int:
        name = sys.stdin.readline().strip() if args.type == '-' else args.type
        if not name:
            raise CommandError('the passed value is empty')
        sys.stdout.write(interface_text(name, comments=not args.no_comments, nested_comments=args.all_comments))
        return 0


class ProtoVerb(_Verb):
    """Output an interface prototype (the YAML to fill in for pub/call)."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('type', help="Interface type (e.g. 'std_msgs/msg/String')")
        parser.add_argument('--no-quotes', action='store_true', help='if included, output without the quotes')

    def run(self, args: argparse.Namespace) -> int:
        cls = get_interface(args.type)
        instance = cls.Goal() if hasattr(cls, 'Goal') else cls.Request() if hasattr(cls, 'Request') else cls()
        text = message_to_yaml(instance)
        print(text if args.no_quotes else f'"{text}"')
        return 0


class InterfaceCommand(CommandExtension):
    """Show information about ROS interfaces (as `ros2 interface`, for the pip path without ros2cli)."""

    verbs = {'list': ListVerb, 'packages': PackagesVerb, 'package': PackageVerb, 'show': ShowVerb,
             'proto': ProtoVerb}
