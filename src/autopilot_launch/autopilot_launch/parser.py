"""Reads a ROS 2 YAML launch file into :mod:`~autopilot_launch.description` objects, checking everything static.

The schema is that of ``launch_yaml`` + ``launch_ros`` (Jazzy): a single root key ``launch`` holding a
list of actions, each a mapping with one key (the action type) whose value maps attribute names to
values. Every check that needs no evaluation happens here, so a bad file fails before anything starts
and names its line: unknown actions and keys (with the valid ones), missing attributes, wrong YAML
types, substitution syntax, unknown substitutions and their argument counts.

Types are checked as strictly as ``launch_yaml`` checks them, because the point of the format is that the
same file runs under ``ros2 launch``: most attributes must be YAML *strings* there (``respawn: 'true'``,
``default: '5'``, ``if: '$(var sim)'``), ``respawn_delay`` must be a float (``1.0``, not ``1``), and
``scoped`` a boolean. Where ``ros2 launch`` would reject a value, the error here says how to write it.
"""

from __future__ import annotations

import difflib
import os
from typing import Any

import yaml

from autopilot_launch import description as d
from autopilot_launch.errors import LaunchError, SubstitutionError, Where
from autopilot_launch.substitutions import Template, has_substitutions, parse, unescape

# ------------------------------------------------------------------------------------------- YAML with lines


class _Map(dict):
    """A YAML mapping that remembers its line and the line of each key (1-based)."""

    line: int = 0
    key_lines: dict[Any, int]


class _Seq(list):
    """A YAML sequence that remembers its line and the line of each item (1-based)."""

    line: int = 0
    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    pass


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    m = _Map()
    m.line = node.start_mark.line + 1
    m.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) or key is None:
            raise yaml.constructor.ConstructorError(None, None, 'a key must be a plain value',
                                                    key_node.start_mark)
        if key in m:
            # PyYAML would keep the last silently; two `param:` keys in one node is always a mistake.
            raise yaml.constructor.ConstructorError(
                None, None, f'duplicate key {key!r} (first at line {m.key_lines[key]})', key_node.start_mark)
        m[key] = loader.construct_object(value_node, deep=True)
        m.key_lines[key] = key_node.start_mark.line + 1
    return m


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> _Seq:
    s = _Seq(loader.construct_object(child, deep=True) for child in node.value)
    s.line = node.start_mark.line + 1
    s.item_lines = [child.start_mark.line + 1 for child in node.value]
    return s


_Loader.add_constructor('tag:yaml.org,2002:map', _construct_map)
_Loader.add_constructor('tag:yaml.org,2002:seq', _construct_seq)


def _key_line(mapping: dict, key: Any) -> int:
    """The line of ``key`` in a mapping load_yaml read (1 for a mapping made in code)."""
    return mapping.key_lines[key] if isinstance(mapping, _Map) else 1


def load_yaml(path: str) -> Any:
    """Load a YAML file with line numbers; errors give ``file:line`` from PyYAML's marks."""
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except OSError as exc:
        raise LaunchError(f'cannot read launch file: {exc.strerror}', Where(path)) from None
    except UnicodeDecodeError as exc:
        raise LaunchError(f'launch file is not UTF-8 text: {exc}', Where(path)) from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader derives from SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        problem = ' '.join(str(x) for x in (exc.context, exc.problem) if x)
        snippet = mark.get_snippet() if mark else None
        raise LaunchError(f'malformed YAML: {problem}', Where(path, line),
                          hint=f'(column {mark.column + 1})\n{snippet}' if mark and snippet else '') from None
    except yaml.YAMLError as exc:
        raise LaunchError(f'malformed YAML: {exc}', Where(path)) from None


# ------------------------------------------------------------------------------------------- the schema

