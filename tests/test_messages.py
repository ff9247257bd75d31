"""autopilot_runtime_py.messages without a ROS graph: interface lookup, YAML/dict <-> message, interface text.

Includes hypothesis properties: values generated from each type's own rosidl metadata survive
dict -> message -> dict (and -> YAML -> message), and arbitrary junk always fails with a
MessageValueError/MessageTypeError that names the field, never with another exception.
"""

from __future__ import annotations

import math
from typing import Any

import numpy
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rosidl_parser.definition import (
    AbstractNestedType,
    AbstractString,
    AbstractWString,
    Array,
    BasicType,
    BoundedSequence,
    NamespacedType,
)

from autopilot_runtime_py import messages as m
from autopilot_runtime_py.messages import (
    InterfaceNotFoundError,
    MessageTypeError,
    MessageValueError,
    message_from_dict,
    message_to_dict,
)

ROUND_TRIP_TYPES = [
    'autopilot_msgs/msg/TrialData', 'autopilot_msgs/msg/GpioEvent', 'autopilot_msgs/msg/PilotStatus',
    'autopilot_msgs/msg/TrialAck', 'sensor_msgs/msg/CameraInfo', 'sensor_msgs/msg/Image',
    'sensor_msgs/msg/JoyFeedback', 'std_msgs/msg/ByteMultiArray', 'std_msgs/msg/Byte', 'std_msgs/msg/Char',
    'rcl_interfaces/msg/ParameterValue', 'rcl_interfaces/msg/ParameterDescriptor',
    'rmw_dds_common/msg/NodeEntitiesInfo', 'unique_identifier_msgs/msg/UUID',
    'geometry_msgs/msg/PoseWithCovariance', 'builtin_interfaces/msg/Duration',
]


# ------------------------------------------------------------------------------------------ lookup

def test_get_interface_accepts_both_name_forms() -> None:
    from std_msgs.msg import String
    from std_srvs.srv import SetBool

    assert m.get_message('std_msgs/msg/String') is String
    assert m.get_message('std_msgs/String') is String
    assert m.get_service('std_srvs/SetBool') is SetBool
    assert m.get_interface('std_srvs/SetBool') is SetBool
    assert m.get_action('autopilot_msgs/RunSession').__name__ == 'RunSession'
    assert m.type_name(String) == 'std_msgs/msg/String'
    assert m.type_name(SetBool.Request()) == 'std_srvs/srv/SetBool_Request'


def test_uninstalled_package_names_what_to_install() -> None:
    with pytest.raises(InterfaceNotFoundError) as exc:
        m.get_message('nav_msgs/msg/Odometry')
    text = str(exc.value)
    assert 'pip install ros-jazzy-nav-msgs' in text and 'apt install ros-jazzy-nav-msgs' in text
    assert 'colcon build' in m.install_hint('autopilot_things')


@pytest.mark.parametrize('name, kind, expected', [
    ('std_msgs/Strin', 'msg', "package 'std_msgs' has msg/Bool"),
    ('std_msgs/Strin', None, "unknown interface type 'std_msgs/Strin'"),
    ('std_msgs/srv/String', None, "package 'std_msgs' has no srv types"),
    ('String', 'msg', "expected 'package/msg/Name'"),
    ('std_msgs/foo/String', None, 'middle part must be one of msg, srv, action'),
    ('Std_Msgs/String', None, 'not a valid package name'),
    ('std_msgs/msg/1x', None, 'not a valid interface name'),
    ('std_srvs/srv/SetBool', 'msg', 'is a srv type, expected a msg type'),
])
def test_bad_type_names(name: str, kind: str | None, expected: str) -> None:
    with pytest.raises(InterfaceNotFoundError) as exc:
        m.get_interface(name, kind)
    assert expected in str(exc.value)
    assert '\n' not in str(exc.value)


