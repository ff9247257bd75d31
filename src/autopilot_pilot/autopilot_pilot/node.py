"""``pilot``: runs behavioural sessions: one task at a time, driving the rig's hardware nodes by topics.

Endpoints (relative to the pilot's namespace; default namespace: this host's name, sanitised):

* ``status`` (PilotStatus, qos.STATUS: transient-local): 2 Hz and on every change (the gpio node drives
  every output low when it stops);
* ``session`` (action RunSession): start with subject + protocol/step or task + parameter overrides;
  feedback per trial; cancel = stop (the running trial is abandoned, never half-reported);
* ``pause`` / ``resume`` (std_srvs/Trigger): take effect between trials;
* ``set_task_parameters`` (SetTaskParameters): validated now, applied at the next trial;
* ``load_protocol`` (LoadProtocol): a protocol's YAML text, checked (line and field named on error);
* ``trials`` (TrialData, qos.TRIALS), ``trial_acks`` (TrialAck, from the terminal; only acks naming this
  pilot and one of its sessions count), ``step_changes`` (StepChange, qos.TRIALS);
* ``journal_events`` (GetEvents): the GPIO events of a session, journalled as they came, for a terminal
  whose recording of them has a gap (a link loss).

Every subscription, service and goal is guarded (:mod:`autopilot_core.guard`): bad input is refused with
the reason, logged at most once per endpoint per interval and counted on ``/diagnostics``.

Hardware lives under ``hardware_namespace`` (default: the pilot's own), so a task can drive devices on
another Pi (Autopilot's "children") by pointing it there: ``<hw>/gpio/events``, ``gpio/output``,
``gpio/reward``, ``sound/load``, ``sound/play``, ``sound/stop``, ``sound/onsets``.

Durability: each trial is written to the journal (SQLite, fsync'd) before it is published; the terminal
acks by (session, trial number); unacked trials are resent every ``resend_interval_s``, whenever a new
subscriber appears on ``trials`` and after a restart (sessions left open by a crash are closed as
``interrupted`` and their trials resent). The logic is in :mod:`.runner`, :mod:`.session`, :mod:`.journal`
and :mod:`.protocol`; this node wires them to ROS and runs everything on one executor thread.
"""

from __future__ import annotations

import socket
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autopilot_msgs.action import RunSession
from autopilot_msgs.msg import (
    DigitalOutput,
    GpioEvent,
    PilotStatus,
    Reward,
    SoundOnset,
    SoundPlay,
    SoundSpec,
    StepChange,
    TrialAck,
    TrialData,
)
from autopilot_msgs.srv import GetEvents, LoadProtocol, LoadSound, SetTaskParameters
from rcl_interfaces.msg import SetParametersResult
from rcl_interfaces.srv import GetParameters
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message, serialize_message
from rclpy.task import Future
from rclpy.time import Time
from std_msgs.msg import Empty
from std_srvs.srv import Trigger

from autopilot_core import guard, intra, qos
from autopilot_core.checks import InputError, sequence, short, text
from autopilot_core.executors import run_node
from autopilot_core.names import host_namespace, node_label
from autopilot_core.params import ParamSpec, check_unknown, declare
from autopilot_core.provenance import package_versions, ros_info
from autopilot_pilot.journal import Journal, JournalError
from autopilot_pilot.runner import TaskRunner, TrialRecord
from autopilot_pilot.session import Plan, PlanError, Progress, make_plan
from autopilot_pilot.trials import to_trial_fields
from autopilot_pilot.writer import TrialWriter
from autopilot_tasks import registry
from autopilot_tasks.protocol import Protocol, ProtocolError, load_protocol
from autopilot_tasks.task import Input, Output, Sound, TaskError

PARAMS = (
    ParamSpec('pilot', '', 'Pilot name in trials and status ("": the namespace)', read_only=True),
    ParamSpec('hardware_namespace', '', 'Namespace of the gpio and sound nodes this pilot drives ("": its own)',
              read_only=True),
    ParamSpec('device_map', [], 'Task roles mapped to rig devices, "role:device" (e.g. "center:poke_3")',
              type=Parameter.Type.STRING_ARRAY, read_only=True),
    ParamSpec('journal_path', '', 'Trial journal (SQLite); "": ~/.autopilot/journal/<pilot>.sqlite3',
              read_only=True),
    ParamSpec('protocol_dir', '', 'Directory of <name>.yaml protocol files ("": only loaded ones)', read_only=True),
    ParamSpec('check_hardware', True, 'Check at session start that the rig has every device the task needs',
              read_only=True),
    ParamSpec('hardware_timeout_s', 5.0, 'How long to wait for the hardware nodes at session start', unit='s',
              min=0.1, max=120.0),
    ParamSpec('resend_interval_s', 2.0, 'Resend trials the terminal has not acknowledged this often', unit='s',
              min=0.1, max=3600.0),
    ParamSpec('seed', 0, 'Seed of the tasks\' random draws (0: a new one per session, logged)', min=0),
)

