"""``autopilot plot FILE [-o OUT.png]``: the subject's one-page training summary (accuracy, bias, sessions).

Default output: ``<subject>_summary.png`` next to the subject file. The figure is derived data, cheap to make
again, so an existing PNG is replaced; anything but a ``.png`` path is refused, which keeps a mistyped ``-o``
from overwriting a data file. matplotlib is imported only when the command runs. The figure:
:mod:`autopilot_terminal.summary`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from autopilot_cli.base import CommandError, CommandExtension
from autopilot_terminal.cli.export import subject_path


class PlotCommand(CommandExtension):
    """Plot a subject's training summary (accuracy, bias, sessions) to a PNG."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        super().add_arguments(parser, cli_name)
        parser.add_argument('file', help='subject file (<data dir>/<subject>.h5)')
        parser.add_argument('-o', '--output', metavar='OUT.png',
                            help='PNG to write (default: <subject>_summary.png next to FILE; replaced if it exists)')

    def main(self, *, parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
        path = subject_path(args.file)
        from autopilot_terminal.storage import StoreError, SubjectReader

        try:
            if args.output:
                out = Path(args.output)
            else:
                with SubjectReader(path) as reader:
                    out = path.with_name(f'{reader.subject}_summary.png')
            if out.suffix.lower() != '.png':
                raise CommandError(f'{out}: the summary is a PNG; give an output path ending in .png')
            if not out.parent.is_dir():
                raise CommandError(f'{out.parent}: no such directory; create it or give another output path')
            from autopilot_terminal.summary import summary_png  # matplotlib: only once the input is known good

            summary_png(path, out)
        except (StoreError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        except OSError as exc:
            raise CommandError(f'{out}: cannot write: {exc.strerror or exc}; check the path and its permissions') \
                from exc
        print(f'wrote {out}')
        return 0
