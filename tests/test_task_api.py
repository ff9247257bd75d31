"""The task API and TaskRunner without ROS: validation, trial data, timers, stage order, pause, errors.

Tasks here are small classes defined in the tests, run on FakeClock + FakeHardware (autopilot_pilot.fakes).
"""

from __future__ import annotations

import math
from importlib.metadata import EntryPoint

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autopilot_pilot.fakes import FakeClock, FakeHardware, FakeRig
from autopilot_pilot.runner import TaskRunner, TrialRecord
from autopilot_tasks import registry
from autopilot_tasks.task import Event, Field, Hardware, Input, Output, Param, Sound, Task, TaskError


class Probe(Task):
    """A probe task: logs every event it gets, ends a trial on 'finish'."""

    reward_ul = Param(5.0, 'uL', 'Water', min=0.5, max=50.0)
    n = Param(3, 'trials', 'A count', min=1, max=10)
    side = Param('left', '', 'A side', choices=('left', 'right'))
    flag = Param(False, '', 'A switch')

    poke = Input('poke_a')
    lick = Input('lick_a', active_level=True)
    valve = Output('valve_a', kind='valve')
    led = Output('led_a', kind='led')

    port = Field(str, '', 'A port')
    latency_ms = Field(float, 'ms', 'A time')
    count = Field(int, '', 'A count')
    correct = Field(bool, '', 'Scored')

    stages = ('first', 'second')

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[int, str, str]] = []
        self.fields_to_send: dict = dict(port='a', latency_ms=1.5, count=2, correct=True)

    def start_trial(self) -> None:
        self.seen.append((self.trial_number, '-', 'start_trial'))

    def first(self, event: Event) -> None:
        self.seen.append((self.trial_number, 'first', str(event)))
        if event == 'go':
            self.goto('second')
        elif event == 'arm':
            self.set_timer('tick', 1.0)
        elif event == 'finish':
            self.end_trial(**self.fields_to_send)
        elif event == 'boom':
            raise ZeroDivisionError('division by zero')

    def second(self, event: Event) -> None:
        self.seen.append((self.trial_number, 'second', str(event)))
        if event in ('finish', 'tick'):
            self.end_trial(**self.fields_to_send)


def make(task_cls: type[Task] = Probe, params: dict | None = None, **kwargs) -> tuple[TaskRunner, FakeClock,
                                                                                     list[TrialRecord], list[str]]:
    clock = FakeClock()
    trials: list[TrialRecord] = []
    errors: list[str] = []
    runner = TaskRunner(task_cls, params or {}, clock, FakeHardware(task_cls, clock=clock), seed=3,
                        on_trial=trials.append, on_error=errors.append, **kwargs)
    return runner, clock, trials, errors


# ---- declarations and validation ------------------------------------------------------------------

def test_declarations_in_order_and_description() -> None:
    assert list(Probe.params()) == ['reward_ul', 'n', 'side', 'flag']
    assert list(Probe.hardware()) == ['poke', 'lick', 'valve', 'led']
    assert list(Probe.fields()) == ['port', 'latency_ms', 'count', 'correct']
    assert Probe.params()['reward_ul'].type is float and Probe.params()['n'].type is int
    assert Probe.hardware()['valve'].kind == 'valve' and Probe.hardware()['lick'].active_level is True
    assert Probe.description() == 'A probe task: logs every event it gets, ends a trial on \'finish\'.'
    assert Probe.score_field == 'correct'


def test_validate_returns_all_values_and_accepts_int_for_float() -> None:
    values = Probe.validate({'reward_ul': 7, 'side': 'right'})
    assert values == {'reward_ul': 7.0, 'n': 3, 'side': 'right', 'flag': False}
    assert type(values['reward_ul']) is float
    assert Probe.validate({}) == Probe.defaults()


