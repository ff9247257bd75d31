"""``autopilot protocol list|show|save``: the protocols of the running terminal's protocol_dir, through its
services (``/terminal/list_protocols``, ``get_protocol``, ``save_protocol``), so it works from any host.

The terminal validates every protocol with the pilots' own code: ``list`` shows why the pilots would refuse a
file, ``save`` refuses a protocol they would refuse (naming the line and field) and never replaces a file
unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autopilot_cli.base import CommandError, CommandExtension

from .subject import ANSWER_TIMEOUT_S, TERMINAL, TerminalVerb, _call, call_terminal, cli_node, no_terminal, table

#: Largest protocol file sent (the terminal's limit, autopilot_terminal.subjects.MAX_PROTOCOL_BYTES).
MAX_BYTES = 1 << 20


class ListVerb(TerminalVerb):
    """List the terminal's protocols: steps, tasks and whether the pilots would accept each."""

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        pass

    def run(self, args: argparse.Namespace) -> int:
        from autopilot_msgs.srv import ListProtocols

        with cli_node('protocol') as node:
            resp = _call(node, ListProtocols, f'{TERMINAL}/list_protocols', ListProtocols.Request(),
                         wait_s=args.spin_time, settle_s=args.settle, answer_s=ANSWER_TIMEOUT_S)
        if resp is None:
            raise no_terminal(args.spin_time)
        if not resp.protocols:
            print("no protocols in the terminal's protocol_dir", file=sys.stderr)
            return 0
        rows = [('protocol', 'steps', 'tasks', 'valid')]
        rows += [(p.name, str(len(p.step_names)), ', '.join(dict.fromkeys(p.tasks)) or '-', 'no' if p.error else 'yes')
                 for p in resp.protocols]
        print('\n'.join(table(rows)))
        for p in resp.protocols:
            if p.error:
                print(f'WARNING: {p.name}: {p.error}', file=sys.stderr)
        return 0


class ShowVerb(TerminalVerb):
    """Print a protocol's text (YAML, as the pilots receive it); its steps and validation on stderr."""

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('name', help="protocol name (file stem in the terminal's protocol_dir)")

    def run(self, args: argparse.Namespace) -> int:
        from autopilot_msgs.srv import GetProtocol

        resp = call_terminal(GetProtocol, 'get_protocol', GetProtocol.Request(name=args.name), args)
        p = resp.protocol
        print(f'# {p.file} (sha256 {p.sha256[:12]}): ' + ', '.join(
            f'{i}: {s} ({t})' for i, (s, t) in enumerate(zip(p.step_names, p.tasks, strict=False))), file=sys.stderr)
        if p.error:
            print(f'WARNING: the pilots would refuse it: {p.error}', file=sys.stderr)
        sys.stdout.write(resp.text if resp.text.endswith('\n') or not resp.text else resp.text + '\n')
        return 0


class SaveVerb(TerminalVerb):
    """Save a YAML file as a protocol of the terminal (validated there with the pilots' own code)."""

    def add_verb_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        parser.add_argument('name', help='protocol name: letters, digits, "_" and "-" (the file <name>.yaml)')
        parser.add_argument('file', help='the protocol YAML to send ("-": standard input)')
        parser.add_argument('--overwrite', action='store_true', help='replace the protocol of that name')

    def run(self, args: argparse.Namespace) -> int:
        from autopilot_msgs.srv import SaveProtocol

        try:
            if args.file == '-':
                text = sys.stdin.read()
            else:
                path = Path(args.file)
                if path.stat().st_size > MAX_BYTES:
                    raise CommandError(f'{path}: {path.stat().st_size} bytes; a protocol is at most {MAX_BYTES}')
                text = path.read_text(encoding='utf-8')
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f'cannot read {args.file}: {exc}') from None
        resp = call_terminal(SaveProtocol, 'save_protocol', SaveProtocol.Request(
            name=args.name, text=text, overwrite=args.overwrite), args)
        print(resp.message)
        return 0


class ProtocolCommand(CommandExtension):
    """List, show and save the terminal's protocols (validated with the pilots' own code)."""

    verbs = {'list': ListVerb, 'show': ShowVerb, 'save': SaveVerb}
