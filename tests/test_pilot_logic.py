"""The pilot's plain classes without ROS: no rclpy context, no node, no executor.

RosClock on recorded timer calls, RosHardware on lists of published messages, Delivery and Reports on a
real journal in tmp_path, HardwareCheck on a scripted probe, and a whole ActiveSession (begin, trials,
graduation, limits, cancel, errors) on a fake clock, driven by stepping its coroutine by hand.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from autopilot_msgs.msg import GpioEvent, PilotStatus, SoundSpec, StepChange, TrialAck, TrialData
from autopilot_msgs.srv import LoadSound
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rclpy.serialization import deserialize_message
from rclpy.task import Future

from autopilot_core import pilot_states, stamps, trial_fields
from autopilot_core.checks import InputError
from autopilot_pilot.clock import RosClock
from autopilot_pilot.delivery import RESEND_MAX_S, Delivery
from autopilot_pilot.devices import devices_for, parse_device_map
from autopilot_pilot.fakes import FakeClock, FakeHardware
from autopilot_pilot.hardware import PLAY_IDS_KEPT, Commands, RosHardware
from autopilot_pilot.hardware_check import HardwareCheck
from autopilot_pilot.journal import Journal
from autopilot_pilot.lifecycle import ActiveSession, Services
from autopilot_pilot.protocols import ProtocolBook, describe
from autopilot_pilot.reports import Reports, trial_message
from autopilot_pilot.requests import goal_plan, parameter_values
from autopilot_pilot.runner import TrialRecord
from autopilot_pilot.session import Plan, PlanError, make_plan
from autopilot_pilot.status import Heartbeat
from autopilot_pilot.writer import TrialWriter
from autopilot_tasks import registry
from autopilot_tasks.protocol import ProtocolError
from autopilot_tasks.task import TaskError
from autopilot_tasks.tasks.echo import Echo
from autopilot_tasks.tasks.two_afc import TwoAFC

S = 1_000_000_000


# -- RosClock ------------------------------------------------------------------------------------------

class Timer:
    def __init__(self, period: float, callback: Callable[[], None]) -> None:
        self.period, self.callback, self.cancelled = period, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class Timers:
    """create_timer/destroy_timer that record what they did."""

    def __init__(self) -> None:
        self.made: list[Timer] = []
        self.destroyed: list[Timer] = []

    def create(self, period: float, callback: Callable[[], None]) -> Timer:
        self.made.append(Timer(period, callback))
        return self.made[-1]

    def destroy(self, timer: Timer) -> None:
        assert timer not in self.destroyed, 'destroyed twice'
        self.destroyed.append(timer)


def test_ros_clock_fires_once_and_destroys_a_timer_only_outside_its_callback() -> None:
    timers, fired = Timers(), []
    clock = RosClock(timers.create, timers.destroy, lambda: 42)
    assert clock.now_ns() == 42
    handle = clock.call_later(-1.0, lambda: fired.append(timers.destroyed[:]))
    assert timers.made == [handle] and handle.period == 0.0  # a negative delay is "now"
    handle.callback()
    assert fired == [[]] and handle.cancelled  # not destroyed inside its own callback
    assert clock.live == 1
    clock.collect()
    assert timers.destroyed == [handle] and clock.live == 0


def test_ros_clock_cancel_twice_destroys_once_and_close_destroys_the_rest() -> None:
    timers = Timers()
    clock = RosClock(timers.create, timers.destroy, lambda: 0)
    a = clock.call_later(1.0, lambda: None)
    clock.cancel(a)
    clock.cancel(a)
    b = clock.call_later(2.0, lambda: None)  # collects a first
    assert timers.destroyed == [a] and a.cancelled
    c = clock.call_later(3.0, lambda: None)
    clock.close()
    assert sorted(map(id, timers.destroyed)) == sorted(map(id, [a, b, c])) and clock.live == 0


# -- RosHardware ---------------------------------------------------------------------------------------

class Sent:
    """Commands whose publishers are lists; loads answer when the test says so."""

    def __init__(self, now_ns: int = 5 * S + 7) -> None:
        self.output: list[Any] = []
        self.reward: list[Any] = []
        self.play: list[Any] = []
        self.stop: list[Any] = []
        self.cancel: list[Any] = []
        self.loads: list[tuple[LoadSound.Request, Future]] = []
        self.now = now_ns

    def load(self, req: LoadSound.Request) -> Future:
        self.loads.append((req, Future()))
        return self.loads[-1][1]

    def commands(self) -> Commands:
        return Commands(self.output.append, self.reward.append, self.play.append, self.stop.append, self.load,
                        lambda: self.now, self.cancel.append)


def test_hardware_sends_stamped_commands_to_the_mapped_devices() -> None:
    sent, errors = Sent(), []
    hw = RosHardware({'valve': 'valve_3', 'led': 'led_1'}, sent.commands(), errors.append)
    hw.reward('valve', 2)
    hw.pulse('led', 1.5)
    hw.set('led', 1)
    hw.pwm('led', 0.25, 100)
    hw.stop_sound()
    assert [(m.device, m.volume_ul) for m in sent.reward] == [('valve_3', 2.0)]
    pulse, level, pwm = sent.output
    assert (pulse.device, pulse.mode, pulse.pulse_us) == ('led_1', pulse.MODE_PULSE, 1500)
    assert (level.mode, level.level) == (level.MODE_LEVEL, True)
    assert (pwm.mode, pwm.pwm_duty, pwm.pwm_frequency_hz) == (pwm.MODE_PWM, 0.25, 100.0)
    assert all(stamps.to_ns(m.header.stamp) == 5 * S + 7 for m in sent.output + sent.reward)
    assert len(sent.stop) == 1 and errors == []
    with pytest.raises(TaskError, match="no hardware role 'nope'; roles: valve, led"):
        hw.set('nope', True)


def test_hardware_holds_plays_until_every_load_has_answered() -> None:
    sent, errors = Sent(), []
    hw = RosHardware({}, sent.commands(), errors.append)
    hw.load_sound('a', kind='tone', frequency_hz=1000.0, duration_ms=10.0)
    hw.load_sound('b', kind='noise', duration_ms=10.0)
    assert [r.sound.id for r, _ in sent.loads] == ['a', 'b']
    first = hw.play('a')
    assert sent.play == []
    sent.loads[0][1].set_result(LoadSound.Response(success=True))
    assert sent.play == []  # 'b' still loading
    sent.loads[1][1].set_result(LoadSound.Response(success=True))
    assert [(m.sound_id, m.play_id) for m in sent.play] == [('a', first)]
    second = hw.play('b')
    assert second == first + 1 and sent.play[-1].play_id == second
    assert hw.claim_onset(first) and not hw.claim_onset(first) and not hw.claim_onset(12345)
    assert errors == []


def test_hardware_reports_a_refused_load_and_drops_held_plays_on_stop() -> None:
    sent, errors = Sent(), []
    hw = RosHardware({}, sent.commands(), errors.append)
    hw.load_sound('a', kind='tone', frequency_hz=1000.0)
    hw.play('a')
    hw.stop_sound()
    sent.loads[0][1].set_result(LoadSound.Response(success=False, message='disk full'))
    assert errors == ["sound server refused 'a': disk full"] and sent.play == []
    with pytest.raises(TaskError, match="kind 'chirp', expected one of tone, noise"):
        hw.load_sound('c', kind='chirp')


def test_hardware_cancels_one_play_and_forgets_it_if_still_held() -> None:
    sent, errors = Sent(), []
    hw = RosHardware({}, sent.commands(), errors.append)
    hw.load_sound('a', kind='gammatone', frequency_hz=4000.0, duration_ms=100.0, channel=2)
    hw.load_sound('g', kind='gap', duration_ms=20.0)
    assert [(r.sound.kind, r.sound.channel) for r, _ in sent.loads] == [(SoundSpec.KIND_GAMMATONE, 2),
                                                                         (SoundSpec.KIND_GAP, 0)]
    held, kept = hw.play('a'), hw.play('g')
    hw.stop_sound(held)              # still held for the loads: it never goes out
    for _, future in sent.loads:
        future.set_result(LoadSound.Response(success=True))
    assert [m.play_id for m in sent.play] == [kept]
    hw.stop_sound(kept)
    assert [m.play_id for m in sent.cancel] == [held, kept] and sent.stop == []
    assert all(stamps.to_ns(m.header.stamp) == 5 * S + 7 for m in sent.cancel) and errors == []


def test_hardware_keeps_only_the_newest_play_ids() -> None:
    hw = RosHardware({}, Sent().commands(), lambda _: None)
    ids = [hw.play('x') for _ in range(PLAY_IDS_KEPT + 10)]
    assert len(hw.play_ids) == PLAY_IDS_KEPT
    assert not hw.claim_onset(ids[0]) and hw.claim_onset(ids[-1])


# -- devices, requests, protocols ------------------------------------------------------------------------

def test_device_map_parsing_and_resolution_per_task() -> None:
    assert parse_device_map(['poke:poke_3', '', ' out : led_9 ', 'center:x']) == \
        {'poke': 'poke_3', 'out': 'led_9', 'center': 'x'}
    with pytest.raises(ValueError, match="device_map entry 'poke': write it as 'role:device'"):
        parse_device_map(['poke'])
    # Roles of other tasks in the map are left out; the task's defaults fill the rest.
    assert devices_for(Echo, {'poke': 'poke_3', 'center': 'x'}) == {'poke': 'poke_3', 'out': 'led_center'}


def test_parameter_lists_and_goals_are_checked() -> None:
    msg = ParameterMsg(name='iti_s', value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=0.5))
    assert parameter_values([msg]) == {'iti_s': 0.5}
    with pytest.raises(InputError):
        parameter_values([ParameterMsg(name='')])

    class Goal:
        subject, protocol, step, task = 'mouse', '', 0, 'echo'
        parameters = [ParameterMsg(name='pokes_per_trial', value=ParameterValue(
            type=ParameterType.PARAMETER_INTEGER, integer_value=3))]
        max_trials, max_duration_s = 5, 0.0

    plan = goal_plan(Goal(), {}, None)
    assert (plan.task_cls, plan.params['pokes_per_trial'], plan.max_trials) == (Echo, 3, 5)
    Goal.subject = 'x' * 300
    with pytest.raises(InputError, match='subject'):
        goal_plan(Goal(), {}, None)


def test_protocol_book_replaces_by_name_and_is_bounded() -> None:
    book = ProtocolBook(limit=1)
    proto = book.load('p', ECHO_PROTOCOL)
    assert describe(proto) == "protocol 'p': 2 steps (first, second)"
    book.load('p', ECHO_PROTOCOL)  # the same name again: replaced, not counted twice
    with pytest.raises(InputError, match='1 protocols are loaded already'):
        book.load('q', ECHO_PROTOCOL)
    with pytest.raises(ProtocolError):
        ProtocolBook().load('bad', 'steps: [')


# -- HardwareCheck ---------------------------------------------------------------------------------------

class Probe:
    def __init__(self, gpio: bool = True, devices: Any = (['poke_center'], ['led_center'], {}), sound: bool = True,
                 streams: dict[str, list[str]] | None = None):
        self.gpio, self.devices, self.sound, self.asked = gpio, devices, sound, []
        self.streams = streams or {}

    async def stream_types(self, topic: str, timeout_s: float) -> list[str]:
        self.asked.append(('stream', topic))
        return self.streams.get(topic, [])

    async def gpio_ready(self, timeout_s: float) -> bool:
        self.asked.append(('gpio', timeout_s))
        return self.gpio

    async def gpio_devices(self, timeout_s: float) -> Any:
        self.asked.append(('devices', timeout_s))
        return self.devices

    async def sound_ready(self, timeout_s: float) -> bool:
        self.asked.append(('sound', timeout_s))
        return self.sound


def missing(probe: Probe, task: type = Echo, devices: dict[str, str] | None = None) -> str | None:
    devices = devices if devices is not None else devices_for(task, {})
    return asyncio.run(HardwareCheck(probe, '/rig').missing('t', task, devices, 2.0))


def test_hardware_check_names_what_the_rig_lacks() -> None:
    probe = Probe()
    assert missing(probe) is None and probe.asked == [('gpio', 2.0), ('devices', 2.0)]  # Echo: no sound
    assert missing(Probe(gpio=False)).startswith('no gpio node at /rig/gpio (waited 2 s)')
    assert missing(Probe(devices='/rig/gpio did not answer')) == '/rig/gpio did not answer'
    text = missing(Probe(), devices={'poke': 'poke_7', 'out': 'led_center'})
    assert "task t needs input 'poke_7' (role poke) but /rig/gpio has inputs ['poke_center']" in text
    assert 'device_map ("poke:<device>")' in text
    assert "needs output 'led_center'" in missing(Probe(devices=(['poke_center'], [], {})))
    two_afc = devices_for(TwoAFC, {})
    rig = (list(two_afc.values()), list(two_afc.values()), {'valve_left': 'valve', 'valve_right': 'valve',
                                                            'led_center': 'ttl'})
    assert missing(Probe(devices=rig), TwoAFC) is None
    wrong = (rig[0], rig[1], {**rig[2], 'valve_right': 'led'})
    assert missing(Probe(devices=wrong), TwoAFC) == (
        "task t: role right_valve is a valve output but the rig's 'valve_right' is a led: set "
        "devices.valve_right.kind: valve in the rig's params file if that is what is wired, or map the role to "
        'another output with the pilot parameter device_map ("right_valve:<device>")')
    assert missing(Probe(devices=rig, sound=False), TwoAFC).startswith('no sound server at /rig/sound')


def test_hardware_check_names_a_stream_nobody_publishes_or_of_another_type() -> None:
    from autopilot_tasks.tasks.wheel_gonogo import WheelGoNogo

    devices = devices_for(WheelGoNogo, {})
    rig = (['poke_center'], ['valve_center'], {'valve_center': 'valve'})
    wheel = {'/rig/wheel/velocity': ['autopilot_msgs/msg/WheelMotion']}
    assert missing(Probe(devices=rig, streams=wheel), WheelGoNogo, devices) is None
    text = missing(Probe(devices=rig), WheelGoNogo, devices)
    assert text == ('task t needs stream /rig/wheel/velocity (role wheel) but nothing publishes it (waited 2 s): start '
                    'the node that does (a child host: child.launch.yaml) or map the role with the pilot parameter '
                    'device_map ("wheel:<topic>")')
    other = {'/child/speed': ['std_msgs/msg/Float64']}
    text = missing(Probe(devices=rig, streams=other), WheelGoNogo, devices_for(WheelGoNogo, {'wheel': '/child/speed'}))
    assert text == ('task t: stream /child/speed (role wheel) carries std_msgs/msg/Float64, the task reads '
                    'autopilot_msgs/msg/WheelMotion: map the role to a topic of that type with device_map')


def test_a_stream_field_is_checked_against_the_message_definition() -> None:
    from autopilot_pilot.streams import as_number, field_reader, numeric_fields

    cls, read = field_reader('autopilot_msgs/msg/WheelMotion', 'velocity_cm_s')
    assert read(cls(velocity_cm_s=2.5)) == 2.5
    assert 'header.stamp.sec' in numeric_fields(cls) and 'header.frame_id' not in numeric_fields(cls)
    with pytest.raises(ValueError, match="has no numeric field 'header.frame_id'; its numeric fields: header.stamp"):
        field_reader('autopilot_msgs/msg/WheelMotion', 'header.frame_id')
    with pytest.raises(ValueError, match="message type 'nope_msgs/msg/X'"):
        field_reader('nope_msgs/msg/X', 'data')
    assert [as_number(v, (-500, 500)) for v in (1, math.nan, math.inf, 1e308, -500.0, True)] == \
        [1.0, None, None, None, -500.0, 1.0]


# -- Heartbeat --------------------------------------------------------------------------------------------

def test_heartbeat_tells_state_session_and_refusals() -> None:
    sent: list[tuple] = []
    beat = Heartbeat(PilotStatus(pilot='p'), lambda m: sent.append(
        (m.state, m.message, m.session_id, m.trial_count, stamps.to_ns(m.header.stamp))), lambda: 3 * S + 1)
    beat.publish()
    assert sent[-1] == (pilot_states.IDLE, '', '', 0, 3 * S + 1)
    plan = make_plan(subject='m', protocol='', step=0, task='echo', overrides={}, max_trials=0, max_duration_s=0,
                     lookup_task=registry.lookup, protocols={}, protocol_dir=None)
    beat.session_started(plan, 'sid')
    beat.set_state(pilot_states.PAUSED)
    beat.refused('session rejected: busy')  # in a session: the state stays
    assert sent[-1][:3] == (pilot_states.PAUSED, 'session rejected: busy', 'sid')
    beat.trial(4)
    assert sent[-1][3] == 4 and beat.status.task == 'echo'
    beat.session_ended('sid', 'ended')
    s = beat.status
    assert (s.session_id, s.subject, s.task, s.last_session_id, s.last_session_state) == ('', '', '', 'sid', 'ended')
    beat.refused('session rejected: no')  # idle again
    assert sent[-1][:2] == (pilot_states.IDLE, 'session rejected: no')
    assert Heartbeat.of_pilot('q', sent.append, lambda: 0).status.package_names


# -- Delivery ----------------------------------------------------------------------------------------------

class Times:
    def __init__(self) -> None:
        self.mono = 100.0
        self.wall = 1000 * S


def delivery_on(journal: Journal, times: Times, interval: float = 2.0) -> tuple[Delivery, list, list, list]:
    trials: list[bytes] = []
    steps: list[bytes] = []
    errors: list[str] = []
    d = Delivery('rig1', journal, trials.append, steps.append, lambda: interval, errors.append,
                 monotonic=lambda: times.mono, wall_ns=lambda: times.wall)
    return d, trials, steps, errors


def test_unacked_trials_are_resent_with_backoff_until_acked(tmp_path: Path) -> None:
    times = Times()
    with Journal(tmp_path / 'j.sqlite3') as journal:
        journal.begin_session('s1', subject='m', task='echo')
        journal.append('s1', 1, b'one', {}, stamp_ns=times.wall)
        d, trials, _, _ = delivery_on(journal, times)
        assert d.resend() == 0  # just published by the writer: give the ack a moment
        sends = []
        for _ in range(400):  # 100 s in 0.25 s steps
            times.mono += 0.25
            times.wall += S // 4
            if d.resend():
                sends.append(times.mono - 100.0)
        gaps = [b - a for a, b in zip([0.0] + sends, sends, strict=False)]
        assert gaps[:5] == [2.0, 4.0, 8.0, 16.0, 32.0] and all(g == RESEND_MAX_S for g in gaps[6:])
        assert trials and set(trials) == {b'one'}
        d.ack(TrialAck(pilot='rig1', session_id='s1', trial_numbers=[1]))
        times.mono += 1000
        assert d.resend(now=True) == 0 and d.sent == {}


def test_a_restart_resends_at_once_and_a_new_subscriber_gets_everything(tmp_path: Path) -> None:
    times = Times()
    with Journal(tmp_path / 'j.sqlite3') as journal:
        journal.begin_session('s1', subject='m', task='echo')
        journal.append('s1', 1, b'old', {}, stamp_ns=times.wall - 60 * S)
        journal.append('s1', 2, b'new', {}, stamp_ns=times.wall)
        journal.record_step('s1', after_trial=2, from_step=0, to_step=1, reason='r', payload=b'step')
        d, trials, steps, _ = delivery_on(journal, times)
        [left] = d.recover()
        assert left.session_id == 's1' and journal.session('s1').state == 'interrupted'
        assert d.resend() == 2 and trials == [b'old'] and steps == [b'step']
        d.subscribers(1)  # a terminal appeared: everything unacked, now
        assert trials == [b'old', b'old', b'new'] and steps == [b'step', b'step']
        d.subscribers(1)  # the same one: nothing
        assert len(trials) == 3


def test_only_acks_naming_this_pilot_and_its_sessions_count(tmp_path: Path) -> None:
    times = Times()
    with Journal(tmp_path / 'j.sqlite3') as journal:
        journal.begin_session('s1', subject='m', task='echo')
        journal.append('s1', 1, b'one', {}, stamp_ns=times.wall)
        d, _, _, errors = delivery_on(journal, times)
        with pytest.raises(InputError, match="ack names pilot 'other', not 'rig1'"):
            d.ack(TrialAck(pilot='other', session_id='s1', trial_numbers=[1]))
        with pytest.raises(InputError, match='which this pilot never ran'):
            d.ack(TrialAck(pilot='rig1', session_id='s9', trial_numbers=[1]))
        assert journal.stats('s1').unacked_trials == 1
        d.ack(TrialAck(pilot='rig1', session_id='s1', trial_numbers=[1]))
        assert journal.stats('s1').unacked_trials == 0 and errors == []


# -- Reports -----------------------------------------------------------------------------------------------

def test_trial_message_types_fields_by_the_declaration() -> None:
    plan = make_plan(subject='m', protocol='', step=0, task='echo', overrides={}, max_trials=0, max_duration_s=0,
                     lookup_task=registry.lookup, protocols={}, protocol_dir=None)
    msg = trial_message('rig1', 'sid', 3, plan, TrialRecord(3, {'n_pokes': 10}, 2 * S + 5, 4 * S + 6))
    assert (msg.pilot, msg.subject, msg.trial_number, msg.task) == ('rig1', 'm', 3, 'echo')
    assert stamps.to_ns(msg.start) == 2 * S + 5 and stamps.to_ns(msg.header.stamp) == 4 * S + 6
    [field] = msg.fields
    assert (field.name, field.type, field.int_value) == ('n_pokes', trial_fields.INT64, 10)
    assert trial_fields.to_dict(msg.fields) == {'n_pokes': 10}


# -- ActiveSession ------------------------------------------------------------------------------------------

ECHO_PROTOCOL = '''\
name: p
steps:
  - name: first
    task: echo
    parameters: {pokes_per_trial: 1}
    graduation: {trials: 2}
  - name: second
    task: echo
    parameters: {pokes_per_trial: 2}
'''


class StepClock:
    """A runner's clock on the shared FakeClock; close() cancels what it set."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.handles, self.closed = clock, [], False

    def now_ns(self) -> int:
        return self.clock.now_ns()

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> Any:
        self.handles.append(self.clock.call_later(delay_s, fn))
        return self.handles[-1]

    def cancel(self, handle: Any) -> None:
        self.clock.cancel(handle)

    def collect(self) -> None:
        pass

    def close(self) -> None:
        for h in self.handles:
            self.clock.cancel(h)
        self.closed = True