STR, BOOL, FLOAT, INT, VALUE, ENTS, KIDS = 'str', 'bool', 'float', 'int', 'value', 'entities', 'children'
_KIND_WORDS = {STR: 'a string', BOOL: 'a boolean (true/false)', FLOAT: 'a float (e.g. 1.0)', INT: 'an integer',
               VALUE: 'a value (scalar or list)', ENTS: 'a list of mappings', KIDS: 'a list of actions'}

_CONDITIONS = {'if': STR, 'unless': STR}
_PROCESS = {'cwd': STR, 'output': STR, 'respawn': STR, 'respawn_delay': FLOAT, 'respawn_max_retries': INT,
            'sigterm_timeout': FLOAT, 'sigkill_timeout': FLOAT, 'shell': BOOL, 'emulate_tty': BOOL, 'launch-prefix': STR,
            'on_exit': STR, 'env': ENTS}

#: action -> (attributes and their kinds, required attributes)
SCHEMA: dict[str, tuple[dict[str, str], set[str]]] = {
    'arg': ({'name': STR, 'default': STR, 'description': STR, 'choice': ENTS}, {'name'}),
    'let': ({'name': STR, 'value': STR}, {'name', 'value'}),
    'set_env': ({'name': STR, 'value': STR}, {'name', 'value'}),
    'unset_env': ({'name': STR}, {'name'}),
    'append_env': ({'name': STR, 'value': STR, 'prepend': BOOL, 'separator': STR}, {'name', 'value'}),
    'push-ros-namespace': ({'namespace': STR}, {'namespace'}),
    'push_ros_namespace': ({'namespace': STR}, {'namespace'}),
    'log': ({'message': STR}, {'message'}),
    'set_parameter': ({'name': STR, 'value': VALUE}, {'name', 'value'}),
    'set_remap': ({'from': STR, 'to': STR}, {'from', 'to'}),
    'group': ({'scoped': BOOL, 'forwarding': BOOL, 'keep': ENTS, 'children': KIDS}, {'children'}),
    'include': ({'file': STR, 'arg': ENTS}, {'file'}),
    'executable': ({'cmd': STR, 'name': STR, **_PROCESS}, {'cmd'}),
    'node': ({'pkg': STR, 'exec': STR, 'name': STR, 'namespace': STR, 'exec_name': STR, 'args': STR, 'ros_args': STR,
              'param': ENTS, 'remap': ENTS, **_PROCESS}, {'exec'}),
}

#: ros2 launch actions this runner does not implement, and why (they get a clear error, not "unknown").
UNSUPPORTED = {
    'timer': 'delayed actions are not implemented',
    'shutdown': 'use on_exit: shutdown on a node or executable',
    'reset': 'not implemented', 'reset_env': 'not implemented',
    'node_container': 'composable nodes are not implemented',
    'load_composable_node': 'composable nodes are not implemented',
    'ros_timer': 'delayed actions are not implemented',
    'set_parameters_from_file': 'not implemented; use param: [{from: FILE}] on each node',
    'set_ros_log_dir': 'not implemented; set ROS_LOG_DIR with set_env',
    'lifecycle_node': 'lifecycle nodes are not implemented',
}

_ENTRY_SCHEMA: dict[str, tuple[dict[str, str], set[str]]] = {
    'remap': ({'from': STR, 'to': STR}, {'from', 'to'}),
    'env': ({'name': STR, 'value': STR}, {'name', 'value'}),
    'keep': ({'name': STR, 'value': STR}, {'name', 'value'}),
    'arg': ({'name': STR, 'value': STR}, {'name', 'value'}),
    'choice': ({'value': STR}, {'value'}),
    'param': ({'name': STR, 'value': VALUE, 'type': STR, 'param': ENTS, 'from': STR, 'allow_substs': STR}, set()),
}

PARAM_TYPES = ('str', 'bool', 'int', 'float', 'list_of_str', 'list_of_bool', 'list_of_int', 'list_of_float', 'yaml')
OUTPUTS = ('screen', 'log', 'both', 'own_log', 'full')


