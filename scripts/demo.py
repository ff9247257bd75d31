#!/usr/bin/env python3
"""The demo: a terminal and two simulated pilots train two virtual mice on 2AFC for about a minute.

1. ``autopilot launch launch/demo.launch.yaml`` starts the terminal and two rigs (sim GPIO, null sound, a
   virtual subject each; ``rig_2``'s mouse has a side bias), writing into a fresh output directory;
2. this script, another ROS 2 node, does what a person would do through the terminal's services: create
   the subjects, assign the ``2afc_demo`` protocol, start a session on each pilot; it shows progress from
   the trials and the terminal's pilot registry;
3. when both sessions have ended it stops the launch (Ctrl-C semantics: the terminal closes its files),
   checks that every trial the pilots reported is in the subjects' HDF5 files exactly once, exports each
   session's bag to MCAP and draws each subject's summary PNG, then prints where they are and a results
   table. Exit code 0 when every check passed.

``--gui`` also opens the Terminal window on the demo rig (``gui:=true``): watch the rows and live plots; it
closes with the launch.

Run it through ``bash scripts/demo.sh`` (which sets the workspace up first).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rclpy
from autopilot_msgs.msg import PilotRegistry, PilotStatus, TrialAck, TrialData
from autopilot_msgs.srv import AssignProtocol, CreateSubject, StartSession
from rclpy.node import Node
from rclpy.serialization import deserialize_message

from autopilot_core import qos
from autopilot_core.executors import make_executor, spin, spin_until_future

ROOT = Path(__file__).resolve().parent.parent
PILOTS = {'rig_1': 'mouse_1', 'rig_2': 'mouse_2'}
BIOGRAPHIES = {
    'mouse_1': {'species': 'Mus musculus', 'sex': 'F', 'dob': '2026-06-01', 'genotype': 'C57BL/6J',
                'note': 'virtual subject, seed 11, unbiased'},
    'mouse_2': {'species': 'Mus musculus', 'sex': 'M', 'dob': '2026-06-03', 'genotype': 'C57BL/6J',
                'note': 'virtual subject, seed 22, biased to the left (bias 0.8: errs on right targets)'},
}
PROTOCOL = '2afc_demo'


@dataclass
class Rig:
    """What the driver saw of one pilot."""

    pilot: str
    subject: str
    trials: dict[tuple[str, int], TrialData] = field(default_factory=dict)
    raw: dict[tuple[str, int], bytes] = field(default_factory=dict)
    acked: set[tuple[str, int]] = field(default_factory=set)
    status: PilotStatus | None = None
    online: bool = False
    ran: bool = False

    def scored(self) -> tuple[int, int]:
        """(correct, scored) over non-correction trials."""
        correct = scored = 0
        for t in self.trials.values():
            v = {f.name: f for f in t.fields}
            if 'correct' in v and not (v.get('correction') and v['correction'].bool_value):
                scored += 1
                correct += v['correct'].bool_value
        return correct, scored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--duration', type=float, default=60.0, help='session length in seconds (default 60)')
    parser.add_argument('--out', type=Path, default=None,
                        help='output directory (default: demo_output/<date-time> in the repository)')
    parser.add_argument('--gui', action='store_true',
                        help='open the Terminal window on the demo rig (needs a desktop, `ssh -X`, or '
                             'QT_QPA_PLATFORM=offscreen)')
    args = parser.parse_args()
    if args.gui and not any(os.environ.get(v) for v in ('DISPLAY', 'WAYLAND_DISPLAY', 'QT_QPA_PLATFORM')):
        print('demo: --gui needs a display: run it on a desktop, over `ssh -X`, or with QT_QPA_PLATFORM=offscreen',
              file=sys.stderr)
        return 2
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')  # a demo on one machine
    out = (args.out or ROOT / 'demo_output' / time.strftime('%Y%m%d-%H%M%S')).resolve()
    (out / 'data').mkdir(parents=True, exist_ok=True)
    print(f'ROS_DOMAIN_ID={os.environ.get("ROS_DOMAIN_ID", "0")}, discovery range '
          f'{os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"]}; output in {out}\n', flush=True)

    log = (out / 'launch.log').open('wb')
    launch = subprocess.Popen(['autopilot', 'launch', str(ROOT / 'launch' / 'demo.launch.yaml'),
                               f'data_dir:={out / "data"}', f'journal_dir:={out / "journal"}',
                               f'gui:={"true" if args.gui else "false"}'],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    rclpy.init()
    node = Node('demo_driver')
    ex = make_executor(context=node.context)
    rigs = {p: Rig(p, s) for p, s in PILOTS.items()}
    for rig in rigs.values():
        node.create_subscription(TrialData, f'/{rig.pilot}/trials', lambda d, r=rig: on_trial(r, d), qos.TRIALS,
                                 raw=True)
        node.create_subscription(TrialAck, f'/{rig.pilot}/trial_acks',
                                 lambda m, r=rig: r.acked.update((m.session_id, n) for n in m.trial_numbers),
                                 qos.TRIALS)
    node.create_subscription(PilotRegistry, '/terminal/pilots', lambda m: on_registry(rigs, m), qos.STATUS)
    ok = False
    try:
        ok = run(node, ex, rigs, args.duration, launch)
    except DemoError as exc:
        print(f'\ndemo: {exc}', file=sys.stderr)
    finally:
        node.destroy_node()
        ex.shutdown()
        rclpy.shutdown()
        stop_launch(launch)
        log.close()
    if ok:
        ok = report(rigs, out)
    else:
        print('--- last lines of the launch log ---', file=sys.stderr)
        print('\n'.join((out / 'launch.log').read_text(errors='replace').splitlines()[-30:]), file=sys.stderr)
    print('demo: ' + ('OK' if ok else 'FAILED'))
    return 0 if ok else 1


class DemoError(RuntimeError):
    pass


def on_trial(rig: Rig, data: bytes) -> None:
    msg = deserialize_message(data, TrialData)
    rig.trials.setdefault((msg.session_id, msg.trial_number), msg)
    rig.raw.setdefault((msg.session_id, msg.trial_number), data)


def on_registry(rigs: dict[str, Rig], msg: PilotRegistry) -> None:
    for entry in msg.pilots:
        rig = rigs.get(entry.pilot)
        if rig is not None:
            rig.online, rig.status = entry.online, entry.last_status
            rig.ran |= entry.last_status.state == PilotStatus.STATE_RUNNING


def call(node: Node, ex: Any, srv_type: Any, name: str, request: Any) -> Any:
    client = node.create_client(srv_type, name)
    if not client.wait_for_service(timeout_sec=30):
        raise DemoError(f'{name} is not available: did the terminal start? (see launch.log)')
    future = client.call_async(request)
    if not spin_until_future(node, future, 30, ex):
        raise DemoError(f'{name}: no answer within 30 s')
    resp = future.result()
    if not resp.success:
        raise DemoError(f'{name}: {resp.message}')
    print(f'    {resp.message}', flush=True)
    return resp


def run(node: Node, ex: Any, rigs: dict[str, Rig], duration: float, launch: subprocess.Popen[bytes]) -> bool:
    print('--> starting the terminal and two simulated pilots (autopilot launch launch/demo.launch.yaml)', flush=True)
    if not spin(node, ex, until=lambda: all(r.online for r in rigs.values()) or launch.poll() is not None,
                timeout_sec=90) or launch.poll() is not None:
        raise DemoError('the pilots did not come online within 90 s')
    print('--> creating the subjects, assigning the protocol, starting the sessions', flush=True)
    for rig in rigs.values():
        call(node, ex, CreateSubject, '/terminal/create_subject',
             CreateSubject.Request(subject=rig.subject, biography_json=json.dumps(BIOGRAPHIES[rig.subject])))
        call(node, ex, AssignProtocol, '/terminal/assign_protocol',
             AssignProtocol.Request(subject=rig.subject, protocol=PROTOCOL, step=0))
    for rig in rigs.values():
        call(node, ex, StartSession, '/terminal/start_session',
             StartSession.Request(subject=rig.subject, pilot=rig.pilot, max_duration_s=duration))

    print(f'--> training for {duration:.0f} s', flush=True)
    t0 = time.monotonic()
    deadline = t0 + duration + 60
    next_line = t0
    tty = sys.stdout.isatty()
    while time.monotonic() < deadline:
        spin(node, ex, timeout_sec=0.25)
        done = all(r.ran and r.status is not None and r.status.state == PilotStatus.STATE_IDLE for r in rigs.values())
        if time.monotonic() >= next_line or done:
            line = progress(rigs, time.monotonic() - t0, duration)
            print(('\r' + line) if tty else line, end='' if tty else '\n', flush=True)
            next_line = time.monotonic() + (1.0 if tty else 10.0)
        if done:
            break
        if launch.poll() is not None:
            raise DemoError('the launch stopped during the sessions')
    else:
        raise DemoError('the sessions did not end in time')
    if tty:
        print()
    seen = {(r.pilot, *k) for r in rigs.values() for k in r.trials}
    spin(node, ex, timeout_sec=15,
         until=lambda: all(set(r.trials) <= r.acked for r in rigs.values()))
    missing = [k for k in seen if k[1:] not in rigs[k[0]].acked]
    if missing:
        raise DemoError(f'{len(missing)} trial(s) not acknowledged by the terminal: {sorted(missing)[:5]}')
    print(f'--> {len(seen)} trials reported and acknowledged; stopping the launch', flush=True)
    return True


def progress(rigs: dict[str, Rig], elapsed: float, duration: float) -> str:
    parts = [f'{min(elapsed, duration):5.1f}/{duration:.0f} s']
    for rig in rigs.values():
        correct, scored = rig.scored()
        # The heartbeat's step resets when a session ends: the last trial's step is where the subject got.
        last = max(rig.trials.values(), key=lambda t: t.header.stamp.sec * 10**9 + t.header.stamp.nanosec,
                   default=None)
        step = f'step {last.step}' if last is not None else 'step 0'
        acc = f'{correct / scored:4.0%}' if scored else '  - '
        parts.append(f'{rig.pilot}: {len(rig.trials):3d} trials, {acc} correct, {step}')
    return ' | '.join(parts)


def report(rigs: dict[str, Rig], out: Path) -> bool:
    """Check the HDF5 files against what the pilots reported, export MCAP and PNG, print the results."""
    from autopilot_terminal.bag import export_mcap
    from autopilot_terminal.storage import SubjectReader
    from autopilot_terminal.summary import summary_png

    ok = True
    rows = []
    files: list[tuple[str, Path]] = []
    for rig in rigs.values():
        path = out / 'data' / f'{rig.subject}.h5'
        with SubjectReader(path) as reader:
            stored: dict[tuple[str, int], int] = {}
            bag_trials: dict[tuple[str, int], bytes] = {}
            graduations = []
            for sid in reader.sessions():
                for n in reader.trials(sid)['trial_number']:
                    stored[(sid, int(n))] = stored.get((sid, int(n)), 0) + 1
                for m in reader.messages(sid, [f'/{rig.pilot}/trials']):
                    msg = deserialize_message(m.data, TrialData)
                    bag_trials.setdefault((msg.session_id, msg.trial_number), m.data)
                steps = reader.steps(sid)
                graduations += [f'{int(a)}' for a in steps['after_trial']]
                gpio = len(reader.events(sid, 'gpio')['stamp_ns'])
            final_step = [h for h in reader.history() if h['kind'] in ('assign', 'step')][-1]
        seen = set(rig.trials)
        dup = sorted(k for k, c in stored.items() if c > 1)
        lost = sorted(seen - set(stored))
        bytes_differ = sorted(k for k in seen if k in bag_trials and bag_trials[k] != rig.raw[k])
        if dup or lost or bytes_differ or not seen:
            ok = False
            print(f'demo: {rig.subject}: {len(lost)} trials missing from the file, {len(dup)} stored twice, '
                  f'{len(bytes_differ)} with different bytes in the bag', file=sys.stderr)
        mcap = out / f'{rig.subject}.mcap'
        export_mcap(path, mcap, force=True)
        png = summary_png(path, out / f'{rig.subject}_summary.png')
        files += [(f'{rig.subject} subject file (HDF5)', path), (f'{rig.subject} last session bag (MCAP)', mcap),
                  (f'{rig.subject} summary plot', png)]
        correct, scored = rig.scored()
        rows.append((rig.subject, rig.pilot, str(len(seen)), f'{len(stored)} ({len(dup)} dup)',
                     f'{correct / scored:.0%}' if scored else '-',
                     ', '.join(graduations) or 'no', f'{final_step["step"]}: {final_step["step_name"]}', str(gpio)))
    header = ('subject', 'pilot', 'trials reported', 'in HDF5', 'correct', 'graduated after trial', 'now at step',
              'GPIO events')
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print('\n=== results ===')
    for r in [header, *rows]:
        print('  '.join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print('\n=== files ===')
    width = max(len(k) for k, _ in files)
    for k, p in files:
        print(f'{k:<{width}}  {p}')
    print('\nLook inside: autopilot subject show mouse_1 --data-dir', out / 'data',
          '| autopilot bag info', files[0][1], '| Foxglove opens the .mcap files')
    return ok


def stop_launch(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C the launcher as a user would, and wait for it to stop its children."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    timer = threading.Timer(30, lambda: proc.poll() is None and os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    proc.wait()
    timer.cancel()


if __name__ == '__main__':
    sys.exit(main())
