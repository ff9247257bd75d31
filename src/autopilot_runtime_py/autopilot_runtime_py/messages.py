"""Interfaces by name, and ROS messages to and from YAML/dicts: what rosidl_runtime_py does, for the pip path.

rosidl_runtime_py (used by ros2cli for ``topic pub``/``echo`` and ``service call``) is not on PyPI, so this
module covers the same ground on the metadata every generated rclpy message class carries
(``get_fields_and_field_types()``, ``SLOT_TYPES`` with rosidl_parser definitions) and on the ament index:

* :func:`get_interface` / :func:`get_message` / :func:`get_service` / :func:`get_action`: import a class from
  ``pkg/msg/Name`` or ``pkg/Name``; a missing package names the package to install
  (:class:`InterfaceNotFoundError`).
* :func:`set_message_fields` / :func:`message_from_dict`: fill a message from a YAML mapping. Values are
  checked here, field by field, before rclpy's setters see them, so a bad value is a :class:`MessageValueError`
  (a ValueError) or :class:`MessageTypeError` (a TypeError) naming the field path, the value and the expected
  type; an unknown field lists the valid ones.
* :func:`message_to_dict`, :func:`message_to_yaml`, :func:`message_to_csv`: the output of ``ros2 topic echo``
  (same YAML layout, truncation, ``--no-arr``/``--no-str`` placeholders, CSV flattening).
* :func:`list_interfaces`, :func:`interface_path`, :func:`interface_text`: ``ros2 interface list/show`` from the
  ``rosidl_interfaces`` resources of the ament index, nested types expanded and tab-indented.
"""

from __future__ import annotations

import array
import importlib
import importlib.util
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy
import yaml
from rosidl_parser.definition import (
    AbstractNestedType,
    AbstractString,
    AbstractWString,
    Array,
    BasicType,
    BoundedSequence,
    BoundedString,
    BoundedWString,
    NamespacedType,
    UnboundedSequence,
)

KINDS = ('msg', 'srv', 'action')
_PKG_RE = re.compile(r'^[a-z][a-z0-9_]*$')
_NAME_RE = re.compile(r'^[A-Za-z][A-Za-z0-9_]*$')


# --------------------------------------------------------------------------------------------- errors

class InterfaceNotFoundError(LookupError):
    """An interface type that cannot be found or imported; the message says what to install or type."""


class MessageValueError(ValueError):
    """A value that does not fit its field (range, size, unknown field). ``path`` is the field path."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"field '{path}': {message}" if path else message)
        self.path = path


class MessageTypeError(TypeError):
    """A value of the wrong Python/YAML type for its field. ``path`` is the field path."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"field '{path}': {message}" if path else message)
        self.path = path


def install_hint(package: str) -> str:
    """One sentence telling how to get ``package``: our own packages come from the workspace build."""
    if package.startswith('autopilot_'):
        return (f'{package} is not built or not on the path: build the workspace (scripts/setup.py or colcon build) '
                f'and source install/setup.bash')
    deb = f"ros-{os.environ.get('ROS_DISTRO') or 'jazzy'}-{package.replace('_', '-')}"
    return f'{package} is not installed: pip install {deb} (wheels) or apt install {deb} (ROS install)'


# ------------------------------------------------------------------------------------ names and lookup

def parse_type_name(name: str, kind: str | None = None) -> tuple[str, str | None, str]:
    """Split ``pkg/msg/Name`` or ``pkg/Name`` into (package, kind or None, Name), validating each part.

    ``kind`` is the expected kind; a three-part name of another kind is an error.
    """
    parts = name.strip().split('/')
    if len(parts) == 2:
        pkg, found_kind, base = parts[0], None, parts[1]
    elif len(parts) == 3:
        pkg, found_kind, base = parts
        if found_kind not in KINDS:
            raise InterfaceNotFoundError(f"invalid type name '{name}': the middle part must be one of "
                                         f"{', '.join(KINDS)}")
    else:
        raise InterfaceNotFoundError(f"invalid type name '{name}': expected 'package/{kind or 'msg'}/Name' "
                                     f"or 'package/Name'")
    if not _PKG_RE.match(pkg):
        raise InterfaceNotFoundError(f"invalid type name '{name}': '{pkg}' is not a valid package name")
    if not _NAME_RE.match(base):
        raise InterfaceNotFoundError(f"invalid type name '{name}': '{base}' is not a valid interface name")
    if kind is not None and found_kind is not None and found_kind != kind:
        raise InterfaceNotFoundError(f"'{name}' is a {found_kind} type, expected a {kind} type "
                                     f"(e.g. '{pkg}/{kind}/{base}')")
    return pkg, found_kind, base


