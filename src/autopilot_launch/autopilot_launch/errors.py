"""Errors of the launch runner: each one names the file, the line and the key, and the fix where it is obvious."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Where:
    """A place in a launch file: its path, a 1-based line (0: unknown) and the key path (``node.param[2].value``)."""

    file: str
    line: int = 0
    key: str = ''

    def __str__(self) -> str:
        return f'{self.file}:{self.line}' if self.line else self.file


class LaunchError(Exception):
    """A bad launch file or launch argument, found before any process starts.

    ``str()`` gives ``FILE:LINE: KEY: message`` (KEY is a path such as ``node.param[2].value``), then the
    hint and the chain of includes that led to the file, one per line.
    """

    def __init__(self, message: str, where: Where | None = None, hint: str = '',
                 included_from: tuple[Where, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint
        self.included_from = included_from

    def __str__(self) -> str:
        head = self.message
        if self.where is not None:
            key = f'{self.where.key}: ' if self.where.key else ''
            head = f'{self.where}: {key}{self.message}'
        lines = [head]
        if self.hint:
            lines += ['  ' + h for h in self.hint.splitlines()]
        lines += [f'  (included from {w})' for w in self.included_from]
        return '\n'.join(lines)

    def with_where(self, where: Where) -> LaunchError:
        """This error placed at ``where`` unless it already has a place."""
        if self.where is not None:
            return self
        return LaunchError(self.message, where, self.hint, self.included_from)


class SubstitutionError(Exception):
    """A substitution that cannot be parsed or performed; the caller adds the file, line and key."""

    def __init__(self, message: str, hint: str = '') -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