class OwnHardware(FakeHardware):
    def claim_onset(self, play_id: int) -> bool:
        return True


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, message: str) -> None:
        self.lines.append(('info', message))

    def warning(self, message: str) -> None:
        self.lines.append(('warning', message))

    def error(self, message: str) -> None:
        self.lines.append(('error', message))


class Pilot:
    """What the node gives a session, made of fakes and a real journal and writer."""

    def __init__(self, tmp_path: Path, device_map: dict[str, str] | None = None) -> None:
        self.clock = FakeClock(start_ns=10 * S)
        self.journal = Journal(tmp_path / 'journal.sqlite3')
        self.published: list[bytes] = []
        self.steps: list[StepChange] = []
        self.states: list[tuple[int, str]] = []
        self.feedback: list[Any] = []
        self.clocks: list[StepClock] = []
        self.hws: list[OwnHardware] = []
        self.log = Log()
        self.writer = TrialWriter(self.journal, self.published.append, lambda text, fatal: None)
        self.heartbeat = Heartbeat(PilotStatus(pilot='rig1'), lambda m: self.states.append((m.state, m.message)),
                                   self.clock.now_ns)
        self.services = Services(self.journal, Reports('rig1', self.journal, self.writer, self.steps.append,
                                                       self.clock.now_ns),
                                 self.heartbeat, make_clock=self.make_clock, make_hardware=self.make_hardware,
                                 device_map=device_map or {}, log=self.log)
        self.seq = 0

    def make_clock(self) -> StepClock:
        self.clocks.append(StepClock(self.clock))
        return self.clocks[-1]

    def make_hardware(self, devices: dict[str, str], on_error: Callable[[str], None]) -> OwnHardware:
        self.hws.append(OwnHardware(clock=self.clock))
        return self.hws[-1]

    def session(self, plan: Plan) -> ActiveSession:
        return ActiveSession('sid', plan, 7, self.services, self.feedback.append)

    def poke(self, s: ActiveSession, device: str = 'poke_center') -> None:
        for level in (False, True):  # Echo's poke is active low: in, then out
            self.seq += 1
            msg = GpioEvent(device=device, level=level, tick_us=self.seq, run_id=1, seq=self.seq)
            stamps.stamp(msg.header.stamp, self.clock.now_ns())
            s.on_gpio(msg, stamps.to_ns(msg.header.stamp))
            self.clock.advance(0.01)

    def close(self) -> None:
        self.writer.close()
        self.journal.close()