def _import_kind_module(pkg: str, kind: str) -> Any | None:
    """The module ``pkg.kind`` or None when the package has no such kind; raise when the package is missing."""
    try:
        if importlib.util.find_spec(pkg) is None:
            raise InterfaceNotFoundError(install_hint(pkg))
    except (ImportError, ValueError) as exc:
        raise InterfaceNotFoundError(f'{install_hint(pkg)} ({exc})') from None
    try:
        return importlib.import_module(f'{pkg}.{kind}')
    except ModuleNotFoundError as exc:
        if exc.name in (f'{pkg}.{kind}', pkg):
            return None
        raise InterfaceNotFoundError(f'cannot import {pkg}.{kind}: {exc}') from None
    except ImportError as exc:  # a generated module whose C typesupport library cannot be loaded
        raise InterfaceNotFoundError(f'cannot import {pkg}.{kind}: {exc}; {install_hint(pkg)}') from None


def _is_kind(cls: Any, kind: str) -> bool:
    if kind == 'msg':
        return hasattr(cls, 'SLOT_TYPES')
    if kind == 'srv':
        return hasattr(cls, 'Request') and hasattr(cls, 'Response')
    return all(hasattr(cls, a) for a in ('Goal', 'Result', 'Feedback'))


def get_interface(name: str, kind: str | None = None) -> Any:
    """The generated class of ``name`` (``pkg/msg/Name``, ``pkg/srv/Name``, ``pkg/action/Name`` or ``pkg/Name``).

    With a two-part name, ``kind`` (or else msg, srv, action in turn) says where to look.
    Raises InterfaceNotFoundError with a one-line message naming the package to install or the types that exist.
    """
    pkg, found_kind, base = parse_type_name(name, kind)
    kinds = [found_kind] if found_kind else ([kind] if kind else list(KINDS))
    modules = {}
    for k in kinds:
        module = _import_kind_module(pkg, k)
        if module is None:
            continue
        modules[k] = module
        cls = getattr(module, base, None)
        if cls is not None and isinstance(cls, type) and _is_kind(cls, k):
            return cls
    wanted = ' or '.join(kinds) if len(kinds) == 1 else 'interface'
    if not modules:
        raise InterfaceNotFoundError(f"package '{pkg}' has no {wanted} types")
    available = sorted(f'{k}/{n}' for k, m in modules.items() for n in dir(m)
                       if not n.startswith('_') and isinstance(getattr(m, n), type) and _is_kind(getattr(m, n), k))
    raise InterfaceNotFoundError(f"unknown {wanted} type '{name}': package '{pkg}' has {_listing(available)}")


def _listing(names: list[str], limit: int = 20) -> str:
    if not names:
        return 'none'
    more = f' ... ({len(names) - limit} more)' if len(names) > limit else ''
    return ', '.join(names[:limit]) + more


def get_message(name: str) -> Any:
    return get_interface(name, 'msg')


def get_service(name: str) -> Any:
    return get_interface(name, 'srv')


def get_action(name: str) -> Any:
    return get_interface(name, 'action')


def type_name(cls_or_msg: Any) -> str:
    """``pkg/kind/Name`` of a generated class or instance (``std_msgs/msg/String``)."""
    cls = cls_or_msg if isinstance(cls_or_msg, type) else type(cls_or_msg)
    parts = cls.__module__.split('.')
    return f'{parts[0]}/{parts[1]}/{cls.__name__}'


def _namespaced_name(t: NamespacedType) -> str:
    return '/'.join(t.namespaced_name())


def _class_of(t: NamespacedType) -> Any:
    module = importlib.import_module('.'.join(t.namespaces))
    return getattr(module, t.name)


