"""HardwareCheck: what a rig lacks for a task, asked before a session starts.

The questions (is the gpio node there, which inputs and outputs does it have, is the sound server there)
go through a :class:`Probe`; :class:`ServiceProbe` asks them over ROS services without blocking the
executor (:mod:`autopilot_core.aio`), unit tests answer them with plain coroutines. The answer is the
first thing missing, worded with the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from rcl_interfaces.srv import GetParameters
from rclpy.node import Node

from autopilot_core import aio
from autopilot_pilot.streams import stream_topic
from autopilot_tasks.task import Input, Output, Sound, Stream, Task


class Probe(Protocol):
    """The rig's answers; each waits at most ``timeout_s``."""

    async def gpio_ready(self, timeout_s: float) -> bool:
        """The gpio node's parameter service is up."""

    async def gpio_devices(self, timeout_s: float) -> tuple[list[str], list[str], dict[str, str]] | str:
        """The gpio node's (inputs, outputs, kind of each output), or why they could not be read."""

    async def sound_ready(self, timeout_s: float) -> bool:
        """The sound server's load service is up."""

    async def stream_types(self, topic: str, timeout_s: float) -> list[str]:
        """The types published on ``topic`` (waiting for a first publisher); [] when none came."""


class HardwareCheck:
    """Checks a task's declared roles against the rig under ``where`` (the hardware namespace)."""

    def __init__(self, probe: Probe, where: str) -> None:
        self.probe = probe
        self.where = where

    async def missing(self, task_name: str, task_cls: type[Task], devices: Mapping[str, str],
                      timeout_s: float) -> str | None:
        """What the rig lacks for ``task_cls`` with roles mapped to ``devices``, or None."""
        h = self.where
        roles = task_cls.hardware()
        if any(isinstance(r, (Input, Output)) for r in roles.values()):
            if not await self.probe.gpio_ready(timeout_s):
                return (f'no gpio node at {h}/gpio (waited {timeout_s:g} s): start the rig '
                        '(rig.launch.yaml) or set the pilot parameter hardware_namespace')
            answer = await self.probe.gpio_devices(timeout_s)
            if isinstance(answer, str):
                return answer
            inputs, outputs, kinds = answer
            for role, decl in roles.items():
                if isinstance(decl, (Input, Output)):
                    have = inputs if isinstance(decl, Input) else outputs
                    kind = 'input' if isinstance(decl, Input) else 'output'
                    if devices[role] not in have:
                        return (f'task {task_name} needs {kind} {devices[role]!r} (role {role}) but '
                                f'{h}/gpio has {kind}s {have}: add it to the rig\'s params file or '
                                f'map the role with the pilot parameter device_map ("{role}:<device>")')
                if isinstance(decl, Output):
                    problem = kind_mismatch(role, decl.kind, devices[role], kinds.get(devices[role], ''))
                    if problem:
                        return f'task {task_name}: {problem}'
        if any(isinstance(r, Sound) for r in roles.values()) and not await self.probe.sound_ready(timeout_s):
            return (f'no sound server at {h}/sound (waited {timeout_s:g} s): start it (backend null '
                    'for a rig without speakers) or set hardware_namespace')
        for role, decl in roles.items():
            if isinstance(decl, Stream):
                topic = stream_topic(h, devices[role])
                types = await self.probe.stream_types(topic, timeout_s)
                if not types:
                    return (f'task {task_name} needs stream {topic} (role {role}) but nothing publishes it (waited '
                            f'{timeout_s:g} s): start the node that does (a child host: child.launch.yaml) or map '
                            f'the role with the pilot parameter device_map ("{role}:<topic>")')
                wrong = sorted(set(types) - {decl.msg_type})
                if wrong:
                    return (f'task {task_name}: stream {topic} (role {role}) carries {", ".join(wrong)}, the task '
                            f'reads {decl.msg_type}: map the role to a topic of that type with device_map')
        return None


#: Output kinds a role and its device must agree on: a reward needs a valve, a colour an RGB LED, and a valve
#: must never serve a role that could hold it open.
STRICT_KINDS = ('valve', 'led_rgb')


def kind_mismatch(role: str, role_kind: str, device: str, device_kind: str) -> str | None:
    """Why output ``device`` cannot serve ``role``, or None (led and ttl serve each other)."""
    if not device_kind or role_kind == device_kind:
        return None
    if role_kind in STRICT_KINDS or device_kind in STRICT_KINDS:
        return (f"role {role} is a {role_kind} output but the rig's {device!r} is a {device_kind}: set "
                f"devices.{device}.kind: {role_kind} in the rig's params file if that is what is wired, or map the "
                f'role to another output with the pilot parameter device_map ("{role}:<device>")')
    return None


class ServiceProbe:
    """A :class:`Probe` over the gpio node's ``get_parameters`` and the sound server's ``load`` services."""

    def __init__(self, node: Node, gpio_params: Any, sound_load: Any, where: str) -> None:
        self.node = node
        self.gpio_params = gpio_params
        self.sound_load = sound_load
        self.where = where

    async def gpio_ready(self, timeout_s: float) -> bool:
        return await aio.wait_for_service(self.node, self.gpio_params, timeout_s)

    async def gpio_devices(self, timeout_s: float) -> tuple[list[str], list[str], dict[str, str]] | str:
        res = await aio.call(self.node, self.gpio_params, GetParameters.Request(names=['inputs', 'outputs']),
                             timeout_s)
        if res is None:
            return f'{self.where}/gpio did not answer get_parameters within {timeout_s:g} s'
        if len(res.values) != 2:
            return f'{self.where}/gpio has no inputs/outputs parameters: is it an autopilot gpio node?'
        inputs, outputs = (list(v.string_array_value) for v in res.values)
        kinds: dict[str, str] = {}
        if outputs:
            res = await aio.call(self.node, self.gpio_params, GetParameters.Request(
                names=[f'devices.{o}.kind' for o in outputs]), timeout_s)
            if res is None:
                return f'{self.where}/gpio did not answer get_parameters within {timeout_s:g} s'
            # A kind the node does not have (not an autopilot gpio node) reads as '' and is not checked.
            kinds = {o: v.string_value for o, v in zip(outputs, res.values, strict=False)}
        return inputs, outputs, kinds

    async def sound_ready(self, timeout_s: float) -> bool:
        return await aio.wait_for_service(self.node, self.sound_load, timeout_s)

    async def stream_types(self, topic: str, timeout_s: float) -> list[str]:
        await aio.wait_until(self.node, lambda: bool(self.node.get_publishers_info_by_topic(topic)), timeout_s)
        return [i.topic_type for i in self.node.get_publishers_info_by_topic(topic)]