@pytest.mark.parametrize(('overrides', 'message'), [
    ({'reward_ul': 99}, "Probe: parameter 'reward_ul': 99 is out of range, allowed float in [0.5, 50.0] uL"),
    ({'reward_ul': 0.1}, "Probe: parameter 'reward_ul': 0.1 is out of range, allowed float in [0.5, 50.0] uL"),
    ({'reward_ul': 'lots'}, "Probe: parameter 'reward_ul': 'lots' has type str, expected float in [0.5, 50.0] uL"),
    ({'reward_ul': True}, "Probe: parameter 'reward_ul': True has type bool, expected float in [0.5, 50.0] uL"),
    ({'reward_ul': math.nan}, "Probe: parameter 'reward_ul': NaN is not allowed, expected float in [0.5, 50.0] uL"),
    ({'n': 2.0}, "Probe: parameter 'n': 2.0 has type float, expected int in [1, 10] trials"),
    ({'n': True}, "Probe: parameter 'n': True has type bool, expected int in [1, 10] trials"),
    ({'n': 11}, "Probe: parameter 'n': 11 is out of range, allowed int in [1, 10] trials"),
    ({'side': 'up'}, "Probe: parameter 'side': 'up' is not allowed, expected str one of 'left', 'right'"),
    ({'flag': 1}, "Probe: parameter 'flag': 1 has type int, expected bool"),
    ({'reward': 5.0}, "Probe: unknown parameter 'reward'; known parameters: reward_ul, n, side, flag"),
])
def test_validate_errors_name_task_parameter_value_and_rule(overrides: dict, message: str) -> None:
    with pytest.raises(TaskError) as info:
        Probe.validate(overrides)
    assert str(info.value) == message


def test_validate_refuses_a_non_mapping() -> None:
    with pytest.raises(TaskError, match=r"Probe: parameters must be a mapping"):
        Probe.validate([('reward_ul', 5.0)])  # type: ignore[arg-type]


@given(st.floats(min_value=0.5, max_value=50.0))
def test_property_every_float_in_range_is_accepted(x: float) -> None:
    assert Probe.validate({'reward_ul': x})['reward_ul'] == x


@given(st.one_of(st.floats(max_value=0.5, exclude_max=True), st.floats(min_value=50.0, exclude_min=True)))
def test_property_every_float_out_of_range_is_named_in_the_error(x: float) -> None:
    with pytest.raises(TaskError) as info:
        Probe.validate({'reward_ul': x})
    text = str(info.value)
    assert text.startswith("Probe: parameter 'reward_ul': ")
    assert text.endswith('float in [0.5, 50.0] uL')
    assert ('NaN' if math.isnan(x) else repr(x)) in text


@given(st.one_of(st.text(), st.booleans(), st.none(), st.lists(st.integers())))
def test_property_wrong_types_are_refused_for_a_float(value: object) -> None:
    with pytest.raises(TaskError, match="parameter 'reward_ul': .* has type"):
        Probe.validate({'reward_ul': value})


@given(st.integers())
def test_property_ints_match_their_range(value: int) -> None:
    if 1 <= value <= 10:
        assert Probe.validate({'n': value})['n'] == value
    else:
        with pytest.raises(TaskError, match=f"{value} is out of range, allowed int in \\[1, 10\\] trials"):
            Probe.validate({'n': value})


def test_check_params_rule_between_parameters() -> None:
    class Two(Task):
        lo = Param(1.0)
        hi = Param(2.0)
        stages = ('s',)

        @classmethod
        def check_params(cls, values: dict) -> str | None:
            return None if values['lo'] < values['hi'] else f"lo ({values['lo']}) must be below hi ({values['hi']})"

        def s(self, event: Event) -> None:
            pass

    assert Two.validate({'lo': 1.5})['lo'] == 1.5
    with pytest.raises(TaskError, match=r'^Two: lo \(3.0\) must be below hi \(2.0\)$'):
        Two.validate({'lo': 3.0})