def fields_of(cls_or_msg: Any) -> dict[str, Any]:
    """Field name -> rosidl_parser type, in declaration order."""
    return dict(zip(cls_or_msg.get_fields_and_field_types().keys(), cls_or_msg.SLOT_TYPES, strict=True))


# --------------------------------------------------------------------------------------- type naming

def field_type_name(t: Any) -> str:
    """A rosidl type as a user reads it in a .msg file: ``uint8``, ``string<=10``, ``float64[9]``, ``std_msgs/msg/Header``."""
    if isinstance(t, BasicType):
        return _BASIC_MSG_NAMES.get(t.typename, t.typename)
    if isinstance(t, BoundedString):
        return f'string<={t.maximum_size}'
    if isinstance(t, BoundedWString):
        return f'wstring<={t.maximum_size}'
    if isinstance(t, AbstractString):
        return 'string'
    if isinstance(t, AbstractWString):
        return 'wstring'
    if isinstance(t, NamespacedType):
        return _namespaced_name(t)
    if isinstance(t, Array):
        return f'{field_type_name(t.value_type)}[{t.size}]'
    if isinstance(t, BoundedSequence):
        return f'{field_type_name(t.value_type)}[<={t.maximum_size}]'
    if isinstance(t, UnboundedSequence):
        return f'{field_type_name(t.value_type)}[]'
    return str(t)


_BASIC_MSG_NAMES = {'boolean': 'bool', 'octet': 'byte', 'float': 'float32', 'double': 'float64',
                    'long double': 'float128', 'short': 'int16', 'unsigned short': 'uint16', 'long': 'int32',
                    'unsigned long': 'uint32', 'long long': 'int64', 'unsigned long long': 'uint64'}
_INT_RANGES = {
    'int8': (-2 ** 7, 2 ** 7 - 1), 'uint8': (0, 2 ** 8 - 1), 'int16': (-2 ** 15, 2 ** 15 - 1),
    'uint16': (0, 2 ** 16 - 1), 'int32': (-2 ** 31, 2 ** 31 - 1), 'uint32': (0, 2 ** 32 - 1),
    'int64': (-2 ** 63, 2 ** 63 - 1), 'uint64': (0, 2 ** 64 - 1),
    'short': (-2 ** 15, 2 ** 15 - 1), 'unsigned short': (0, 2 ** 16 - 1), 'long': (-2 ** 31, 2 ** 31 - 1),
    'unsigned long': (0, 2 ** 32 - 1), 'long long': (-2 ** 63, 2 ** 63 - 1),
    'unsigned long long': (0, 2 ** 64 - 1),
}
_FLOAT_MAX = {'float': 3.402823466e+38, 'double': sys.float_info.max, 'long double': sys.float_info.max}
# array.array type codes rclpy uses for sequences of numbers, and numpy dtypes for fixed-size arrays
_TYPECODES = {'int8': 'b', 'uint8': 'B', 'int16': 'h', 'uint16': 'H', 'int32': 'i', 'uint32': 'I',
              'int64': 'q', 'uint64': 'Q', 'float': 'f', 'double': 'd'}
_DTYPES = {'int8': numpy.int8, 'uint8': numpy.uint8, 'int16': numpy.int16, 'uint16': numpy.uint16,
           'int32': numpy.int32, 'uint32': numpy.uint32, 'int64': numpy.int64, 'uint64': numpy.uint64,
           'float': numpy.float32, 'double': numpy.float64}


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + '...'
    return f'{type(value).__name__} {text}'


# ------------------------------------------------------------------------------- dict/YAML -> message

def parse_yaml_mapping(text: str | None, what: str = 'values') -> dict:
    """Parse ``text`` as a YAML mapping (empty -> {}); malformed YAML is a MessageValueError, a non-mapping a
    MessageTypeError, each one line."""
    if text is None or not text.strip():
        return {}
    try:
        data = yaml.safe_load(text)
    except (ValueError, RecursionError) as exc:  # a bad date (2024-13-01), nesting too deep
        raise MessageValueError('', f'malformed YAML in {what}: {exc}: {text[:80]!r}') from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, 'problem_mark', None)
        where = f' (line {mark.line + 1}, column {mark.column + 1})' if mark is not None else ''
        problem = getattr(exc, 'problem', None) or str(exc).splitlines()[0]
        raise MessageValueError('', f'malformed YAML in {what}: {problem}{where}: {text!r}') from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MessageTypeError('', f"{what} must be a YAML mapping of field names to values, e.g. 'data: hello' or "
                         f"'{{a: 1, b: 2}}'; got {_describe(data)}")
    return data


