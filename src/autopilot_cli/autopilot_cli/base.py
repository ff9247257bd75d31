"""Base classes of the CLI: commands that dispatch to verbs, as in ros2cli."""

from __future__ import annotations

import argparse
from typing import Any


def add_extensions(parser: argparse.ArgumentParser, cli_name: str, classes: dict[str, type],
                   attribute: str) -> None:
    """One subparser per extension class (help from its docstring's first line), the instance stored
    in ``args.<attribute>``."""
    sub = parser.add_subparsers(title='Commands', metavar=f'Call `{cli_name} <command> -h` for more detailed usage.')
    for name, cls in classes.items():
        ext = cls()
        doc = (cls.__doc__ or '').strip().split('\n')[0]
        sub_parser = sub.add_parser(name, help=doc, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
        sub_parser.set_defaults(**{attribute: ext})
        ext.add_arguments(sub_parser, f'{cli_name} {name}')


class CommandError(Exception):
    """A user error: printed as ``autopilot: error: <message>`` with exit code 1, no traceback."""


class VerbExtension:
    """One verb of a command (``topic echo``): arguments and ``main``."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        pass

    def main(self, *, args: argparse.Namespace) -> int | str | None:
        raise NotImplementedError


class CommandExtension:
    """A command. Subclasses with verbs set ``verbs = {'name': VerbClass, ...}``."""

    verbs: dict[str, type[VerbExtension]] = {}

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        self._parser = parser
        if not self.verbs:
            return
        add_extensions(parser, cli_name, self.verbs, '_verb_extension')

    def main(self, *, parser: argparse.ArgumentParser, args: argparse.Namespace) -> Any:
        verb = getattr(args, '_verb_extension', None)
        if verb is None:
            self._parser.print_help()
            return 0
        return verb.main(args=args)
