"""``autopilot export FILE --to nwb [-o OUT] [--session ID] [--force]``: a subject file's sessions as NWB files.

One NWB file per session (what NWB users and DANDI expect), named ``sub-<subject>_ses-<start>-<id>_behavior.nwb``
in ``OUT`` (default: ``<subject file stem>_nwb/`` next to the subject file); with ``--session`` ``OUT`` may be
a ``.nwb`` file. The mapping is documented in :mod:`autopilot_terminal.nwb`. Works on a file the Terminal is
recording (SWMR read): a running session is exported as far as it is recorded. pynwb is imported only when
the command runs, so the rest of the CLI starts fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from autopilot_cli.base import CommandError, CommandExtension

FORMATS = ('nwb',)


def subject_path(text: str) -> Path:
    """The subject file argument, refused with the fix when it is not a file."""
    path = Path(text)
    if not path.exists():
        raise CommandError(f'{path}: no such file; give the subject file (<data dir>/<subject>.h5)')
    if not path.is_file():
        raise CommandError(f'{path}: not a file; give the subject file (<data dir>/<subject>.h5)')
    return path


class ExportCommand(CommandExtension):
    """Export a subject file's sessions to NWB (one file per session)."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        super().add_arguments(parser, cli_name)
        parser.add_argument('file', help='subject file (<data dir>/<subject>.h5)')
        parser.add_argument('--to', choices=FORMATS, default='nwb', help='output format (default: nwb)')
        parser.add_argument('-o', '--output', metavar='OUT',
                            help='directory for the NWB files (default: <file stem>_nwb next to FILE), or a .nwb '
                                 'file path when one session is exported')
        parser.add_argument('--session', metavar='ID', help='export only this session (default: all)')
        parser.add_argument('--force', action='store_true', help='replace NWB files that exist')

    def main(self, *, parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
        path = subject_path(args.file)
        out = Path(args.output) if args.output else path.with_name(f'{path.stem}_nwb')
        from autopilot_terminal.nwb import ExportError, OutputExists, export_nwb
        from autopilot_terminal.storage import StoreError

        try:
            written = export_nwb(path, out, args.session, overwrite=args.force)
        except OutputExists as exc:
            raise CommandError(str(OutputExists(exc.paths, '--force'))) from exc
        except (ExportError, StoreError) as exc:
            raise CommandError(str(exc)) from exc
        except OSError as exc:
            raise CommandError(f'{out}: cannot write: {exc.strerror or exc}; check the path and its permissions') \
                from exc
        for w in written:
            print(f'wrote {w.path} (session {w.session_id}: {w.trials} trials, {w.gpio_events} gpio events, '
                  f'{w.sound_events} sound onsets, {w.step_changes} step changes)')
        if len(written) > 1:
            print(f'wrote {len(written)} NWB files to {out}')
        return 0