def test_list_interfaces_from_the_ament_index() -> None:
    msgs = m.list_interfaces('msg')
    assert 'msg/TrialData' in msgs['autopilot_msgs'] and 'msg/String' in msgs['std_msgs']
    assert m.list_interfaces('srv')['std_srvs'] == ['srv/Empty', 'srv/SetBool', 'srv/Trigger']
    assert 'action/RunSession' in m.list_interfaces('action')['autopilot_msgs']
    assert 'autopilot_msgs' in m.interface_packages()


# ------------------------------------------------------------------------------------------ interface text

def test_interface_text_expands_nested_types() -> None:
    text = m.interface_text('autopilot_msgs/msg/TrialData')
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith('std_msgs/Header header'))
    assert lines[header + 1:header + 5] == ['\tbuiltin_interfaces/Time stamp', '\t\tint32 sec', '\t\tuint32 nanosec',
                                            '\tstring frame_id']
    assert lines[0].startswith('# One completed trial')  # top-level comments kept
    fields = next(i for i, line in enumerate(lines) if line.startswith('TrialField[] fields'))
    assert lines[fields + 1] == '\tuint8 TYPE_BOOL=1'  # nested comments dropped by default
    assert '\tstring name' in lines


def test_interface_text_comment_options_and_services() -> None:
    bare = m.interface_text('std_msgs/Header', comments=False)
    assert bare == 'builtin_interfaces/Time stamp\n\tint32 sec\n\tuint32 nanosec\nstring frame_id\n'
    srv = m.interface_text('std_srvs/srv/SetBool', comments=False)
    assert srv == 'bool data\n---\nbool success\nstring message\n'
    everything = m.interface_text('autopilot_msgs/TrialData', nested_comments=True)
    assert '\t# Standard metadata for higher-level stamped data types.' in everything.splitlines()
    with pytest.raises(InterfaceNotFoundError, match="unknown package 'nav_msgs'"):
        m.interface_text('nav_msgs/msg/Odometry')


# ------------------------------------------------------------------------------------------ filling

def trial_data() -> Any:
    return m.get_message('autopilot_msgs/msg/TrialData')


def test_fill_nested_sequences_and_time() -> None:
    msg = message_from_dict(trial_data(), {
        'header': {'stamp': 12.5, 'frame_id': 'rig'}, 'pilot': 'p1', 'trial_number': 7, 'step': 2,
        'fields': [{'name': 'rt', 'type': 2, 'int_value': 123456, 'unit': 'us'},
                   {'name': 'ok', 'type': 1, 'bool_value': True}]})
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 500_000_000)
    assert msg.fields[0].int_value == 123456 and msg.fields[1].bool_value is True
    assert msg.trial_number == 7 and msg.pilot == 'p1'


def test_fill_arrays_numpy_bytes_and_bounds() -> None:
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import ByteMultiArray

    info = message_from_dict(CameraInfo, {'k': numpy.arange(9.0), 'd': [1, 2.5], 'roi': {'width': 3}})
    assert info.k.dtype == numpy.float64 and info.k.tolist() == list(range(9)) and list(info.d) == [1.0, 2.5]
    image = message_from_dict(Image, {'data': b'\x00\x01\xff', 'height': 1})
    assert list(image.data) == [0, 1, 255]
    raw = message_from_dict(ByteMultiArray, {'data': [0, 'a', b'\x02']})
    assert raw.data == [b'\x00', b'a', b'\x02']
    uuid = message_from_dict(m.get_message('unique_identifier_msgs/UUID'), {'uuid': list(range(16))})
    assert uuid.uuid.dtype == numpy.uint8
    with pytest.raises(MessageValueError, match=r"field 'k': expected exactly 9 elements for float64\[9\], got 2"):
        message_from_dict(CameraInfo, {'k': [1, 2]})
    descriptor = m.get_message('rcl_interfaces/ParameterDescriptor')
    with pytest.raises(MessageValueError, match=r"field 'integer_range': expected at most 1 elements"):
        message_from_dict(descriptor, {'integer_range': [{}, {}]})
    entities = m.get_message('rmw_dds_common/NodeEntitiesInfo')
    with pytest.raises(MessageValueError, match=r"field 'node_name': string of length 300 is longer than the bound "
                                                r"of string<=256"):
        message_from_dict(entities, {'node_name': 'x' * 300})


