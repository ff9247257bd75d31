"""RosHardware: a task's ``self.hw`` as command messages to the rig's gpio and sound nodes.

Built complete, once per session step: the resolved role -> device map, the pilot's command endpoints as
plain callables (:class:`Commands`, made once on the node, all intra-process) and the callback that fails the
session. It holds no node, so a unit test gives it lists to publish into and checks the messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autopilot_msgs.msg import DigitalOutput, Reward, SoundCancel, SoundPlay, SoundSpec
from autopilot_msgs.srv import LoadSound
from rclpy.node import Node
from rclpy.task import Future
from std_msgs.msg import Empty

from autopilot_core import intra, qos, stamps
from autopilot_pilot.outputs import check_color, series_command
from autopilot_tasks.task import TaskError

#: How many play ids awaiting their onset a RosHardware remembers (see RosHardware.play_ids).
PLAY_IDS_KEPT = 256
SOUND_KINDS = {'tone': SoundSpec.KIND_TONE, 'noise': SoundSpec.KIND_NOISE, 'fm_sweep': SoundSpec.KIND_FM_SWEEP,
               'wav': SoundSpec.KIND_WAV, 'gap': SoundSpec.KIND_GAP, 'gammatone': SoundSpec.KIND_GAMMATONE}


@dataclass(frozen=True)
class Commands:
    """The pilot's ways to the hardware: publishers' ``publish``, the sound load client, the ROS clock."""

    output: Callable[[DigitalOutput], None]
    reward: Callable[[Reward], None]
    play: Callable[[SoundPlay], None]
    stop: Callable[[Empty], None]
    load: Callable[[LoadSound.Request], Future]
    now_ns: Callable[[], int]
    cancel: Callable[[SoundCancel], None]

    @classmethod
    def on_node(cls, node: Node, prefix: str, load_client: Any, now_ns: Callable[[], int]) -> Commands:
        """The command publishers under ``prefix`` (the hardware namespace), made on ``node``.

        Every one intra-process (:mod:`autopilot_core.intra`): with a gpio or sound node composed into the
        process none goes over DDS while another goes in-process, so none overtakes another; over DDS for
        every other process. The node is not kept.
        """
        def pub(msg_type: type, topic: str) -> Callable[[Any], None]:
            return intra.create_publisher(node, msg_type, f'{prefix}/{topic}', qos.EVENTS).publish

        return cls(output=pub(DigitalOutput, 'gpio/output'), reward=pub(Reward, 'gpio/reward'),
                   play=pub(SoundPlay, 'sound/play'), stop=pub(Empty, 'sound/stop'), load=load_client.call_async,
                   now_ns=now_ns, cancel=pub(SoundCancel, 'sound/cancel'))


class RosHardware:
    """The task's hardware on the rig's topics; roles are resolved to devices through ``devices``.

    Sounds are loaded through the sound server's service; plays asked for while a load is still pending are
    held back and sent when every load has answered, so a play never reaches the server before its sound.
    A refused load calls ``on_error`` (the session fails with the server's reason).
    """

    def __init__(self, devices: Mapping[str, str], commands: Commands, on_error: Callable[[str], None]) -> None:
        self.devices = dict(devices)
        self.commands = commands
        self.on_error = on_error
        # Ids of our plays whose onset has not come back (onsets of other plays on the server are not ours).
        # An onset is delivered whenever it arrives, also after the trial that played it has ended (the
        # next trial's stage gets it), so the ids are not cleared per trial; instead only the newest
        # PLAY_IDS_KEPT are kept (insertion-ordered dict), which bounds the map when onsets never come
        # (sound server down, plays dropped by stop_sound) over a long session.
        self.play_ids: dict[int, None] = {}
        self._next_play = int(time.time_ns() // 1000) % 1_000_000_000 * 1000  # unique across pilot restarts
        self._pending_loads: list[Future] = []
        self._held: list[SoundPlay] = []

    def claim_onset(self, play_id: int) -> bool:
        """True once for each play of ours (its onset goes to the task); False for other plays' onsets."""
        return self.play_ids.pop(play_id, 0) is None

    def _device(self, role: str) -> str:
        try:
            return self.devices[role]
        except KeyError:
            raise TaskError(f'no hardware role {role!r}; roles: {", ".join(self.devices)}') from None

    def _stamp(self, msg: Any) -> Any:
        # In place: a to_msg() would build another message (the closed loop's path, bench/closed_loop.py).
        stamps.stamp(msg.header.stamp, self.commands.now_ns())
        return msg

    def reward(self, role: str, volume_ul: float) -> None:
        self.commands.reward(self._stamp(Reward(device=self._device(role), volume_ul=float(volume_ul))))

    def pulse(self, role: str, ms: float) -> None:
        self.commands.output(self._stamp(DigitalOutput(device=self._device(role), mode=DigitalOutput.MODE_PULSE,
                                                       pulse_us=round(ms * 1000))))

    def set(self, role: str, level: bool) -> None:
        self.commands.output(self._stamp(DigitalOutput(device=self._device(role), mode=DigitalOutput.MODE_LEVEL,
                                                       level=bool(level))))

    def pwm(self, role: str, duty: float, frequency_hz: float = 0) -> None:
        self.commands.output(self._stamp(DigitalOutput(device=self._device(role), mode=DigitalOutput.MODE_PWM,
                                                       pwm_duty=float(duty), pwm_frequency_hz=float(frequency_hz))))

    def color(self, role: str, color: str) -> None:
        self.commands.output(self._stamp(DigitalOutput(device=self._device(role), mode=DigitalOutput.MODE_COLOR,
                                                       color=check_color(role, color))))

    def series(self, role: str, levels: Sequence[bool | int], durations_ms: Sequence[float], repeat: int = 1,
               color: str = '') -> None:
        device = self._device(role)
        steps, durations_us = series_command(role, levels, durations_ms, repeat)
        self.commands.output(self._stamp(DigitalOutput(
            device=device, mode=DigitalOutput.MODE_SERIES, series_levels=steps, series_us=durations_us,
            series_repeat=repeat, color=check_color(role, color) if color else '')))

    def load_sound(self, sound_id: str, **spec: Any) -> None:
        kind = spec.pop('kind', 'tone')
        if kind not in SOUND_KINDS:
            raise TaskError(f'load_sound({sound_id!r}): kind {kind!r}, expected one of {", ".join(SOUND_KINDS)}')
        try:
            msg = SoundSpec(id=sound_id, kind=SOUND_KINDS[kind], **spec)
        except (AttributeError, TypeError, AssertionError) as exc:
            raise TaskError(f'load_sound({sound_id!r}): {exc}') from None
        future = self.commands.load(LoadSound.Request(sound=msg))
        self._pending_loads.append(future)
        future.add_done_callback(lambda f: self._loaded(sound_id, f))

    def _loaded(self, sound_id: str, future: Future) -> None:
        self._pending_loads.remove(future)
        res = future.result()
        if res is None or not res.success:
            self.on_error(f'sound server refused {sound_id!r}: {res.message if res else "no answer"}')
            return
        if not self._pending_loads:
            held, self._held = self._held, []
            for msg in held:
                self.commands.play(msg)

    def play(self, sound_id: str) -> int:
        self._next_play += 1
        ids = self.play_ids
        ids[self._next_play] = None
        if len(ids) > PLAY_IDS_KEPT:
            del ids[next(iter(ids))]
        msg = self._stamp(SoundPlay(sound_id=sound_id, play_id=self._next_play))
        if self._pending_loads:
            self._held.append(msg)
        else:
            self.commands.play(msg)
        return self._next_play

    def stop_sound(self, play_id: int | None = None) -> None:
        if play_id is None:
            self._held.clear()
            self.commands.stop(Empty())
            return
        self._held = [m for m in self._held if m.play_id != play_id]
        self.commands.cancel(self._stamp(SoundCancel(play_id=play_id)))
