"""Task API v2 without ROS: role handles, timed transitions, declared per-trial state (Field defaults, Var).

Small tasks defined here run on FakeClock + FakeHardware (autopilot_pilot.fakes); what a handle or a timed
transition did is read from the fake hardware's calls and the runner's trial records.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot_pilot.fakes import FakeClock, FakeHardware, FakeRig
from autopilot_pilot.runner import TaskRunner, TrialRecord
from autopilot_tasks.task import Event, Field, Input, Output, Param, Sound, Task, TaskError, UnsetError, Var


class Handles(Task):
    """Drives every handle from events named after the call."""

    poke = Input('poke_a')
    valve = Output('valve_a', kind='valve')
    led = Output('led_a', kind='led')
    ttl = Output('ttl_a')
    speaker = Sound()

    n = Field(int, '', 'Events seen', default=0)

    stages = ('only',)

    def setup(self) -> None:
        self.speaker.load('beep', kind='tone', frequency_hz=1000.0, duration_ms=20.0)

    def only(self, event: Event) -> None:
        self.n += 1
        calls = {'led_on': self.led.on, 'led_off': self.led.off, 'ttl_pulse': lambda: self.ttl.pulse(2.5),
                 'led_pwm': lambda: self.led.pwm(0.25, 1000.0), 'reward': lambda: self.valve.reward(4.0),
                 'valve_pulse': lambda: self.valve.pulse(30.0), 'beep': lambda: self.speaker.play('beep'),
                 'hush': self.speaker.stop, 'valve_on': self.valve.on, 'led_reward': lambda: self.led.reward(1.0),
                 'done': self.end_trial}
        if event in calls:
            calls[event]()


def run(task_cls: type[Task], params: dict | None = None) -> tuple[TaskRunner, FakeClock, FakeHardware,
                                                                   list[TrialRecord], list[str]]:
    clock = FakeClock()
    hw = FakeHardware(task_cls, clock=clock)
    trials: list[TrialRecord] = []
    errors: list[str] = []
    runner = TaskRunner(task_cls, params or {}, clock, hw, seed=1, on_trial=trials.append, on_error=errors.append)
    runner.start()
    return runner, clock, hw, trials, errors


def test_output_and_sound_handles_call_the_hardware_by_role() -> None:
    runner, clock, hw, trials, errors = run(Handles)
    for name in ('led_on', 'led_pwm', 'led_off', 'ttl_pulse', 'reward', 'valve_pulse', 'beep', 'hush', 'done'):
        runner.handle_event(Event(name))
    assert not errors
    assert [c for c in hw.calls if c[0] != 'load_sound'] == [
        ('set', 'led', True), ('pwm', 'led', 0.25, 1000.0), ('set', 'led', False), ('pulse', 'ttl', 2.5),
        ('reward', 'valve', 4.0), ('pulse', 'valve', 30.0), ('play', 'beep', 1), ('stop_sound',)]
    assert trials[0].fields == {'n': 11}  # entry, the nine calls, exit
    # On the class the declarations are what they were; on an instance each handle is made once.
    assert isinstance(Handles.led, Output) and runner.task.led is runner.task.led
    assert repr(runner.task.valve) == '<valve valve>'


@pytest.mark.parametrize(('event', 'message'), [
    ('valve_on', "valve.on(): 'valve' is a valve; open it with reward(ul) or pulse(ms)"),
    ('led_reward', "led.reward(): 'led' is a led output, not a valve"),
])
def test_a_valve_cannot_be_left_open_and_only_valves_give_rewards(event: str, message: str) -> None:
    runner, clock, hw, trials, errors = run(Handles)
    runner.handle_event(Event(event))
    assert runner.state == 'error' and len(errors) == 1 and message in errors[0], errors
    assert not hw.of('reward') and ('set', 'valve', True) not in hw.calls


class Timed(Task):
    """wait -> (after wait_s, or at once on 'skip') -> hold -> end_trial after hold_s; 'leave' ends at once."""

    wait_s = Param(1.0, 's', 'Wait', min=0.0, max=10.0)
    hold_s = Param(0.5, 's', 'Hold', min=0.0, max=10.0)

    how = Field(str, '', 'How the wait ended', default='timed')
    at_end = Field(float, 's', 'Clock when the trial was recorded', default=math.nan)

    stages = ('wait', 'hold')

    def wait(self, event: Event) -> None:
        if event == 'entry':
            self.goto('hold', after_s=self.wait_s)
        elif event == 'skip':
            self.how = 'skipped'
            self.goto('hold')
        elif event == 'again':  # a second timed goto of the same visit replaces the first
            self.goto('hold', after_s=3.0)

    def hold(self, event: Event) -> None:
        if event == 'entry':
            self.end_trial(after_s=self.hold_s)
        elif event == 'leave':
            self.how = 'left'
            self.end_trial()
        elif event == 'exit':
            self.at_end = self.now_ns() / 1e9


def test_timed_goto_and_end_trial_fire_at_their_time() -> None:
    runner, clock, hw, trials, errors = run(Timed)
    clock.advance(0.999)
    assert runner.stage == 'wait'
    clock.advance(0.002)
    assert runner.stage == 'hold'
    clock.advance(0.498)
    assert not trials
    clock.advance(0.002)
    assert [t.fields['how'] for t in trials] == ['timed'] and trials[0].fields['at_end'] == pytest.approx(1.5)
    assert runner.stage == 'wait' and runner.trial_number == 2 and not errors


def test_leaving_a_stage_drops_its_timed_transition() -> None:
    runner, clock, hw, trials, errors = run(Timed)
    clock.advance(0.5)
    runner.handle_event(Event('skip'))           # leaves 'wait' before its timed goto
    clock.advance(0.2)
    runner.handle_event(Event('leave'))          # leaves 'hold' before its timed end
    assert [t.fields['how'] for t in trials] == ['left']
    # Trial 2 starts in 'wait' at 0.7 s; trial 1's due times (1.0 s, 1.2 s) must not act in it.
    clock.advance(0.95)
    assert runner.stage == 'wait'
    clock.advance(0.1)
    assert runner.stage == 'hold' and runner.trial_number == 2 and len(trials) == 1
    assert clock.pending() == 1 and not errors   # only trial 2's own timed end_trial


def test_a_second_timed_goto_replaces_the_first() -> None:
    runner, clock, hw, trials, errors = run(Timed)
    runner.handle_event(Event('again'))
    clock.advance(2.9)
    assert runner.stage == 'wait'
    clock.advance(0.2)
    assert runner.stage == 'hold' and not errors


@pytest.mark.parametrize('after_s', [-1.0, math.nan, math.inf, 1e308 * 10, True, '1'])
def test_timed_transitions_refuse_bad_delays(after_s: object) -> None:
    runner, clock, hw, trials, errors = run(Timed, {'wait_s': 1.0})
    with pytest.raises(TaskError, match='after_s must be a number of seconds >= 0'):
        runner.goto('hold', after_s)  # type: ignore[arg-type]
    with pytest.raises(TaskError, match='after_s must be a number of seconds >= 0'):
        runner.end_trial(None, after_s)  # type: ignore[arg-type]


class Defaults(Task):
    """Per-trial state: fields with and without defaults, Vars with a default and a factory."""

    side = Field(str, '', 'Set every trial, no default')
    count = Field(int, '', 'Counted up', default=0)
    rt_ms = Field(float, 'ms', 'NaN unless measured', default=math.nan)
    first = Var(None, 'The first event of the trial')
    seen = Var(factory=list)

    stages = ('run',)

    def start_trial(self) -> None:
        self.side = 'left' if self.trial_number % 2 else 'right'

    def run(self, event: Event) -> None:
        if event == 'entry':
            return
        if self.first is None:
            self.first = str(event)
        self.seen.append(str(event))
        if event == 'count':
            self.count += 1
        elif event == 'rt':
            self.rt_ms = 12  # an int is a float
        elif event == 'bad':
            self.count = 'many'
        elif event == 'done':
            self.end_trial()


def test_each_trial_starts_from_the_declared_state() -> None:
    runner, clock, hw, trials, errors = run(Defaults)
    for name in ('count', 'count', 'rt', 'done', 'count', 'done'):
        runner.handle_event(Event(name))
    assert trials[0].fields == {'side': 'left', 'count': 2, 'rt_ms': 12.0}
    assert trials[1].fields['side'] == 'right' and trials[1].fields['count'] == 1
    assert type(trials[0].fields['rt_ms']) is float and math.isnan(trials[1].fields['rt_ms'])
    assert runner.task.first is None and runner.task.seen == []  # trial 3 started fresh
    assert not errors


def test_a_wrong_assignment_stops_the_session_at_that_line() -> None:
    runner, clock, hw, trials, errors = run(Defaults)
    runner.handle_event(Event('bad'))
    assert runner.state == 'error' and not trials
    assert "trial field 'count': 'many' has type str, expected int" in errors[0], errors


class Forgetful(Task):
    """Ends a trial without setting a field that has no default, or reads it first."""

    side = Field(str, '', 'Never set')
    stages = ('run',)

    def run(self, event: Event) -> None:
        if event == 'read':
            self.log(self.side)
        elif event == 'done':
            self.end_trial()


@pytest.mark.parametrize(('event', 'message'), [
    ('done', 'end_trial: missing side (set them in the trial, or give their Field a default)'),
    ('read', "trial field 'side' has no value in this trial yet: set it first, or give it a default"),
])
def test_an_unset_field_is_named(event: str, message: str) -> None:
    runner, clock, hw, trials, errors = run(Forgetful)
    runner.handle_event(Event(event))
    assert runner.state == 'error' and message in errors[0], errors
    assert not hasattr(runner.task, 'side')  # UnsetError is an AttributeError too
    assert issubclass(UnsetError, TaskError)


def test_declarations_that_cannot_work_fail_at_class_creation() -> None:
    with pytest.raises(TypeError, match="Field default 'x' has type str, expected int"):
        Field(int, default='x')
    with pytest.raises(TypeError, match='is mutable and would be shared by every trial; use Var\\(factory=list\\)'):
        Var([])
    with pytest.raises(TypeError, match='give a default or a factory, not both'):
        Var(1, factory=list)
    with pytest.raises(TypeError, match="'new_trial' is a Task attribute"):
        type('Bad', (Task,), {'new_trial': Var(), 'stages': ()})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(['skip', 'leave', 'again', 'noise', 'advance']), max_size=40),
       st.floats(0.01, 2.0), st.floats(0.01, 2.0))  # both 0 would loop trials for ever at one instant, as in any clock
def test_property_timed_transitions_never_act_outside_their_visit(script: list[str], wait_s: float,
                                                                  hold_s: float) -> None:
    """Any mix of timed and immediate transitions: every trial is recorded once, its stages in order, and at
    most one timed transition is pending (the current visit's)."""
    runner, clock, hw, trials, errors = run(Timed, {'wait_s': wait_s, 'hold_s': hold_s})
    for step in script:
        if step == 'advance':
            clock.advance(0.3)
        else:
            runner.handle_event(Event(step))
        assert clock.pending() <= 1
    assert not errors
    assert [t.number for t in trials] == list(range(1, len(trials) + 1))
    for t in trials:
        assert [s for s, _ in t.stage_log] == ['wait', 'hold']


def test_the_shipped_tasks_run_on_the_v2_api() -> None:
    from autopilot_tasks.tasks.free_water import FreeWater

    rig = FakeRig(FreeWater, {'mode': 'left', 'max_wait_s': 2.0, 'iti_s': 0.5})
    rig.start()
    rig.advance(2.0)                                 # no poke: the timed end_trial, unrewarded
    rig.poke('right')
    rig.poke('left')
    rig.advance(0.5)
    assert [(t.fields['rewarded'], t.fields['wrong_pokes']) for t in rig.trials] == [(False, 0), (True, 1)]
    assert ('set', 'light', True) in rig.hw.calls and rig.hw.of('reward') == [('reward', 'left_valve', 5.0)]
    assert not rig.errors


class Stereo(Task):
    """Loads a tone on each speaker of a stereo output."""

    left_speaker = Sound('Left speaker', channel=1)
    right_speaker = Sound('Right speaker', channel=2)
    n = Field(int, default=0)
    stages = ('only',)

    def setup(self) -> None:
        self.left_speaker.load('l', kind='tone', frequency_hz=4000.0)
        self.right_speaker.load('r', kind='tone', frequency_hz=8000.0, channel=2)

    def only(self, event: Event) -> None:
        if event == 'bad':
            self.left_speaker.load('x', kind='tone', channel=2)
        elif event == 'play':
            self.right_speaker.play('r')


def test_speaker_roles_load_their_sounds_for_their_channel() -> None:
    runner, clock, hw, trials, errors = run(Stereo)
    assert hw.sounds == {'l': {'kind': 'tone', 'frequency_hz': 4000.0, 'channel': 1},
                         'r': {'kind': 'tone', 'frequency_hz': 8000.0, 'channel': 2}}
    runner.handle_event(Event('play'))
    assert hw.of('play')[-1][1] == 'r' and not errors
    runner.handle_event(Event('bad'))
    assert "load('x', channel=2) on a speaker of channel 1" in errors[0]
    assert [r.device for r in Stereo.hardware().values()] == ['sound', 'sound']
    with pytest.raises(TypeError, match='Sound channel -1'):
        Sound(channel=-1)


class Cues(Task):
    """An RGB cue light and flashing series, driven from events named after the call."""

    cue = Output('cue_rgb', kind='led_rgb')
    led = Output('led_a', kind='led')
    valve = Output('valve_a', kind='valve')
    n = Field(int, default=0)
    stages = ('only',)

    def only(self, event: Event) -> None:
        calls = {'green': lambda: self.cue.on('green'), 'white': self.cue.on, 'dark': self.cue.off,
                 'flash': lambda: self.cue.pulse(150, color='#ff8000'),
                 'blink': lambda: self.led.series([1, 0], [100, 50], repeat=3),
                 'drip': lambda: self.valve.series([True, False, True], [10, 200, 10]),
                 'led_colour': lambda: self.led.on('red'), 'cue_pwm': lambda: self.cue.pwm(0.5),
                 'bad_colour': lambda: self.cue.on('chartreuse'), 'bad_level': lambda: self.led.series([2], [10]),
                 'bad_length': lambda: self.led.series([1, 0], [10]),
                 'bad_ms': lambda: self.led.series([1], [math.nan])}
        if event in calls:
            calls[str(event)]()


def test_rgb_and_series_handles_reach_the_hardware_checked() -> None:
    runner, clock, hw, trials, errors = run(Cues)
    for name in ('green', 'white', 'dark', 'flash', 'blink', 'drip'):
        runner.handle_event(Event(name))
    assert not errors
    assert hw.calls == [
        ('color', 'cue', 'green'), ('color', 'cue', 'white'), ('set', 'cue', False),
        ('series', 'cue', [True], [150], 1, '#ff8000'), ('series', 'led', [True, False], [100, 50], 3, ''),
        ('series', 'valve', [True, False, True], [10, 200, 10], 1, '')]


@pytest.mark.parametrize(('event', 'message'), [
    ('led_colour', "led.on(color='red'): 'led' is a led output; colours are for Output(..., kind='led_rgb')"),
    ('cue_pwm', "cue.pwm(): an RGB LED is dimmed by its colour, e.g. on('#404040')"),
    ('bad_colour', "cue: colour 'chartreuse' is not known: give a name (off, black, white"),
    ('bad_level', 'led.series(): level 2 is not 0/1 or False/True'),
    ('bad_length', 'led.series(): led: 2 series levels but 1 durations: give one duration per level'),
    ('bad_ms', 'led.series(): duration nan ms is not a positive number of milliseconds'),
])
def test_wrong_colours_and_series_stop_the_task_at_that_line(event: str, message: str) -> None:
    runner, clock, hw, trials, errors = run(Cues)
    runner.handle_event(Event(event))
    assert runner.state == 'error' and len(errors) == 1 and message in errors[0], errors
    assert not hw.of('color') and not hw.of('series')  # (the stop turned the LEDs off: 'set' False)


def test_the_pilot_sends_colours_and_series_as_digital_output_messages() -> None:
    from autopilot_msgs.msg import DigitalOutput

    from autopilot_pilot.hardware import Commands, RosHardware
    sent: list = []
    commands = Commands(output=sent.append, reward=sent.append, play=sent.append, stop=sent.append,
                        load=lambda req: None, now_ns=lambda: 5, cancel=sent.append)  # type: ignore[arg-type,return-value]
    hw = RosHardware({'cue': 'cue_rgb', 'led': 'led_a'}, commands, on_error=lambda e: None)
    hw.color('cue', 'amber')
    hw.series('led', [1, 0, 1], [1.5, 2, 0.25], 4)
    with pytest.raises(TaskError, match="cue: colour 'nope' is not known"):
        hw.color('cue', 'nope')
    assert [(m.device, m.mode, m.color) for m in sent] == [('cue_rgb', DigitalOutput.MODE_COLOR, 'amber'),
                                                           ('led_a', DigitalOutput.MODE_SERIES, '')]
    assert (list(sent[1].series_levels), list(sent[1].series_us), sent[1].series_repeat) == \
        ([True, False, True], [1500, 2000, 250], 4)
