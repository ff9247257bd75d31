"""autopilot_msgs: every interface is generated with an RIHS01 type hash, and rosbags agrees with it.

rosbags computes hashes from the same interface files outside ROS (the recorder and the MCAP export
rely on that), so any disagreement would make recorded bags unreadable by ROS tools.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / 'src' / 'autopilot_msgs'
SHARE = ROOT / 'install' / 'autopilot_msgs' / 'share' / 'autopilot_msgs'
INTERFACES = sorted(p for kind in ('msg', 'srv', 'action') for p in (SRC / kind).glob(f'*.{kind}'))


def generated_hashes(path: Path) -> dict[str, str]:
    data = json.loads((SHARE / path.parent.name / f'{path.stem}.json').read_text())
    return {h['type_name']: h['hash_string'] for h in data['type_hashes']}


@pytest.fixture(scope='module')
def typestore():
    store = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for path in INTERFACES:
        if path.suffix == '.msg':
            types.update(get_types_from_msg(path.read_text(), f'autopilot_msgs/msg/{path.stem}'))
        else:
            # rosbags reads services and actions from the .idl rosidl generates from them. Its IDL
            # grammar has no preprocessor: drop the #include lines (the included types come from the
            # typestore, which already holds rcl_interfaces, std_msgs and the .msg files above).
            idl = (SHARE / path.parent.name / f'{path.stem}.idl').read_text()
            types.update(get_types_from_idl(re.sub(r'^#include .*$', '', idl, flags=re.M)))
    store.register(types)
    return store


def test_all_interfaces_listed_in_cmake():
    cmake = (SRC / 'CMakeLists.txt').read_text()
    listed = set(re.findall(r'"((?:msg|srv|action)/\w+\.(?:msg|srv|action))"', cmake))
    on_disk = {str(p.relative_to(SRC)) for p in INTERFACES}
    assert listed == on_disk


@pytest.mark.parametrize('path', INTERFACES, ids=lambda p: p.name)
def test_no_char_fields_and_every_field_commented(path: Path):
    for n, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split('#', 1)[0].strip()
        if not code or code == '---':
            continue
        assert not re.match(r'char\b|char\[', code), f'{path.name}:{n}: char field (rosbags hashes it differently)'
        assert '#' in line, f'{path.name}:{n}: field without a comment: {line!r}'


@pytest.mark.parametrize('path', INTERFACES, ids=lambda p: p.name)
def test_rihs01_hashes_match_rosbags(path: Path, typestore):
    hashes = generated_hashes(path)
    name = f'autopilot_msgs/{path.parent.name}/{path.stem}'
    assert name in hashes, f'rosidl wrote no type hash for {name}'
    expected_parts = {
        'msg': [name],
        'srv': [f'{name}_Request', f'{name}_Response'],
        'action': [f'{name}_Goal', f'{name}_Result', f'{name}_Feedback'],
    }[path.parent.name]
    for type_name in expected_parts:
        assert hashes[type_name].startswith('RIHS01_')
        assert typestore.hash_rihs01(type_name) == hashes[type_name], type_name
    # Our types rosbags also knows must agree too; the rest are rosidl's compositions (_Event,
    # _SendGoal_Request, ...) and other packages' types (service_msgs/ServiceEventInfo has a char
    # field, which rosbags hashes differently: not ours to fix).
    compared = [t for t in hashes if t.startswith('autopilot_msgs/') and t in typestore.fielddefs]
    assert set(expected_parts) <= set(compared)
    for type_name in compared:
        assert typestore.hash_rihs01(type_name) == hashes[type_name], type_name


def test_messages_import_and_roundtrip():
    from autopilot_msgs.msg import TrialData, TrialField
    from rclpy.serialization import deserialize_message, serialize_message

    msg = TrialData(pilot='rig1', subject='m1', session_id='s', trial_number=7,
                    fields=[TrialField(name='rt', type=TrialField.TYPE_INT64, unit='us', int_value=123)])
    back = deserialize_message(serialize_message(msg), TrialData)
    assert back == msg