def test_header_auto_and_time_now_are_stamped_later() -> None:
    from builtin_interfaces.msg import Time
    from rcl_interfaces.msg import ParameterEvent

    msg = trial_data()()
    stampers = m.set_message_fields(msg, {'header': 'auto'}, expand_header_auto=True)
    assert len(stampers) == 1
    stampers[0](Time(sec=5, nanosec=6))
    assert msg.header.stamp == Time(sec=5, nanosec=6)
    event = ParameterEvent()
    stampers = m.set_message_fields(event, {'stamp': 'now', 'node': '/x'}, expand_time_now=True)
    stampers[0](Time(sec=9))
    assert event.stamp.sec == 9 and event.node == '/x'
    with pytest.raises(MessageTypeError, match="field 'header': expected a mapping for std_msgs/msg/Header"):
        message_from_dict(trial_data(), {'header': 'auto'})  # only with expand_header_auto


@pytest.mark.parametrize('values, error, text', [
    ({'nope': 1}, MessageValueError, "field 'nope': autopilot_msgs/msg/TrialData has no field 'nope'; valid "
                                     "fields: header, start, pilot, subject"),
    ({'fields': [{'name': 'a', 'typo': 1}]}, MessageValueError, "field 'fields[0].typo'"),
    ({'pilot': 5}, MessageTypeError, "field 'pilot': expected string, got int 5 (quote it"),
    ({'trial_number': -1}, MessageValueError, "field 'trial_number': -1 is out of range for uint32 [0, 4294967295]"),
    ({'step': 1.5}, MessageTypeError, "field 'step': expected uint16 (an integer), got float 1.5"),
    ({'step': True}, MessageTypeError, "field 'step': expected uint16"),
    ({'header': {'stamp': {'sec': 'x'}}}, MessageTypeError, "field 'header.stamp.sec': expected int32"),
    ({'header': {'stamp': float('nan')}}, MessageValueError, "field 'header.stamp': expected a finite number"),
    ({'header': 3}, MessageTypeError, "field 'header': expected a mapping for std_msgs/msg/Header with fields "
                                      "stamp, frame_id"),
    ({'fields': 'x'}, MessageTypeError, "field 'fields': expected a list for autopilot_msgs/msg/TrialField[]"),
    ({'fields': [3]}, MessageTypeError, "field 'fields[0]': expected a mapping for autopilot_msgs/msg/TrialField"),
])
def test_fill_errors_name_field_value_and_type(values: dict, error: type, text: str) -> None:
    with pytest.raises(error) as exc:
        message_from_dict(trial_data(), values)
    assert text in str(exc.value)


def test_scalar_range_errors() -> None:
    joy = m.get_message('sensor_msgs/JoyFeedback')
    with pytest.raises(MessageValueError, match=r"field 'intensity': 1e\+39 is out of range for float32"):
        message_from_dict(joy, {'intensity': 1e39})
    assert message_from_dict(joy, {'intensity': float('inf')}).intensity == math.inf
    with pytest.raises(MessageValueError, match="field 'id': 256 is out of range for uint8"):
        message_from_dict(joy, {'id': 256})
    byte = m.get_message('std_msgs/Byte')
    with pytest.raises(MessageValueError, match="field 'data': 300 is out of range for byte"):
        message_from_dict(byte, {'data': 300})
    with pytest.raises(MessageValueError, match="field 'data': 1000.* is out of range for float64"):
        message_from_dict(m.get_message('std_msgs/Float64'), {'data': 10 ** 400})