def set_message_fields(msg: Any, values: Mapping[str, Any], *, expand_header_auto: bool = False,
                       expand_time_now: bool = False, path: str = '') -> list[Callable[[Any], None]]:
    """Set the fields of ``msg`` from the mapping ``values`` (fields not named keep their values).

    Accepted per field type: bool -> bool; integers -> int in range; floats -> int or float (float32 range
    checked); string -> str within its bound; byte -> int 0..255 or a one-character str/bytes; nested message ->
    mapping (or an instance); arrays/sequences -> list/tuple/numpy array (bytes too for byte and uint8 arrays)
    of the right length; builtin_interfaces/Time and Duration also take a number of seconds.
    With ``expand_header_auto`` a std_msgs/Header given as ``auto``, and with ``expand_time_now`` a Time
    given as ``now``, are stamped by the returned setters (call each with a Time; ``ros2 topic pub`` does).
    Raises MessageValueError / MessageTypeError naming the field; ``msg`` may then be partly filled.
    """
    stampers: list[Callable[[Any], None]] = []
    _fill(msg, values, path, stampers, expand_header_auto, expand_time_now)
    return stampers


def message_from_dict(cls: Any, values: Mapping[str, Any] | None, *, expand_header_auto: bool = False,
                      expand_time_now: bool = False) -> Any:
    """A new ``cls`` message filled from ``values`` (see set_message_fields)."""
    msg = cls()
    set_message_fields(msg, values or {}, expand_header_auto=expand_header_auto, expand_time_now=expand_time_now)
    return msg


def _fill(msg: Any, values: Any, path: str, stampers: list, auto: bool, now: bool) -> None:
    if not isinstance(values, Mapping):
        raise MessageTypeError(path, f'expected a mapping of the fields of {type_name(msg)} '
                                     f'({", ".join(fields_of(msg)) or "no fields"}), got {_describe(values)}')
    slots = fields_of(msg)
    for key, value in values.items():
        # A key that is no identifier (YAML allows any) is shown quoted, so the error stays one line.
        shown = key if isinstance(key, str) and key.isidentifier() else repr(key)
        sub = f'{path}.{shown}' if path else shown
        if key not in slots:
            raise MessageValueError(sub, f'{type_name(msg)} has no field {key!r}; valid fields: '
                                         f'{", ".join(slots) or "none"}')
        setattr(msg, key, _convert(value, slots[key], sub, stampers, auto, now, msg, key))


def _convert(value: Any, t: Any, path: str, stampers: list, auto: bool, now: bool,
             owner: Any = None, field: str | None = None) -> Any:
    if isinstance(t, NamespacedType):
        return _convert_nested_message(value, t, path, stampers, auto, now, owner, field)
    if isinstance(t, AbstractNestedType):
        return _convert_array(value, t, path, stampers, auto, now)
    if isinstance(t, (AbstractString, AbstractWString)):
        if not isinstance(value, str):
            raise MessageTypeError(path, f'expected {field_type_name(t)}, got {_describe(value)}'
                                   + (' (quote it to make it a string)' if isinstance(value, (int, float)) else ''))
        limit = getattr(t, 'maximum_size', None)
        if limit is not None and len(value) > limit:
            raise MessageValueError(path, f'string of length {len(value)} is longer than the bound of '
                                          f'{field_type_name(t)}: {_describe(value)}')
        return value
    if isinstance(t, BasicType):
        return _convert_basic(value, t.typename, path)
    raise MessageTypeError(path, f'unsupported field type {t!r}')