#: Bounds on what a client may send: names, parameters per request, protocol text, protocols loaded.
MAX_NAME = 256
MAX_PARAMETERS = 256
MAX_PROTOCOL_TEXT = 1_000_000
MAX_PROTOCOLS = 256
#: Period of the pilot's chores (:meth:`PilotNode.housekeeping`); GPIO events are journalled this often.
HOUSEKEEPING_S = 0.2
#: Events one journal_events answer holds at most (GetEvents.srv).
MAX_EVENTS_PER_CALL = 1000
#: Longest wait between two resends of an unacknowledged trial.
RESEND_MAX_S = 60.0
#: How many play ids awaiting their onset a RosHardware remembers (see RosHardware.play_ids).
PLAY_IDS_KEPT = 256
SOUND_KINDS = {'tone': SoundSpec.KIND_TONE, 'noise': SoundSpec.KIND_NOISE, 'fm_sweep': SoundSpec.KIND_FM_SWEEP,
               'wav': SoundSpec.KIND_WAV}


def parameter_values(params: Any) -> dict[str, Any]:
    """rcl_interfaces/Parameter messages of a goal or request -> {name: value}; InputError when too many or odd."""
    sequence('parameters', params, MAX_PARAMETERS)
    return {text('parameter name', p.name, MAX_NAME, empty=False): Parameter.from_parameter_msg(p).value
            for p in params}


def parse_device_map(entries: list[str]) -> dict[str, str]:
    """``['center:poke_3']`` -> ``{'center': 'poke_3'}``; ValueError naming a malformed entry."""
    out: dict[str, str] = {}
    for entry in entries:
        if not entry:
            continue
        role, sep, device = entry.partition(':')
        if not sep or not role.strip() or not device.strip():
            raise ValueError(f"device_map entry {entry!r}: write it as 'role:device', e.g. 'center:poke_center'")
        out[role.strip()] = device.strip()
    return out


class RosClock:
    """The runner's clock on ROS one-shot timers (cancelled in their callback, destroyed afterwards).

    A timer is never destroyed inside its own callback, so fired and cancelled ones wait in ``_spent`` for
    the next ``call_later``; :meth:`close` destroys whatever is left when the runner is done, so no timer
    outlives its session.
    """

    def __init__(self, node: Node) -> None:
        self.node = node
        self._spent: list[Any] = []
        self._live: set[Any] = set()

    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def collect(self) -> None:
        """Destroy the timers that fired or were cancelled (never from inside their own callback)."""
        while self._spent:
            timer = self._spent.pop()
            self._live.discard(timer)
            self.node.destroy_timer(timer)

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> Any:
        self.collect()
        holder: list[Any] = []

        def fire() -> None:
            timer = holder[0]
            timer.cancel()
            self._spent.append(timer)
            fn()
        holder.append(self.node.create_timer(max(delay_s, 0.0), fire))
        self._live.add(holder[0])
        return holder[0]

    def cancel(self, handle: Any) -> None:
        handle.cancel()
        if handle not in self._spent:  # cancelled twice: destroy once
            self._spent.append(handle)

    def close(self) -> None:
        """Destroy every timer of this clock (the runner has stopped: none may fire any more)."""
        self._spent = list(self._live)
        self.collect()