def test_parse_yaml_mapping_errors_are_one_line() -> None:
    assert m.parse_yaml_mapping('') == {} and m.parse_yaml_mapping('{a: 1}') == {'a': 1}
    with pytest.raises(MessageValueError, match=r"malformed YAML in values: .*\(line 1, column 7\)") as exc:
        m.parse_yaml_mapping('{a: [1')
    assert '\n' not in str(exc.value)
    with pytest.raises(MessageTypeError, match='must be a YAML mapping'):
        m.parse_yaml_mapping('- 1\n- 2')


# ------------------------------------------------------------------------------------------ output

def test_yaml_output_matches_ros2_echo_layout() -> None:
    msg = message_from_dict(trial_data(), {'pilot': 'p1', 'fields': [{'name': 'rt', 'type': 2, 'int_value': 5}]})
    assert m.message_to_yaml(msg) == (
        "header:\n  stamp:\n    sec: 0\n    nanosec: 0\n  frame_id: ''\nstart:\n  sec: 0\n  nanosec: 0\npilot: p1\nsubject: ''\n"
        "session_id: ''\n"
        "trial_number: 0\ntask: ''\nprotocol: ''\nstep: 0\nstep_name: ''\nfields:\n- name: rt\n  type: 2\n"
        "  unit: ''\n  bool_value: false\n  int_value: 5\n  float_value: 0.0\n  string_value: ''\n")
    assert m.message_to_csv(msg) == '0,0,,0,0,p1,,,0,,,0,,rt,2,,False,5,0.0,'


def test_truncation_and_placeholders() -> None:
    from sensor_msgs.msg import CameraInfo, Image

    image = message_from_dict(Image, {'data': list(range(10)), 'encoding': 'mono8'})
    d = message_to_dict(image, truncate_length=3)
    assert d['data'] == [0, 1, 2, '...'] and d['encoding'] == 'mon...'
    d = message_to_dict(image, no_arr=True, no_str=True)
    assert d['data'] == '<sequence type: uint8, length: 10>' and d['encoding'] == '<string length: <5>>'
    assert message_to_dict(CameraInfo(), no_arr=True)['k'] == '<array type: float64[9]>'
    assert m.message_to_csv(image, truncate_length=2).endswith(',0,1,...')


def test_resolve_field_path() -> None:
    assert m.resolve_field_path(trial_data(), 'header.stamp.sec') == ['header', 'stamp', 'sec']
    with pytest.raises(MessageValueError, match="std_msgs/msg/Header has no field 'nope'; valid fields: stamp, "
                                                "frame_id"):
        m.resolve_field_path(trial_data(), 'header.nope')
    with pytest.raises(MessageValueError, match="'pilot' is not a message"):
        m.resolve_field_path(trial_data(), 'pilot.x')


# ------------------------------------------------------------------------------------------ properties

def _scalar_strategy(t: Any) -> st.SearchStrategy:
    if isinstance(t, (AbstractString, AbstractWString)):
        limit = getattr(t, 'maximum_size', None)
        return st.text(max_size=min(limit or 20, 20))
    name = t.typename
    if name == 'boolean':
        return st.booleans()
    if name in m._INT_RANGES:
        lo, hi = m._INT_RANGES[name]
        return st.integers(lo, hi)
    if name == 'float':  # rosidl's bound (3.402823466e+38) is a hair under FLT_MAX
        return st.floats(width=32, allow_nan=False, min_value=-3.3999999521443642e+38,
                         max_value=3.3999999521443642e+38) | st.sampled_from(
            [math.inf, -math.inf])
    if name == 'double':
        return st.floats(allow_nan=False)
    if name == 'octet':
        return st.characters(max_codepoint=255)  # the form echo prints (and ros2 too)
    if name == 'char':
        return st.characters(max_codepoint=255)
    raise AssertionError(name)