class Drive:
    """Steps a coroutine that awaits rclpy Futures (each step: until it yields on a pending one)."""

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.coro, self.done = coro, False
        self.value: Any = None
        self.step()

    def step(self) -> Any:
        assert not self.done
        try:
            self.coro.send(None)
        except StopIteration as stop:
            self.done, self.value = True, stop.value
        return self.value


def plan_of(task: str = 'echo', protocol: str = '', **kw: Any) -> Plan:
    protocols = {'p': ProtocolBook().load('p', ECHO_PROTOCOL)}
    args = dict(subject='mouse', protocol=protocol, step=0, task=task, overrides={}, max_trials=0,
                max_duration_s=0.0, lookup_task=registry.lookup, protocols=protocols, protocol_dir=None)
    args.update(kw)
    return make_plan(**args)


@pytest.fixture
def pilot(tmp_path: Path):
    p = Pilot(tmp_path)
    yield p
    p.close()


def test_a_session_runs_trials_to_max_trials_and_journals_everything(pilot: Pilot) -> None:
    s = pilot.session(plan_of(overrides={'pokes_per_trial': 1}, max_trials=2))
    assert pilot.heartbeat.status.session_id == 'sid'  # told before the rig check
    run = Drive(s.execute(None, 1.0, lambda: False))
    assert not run.done and s.runner is not None and s.runner.state == 'running'
    assert pilot.states[-1] == (pilot_states.RUNNING, '')
    assert pilot.journal.session('sid').state == 'running' and not pilot.journal.session('sid').ended
    pilot.poke(s)
    assert [c[:3] for c in pilot.hws[0].calls] == [('set', 'out', True), ('set', 'out', False)]
    assert not run.done and pilot.heartbeat.status.trial_count == 1
    pilot.poke(s)
    assert run.step() == ('ended', '2 trials; max_trials 2 reached')
    assert pilot.states[-1] == (pilot_states.IDLE, '')
    journal = pilot.journal
    assert journal.session('sid').state == 'ended'
    assert [t.trial_number for t in journal.trials('sid')] == [1, 2]
    msgs = [deserialize_message(b, TrialData) for b in pilot.published]
    assert [(m.trial_number, trial_fields.to_dict(m.fields)) for m in msgs] == [(1, {'n_pokes': 1}),
                                                                                 (2, {'n_pokes': 1})]
    assert all(stamps.to_ns(m.start) < stamps.to_ns(m.header.stamp) for m in msgs)
    assert [f.trial_count for f in pilot.feedback] == [1, 2] and pilot.feedback[0].state == 'mirror'
    assert len(journal.events('sid', 1, 0, 100, 100)) == 4  # every GPIO event of the session
    assert all(c.closed for c in pilot.clocks)  # step clock and the session's own
    status = pilot.heartbeat.status
    assert (status.session_id, status.last_session_id, status.last_session_state) == ('', 'sid', 'ended')
    result = s.fill(type('R', (), {})())
    assert (result.n_trials, result.final_step, result.session_id) == (2, 0, 'sid')
    assert math.isnan(result.fraction_correct)  # echo is not scored


