"""``pilot``: runs behavioural sessions: one task at a time, driving the rig's hardware nodes by topics.

Endpoints (relative to the pilot's namespace; default namespace: this host's name, sanitised):

* ``status`` (PilotStatus, qos.STATUS: transient-local): 2 Hz and on every change (:mod:`.status`);
* ``session`` (action RunSession): subject + protocol/step or task + parameter overrides; feedback per
  trial; cancel = stop (the running trial is abandoned, never half-reported) (:mod:`.lifecycle`);
* ``pause`` / ``resume`` (Trigger): between trials; ``set_task_parameters``: applied at the next trial;
* ``load_protocol`` (LoadProtocol): a protocol's YAML text, checked (line and field named on error);
* ``trials`` (TrialData), ``step_changes`` (StepChange), both qos.TRIALS, journalled before they are
  published and resent until ``trial_acks`` (TrialAck) acks them (:mod:`.reports`, :mod:`.delivery`);
* ``journal_events`` (GetEvents): a session's journalled GPIO events, for a terminal whose recording of
  them has a gap (a link loss).

Every subscription, service and goal is guarded (:mod:`autopilot_core.guard`): bad input is refused with
the reason, logged at most once per endpoint per interval and counted on ``/diagnostics``.

Hardware lives under ``hardware_namespace`` (default: the pilot's own), so a task can drive devices on
another Pi (Autopilot's "children"): ``<hw>/gpio/events``, ``gpio/output``, ``gpio/reward``, ``sound/load``,
``sound/play``, ``sound/stop``, ``sound/onsets``; the rig is checked before a session (:mod:`.hardware_check`)
and the task's ``self.hw`` is :mod:`.hardware`. A task's stream roles (a running wheel on a child host) are
subscribed for its session, under the same namespace unless mapped to an absolute topic (:mod:`.streams`).
Everything runs on one executor thread.
"""

from __future__ import annotations

import sys
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autopilot_msgs.action import RunSession
from autopilot_msgs.msg import GpioEvent, PilotStatus, SoundOnset, StepChange, TrialAck, TrialData
from autopilot_msgs.srv import ClockSync, GetEvents, LoadProtocol, LoadSound, SetTaskParameters
from rcl_interfaces.msg import SetParametersResult
from rcl_interfaces.srv import GetParameters
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_srvs.srv import Trigger

from autopilot_core import guard, intra, pilot_states, qos, stamps
from autopilot_core.checks import short, text
from autopilot_core.executors import run_node
from autopilot_core.names import host_namespace, node_label
from autopilot_core.params import ParamSpec, check_unknown, declare
from autopilot_pilot.clock import RosClock
from autopilot_pilot.delivery import Delivery
from autopilot_pilot.devices import parse_device_map
from autopilot_pilot.hardware import Commands, RosHardware
from autopilot_pilot.hardware_check import HardwareCheck, ServiceProbe
from autopilot_pilot.journal import Journal, JournalError
from autopilot_pilot.lifecycle import ActiveSession, Services
from autopilot_pilot.protocols import ProtocolBook, describe
from autopilot_pilot.reports import Reports
from autopilot_pilot.requests import goal_plan, parameter_values
from autopilot_pilot.session import Plan, PlanError
from autopilot_pilot.status import Heartbeat
from autopilot_pilot.streams import RosStreams
from autopilot_pilot.writer import TrialWriter
from autopilot_tasks import registry
from autopilot_tasks.protocol import ProtocolError
from autopilot_tasks.task import TaskError

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

#: Period of the pilot's chores (:meth:`PilotNode.housekeeping`); GPIO events are journalled this often.
HOUSEKEEPING_S = 0.2