def _convert_basic(value: Any, typename: str, path: str) -> Any:
    expected = _BASIC_MSG_NAMES.get(typename, typename)
    if typename == 'boolean':
        if isinstance(value, (bool, numpy.bool_)):
            return bool(value)
        raise MessageTypeError(path, f'expected bool (true/false), got {_describe(value)}')
    if typename in _INT_RANGES:
        if isinstance(value, (bool, numpy.bool_)) or not isinstance(value, (int, numpy.integer)):
            raise MessageTypeError(path, f'expected {expected} (an integer), got {_describe(value)}')
        lo, hi = _INT_RANGES[typename]
        if not lo <= int(value) <= hi:
            raise MessageValueError(path, f'{int(value)} is out of range for {expected} [{lo}, {hi}]')
        return int(value)
    if typename in _FLOAT_MAX:
        if isinstance(value, (bool, numpy.bool_)) or not isinstance(value, (int, float, numpy.integer,
                                                                             numpy.floating)):
            raise MessageTypeError(path, f'expected {expected} (a number), got {_describe(value)}')
        try:
            number = float(value)
        except OverflowError:
            raise MessageValueError(path, f'{value} is out of range for {expected}') from None
        if math.isfinite(number) and abs(number) > _FLOAT_MAX[typename]:
            raise MessageValueError(path, f'{value} is out of range for {expected} '
                                          f'[-{_FLOAT_MAX[typename]:g}, {_FLOAT_MAX[typename]:g}]')
        return number
    if typename == 'octet':
        if isinstance(value, (bytes, bytearray)) and len(value) == 1:
            return bytes(value)
        if isinstance(value, str) and len(value) == 1 and ord(value) < 256:
            return bytes([ord(value)])  # the form message_to_dict (and ros2 echo) prints
        if isinstance(value, (int, numpy.integer)) and not isinstance(value, (bool, numpy.bool_)):
            if 0 <= int(value) <= 255:
                return bytes([int(value)])
            raise MessageValueError(path, f'{int(value)} is out of range for byte [0, 255]')
        raise MessageTypeError(path, f'expected byte (an integer 0..255 or one character), got {_describe(value)}')
    if typename in ('char', 'wchar'):
        limit = 256 if typename == 'char' else 0x110000
        if isinstance(value, str) and len(value) == 1 and ord(value) < limit:
            return value
        if isinstance(value, (int, numpy.integer)) and not isinstance(value, (bool, numpy.bool_)):
            if 0 <= int(value) < limit:
                return chr(int(value))
            raise MessageValueError(path, f'{int(value)} is out of range for {typename}')
        raise MessageTypeError(path, f'expected {typename} (one character), got {_describe(value)}')
    raise MessageTypeError(path, f'unsupported basic type {typename}')


_TIME_TYPES = ('builtin_interfaces/msg/Time', 'builtin_interfaces/msg/Duration')


def _convert_nested_message(value: Any, t: NamespacedType, path: str, stampers: list, auto: bool, now: bool,
                            owner: Any, field: str | None) -> Any:
    cls = _class_of(t)
    if isinstance(value, cls):
        return value
    name = _namespaced_name(t)
    if auto and name == 'std_msgs/msg/Header' and value == 'auto':
        header = cls()
        stampers.append(partial(setattr, header, 'stamp'))
        return header
    if now and name == 'builtin_interfaces/msg/Time' and value == 'now' and owner is not None and field is not None:
        stampers.append(partial(setattr, owner, field))
        return cls()
    if name in _TIME_TYPES and isinstance(value, (int, float)) and not isinstance(value, bool):
        # A number of seconds is the natural way to type a stamp or a duration.
        if not math.isfinite(value):
            raise MessageValueError(path, f'expected a finite number of seconds, got {value}')
        sec = math.floor(value)
        nanosec = int(round((value - sec) * 1e9))
        if nanosec >= 1_000_000_000:
            sec, nanosec = sec + 1, nanosec - 1_000_000_000
        lo, hi = _INT_RANGES['int32']
        if not lo <= sec <= hi:
            raise MessageValueError(path, f'{value} seconds is out of range for {name}')
        return cls(sec=int(sec), nanosec=nanosec)
    msg = cls()
    if not isinstance(value, Mapping):
        hint = " (or a number of seconds)" if name in _TIME_TYPES else ''
        raise MessageTypeError(path, f'expected a mapping for {name} with fields '
                                     f'{", ".join(fields_of(cls)) or "none"}{hint}, got {_describe(value)}')
    _fill(msg, value, path, stampers, auto, now)
    return msg


