"""Substitutions of the ROS 2 launch frontends: ``$(var name)``, ``$(env NAME default)``, ``$(find-pkg-share pkg)``...

The syntax follows ``launch``'s frontend grammar (``launch/share/launch/frontend/grammar.lark``), written here
as a small recursive-descent parser so that errors can say *where* in the string they are:

* at the top level any text is literal except ``$(`` (write ``\\$(`` for a literal one); a backslash
  escapes the next character and is dropped (``\\\\`` gives one backslash), as in ``launch``;
* ``$(NAME ARG ARG ...)``: NAME is a letter followed by letters, digits, ``_`` or ``-``; arguments are
  separated by exactly one space; an argument is a sequence of unquoted text (no spaces, quotes or
  parentheses unless escaped) and nested substitutions, or one quoted string (``'a b'`` or ``"a b"``)
  that may contain substitutions whose own arguments cannot be quoted again.

A parsed value is a :data:`Template`: a tuple of ``str`` and :class:`Sub` parts. Which substitutions
exist and how many arguments each takes is checked at parse time (as ``launch`` does); values are
computed by :func:`perform` against a :class:`SubContext` when the launch file is evaluated.
"""

from __future__ import annotations

import importlib
import math
import os
import random
import re
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from autopilot_launch.errors import SubstitutionError


@dataclass(frozen=True)
class Sub:
    """One ``$(name arg ...)``; each argument is itself a template."""

    name: str
    args: tuple[tuple[str | Sub, ...], ...] = ()


Part = str | Sub
Template = tuple[Part, ...]

_ESCAPE = re.compile(r'\\(.)')
_IDENT = re.compile(r'[A-Za-z][A-Za-z0-9_-]*')


def unescape(text: str) -> str:
    """Drop the backslash of every ``\\x`` pair, as ``launch`` does for every literal part."""
    return _ESCAPE.sub(r'\1', text)


