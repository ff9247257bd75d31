"""``autopilot subject`` and ``autopilot session`` against a real terminal process (and, once, a simulated rig).

Each test runs on its own ROS_DOMAIN_ID (conftest) with its own terminal: data_dir in the test's tmp
directory, protocol_dir the repository's protocols/. Calls that talk to the terminal run the CLI as a user
does (a subprocess; independent ones at once with ``cli_many``, as each spends most of its time in
discovery). Calls that need no ROS graph (argument checks, reading files with ``--data-dir``) run the same
``main()`` in this process: a CLI process costs ~0.7 s of CPU, and the machine has two cores.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conftest import cli, cli_many, error_line, ok
from test_pilot import start_rig

from autopilot_cli.main import main as autopilot_main

ROOT = Path(__file__).resolve().parent.parent
TERMINAL = str(ROOT / 'install' / 'autopilot_terminal' / 'lib' / 'autopilot_terminal' / 'terminal')
START_HINT = '`autopilot launch launch/terminal.launch.yaml`'


def local(*args: str) -> subprocess.CompletedProcess[str]:
    """``autopilot ARGS`` in this process (only for calls that need no ROS graph), as a CompletedProcess."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = autopilot_main(list(args))
    return subprocess.CompletedProcess(['autopilot', *args], rc, out.getvalue(), err.getvalue())


def start_terminal(procs, data_dir: Path):
    data_dir.mkdir(exist_ok=True)
    term = procs([TERMINAL, '--ros-args', '-p', f'data_dir:={data_dir}', '-p', f'protocol_dir:={ROOT / "protocols"}'],
                 name='terminal')
    term.wait_for_output('subject files in')
    return term


def section(text: str, name: str) -> list[str]:
    """The indented lines under ``name:`` in ``subject show`` output."""
    lines = text.splitlines()
    start = lines.index(f'{name}:') + 1
    out = []
    for line in lines[start:]:
        if not line.startswith('  '):
            break
        out.append(line[2:])
    return out


def columns(lines: list[str]) -> list[dict[str, str]]:
    """A table (header line first, columns two or more spaces apart) as dicts."""
    if not lines:
        return []
    header = re.split(r'\s{2,}', lines[0].strip())
    return [dict(zip(header, re.split(r'\s{2,}', line.strip()), strict=True)) for line in lines[1:]]


def test_argument_errors(tmp_path):
    """Bad input the CLI refuses before asking anyone: one line, exit 1."""
    cases = {
        ('subject', 'create', 'bad/name'): "subject 'bad/name' is not a valid identifier",
        ('subject', 'create', 'x', '--biography', '{}', '--sex', 'F'): 'either --biography or --sex',
        ('subject', 'create', 'x', '--biography', '{"species":'): '--biography is not valid JSON',
        ('subject', 'create', 'x', '--biography', '[1]'): '--biography must be a JSON object',
        ('subject', 'create', 'x', '--dob', '31.05.2024'): 'expected a date YYYY-MM-DD',
        ('subject', 'params', 'x', 'n:={a: 1}'): 'a parameter value is a bool, integer, double, string',
        ('subject', 'params', 'x', 'n:=[1, a]'): 'a list parameter holds one type',
        ('subject', 'params', 'x', 'n:='): 'no value; to remove an override use --remove n',
        ('subject', 'params', 'x', 'n:=1', '--remove', 'n'): 'n: both set and removed',
        ('subject', 'params', 'x'): 'nothing to do',
        ('subject', 'show', 'x', '--data-dir', str(tmp_path / 'nowhere')):
            f'data directory {tmp_path / "nowhere"} (from --data-dir) does not exist; give the directory of the '
            'subject files with --data-dir DIR or set $AUTOPILOT_DATA_DIR',
    }
    for args, message in cases.items():
        line = error_line(local(*args))
        assert line.startswith('autopilot: error: ') and message in line, (args, line)


