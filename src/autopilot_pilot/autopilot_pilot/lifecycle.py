"""ActiveSession: one session from its start to its end, without ROS.

It begins the session in the journal, runs the task of each protocol step on a runner of its own (a clock and
hardware made by the factories it is given), turns finished trials into reports and feedback, ends the
session at a goal limit (``max_trials``, ``max_duration_s``: after the running trial) and moves the subject
to the next protocol step between trials. :meth:`ActiveSession.run` is the coroutine the pilot's action
awaits; anything that must end the session (a cancel, a limit, an error of the task, the sound server or the
journal writer) sets a reason and wakes it. The node gives it the journal, the reports, the heartbeat and
a logger; unit tests give it fakes and drive the coroutine by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from autopilot_msgs.action import RunSession
from rclpy.task import Future

from autopilot_core import pilot_states
from autopilot_pilot.devices import devices_for
from autopilot_pilot.hardware_check import HardwareCheck
from autopilot_pilot.journal import Journal, JournalError
from autopilot_pilot.reports import Reports
from autopilot_pilot.runner import Clock, TaskRunner, TrialRecord
from autopilot_pilot.session import Plan, PlanError, Progress
from autopilot_pilot.status import Heartbeat
from autopilot_pilot.streams import StreamState, as_number
from autopilot_tasks.task import Hardware, Stream, TaskError


class StepClock(Clock, Protocol):
    """A runner's clock that the session closes when the step ends (every timer destroyed)."""

    def collect(self) -> None:
        """Free the timers that fired or were cancelled."""

    def close(self) -> None:
        """Cancel and free every timer."""


class StepHardware(Hardware, Protocol):
    """A runner's hardware that tells the onsets of its own plays."""

    def claim_onset(self, play_id: int) -> bool:
        """True (once) when ``play_id`` is a play of this hardware."""


class StreamOpener(Protocol):
    """Subscriptions for a task's stream roles (:class:`~autopilot_pilot.streams.RosStreams`)."""

    def topic(self, device: str) -> str:
        """The role's topic, resolved."""

    def check(self, decl: Stream) -> str | None:
        """Why the role's message type or field cannot be read, or None."""

    def open(self, decl: Stream, device: str, deliver: Callable[[Any, int | None], None]) -> Callable[[], None]:
        """Subscribe; ``deliver(value, stamp_ns)`` per message; returns the closer."""


class Log(Protocol):
    def info(self, message: str) -> Any: ...

    def warning(self, message: str) -> Any: ...

    def error(self, message: str) -> Any: ...


@dataclass(frozen=True)
class Services:
    """What every session of a pilot shares."""

    journal: Journal
    reports: Reports
    heartbeat: Heartbeat
    make_clock: Callable[[], StepClock]
    make_hardware: Callable[[dict[str, str], Callable[[str], None]], StepHardware]  # (devices, on_error)
    device_map: dict[str, str]
    log: Log
    streams: StreamOpener | None = None  # None: a task with a stream role cannot run


def history_of(journal: Journal, plan: Plan) -> tuple[list[dict[str, Any]], int]:
    """The subject's earlier trials (field dicts) and ended sessions at the plan's protocol step, on this pilot."""
    if plan.protocol is None:
        return [], 0
    return journal.step_history(plan.subject, plan.protocol_name, plan.step)


def stream_problem(plan: Plan, role: str, problem: str) -> str:
    """A stream role's problem as the session's error."""
    return f'task {plan.task_name}: stream role {role}: {problem}'