def test_a_protocol_step_change_happens_between_trials_and_is_reported(pilot: Pilot) -> None:
    s = pilot.session(plan_of(task='', protocol='p'))
    run = Drive(s.execute(None, 1.0, lambda: True))
    first_runner = s.runner
    pilot.poke(s)
    pilot.poke(s)  # graduation {trials: 2}: the runner holds after trial 2 ...
    assert first_runner is not None and first_runner.state == 'paused' and s.graduate_reason
    run.step()  # ... and the session swaps in the next step's task
    assert s.plan.step == 1 and s.runner is not first_runner and first_runner.state == 'stopped'
    assert pilot.clocks[1].closed and not pilot.clocks[2].closed  # the old step's timers are gone
    assert pilot.heartbeat.status.step == 1 and s.runner.params['pokes_per_trial'] == 2
    [step] = pilot.steps
    assert (step.seq, step.from_step, step.to_step, step.after_trial, step.to_step_name) == (1, 0, 1, 2, 'second')
    assert [(c.from_step, c.to_step, c.reason) for c in pilot.journal.steps('sid')] == [(0, 1, step.reason)]
    assert 'graduates from step 0' in pilot.log.lines[-1][1]
    pilot.poke(s)
    pilot.poke(s)  # one trial of two pokes in step 1
    s.cancel()
    assert run.step() == ('cancelled', "3 trials; cancelled")
    assert pilot.journal.session('sid').state == 'cancelled'
    assert [m.step for m in (deserialize_message(b, TrialData) for b in pilot.published)] == [0, 0, 1]


