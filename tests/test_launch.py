"""``autopilot launch``: the YAML launch format's parser, substitutions and evaluation, and real processes.

Process tests run ``tests/nodes/launch_probe.py`` as the executable ``launch_probe`` of a package
``probe_pkg`` installed into a temporary ament prefix (so ``pkg``/``exec`` lookup and ``$(find-pkg-share)``
are exercised for real); each probe prints what it was given (name, parameters, remapped topics, args,
environment) as one ``PROBE {json}`` line. Every ROS test has its own ROS_DOMAIN_ID.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import DomainLease, Proc
from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot_launch.errors import LaunchError, SubstitutionError
from autopilot_launch.evaluate import Evaluator, collect_args, describe_plan, format_args
from autopilot_launch.parser import parse_file
from autopilot_launch.substitutions import (
    Sub,
    SubContext,
    _Parser,
    parse,
    perform,
    split_cmdline,
)

ROOT = Path(__file__).resolve().parent.parent
FILES = ROOT / 'tests' / 'launch_files'
PROBE = ROOT / 'tests' / 'nodes' / 'launch_probe.py'
LAUNCH = [sys.executable, '-m', 'autopilot_cli.main', 'launch']
PROBE_LINE = re.compile(r'^\[(?P<label>[^\]]+)\] PROBE (?P<json>\{.*\})$', re.M)
STARTED = re.compile(r'\[(?P<label>[^\]]+)\]: process started with pid \[(?P<pid>\d+)\]')


# ------------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope='module')
def prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ament prefix with package ``probe_pkg``: executable ``launch_probe``, config/ and launch/."""
    root = tmp_path_factory.mktemp('prefix')
    index = root / 'share' / 'ament_index' / 'resource_index' / 'packages'
    index.mkdir(parents=True)
    (index / 'probe_pkg').write_text('')
    share = root / 'share' / 'probe_pkg'
    shutil.copytree(FILES / 'config', share / 'config')
    shutil.copytree(FILES, share / 'launch', ignore=shutil.ignore_patterns('config'))
    lib = root / 'lib' / 'probe_pkg'
    lib.mkdir(parents=True)
    exe = lib / 'launch_probe'
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} {PROBE} "$@"\n')
    exe.chmod(0o755)
    (lib / 'not_executable').write_text('')
    return root


def prefixed_env(base: dict[str, str], prefix: Path, log_dir: Path) -> dict[str, str]:
    env = dict(base)
    env['AMENT_PREFIX_PATH'] = f"{prefix}{os.pathsep}{base.get('AMENT_PREFIX_PATH', '')}"
    env['ROS_LOG_DIR'] = str(log_dir)
    return env


