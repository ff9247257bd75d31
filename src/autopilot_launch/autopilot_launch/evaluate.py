"""Evaluates a parsed launch file into a plan: the exact processes to start, before any of them starts.

``ros2 launch`` interleaves evaluation and process start; here the whole tree (includes, conditions,
substitutions, executable lookup, parameter files) is evaluated first, so that every error in it stops
the launch with nothing running. The semantics are ``launch``/``launch_ros``'s:

* launch configurations (``arg``, ``let``, include arguments, ``push-ros-namespace``, ``set_parameter``,
  ``set_remap``) and the environment (``set_env``...) are scoped by ``group`` (``scoped``, default true;
  ``forwarding: false`` starts the group from its ``keep`` entries and the launcher's environment).
  ``include`` is *not* a scope: its arguments and what the included file sets stay visible after it,
  as in ``ros2 launch`` (wrap it in a group to scope it). A relative ``include`` path is taken from the
  current directory, as in ``ros2 launch``; ``$(dirname)/other.launch.yaml`` names a file next to this one.
* a node runs as ``<prefix>/lib/<pkg>/<exec> [args] [--ros-args ros_args] --ros-args -r __node:=NAME
  -r __ns:=/NS [-p global params] [--params-file FILE ...] [-r from:=to ...]``. Inline ``param`` entries
  go to a generated params file keyed by the node's full name when name and namespace are both known,
  else by ``/**``; consecutive inline entries share one file (ros2 launch writes one per entry: same
  result), ``from:`` files keep their place in the order (later files override earlier ones, as rcl
  applies them; a full node name beats ``/**`` whatever the order).
* ``$(anon NAME)`` is unique per launcher and NAME, the same everywhere in one launch.

Differences from ``ros2 launch`` (deliberate): a missing ``param: [{from: FILE}]`` is an error (ros2
launch warns and runs the node without it); child processes get ``PYTHONUNBUFFERED=1`` unless it is set,
so Python nodes' prints reach the screen in order.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from autopilot_launch import description as d
from autopilot_launch.errors import LaunchError, SubstitutionError, Where
from autopilot_launch.parser import OUTPUTS, parse_file
from autopilot_launch.substitutions import (
    SubContext,
    condition_value,
    executable_in_package,
    package_prefix,
    perform,
    subs_in,
    to_bool,
)
from autopilot_launch.substitutions import (
    parse as parse_template,
)

DEFAULT_SIGTERM_TIMEOUT = 5.0
DEFAULT_SIGKILL_TIMEOUT = 5.0
_NODE_NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_]*\Z')
_NS_TOKEN = re.compile(r'[A-Za-z_][A-Za-z0-9_]*\Z')


@dataclass
class ProcessSpec:
    """One process to run, fully resolved."""

    label: str  # output prefix, ``<exec or name>-<n>`` as ros2 launch prints it
    cmd: list[str]
    env: dict[str, str]
    where: Where
    cwd: str | None = None
    shell: bool = False
    output: str = 'log'
    respawn: bool = False
    respawn_delay: float = 0.0
    respawn_max_retries: int = -1
    sigterm_timeout: float = DEFAULT_SIGTERM_TIMEOUT
    sigkill_timeout: float = DEFAULT_SIGKILL_TIMEOUT
    on_exit_shutdown: bool = False
    emulate_tty: bool = False
    node: str | None = None  # fully qualified node name, when known
    node_name: str | None = None  # the node's name, when given
    params_files: list[tuple[str, str]] = field(default_factory=list)  # generated: (path, text)
    env_changes: dict[str, str | None] = field(default_factory=dict)  # vs the launcher's environment


@dataclass
class LogStep:
    message: str
    where: Where


@dataclass
class Plan:
    steps: list[ProcessSpec | LogStep]

    @property
    def processes(self) -> list[ProcessSpec]:
        return [s for s in self.steps if isinstance(s, ProcessSpec)]


@dataclass
class Scope:
    """Launch configurations, environment, global parameters and remaps: what ``group`` scopes."""

    configs: dict[str, str]
    env: dict[str, str]
    params: list[tuple[str, Any]] = field(default_factory=list)
    remaps: list[tuple[str, str]] = field(default_factory=list)

    def copy(self) -> Scope:
        return Scope(dict(self.configs), dict(self.env), list(self.params), list(self.remaps))


def prefix_namespace(base: str | None, ns: str | None) -> str | None:
    """``ns`` under ``base`` unless absolute (launch_ros's rule); trailing slashes dropped."""
    if base is None and ns is None:
        return None
    if ns is None:
        combined = base
    elif not base or ns.startswith('/'):
        combined = ns
    else:
        combined = ('' if base == '/' else base) + '/' + ns
    assert combined is not None
    return combined if combined == '/' else combined.rstrip('/') or '/'


def make_absolute(ns: str | None) -> str | None:
    if ns is None:
        return None
    return ns if ns.startswith('/') else '/' + ns


def validate_namespace(ns: str) -> str | None:
    """Why ``ns`` is not a valid absolute ROS namespace, or None."""
    if ns == '/':
        return None
    tokens = ns[1:].split('/')
    for tok in tokens:
        if not tok:
            return 'it has an empty token (a repeated or trailing /)'
        if not _NS_TOKEN.match(tok):
            return f"token '{tok}' must be letters, digits and _ and must not start with a digit"
    return None


def _type_of(identifier: str | None) -> tuple[type | None, bool]:
    if identifier is None or identifier == 'yaml':
        return None, False
    if identifier.startswith('list_of_'):
        return {'str': str, 'bool': bool, 'int': int, 'float': float}[identifier[8:]], True
    return {'str': str, 'bool': bool, 'int': int, 'float': float}[identifier], False


def _is(value: Any, t: type) -> bool:
    return isinstance(value, t) and not (t is int and isinstance(value, bool))


def yaml_scalar(value: Any) -> str:
    """A value as YAML flow text, for ``-p name:=value``."""
    return yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip().removesuffix('...').strip()


class Evaluator:
    """Walks the actions in order and builds the :class:`Plan`.

    ``params_dir``: where generated parameter files are written (created on demand); with ``write_files``
    false, only their paths and text are kept in the plan (``--print``).
    ``output_override``: an output mode forced on every process (``-a`` / OVERRIDE_LAUNCH_PROCESS_OUTPUT).
    """

    def __init__(self, launch_args: Mapping[str, str], *, env: Mapping[str, str] | None = None,
                 params_dir: str, log_dir: str = '', output_override: str | None = None,
                 write_files: bool = True) -> None:
        self.base_env = dict(os.environ if env is None else env)
        self.write_files = write_files
        self.scope = Scope(dict(launch_args), dict(self.base_env))
        self.params_dir = params_dir
        self.log_dir = log_dir
        self.output_override = output_override
        self.anon: dict[str, str] = {}
        self.steps: list[ProcessSpec | LogStep] = []
        self.counter = 0
        self.files: list[tuple[str, tuple[Where, ...]]] = []  # (launch file, include chain)
        self.given = set(launch_args)
        self.declared: set[str] = set()

    # -- entry point
    def evaluate(self, path: str) -> Plan:
        path = os.path.abspath(path)
        if not os.path.isfile(path):
            raise LaunchError('no such launch file', Where(path))
        self._visit_file(path, ())
        return Plan(self.steps)

    def _visit_file(self, path: str, chain: tuple[Where, ...]) -> None:
        lf = parse_file(path, chain)
        self.files.append((path, chain))
        try:
            self.visit(lf.actions)
        finally:
            self.files.pop()

    def undeclared(self) -> list[str]:
        """Launch arguments given but declared by no ``arg`` seen (a typo, usually; ros2 launch is silent)."""
        special = {'launch-prefix', 'launch-prefix-filter', 'sigterm_timeout', 'sigkill_timeout', 'emulate_tty'}
        return sorted(self.given - self.declared - special)

    def visit(self, actions: list[d.Action]) -> None:
        for action in actions:
            if isinstance(action, d.DeclareArg):
                self.declared.add(action.name)
            if action.condition is not None and not self.condition(action.condition):
                continue
            getattr(self, '_' + type(action).__name__)(action)

    # -- helpers
    @property
    def chain(self) -> tuple[Where, ...]:
        return self.files[-1][1] if self.files else ()

    def err(self, message: str, where: Where, hint: str = '') -> LaunchError:
        return LaunchError(message, where, hint, self.chain)

    def ctx(self) -> SubContext:
        return SubContext(self.scope.configs, self.scope.env, self.files[-1][0] if self.files else '',
                          self.anon, self.log_dir)

    def perf(self, v: d.Val) -> str:
        try:
            return perform(v.t, self.ctx())
        except SubstitutionError as exc:
            raise self.err(exc.message, v.where, exc.hint) from None

    def condition(self, cond: d.Condition) -> bool:
        text = self.perf(cond.expr)
        try:
            value = condition_value(text)
        except SubstitutionError as exc:
            raise self.err(exc.message, cond.expr.where,
                           'conditions take true/false or 1/0; e.g. if: "$(var use_sim)"') from None
        return value != cond.negate

    # -- actions
    def _DeclareArg(self, a: d.DeclareArg) -> None:
        configs = self.scope.configs
        if a.name not in configs:
            if a.default is None:
                raise self.err(f"required launch argument '{a.name}' was not provided", a.where,
                               f'pass it as {a.name}:=VALUE  ({a.full_description})')
            configs[a.name] = self.perf(a.default)
        if a.choices is not None and configs[a.name] not in a.choices:
            raise self.err(f"launch argument '{a.name}' is {configs[a.name]!r}, not one of {a.choices}", a.where)

    def _Let(self, a: d.Let) -> None:
        self.scope.configs[self.perf(a.name)] = self.perf(a.value)

    def _SetEnv(self, a: d.SetEnv) -> None:
        self.scope.env[self.perf(a.name)] = self.perf(a.value)

    def _UnsetEnv(self, a: d.UnsetEnv) -> None:
        self.scope.env.pop(self.perf(a.name), None)

    def _AppendEnv(self, a: d.AppendEnv) -> None:
        name, value = self.perf(a.name), self.perf(a.value)
        sep = self.perf(a.separator) if a.separator is not None else os.pathsep
        old = self.scope.env.get(name)
        if old:
            value = value + sep + old if a.prepend else old + sep + value
        self.scope.env[name] = value

    def _PushNamespace(self, a: d.PushNamespace) -> None:
        pushed = self.perf(a.namespace)
        previous = self.scope.configs.get('ros_namespace')
        ns = make_absolute(prefix_namespace(previous, pushed))
        assert ns is not None
        why = validate_namespace(ns)
        if why:
            raise self.err(f"namespace '{ns}' is invalid: {why}", a.namespace.where)
        self.scope.configs['ros_namespace'] = ns

    def _Log(self, a: d.Log) -> None:
        self.steps.append(LogStep(self.perf(a.message), a.where))

    def _SetParameter(self, a: d.SetParameter) -> None:
        self.scope.params.append((self.perf(a.name), self.param_value(a.value)))

    def _SetRemap(self, a: d.SetRemap) -> None:
        self.scope.remaps.append((self.perf(a.src), self.perf(a.dst)))

    def _Group(self, a: d.Group) -> None:
        if not a.scoped:
            for name, value in a.keep:
                self.scope.configs[self.perf(name)] = self.perf(value)
            self.visit(a.children)
            return
        saved = self.scope
        if a.forwarding:
            self.scope = saved.copy()
            for name, value in a.keep:
                self.scope.configs[self.perf(name)] = self.perf(value)
        else:  # a fresh start: only the kept configurations, the launcher's own environment
            keep = {self.perf(name): self.perf(value) for name, value in a.keep}
            self.scope = Scope(keep, dict(self.base_env))
        try:
            self.visit(a.children)
        finally:
            self.scope = saved

    def _Include(self, a: d.Include) -> None:
        given = self.perf(a.file)
        path = os.path.abspath(given)
        if not os.path.isfile(path):
            hint = ''
            if not os.path.isabs(given):
                hint = (f'a relative path is taken from the current directory ({os.getcwd()}), as in ros2 launch; '
                        f"for a file next to this one write file: '$(dirname)/{given}'")
            raise self.err(f'included launch file not found: {path}', a.file.where, hint)
        if any(path == f for f, _ in self.files) or len(self.files) > 40:
            raise self.err(f'{path} includes itself (recursion)', a.file.where)
        for name, value in a.args:
            self.scope.configs[self.perf(name)] = self.perf(value)
        self._visit_file(path, (*self.chain, a.where))

    # -- processes
    def _Node(self, a: d.Node) -> None:
        assert a.exec is not None
        exe = self.perf(a.exec)
        if a.pkg is not None:
            pkg = self.perf(a.pkg)
            try:
                package_prefix(pkg)
            except SubstitutionError as exc:
                raise self.err(exc.message, a.pkg.where, exc.hint) from None
            try:
                path = executable_in_package(pkg, exe)
            except SubstitutionError as exc:
                raise self.err(exc.message, a.exec.where, exc.hint) from None
        else:
            path = self.find_command(exe, a.exec.where)
        cmd = [path, *(self.perf(v) for v in a.args)]
        if a.ros_args:
            cmd += ['--ros-args', *(self.perf(v) for v in a.ros_args)]
        cmd.append('--ros-args')
        name = None
        if a.name is not None:
            name = self.perf(a.name)
            if not _NODE_NAME.match(name):
                raise self.err(f"node name '{name}' is invalid: use letters, digits and _, not starting "
                               'with a digit', a.name.where)
            cmd += ['-r', f'__node:={name}']
        ns_given = self.perf(a.namespace) if a.namespace is not None else None
        ns = make_absolute(prefix_namespace(self.scope.configs.get('ros_namespace'), ns_given))
        if ns is not None:
            why = validate_namespace(ns)
            if why:
                raise self.err(f"namespace '{ns}' is invalid: {why}",
                               a.namespace.where if a.namespace is not None else a.where)
            cmd += ['-r', f'__ns:={ns}']
        fqn = (ns.rstrip('/') + '/' + name) if name is not None and ns is not None else None
        for pname, pvalue in self.scope.params:
            cmd += ['-p', f'{pname}:={yaml_scalar(pvalue)}']
        spec = self.process(a, cmd, default_label=os.path.basename(exe))
        spec.node, spec.node_name = fqn, name
        for path_ in self.params_files(a, spec, fqn or '/**'):
            spec.cmd += ['--params-file', path_]
        for src, dst in [*self.scope.remaps, *((self.perf(s), self.perf(t)) for s, t in a.remaps)]:
            spec.cmd += ['-r', f'{src}:={dst}']
        self.apply_prefix(a, spec)
        self.steps.append(spec)

    def _Executable(self, a: d.Executable) -> None:
        cmd = [self.perf(v) for v in a.cmd]
        if not a.shell:
            cmd[0] = self.find_command(cmd[0], a.cmd[0].where)
        spec = self.process(a, cmd, default_label=os.path.basename(cmd[0]))
        self.apply_prefix(a, spec)
        self.steps.append(spec)

    def find_command(self, exe: str, where: Where) -> str:
        if '/' in exe:
            path = os.path.abspath(exe)
            if not (os.path.isfile(path) and os.access(path, os.X_OK)):
                why = 'is not executable' if os.path.isfile(path) else 'does not exist'
                raise self.err(f'executable {path} {why}', where)
            return path
        found = shutil.which(exe, path=self.scope.env.get('PATH', os.defpath))
        if found is None:
            raise self.err(f"executable '{exe}' not found on PATH", where,
                           'give pkg: to run a ROS executable of a package, or a path')
        return found

    def process(self, a: d.ProcessAction, cmd: list[str], default_label: str) -> ProcessSpec:
        self.counter += 1
        base = self.perf(a.label) if a.label is not None else default_label
        env = dict(self.scope.env)
        for name, value in a.env:
            env[self.perf(name)] = self.perf(value)
        env.setdefault('PYTHONUNBUFFERED', '1')
        changes: dict[str, str | None] = {k: v for k, v in env.items() if self.base_env.get(k) != v}
        changes.update({k: None for k in self.base_env if k not in env})
        spec = ProcessSpec(f'{base}-{self.counter}', cmd, env, a.where, shell=a.shell,
                           on_exit_shutdown=a.on_exit_shutdown, emulate_tty=a.emulate_tty, env_changes=changes)
        if a.cwd is not None:
            spec.cwd = self.perf(a.cwd)
            if not os.path.isdir(spec.cwd):
                raise self.err(f'cwd {spec.cwd} is not a directory', a.cwd.where)
        output = self.output_override or (self.perf(a.output) if a.output is not None else 'log')
        if output not in OUTPUTS:
            where = a.output.where if a.output is not None and not self.output_override else a.where
            raise self.err(f'output {output!r} is not one of {", ".join(OUTPUTS)}', where)
        spec.output = output
        if a.respawn is not None:
            try:
                spec.respawn = to_bool(self.perf(a.respawn))
            except SubstitutionError as exc:
                raise self.err(exc.message, a.respawn.where) from None
        spec.respawn_delay = a.respawn_delay or 0.0
        spec.respawn_max_retries = -1 if a.respawn_max_retries is None else a.respawn_max_retries
        spec.sigterm_timeout = self.timeout(a.sigterm_timeout, 'sigterm_timeout', DEFAULT_SIGTERM_TIMEOUT, a.where)
        spec.sigkill_timeout = self.timeout(a.sigkill_timeout, 'sigkill_timeout', DEFAULT_SIGKILL_TIMEOUT, a.where)
        return spec

    def timeout(self, value: float | None, config: str, default: float, where: Where) -> float:
        if value is not None:
            return value
        text = self.scope.configs.get(config)
        if text is None:
            return default
        try:
            return float(text)
        except ValueError:
            raise self.err(f"launch argument '{config}' is {text!r}, not a number of seconds", where) from None

    def apply_prefix(self, a: d.ProcessAction, spec: ProcessSpec) -> None:
        # The action's own launch-prefix wins; else the launch-prefix configuration (--launch-prefix),
        # filtered by a regex on the executable's name (--launch-prefix-filter), as in launch.
        if a.launch_prefix is not None:
            prefix = self.perf(a.launch_prefix)
        else:
            prefix = self.scope.configs.get('launch-prefix', '')
            pattern = self.scope.configs.get('launch-prefix-filter')
            if prefix and pattern is not None and not re.match(pattern, os.path.basename(spec.cmd[0])):
                prefix = ''
        if prefix:
            spec.cmd = shlex.split(prefix) + spec.cmd

    # -- parameters
    def params_files(self, a: d.Node, spec: ProcessSpec, key: str) -> list[str]:
        paths: list[str] = []
        pending: dict[str, Any] = {}
        for entry in a.params:
            if isinstance(entry, d.InlineParam):
                name = '.'.join(self.perf(v) for v in entry.name)
                pending[name] = self.param_value(entry.value)
                continue
            if pending:
                paths.append(self.write_params(spec, {key: {'ros__parameters': pending}}))
                pending = {}
            paths.append(self.param_file(entry, spec))
        if pending:
            paths.append(self.write_params(spec, {key: {'ros__parameters': pending}}))
        return paths

    def write_params(self, spec: ProcessSpec, data: dict[str, Any] | str) -> str:
        path = os.path.join(self.params_dir, f'{spec.label}.params-{len(spec.params_files)}.yaml')
        text = data if isinstance(data, str) else yaml.safe_dump(data, default_flow_style=False)
        if self.write_files:
            os.makedirs(self.params_dir, exist_ok=True)
            with open(path, 'w', encoding='utf-8') as f:
                f.write(text)
        spec.params_files.append((path, text))
        return path

    def param_file(self, entry: d.ParamFile, spec: ProcessSpec) -> str:
        path = os.path.abspath(self.perf(entry.path))
        if not os.path.isfile(path):
            raise self.err(f'parameters file not found: {path}', entry.path.where,
                           'ros2 launch would warn and start the node without it; fix the path')
        allow = entry.allow_substs
        if isinstance(allow, d.Val):
            given = allow
            try:
                allow = to_bool(self.perf(given))
            except SubstitutionError as exc:
                raise self.err(exc.message, given.where) from None
        if not allow:
            return path
        with open(path, encoding='utf-8') as f:
            text = f.read()
        where = Where(path, 0, 'allow_substs')
        try:
            text = perform(parse_template(text), self.ctx())
        except SubstitutionError as exc:
            raise self.err(f'substituting in {path}: {exc.message}', where, exc.hint) from None
        return self.write_params(spec, text)

    def param_value(self, pv: d.ParamValue) -> Any:
        """The typed value of an inline parameter, by launch_ros's rules."""
        scalar_t, is_list = _type_of(pv.type)
        if isinstance(pv.value, list):
            if pv.type not in (None, 'yaml') and not is_list:
                raise self.err(f"type '{pv.type}' but the value is a list", pv.where)
            items = [self._typed(x, scalar_t, pv) for x in pv.value]
            self._check_list(items, pv.where)
            return items
        if isinstance(pv.value, tuple):
            text = self.perf(d.Val(pv.value, pv.where))
            return self._coerce(text, pv.type, pv.where)
        if pv.type not in (None, 'yaml'):
            ok = not is_list and scalar_t is not None and _is(pv.value, scalar_t)
            if not ok:
                raise self.err(f"value {pv.value!r} is not of type '{pv.type}'", pv.where,
                               'a literal must already have the type; type: converts substituted values')
        return pv.value

    def _typed(self, item: Any, scalar_t: type | None, pv: d.ParamValue) -> Any:
        if isinstance(item, tuple):
            text = self.perf(d.Val(item, pv.where))
            return self._coerce(text, None if scalar_t is None else scalar_t.__name__, pv.where, in_list=True)
        if scalar_t is not None and not _is(item, scalar_t):
            raise self.err(f"list item {item!r} is not of type '{scalar_t.__name__}'", pv.where)
        return item

    def _check_list(self, items: list[Any], where: Where) -> None:
        if not items:
            raise self.err('a parameter cannot be an empty list (rcl cannot tell its type)', where)
        kinds = {type(x) for x in items}
        if len(kinds) > 1:
            raise self.err(f"parameter list mixes {' and '.join(sorted(k.__name__ for k in kinds))} items: {items}",
                           where, 'ROS parameter arrays hold one type')

    def _coerce(self, text: str, type_: str | None, where: Where, in_list: bool = False) -> Any:
        scalar_t, is_list = _type_of(type_)
        try:
            if scalar_t is str and not is_list:
                return text
            if scalar_t in (int, float) and not is_list:
                return scalar_t(text)
            if scalar_t is bool and not is_list:
                return to_bool(text)
            if not text:
                return text
            value = yaml.safe_load(text)
        except (ValueError, SubstitutionError, yaml.YAMLError) as exc:
            raise self.err(f'cannot convert {text!r} to {type_ or "a parameter value"}: {exc}', where,
                           "add type: str to keep it a string") from None
        if is_list:
            if not isinstance(value, list) or not all(_is(x, scalar_t) for x in value):  # type: ignore[arg-type]
                raise self.err(f'{text!r} is not a list of {scalar_t.__name__}', where)  # type: ignore[union-attr]
            self._check_list(value, where)
            return value
        if isinstance(value, list) and not in_list:
            if not all(isinstance(x, (bool, int, float, str)) for x in value):
                raise self.err(f'{text!r} is not a list of scalars', where)
            self._check_list(value, where)
            return value
        if not isinstance(value, (bool, int, float, str)):
            raise self.err(f'{text!r} reads as {type(value).__name__} in YAML, not a parameter value', where,
                           "add type: str to keep it a string")
        return value


def describe_plan(plan: Plan) -> str:
    """The plan as text for ``--print``: one runnable command per process and what it is given."""
    lines: list[str] = []
    for step in plan.steps:
        if isinstance(step, LogStep):
            lines.append(f'# log: {step.message}')
            continue
        what = f'node {step.node}' if step.node else f'node {step.node_name}' if step.node_name else 'process'
        lines.append(f'# [{step.label}] {what}  ({step.where})')
        for k, v in sorted(step.env_changes.items()):
            lines.append(f'#   env {k}=' + ('(unset)' if v is None else shlex.quote(v)))
        opts = [f'output={step.output}']
        if step.respawn:
            retries = 'forever' if step.respawn_max_retries < 0 else f'{step.respawn_max_retries} times'
            opts.append(f'respawn after {step.respawn_delay:g} s ({retries})')
        if step.cwd:
            opts.append(f'cwd={step.cwd}')
        if step.on_exit_shutdown:
            opts.append('on_exit=shutdown')
        lines.append('#   ' + ', '.join(opts))
        for path, text in step.params_files:
            lines.append(f'#   {path}:')
            lines += [f'#     {t}' for t in text.rstrip('\n').splitlines()]
        lines.append(' '.join(step.cmd) if step.shell else shlex.join(step.cmd))
        lines.append('')
    return '\n'.join(lines).rstrip('\n') + '\n' if lines else '# nothing to start\n'


# -------------------------------------------------------------------------------------------- show-args

_NEEDS_CONTEXT = {'var', 'dirname', 'filename', 'anon', 'eval', 'if', 'launch_log_dir', 'log_dir'}


@dataclass
class ArgInfo:
    decl: d.DeclareArg
    conditional: bool


def collect_args(path: str) -> list[ArgInfo]:
    """The arguments a file declares, with those of the includes that can be resolved without arguments.

    Like ``ros2 launch --show-args``: an argument with its own ``if``/``unless`` is marked conditional;
    an include whose path needs the launch context (``$(var)``, ``$(dirname)``...) is not followed, nor
    a group with ``forwarding: false``.
    """
    out: list[ArgInfo] = []
    seen: set[str] = set()
    ev = Evaluator({}, params_dir=os.devnull)

    def walk(actions: list[d.Action]) -> None:
        for a in actions:
            if isinstance(a, d.DeclareArg):
                if a.name not in seen:
                    seen.add(a.name)
                    out.append(ArgInfo(a, a.condition is not None))
            elif isinstance(a, d.Group):
                if a.scoped and not a.forwarding:
                    continue  # its configurations start afresh: the command line cannot reach these
                walk(a.children)
            elif isinstance(a, d.Include):
                # As ros2 launch: only includes whose path needs no launch context are followed.
                if any(sub.name in _NEEDS_CONTEXT for sub in subs_in(a.file.t)):
                    continue
                try:
                    target = os.path.abspath(ev.perf(a.file))
                except LaunchError:
                    continue
                if os.path.isfile(target) and all(target != f for f, _ in ev.files):
                    ev.files.append((target, ()))
                    try:
                        walk(parse_file(target).actions)
                    finally:
                        ev.files.pop()

    path = os.path.abspath(path)
    ev.files.append((path, ()))
    walk(parse_file(path).actions)
    return out


def format_args(args: list[ArgInfo]) -> str:
    """``ros2 launch --show-args`` output."""
    lines = ["Arguments (pass arguments as '<name>:=<value>'):"]
    for info in args:
        from autopilot_launch.substitutions import describe

        lines.append('')
        lines.append(f"    '{info.decl.name}':" + ('*' if info.conditional else ''))
        lines.append(f'        {info.decl.full_description}')
        if info.decl.default is not None:
            lines.append(f'        (default: {describe(info.decl.default.t)})')
    if not args:
        lines += ['', '  No arguments.']
    elif any(i.conditional for i in args):
        lines += ['', '* argument(s) which are only used if specific conditions occur']
    return '\n'.join(lines) + '\n'