def test_the_duration_limit_ends_the_session_after_the_running_trial(pilot: Pilot) -> None:
    s = pilot.session(plan_of(overrides={'pokes_per_trial': 2}, max_duration_s=5.0))
    run = Drive(s.execute(None, 1.0, lambda: False))
    pilot.poke(s)  # mid-trial (1 of 2 pokes)
    pilot.clock.advance(5.0)
    assert s.limit_pending == 'max_duration_s 5 reached' and s.end_reason is None and not run.done
    pilot.poke(s)
    assert run.step() == ('ended', '1 trials; max_duration_s 5 reached')


def test_pause_resume_and_parameters_go_through_the_session(pilot: Pilot) -> None:
    s = pilot.session(plan_of(overrides={'pokes_per_trial': 1}))
    with pytest.raises(TaskError, match='no session is running'):
        s.pause()
    Drive(s.execute(None, 1.0, lambda: False))
    assert s.pause() == 'pausing after trial 1' and pilot.states[-1][0] == pilot_states.PAUSED
    assert s.set_params({'pokes_per_trial': 3}) == 'applied at the start of trial 2'
    with pytest.raises(TaskError):
        s.set_params({'pokes_per_trial': -1})
    pilot.poke(s)
    assert s.runner is not None and s.runner.state == 'paused'
    assert s.resume() == 'resumed' and s.runner.params['pokes_per_trial'] == 3
    assert pilot.states[-1][0] == pilot_states.RUNNING