@pytest.fixture
def in_prefix(prefix: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """For in-process evaluation: the probe prefix on this process's AMENT_PREFIX_PATH."""
    monkeypatch.setenv('AMENT_PREFIX_PATH', f"{prefix}{os.pathsep}{os.environ.get('AMENT_PREFIX_PATH', '')}")
    return prefix


@pytest.fixture
def launch_env(ros_env: dict[str, str], prefix: Path, tmp_path: Path) -> dict[str, str]:
    env = prefixed_env(ros_env, prefix, tmp_path / 'ros_log')
    (tmp_path / 'tmp').mkdir()
    env['TMPDIR'] = str(tmp_path / 'tmp')  # a temp dir of its own: tests check that launch leaves it empty
    return env


def cli(args: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LAUNCH, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def probes(output: str) -> dict[str, dict[str, Any]]:
    """PROBE reports by fully qualified node name."""
    out = {}
    for m in PROBE_LINE.finditer(output):
        report = json.loads(m.group('json'))
        report['label'] = m.group('label')
        out[report['fqn']] = report
    return out


def started_pids(output: str) -> dict[str, int]:
    return {m.group('label'): int(m.group('pid')) for m in STARTED.finditer(output)}


def wait_until(cond: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f'timed out after {timeout} s:\n{what()}')


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie does not count: it is gone, only not yet reaped by init)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def evaluate(path: Path, tmp_path: Path, **launch_args: str):
    return Evaluator(launch_args, params_dir=str(tmp_path / 'params')).evaluate(str(path))


# ------------------------------------------------------------------------------------ substitution syntax

@pytest.mark.parametrize('text, expected', [
    ('plain', ('plain',)),
    ('', ()),
    ('$(var x)', (Sub('var', (('x',),)),)),
    ('a-$(var x)-b', ('a-', Sub('var', (('x',),)), '-b')),
    ("$(env NAME '')", (Sub('env', (('NAME',), ())),)),
    ('$(env A $(var b))', (Sub('env', (('A',), (Sub('var', (('b',),)),))),)),
    ('$(var x)/$(var y).yaml', (Sub('var', (('x',),)), '/', Sub('var', (('y',),)), '.yaml')),
    ("$(var 'a b')", (Sub('var', (('a b',),)),)),
    ('$(eval "\'$(var m)\' == \'sim\'")',
     (Sub('eval', (("'", Sub('var', (('m',),)), "' == 'sim'"),)),)),
    ('\\$(var x)', ('$(var x)',)),  # escaped: literal
    ('cost $5 (net)', ('cost $5 (net)',)),
    ('back\\\\slash', ('back\\slash',)),
    ('$(dirname)/x', (Sub('dirname'), '/x')),
])
def test_substitution_syntax(text: str, expected: tuple) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize('text, message', [
    ('$(vr x)', "unknown substitution '$(vr ...)'"),
    ('$(var x', "unterminated substitution '$(var x': missing ')'"),
    ('$(var  x)', 'empty argument'),
    ('$( var x)', "expected a substitution name after '$('"),
    ("$(var 'x)", 'unterminated quoted argument'),
    ('$(var)', '$(var) takes 1 to 2 arguments, got 0'),
    ('$(dirname x)', '$(dirname) takes 0 arguments, got 1'),
    ('$(param x)', 'does not support'),
])
def test_substitution_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(SubstitutionError) as exc:
        parse(text)
    assert message in exc.value.message


def test_substitution_values() -> None:
    ctx = SubContext({'x': 'true', 'n': '5', 'name': 'pi'}, {'HOME_X': '/h'}, '/a/b/c.launch.yaml')
    assert perform(parse('$(var name)-$(env HOME_X)-$(env NOPE dflt)-$(var nope $(var n))'), ctx) == 'pi-/h-dflt-5'
    assert perform(parse('$(dirname)|$(filename)'), ctx) == '/a/b|/a/b/c.launch.yaml'
    assert perform(parse('$(eval "\'$(var x)\' == \'true\' and $(var n) > 4")'), ctx) == 'True'
    assert perform(parse('$(not $(var x)) $(and 1 true) $(or false 0) $(equals 5 5.0) $(if $(var x) a b)'),
                   ctx) == 'false true false true a'
    first = perform(parse('$(anon probe)'), ctx)
    assert first == perform(parse('$(anon probe)'), ctx) != perform(parse('$(anon other)'), ctx)
    assert re.fullmatch(r'probe_[A-Za-z0-9_]+', first)
    with pytest.raises(SubstitutionError, match="launch argument 'nope' is not set"):
        perform(parse('$(var nope)'), ctx)
    with pytest.raises(SubstitutionError, match="environment variable 'NOPE' is not set"):
        perform(parse('$(env NOPE)'), ctx)


def test_command_lines_split_like_launch() -> None:
    ctx = SubContext({'p': '/opt/x y', 'q': 'Q'}, {})
    args = [perform(t, ctx) for t in split_cmdline(parse('--a 1 "two words" $(var p)/cfg.yaml pre$(var q) $(var q)'))]
    assert args == ['--a', '1', 'two words', '/opt/x y/cfg.yaml', 'preQ', 'Q']
    with pytest.raises(SubstitutionError, match='No closing quotation'):
        split_cmdline(parse("--name 'a $(var q)"))


# Property tests: templates rendered to text by the grammar's escaping rules parse back to themselves.
_IDENT = st.from_regex(r'[A-Za-z][A-Za-z0-9_-]{0,5}', fullmatch=True)
_CHARS = st.characters(blacklist_categories=('Cs',), blacklist_characters='\\')


def _texts(exclude: str = '') -> st.SearchStrategy[str]:
    return st.text(st.characters(blacklist_categories=('Cs',), blacklist_characters='\\' + exclude), min_size=1)


def _subs(quote: str, depth: int) -> st.SearchStrategy[Sub]:
    inner: Any = _subs(quote, depth - 1) if depth else st.nothing()
    if quote:  # inside quotes: arguments are unquoted, no spaces
        arg = st.lists(st.one_of(_texts(' '), inner), min_size=1, max_size=3)
    else:
        q = st.sampled_from(['"', "'"])
        quoted = q.flatmap(lambda c: st.tuples(st.just(c), st.lists(
            st.one_of(_texts(), _subs(c, depth - 1) if depth else st.nothing()), max_size=3)))
        arg = st.one_of(st.lists(st.one_of(_texts(' '), inner), min_size=1, max_size=3), quoted)
    return st.builds(lambda n, a: ('sub', n, a), _IDENT, st.lists(arg, max_size=3))  # type: ignore[return-value]


def _escape(text: str, specials: str) -> str:
    return ''.join('\\' + c if c in specials else c for c in text)


def _render(parts: list, mode: str, quote: str = '') -> tuple[str, tuple]:
    """(text, expected template) of generated parts.

    ``mode``: 'top' (a whole value), 'arg' (an unquoted argument), 'q' (inside a quoted argument) or
    'qarg' (an argument of a substitution inside quotes); the escapes are those the grammar needs there.
    """
    specials = {'top': '$', 'arg': '$\'"()', 'q': '$' + quote, 'qarg': '$()' + quote}[mode]
    out, expected = [], []
    for p in parts:
        if isinstance(p, str):
            out.append(_escape(p, specials))
            expected.append(p)
            continue
        _, name, args = p
        rendered, expected_args = [name], []
        for arg in args:
            if isinstance(arg, tuple):  # quoted: (quote char, fragments)
                c, frags = arg
                text, exp = _render(frags, 'q', c)
                text = c + text + c
            else:
                text, exp = _render(arg, 'arg' if mode in ('top', 'arg') else 'qarg', quote)
            rendered.append(text)
            expected_args.append(exp)
        out.append('$(' + ' '.join(rendered) + ')')
        expected.append(Sub(name, tuple(expected_args)))
    merged: list = []
    for e in expected:
        if isinstance(e, str) and merged and isinstance(merged[-1], str):
            merged[-1] += e
        else:
            merged.append(e)
    return ''.join(out), tuple(merged)


@settings(max_examples=120, deadline=None)
@given(st.lists(st.one_of(_texts(), _subs('', 2)), max_size=4))
def test_rendered_templates_parse_back(parts: list) -> None:
    text, expected = _render(parts, 'top')
    assert _Parser(text).template() == expected


@settings(max_examples=300, deadline=None)
@given(st.text(_CHARS))
def test_text_without_dollar_paren_is_literal(text: str) -> None:
    if '$(' in text:
        return
    assert parse(text) == ((text,) if text else ())


@settings(max_examples=500, deadline=None)
@given(st.text(st.sampled_from(list('$()\'" \\avr-x')), max_size=30))
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    try:
        _Parser(text).template()
    except SubstitutionError as exc:
        assert 'at character' in exc.message


# ------------------------------------------------------------------------------------- parse + evaluate

def test_rig_file_evaluates_to_ros2_launch_command_lines(in_prefix: Path, tmp_path: Path) -> None:
    plan = evaluate(FILES / 'rig.launch.yaml', tmp_path)
    by_node = {p.node: p for p in plan.processes}
    exe = str(in_prefix / 'lib' / 'probe_pkg' / 'launch_probe')
    a = by_node['/rig1/probe_a']
    p0, p1 = (f for f, _ in a.params_files)
    assert a.cmd == [exe, '--env', 'PROBE_TOP,PROBE_NODE_ENV,PROBE_GROUP', 'hello', 'two words',
                     '--ros-args', '--log-level', 'warn',
                     '--ros-args', '-r', '__node:=probe_a', '-r', '__ns:=/rig1',
                     '--params-file', p0, '--params-file', str(in_prefix / 'share/probe_pkg/config/probe.yaml'),
                     '--params-file', p1, '-r', 'chatter:=talk_x']
    assert yaml.safe_load(Path(p0).read_text()) == {'/rig1/probe_a': {'ros__parameters': {
        'gain': 2.5, 'label': 'plain text', 'count': 3, 'flags': [True, False], 'override_me': 'inline-first',
        'nested.inner': 'rig1'}}}
    assert yaml.safe_load(Path(p1).read_text()) == {'/rig1/probe_a': {'ros__parameters': {'after_file': '7'}}}
    assert a.label == 'launch_probe-1' and a.output == 'screen'
    assert a.env['PROBE_TOP'] == 'top-rig1' and a.env['PROBE_NODE_ENV'] == 'node-env'
    assert 'PROBE_GROUP' not in a.env
    assert by_node['/rig1/devices/sim/gpio'].env['PROBE_GROUP'] == 'inner'
    assert by_node['/lab/abs/absolute'].cmd[-4:] == ['-r', '__node:=absolute', '-r', '__ns:=/lab/abs']
    assert by_node['/inc/inc_rig1'].where.file.endswith('included.launch.yaml')
    anon = [p for p in plan.processes if p.node is None]
    assert [p.node_name.split('_')[0] for p in anon] == ['probe', 'other']  # type: ignore[union-attr]
    assert len(anon) == 2 and all('-r' in p.cmd and not any('__ns' in c for c in p.cmd) for p in anon)
    assert [p.label for p in plan.processes] == [f'launch_probe-{i}' for i in range(1, 7)]
    # Conditions: use_sim:=false drops the `if` node and starts the `unless` one.
    names = {p.node for p in evaluate(FILES / 'rig.launch.yaml', tmp_path, use_sim='false').processes}
    assert '/rig1/devices/sim/gpio' not in names and '/rig1/devices/never_started' in names
    assert '# [launch_probe-1] node /rig1/probe_a' in describe_plan(plan)


def test_scopes_includes_and_set_actions(in_prefix: Path, tmp_path: Path) -> None:
    write(tmp_path, 'inner.launch.yaml', """\
        launch:
        - arg: {name: level, default: 'inner-default'}
        - let: {name: leaked, value: 'from-include-$(var level)'}
        """)
    main = write(tmp_path, 'main.launch.yaml', """\
        launch:
        - let: {name: level, value: top}
        - group:
          - let: {name: level, value: scoped}
          - set_env: {name: SCOPED_ENV, value: '1'}
          - push-ros-namespace: {namespace: g}
        - group:
            scoped: false
            children:
            - let: {name: unscoped, value: 'yes'}
        - include: {file: $(dirname)/inner.launch.yaml, arg: [{name: level, value: 'given'}]}
        - set_parameter: {name: use_sim_time, value: true}
        - set_remap: {from: a, to: b}
        - append_env: {name: PROBE_PATH, value: /x}
        - append_env: {name: PROBE_PATH, value: /y, prepend: true}
        - log: {message: 'level=$(var level) unscoped=$(var unscoped) leaked=$(var leaked)'}
        - group:
            forwarding: false
            keep: [{name: kept, value: $(var level)}]
            children:
            - log: {message: 'kept=$(var kept) level=$(var level default-only)'}
        - executable: {cmd: 'true', name: t, env: [{name: E, value: '$(env SCOPED_ENV unset)'}]}
        - node: {pkg: probe_pkg, exec: launch_probe, name: n}
        """)
    plan = evaluate(main, tmp_path)
    logs = [s.message for s in plan.steps if not hasattr(s, 'cmd')]
    assert logs == ['level=given unscoped=yes leaked=from-include-given', 'kept=given level=default-only']
    t, n = plan.processes
    assert t.env['E'] == 'unset' and t.env['PROBE_PATH'] == '/y:/x'
    assert ['-p', 'use_sim_time:=true'] == n.cmd[n.cmd.index('-p'):n.cmd.index('-p') + 2]
    assert n.cmd[-2:] == ['-r', 'a:=b'] and not any(c.startswith('__ns') for c in n.cmd)


def test_parameter_types_follow_launch_ros(in_prefix: Path, tmp_path: Path) -> None:
    f = write(tmp_path, 'p.launch.yaml', """\
        launch:
        - let: {name: num, value: '100'}
        - let: {name: lst, value: '[2, 5, 8]'}
        - node:
            pkg: probe_pkg
            exec: launch_probe
            param:
            - {name: as_yaml, value: $(var num)}
            - {name: as_str, value: $(var num), type: str}
            - {name: list_sub, value: $(var lst)}
            - {name: quoted, value: "'$(var num)'"}
            - {name: literal_str, value: '100'}
            - {name: floats, value: [2., 5., 8.]}
            - {name: strs, value: ['2', '$(var num)'], type: list_of_str}
            - {name: escaped, value: ['\\a', 'b']}
            - {name: empty, value: ''}
        """)
    (spec,) = evaluate(f, tmp_path).processes
    params = yaml.safe_load(Path(spec.params_files[0][0]).read_text())['/**']['ros__parameters']
    assert params == {'as_yaml': 100, 'as_str': '100', 'list_sub': [2, 5, 8], 'quoted': '100',
                      'literal_str': '100', 'floats': [2.0, 5.0, 8.0], 'strs': ['2', '100'],
                      'escaped': ['a', 'b'], 'empty': ''}


def test_show_args_lists_args_like_ros2_launch(in_prefix: Path, tmp_path: Path) -> None:
    assert format_args(collect_args(str(FILES / 'rig.launch.yaml'))) == textwrap.dedent("""\
        Arguments (pass arguments as '<name>:=<value>'):

            'pilot':
                Namespace of the pilot
                (default: 'rig1')

            'use_sim':
                Start the simulated devices
                (default: 'true')

            'gain':
                no description given
                (default: '2.5')
        """)
    # An include whose path needs no context is followed (as ros2 launch does); its args are listed.
    # Only an argument's own condition stars it; forwarding: false groups are not listed (as ros2 launch).
    (tmp_path / 'top.launch.yaml').write_text(
        'launch:\n- include: {file: $(find-pkg-share probe_pkg)/launch/included.launch.yaml, if: "1"}\n'
        '- arg: {name: c, default: "1", if: "1"}\n'
        '- group: {forwarding: false, children: [arg: {name: hidden}]}\n')
    assert format_args(collect_args(str(tmp_path / 'top.launch.yaml'))).splitlines()[2:] == [
        "    'who':", '        Name of the included node', '', "    'c':*", '        no description given',
        "        (default: '1')", '', '* argument(s) which are only used if specific conditions occur']


# ------------------------------------------------------------------------------------------- bad files

BAD_FILES = [
    # (name, file text, line, key, words in the message)
    ('unknown_action', """\
        launch:
        - arg: {name: a, default: x}
        - nod:
            pkg: probe_pkg
        """, 3, 'nod', ["unknown action 'nod'", "did you mean 'node'?"]),
    ('unknown_key', """\
        launch:
        - node:
            pkg: probe_pkg
            exe: launch_probe
        """, 4, 'node.exe', ["unknown key 'exe' in 'node'", "did you mean 'exec'?", 'valid keys of node: args,']),
    ('missing_required', """\
        launch:
        - node: {pkg: probe_pkg, name: x}
        """, 2, 'node', ["'node' needs the attribute 'exec'"]),
    ('bad_substitution', """\
        launch:
        - node:
            pkg: probe_pkg
            exec: launch_probe
            name: $(vr x)
        """, 5, 'node.name', ["unknown substitution '$(vr ...)'", "did you mean 'var'?"]),
    ('unterminated', """\
        launch:
        - let: {name: a, value: 'x'}
        - let:
            name: b
            value: $(var a
        """, 5, 'let.value', ["missing ')'"]),
    ('undefined_var', """\
        launch:
        - node:
            pkg: probe_pkg
            exec: launch_probe
            namespace: $(var robot)
        """, 5, 'node.namespace', ["launch argument 'robot' is not set", 'robot:=VALUE']),
    ('required_arg', """\
        launch:
        - arg: {name: robot, description: the robot}
        """, 2, 'arg', ["required launch argument 'robot' was not provided", 'robot:=VALUE  (the robot)']),
    ('malformed_yaml', """\
        launch:
        - node:
            pkg: probe_pkg
           exec: launch_probe
        """, 4, '', ['malformed YAML']),
    ('missing_include', """\
        launch:
        - include: {file: other.launch.yaml}
        """, 2, 'include.file', ['included launch file not found', "file: '$(dirname)/other.launch.yaml'"]),
    ('missing_package', """\
        launch:
        - node: {pkg: no_such_pkg, exec: x}
        """, 2, 'node.pkg', ["package 'no_such_pkg' not found"]),
    ('missing_executable', """\
        launch:
        - node: {pkg: probe_pkg, exec: nope}
        """, 2, 'node.exec', ["executable 'nope' not found in package 'probe_pkg'",
                              "executables of 'probe_pkg': launch_probe"]),
    ('bool_not_string', """\
        launch:
        - node: {pkg: probe_pkg, exec: launch_probe, respawn: true}
        """, 2, 'node.respawn', ["'respawn' of 'node' must be a string", "quote it: respawn: 'true'"]),
    ('int_not_float', """\
        launch:
        - node:
            pkg: probe_pkg
            exec: launch_probe
            respawn_delay: 2
        """, 5, 'node.respawn_delay', ['must be a float', 'write respawn_delay: 2.0']),
    ('bad_condition', """\
        launch:
        - node: {pkg: probe_pkg, exec: launch_probe, if: 'maybe'}
        """, 2, 'node.if', ["condition evaluates to 'maybe'"]),
    ('mapping_param', """\
        launch:
        - node:
            pkg: probe_pkg
            exec: launch_probe
            param:
            - name: pid
              value: {kp: 1.0}
        """, 7, 'node.param[0].value', ['a parameter value cannot be a mapping', 'nest parameters']),
    ('no_launch_root', """\
        nodes:
        - node: {pkg: probe_pkg, exec: launch_probe}
        """, 1, '', ["exactly one top-level key, 'launch'"]),
    ('duplicate_key', """\
        launch:
        - node:
            pkg: probe_pkg
            exec: launch_probe
            pkg: other
        """, 5, '', ["duplicate key 'pkg' (first at line 3)"]),
    ('bad_output', """\
        launch:
        - node: {pkg: probe_pkg, exec: launch_probe, output: scren}
        """, 2, 'node.output', ["output 'scren' is not one of", "did you mean 'screen'?"]),
    ('bad_namespace', """\
        launch:
        - node: {pkg: probe_pkg, exec: launch_probe, namespace: '9lives'}
        """, 2, 'node.namespace', ["namespace '/9lives' is invalid"]),
    ('unsupported_action', """\
        launch:
        - timer: {period: 1.0, children: []}
        """, 2, 'timer', ['ros2 launch action that autopilot launch does not support']),
]


@pytest.mark.parametrize('name, text, line, key, words', BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_files_name_file_line_and_key(in_prefix: Path, tmp_path: Path, name: str, text: str, line: int,
                                          key: str, words: list[str]) -> None:
    path = write(tmp_path, f'{name}.launch.yaml', text)
    with pytest.raises(LaunchError) as exc:
        evaluate(path, tmp_path)
    message = str(exc.value)
    assert message.startswith(f'{path}:{line}: ' + (f'{key}: ' if key else '')), message
    for w in words:
        assert w in message, message


def test_error_in_included_file_shows_the_include_chain(in_prefix: Path, tmp_path: Path) -> None:
    inner = write(tmp_path, 'inner.launch.yaml', 'launch:\n- node: {pkg: probe_pkg, exec: launch_probe, nme: x}\n')
    outer = write(tmp_path, 'outer.launch.yaml', 'launch:\n- group:\n  - include: {file: $(dirname)/inner.launch.yaml}\n')
    with pytest.raises(LaunchError) as exc:
        evaluate(outer, tmp_path)
    assert str(exc.value).splitlines()[0] == f"{inner}:2: node.nme: unknown key 'nme' in 'node'"
    assert f'(included from {outer}:3)' in str(exc.value)


def test_parse_is_static_and_needs_no_packages(tmp_path: Path) -> None:
    # Parsing checks schema and syntax only: a file naming packages that do not exist still parses.
    lf = parse_file(str(write(tmp_path, 'ok.launch.yaml', 'launch:\n- node: {pkg: not_here, exec: $(var x)}\n')))
    assert len(lf.actions) == 1


# ------------------------------------------------------------------------------------------- the CLI

def test_cli_bad_file_starts_nothing(launch_env: dict[str, str], tmp_path: Path) -> None:
    pid_file = tmp_path / 'pids'
    path = write(tmp_path, 'bad.launch.yaml', f"""\
        launch:
        - node: {{pkg: probe_pkg, exec: launch_probe, args: '--pid-file {pid_file}'}}
        - node:
            pkg: probe_pkg
            exec: launch_probe
            name: $(var undefined_thing)
        """)
    res = cli([str(path)], env=launch_env)
    assert res.returncode == 1
    assert f"autopilot: error: {path}:6: node.name: launch argument 'undefined_thing' is not set" in res.stderr
    assert 'process started' not in res.stdout and not pid_file.exists()
    res = cli([str(path), 'undefined_thing'], env=launch_env)
    assert res.returncode == 1 and "malformed launch argument 'undefined_thing'" in res.stderr


def test_cli_show_args_print_and_package_mode(launch_env: dict[str, str], prefix: Path) -> None:
    res = cli(['-s', str(FILES / 'rig.launch.yaml')], env=launch_env)
    assert res.returncode == 0 and res.stdout.startswith("Arguments (pass arguments as '<name>:=<value>'):\n\n"
                                                         "    'pilot':\n        Namespace of the pilot\n"
                                                         "        (default: 'rig1')\n")
    res = cli(['probe_pkg', 'rig.launch.yaml', 'pilot:=r2', 'pilto:=r3', '--print'], env=launch_env)
    assert res.returncode == 0, res.stderr
    assert "launch argument 'pilto' was given but no arg declares it" in res.stderr
    assert '# [launch_probe-1] node /r2/probe_a' in res.stdout
    exe = prefix / 'lib' / 'probe_pkg' / 'launch_probe'
    assert f"{exe} --ros-args -r __node:=inc_r2 -r __ns:=/inc\n" in res.stdout
    # Its parameter files are shown, not written: nothing is left in the temp dir nor the log dir.
    assert '.params-0.yaml:' in res.stdout
    assert list(Path(launch_env['TMPDIR']).iterdir()) == []
    assert not Path(launch_env['ROS_LOG_DIR']).exists() or not any(Path(launch_env['ROS_LOG_DIR']).rglob('*.yaml'))


def test_process_that_dies_at_start_is_reported(launch_env: dict[str, str], tmp_path: Path) -> None:
    res = cli([str(FILES / 'dies.launch.yaml')], env=launch_env, timeout=30)
    assert res.returncode == 1, res.stdout + res.stderr
    out = res.stdout
    assert re.search(r'\[ERROR\] \[fragile-1\]: process has died \[pid \d+, exit code 3, cmd .*launch_probe '
                     r"--die 3 --lines 12'\] during startup", out), out
    report = out[out.index('its last 10 output line(s):'):]
    assert '    | probe line 11' in report and '    | probe dying on purpose' in report
    assert 'probe line 1\n' not in report
    assert '[INFO] [quick-2]: process has finished cleanly' in out
    # output: log sent fragile's stdout to the log file only; its stderr also to the screen.
    assert '[fragile-1] probe line 0' not in out and '[fragile-1] probe dying on purpose' in out
    log = next((tmp_path / 'ros_log').glob('*/launch.log')).read_text()
    assert '[fragile-1] probe line 0' in log
    ok = write(tmp_path, 'ok.launch.yaml', "launch:\n- executable: {cmd: 'true'}\n- executable: {cmd: 'echo hi', output: screen}\n")
    res = cli([str(ok)], env=launch_env, timeout=30)
    assert res.returncode == 0 and '[echo-2] hi' in res.stdout


# ------------------------------------------------------------------------------------------- real ROS

@pytest.fixture(scope='module')
def rig_run(prefix: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, dict]]:
    """rig.launch.yaml run once on a private domain: (output, exit code after SIGINT, PROBE reports)."""
    lease = DomainLease()
    tmp = tmp_path_factory.mktemp('rig')
    env = prefixed_env(dict(os.environ), prefix, tmp / 'ros_log')
    (tmp / 'tmp').mkdir()
    env.update(ROS_DOMAIN_ID=str(lease.domain), ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
               RCUTILS_COLORIZED_OUTPUT='0', TMPDIR=str(tmp / 'tmp'))
    proc = Proc([*LAUNCH, str(FILES / 'rig.launch.yaml')], env, tmp / 'launch.log')
    try:
        wait_until(lambda: len(probes(proc.output())) == 6, 60, proc.output)
        pids = started_pids(proc.output())
        proc.signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
        assert not [p for p in pids.values() if alive(p)], 'children outlived the launcher'
        assert list((tmp / 'tmp').iterdir()) == [], 'the run left files in the temp dir'
        yield proc.output(), rc, probes(proc.output())
    finally:
        proc.stop()
        lease.release()


def test_namespaces_combine(rig_run: tuple[str, int, dict]) -> None:
    _, _, reports = rig_run
    assert {'/rig1/probe_a', '/rig1/devices/sim/gpio', '/lab/abs/absolute', '/inc/inc_rig1'} <= set(reports)
    assert not any('never_started' in fqn for fqn in reports)  # unless: $(var use_sim)


def test_parameters_inline_and_from_file_reach_the_node(rig_run: tuple[str, int, dict]) -> None:
    params = rig_run[2]['/rig1/probe_a']['params']
    assert params == {'gain': 2.5, 'label': 'plain text', 'count': 3, 'flags': [True, False],
                      'nested.inner': 'rig1', 'from_file': 42, 'override_me': 'from-file', 'after_file': '7'}


def test_remaps_args_ros_args_and_env(rig_run: tuple[str, int, dict]) -> None:
    a = rig_run[2]['/rig1/probe_a']
    assert a['topics'] == {'chatter': '/rig1/talk_x', '~/private': '/rig1/probe_a/private', '/abs': '/abs'}
    assert a['args'] == ['--env', 'PROBE_TOP,PROBE_NODE_ENV,PROBE_GROUP', 'hello', 'two words']
    assert a['log_level'] == 30  # --ros-args --log-level warn
    assert a['env'] == {'PROBE_TOP': 'top-rig1', 'PROBE_NODE_ENV': 'node-env', 'PROBE_GROUP': None}
    assert rig_run[2]['/rig1/devices/sim/gpio']['env'] == {'PROBE_GROUP': 'inner'}


def test_anon_names_are_unique_and_output_is_prefixed(rig_run: tuple[str, int, dict]) -> None:
    output, rc, reports = rig_run
    anon = sorted(fqn for fqn in reports if fqn.count('/') == 1)
    assert len(anon) == 2 and anon[0].startswith('/other_') and anon[1].startswith('/probe_')
    assert reports['/probe_' + anon[1][7:]]['env'] == {'PROBE_GROUP': None}  # the group's env did not leak
    labels = {r['label'] for r in reports.values()}
    assert labels == {f'launch_probe-{i}' for i in range(1, 7)}
    assert rc == 0 and output.count('process has finished cleanly') == 6


def test_ctrl_c_stops_every_child(procs: Callable[..., Proc], launch_env: dict[str, str], rclpy_context: Any,
                                  tmp_path: Path) -> None:
    from rclpy.node import Node

    launcher = procs([*LAUNCH, str(FILES / 'stop.launch.yaml')], env=launch_env, name='launch')
    launcher.wait_for_output('PROBE', timeout=30)
    node = Node('stop_test', context=rclpy_context)
    try:  # the ROS graph sees both nodes under their namespaces
        wait_until(lambda: {('one', '/stop_a'), ('two', '/stop_b')} <= set(node.get_node_names_and_namespaces()),
                   20, lambda: str(node.get_node_names_and_namespaces()))
    finally:
        node.destroy_node()
    pids = started_pids(launcher.output())
    assert len(pids) == 2 and all(alive(p) for p in pids.values())
    launcher.signal(signal.SIGINT)
    assert launcher.wait(timeout=20) == 0
    assert not [p for p in pids.values() if alive(p)]
    out = launcher.output()
    assert 'SIGINT received: stopping 2 process(es)' in out
    # output: log kept the second probe's stdout off the screen, in launch.log
    assert '"/stop_b/two"' not in out
    assert '"/stop_b/two"' in next((tmp_path / 'ros_log').glob('*/launch.log')).read_text()


def test_child_ignoring_sigint_gets_sigterm(procs: Callable[..., Proc], launch_env: dict[str, str]) -> None:
    launcher = procs([*LAUNCH, str(FILES / 'stop.launch.yaml'), 'stubborn:=true'], env=launch_env, name='launch')
    launcher.wait_for_output('PROBE_IGNORING', timeout=30)
    launcher.wait_for_output('PROBE {', timeout=30)
    pids = started_pids(launcher.output())
    launcher.signal(signal.SIGINT)
    t0 = time.monotonic()
    assert launcher.wait(timeout=20) == 1  # needing SIGTERM makes the stop unclean
    assert 0.8 < time.monotonic() - t0 < 8
    assert '[WARNING] [stubborn-3]: still running after SIGINT: sending SIGTERM' in launcher.output()
    assert not [p for p in pids.values() if alive(p)]


def test_respawn_after_delay(procs: Callable[..., Proc], launch_env: dict[str, str], tmp_path: Path) -> None:
    pid_file = tmp_path / 'pids'
    launcher = procs([*LAUNCH, str(FILES / 'respawn.launch.yaml'), f'pid_file:={pid_file}'], env=launch_env,
                     name='launch')
    launcher.wait_for_output('PROBE', timeout=30)
    first = int(pid_file.read_text().split()[0])
    os.kill(first, signal.SIGKILL)
    killed = time.monotonic()
    wait_until(lambda: len(pid_file.read_text().split()) == 2, 15, launcher.output)
    assert time.monotonic() - killed >= 0.9  # respawn_delay: 1.0
    wait_until(lambda: launcher.output().count('PROBE {') == 2, 20, launcher.output)
    out = launcher.output()
    assert f'process has died [pid {first}, exit code -9' in out and 'respawning in 1 s (run 2)' in out
    second = int(pid_file.read_text().split()[1])
    assert second != first and alive(second)
    launcher.signal(signal.SIGINT)
    assert launcher.wait(timeout=20) == 0  # the respawned run stopped cleanly
    assert not alive(second)


def test_killed_launcher_leaves_no_children(procs: Callable[..., Proc], launch_env: dict[str, str]) -> None:
    launcher = procs([*LAUNCH, str(FILES / 'stop.launch.yaml')], env=launch_env, name='launch')
    wait_until(lambda: len(started_pids(launcher.output())) == 2, 30, launcher.output)
    pids = started_pids(launcher.output())
    os.kill(launcher.pid, signal.SIGKILL)  # no chance to clean up: the kernel's parent-death signal does
    wait_until(lambda: not [p for p in pids.values() if alive(p)], 15, lambda: f'alive: {pids}')