class PilotNode(Node):
    """The pilot: parameters and endpoints; sessions, hardware, delivery and status are delegated."""

    def __init__(self, **node_options: Any) -> None:
        """``node_options``: rclpy Node keywords (``context``, ``namespace``, ``parameter_overrides``...)."""
        super().__init__('pilot', **{'namespace': host_namespace(), **node_options})
        p = declare(self, PARAMS)
        check_unknown(self)  # a misspelt params-file key is an error, not silently ignored
        self.pilot = p['pilot'] or node_label(self.get_namespace(), 'pilot')
        try:
            self.device_map = parse_device_map(p['device_map'])
        except ValueError as exc:
            raise ValueError(f'{self.get_name()}: parameter device_map: {exc}') from None
        hw = p['hardware_namespace'].rstrip('/')
        ns = self.get_namespace().rstrip('/')
        h = self.hw_prefix = (hw if hw.startswith('/') else f'{ns}/{hw}') if hw else ns
        path = Path(p['journal_path'] or f'~/.autopilot/journal/{self.pilot}.sqlite3').expanduser()
        try:
            self.journal = Journal(path)
        except JournalError as exc:
            raise RuntimeError(f'{self.get_name()}: {exc}') from None
        self.protocol_dir = p['protocol_dir']
        self.book = ProtocolBook()
        self.active: ActiveSession | None = None
        self._plan: Plan | None = None  # of the accepted goal, until its session ends
        log = self.get_logger()

        def now_ns() -> int:
            return self.get_clock().now().nanoseconds

        status_pub = self.create_publisher(PilotStatus, 'status', qos.STATUS)
        self.heartbeat = Heartbeat.of_pilot(self.pilot, status_pub.publish, now_ns)
        self.trial_pub = self.create_publisher(TrialData, 'trials', qos.TRIALS)
        step_pub = self.create_publisher(StepChange, 'step_changes', qos.TRIALS)
        self._flushed = (self.trial_pub, status_pub)
        self.delivery = Delivery(self.pilot, self.journal, self.trial_pub.publish, step_pub.publish,
                                 lambda: self.get_parameter('resend_interval_s').value, log.error)
        guard.create_subscription(self, TrialAck, 'trial_acks', self.delivery.ack, qos.TRIALS, sender=lambda m: m.pilot)

        # The closed loop (events in, commands and plays out) is intra-process (autopilot_core.intra) with a
        # gpio or sound node composed into this process; over DDS otherwise and for every other process.
        load_client = self.create_client(LoadSound, f'{h}/sound/load')
        self.commands = Commands.on_node(self, h, load_client, now_ns)
        intra.create_subscription(self, GpioEvent, f'{h}/gpio/events', self.on_gpio, qos.EVENTS)
        intra.create_subscription(self, SoundOnset, f'{h}/sound/onsets', self.on_onset, qos.EVENTS)
        gpio_params = self.create_client(GetParameters, f'{h}/gpio/get_parameters')
        self.rig_check = HardwareCheck(ServiceProbe(self, gpio_params, load_client, h), h) \
            if p['check_hardware'] else None

        guard.create_service(self, Trigger, 'pause', lambda _, res: self._control(res, ActiveSession.pause))
        guard.create_service(self, Trigger, 'resume', lambda _, res: self._control(res, ActiveSession.resume))
        guard.create_service(self, SetTaskParameters, 'set_task_parameters', self.srv_set_parameters)
        guard.create_service(self, LoadProtocol, 'load_protocol', self.srv_load_protocol)
        guard.create_service(self, GetEvents, 'journal_events', self.srv_journal_events)
        # The terminal measures this host's clock against its own (autopilot_terminal.clocksync).
        guard.create_service(self, ClockSync, 'clock_sync', self.srv_clock_sync)
        self.action = ActionServer(self, RunSession, 'session', execute_callback=self.execute,
                                   goal_callback=self.on_goal, cancel_callback=self.on_cancel)

        self._writer_errors: deque[str] = deque()
        self.writer = TrialWriter(self.journal, self.trial_pub.publish, self._writer_error)
        self.shared = Services(
            self.journal, Reports(self.pilot, self.journal, self.writer, step_pub.publish, now_ns), self.heartbeat,
            make_clock=lambda: RosClock(self.create_timer, self.destroy_timer, now_ns),
            make_hardware=lambda devices, on_error: RosHardware(devices, self.commands, on_error),
            device_map=self.device_map, log=log, streams=RosStreams(self, h))
        # Few timers: rclpy's EventsExecutor warns on every trial once a node's clock has 8 (a trial adds its
        # own), so the periodic chores share one.
        self.create_timer(HOUSEKEEPING_S, self.housekeeping)
        # 2 Hz: the gpio node drives every output low 1.5 s after the last beat (a dead pilot leaves nothing on).
        self.create_timer(0.5, self.heartbeat.publish)
        self.create_timer(p['resend_interval_s'], self.delivery.resend)
        for s in self.delivery.recover():  # told in every beat: a terminal that recorded it closes it too
            self.heartbeat.session_ended(s.session_id, 'interrupted')
            log.warning(f'session {s.session_id} of {s.subject} was interrupted (pilot restart); its '
                        f'{self.journal.stats(s.session_id).unacked_trials} unacknowledged trial(s) will be resent')
        self.heartbeat.publish()
        log.info(f'pilot {self.pilot} ready: hardware under {h or "/"}, journal {path}, '
                 f'tasks: {", ".join(registry.task_names()) or "none"}')

    # -- hardware events and chores ----------------------------------------------------------------
    def on_gpio(self, msg: GpioEvent) -> None:
        if self.active is not None:
            self.active.on_gpio(msg, stamps.to_ns(msg.header.stamp))

    def on_onset(self, msg: SoundOnset) -> None:
        if self.active is not None:
            self.active.on_onset(msg.sound_id, msg.play_id, stamps.to_ns(msg.header.stamp), msg.ok)

    def housekeeping(self) -> None:
        """Every HOUSEKEEPING_S: writer errors (polled: the EventsExecutor takes no guard conditions, and they are
        rare), a terminal (re)appearing, the session's GPIO events to the journal, spent task timers."""
        while self._writer_errors:  # acted on here, on the executor thread: the runner is not thread-safe
            message = self._writer_errors.popleft()
            if self.active is not None:
                self.active.fail(message, pause=True)
        self.delivery.subscribers(self.trial_pub.get_subscription_count())
        if self.active is not None:
            self.active.journal_events()
            self.active.collect()

    def _writer_error(self, message: str, fatal: bool) -> None:
        # Writer thread: log now, act on the executor thread (housekeeping).
        self.get_logger().error(message)
        if fatal:
            self._writer_errors.append(message)

    # -- services ----------------------------------------------------------------------------------
    def srv_clock_sync(self, req: ClockSync.Request, res: ClockSync.Response) -> ClockSync.Response:
        # The system clock (what stamps trials and events), read as late and as early as the callback allows.
        res.server_receive_ns = time.time_ns()
        res.client_send_ns = req.client_send_ns
        res.server_send_ns = time.time_ns()
        return res

    def srv_journal_events(self, req: GetEvents.Request, res: GetEvents.Response) -> GetEvents.Response:
        """The GPIO events of a session this pilot journalled, for a terminal whose recording has a gap."""
        text('session_id', req.session_id, 128)
        if self.journal.session(req.session_id) is None:
            res.success, res.message = False, f'this pilot ran no session {short(req.session_id)}'
            return res
        if self.active is not None:
            self.active.journal_events()
        self.writer.flush(5.0)
        res.events, res.more = self.delivery.events(req.session_id, req.run_id, req.first_seq, req.last_seq)
        res.success, res.message = True, f'{len(res.events)} events' + (' (more: ask again)' if res.more else '')
        return res

    def srv_set_parameters(self, req: SetTaskParameters.Request,
                           res: SetTaskParameters.Response) -> SetTaskParameters.Response:
        self._control(res, lambda a: a.set_params(parameter_values(req.parameters)),
                      ': give parameters in the session goal')
        if self.active is not None and self.active.runner is not None:  # one result per parameter, as set_parameters
            reason = '' if res.success else res.message
            res.results = [SetParametersResult(successful=res.success, reason=reason) for _ in req.parameters]
        return res

    def _control(self, res: Any, fn: Callable[[ActiveSession], str], idle_hint: str = '') -> Any:
        """``res`` with success and message of ``fn`` on the running session (TaskError: False and its text)."""
        res.success, res.message = False, 'no session is running' + idle_hint
        if self.active is not None and self.active.runner is not None:
            try:
                res.success, res.message = True, fn(self.active)
            except TaskError as exc:
                res.message = str(exc)
        return res

    def srv_load_protocol(self, req: LoadProtocol.Request, res: LoadProtocol.Response) -> LoadProtocol.Response:
        try:
            proto = self.book.load(req.name, req.yaml_text)
        except ProtocolError as exc:
            res.success, res.message = False, str(exc)
            return res
        res.success, res.n_steps, res.message = True, len(proto.steps), describe(proto)
        self.get_logger().info(f'loaded {res.message}')
        return res

    # -- session action ----------------------------------------------------------------------------
    def on_goal(self, goal: RunSession.Goal) -> GoalResponse:
        if self._plan is not None:
            return self.reject(f'a session for {self._plan.subject!r} is running; cancel it first')
        try:
            self._plan = goal_plan(goal, self.book.protocols, self.protocol_dir)
        except (PlanError, ValueError) as exc:
            return self.reject(str(exc))
        except Exception as exc:  # noqa: BLE001 - no goal may end the pilot: refused with the reason
            return self.reject(guard.describe(exc))
        return GoalResponse.ACCEPT

    def reject(self, why: str) -> GoalResponse:
        # A rejected goal carries no text: the reason goes in the status heartbeat (and the log, rate-limited:
        # goals may come from anything on the domain).
        guard.of(self).refuse(self.resolve_topic_name('session'), f'session rejected: {why}')
        self.heartbeat.refused(f'session rejected: {why}')
        return GoalResponse.REJECT

    def on_cancel(self, _goal: ServerGoalHandle) -> CancelResponse:
        if self.active is not None:
            self.active.cancel()
        return CancelResponse.ACCEPT

    async def execute(self, goal: ServerGoalHandle) -> RunSession.Result:
        plan = self._plan
        assert plan is not None
        result = RunSession.Result()
        try:
            seed = self.get_parameter('seed').value or int.from_bytes(uuid.uuid4().bytes[:4], 'little')
            a = self.active = ActiveSession(str(uuid.uuid4()), plan, seed, self.shared, goal.publish_feedback)
            state, result.message = await a.execute(self.rig_check, self.get_parameter('hardware_timeout_s').value,
                                                    lambda: goal.is_cancel_requested)
            a.fill(result)
        except Exception as exc:  # noqa: BLE001 - a bug must end the session with its reason, not hang it
            state = 'error'
            result.message = f'internal error: {type(exc).__name__}: {exc}'
            self.get_logger().error(f'session failed: {result.message}\n{traceback.format_exc()}')
            if self.active is not None:
                self.active.end(state)
            self.heartbeat.set_state(pilot_states.ERROR, result.message)
        finally:
            self.active = self._plan = None
        result.success = state != 'error'
        {'error': goal.abort, 'cancelled': goal.canceled}.get(state, goal.succeed)()
        return result

    def close(self) -> None:
        if self.active is not None:
            self.active.interrupt()
            for pub in self._flushed:
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