def test_an_error_or_a_missing_device_ends_the_session_in_error(pilot: Pilot) -> None:
    s = pilot.session(plan_of())
    run = Drive(s.execute(None, 1.0, lambda: False))
    s.fail('sound server refused x', pause=True)
    s.fail('a later error')  # the first one counts
    assert run.step() == ('error', 'sound server refused x')
    assert pilot.journal.session('sid').state == 'error'
    assert pilot.states[-1] == (pilot_states.ERROR, 'sound server refused x')

    checked = pilot.session(plan_of())
    run = Drive(checked.execute(HardwareCheck(Probe(gpio=False), '/rig'), 0.5, lambda: False))
    state, message = run.value
    assert state == 'error' and message.startswith('no gpio node at /rig/gpio (waited 0.5 s)')
    assert pilot.states[-1][0] == pilot_states.ERROR
    assert pilot.heartbeat.status.last_session_state == 'error'


def test_a_stopping_pilot_interrupts_the_session(pilot: Pilot) -> None:
    s = pilot.session(plan_of(overrides={'pokes_per_trial': 1}))
    Drive(s.execute(None, 1.0, lambda: False))
    pilot.poke(s)
    s.interrupt()
    assert pilot.journal.session('sid').state == 'interrupted'
    assert pilot.states[-1] == (pilot_states.IDLE, 'session sid interrupted: the pilot stopped')
    assert pilot.log.lines[-1] == ('warning', 'session sid of mouse interrupted after 1 trial(s): the pilot is '
                                              'stopping')
    assert [t.trial_number for t in pilot.journal.trials('sid')] == [1]