def _convert_array(value: Any, t: AbstractNestedType, path: str, stampers: list, auto: bool, now: bool) -> Any:
    vt = t.value_type
    vname = vt.typename if isinstance(vt, BasicType) else None
    if isinstance(value, (bytes, bytearray)) and vname in ('octet', 'uint8', 'char'):
        items: list = list(value)
    elif isinstance(value, numpy.ndarray):
        if value.ndim != 1:
            raise MessageTypeError(path, f'expected a one-dimensional array for {field_type_name(t)}, '
                                         f'got an array of shape {value.shape}')
        items = value.tolist()
    elif isinstance(value, (list, tuple, array.array)):
        items = list(value)
    else:
        raise MessageTypeError(path, f'expected a list for {field_type_name(t)}, got {_describe(value)}')
    if isinstance(t, Array) and len(items) != t.size:
        raise MessageValueError(path, f'expected exactly {t.size} elements for {field_type_name(t)}, '
                                      f'got {len(items)}')
    if isinstance(t, BoundedSequence) and len(items) > t.maximum_size:
        raise MessageValueError(path, f'expected at most {t.maximum_size} elements for {field_type_name(t)}, '
                                      f'got {len(items)}')
    converted = [_convert(v, vt, f'{path}[{i}]', stampers, auto, now) for i, v in enumerate(items)]
    # Hand rclpy's setters the containers they store, so they need not check every element again.
    if vname in _TYPECODES:
        if isinstance(t, Array):
            return numpy.array(converted, dtype=_DTYPES[vname])
        return array.array(_TYPECODES[vname], converted)
    return converted


# ------------------------------------------------------------------------------- message -> dict/YAML

def _abbreviate(value: Any, t: Any) -> str:
    vt = field_type_name(t.value_type) if isinstance(t, AbstractNestedType) else '?'
    if isinstance(t, Array):
        return f'<array type: {vt}[{t.size}]>'
    if isinstance(t, BoundedSequence):
        return f'<sequence type: {vt}[{t.maximum_size}], length: {len(value)}>'
    return f'<sequence type: {vt}, length: {len(value)}>'


def message_to_dict(msg: Any, *, truncate_length: int | None = None, no_arr: bool = False,
                    no_str: bool = False) -> dict:
    """An ordered dict of the fields of ``msg`` with plain Python values, as ``ros2 topic echo`` shows them.

    Arrays become lists, numpy scalars Python numbers, byte values one-character strings; strings and arrays
    longer than ``truncate_length`` are cut and end in ``'...'``; ``no_arr``/``no_str`` replace arrays and
    strings by a ``<... length: N>`` note.
    """
    return {name: value_to_plain(getattr(msg, name), t, truncate_length, no_arr, no_str)
            for name, t in fields_of(msg).items()}


def value_to_plain(value: Any, t: Any = None, truncate: int | None = None, no_arr: bool = False,
                   no_str: bool = False) -> Any:
    """A field value (message, array, number, string) as plain Python data; see message_to_dict."""
    if isinstance(value, bytes):
        text = ''.join(chr(c) for c in value)
        return text[:truncate] + '...' if truncate is not None and len(text) > truncate else text
    if isinstance(value, str):
        if no_str:
            return f'<string length: <{len(value)}>>'
        return value[:truncate] + '...' if truncate is not None and len(value) > truncate else value
    if isinstance(value, (list, tuple, array.array, numpy.ndarray)):
        if no_arr and t is not None:
            return _abbreviate(value, t)
        vt = t.value_type if isinstance(t, AbstractNestedType) else None
        items = value if truncate is None or len(value) <= truncate else value[:truncate]
        out = [value_to_plain(v, vt, truncate, no_arr, no_str) for v in items]
        if len(items) < len(value):
            out.append('...')
        return out
    if isinstance(value, (numpy.number, numpy.bool_)):
        return value.item()
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    return message_to_dict(value, truncate_length=truncate, no_arr=no_arr, no_str=no_str)