def test_subject_admin_and_errors(procs, ros_env, tmp_path):
    data = tmp_path / 'data'
    term = start_terminal(procs, data)
    bad_protocol = tmp_path / 'broken.yaml'
    bad_protocol.write_text('name: broken\nsteps:\n  - name: one\n    task: 2afc: x\n')
    # Valid YAML the pilot would refuse (an unknown task): refused at assignment, by the pilot's own checks.
    no_task = tmp_path / 'no_task.yaml'
    no_task.write_text('name: no_task\nsteps:\n  - name: one\n    task: 2afc\n  - name: two\n    task: nope\n')

    made, rat = cli_many(
        ros_env,
        ('subject', 'create', 'mouse', '--species', 'Mus musculus', '--sex', 'F', '--dob', '2024-05-31',
         '--genotype', 'wt'),
        ('subject', 'create', 'rat', '--biography', json.dumps({'species': 'Rattus norvegicus', 'weight_g': 310})))
    assert ok(made).strip() == f'created subject mouse ({data / "mouse.h5"})'
    assert ok(rat).strip() == f'created subject rat ({data / "rat.h5"})'

    # The terminal's refusals (one line each, exit 1), and the first assignment: none of them changes mouse.
    dup, ghost_assign, no_proto, unknown_proto, yaml_error, pilot_refuses, no_pilot, assigned = cli_many(
        ros_env,
        ('subject', 'create', 'mouse'),
        ('subject', 'assign', 'ghost', '2afc_demo'),
        ('subject', 'step', 'rat', '1'),
        ('subject', 'assign', 'mouse', 'no_such_protocol'),
        ('subject', 'assign', 'mouse', str(bad_protocol)),
        ('subject', 'assign', 'mouse', str(no_task)),
        ('session', 'start', 'mouse', 'ghost_rig'),
        ('subject', 'assign', 'mouse', '2afc_demo'))
    assert "subject 'mouse' exists already" in error_line(dup)
    assert "unknown subject 'ghost'" in error_line(ghost_assign)
    assert 'the subject has no protocol' in error_line(no_proto)
    line = error_line(unknown_proto)
    assert "unknown protocol 'no_such_protocol'" in line and 'available: 2afc_demo, 2afc_training' in line
    assert f'{bad_protocol}:4: not valid YAML' in error_line(yaml_error)
    assert f"{no_task}:6: steps[1].task: unknown task 'nope'" in error_line(pilot_refuses)
    assert "unknown pilot 'ghost_rig'" in error_line(no_pilot)
    assert ok(assigned).strip() == 'mouse: protocol 2afc_demo (2 steps), at step 0 (2afc with correction)'
    line = error_line(local('subject', 'show', 'ghost', '--data-dir', str(data)))
    assert f"unknown subject 'ghost': no file {data / 'ghost.h5'} (subjects there: mouse, rat)" in line
    assert '`autopilot subject create ghost`' in line

    # re-assign at a step, change the step, set and remove parameter overrides
    assert 'protocol 2afc_training (3 steps), at step 1 (2afc with correction)' in \
        ok(cli(ros_env, 'subject', 'assign', 'mouse', '2afc_training', '--step', '1'))
    step, out_of_range, params = cli_many(
        ros_env,
        ('subject', 'step', 'mouse', '2', '--reason', 'ready early'),
        ('subject', 'step', 'mouse', '3'),
        ('subject', 'params', 'mouse', 'reward_ul:=4.5', 'correction_trials:=false', 'bias_window:=30',
         'note:=left port sticky'))
    assert 'mouse: step 1 (2afc with correction) -> 2 (2afc)' in ok(step)
    assert 'step 3 does not exist: the protocol has steps 0..2 (0: free water' in error_line(out_of_range)
    assert "mouse: set ['bias_window', 'correction_trials', 'note', 'reward_ul']" in ok(params)
    ok(cli(ros_env, 'subject', 'params', 'mouse', 'iti_s:=0.5', '--remove', 'note'))

    # list asks the running terminal for its data_dir; show reads the file
    rows = columns(ok(cli(ros_env, 'subject', 'list')).splitlines())
    assert rows == [{'subject': 'mouse', 'protocol': '2afc_training', 'step': '2: 2afc', 'sessions': '0',
                     'trials': '0', 'last session': '-'},
                    {'subject': 'rat', 'protocol': '-', 'step': '-', 'sessions': '0', 'trials': '0',
                     'last session': '-'}]
    text = ok(local('subject', 'show', 'mouse', '--data-dir', str(data)))
    assert text.startswith(f'subject: mouse\nfile: {data / "mouse.h5"}\ncreated: ')
    assert section(text, 'biography') == ['dob: 2024-05-31', 'genotype: wt', 'sex: F', 'species: Mus musculus']
    assert 'protocol: 2afc_training (assigned ' in text and f'file {ROOT / "protocols" / "2afc_training.yaml"})' in text
    assert 'step: 2: 2afc (steps 0: free water, 1: 2afc with correction, 2: 2afc)' in text
    assert section(text, 'parameters') == ['bias_window: 30', 'correction_trials: false', 'iti_s: 0.5',
                                           'reward_ul: 4.5']
    history = columns(section(text, 'history'))
    assert [h['kind'] for h in history[:3]] == ['created', 'assign', 'assign'] and len(history) == 6, history
    assert history[0]['detail'].startswith('biography {"dob": "2024-05-31"')
    assert history[1]['detail'].startswith('2afc_demo at step 0 (2afc with correction); file ')
    # The step and the first parameters were sent at once: either may be stored first.
    assert {h['kind']: h['detail'] for h in history[3:5]} == {
        'step': '1 (2afc with correction) -> 2 (2afc): ready early (by terminal)',
        'parameters': 'set bias_window=30, correction_trials=false, note="left port sticky", reward_ul=4.5 '
                      '(by terminal)'}
    assert (history[5]['kind'], history[5]['detail']) == ('parameters', 'set iti_s=0.5; removed note (by terminal)')
    assert text.rstrip().endswith('sessions: none')
    rat_text = ok(local('subject', 'show', 'rat', '--data-dir', str(data)))
    assert section(rat_text, 'biography') == ['species: Rattus norvegicus', 'weight_g: 310']
    assert term.popen.poll() is None, term.output()  # no refusal took the terminal down