class _Parser:
    """Recursive descent over one string; ``mode`` is ``''`` (unquoted), ``"'"`` or ``'"'``."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    # -- character classes of the grammar's terminals (lookbehind is on the raw string, as in the regexes)
    def _prev_is_backslash(self, i: int) -> bool:
        return i > 0 and self.s[i - 1] == '\\'

    def _starts_sub(self, i: int) -> bool:
        return self.s.startswith('$(', i) and not self._prev_is_backslash(i)

    def _is_string_char(self, i: int, quote: str) -> bool:
        """A character of a fragment: anything but the closing quote (top level: anything) and ``$(``."""
        c = self.s[i]
        if c == '$':
            return not self._starts_sub(i)
        if quote and c == quote:
            return self._prev_is_backslash(i)
        return True

    def _is_arg_char(self, i: int, quote: str) -> bool:
        """A character of unquoted argument text: no space, quote or parenthesis unless backslash-escaped."""
        c = self.s[i]
        if c == ' ':
            return False
        if c == '$':
            return not self._starts_sub(i)
        quotes = ('"', "'") if not quote else (quote,)
        if c in quotes or c in '()':
            return self._prev_is_backslash(i)
        return True

    def error(self, message: str, at: int | None = None) -> SubstitutionError:
        at = self.i if at is None else at
        pointer = f'{self.s}\n{" " * at}^'
        return SubstitutionError(f'{message} (at character {at + 1} of the value)', pointer)

    # -- grammar rules
    def template(self) -> Template:
        parts: list[Part] = []
        while self.i < len(self.s):
            if self._starts_sub(self.i):
                parts.append(self.substitution(''))
            else:
                start = self.i
                while self.i < len(self.s) and self._is_string_char(self.i, ''):
                    self.i += 1
                parts.append(unescape(self.s[start:self.i]))
        return _merge(parts)

    def substitution(self, quote: str) -> Sub:
        start = self.i
        self.i += 2  # '$('
        m = _IDENT.match(self.s, self.i)
        if not m:
            raise self.error("expected a substitution name after '$(' (e.g. $(var name))")
        name = m.group()
        self.i = m.end()
        args: list[Template] = []
        while True:
            if self.i >= len(self.s):
                raise self.error(f"unterminated substitution '{self.s[start:]}': missing ')'", start)
            c = self.s[self.i]
            if c == ')':
                self.i += 1
                return Sub(name, tuple(args))
            if c != ' ':
                raise self.error(f"unexpected {c!r} in substitution $({name} ...): arguments are separated "
                                 "by one space; quote or backslash-escape spaces, quotes and parentheses")
            self.i += 1
            args.append(self.argument(quote))

    def argument(self, quote: str) -> Template:
        if self.i >= len(self.s):
            raise self.error('missing argument before the end of the value')
        c = self.s[self.i]
        if not quote and c in ('"', "'"):
            return self.quoted(c)
        parts: list[Part] = []
        while self.i < len(self.s):
            if self._starts_sub(self.i):
                parts.append(self.substitution(quote))
            elif self._is_arg_char(self.i, quote):
                start = self.i
                while self.i < len(self.s) and self._is_arg_char(self.i, quote):
                    self.i += 1
                parts.append(unescape(self.s[start:self.i]))
            else:
                break
        if not parts:
            what = 'space' if c == ' ' else repr(c)
            raise self.error(f"empty argument: unexpected {what} (write an empty argument as '')")
        return _merge(parts)

    def quoted(self, quote: str) -> Template:
        start = self.i
        self.i += 1
        parts: list[Part] = []
        while True:
            if self.i >= len(self.s):
                raise self.error(f'unterminated quoted argument: missing closing {quote}', start)
            if self.s[self.i] == quote and not self._prev_is_backslash(self.i):
                self.i += 1
                return _merge(parts)
            if self._starts_sub(self.i):
                parts.append(self.substitution(quote))
                continue
            begin = self.i
            while self.i < len(self.s) and self._is_string_char(self.i, quote):
                self.i += 1
            parts.append(unescape(self.s[begin:self.i]))


def _merge(parts: list[Part]) -> Template:
    out: list[Part] = []
    for p in parts:
        if isinstance(p, str):
            if not p:
                continue
            if out and isinstance(out[-1], str):
                out[-1] = out[-1] + p
                continue
        out.append(p)
    return tuple(out)


def parse(text: str) -> Template:
    """Parse ``text`` into a template and check every substitution's name and argument count."""
    if not text:
        return ()
    template = _Parser(text).template()
    _check(template)
    return template


def has_substitutions(template: Template) -> bool:
    return any(isinstance(p, Sub) for p in template)


def literal(template: Template) -> str | None:
    """The text of a template without substitutions, else None."""
    return None if has_substitutions(template) else ''.join(template)  # type: ignore[arg-type]


def subs_in(template: Template) -> list[Sub]:
    """Every substitution in the template, outer ones first."""
    out: list[Sub] = []
    for p in template:
        if isinstance(p, Sub):
            out.append(p)
            for a in p.args:
                out.extend(subs_in(a))
    return out


# ---------------------------------------------------------------------------------------------- evaluation

@dataclass
class SubContext:
    """What substitutions read: launch configurations, the launch environment and the current file."""

    configs: Mapping[str, str]
    env: Mapping[str, str]
    launch_file: str = ''
    anon: dict[str, str] = field(default_factory=dict)
    log_dir: str = ''


Performer = Callable[[SubContext, tuple[Template, ...]], str]


@dataclass(frozen=True)
class SubSpec:
    min_args: int
    max_args: int | None
    perform: Performer
    usage: str


def perform(template: Template, ctx: SubContext) -> str:
    """The string value of ``template``; raises :class:`SubstitutionError` when a substitution fails."""
    out = []
    for p in template:
        out.append(p if isinstance(p, str) else SUBSTITUTIONS[p.name].perform(ctx, p.args))
    return ''.join(out)


TRUE_WORDS = ('true', '1')
FALSE_WORDS = ('false', '0')


def condition_value(text: str) -> bool:
    """``if``/``unless`` semantics of ``launch``: 'true'/'1' or 'false'/'0', case and spaces ignored."""
    t = text.strip().lower()
    if t in TRUE_WORDS:
        return True
    if t in FALSE_WORDS:
        return False
    raise SubstitutionError(f"condition evaluates to {text!r}, expected one of 'true', '1', 'false', '0'")


def to_bool(text: str) -> bool:
    """Typed bool coercion of ``launch`` (``respawn``, ``$(not ...)``): '1'/'0' or a YAML boolean."""
    import yaml

    t = 'true' if text == '1' else 'false' if text == '0' else text
    try:
        value = yaml.safe_load(t) if t else None
    except yaml.YAMLError:
        value = None
    if not isinstance(value, bool):
        raise SubstitutionError(f'{text!r} is not a boolean (use true/false or 1/0)')
    return value


def _var(ctx: SubContext, args: tuple[Template, ...]) -> str:
    name = perform(args[0], ctx)
    if name in ctx.configs:
        return ctx.configs[name]
    if len(args) == 2:
        return perform(args[1], ctx)
    raise SubstitutionError(
        f"launch argument '{name}' is not set",
        f'pass it on the command line ({name}:=VALUE), declare it with a default '
        f"(- arg: {{name: {name}, default: '...'}}) or give a default here ($(var {name} DEFAULT))")


def _env(ctx: SubContext, args: tuple[Template, ...]) -> str:
    name = perform(args[0], ctx)
    if name in ctx.env:
        return ctx.env[name]
    if len(args) == 2:
        return perform(args[1], ctx)
    raise SubstitutionError(f"environment variable '{name}' is not set",
                            f"set it, or give a default: $(env {name} DEFAULT) ('' for empty)")


def package_prefix(pkg: str) -> str:
    """The ament prefix holding ``pkg``, with an error that says how to fix the usual causes."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        return get_package_prefix(pkg)
    except (PackageNotFoundError, ValueError) as exc:
        prefixes = os.environ.get('AMENT_PREFIX_PATH', '')
        raise SubstitutionError(
            f"package '{pkg}' not found ({exc})",
            f"AMENT_PREFIX_PATH={prefixes or '(unset)'}\n"
            'build it and source install/setup.bash (or activate .venv), or check the spelling') from None


def _find_pkg_share(ctx: SubContext, args: tuple[Template, ...]) -> str:
    pkg = perform(args[0], ctx)
    return os.path.join(package_prefix(pkg), 'share', pkg)


def _find_pkg_prefix(ctx: SubContext, args: tuple[Template, ...]) -> str:
    return package_prefix(perform(args[0], ctx))


def executable_in_package(pkg: str, exe: str) -> str:
    """``<prefix>/lib/<pkg>/<exe>`` as ``ros2 run`` finds it; errors list what the package does have."""
    libdir = os.path.join(package_prefix(pkg), 'lib', pkg)
    path = os.path.join(libdir, exe)
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    try:
        have = sorted(f for f in os.listdir(libdir)
                      if os.path.isfile(os.path.join(libdir, f)) and os.access(os.path.join(libdir, f), os.X_OK))
    except OSError:
        have = []
    why = 'is not executable' if os.path.isfile(path) else 'does not exist'
    raise SubstitutionError(f"executable '{exe}' not found in package '{pkg}' ({path} {why})",
                            f"executables of '{pkg}': {', '.join(have) if have else '(none)'}")


def _exec_in_pkg(ctx: SubContext, args: tuple[Template, ...]) -> str:
    return executable_in_package(perform(args[1], ctx), perform(args[0], ctx))


def _find_exec(ctx: SubContext, args: tuple[Template, ...]) -> str:
    name = perform(args[0], ctx)
    found = shutil.which(name, path=ctx.env.get('PATH'))
    if found is None:
        raise SubstitutionError(f"executable '{name}' not found on PATH")
    return found


def _anon(ctx: SubContext, args: tuple[Template, ...]) -> str:
    base = perform(args[0], ctx)
    if base not in ctx.anon:
        # Same recipe as launch's AnonName: unique per host, launcher and call, valid as a node name.
        name = f'{base}_{socket.gethostname()}_{os.getpid()}_{random.randint(0, sys.maxsize)}'
        ctx.anon[base] = re.sub(r'[^A-Za-z0-9_]', '_', name)
    return ctx.anon[base]


def _dirname(ctx: SubContext, args: tuple[Template, ...]) -> str:
    return os.path.dirname(ctx.launch_file)


def _filename(ctx: SubContext, args: tuple[Template, ...]) -> str:
    return ctx.launch_file


def _eval(ctx: SubContext, args: tuple[Template, ...]) -> str:
    expression = perform(args[0], ctx)
    modules = ['math']
    if len(args) == 2:
        modules = [m.strip() for m in perform(args[1], ctx).split(',') if m.strip()]
    scope: dict[str, object] = {}
    for name in modules:
        module = importlib.import_module(name)
        if module is math:  # launch lets expressions use math's names unqualified
            scope.update(vars(math))
        scope[name] = module
    try:
        return str(eval(expression, {}, scope))  # noqa: S307 - the launch file is the user's own code
    except Exception as exc:  # noqa: BLE001 - any error of the user's expression is told as a substitution error
        raise SubstitutionError(f'$(eval) of {expression!r} failed: {type(exc).__name__}: {exc}') from None


def _bool_arg(ctx: SubContext, arg: Template) -> bool:
    return to_bool(perform(arg, ctx))


def _not(ctx: SubContext, args: tuple[Template, ...]) -> str:
    return str(not _bool_arg(ctx, args[0])).lower()


def _and(ctx: SubContext, args: tuple[Template, ...]) -> str:
    return str(_bool_arg(ctx, args[0]) and _bool_arg(ctx, args[1])).lower()


def _or(ctx: SubContext, args: tuple[Template, ...]) -> str:
    return str(_bool_arg(ctx, args[0]) or _bool_arg(ctx, args[1])).lower()


def _any(ctx: SubContext, args: tuple[Template, ...]) -> str:
    return str(any(_bool_arg(ctx, a) for a in args)).lower()


def _all(ctx: SubContext, args: tuple[Template, ...]) -> str:
    return str(all(_bool_arg(ctx, a) for a in args)).lower()


def _equal(left: str, right: str) -> bool:
    # launch compares booleans as booleans and numbers with a tolerance.
    words = TRUE_WORDS + FALSE_WORDS
    if left.lower() in words and right.lower() in words:
        return (left.lower() in TRUE_WORDS) == (right.lower() in TRUE_WORDS)
    try:
        return math.isclose(float(left), float(right))
    except ValueError:
        return left == right


def _equals(ctx: SubContext, args: tuple[Template, ...]) -> str:
    return str(_equal(perform(args[0], ctx), perform(args[1], ctx))).lower()


def _not_equals(ctx: SubContext, args: tuple[Template, ...]) -> str:
    return str(not _equal(perform(args[0], ctx), perform(args[1], ctx))).lower()


def _if(ctx: SubContext, args: tuple[Template, ...]) -> str:
    if _bool_arg(ctx, args[0]):
        return perform(args[1], ctx)
    return perform(args[2], ctx) if len(args) == 3 else ''


def _command(ctx: SubContext, args: tuple[Template, ...]) -> str:
    cmd = perform(args[0], ctx)
    on_stderr = perform(args[1], ctx) if len(args) == 2 else 'fail'
    if on_stderr not in ('fail', 'ignore', 'warn', 'capture'):
        raise SubstitutionError(f"$(command): on_stderr is {on_stderr!r}; use fail, ignore, warn or capture")
    stderr = subprocess.STDOUT if on_stderr == 'capture' else subprocess.PIPE
    try:
        res = subprocess.run(shlex.split(cmd), stdout=subprocess.PIPE, stderr=stderr, text=True,
                             env=dict(ctx.env), timeout=60)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise SubstitutionError(f'$(command {cmd}) could not run: {exc}') from None
    if res.returncode != 0:
        raise SubstitutionError(f'$(command {cmd}) exited with code {res.returncode}: {res.stderr or ""}'.strip())
    if res.stderr and on_stderr == 'fail':
        raise SubstitutionError(f'$(command {cmd}) wrote to stderr: {res.stderr.strip()}')
    if res.stderr and on_stderr == 'warn':
        print(f'[WARNING] [launch]: $(command {cmd}) wrote to stderr: {res.stderr.strip()}', file=sys.stderr)
    return res.stdout


def _file_content(ctx: SubContext, args: tuple[Template, ...]) -> str:
    path = perform(args[0], ctx)
    try:
        with open(path) as f:
            return f.read()
    except OSError as exc:
        raise SubstitutionError(f'$(file-content): cannot read {path}: {exc.strerror}') from None


def _log_dir(ctx: SubContext, args: tuple[Template, ...]) -> str:
    return ctx.log_dir


SUBSTITUTIONS: dict[str, SubSpec] = {
    'var': SubSpec(1, 2, _var, '$(var NAME [DEFAULT])'),
    'env': SubSpec(1, 2, _env, '$(env NAME [DEFAULT])'),
    'find-pkg-share': SubSpec(1, 1, _find_pkg_share, '$(find-pkg-share PACKAGE)'),
    'find-pkg-prefix': SubSpec(1, 1, _find_pkg_prefix, '$(find-pkg-prefix PACKAGE)'),
    'exec-in-pkg': SubSpec(2, 2, _exec_in_pkg, '$(exec-in-pkg EXECUTABLE PACKAGE)'),
    'find-exec': SubSpec(1, 1, _find_exec, '$(find-exec NAME)'),
    'anon': SubSpec(1, 1, _anon, '$(anon NAME)'),
    'dirname': SubSpec(0, 0, _dirname, '$(dirname)'),
    'filename': SubSpec(0, 0, _filename, '$(filename)'),
    'eval': SubSpec(1, 2, _eval, "$(eval 'PYTHON EXPRESSION' [MODULES])"),
    'not': SubSpec(1, 1, _not, '$(not VALUE)'),
    'and': SubSpec(2, 2, _and, '$(and A B)'),
    'or': SubSpec(2, 2, _or, '$(or A B)'),
    'any': SubSpec(0, None, _any, '$(any A B ...)'),
    'all': SubSpec(0, None, _all, '$(all A B ...)'),
    'equals': SubSpec(2, 2, _equals, '$(equals A B)'),
    'not-equals': SubSpec(2, 2, _not_equals, '$(not-equals A B)'),
    'if': SubSpec(2, 3, _if, '$(if CONDITION THEN [ELSE])'),
    'command': SubSpec(1, 2, _command, '$(command CMD [fail|ignore|warn|capture])'),
    'file-content': SubSpec(1, 1, _file_content, '$(file-content PATH)'),
    'launch_log_dir': SubSpec(0, 0, _log_dir, '$(launch_log_dir)'),
    'log_dir': SubSpec(0, 0, _log_dir, '$(log_dir)'),
}

#: ros2 launch knows these, this runner does not (they need a running ROS graph).
UNSUPPORTED = {'param': 'it reads a parameter of a running node'}


def _check(template: Template) -> None:
    import difflib

    for sub in subs_in(template):
        spec = SUBSTITUTIONS.get(sub.name)
        if spec is None:
            if sub.name in UNSUPPORTED:
                raise SubstitutionError(f'$({sub.name}) is a ros2 launch substitution that autopilot launch '
                                        f'does not support: {UNSUPPORTED[sub.name]}')
            close = difflib.get_close_matches(sub.name, SUBSTITUTIONS, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ''
            raise SubstitutionError(f"unknown substitution '$({sub.name} ...)'",
                                    f"{hint}known substitutions: {', '.join(sorted(SUBSTITUTIONS))}")
        n = len(sub.args)
        if n < spec.min_args or (spec.max_args is not None and n > spec.max_args):
            raise SubstitutionError(f"$({sub.name}) takes {_count(spec)}, got {n}", f'usage: {spec.usage}')


def _count(spec: SubSpec) -> str:
    if spec.max_args is None:
        return f'at least {spec.min_args} arguments'
    if spec.min_args == spec.max_args:
        return f"{spec.min_args} argument{'s' if spec.min_args != 1 else ''}"
    return f'{spec.min_args} to {spec.max_args} arguments'


# ---------------------------------------------------------------------------------------------- describe

_DESCRIBE = {'var': 'LaunchConfig', 'env': 'EnvVar', 'find-pkg-share': 'FindPackageShare',
             'find-pkg-prefix': 'FindPackagePrefix', 'anon': 'AnonName', 'eval': 'PythonExpr',
             'dirname': 'ThisLaunchFileDir', 'filename': 'ThisLaunchFile', 'command': 'Command'}


def describe(template: Template) -> str:
    """``launch``'s describe() style: ``'text' + LaunchConfig('x')``, as ``ros2 launch -s`` prints defaults."""
    if not template:
        return "''"
    out = []
    for p in template:
        if isinstance(p, str):
            out.append(f"'{p}'")
        else:
            inner = ', '.join(describe(a) for a in p.args)
            out.append(f'{_DESCRIBE.get(p.name, p.name)}({inner})')
    return ' + '.join(out)


def split_cmdline(template: Template) -> list[Template]:
    """Split a command line (``cmd``, ``args``, ``ros_args``) into arguments, as ``launch`` does.

    Literal text is split shell-style; a substitution's value is never split, and it joins the text it
    touches (``$(find-pkg-share p)/cfg.yaml`` is one argument).
    """
    args: list[Template] = []
    current: list[Part] = []
    for p in template:
        if isinstance(p, Sub):
            current.append(p)
            continue
        try:
            tokens = shlex.split(p)
        except ValueError as exc:
            raise SubstitutionError(f'cannot split the command line: {exc} in {p!r}',
                                    'quotes must open and close within the text between substitutions') from None
        if not tokens:  # only spaces: a separator
            if current:
                args.append(tuple(current))
                current = []
            continue
        if p[0].isspace() and current:
            args.append(tuple(current))
            current = []
        current.append(tokens[0])
        if len(tokens) > 1:
            args.append(_merge(current))
            args.extend((t,) for t in tokens[1:-1])
            current = [tokens[-1]]
        if p[-1].isspace():
            args.append(_merge(current))
            current = []
    if current:
        args.append(_merge(current))
    return args