@pytest.mark.parametrize(('body', 'message'), [
    ({'stages': ('missing',)}, "stage 'missing' has no method"),
    ({'stages': 'first'}, 'stages must be a tuple'),
    ({'goto': Param(1), 'stages': ()}, "'goto' is a Task attribute"),
    ({'x': Param(5.0, min=0.0, max=1.0), 'stages': ()}, "parameter 'x': default 5.0 is out of range"),
    ({'score_field': 'ok', 'ok': Field(int), 'stages': ()}, "score_field 'ok' must name a bool Field"),
    ({'score_excludes': ('nope',), 'stages': ()}, "score_excludes entry 'nope'"),
])
def test_malformed_task_classes_fail_at_definition(body: dict, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        type('Bad', (Task,), dict(body))


def test_param_and_field_constructors_refuse_bad_types() -> None:
    with pytest.raises(TypeError):
        Param([1, 2])
    with pytest.raises(TypeError):
        Field(list)
    with pytest.raises(TypeError):
        Output('x', kind='motor')
    with pytest.raises(TypeError):
        Param('a', min=0)


def test_score_uses_score_field_and_excludes() -> None:
    class Scored(Task):
        correct = Field(bool)
        correction = Field(bool)
        score_excludes = ('correction',)
        stages = ('s',)

        def s(self, event: Event) -> None:
            pass

    class Unscored(Task):
        n = Field(int)
        stages = ('s',)

        def s(self, event: Event) -> None:
            pass

    assert Scored.score({'correct': True, 'correction': False}) is True
    assert Scored.score({'correct': False, 'correction': False}) is False
    assert Scored.score({'correct': True, 'correction': True}) is None
    assert Unscored.score_field is None and Unscored.score({'n': 1}) is None


def test_subclass_extends_declarations() -> None:
    class More(Probe):
        extra = Param(1.0, 's', 'More')
        note = Field(str)

    assert list(More.params()) == ['reward_ul', 'n', 'side', 'flag', 'extra']
    assert list(More.fields())[-1] == 'note'


def test_event_is_a_str_with_attributes() -> None:
    e = Event('left_in', tick_us=12, stamp_ns=34, device='poke_left', level=False, data={'k': 1})
    assert e == 'left_in' and isinstance(e, str) and e in ('left_in', 'x')
    assert (e.tick_us, e.stamp_ns, e.device, e.level, e.data) == (12, 34, 'poke_left', False, {'k': 1})
    assert Event('tick').data == {} and Event('tick').tick_us is None


def test_param_is_read_only_on_an_instance() -> None:
    task = Probe({'n': 4})
    assert task.n == 4 and Probe.n.default == 3
    with pytest.raises(AttributeError, match='read-only'):
        task.n = 5


def test_api_calls_need_a_runner() -> None:
    with pytest.raises(TaskError, match='not running'):
        Probe().goto('second')


def test_fake_hardware_is_a_hardware_and_checks_roles() -> None:
    hw = FakeHardware(Probe)
    assert isinstance(hw, Hardware)
    hw.reward('valve', 3.0)
    hw.set('led', True)
    assert hw.calls == [('reward', 'valve', 3.0), ('set', 'led', True)]
    with pytest.raises(TaskError, match="reward\\('led'\\): a led output"):
        hw.reward('led', 1.0)
    with pytest.raises(TaskError, match="'poke'\\): an input"):
        hw.set('poke', True)
    with pytest.raises(TaskError, match='no Sound'):
        hw.play('tone')


# ---- runner: stages, events, trials ---------------------------------------------------------------

def test_start_enters_first_stage_then_goto_exits_before_entering() -> None:
    stages: list[tuple[str, int]] = []
    runner, clock, trials, errors = make(on_stage=lambda s, t: stages.append((s, t)))
    runner.start()
    clock.advance(0.5)
    runner.handle_event(Event('go'))
    task = runner.task
    assert task.seen == [(1, '-', 'start_trial'), (1, 'first', 'entry'), (1, 'first', 'go'),
                         (1, 'first', 'exit'), (1, 'second', 'entry')]
    assert stages == [('first', 0), ('second', 500_000_000)]
    assert runner.stage == 'second' and runner.state == 'running' and not errors


def test_end_trial_reports_record_and_starts_next_trial_after_the_handler() -> None:
    runner, clock, trials, errors = make()
    runner.start()
    clock.advance(1.0)
    runner.handle_event(Event('go'))
    clock.advance(2.0)
    runner.handle_event(Event('finish'))
    assert len(trials) == 1
    rec = trials[0]
    assert rec.number == 1 and rec.fields == {'port': 'a', 'latency_ms': 1.5, 'count': 2, 'correct': True}
    assert list(rec.fields) == list(Probe.fields())
    assert (rec.started_ns, rec.ended_ns) == (0, 3_000_000_000)
    assert rec.stage_log == [('first', 0), ('second', 1_000_000_000)]
    assert runner.task.history == [rec.fields]
    # 'exit' of the stage that ended the trial, then trial 2 from the first stage
    assert runner.task.seen[-4:] == [(1, 'second', 'finish'), (1, 'second', 'exit'), (2, '-', 'start_trial'),
                                     (2, 'first', 'entry')]
    assert runner.trial_number == 2 and runner.stage == 'first' and not errors


def test_int_is_accepted_for_a_float_field_and_stored_as_float() -> None:
    runner, clock, trials, errors = make()
    runner.start()
    runner.task.fields_to_send = dict(port='a', latency_ms=3, count=2, correct=False)
    runner.handle_event(Event('finish'))
    assert trials[0].fields['latency_ms'] == 3.0 and type(trials[0].fields['latency_ms']) is float
    assert not errors


@pytest.mark.parametrize(('fields', 'message'), [
    (dict(port='a', latency_ms='slow', count=2, correct=True), "trial field 'latency_ms': 'slow' has type str, "
                                                               'expected float'),
    (dict(port='a', latency_ms=1.0, count=True, correct=True), "trial field 'count': True has type bool, "
                                                               'expected int'),
    (dict(port='a', latency_ms=1.0, count=2.0, correct=True), "trial field 'count': 2.0 has type float, expected int"),
    (dict(port='a', latency_ms=1.0, count=2, correct=1), "trial field 'correct': 1 has type int, expected bool"),
    (dict(port='a', latency_ms=1.0, count=2), 'end_trial: missing correct'),
    (dict(port='a', latency_ms=1.0, count=2, correct=True, extra=1), 'end_trial: undeclared extra'),
])
def test_end_trial_checks_every_field(fields: dict, message: str) -> None:
    runner, clock, trials, errors = make()
    runner.start()
    runner.task.fields_to_send = fields
    runner.handle_event(Event('finish'))  # must not raise
    assert trials == []
    assert runner.state == 'error'
    assert len(errors) == 1 and message in errors[0]
    assert errors[0].startswith("Probe: stage 'first', event 'finish', trial 1: ")
    assert str(runner.error) == errors[0]


def test_handle_gpio_maps_edges_to_roles() -> None:
    runner, clock, trials, errors = make()
    runner.start()
    runner.handle_gpio('poke_a', False, 100, 5)   # active low: in
    runner.handle_gpio('poke_a', True, 200, 6)
    runner.handle_gpio('lick_a', True, 300, 7)    # active high: in
    runner.handle_gpio('lick_a', False, 400, 8)
    runner.handle_gpio('someone_else', False, 500, 9)
    assert [e for _, _, e in runner.task.seen[2:]] == ['poke_in', 'poke_out', 'lick_in', 'lick_out']


def test_gpio_event_carries_tick_stamp_device_level() -> None:
    got: list[Event] = []

    class Catch(Task):
        poke = Input('poke_a')
        stages = ('s',)

        def s(self, event: Event) -> None:
            got.append(event)

    runner, *_ = make(Catch, devices={'poke': 'poke_b'})
    runner.start()
    runner.handle_gpio('poke_a', False, 1, 1)     # no longer the poke's device
    runner.handle_gpio('poke_b', False, 123, 456)
    assert got[-1] == 'poke_in'
    assert (got[-1].tick_us, got[-1].stamp_ns, got[-1].device, got[-1].level) == (123, 456, 'poke_b', False)
    assert runner.devices == {'poke': 'poke_b'}


def test_devices_for_unknown_roles_are_refused() -> None:
    with pytest.raises(TaskError, match="no hardware role 'pump'.*roles: poke, lick, valve, led"):
        make(devices={'pump': 'x'})


# ---- timers ---------------------------------------------------------------------------------------

def test_timer_fires_once_at_its_time_and_reset_replaces_it() -> None:
    runner, clock, trials, errors = make()
    runner.start()
    runner.handle_event(Event('arm'))     # tick due at 1.0
    clock.advance(0.6)
    runner.handle_event(Event('arm'))     # replaced: due at 1.6
    clock.advance(0.5)
    assert [e for _, s, e in runner.task.seen if e == 'tick'] == []
    clock.advance(0.5)
    ticks = [e for _, s, e in runner.task.seen if e == 'tick']
    assert ticks == ['tick'] and clock.now_ns() == 1_600_000_000
    clock.advance(10)
    assert [e for _, s, e in runner.task.seen if e == 'tick'] == ['tick']


def test_timer_event_is_delivered_to_the_current_stage() -> None:
    runner, clock, trials, errors = make()
    runner.start()
    runner.handle_event(Event('arm'))
    runner.handle_event(Event('go'))
    clock.advance(1.0)
    assert len(trials) == 1  # 'tick' in stage second ends the trial
    assert trials[0].ended_ns == 1_000_000_000


def test_cancel_timer_and_end_trial_cancel_timers() -> None:
    class Timers(Task):
        n = Field(int)
        stages = ('s',)

        def s(self, event: Event) -> None:
            if event == 'entry' and self.trial_number == 1:
                self.set_timer('a', 1.0)
                self.set_timer('b', 2.0)
                self.set_timer('c', 3.0)
                self.cancel_timer('b')
                self.cancel_timer('never_set')
            elif event in ('a', 'b', 'c'):
                self.log(f'fired {event}')
                if event == 'a':
                    self.end_trial(n=1)

    logs: list[str] = []
    runner, clock, trials, errors = make(Timers, on_log=logs.append)
    runner.start()
    clock.advance(5.0)
    assert logs == ['Timers: fired a'] and len(trials) == 1 and clock.pending() == 0


def test_timer_event_has_clock_stamp() -> None:
    got: list[Event] = []

    class T(Task):
        stages = ('s',)

        def s(self, event: Event) -> None:
            got.append(event)
            if event == 'entry':
                self.set_timer('t', 0.25)

    runner, clock, *_ = make(T)
    runner.start()
    clock.advance(1)
    assert got[-1] == 't' and got[-1].stamp_ns == 250_000_000 and got[-1].tick_us is None


def test_fake_clock_orders_calls_and_runs_nested_ones() -> None:
    clock = FakeClock()
    out: list[tuple[str, int]] = []
    clock.call_later(0.2, lambda: out.append(('b', clock.now_ns())))
    clock.call_later(0.1, lambda: (out.append(('a', clock.now_ns())),
                                   clock.call_later(0.05, lambda: out.append(('nested', clock.now_ns())))))
    h = clock.call_later(0.15, lambda: out.append(('cancelled', 0)))
    clock.call_later(0.2, lambda: out.append(('b2', clock.now_ns())))
    clock.cancel(h)
    clock.advance(0.3)
    assert out == [('a', 100_000_000), ('nested', 150_000_000), ('b', 200_000_000), ('b2', 200_000_000)]
    assert clock.now_ns() == 300_000_000 and clock.pending() == 0
    with pytest.raises(ValueError):
        clock.advance(-1)


# ---- pause, resume, update_params ---------------------------------------------------------------

def test_pause_finishes_the_trial_then_holds_until_resume() -> None:
    runner, clock, trials, errors = make()
    runner.start()
    runner.pause()
    assert runner.state == 'pausing'
    runner.handle_event(Event('go'))      # the running trial goes on
    assert runner.stage == 'second'
    runner.handle_event(Event('finish'))
    assert len(trials) == 1 and runner.state == 'paused' and runner.stage is None
    n_seen = len(runner.task.seen)
    runner.handle_event(Event('finish'))  # ignored while paused
    runner.handle_gpio('poke_a', False, 1, 1)
    clock.advance(10)
    assert len(runner.task.seen) == n_seen and len(trials) == 1
    runner.resume()
    assert runner.state == 'running' and runner.stage == 'first' and runner.trial_number == 2
    runner.handle_event(Event('finish'))
    assert [t.number for t in trials] == [1, 2]


def test_resume_before_the_trial_ends_cancels_the_pause() -> None:
    runner, clock, trials, errors = make()
    runner.start()
    runner.pause()
    runner.resume()
    runner.handle_event(Event('finish'))
    assert runner.state == 'running' and runner.trial_number == 2


def test_pause_before_start_holds_after_setup() -> None:
    runner, clock, trials, errors = make()
    runner.pause()
    runner.start()
    assert runner.state == 'paused' and runner.stage is None and runner.trial_number == 0
    runner.resume()
    assert runner.stage == 'first' and runner.trial_number == 1


def test_update_params_applies_at_the_next_trial_start() -> None:
    runner, clock, trials, errors = make(params={'n': 2})
    runner.start()
    assert runner.task.n == 2
    assert runner.update_params({'reward_ul': 8}) == {'reward_ul': 8.0, 'n': 2, 'side': 'left', 'flag': False}
    assert runner.update_params({'side': 'right'})['reward_ul'] == 8.0   # accumulates
    assert runner.task.reward_ul == 5.0 and runner.pending_params is not None
    runner.handle_event(Event('finish'))
    assert runner.task.reward_ul == 8.0 and runner.task.side == 'right' and runner.task.n == 2
    assert runner.pending_params is None


def test_update_params_refuses_bad_values_and_keeps_the_old_ones() -> None:
    runner, clock, trials, errors = make()
    runner.start()
    with pytest.raises(TaskError, match=r"Probe: parameter 'reward_ul': 99 is out of range"):
        runner.update_params({'reward_ul': 99})
    runner.handle_event(Event('finish'))
    assert runner.task.reward_ul == 5.0 and runner.state == 'running'


def test_params_are_validated_at_construction() -> None:
    with pytest.raises(TaskError, match="Probe: parameter 'n': 0 is out of range"):
        make(params={'n': 0})


# ---- errors in task code ------------------------------------------------------------------------

def test_exception_in_a_stage_goes_to_on_error_not_to_the_caller() -> None:
    runner, clock, trials, errors = make()
    runner.start()
    runner.handle_event(Event('arm'))
    runner.handle_event(Event('boom'))
    assert runner.state == 'error'
    assert len(errors) == 1
    assert errors[0].startswith("Probe: stage 'first', event 'boom', trial 1: ZeroDivisionError: division by zero")
    assert 'test_task_api.py:' in errors[0]
    clock.advance(5)   # the armed timer was cancelled: nothing raises, nothing is delivered
    runner.handle_event(Event('finish'))
    assert trials == [] and len(errors) == 1 and clock.pending() == 0


def test_exception_in_a_timer_handler_does_not_raise_into_the_clock() -> None:
    class Late(Task):
        stages = ('s',)

        def s(self, event: Event) -> None:
            if event == 'entry':
                self.set_timer('later', 1.0)
            elif event == 'later':
                raise KeyError('missing')

    runner, clock, trials, errors = make(Late)
    runner.start()
    clock.advance(2.0)
    assert runner.state == 'error' and "Late: stage 's', event 'later', trial 1: KeyError: 'missing'" in errors[0]


def test_exception_in_setup_and_teardown_are_reported() -> None:
    class BadSetup(Task):
        stages = ('s',)

        def setup(self) -> None:
            raise RuntimeError('no sound card')

        def s(self, event: Event) -> None:
            raise AssertionError('never entered')

    runner, clock, trials, errors = make(BadSetup)
    runner.start()
    assert runner.state == 'error' and errors[0].startswith('BadSetup: setup, trial 0: RuntimeError: no sound card')

    class BadTeardown(Task):
        stages = ('s',)

        def s(self, event: Event) -> None:
            pass

        def teardown(self) -> None:
            raise RuntimeError('stuck')

    runner, clock, trials, errors = make(BadTeardown)
    runner.start()
    runner.stop()
    assert runner.state == 'stopped' and 'BadTeardown: teardown' in errors[0]


def test_goto_unknown_stage_and_after_end_trial_are_errors() -> None:
    class Wrong(Task):
        n = Field(int)
        how = Param('unknown', choices=('unknown', 'after_end'))
        stages = ('s',)

        def s(self, event: Event) -> None:
            if event == 'x':
                if self.how == 'unknown':
                    self.goto('nowhere')
                else:
                    self.end_trial(n=1)
                    self.goto('s')

    runner, clock, trials, errors = make(Wrong)
    runner.start()
    runner.handle_event(Event('x'))
    assert "goto('nowhere'): no such stage; stages: s" in errors[0]
    runner, clock, trials, errors = make(Wrong, {'how': 'after_end'})
    runner.start()
    runner.handle_event(Event('x'))
    assert len(trials) == 1 and "goto('s') after end_trial" in errors[0]


def test_stop_cancels_timers_and_calls_teardown() -> None:
    class Td(Task):
        stages = ('s',)
        done: list[str] = []

        def s(self, event: Event) -> None:
            if event == 'entry':
                self.set_timer('t', 1.0)
            elif event == 't':
                raise AssertionError('timer after stop')

        def teardown(self) -> None:
            self.done.append('teardown')

    runner, clock, trials, errors = make(Td)
    runner.start()
    runner.stop()
    runner.stop()
    clock.advance(2)
    assert Td.done == ['teardown'] and runner.state == 'stopped' and not errors


def test_events_arriving_inside_a_handler_are_queued_not_nested() -> None:
    order: list[str] = []

    class Sync(Task):
        speaker = Sound()
        stages = ('s',)

        def setup(self) -> None:
            self.hw.load_sound('t', kind='tone', frequency_hz=1000.0, duration_ms=50.0)

        def s(self, event: Event) -> None:
            order.append(f'{event} start')
            if event == 'entry':
                self.hw.play('t')   # this fake delivers the onset synchronously, inside play()
            order.append(f'{event} end')

    clock = FakeClock()
    hw = FakeHardware(Sync)   # no clock: onsets are delivered at once
    runner = TaskRunner(Sync, {}, clock, hw, seed=1, on_trial=lambda r: None)
    hw.on_onset = runner.handle_onset
    runner.start()
    assert order == ['entry start', 'entry end', 'sound_onset start', 'sound_onset end']


def test_seeded_random_is_reproducible() -> None:
    def draws(seed: int) -> list[float]:
        clock = FakeClock()
        r = TaskRunner(Probe, {}, clock, FakeHardware(), seed=seed, on_trial=lambda rec: None)
        return [r.task.random.random() for _ in range(5)]

    assert draws(7) == draws(7) and draws(7) != draws(8)


def test_fake_rig_poke_uses_roles_and_ticks() -> None:
    rig = FakeRig(Probe, tick_offset_us=500)
    rig.start()
    rig.advance(1.0)
    rig.poke('poke', hold_s=0.2)
    got = [e for _, _, e in rig.task.seen[2:]]
    assert got == ['poke_in', 'poke_out'] and rig.tick_us() == 1_200_500
    with pytest.raises(TaskError):
        rig.poke('valve')


# ---- registry -------------------------------------------------------------------------------------

def test_registry_finds_the_shipped_tasks() -> None:
    from autopilot_tasks.tasks.free_water import FreeWater
    from autopilot_tasks.tasks.two_afc import TwoAFC

    assert registry.lookup('2afc') is TwoAFC and registry.lookup('free_water') is FreeWater
    assert {'2afc', 'free_water'} <= set(registry.task_names())


def test_registry_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(TaskError, match=r"unknown task 'nope'; known tasks: .*2afc.*free_water"):
        registry.lookup('nope')


def test_registry_reports_a_broken_plugin_without_failing(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [EntryPoint('broken', 'no_such_module_xyz:Task', registry.GROUP),
           EntryPoint('notatask', 'math:pi', registry.GROUP),
           EntryPoint('free_water', 'autopilot_tasks.tasks.free_water:FreeWater', registry.GROUP)]
    monkeypatch.setattr(registry, 'entry_points', lambda group: [e for e in eps if e.group == group])
    plugins = {p.name: p for p in registry.load_tasks()}
    assert plugins['broken'].cls is None and 'ModuleNotFoundError' in plugins['broken'].error
    assert plugins['notatask'].cls is None and 'not a Task subclass' in plugins['notatask'].error
    assert plugins['free_water'].cls is not None
    assert registry.task_names() == ['free_water']
    with pytest.raises(TaskError, match="task 'broken' is broken: no_such_module_xyz:Task .*ModuleNotFoundError"):
        registry.lookup('broken')
    assert registry.lookup('free_water').__name__ == 'FreeWater'