def test_without_terminal(ros_env, tmp_path):
    """Writes need the terminal and say how to start it; reads fall back to $AUTOPILOT_DATA_DIR."""
    empty = tmp_path / 'empty'
    empty.mkdir()
    env = dict(ros_env, AUTOPILOT_DATA_DIR=str(empty))
    create, start, pilots, listed = cli_many(
        env,
        ('subject', 'create', 'mouse', '--spin-time', '1'),
        ('session', 'start', 'mouse', 'rig', '--spin-time', '1'),
        ('session', 'pilots', '--spin-time', '1'),
        ('subject', 'list', '--spin-time', '1'))
    for r in (create, start, pilots):
        assert error_line(r) == (f'autopilot: error: no terminal is running on ROS_DOMAIN_ID={ros_env["ROS_DOMAIN_ID"]}'
                                 f': start it with {START_HINT} (none discovered within 1 s)')
    assert ok(listed) == '' and listed.stderr.strip() == f'no subject files in {empty}'


def test_session_on_simulated_rig(procs, ros_env, tmp_path):
    data = tmp_path / 'data'
    start_terminal(procs, data)
    with ThreadPoolExecutor(1) as pool:  # the subject is set up while the rig starts
        setup = pool.submit(lambda: [ok(cli(ros_env, 'subject', 'create', 'mouse', '--species', 'Mus musculus')),
                                     ok(cli(ros_env, 'subject', 'assign', 'mouse', '2afc_demo'))])
        start_rig(procs, tmp_path, 'rig')
        setup.result()

    # The terminal finds the pilot by its heartbeat (1 Hz scan): wait until the registry says it is online.
    deadline = time.monotonic() + 20
    while True:
        rows = columns(ok(cli(ros_env, 'session', 'pilots')).splitlines())
        if any(r['pilot'] == 'rig' and r['online'] == 'yes' for r in rows) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [(r['pilot'], r['online'], r['state']) for r in rows] == [('rig', 'yes', 'idle')], rows

    assert ok(cli(ros_env, 'session', 'start', 'mouse', 'rig', '--max-trials', '5')).strip() == \
        'mouse on rig: 2afc_demo step 0 (2afc with correction)'
    deadline = time.monotonic() + 60
    while True:
        text = ok(local('subject', 'show', 'mouse', '--data-dir', str(data)))
        sessions = columns(section(text, 'sessions')) if 'sessions:' in text.splitlines() else []
        if (sessions and sessions[0]['trials'] == '5' and sessions[0]['state'] == 'ended') \
                or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert len(sessions) == 1, text
    s = sessions[0]
    assert (s['pilot'], s['task'], s['trials'], s['state']) == ('rig', '2afc', '5', 'ended'), text
    assert re.fullmatch(r'0\.\d\d|1\.00', s['correct']) and re.fullmatch(r'0:00:\d\d', s['duration']), s

    pilots, listed, stop = cli_many(ros_env, ('session', 'pilots'), ('subject', 'list', '--data-dir', str(data)),
                                    ('session', 'stop', 'rig'))
    row = columns(ok(pilots).splitlines())[0]
    # An idle pilot's heartbeat still carries its last session's trial count.
    assert (row['pilot'], row['online'], row['state'], row['subject'], row['trials']) == \
        ('rig', 'yes', 'idle', '-', '5'), row
    assert re.fullmatch(r'\d+\.\ds', row['last seen']) and row['host'] != '-', row
    listing = columns(ok(listed).splitlines())
    assert [(r['subject'], r['protocol'], r['sessions'], r['trials']) for r in listing] == \
        [('mouse', '2afc_demo', '1', '5')], listing
    assert 'rig: no session to stop' in error_line(stop)


