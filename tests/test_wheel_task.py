"""Stream roles and the wheel go/no-go on the fake rig (no ROS): threshold crossings, the quiet wait, each outcome,
rt from the tone's onset stamp to the wheel sample's, and declarations refused by name."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot_pilot.fakes import FakeRig
from autopilot_tasks.task import Stream, StreamHandle, Task, TaskError
from autopilot_tasks.tasks.wheel_gonogo import WheelGoNogo

FAST = {'quiet_s': 0.5, 'response_window_s': 1.0, 'punish_timeout_s': 1.0, 'iti_s': 0.2}


def test_a_handle_gives_crossings_only_with_hysteresis() -> None:
    h = StreamHandle('wheel')
    assert math.isnan(h.value) and h.stamp_ns is None
    assert h.update(3.0, 10) is None                 # no threshold: values only
    h.threshold(10.0, hysteresis=2.0)
    assert [h.update(v, 0) for v in (5, 9.9, 10, 30, 9, 8.5, 7.9, 7, 12)] == \
        [None, None, 'above', None, None, None, 'below', None, 'above']
    h.threshold(5.0)                                 # armed while above: no event until it crosses again
    assert h.update(20.0, 0) is None and h.update(1.0, 0) == 'below'
    h.threshold(None)
    assert h.update(100.0, 0) is None and h.value == 100.0 and h.samples == 13
    for bad in (math.nan, math.inf, True, '10'):
        with pytest.raises(TaskError, match='wheel.threshold'):
            h.threshold(bad)  # type: ignore[arg-type]
    with pytest.raises(TaskError, match='>= 0'):
        h.threshold(1.0, hysteresis=-1.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), max_size=60), st.floats(-100, 100), st.floats(0, 50))
def test_crossings_alternate_and_match_the_values(values: list[float], level: float, hyst: float) -> None:
    """Events alternate above/below, an 'above' sample is >= level, a 'below' one < level - hysteresis."""
    h = StreamHandle('w')
    h.threshold(level, hyst)
    events = [(e, v) for v in values if (e := h.update(v, 0))]
    assert all(a[0] != b[0] for a, b in zip(events, events[1:], strict=False))
    assert all(v >= level if e == 'above' else v < level - hyst for e, v in events)


def test_stream_declarations_are_checked_at_class_creation() -> None:
    for args, match in ((('', 'x', 'a/msg/B'), 'topic'), (('t', '', 'a/msg/B'), 'field'),
                        (('t', 'x', 'WheelMotion'), 'package/msg/Type')):
        with pytest.raises(TypeError, match=match):
            Stream(*args)
    with pytest.raises(TypeError, match='timeout_s'):
        Stream('t', 'x', 'a/msg/B', timeout_s=0)


def test_a_stream_event_reaches_the_stage_with_value_and_stamp() -> None:
    class Watch(Task):
        level = Stream('sensor/level', 'data', 'std_msgs/msg/Float64')
        stages = ('wait',)
        seen: list = []

        def wait(self, event):
            if event == 'entry':
                self.level.threshold(0.5)
            elif event.startswith('level_'):
                self.seen.append((str(event), event.data['value'], event.stamp_ns, event.device))

    rig = FakeRig(Watch, devices={'level': '/other_rig/sensor/level'})
    rig.start()
    for v, t in ((0.1, 5), (0.7, 6), (0.2, 7)):
        rig.stream('level', v, stamp_ns=t)
    assert Watch.seen == [('level_above', 0.7, 6, '/other_rig/sensor/level'),
                          ('level_below', 0.2, 7, '/other_rig/sensor/level')]
    assert rig.task.level.value == 0.2 and not rig.errors


def start(seed: int, group: str, **params: object) -> FakeRig:
    """A rig whose first trial plays ``group`` (the seed is searched)."""
    for s in range(seed, seed + 50):
        rig = FakeRig(WheelGoNogo, {**FAST, **params}, seed=s)
        rig.start()
        if rig.task.stim_group == group:
            return rig
    raise AssertionError(f'no seed gives {group}')


def wait_trial(rig: FakeRig, n: int) -> dict:
    for _ in range(200):
        if len(rig.trials) > n:
            return rig.trials[-1].fields
        rig.flow('wheel', 0.0, 0.1)
    raise AssertionError(f'trial {n + 1} never ended (stage {rig.stage})')


def test_the_tone_waits_for_stillness_and_running_restarts_the_wait() -> None:
    rig = start(1, 'go')
    assert rig.stage == 'quiet'
    rig.flow('wheel', 0.0, 0.3)
    rig.flow('wheel', 20.0, 0.2)                      # runs before the tone: the wait restarts
    rig.flow('wheel', 0.0, 0.4)
    assert rig.stage == 'quiet' and not rig.hw.of('play')
    rig.flow('wheel', 0.0, 0.2)                       # 0.5 s still since it stopped
    assert rig.stage == 'respond' and [c[1] for c in rig.hw.of('play')] == ['go']
    assert rig.task.restarts == 1


def test_running_after_go_is_a_hit_with_rt_from_the_onset_stamp() -> None:
    rig = start(1, 'go', reward_ul=4.0)
    rig.flow('wheel', 0.0, 0.52)
    assert rig.stage == 'respond'
    onset_ns = rig.clock.now_ns() + round(0.002e9)    # the fake onset comes 2 ms after the play
    rig.flow('wheel', 0.0, 0.3)
    rig.flow('wheel', 25.0, 0.02)
    f = wait_trial(rig, 0)
    assert (f['outcome'], f['correct'], f['response'], f['reward_given_ul']) == ('hit', True, 'run', 4.0)
    assert rig.hw.of('reward') == [('reward', 'valve', 4.0)]
    crossing_ns = round((0.52 + 0.3 + 0.02) * 1e9)
    assert f['rt_ms'] == pytest.approx((crossing_ns - onset_ns) / 1e6, abs=25)
    assert not rig.errors


def test_running_after_nogo_is_a_false_alarm_and_stillness_a_correct_rejection() -> None:
    rig = start(1, 'nogo', punish_timeout_s=2.0)
    rig.flow('wheel', 0.0, 0.6)
    rig.flow('wheel', 30.0, 0.1)
    assert rig.stage == 'punish' and [c[1] for c in rig.hw.of('play')] == ['nogo', 'noise']
    f = wait_trial(rig, 0)
    assert (f['outcome'], f['correct'], f['response']) == ('false_alarm', False, 'run') and not rig.hw.of('reward')
    rig = start(1, 'nogo')
    f = wait_trial(rig, 0)
    assert (f['outcome'], f['correct'], f['response']) == ('correct_reject', True, 'none') and math.isnan(f['rt_ms'])
    rig = start(1, 'go')
    f = wait_trial(rig, 0)
    assert (f['outcome'], f['correct']) == ('miss', False) and not rig.hw.of('reward')


def test_a_trial_starting_while_the_wheel_runs_waits_for_it_to_stop() -> None:
    rig = start(1, 'go')
    rig.flow('wheel', 0.0, 0.52)
    rig.flow('wheel', 25.0, 0.1)                       # hit; it keeps running through the ITI
    rig.flow('wheel', 25.0, 2.0)
    assert len(rig.trials) == 1 and rig.stage == 'quiet' and len(rig.hw.of('play')) == 1
    rig.flow('wheel', 0.0, 0.6)
    assert rig.stage == 'respond' and len(rig.hw.of('play')) == 2