class _Dumper(yaml.SafeDumper):
    """A SafeDumper of our own, so nothing is registered on PyYAML's global dumpers."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # PyYAML writes a NEL (U+0085) raw inside a single-quoted scalar and reads it back as a line break:
    # double quotes (which escape it) make every string read back as it was.
    style = '"' if any(c in data for c in '\x85\u2028\u2029\ufeff') else None
    return dumper.represent_scalar('tag:yaml.org,2002:str', data, style=style)


_Dumper.add_representer(str, _represent_str)


def to_yaml(data: Any, *, flow_style: bool = False) -> str:
    """YAML text as ros2 prints it: block style, unicode kept, no line wrapping, field order kept."""
    return yaml.dump(data, Dumper=_Dumper, allow_unicode=True, width=sys.maxsize, default_flow_style=flow_style,
                     sort_keys=False)


def message_to_yaml(msg: Any, *, truncate_length: int | None = None, no_arr: bool = False, no_str: bool = False,
                    flow_style: bool = False) -> str:
    """``msg`` as the YAML document ``ros2 topic echo`` prints (without the ``---`` separator)."""
    return to_yaml(message_to_dict(msg, truncate_length=truncate_length, no_arr=no_arr, no_str=no_str),
                   flow_style=flow_style)


def message_to_csv(msg: Any, *, truncate_length: int | None = None, no_arr: bool = False,
                   no_str: bool = False) -> str:
    """All leaf values of ``msg``, depth first, separated by commas (``ros2 topic echo --csv``)."""
    return ','.join(_csv_value(getattr(msg, name), t, truncate_length, no_arr, no_str)
                    for name, t in fields_of(msg).items())


def _csv_value(value: Any, t: Any, truncate: int | None, no_arr: bool, no_str: bool) -> str:
    if isinstance(value, (list, tuple, array.array, numpy.ndarray)):
        if no_arr and t is not None:
            return _abbreviate(value, t)
        vt = t.value_type if isinstance(t, AbstractNestedType) else None
        parts = []
        for i, v in enumerate(value):
            if truncate is not None and i >= truncate:
                parts.append('...')
                break
            parts.append(_csv_value(v, vt, truncate, no_arr, no_str))
        return ','.join(parts)
    if isinstance(value, str) and no_str:
        return f'<string length: <{len(value)}>>'
    if isinstance(value, bytes):
        return str(value[:truncate] + b'...' if truncate is not None and len(value) > truncate else value)
    if isinstance(value, str):
        return value[:truncate] + '...' if truncate is not None and len(value) > truncate else value
    if isinstance(value, (numpy.number, numpy.bool_)):
        return str(value.item())
    if isinstance(value, (bool, int, float)):
        return str(value)
    return message_to_csv(value, truncate_length=truncate, no_arr=no_arr, no_str=no_str)


def resolve_field_path(cls: Any, dotted: str) -> list[str]:
    """Check ``a.b.c`` against the fields of ``cls`` (nested messages only); MessageValueError lists valid ones."""
    parts = [p for p in dotted.split('.') if p]
    if not parts:
        raise MessageValueError('', f"invalid field selection '{dotted}'")
    current: Any = cls
    for i, part in enumerate(parts):
        where = '.'.join(parts[:i + 1])
        if current is None:
            raise MessageValueError(where, f"'{'.'.join(parts[:i])}' is not a message, it has no fields")
        slots = fields_of(current)
        if part not in slots:
            raise MessageValueError(where, f'{type_name(current)} has no field {part!r}; valid fields: '
                                           f'{", ".join(slots) or "none"}')
        t = slots[part]
        current = _class_of(t) if isinstance(t, NamespacedType) else None
    return parts


# ---------------------------------------------------------------------------------- the ament index

def ament_prefixes() -> list[str]:
    """AMENT_PREFIX_PATH, plus this interpreter's prefix when it is an ament prefix (the wheels' venv).

    The wheels install their ament resources into the venv but nothing puts the venv on AMENT_PREFIX_PATH
    (../shared/ROS2-PIP.md); adding it here (and to os.environ, for ament_index_python and child processes)
    makes interface and package lookups work even from a shell where only the venv is activated.
    """
    prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    if (Path(sys.prefix) / 'share' / 'ament_index').is_dir() and sys.prefix not in prefixes:
        prefixes.append(sys.prefix)
        os.environ['AMENT_PREFIX_PATH'] = os.pathsep.join(prefixes)
    return prefixes


def interface_packages() -> dict[str, str]:
    """Package name -> prefix of every package that registers interfaces (``rosidl_interfaces`` resource)."""
    from ament_index_python import get_resources
    ament_prefixes()
    return get_resources('rosidl_interfaces')


def list_interfaces(kind: str, packages: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Package -> sorted names (``msg/Name``) of the interfaces of ``kind``, hidden (``_``) ones left out."""
    from ament_index_python import get_resource
    suffixes = {'msg': ('.msg', '.idl'), 'srv': ('.srv', '.idl'), 'action': ('.action', '.idl')}[kind]
    result: dict[str, list[str]] = {}
    for pkg in sorted(packages if packages is not None else interface_packages()):
        try:
            content, _ = get_resource('rosidl_interfaces', pkg)
        except LookupError:
            continue
        names = {line.rsplit('.', 1)[0] for line in content.splitlines()
                 if line.startswith(f'{kind}/') and line.endswith(suffixes) and '_' not in line}
        if names:
            result[pkg] = sorted(names)
    return result