class ActiveSession:
    """The running session: plan, progress, the current step's runner, and what ends it.

    ``feedback(msg)`` gets a RunSession.Feedback after every trial.
    """

    def __init__(self, session_id: str, plan: Plan, seed: int, services: Services,
                 feedback: Callable[[RunSession.Feedback], None]) -> None:
        self.session_id = session_id
        self.seed = seed
        self.s = services
        self.feedback = feedback
        prior, n_sessions = history_of(services.journal, plan)
        self.progress = Progress(plan, prior=prior, sessions_in_step=n_sessions)
        self.runner: TaskRunner | None = None
        self.clock: StepClock | None = None
        self.hw: StepHardware | None = None
        self.timers = services.make_clock()  # the session's own: max_duration_s
        self.started = time.monotonic()
        self.wake: Future = Future()
        self.end_reason: str | None = None      # set: the session ends at the next wake-up
        self.error: str | None = None
        self.graduate_reason: str | None = None
        self.limit_pending: str | None = None   # max_duration_s passed mid-trial: end after it
        self.events: list[Any] = []             # GPIO events not journalled yet (Reports.events)
        self.streams: dict[str, StreamState] = {}  # the current step's open stream roles
        services.heartbeat.session_started(plan, session_id)

    @property
    def plan(self) -> Plan:
        return self.progress.plan

    # -- what ends or wakes it ------------------------------------------------------------------
    def poke(self) -> None:
        if not self.wake.done():
            self.wake.set_result(None)

    def fail(self, text: str, pause: bool = False) -> None:
        """The session ends with this error (the first one counts); ``pause``: hold the runner after its trial
        at once (an error outside the task: the session ends at the next wake-up, no new trial should start)."""
        if pause and self.runner is not None:
            self.runner.pause()
        if self.error is None:
            self.error = text
            self.poke()

    def cancel(self) -> None:
        self.end_reason = self.end_reason or 'cancelled'
        self.poke()

    def at_limit(self) -> None:
        """``max_duration_s`` passed: the running trial finishes, the session ends with it."""
        if self.runner is not None and self.end_reason is None:
            self.runner.pause()
            self.limit_pending = self.limit_pending or f'max_duration_s {self.plan.max_duration_s:g} reached'
            if self.runner.state == 'paused':
                self.end_reason = self.limit_pending
                self.poke()

    # -- control (the pilot's services) -----------------------------------------------------------
    def pause(self) -> str:
        """Hold after the running trial; TaskError before the first runner exists."""
        runner = self._runner()
        runner.pause()
        self.s.heartbeat.set_state(pilot_states.PAUSED, 'paused: the running trial finishes first')
        return f'pausing after trial {runner.trial_number}'

    def resume(self) -> str:
        self._runner().resume()
        self.s.heartbeat.set_state(pilot_states.RUNNING)
        return 'resumed'

    def set_params(self, values: Mapping[str, Any]) -> str:
        """Validate task parameter ``values`` now (TaskError), apply them at the next trial start."""
        runner = self._runner()
        runner.update_params(values)
        self.s.log.info(f'task parameters {dict(values)} from trial {runner.trial_number + 1}')
        return f'applied at the start of trial {runner.trial_number + 1}'

    def _runner(self) -> TaskRunner:
        if self.runner is None:
            raise TaskError('no session is running')
        return self.runner

    # -- input ----------------------------------------------------------------------------------
    def on_gpio(self, msg: Any, stamp_ns: int) -> None:
        self.events.append(msg)  # journalled in batches: a terminal that missed some fetches them
        if self.runner is not None:
            self.runner.handle_gpio(msg.device, msg.level, msg.tick_us, stamp_ns)

    def on_onset(self, sound_id: str, play_id: int, stamp_ns: int, ok: bool) -> None:
        if self.runner is not None and self.hw is not None and self.hw.claim_onset(play_id):
            self.runner.handle_onset(sound_id, play_id, stamp_ns, ok)

    def on_stream(self, role: str, value: Any, stamp_ns: int | None) -> None:
        """A sample of stream ``role``: it is alive; a finite value goes to the task, others are counted."""
        state = self.streams.get(role)
        if state is None:
            return
        state.samples += 1
        state.last_s = time.monotonic()
        x = as_number(value, state.limits)
        if x is None:
            state.refused += 1
            if state.refused == 1:
                lo, hi = state.limits
                self.s.log.warning(f'stream {role}: {value!r} on {state.topic} is not a number in [{lo:g}, {hi:g}]: '
                                   'ignored (counted; the session log tells how many at its end)')
            return
        if self.runner is not None:
            self.runner.handle_stream(role, x, stamp_ns)

    def journal_events(self) -> None:
        events, self.events = self.events, []
        self.s.reports.events(self.session_id, events)

    def collect(self) -> None:
        """Free spent timers (periodic chore of the node)."""
        for clock in (self.clock, self.timers):
            if clock is not None:
                clock.collect()
        now = time.monotonic()
        for state in self.streams.values():
            why = state.silent(now)
            if why:
                self.fail(why, pause=True)
                break

    # -- the session ----------------------------------------------------------------------------
    async def run(self) -> str:
        """Begin, run step after step until the session ends; returns why it ended, PlanError if it failed."""
        s, plan = self.s, self.plan
        s.journal.begin_session(self.session_id, subject=plan.subject, task=plan.task_name,
                                protocol=plan.protocol_name, step=plan.step, step_name=plan.step_name,
                                parameters=plan.params)
        s.log.info(f'session {self.session_id}: {plan.subject}, {plan.protocol_name or "no protocol"} step '
                   f'{plan.step} {plan.step_name!r}, task {plan.task_name}, seed {self.seed}, parameters {plan.params}')
        s.heartbeat.set_state(pilot_states.RUNNING)
        reason = self.progress.graduation()  # e.g. enough sessions already done in this step
        if reason:
            self.change_step(reason)
        self.start_step()
        if plan.max_duration_s:
            self.timers.call_later(plan.max_duration_s, self.at_limit)
        while True:
            await self.wake
            self.wake = Future()
            if self.error:
                raise PlanError(self.error)
            if self.end_reason:
                return self.end_reason
            if self.graduate_reason and self.runner is not None:
                self.runner.stop()
                self.change_step(self.graduate_reason)
                self.graduate_reason = None
                self.start_step()

    def start_step(self) -> None:
        """A runner for the plan's (current) step, on a fresh clock and hardware; started."""
        plan = self.plan
        if self.clock is not None:  # a step change: the last step's runner has stopped
            self.clock.close()
        devices = devices_for(plan.task_cls, self.s.device_map)
        self.open_streams(devices)
        self.clock = self.s.make_clock()
        self.hw = self.s.make_hardware(devices, self.fail)
        self.runner = TaskRunner(plan.task_cls, plan.params, self.clock, self.hw, seed=self.seed,
                                 on_trial=self.on_trial, devices=devices, on_error=self.fail, on_log=self.s.log.info)
        self.s.heartbeat.step(plan)
        self.runner.start()

    def open_streams(self, devices: Mapping[str, str]) -> None:
        """Subscribe to the step's stream roles (the last step's are closed first); PlanError if one cannot be."""
        self.close_streams()
        for role, decl in self.plan.task_cls.hardware().items():
            if not isinstance(decl, Stream):
                continue
            if self.s.streams is None:
                raise PlanError(stream_problem(self.plan, role, 'this pilot reads no streams'))

            def deliver(value: Any, stamp_ns: int | None, role: str = role) -> None:
                self.on_stream(role, value, stamp_ns)
            try:
                close = self.s.streams.open(decl, devices[role], deliver)
            except ValueError as exc:
                raise PlanError(stream_problem(self.plan, role, str(exc))) from None
            self.streams[role] = StreamState(role, self.s.streams.topic(devices[role]), decl.timeout_s,
                                             decl.limits, time.monotonic(), close)

    def close_streams(self) -> None:
        for state in self.streams.values():
            state.close()
            if state.refused:
                self.s.log.warning(f'stream {state.role}: {state.refused} of {state.samples} samples on '
                                   f'{state.topic} were refused (not a number within the limits)')
        self.streams = {}

    def change_step(self, reason: str) -> None:
        old = self.plan
        after = self.progress.n_trials
        new = old.at_step(old.step + 1)
        prior, n_sessions = history_of(self.s.journal, new)
        self.progress.graduate(prior, n_sessions)
        self.s.reports.step_change(self.session_id, old, new, after, reason)
        self.s.heartbeat.step(new)
        self.s.log.info(f'{old.subject} graduates from step {old.step} {old.step_name!r} to {new.step} '
                        f'{new.step_name!r} after trial {after}: {reason}')

    def on_trial(self, record: TrialRecord) -> None:
        """A finished trial: journal (durable), publish, feedback; then limits and graduation."""
        runner = self.runner
        assert runner is not None
        progress = self.progress
        progress.add(record.fields)
        plan = self.plan
        number = progress.n_trials  # numbered per session, across protocol steps
        self.s.reports.trial(self.session_id, number, plan, record)
        self.s.heartbeat.trial(number)
        self.feedback(RunSession.Feedback(trial_count=number, state=runner.task.stages[0], step=plan.step,
                                          fraction_correct=progress.fraction_correct))
        limit = progress.limit_reached(time.monotonic() - self.started) or self.limit_pending
        if limit:
            runner.pause()
            self.end_reason = limit
            self.poke()
            return
        reason = progress.graduation()
        if reason:
            runner.pause()  # holds after this trial; run() swaps in the next step's task
            self.graduate_reason = reason
            self.poke()

    async def execute(self, check: HardwareCheck | None, timeout_s: float,
                      cancelled: Callable[[], bool]) -> tuple[str, str]:
        """The whole session: ``check`` the rig (waiting ``timeout_s`` at most), run, end; returns (state,
        message), state ``ended``, ``cancelled`` or ``error``. The status says the same when this returns."""
        s, plan = self.s, self.plan
        try:
            for role, decl in plan.task_cls.hardware().items():
                problem = ('this pilot reads no streams' if s.streams is None else s.streams.check(decl)) \
                    if isinstance(decl, Stream) else None
                if problem:
                    raise PlanError(stream_problem(plan, role, problem))
            missing = None if check is None else await check.missing(
                plan.task_name, plan.task_cls, devices_for(plan.task_cls, s.device_map), timeout_s)
            if missing:
                raise PlanError(missing)
            reason = await self.run()
        except (PlanError, JournalError, TaskError) as exc:
            s.log.error(f'session {self.session_id} failed: {exc}')
            self.end('error')
            s.heartbeat.set_state(pilot_states.ERROR, str(exc))
            return 'error', str(exc)
        state = 'cancelled' if cancelled() else 'ended'
        self.end(state)
        s.heartbeat.set_state(pilot_states.IDLE)
        message = f'{self.progress.n_trials} trials; {reason}'
        s.log.info(f'session {self.session_id} ended: {message}')
        return state, message

    def interrupt(self) -> None:
        """The pilot stops mid-session: it ends as ``interrupted`` (as after a crash), every finished trial
        journalled; the terminal learns of the end from the heartbeat, and gets the unacked trials when the
        pilot runs again."""
        n = self.progress.n_trials
        self.end('interrupted')
        self.s.heartbeat.set_state(pilot_states.IDLE, f'session {self.session_id} interrupted: the pilot stopped')
        self.s.log.warning(f'session {self.session_id} of {self.plan.subject} interrupted after {n} trial(s): '
                           'the pilot is stopping')

    def end(self, state: str) -> None:
        """Stop the runner, journal what is left, close the session as ``state`` (ended, cancelled, error...)."""
        if self.runner is not None:
            self.runner.stop()
        self.close_streams()
        self.journal_events()
        for clock in (self.clock, self.timers):
            if clock is not None:
                clock.close()
        if not self.s.reports.flush(10.0):  # the session's trials are in the journal before it is closed
            self.s.log.error('trial writer did not finish within 10 s: the disk is stalled?')
        try:
            if self.s.journal.session(self.session_id) is not None:
                self.s.journal.end_session(self.session_id, state=state)
        except JournalError as exc:
            self.s.log.error(str(exc))
        self.s.heartbeat.session_ended(self.session_id, state)

    def fill(self, result: RunSession.Result) -> RunSession.Result:
        """``result`` with this session's numbers."""
        result.session_id = self.session_id
        result.n_trials = self.progress.n_trials
        result.fraction_correct = self.progress.fraction_correct
        result.duration_s = time.monotonic() - self.started
        result.final_step = self.plan.step
        return result