def _value_strategy(t: Any, depth: int = 0) -> st.SearchStrategy:
    if isinstance(t, NamespacedType):
        return _message_strategy(m._class_of(t), depth + 1)
    if isinstance(t, AbstractNestedType):
        element = _value_strategy(t.value_type, depth)
        if isinstance(t, Array):
            return st.lists(element, min_size=t.size, max_size=t.size)
        limit = t.maximum_size if isinstance(t, BoundedSequence) else 4
        return st.lists(element, max_size=min(limit, 4 if depth < 2 else 1))
    assert isinstance(t, (BasicType, AbstractString, AbstractWString))
    return _scalar_strategy(t)


def _message_strategy(cls: Any, depth: int = 0) -> st.SearchStrategy:
    """Mappings of a random subset of the fields of ``cls`` to valid values, in the form message_to_dict emits."""
    fields = m.fields_of(cls)
    return st.fixed_dictionaries({}, optional={name: _value_strategy(t, depth) for name, t in fields.items()})


def _assert_subset(full: Any, given: Any, path: str = '') -> None:
    if isinstance(given, dict):
        for key, value in given.items():
            _assert_subset(full[key], value, f'{path}.{key}')
    elif isinstance(given, list):
        assert len(full) == len(given), path
        for i, (a, b) in enumerate(zip(full, given, strict=True)):
            _assert_subset(a, b, f'{path}[{i}]')
    else:
        assert full == given and type(full) is type(given), (path, full, given)


@st.composite
def typed_values(draw: st.DrawFn) -> tuple[Any, dict]:
    cls = m.get_message(draw(st.sampled_from(ROUND_TRIP_TYPES)))
    return cls, draw(_message_strategy(cls))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(typed_values())
def test_round_trip_dict_message_dict(case: tuple[Any, dict]) -> None:
    cls, values = case
    msg = message_from_dict(cls, values)
    out = message_to_dict(msg)
    _assert_subset(out, values)
    # ... and through the YAML text echo prints and pub reads
    again = message_from_dict(cls, yaml.safe_load(m.message_to_yaml(msg)))
    assert message_to_dict(again) == out


_junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | st.binary(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4) | st.integers(), inner,
                                                                   max_size=3),
    max_leaves=6)


@settings(max_examples=400, deadline=None)
@given(cls_name=st.sampled_from(ROUND_TRIP_TYPES), data=st.data())
def test_junk_gives_a_clear_error_naming_the_field(cls_name: str, data: st.DataObject) -> None:
    cls = m.get_message(cls_name)
    field = data.draw(st.sampled_from([*m.fields_of(cls), 'no_such_field']))
    value = data.draw(_junk)
    try:
        msg = message_from_dict(cls, {field: value})
    except (MessageValueError, MessageTypeError) as exc:
        assert str(exc).startswith(f"field '{field}"), str(exc)
        assert exc.path.startswith(field) and '\n' not in str(exc)
    else:
        message_to_dict(msg)  # whatever was accepted is a valid message


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40) | st.sampled_from(['a: 2001-13-01', '[' * 3000, 'a: &x [*x]', 'a: !!binary zz',
                                               'data: !!python/object:os.system x', '{data: [1', 'data: hi']))
def test_any_text_parses_to_a_message_or_a_clear_error(text: str) -> None:
    from std_msgs.msg import String

    try:
        message_from_dict(String, m.parse_yaml_mapping(text))
    except (MessageValueError, MessageTypeError) as exc:
        assert '\n' not in str(exc)


def test_odd_keys_are_quoted_in_one_line_errors() -> None:
    # Found by hypothesis: a YAML key with a newline used to break the error over two lines.
    with pytest.raises(MessageValueError) as err:
        message_from_dict(m.get_message('autopilot_msgs/msg/TrialData'), {'header': {'\n': None}})
    assert str(err.value) == "field 'header.'\\n'': std_msgs/msg/Header has no field '\\n'; valid fields: stamp, frame_id"