def test_plan_errors_stay_plan_errors() -> None:
    with pytest.raises(PlanError, match='goal names neither'):
        plan_of(task='')


class Streams:
    """A StreamOpener of lists: what was opened (device, deliver), how many were closed."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, Callable[[Any, int | None], None]]] = []
        self.closed = 0

    def topic(self, device: str) -> str:
        return f'/rig1/{device}'

    def check(self, decl: Any) -> str | None:
        return None

    def open(self, decl: Any, device: str, deliver: Callable[[Any, int | None], None]) -> Callable[[], None]:
        self.opened.append((device, deliver))

        def close() -> None:
            self.closed += 1
        return close


def test_a_session_reads_its_streams_refuses_bad_samples_and_ends_when_one_goes_silent(pilot: Pilot) -> None:
    import dataclasses
    import time

    from autopilot_tasks.tasks.wheel_gonogo import WheelGoNogo

    no_streams = pilot.session(plan_of(task='wheel_gonogo'))
    run = Drive(no_streams.execute(None, 1.0, lambda: False))
    assert run.done and run.value == ('error', 'task wheel_gonogo: stream role wheel: this pilot reads no streams')

    streams = Streams()
    pilot.services = dataclasses.replace(pilot.services, streams=streams)
    s = ActiveSession('sid2', plan_of(task='wheel_gonogo', overrides={'quiet_s': 0.5}), 7, pilot.services,
                      pilot.feedback.append)
    run = Drive(s.execute(None, 1.0, lambda: False))
    assert not run.done and [d for d, _ in streams.opened] == ['wheel/velocity']
    deliver = streams.opened[0][1]
    for value in (math.nan, math.inf, 1e308, -501.0, 0.0):
        deliver(value, pilot.clock.now_ns())
    handle = s.runner.task.wheel
    assert handle.value == 0.0 and handle.samples == 1                      # only the good sample reached the task
    state = s.streams['wheel']
    assert (state.samples, state.refused) == (5, 4)
    warnings = [m for level, m in pilot.log.lines if level == 'warning']
    assert warnings == ['stream wheel: nan on /rig1/wheel/velocity is not a number in [-500, 500]: ignored (counted; '
                        'the session log tells how many at its end)']
    deliver(30.0, pilot.clock.now_ns())                                      # running: the quiet wait restarts
    assert s.runner.task.restarts == 1
    s.streams['wheel'] = dataclasses.replace(state, timeout_s=0.05)
    s.collect()
    assert not run.done                                                      # a sample came just now
    time.sleep(0.1)
    s.collect()
    state_, message = run.step()
    assert state_ == 'error' and re.fullmatch(
        r'stream wheel: no sample for \d+\.\d s on /rig1/wheel/velocity \(timeout_s 0.05\): is the node publishing '
        r'it running \(a child host: its wheel node, its network\)\?', message), message
    assert streams.closed == 1 and s.streams == {}
    assert ('warning', 'stream wheel: 4 of 6 samples on /rig1/wheel/velocity were refused (not a number within the '
                       'limits)') in pilot.log.lines
    assert WheelGoNogo.hardware()['wheel'].limits == (-500.0, 500.0)