def _did_you_mean(word: str, options: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1)
    return f"did you mean '{close[0]}'? " if close else ''


def _yaml_repr(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()


class _Attrs:
    """The attributes of one action (or entry), checked against the schema as they are read."""

    def __init__(self, parser: FileParser, kind: str, data: Any, line: int, key: str,
                 schema: tuple[dict[str, str], set[str]], extra: dict[str, str] | None = None) -> None:
        self.p, self.kind, self.key = parser, kind, key
        allowed, required = schema
        self.allowed = {**allowed, **(extra or {})}
        if not isinstance(data, dict):
            example = ', '.join(f'{k}: ...' for k in sorted(required)) or '...'
            raise LaunchError(f"'{kind}' must be a mapping of attributes, got {_describe(data)}",
                              self.p.where(line, key), f'write e.g.  - {kind}: {{{example}}}')
        self.data, self.line = data, line
        self.lines: dict[Any, int] = getattr(data, 'key_lines', {})
        for k in data:
            if k not in self.allowed:
                valid = ', '.join(sorted(self.allowed))
                raise LaunchError(f"unknown key '{k}' in '{kind}'", self.where(k),
                                  f'{_did_you_mean(k, self.allowed)}valid keys of {kind}: {valid}')
        for k in sorted(required):
            if k not in data:
                raise LaunchError(f"'{kind}' needs the attribute '{k}'", self.p.where(line, key),
                                  f"valid keys of {kind}: {', '.join(sorted(self.allowed))}")

    def where(self, attr: Any) -> Where:
        return self.p.where(self.lines.get(attr, self.line), f'{self.key}.{attr}')

    def has(self, attr: str) -> bool:
        return attr in self.data

    def _check_kind(self, attr: str, value: Any) -> None:
        kind = self.allowed[attr]
        ok = {
            STR: isinstance(value, str),
            BOOL: isinstance(value, bool),
            FLOAT: isinstance(value, float),
            INT: isinstance(value, int) and not isinstance(value, bool),
            ENTS: isinstance(value, list) and bool(value) and all(isinstance(x, dict) for x in value),
            KIDS: isinstance(value, list),
            VALUE: True,
        }[kind]
        if ok:
            return
        hint = ''
        if kind == STR and isinstance(value, (bool, int, float)):
            text = str(value).lower() if isinstance(value, bool) else str(value)
            hint = (f"quote it: {attr}: '{text}'  (ros2 launch's YAML front end takes only strings here; "
                    'a substitution or a quoted value is converted where needed)')
        elif kind == FLOAT and isinstance(value, int) and not isinstance(value, bool):
            hint = f'write {attr}: {value}.0  (ros2 launch rejects an integer here)'
        elif kind == BOOL and isinstance(value, str) and value.lower() in ('true', 'false'):
            hint = f'write {attr}: {value.lower()}  (unquoted)'
        elif kind == ENTS:
            hint = f'write e.g. {attr}: [{{...}}, {{...}}]'
        raise LaunchError(f"'{attr}' of '{self.kind}' must be {_KIND_WORDS[kind]}, got {_describe(value)}",
                          self.where(attr), hint)

    def raw(self, attr: str) -> Any:
        value = self.data.get(attr)
        if value is not None or attr in self.data:
            self._check_kind(attr, value)
        return value

    def val(self, attr: str) -> d.Val | None:
        """A string attribute parsed for substitutions."""
        value = self.raw(attr)
        if value is None:
            return None
        return d.Val(self.p.template(value, self.where(attr)), self.where(attr))

    def cmdline(self, attr: str) -> list[d.Val]:
        from autopilot_launch.substitutions import split_cmdline

        v = self.val(attr)
        if v is None:
            return []
        try:
            return [d.Val(t, v.where) for t in split_cmdline(v.t)]
        except SubstitutionError as exc:
            raise LaunchError(exc.message, v.where, exc.hint) from None

    def entries(self, attr: str, entry_kind: str | None = None) -> list[tuple[_Attrs, int]]:
        value = self.raw(attr)
        if value is None:
            return []
        lines = getattr(value, 'item_lines', [self.lines.get(attr, self.line)] * len(value))
        out = []
        for i, (item, line) in enumerate(zip(value, lines, strict=True)):
            out.append((_Attrs(self.p, f'{self.kind}.{attr}', item, line, f'{self.key}.{attr}[{i}]',
                               _ENTRY_SCHEMA[entry_kind or attr]), line))
        return out

    def pair(self, attr: str, a: str, b: str) -> list[tuple[d.Val, d.Val]]:
        return [(e.val(a), e.val(b)) for e, _ in self.entries(attr)]  # type: ignore[misc]


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return 'a mapping'
    if isinstance(value, list):
        return 'a list'
    if value is None:
        return 'nothing (null)'
    return f'{type(value).__name__} {_yaml_repr(value)}'


class FileParser:
    """Parses one launch file; ``included_from`` is the chain of include sites, for error messages."""

    def __init__(self, path: str, included_from: tuple[Where, ...] = ()) -> None:
        self.path = os.path.abspath(path)
        self.included_from = included_from

    def where(self, line: int, key: str = '') -> Where:
        return Where(self.path, line, key)

    def error(self, message: str, where: Where, hint: str = '') -> LaunchError:
        return LaunchError(message, where, hint, self.included_from)

    def template(self, text: str, where: Where) -> Template:
        try:
            return parse(text)
        except SubstitutionError as exc:
            raise LaunchError(f'bad substitution in {text!r}: {exc.message}', where, exc.hint) from None

    def parse(self) -> d.LaunchFile:
        try:
            if self.path.endswith(('.py', '.xml')):
                raise LaunchError('autopilot launch reads the YAML launch format only', Where(self.path),
                                  'run Python and XML launch files with `ros2 launch` on a ROS install')
            return self._parse()
        except LaunchError as exc:
            if not exc.included_from and self.included_from:
                raise LaunchError(exc.message, exc.where, exc.hint, self.included_from) from None
            raise

    def _parse(self) -> d.LaunchFile:
        tree = load_yaml(self.path)
        if not isinstance(tree, dict) or len(tree) != 1 or 'launch' not in tree:
            keys = ', '.join(map(str, tree)) if isinstance(tree, dict) else _describe(tree)
            line = getattr(tree, 'line', 1) if tree is not None else 1
            raise LaunchError(f"a launch file has exactly one top-level key, 'launch' (found: {keys})",
                              self.where(line), 'start the file with\nlaunch:\n- node: {pkg: ..., exec: ...}')
        root = tree['launch']
        line = _key_line(tree, 'launch')
        if isinstance(root, dict):  # launch: {children: [...]} is allowed by launch_yaml too
            attrs = _Attrs(self, 'launch', root, line, 'launch', ({'children': KIDS, 'deprecated': STR}, {'children'}))
            if attrs.has('deprecated'):
                print(f"[WARNING] [launch]: {self.path} is deprecated: {root['deprecated']}")
            root = root['children']
        if root is None:
            root = []
        if not isinstance(root, list):
            raise LaunchError(f"'launch' must be a list of actions, got {_describe(root)}",
                              self.where(line, 'launch'), 'write\nlaunch:\n- arg: {...}\n- node: {...}')
        return d.LaunchFile(self.path, self.actions(root, line, 'launch'))

    def actions(self, items: list[Any], line: int, key: str) -> list[d.Action]:
        lines = getattr(items, 'item_lines', [line] * len(items))
        return [self.action(item, item_line, f'{key}[{i}]') for i, (item, item_line) in enumerate(zip(items, lines, strict=True))]

    def action(self, item: Any, line: int, key: str) -> d.Action:
        if not isinstance(item, dict) or len(item) != 1:
            what = f"a mapping with {len(item)} keys ({', '.join(map(str, item))})" if isinstance(item, dict) \
                else _describe(item)
            raise LaunchError(f'each action is a mapping with one key, the action type; got {what}',
                              self.where(line, key),
                              'indent the attributes under the action: \n- node:\n    pkg: ...\n    exec: ...')
        kind = next(iter(item))
        kline = _key_line(item, kind)
        if kind in UNSUPPORTED:
            raise LaunchError(f"'{kind}' is a ros2 launch action that autopilot launch does not support: "
                              f'{UNSUPPORTED[kind]}', self.where(kline, str(kind)))
        if kind not in SCHEMA:
            raise LaunchError(f"unknown action '{kind}'", self.where(kline, str(kind)),
                              f"{_did_you_mean(kind, SCHEMA)}actions: {', '.join(sorted(SCHEMA))}")
        data = item[kind]
        if kind == 'group' and isinstance(data, list):  # `group: [...]` is a group with children only
            data = _Map(children=data)
            data.line, data.key_lines = kline, {'children': kline}
        a = _Attrs(self, kind, data, kline, str(kind), SCHEMA[kind], _CONDITIONS)
        where = self.where(kline, str(kind))
        cond = self.condition(a)
        return getattr(self, '_' + kind.replace('-', '_'))(a, where, cond)

    def condition(self, a: _Attrs) -> d.Condition | None:
        if a.has('if') and a.has('unless'):
            raise LaunchError("'if' and 'unless' cannot be used together", a.where('unless'))
        for attr, negate in (('if', False), ('unless', True)):
            v = a.val(attr)
            if v is not None:
                return d.Condition(v, negate)
        return None

    # -- one method per action ----------------------------------------------------------------------------
    def _arg(self, a: _Attrs, where: Where, cond: d.Condition | None) -> d.DeclareArg:
        choices = None
        if a.has('choice'):
            choices = [unescape(e.raw('value')) for e, _ in a.entries('choice')]
        default = a.val('default')
        if choices is not None and default is not None and not has_substitutions(default.t):
            text = ''.join(default.t)  # type: ignore[arg-type]
            if text not in choices:
                raise LaunchError(f'default {text!r} is not one of the choices {choices}', default.where)
        desc = a.raw('description')
        return d.DeclareArg(where, cond, unescape(a.raw('name')), default,
                            unescape(desc) if desc is not None else None, choices)

    def _let(self, a: _Attrs, where: Where, cond: d.Condition | None) -> d.Let:
        return d.Let(where, cond, a.val('name'), a.val('value'))  # type: ignore[arg-type]

    def _set_env(self, a: _Attrs, where: Where, cond: d.Condition | None) -> d.SetEnv:
        return d.SetEnv(where, cond, a.val('name'), a.val('value'))  # type: ignore[arg-type]

    def _unset_env(self, a: _Attrs, where: Where, cond: d.Condition | None) -> d.UnsetEnv:
        return d.UnsetEnv(where, cond, a.val('name'))  # type: ignore[arg-type]

    def _append_env(self, a: _Attrs, where: Where, cond: d.Condition | None) -> d.AppendEnv:
        return d.AppendEnv(where, cond, a.val('name'), a.val('value'),  # type: ignore[arg-type]
                           bool(a.raw('prepend')), a.val('separator'))

    def _push_ros_namespace(self, a: _Attrs, where: Where, cond: d.Condition | None) -> d.PushNamespace:
        return d.PushNamespace(where, cond, a.val('namespace'))  # type: ignore[arg-type]

    def _log(self, a: _Attrs, where: Where, cond: d.Condition | None) -> d.Log:
        return d.Log(where, cond, a.val('message'))  # type: ignore[arg-type]

    def _set_parameter(self, a: _Attrs, where: Where, cond: d.Condition | None) -> d.SetParameter:
        return d.SetParameter(where, cond, a.val('name'),  # type: ignore[arg-type]
                              self.param_value(a.raw('value'), None, a.where('value')))

    def _set_remap(self, a: _Attrs, where: Where, cond: d.Condition | None) -> d.SetRemap:
        return d.SetRemap(where, cond, a.val('from'), a.val('to'))  # type: ignore[arg-type]

    def _group(self, a: _Attrs, where: Where, cond: d.Condition | None) -> d.Group:
        scoped = a.raw('scoped')
        forwarding = a.raw('forwarding')
        children = a.raw('children') or []
        return d.Group(where, cond, True if scoped is None else scoped, True if forwarding is None else forwarding,
                       a.pair('keep', 'name', 'value'),
                       self.actions(children, a.lines.get('children', a.line), f'{a.key}.children'))

    def _include(self, a: _Attrs, where: Where, cond: d.Condition | None) -> d.Include:
        return d.Include(where, cond, a.val('file'), a.pair('arg', 'name', 'value'))  # type: ignore[arg-type]

    def _process(self, a: _Attrs, action: d.ProcessAction) -> None:
        action.cwd = a.val('cwd')
        action.output = a.val('output')
        if action.output is not None and not has_substitutions(action.output.t):
            text = ''.join(action.output.t)  # type: ignore[arg-type]
            if text not in OUTPUTS:
                raise LaunchError(f'output {text!r} is not one of {", ".join(OUTPUTS)}', action.output.where,
                                  f'{_did_you_mean(text, OUTPUTS)}screen: stdout and stderr on the screen; '
                                  'log: both to the log file, stderr also on the screen; both: both to both')
        action.respawn = a.val('respawn')
        for attr in ('respawn_delay', 'sigterm_timeout', 'sigkill_timeout'):
            value = a.raw(attr)
            if value is not None and value < 0:
                raise LaunchError(f"'{attr}' must not be negative, got {value}", a.where(attr))
            setattr(action, attr, value)
        action.respawn_max_retries = a.raw('respawn_max_retries')
        action.shell = bool(a.raw('shell'))
        action.emulate_tty = bool(a.raw('emulate_tty'))
        action.launch_prefix = a.val('launch-prefix')
        on_exit = a.raw('on_exit')
        if on_exit is not None and on_exit != 'shutdown':
            raise LaunchError(f"on_exit must be 'shutdown', got {on_exit!r}", a.where('on_exit'),
                              'ros2 launch supports no other on_exit action in YAML files')
        action.on_exit_shutdown = on_exit == 'shutdown'
        action.env = a.pair('env', 'name', 'value')

    def _executable(self, a: _Attrs, where: Where, cond: d.Condition | None) -> d.Executable:
        ex = d.Executable(where, cond)
        self._process(a, ex)
        ex.cmd = a.cmdline('cmd')
        if not ex.cmd:
            raise LaunchError("'cmd' of 'executable' is empty", a.where('cmd'))
        ex.label = a.val('name')
        return ex

    def _node(self, a: _Attrs, where: Where, cond: d.Condition | None) -> d.Node:
        node = d.Node(where, cond)
        self._process(a, node)
        node.label = a.val('exec_name')
        node.pkg, node.exec = a.val('pkg'), a.val('exec')
        node.name, node.namespace = a.val('name'), a.val('namespace')
        node.args = a.cmdline('args')
        node.ros_args = a.cmdline('ros_args')
        node.remaps = a.pair('remap', 'from', 'to')
        for entry, _line in a.entries('param'):
            node.params.extend(self.param_entry(entry))
        return node

    # -- parameters ---------------------------------------------------------------------------------------
    def param_entry(self, e: _Attrs) -> list[d.InlineParam | d.ParamFile]:
        if e.has('from'):
            extra = sorted(k for k in e.data if k not in ('from', 'allow_substs'))
            if extra:
                raise LaunchError(f"a 'from' parameter entry takes no other keys than allow_substs, got "
                                  f"{', '.join(extra)}", e.where(extra[0]),
                                  'write params files and inline parameters as separate entries')
            subst = e.raw('allow_substs')
            allow: bool | d.Val = False
            if subst is not None:
                v = e.val('allow_substs')
                assert v is not None
                allow = v
            return [d.ParamFile(e.val('from'), allow)]  # type: ignore[arg-type]
        if e.has('allow_substs'):
            raise LaunchError("'allow_substs' can only be used together with 'from'", e.where('allow_substs'))
        return list(self.inline_params(e, ()))

    def inline_params(self, e: _Attrs, prefix: tuple[d.Val, ...]) -> list[d.InlineParam]:
        if not e.has('name'):
            raise LaunchError("a parameter entry needs 'name' (with 'value' or nested 'param') or 'from'",
                              self.where(e.line, e.key),
                              'write - {name: gain, value: 2.0} or - {from: $(find-pkg-share pkg)/config/params.yaml}')
        name = e.val('name')
        assert name is not None
        path = (*prefix, name)
        has_value, has_nested = e.has('value'), e.has('param')
        if has_value and has_nested:
            raise LaunchError("a parameter has either 'value' or nested 'param' entries, not both", e.where('param'))
        if e.has('type') and has_nested:
            raise LaunchError("'type' cannot be given with nested 'param' entries", e.where('type'))
        if has_nested:
            out: list[d.InlineParam] = []
            for sub, _line in e.entries('param'):
                if sub.has('from'):
                    raise LaunchError("a nested parameter entry cannot use 'from'", sub.where('from'))
                out.extend(self.inline_params(sub, path))
            return out
        if not has_value:
            raise LaunchError("parameter entry needs 'value' or nested 'param' entries", self.where(e.line, e.key))
        type_ = e.raw('type')
        if type_ is not None and type_ not in PARAM_TYPES:
            raise LaunchError(f'unknown parameter type {type_!r}', e.where('type'),
                              f"{_did_you_mean(type_, PARAM_TYPES)}types: {', '.join(PARAM_TYPES)}")
        return [d.InlineParam(path, self.param_value(e.data['value'], type_, e.where('value')))]

    def param_value(self, value: Any, type_: str | None, where: Where) -> d.ParamValue:
        if isinstance(value, dict):
            raise LaunchError('a parameter value cannot be a mapping', where,
                              'nest parameters with param entries:\n'
                              '- name: group\n  param:\n  - {name: leaf, value: 1}')
        if value is None:
            raise LaunchError('a parameter value cannot be empty (null)', where, "write value: '' for an empty string")

        def one(x: Any) -> Any:
            if isinstance(x, str):
                t = self.template(x, where)
                return t if has_substitutions(t) else unescape(x)
            if isinstance(x, (bool, int, float)):
                return x
            raise LaunchError(f'a parameter value must be a scalar or a list of scalars, got {_describe(x)}', where)

        if isinstance(value, list):
            converted = [one(x) for x in value]
            _check_uniform(converted, where)
            return d.ParamValue(converted, type_, where)
        return d.ParamValue(one(value), type_, where)


def _check_uniform(items: list[Any], where: Where) -> None:
    # launch_yaml takes lists whose non-string items share one type (strings may be substitutions).
    kinds = {type(x) for x in items if not isinstance(x, (str, tuple))}
    if len(kinds) > 1:
        raise LaunchError(f"a parameter list mixes {' and '.join(sorted(k.__name__ for k in kinds))} items",
                          where, 'ROS parameter arrays hold one type: write floats as 1.0, or quote strings')


def parse_file(path: str, included_from: tuple[Where, ...] = ()) -> d.LaunchFile:
    """Parse and check one launch file (not its includes, whose paths may need evaluation)."""
    return FileParser(path, included_from).parse()
