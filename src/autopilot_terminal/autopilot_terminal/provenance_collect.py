"""A session's provenance: what the terminal knows at its start (:func:`session_provenance`) and every
parameter of the pilot's nodes, fetched from their parameter services on the node's executor (:func:`collect`)."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autopilot_msgs.msg import PilotStatus
from rcl_interfaces.srv import GetParameters, ListParameters
from rclpy.node import Node
from rclpy.parameter import parameter_value_to_python

from autopilot_core import aio

from .pilots import PilotLink

#: Nodes whose parameters are also stored as the rig's hardware (with the calibration file they name).
HARDWARE_NODES = ('gpio', 'sound', 'camera')
SERVICE_WAIT_S = 2.0
CALL_TIMEOUT_S = 5.0


def plain(value: Any) -> Any:
    """A parameter value as JSON takes it: arrays as lists, bytes as hex."""
    if isinstance(value, (list, tuple)) or hasattr(value, 'tolist'):
        return [plain(v) for v in (value.tolist() if hasattr(value, 'tolist') else value)]
    if isinstance(value, bytes):
        return value.hex()
    return value


def session_provenance(host: Mapping[str, Any], launch_file: str, link: PilotLink, msg: PilotStatus,
                       planned: Mapping[str, Any]) -> dict[str, Any]:
    """What is stored with a session as it begins: this host's packages (``host``, :func:`autopilot_core.provenance.
    collect`), the launch file's text, the pilot's versions as its heartbeat says, the protocol file and the
    subject state start_session sent (``planned``)."""
    launch = ''
    if launch_file:
        try:
            launch = Path(launch_file).read_text(encoding='utf-8')
        except OSError as exc:
            launch = f'(cannot read {launch_file}: {exc})'
    return {
        'packages': host.get('packages', {}),
        'git': host.get('git', {}),
        'ros': host.get('ros', {}),
        'hosts': {'terminal': socket.gethostname(), 'pilot': msg.host, 'terminal_host': host.get('host', {})},
        'launch': {'file': launch_file, 'text': launch},
        'pilot': {'name': link.name, 'namespace': link.ns, 'host': msg.host, 'ros_distro': msg.ros_distro,
                  'rmw': msg.rmw_implementation,
                  'packages': dict(zip(msg.package_names, msg.package_versions, strict=False))},
        'protocol': planned.get('protocol_file', {}),
        'subject_state': planned.get('subject_state', {}),
    }


def hardware(params: Mapping[str, Any]) -> dict[str, Any]:
    """``{'parameters', 'hardware', 'calibrations'}`` of the parameters by node: the hardware nodes' ones apart,
    with the text of each calibration file they name (read on this host)."""
    hw = {k: v for k, v in params.items() if k.rsplit('/', 1)[-1] in HARDWARE_NODES}
    calibrations = {}
    for fqn, values in hw.items():
        path = values.get('calibration_file') if isinstance(values, dict) else None
        if path:
            try:
                calibrations[fqn] = Path(path).expanduser().read_text(encoding='utf-8')
            except OSError as exc:
                calibrations[fqn] = f'(not readable on the terminal host: {exc})'
    return {'parameters': dict(params), 'hardware': hw, 'calibrations': calibrations}


def pilot_nodes(names_and_namespaces: list[tuple[str, str]], ns: str) -> list[str]:
    """Full names of the nodes in namespace ``ns`` or below it."""
    base = ns.rstrip('/')
    return [f'{n_ns.rstrip("/")}/{name}' for name, n_ns in names_and_namespaces
            if n_ns == ns or n_ns.startswith(base + '/')]


async def node_parameters(node: Node, fqn: str) -> dict[str, Any]:
    """Every parameter of node ``fqn`` (``{'_error': ...}`` when it does not answer)."""
    lister = node.create_client(ListParameters, f'{fqn}/list_parameters')
    getter = node.create_client(GetParameters, f'{fqn}/get_parameters')
    try:
        if not (await aio.wait_for_service(node, lister, SERVICE_WAIT_S)
                and await aio.wait_for_service(node, getter, SERVICE_WAIT_S)):
            return {'_error': 'parameter services not available'}
        listed = await aio.call(node, lister, ListParameters.Request(), CALL_TIMEOUT_S)
        if listed is None:
            return {'_error': f'{fqn}/list_parameters: no answer within {CALL_TIMEOUT_S:.0f} s'}
        names = list(listed.result.names)
        got = await aio.call(node, getter, GetParameters.Request(names=names), CALL_TIMEOUT_S)
        if got is None:
            return {'_error': f'{fqn}/get_parameters: no answer within {CALL_TIMEOUT_S:.0f} s'}
        return {n: plain(parameter_value_to_python(v)) for n, v in zip(names, got.values, strict=True)}
    finally:
        node.destroy_client(lister)
        node.destroy_client(getter)


async def collect(node: Node, link: PilotLink) -> dict[str, Any]:
    """:func:`hardware` of every parameter of every node under the pilot's namespace, one node after the other."""
    params: dict[str, Any] = {}
    for fqn in pilot_nodes(node.get_node_names_and_namespaces(), link.ns):
        try:
            params[fqn] = await node_parameters(node, fqn)
        except Exception as exc:  # noqa: BLE001 - provenance is best effort, and says what it missed
            params[fqn] = {'_error': str(exc)}
    return hardware(params)