class RosHardware:
    """The task's ``self.hw`` on the rig's topics; roles are resolved to devices through ``devices``.

    Sounds are loaded through the sound server's service; plays asked for while a load is still pending are
    held back and sent when every load has answered, so a play never reaches the server before its sound.
    """

    def __init__(self, node: PilotNode, devices: dict[str, str]) -> None:
        self.node = node
        self.devices = devices
        # Ids of our plays whose onset has not come back (onsets of other plays on the server are not ours).
        # An onset is delivered whenever it arrives, also after the trial that played it has ended (the
        # next trial's stage gets it), so the ids are not cleared per trial; instead only the newest
        # PLAY_IDS_KEPT are kept (insertion-ordered dict), which bounds the map when onsets never come
        # (sound server down, plays dropped by stop_sound) over a long session.
        self.play_ids: dict[int, None] = {}
        self._next_play = int(time.time_ns() // 1000) % 1_000_000_000 * 1000  # unique across pilot restarts
        self._pending_loads: list[Future] = []
        self._held: list[SoundPlay] = []

    def _device(self, role: str) -> str:
        try:
            return self.devices[role]
        except KeyError:
            raise TaskError(f'no hardware role {role!r}; roles: {", ".join(self.devices)}') from None

    def _stamp(self, msg: Any) -> Any:
        # Fields set directly: to_msg() builds another message (the closed loop's path, bench/closed_loop.py).
        stamp = msg.header.stamp
        stamp.sec, stamp.nanosec = divmod(self.node.get_clock().now().nanoseconds, 1_000_000_000)
        return msg

    def reward(self, role: str, volume_ul: float) -> None:
        self.node.reward_pub.publish(self._stamp(Reward(device=self._device(role), volume_ul=float(volume_ul))))

    def pulse(self, role: str, ms: float) -> None:
        self.node.output_pub.publish(self._stamp(DigitalOutput(device=self._device(role), mode=DigitalOutput.MODE_PULSE,
                                                               pulse_us=round(ms * 1000))))

    def set(self, role: str, level: bool) -> None:
        self.node.output_pub.publish(self._stamp(DigitalOutput(device=self._device(role), mode=DigitalOutput.MODE_LEVEL,
                                                               level=bool(level))))

    def pwm(self, role: str, duty: float, frequency_hz: float = 0) -> None:
        self.node.output_pub.publish(self._stamp(DigitalOutput(device=self._device(role), mode=DigitalOutput.MODE_PWM,
                                                               pwm_duty=float(duty),
                                                               pwm_frequency_hz=float(frequency_hz))))

    def load_sound(self, sound_id: str, **spec: Any) -> None:
        kind = spec.pop('kind', 'tone')
        if kind not in SOUND_KINDS:
            raise TaskError(f'load_sound({sound_id!r}): kind {kind!r}, expected one of {", ".join(SOUND_KINDS)}')
        try:
            msg = SoundSpec(id=sound_id, kind=SOUND_KINDS[kind], **spec)
        except (AttributeError, TypeError, AssertionError) as exc:
            raise TaskError(f'load_sound({sound_id!r}): {exc}') from None
        future = self.node.load_client.call_async(LoadSound.Request(sound=msg))
        self._pending_loads.append(future)
        future.add_done_callback(lambda f: self._loaded(sound_id, f))

    def _loaded(self, sound_id: str, future: Future) -> None:
        self._pending_loads.remove(future)
        res = future.result()
        if res is None or not res.success:
            self.node.fail_session(f'sound server refused {sound_id!r}: {res.message if res else "no answer"}')
            return
        if not self._pending_loads:
            held, self._held = self._held, []
            for msg in held:
                self.node.play_pub.publish(msg)

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
            self.node.play_pub.publish(msg)
        return self._next_play

    def stop_sound(self) -> None:
        self._held.clear()
        self.node.stop_pub.publish(Empty())


class Active:
    """The running session: plan, progress, runner, goal and its wake-up future."""

    def __init__(self, session_id: str, plan: Plan, goal: ServerGoalHandle, progress: Progress) -> None:
        self.session_id = session_id
        self.plan = plan
        self.goal = goal
        self.progress = progress
        self.runner: TaskRunner | None = None
        self.clock: RosClock | None = None
        self.hw: RosHardware | None = None
        self.started = time.monotonic()
        self.wake: Future = Future()
        self.end_reason: str | None = None     # set: the session ends at the next wake-up
        self.error: str | None = None
        self.graduate_reason: str | None = None
        self.limit_pending: str | None = None   # max_duration_s passed mid-trial: end after it
        self.events: list[GpioEvent] = []       # GPIO events not journalled yet (TrialWriter.submit_events)
        self.duration_timer: Any = None
        self.seed = 0

    def poke(self) -> None:
        if not self.wake.done():
            self.wake.set_result(None)


class PilotNode(Node):
    def __init__(self) -> None:
        super().__init__('pilot', namespace=host_namespace())
        p = declare(self, PARAMS)
        check_unknown(self)  # a misspelt params-file key is an error, not silently ignored
        self.pilot = p['pilot'] or node_label(self.get_namespace(), 'pilot')
        try:
            self.device_map = parse_device_map(list(p['device_map']))
        except ValueError as exc:
            raise ValueError(f'{self.get_name()}: parameter device_map: {exc}') from None
        hw = p['hardware_namespace'].rstrip('/')
        self.hw_prefix = (hw if hw.startswith('/') else f'{self.get_namespace().rstrip("/")}/{hw}') if hw else \
            self.get_namespace().rstrip('/')
        path = Path(p['journal_path'] or f'~/.autopilot/journal/{self.pilot}.sqlite3').expanduser()
        try:
            self.journal = Journal(path)
        except JournalError as exc:
            raise RuntimeError(f'{self.get_name()}: {exc}') from None
        self.protocol_dir = p['protocol_dir']
        self.protocols: dict[str, Protocol] = {}
        self.active: Active | None = None
        self._plan: Plan | None = None  # of the accepted goal, until its session ends

        versions = package_versions()
        ros = ros_info()
        self.status = PilotStatus(pilot=self.pilot, state=PilotStatus.STATE_IDLE,
                                  package_names=list(versions), package_versions=list(versions.values()),
                                  ros_distro=ros['distro'], rmw_implementation=ros['rmw_implementation'],
                                  host=socket.gethostname())
        self.status_pub = self.create_publisher(PilotStatus, 'status', qos.STATUS)
        self.trial_pub = self.create_publisher(TrialData, 'trials', qos.TRIALS)
        self.step_pub = self.create_publisher(StepChange, 'step_changes', qos.TRIALS)
        guard.create_subscription(self, TrialAck, 'trial_acks', self.on_ack, qos.TRIALS, sender=lambda m: m.pilot)

        h = self.hw_prefix
        # The closed loop (events in, outputs and plays out) is intra-process (autopilot_core.intra) with a
        # gpio or sound node composed into this process; over DDS otherwise and for every other process.
        self.output_pub = intra.create_publisher(self, DigitalOutput, f'{h}/gpio/output', qos.EVENTS)
        self.reward_pub = self.create_publisher(Reward, f'{h}/gpio/reward', qos.EVENTS)
        self.play_pub = intra.create_publisher(self, SoundPlay, f'{h}/sound/play', qos.EVENTS)
        self.stop_pub = self.create_publisher(Empty, f'{h}/sound/stop', qos.EVENTS)
        intra.create_subscription(self, GpioEvent, f'{h}/gpio/events', self.on_gpio, qos.EVENTS)
        intra.create_subscription(self, SoundOnset, f'{h}/sound/onsets', self.on_onset, qos.EVENTS)
        self.load_client = self.create_client(LoadSound, f'{h}/sound/load')
        self.gpio_params = self.create_client(GetParameters, f'{h}/gpio/get_parameters')

        guard.create_service(self, Trigger, 'pause', self.srv_pause)
        guard.create_service(self, Trigger, 'resume', self.srv_resume)
        guard.create_service(self, SetTaskParameters, 'set_task_parameters', self.srv_set_parameters)
        guard.create_service(self, LoadProtocol, 'load_protocol', self.srv_load_protocol)
        guard.create_service(self, GetEvents, 'journal_events', self.srv_journal_events)
        self.action = ActionServer(self, RunSession, 'session', execute_callback=self.execute,
                                   goal_callback=self.on_goal, cancel_callback=self.on_cancel)

        self._trial_subscribers = 0
        self._writer_errors: list[str] = []
        self.writer = TrialWriter(self.journal, self.trial_pub.publish, self._writer_error)
        self._sent: dict[tuple[str, str, int], tuple[float, int]] = {}  # resend bookkeeping: (last, attempts)
        # Few timers: rclpy's EventsExecutor warns on every trial once a node's clock has 8 (a trial adds its
        # own), so the periodic chores share one.
        self.create_timer(HOUSEKEEPING_S, self.housekeeping)
        # 2 Hz: the gpio node drives every output low 1.5 s after the last beat (a dead pilot leaves nothing on).
        self.create_timer(0.5, self.publish_status)
        self.create_timer(p['resend_interval_s'], self.resend)
        self.recover()
        self.publish_status()
        self.get_logger().info(f'pilot {self.pilot} ready: hardware under {h or "/"}, journal {path}, '
                               f'tasks: {", ".join(registry.task_names()) or "none"}')

    # -- status ------------------------------------------------------------------------------------
    def publish_status(self) -> None:
        a = self.active
        if a is not None and a.runner is not None:
            self.status.trial_count = a.progress.n_trials
        self.status.header.stamp = self.get_clock().now().to_msg()
        self.status_pub.publish(self.status)

    def set_state(self, state: int, message: str = '') -> None:
        self.status.state = state
        self.status.message = message
        self.publish_status()

    # -- durability --------------------------------------------------------------------------------
    def recover(self) -> None:
        """Close sessions a crash left open; their unacked trials go out with the next resend."""
        self.journal.prune_events()
        for s in self.journal.open_sessions():
            self.journal.end_session(s.session_id, state='interrupted')
            # Told in every heartbeat, so a terminal that recorded the session closes it as interrupted too.
            self.status.last_session_id, self.status.last_session_state = s.session_id, 'interrupted'
            self.get_logger().warning(f'session {s.session_id} of {s.subject} was interrupted (pilot restart); '
                                      f'its {self.journal.stats(s.session_id).unacked_trials} unacknowledged '
                                      'trial(s) will be resent')

    def resend(self, now: bool = False) -> None:
        """Publish unacknowledged trials and step changes again, each on its own backoff.

        A trial goes out again ``resend_interval_s`` after it was last sent, then twice as long each time,
        up to ``RESEND_MAX_S``: a terminal that is away costs little, and a plain ``topic echo`` (which never
        acks) does not see the same trial every few seconds. ``now``: a subscriber appeared, send all.
        """
        t = time.monotonic()
        interval = self.get_parameter('resend_interval_s').value
        keys = set()
        for kind, rows, pub in (('trial', self.journal.unacked(limit=500), self.trial_pub),
                                ('step', self.journal.unacked_steps(limit=100), self.step_pub)):
            for row in rows:
                key = (kind, row.session_id, getattr(row, 'trial_number', getattr(row, 'seq', 0)))
                keys.add(key)
                last, attempts = self._sent.get(key, (None, 0))
                if last is None:
                    # First seen here: just published by this process (give the ack a moment), or journalled
                    # before a restart (send it now).
                    fresh = kind == 'trial' and time.time_ns() - row.stamp_ns < interval * 1e9
                    if fresh and not now:
                        self._sent[key] = (t, 0)
                        continue
                elif not now and t - last < min(interval * 2 ** attempts, RESEND_MAX_S):
                    continue
                if row.payload:
                    pub.publish(row.payload)
                self._sent[key] = (t, attempts + 1)
        for key in set(self._sent) - keys:  # acked since
            del self._sent[key]

    def watch_subscribers(self) -> None:
        n = self.trial_pub.get_subscription_count()
        if n > self._trial_subscribers:
            self.resend(now=True)  # a terminal (re)appeared: what it missed goes out now
        self._trial_subscribers = n

    def on_ack(self, msg: TrialAck) -> None:
        # An ack marks trials delivered (never resent again): only one naming this pilot and one of its
        # sessions counts. Acks for other pilots share the topic name only on a misconfigured graph.
        if msg.pilot != self.pilot:
            raise InputError(f'ack names pilot {short(msg.pilot)}, not {self.pilot!r}: acks must name the pilot '
                             'whose trials they acknowledge')
        if self.journal.session(msg.session_id) is None:
            raise InputError(f'ack for session {short(msg.session_id)}, which this pilot never ran')
        sequence('trial_numbers', msg.trial_numbers)
        sequence('step_seqs', msg.step_seqs)
        try:
            if msg.trial_numbers:
                self.journal.ack(msg.session_id, list(msg.trial_numbers))
            if msg.step_seqs:
                self.journal.ack_steps(msg.session_id, list(msg.step_seqs))
        except JournalError as exc:
            self.get_logger().error(f'trial ack not recorded: {exc}')

    # -- hardware events ---------------------------------------------------------------------------
    def on_gpio(self, msg: GpioEvent) -> None:
        a = self.active
        if a is None:
            return
        a.events.append(msg)  # journalled in batches: a terminal that missed some fetches them (journal_events)
        if a.runner is not None:
            s = msg.header.stamp
            a.runner.handle_gpio(msg.device, msg.level, msg.tick_us, s.sec * 1_000_000_000 + s.nanosec)

    def on_onset(self, msg: SoundOnset) -> None:
        a = self.active
        if a is not None and a.runner is not None and a.hw is not None and msg.play_id in a.hw.play_ids:
            del a.hw.play_ids[msg.play_id]
            s = msg.header.stamp
            a.runner.handle_onset(msg.sound_id, msg.play_id, s.sec * 1_000_000_000 + s.nanosec, msg.ok)

    def housekeeping(self) -> None:
        """Every HOUSEKEEPING_S: writer errors (polled: the EventsExecutor takes no guard conditions, and they are
        rare), a terminal (re)appearing, the session's GPIO events to the journal, spent task timers."""
        self._on_writer_error()
        self.watch_subscribers()
        self.journal_events()
        a = self.active
        if a is not None and a.clock is not None:
            a.clock.collect()

    def journal_events(self) -> None:
        a = self.active
        if a is not None and a.events:
            events, a.events = a.events, []
            self.writer.submit_events(a.session_id, events)

    # -- services ----------------------------------------------------------------------------------
    def srv_journal_events(self, req: GetEvents.Request, res: GetEvents.Response) -> GetEvents.Response:
        """The GPIO events of a session this pilot journalled, for a terminal whose recording has a gap."""
        text('session_id', req.session_id, 128)
        if self.journal.session(req.session_id) is None:
            res.success, res.message = False, f'this pilot ran no session {short(req.session_id)}'
            return res
        self.journal_events()
        self.writer.flush(5.0)
        rows = self.journal.events(req.session_id, req.run_id, req.first_seq, req.last_seq, MAX_EVENTS_PER_CALL + 1)
        res.more = len(rows) > MAX_EVENTS_PER_CALL
        res.events = [deserialize_message(p, GpioEvent) for _, p in rows[:MAX_EVENTS_PER_CALL]]
        res.success, res.message = True, f'{len(res.events)} events' + (' (more: ask again)' if res.more else '')
        return res

    def srv_pause(self, _req: Trigger.Request, res: Trigger.Response) -> Trigger.Response:
        a = self.active
        if a is None or a.runner is None:
            res.success, res.message = False, 'no session is running'
            return res
        a.runner.pause()
        self.set_state(PilotStatus.STATE_PAUSED, 'paused: the running trial finishes first')
        res.success, res.message = True, f'pausing after trial {a.runner.trial_number}'
        return res

    def srv_resume(self, _req: Trigger.Request, res: Trigger.Response) -> Trigger.Response:
        a = self.active
        if a is None or a.runner is None:
            res.success, res.message = False, 'no session is running'
            return res
        a.runner.resume()
        self.set_state(PilotStatus.STATE_RUNNING)
        res.success, res.message = True, 'resumed'
        return res

    def srv_set_parameters(self, req: SetTaskParameters.Request,
                           res: SetTaskParameters.Response) -> SetTaskParameters.Response:
        a = self.active
        if a is None or a.runner is None:
            res.success, res.message = False, 'no session is running: give parameters in the session goal'
            return res
        values = parameter_values(req.parameters)
        try:
            a.runner.update_params(values)
        except TaskError as exc:
            res.success, res.message = False, str(exc)
            res.results = [SetParametersResult(successful=False, reason=str(exc)) for _ in req.parameters]
            return res
        res.success, res.message = True, f'applied at the start of trial {a.runner.trial_number + 1}'
        res.results = [SetParametersResult(successful=True) for _ in req.parameters]
        self.get_logger().info(f'task parameters {values} from trial {a.runner.trial_number + 1}')
        return res

    def srv_load_protocol(self, req: LoadProtocol.Request, res: LoadProtocol.Response) -> LoadProtocol.Response:
        text('name', req.name, MAX_NAME)
        text('yaml_text', req.yaml_text, MAX_PROTOCOL_TEXT)
        if req.name not in self.protocols and len(self.protocols) >= MAX_PROTOCOLS:
            raise InputError(f'{len(self.protocols)} protocols are loaded already (at most {MAX_PROTOCOLS}): restart '
                             'the pilot, or give it protocol_dir')
        try:
            proto = load_protocol(req.yaml_text, source=f'protocol {req.name!r}', lookup_task=registry.lookup,
                                  name=req.name or None)
        except ProtocolError as exc:
            res.success, res.message = False, str(exc)
            return res
        self.protocols[proto.name] = proto
        res.success, res.n_steps = True, len(proto.steps)
        res.message = f'protocol {proto.name!r}: {len(proto.steps)} steps ({", ".join(s.name for s in proto.steps)})'
        self.get_logger().info(f'loaded {res.message}')
        return res

    # -- session action ----------------------------------------------------------------------------
    def on_goal(self, goal: RunSession.Goal) -> GoalResponse:
        if self._plan is not None:
            self.reject(f'a session for {self._plan.subject!r} is running; cancel it first')
            return GoalResponse.REJECT
        try:
            for what, value in (('subject', goal.subject), ('protocol', goal.protocol), ('task', goal.task)):
                text(what, value, MAX_NAME)
            overrides = parameter_values(goal.parameters)
            self._plan = make_plan(subject=goal.subject, protocol=goal.protocol, step=goal.step, task=goal.task,
                                   overrides=overrides, max_trials=goal.max_trials,
                                   max_duration_s=goal.max_duration_s, lookup_task=registry.lookup,
                                   protocols=self.protocols, protocol_dir=self.protocol_dir)
        except (PlanError, ValueError) as exc:
            self.reject(str(exc))
            return GoalResponse.REJECT
        except Exception as exc:  # noqa: BLE001 - no goal may end the pilot: refused with the reason
            self.reject(guard.describe(exc))
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def reject(self, why: str) -> None:
        # A rejected goal carries no text: the reason goes in the status heartbeat (and the log, rate-limited:
        # goals may come from anything on the domain).
        guard.of(self).refuse(self.resolve_topic_name('session'), f'session rejected: {why}')
        self.set_state(self.status.state if self.active else PilotStatus.STATE_IDLE, f'session rejected: {why}')

    def on_cancel(self, _goal: ServerGoalHandle) -> CancelResponse:
        a = self.active
        if a is not None:
            a.end_reason = a.end_reason or 'cancelled'
            a.poke()
        return CancelResponse.ACCEPT

    def fail_session(self, text: str) -> None:
        a = self.active
        if a is not None and a.error is None:
            a.error = text
            a.poke()

    async def check_hardware(self, plan: Plan, devices: dict[str, str]) -> str | None:
        """What the rig lacks for ``plan``'s task, or None."""
        timeout = self.get_parameter('hardware_timeout_s').value
        roles = plan.task_cls.hardware()
        needs_gpio = any(isinstance(r, (Input, Output)) for r in roles.values())
        if needs_gpio:
            if not self.gpio_params.wait_for_service(0.0) and not await self.wait_service(self.gpio_params, timeout):
                return (f'no gpio node at {self.hw_prefix}/gpio (waited {timeout:g} s): start the rig '
                        '(rig.launch.yaml) or set the pilot parameter hardware_namespace')
            res = await self.call(self.gpio_params, GetParameters.Request(names=['inputs', 'outputs']), timeout)
            if res is None:
                return f'{self.hw_prefix}/gpio did not answer get_parameters within {timeout:g} s'
            if len(res.values) != 2:
                return f'{self.hw_prefix}/gpio has no inputs/outputs parameters: is it an autopilot gpio node?'
            inputs, outputs = (list(v.string_array_value) for v in res.values)
            for role, decl in roles.items():
                if isinstance(decl, (Input, Output)):
                    have = inputs if isinstance(decl, Input) else outputs
                    kind = 'input' if isinstance(decl, Input) else 'output'
                    if devices[role] not in have:
                        return (f'task {plan.task_name} needs {kind} {devices[role]!r} (role {role}) but '
                                f'{self.hw_prefix}/gpio has {kind}s {have}: add it to the rig\'s params file or '
                                f'map the role with the pilot parameter device_map ("{role}:<device>")')
        if any(isinstance(r, Sound) for r in roles.values()) and \
                not await self.wait_service(self.load_client, timeout):
            return (f'no sound server at {self.hw_prefix}/sound (waited {timeout:g} s): start it (backend null '
                    'for a rig without speakers) or set hardware_namespace')
        return None

    async def wait_service(self, client: Any, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while not client.service_is_ready():
            if time.monotonic() > end:
                return False
            await self.sleep(0.05)
        return True

    async def call(self, client: Any, request: Any, timeout: float) -> Any:
        future = client.call_async(request)
        end = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > end:
                client.remove_pending_request(future)
                return None
            await self.sleep(0.02)
        return future.result()

    async def sleep(self, seconds: float) -> None:
        done = Future()
        timer = self.create_timer(seconds, lambda: done.done() or done.set_result(None))
        await done
        self.destroy_timer(timer)

    def history_of(self, plan: Plan) -> tuple[list[dict[str, Any]], int]:
        """This pilot's earlier trials (field dicts) and ended sessions of the subject at this protocol step."""
        if plan.protocol is None:
            return [], 0
        return self.journal.step_history(plan.subject, plan.protocol_name, plan.step)

    def devices_for(self, plan: Plan) -> dict[str, str]:
        """The device_map entries for roles this task has (the map may cover several tasks' roles)."""
        roles = plan.task_cls.hardware()
        return {r: d for r, d in self.device_map.items() if r in roles}

    def start_runner(self, a: Active) -> None:
        plan = a.plan
        a.hw = RosHardware(self, {})
        if a.clock is not None:  # a step change: the last step's runner has stopped
            a.clock.close()
        a.clock = RosClock(self)
        a.runner = TaskRunner(plan.task_cls, plan.params, a.clock, a.hw, seed=a.seed,
                              on_trial=self.on_trial, devices=self.devices_for(plan),
                              on_error=self.fail_session, on_log=lambda text: self.get_logger().info(text))
        a.hw.devices = a.runner.devices
        self.status.task, self.status.step = plan.task_name, plan.step
        a.runner.start()

    async def execute(self, goal: ServerGoalHandle) -> RunSession.Result:
        try:
            return await self._execute(goal)
        except Exception as exc:  # noqa: BLE001 - a bug must end the session with its reason, not hang it
            text = f'internal error: {type(exc).__name__}: {exc}'
            self.get_logger().error(f'session failed: {text}\n{traceback.format_exc()}')
            if self.active is not None:
                self.end_session(self.active, 'error')
            self.set_state(PilotStatus.STATE_ERROR, text)
            goal.abort()
            return RunSession.Result(success=False, message=text)
        finally:
            self._plan = None

    async def _execute(self, goal: ServerGoalHandle) -> RunSession.Result:
        plan = self._plan
        assert plan is not None
        session_id = str(uuid.uuid4())
        prior, n_sessions = self.history_of(plan)
        a = Active(session_id, plan, goal, Progress(plan, prior=prior, sessions_in_step=n_sessions))
        a.seed = self.get_parameter('seed').value or int.from_bytes(uuid.uuid4().bytes[:4], 'little')
        self.active = a
        self.status.subject, self.status.session_id, self.status.protocol = plan.subject, session_id, \
            plan.protocol_name
        self.status.task, self.status.step, self.status.trial_count = plan.task_name, plan.step, 0
        log = self.get_logger()
        result = RunSession.Result(session_id=session_id)
        try:
            missing = await self.check_hardware(plan, TaskRunner._resolve_devices(plan.task_cls, self.devices_for(plan))) \
                if self.get_parameter('check_hardware').value else None
            if missing:
                raise PlanError(missing)
            self.journal.begin_session(session_id, subject=plan.subject, task=plan.task_name,
                                       protocol=plan.protocol_name, step=plan.step, step_name=plan.step_name,
                                       parameters=plan.params)
            log.info(f'session {session_id}: {plan.subject}, {plan.protocol_name or "no protocol"} step {plan.step} '
                     f'{plan.step_name!r}, task {plan.task_name}, seed {a.seed}, parameters {plan.params}')
            self.set_state(PilotStatus.STATE_RUNNING)
            reason = a.progress.graduation()  # e.g. enough sessions already done in this step
            if reason:
                self.change_step(a, reason)
            self.start_runner(a)
            if plan.max_duration_s:
                a.duration_timer = self.create_timer(plan.max_duration_s, lambda: self.end_at_limit(a))
            while True:
                await a.wake
                a.wake = Future()
                if a.error:
                    raise PlanError(a.error)
                if a.end_reason:
                    break
                if a.graduate_reason:
                    a.runner.stop()
                    self.change_step(a, a.graduate_reason)
                    a.graduate_reason = None
                    self.start_runner(a)
        except (PlanError, JournalError, TaskError) as exc:
            text = str(exc)
            log.error(f'session {session_id} failed: {text}')
            self.end_session(a, 'error')
            self.set_state(PilotStatus.STATE_ERROR, text)
            result.success, result.message = False, text
            goal.abort()
            return self.fill(result, a)
        self.end_session(a, 'cancelled' if goal.is_cancel_requested else 'ended')
        self.set_state(PilotStatus.STATE_IDLE)
        result.success, result.message = True, f'{a.progress.n_trials} trials; {a.end_reason}'
        log.info(f'session {session_id} ended: {result.message}')
        if goal.is_cancel_requested:
            goal.canceled()
        else:
            goal.succeed()
        return self.fill(result, a)

    def fill(self, result: RunSession.Result, a: Active) -> RunSession.Result:
        result.n_trials = a.progress.n_trials
        result.fraction_correct = a.progress.fraction_correct
        result.duration_s = time.monotonic() - a.started
        result.final_step = a.progress.plan.step
        return result

    def end_at_limit(self, a: Active) -> None:
        if a.runner is not None and a.end_reason is None:
            a.runner.pause()  # the running trial finishes; the session ends with it
            a.limit_pending = a.limit_pending or f'max_duration_s {a.plan.max_duration_s:g} reached'
            if a.runner.state == 'paused':
                a.end_reason = a.limit_pending
                a.poke()

    def end_session(self, a: Active, state: str) -> None:
        if a.runner is not None:
            a.runner.stop()
        self.journal_events()
        if a.clock is not None:
            a.clock.close()
        if not self.writer.flush(10.0):  # the session's trials are in the journal before it is closed
            self.get_logger().error('trial writer did not finish within 10 s: the disk is stalled?')
        if a.duration_timer is not None:
            self.destroy_timer(a.duration_timer)
            a.duration_timer = None
        try:
            if self.journal.session(a.session_id) is not None:
                self.journal.end_session(a.session_id, state=state)
        except JournalError as exc:
            self.get_logger().error(str(exc))
        self.status.last_session_id, self.status.last_session_state = a.session_id, state
        self.active = None
        self.status.subject = self.status.session_id = self.status.task = ''
        self.status.protocol, self.status.step = '', 0

    def change_step(self, a: Active, reason: str) -> None:
        old = a.progress.plan
        after = a.progress.n_trials
        new = old.at_step(old.step + 1)
        prior, n_sessions = self.history_of(new)
        a.progress.graduate(prior, n_sessions)
        a.plan = new
        seq = len(self.journal.steps(a.session_id)) + 1
        msg = StepChange(pilot=self.pilot, subject=old.subject, session_id=a.session_id, seq=seq,
                         protocol=old.protocol_name,
                         from_step=old.step, to_step=new.step, from_step_name=old.step_name,
                         to_step_name=new.step_name, after_trial=after, reason=reason)
        msg.header.stamp = self.get_clock().now().to_msg()
        recorded = self.journal.record_step(a.session_id, after_trial=after, from_step=old.step, to_step=new.step,
                                            reason=reason, payload=serialize_message(msg), step_name=new.step_name,
                                            parameters=new.params)
        assert recorded == seq, (recorded, seq)
        self.step_pub.publish(msg)
        self.status.step = new.step
        self.get_logger().info(f'{old.subject} graduates from step {old.step} {old.step_name!r} to {new.step} '
                               f'{new.step_name!r} after trial {after}: {reason}')

    def on_trial(self, record: TrialRecord) -> None:
        """A finished trial: journal (durable), publish, feedback; then limits and graduation."""
        a = self.active
        assert a is not None and a.runner is not None
        a.progress.add(record.fields)
        plan = a.plan
        number = a.progress.n_trials  # numbered per session, across protocol steps
        msg = TrialData(pilot=self.pilot, subject=plan.subject, session_id=a.session_id, trial_number=number,
                        task=plan.task_name, protocol=plan.protocol_name, step=plan.step, step_name=plan.step_name,
                        fields=to_trial_fields(record.fields, plan.task_cls.fields()))
        msg.header.stamp = Time(nanoseconds=record.ended_ns).to_msg()
        msg.start = Time(nanoseconds=record.started_ns).to_msg()
        # Journalled (fsync) and then published by the writer thread: this callback does not wait for the disk.
        self.writer.submit(a.session_id, number, serialize_message(msg), {'fields': record.fields, 'step': plan.step},
                           time.time_ns())
        self.status.trial_count = number
        self.publish_status()
        a.goal.publish_feedback(RunSession.Feedback(trial_count=number, state=a.runner.task.stages[0],
                                                    step=plan.step, fraction_correct=a.progress.fraction_correct))
        limit = a.progress.limit_reached(time.monotonic() - a.started) or a.limit_pending
        if limit:
            a.runner.pause()
            a.end_reason = limit
            a.poke()
            return
        reason = a.progress.graduation()
        if reason:
            a.runner.pause()  # holds after this trial; execute() swaps in the next step's task
            a.graduate_reason = reason
            a.poke()

    def _writer_error(self, text: str, fatal: bool) -> None:
        # Writer thread: log now, act on the executor thread (the runner is not thread-safe).
        self.get_logger().error(text)
        if fatal:
            self._writer_errors.append(text)

    def _on_writer_error(self) -> None:
        while self._writer_errors:
            text = self._writer_errors.pop(0)
            a = self.active
            if a is not None and a.runner is not None:
                a.runner.pause()
            self.fail_session(text)

    def close(self) -> None:
        a = self.active
        if a is not None:
            # Ctrl-C / SIGTERM mid-session: the session ends as interrupted (as after a crash), every finished
            # trial journalled; the terminal learns of the end from this last heartbeat, the trials it has
            # not acknowledged are resent when the pilot runs again.
            n = a.progress.n_trials
            self.end_session(a, 'interrupted')
            self.set_state(PilotStatus.STATE_IDLE, f'session {a.session_id} interrupted: the pilot stopped')
            self.get_logger().warning(f'session {a.session_id} of {a.plan.subject} interrupted after {n} trial(s): '
                                      'the pilot is stopping')
            for pub in (self.trial_pub, self.status_pub):
                pub.wait_for_all_acked(Duration(seconds=1.0))
        intra.flush(self)  # commands the end published while no executor spins still go out on DDS
        self.writer.close()
        self.journal.close()

    def destroy_node(self) -> None:
        if not self.journal.closed:
            self.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(PilotNode, args)


if __name__ == '__main__':
    sys.exit(main())