def test_weigh_note_rig_protocols_and_reading_through_the_terminal(procs, ros_env, tmp_path):
    """`subject list`/`show` ask the terminal (the same as reading the files); weights, notes, the roster and
    protocols go through its services."""
    data, protocols = tmp_path / 'data', tmp_path / 'protocols'
    data.mkdir()
    protocols.mkdir()
    demo = (ROOT / 'protocols' / '2afc_demo.yaml').read_text()
    (protocols / '2afc_demo.yaml').write_text(demo)
    term = procs([TERMINAL, '--ros-args', '-p', f'data_dir:={data}', '-p', f'protocol_dir:={protocols}'],
                 name='terminal')
    term.wait_for_output('subject files in')
    made, listed_protocols, shown_protocol = cli_many(
        ros_env, ('subject', 'create', 'mouse'), ('protocol', 'list'), ('protocol', 'show', '2afc_demo'))
    ok(made)
    assert columns(ok(listed_protocols).splitlines()) == [
        {'protocol': '2afc_demo', 'steps': '2', 'tasks': '2afc', 'valid': 'yes'}]
    assert ok(shown_protocol) == demo and '0: 2afc with correction (2afc)' in shown_protocol.stderr
    assert ok(cli(ros_env, 'subject', 'weigh', 'mouse', '25', '--when', 'start')).strip() == \
        'mouse: 25 g (the baseline) (start)'
    weighed, noted, unknown_rig, no_subject, assigned = cli_many(
        ros_env,
        ('subject', 'weigh', 'mouse', '23.75', '--when', 'stop', '--session', 's1'),
        ('subject', 'note', 'mouse', 'left port sticky', '--session', 's1'),
        ('subject', 'rig', 'mouse', 'rig9'),
        ('subject', 'weigh', 'ghost', '20'),
        ('subject', 'assign', 'mouse', '2afc_demo'))
    assert ok(weighed).strip() == 'mouse: 23.75 g, 95% of the baseline 25 g (stop, session s1)'
    assert ok(noted).strip() == 'mouse: note added (16 characters, session s1)'
    assert "unknown pilot 'rig9' (known: none)" in error_line(unknown_rig)
    assert "unknown subject 'ghost'" in error_line(no_subject)
    ok(assigned)
    assert ok(cli(ros_env, 'subject', 'rig', 'mouse', '--none')).strip() == 'mouse: on no rig (was none)'

    # Through the terminal and from the files: the same, but for where the file is.
    time.sleep(1.5)  # the terminal republishes its list at most once a second
    listed, shown = cli_many(ros_env, ('subject', 'list'), ('subject', 'show', 'mouse'))
    assert columns(ok(listed).splitlines()) == [{'subject': 'mouse', 'protocol': '2afc_demo',
                                                 'step': '0: 2afc with correction', 'sessions': '0', 'trials': '0',
                                                 'last session': '-'}]
    assert ok(listed) == ok(local('subject', 'list', '--data-dir', str(data)))
    text = ok(shown)
    from_files = ok(local('subject', 'show', 'mouse', '--data-dir', str(data)))
    assert text.splitlines()[1] == f'file: on the terminal of ROS_DOMAIN_ID={ros_env["ROS_DOMAIN_ID"]}'
    assert from_files.splitlines()[1] == f'file: {data / "mouse.h5"}'
    assert text.splitlines()[2:] == from_files.splitlines()[2:]
    assert 'rig: none (`autopilot subject rig SUBJECT PILOT`)' in text.splitlines()
    weights = columns(section(text, 'weights'))
    assert [(w['grams'], w['baseline'], w['when'], w['session']) for w in weights] == \
        [('25', '100%', 'start', '-'), ('23.75', '95%', 'stop', 's1')]
    history = columns(section(text, 'history'))
    # The note and the assignment were sent at once: either may be stored first.
    assert {h['kind']: h['detail'] for h in history[1:3]}['note'] == 'left port sticky (session s1)', history
    assert [h['kind'] for h in history[::3]] == ['created', 'roster'] and len(history) == 4, history
    assert history[3]['detail'] == 'no rig (was none) (by terminal)'

    # Protocols saved through the terminal: validated there, never over a file unless asked.
    mine = tmp_path / 'mine.yaml'
    mine.write_text(demo.replace('name: 2afc_demo', 'name: mine'))
    assert ok(cli(ros_env, 'protocol', 'save', 'mine', str(mine))).strip() == \
        f'saved protocol mine ({protocols / "mine.yaml"})'
    bad = tmp_path / 'bad.yaml'
    bad.write_text('name: mine\nsteps:\n  - name: one\n    task: nope\n')
    again, broken, overwritten = cli_many(
        ros_env, ('protocol', 'save', 'mine', str(mine)), ('protocol', 'save', 'mine', str(bad), '--overwrite'),
        ('protocol', 'save', 'mine', str(mine), '--overwrite'))
    assert f'{protocols / "mine.yaml"} exists already; save with overwrite' in error_line(again)
    assert f"{protocols / 'mine.yaml'}:4: steps[0].task: unknown task 'nope'" in error_line(broken)
    ok(overwritten)
    assert (protocols / 'mine.yaml').read_text() == mine.read_text()
    for args, message in {('subject', 'weigh', 'mouse', 'nan'): 'a weight is more than 0 and less than 100000',
                          ('subject', 'weigh', 'mouse', 'heavy'): 'expected a weight in grams',
                          ('subject', 'rig', 'mouse'): 'give a PILOT or --none',
                          ('subject', 'note', 'mouse', ' '): 'a note is 1-1000 characters'}.items():
        line = error_line(local(*args))
        assert line.startswith('autopilot: error: ') and message in line, (args, line)
    assert term.popen.poll() is None, term.output()