def interface_path(name: str) -> Path:
    """The definition file (.msg/.srv/.action) of ``pkg/kind/Name`` or ``pkg/Name`` (kind probed in order)."""
    from ament_index_python import get_resource
    pkg, kind, base = parse_type_name(name)
    ament_prefixes()
    try:
        _, prefix = get_resource('packages', pkg)
    except LookupError:
        raise InterfaceNotFoundError(f"unknown package '{pkg}': {install_hint(pkg)}") from None
    for k in [kind] if kind else KINDS:
        path = Path(prefix) / 'share' / pkg / k / f'{base}.{k}'
        if path.is_file():
            return path
    existing = [n for k in KINDS for ns in list_interfaces(k, [pkg]).values() for n in ns]
    raise InterfaceNotFoundError(f"unknown interface '{name}': package '{pkg}' has {_listing(existing)}")


_PRIMITIVES = {'bool', 'byte', 'char', 'float32', 'float64', 'int8', 'uint8', 'int16', 'uint16', 'int32',
               'uint32', 'int64', 'uint64', 'string', 'wstring', 'time', 'duration'}


def _split_comment(line: str) -> tuple[str, str | None]:
    """(definition, trailing comment or None); a '#' inside a quoted default value is not a comment."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == '\\':
                continue
            if ch == quote:
                quote = None
        elif ch in ('"', "'"):
            quote = ch
        elif ch == '#':
            return line[:i].rstrip(), line[i:]
    return line.rstrip(), None


def _nested_type(definition: str, pkg: str) -> str | None:
    """``pkg/msg/Name`` of the message a field line refers to, or None for primitives and constants."""
    tokens = definition.split()
    if len(tokens) < 2 or '=' in definition.split(None, 1)[1].split()[0]:
        return None
    base = re.split(r'[\[<]', tokens[0], maxsplit=1)[0]
    if base in _PRIMITIVES:
        return None
    if '/' in base:
        p, n = base.split('/', 1)
        return f'{p}/msg/{n.split("/")[-1]}'
    if base == 'Header':
        return 'std_msgs/msg/Header'
    return f'{pkg}/msg/{base}'


def interface_text(name: str, *, comments: bool = True, nested_comments: bool = False) -> str:
    """The definition of ``name`` as ``ros2 interface show`` prints it: nested types expanded below their
    field, one tab deeper; comments and blank lines at the top level unless ``comments`` is false, in nested
    definitions only with ``nested_comments``."""
    lines: list[str] = []
    _append_interface(name, lines, comments, nested_comments, 0)
    return '\n'.join(lines) + '\n'


def _append_interface(name: str, out: list[str], comments: bool, nested_comments: bool, depth: int) -> None:
    path = interface_path(name)
    pkg = parse_type_name(name)[0]
    indent = '\t' * depth
    for raw in path.read_text().splitlines():
        raw = raw.rstrip()
        definition, comment = _split_comment(raw)
        if not comments:
            if not definition.strip():
                continue  # blank and comment-only lines
            text = definition.strip() if comment else raw
        else:
            text = raw
        out.append(f'{indent}{text}' if text else '')
        if definition.strip() and definition.strip() != '---':
            nested = _nested_type(definition.strip(), pkg)
            if nested:
                _append_interface(nested, out, nested_comments, nested_comments, depth + 1)
