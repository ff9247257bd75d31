"""Gap in noise: continuous noise, and a short silent gap in it is the cue to respond.

The Wehr lab's paradigm as an operant detection task. Background noise plays without a break (``noise_amplitude``;
it is started again after a pause). Each trial waits a foreperiod drawn uniformly from ``[foreperiod_min_s,
foreperiod_max_s]``, then cuts a gap of a duration drawn from ``gaps_ms`` into the noise (the sound server does
it sample-accurately and stamps its onset), or on a catch trial (``catch_fraction``) no gap. A poke at the
response port within ``response_window_s`` of the gap is a **hit** (water); within the window of a catch trial a
**false alarm** (a timeout). No poke is a **miss** or a **correct rejection**. A poke during the foreperiod is
**early**: the trial ends with a timeout, so waiting for the gap pays.

``rt_ms``: gap onset (the sound server's stamp) -> the poke (its GPIO stamp); NaN without a response. The
detection curve is the fraction of trials with a response per gap duration (0 ms: the catch trials' false
alarms), drawn live by the ``Psychometric`` plot.
"""

from __future__ import annotations

import math
from typing import Any

from autopilot_tasks.task import (
    Event,
    Field,
    Input,
    Output,
    Param,
    Plot,
    Points,
    Psychometric,
    RollingMean,
    Sound,
    StimulusManager,
    StimulusSet,
    Task,
    Var,
    ms_between,
    number_list,
)

#: How long a played gap may take to report its onset before the trial is given up (a sound server that restarted
#: or is overloaded must not hold the session in its foreperiod for ever).
ONSET_WAIT_S = 1.0


def parse_gaps(text: str) -> list[float]:
    """Gap durations in ms from ``'2 4 8 16'`` (spaces or commas); ValueError naming the bad one."""
    return number_list(text, 'gap durations', lo=0.5, hi=1000.0, at_most=32)


class GapInNoise(Task):
    """Gap in noise: respond when a silent gap cuts into continuous noise."""

    # Parameters
    reward_ul = Param(5.0, 'uL', 'Water for a hit', min=0.5, max=50.0)
    gaps_ms = Param('2 4 8 16 32 64', 'ms', 'Gap durations, each drawn equally often (spaces or commas)')
    catch_fraction = Param(0.2, '', 'Fraction of trials without a gap', min=0.0, max=0.9)
    gap_ramp_ms = Param(0.5, 'ms', 'Fade of the noise into and out of each gap (within the gap)', min=0.0, max=5.0)
    foreperiod_min_s = Param(1.0, 's', 'Shortest wait before the gap', min=0.1, max=30.0)
    foreperiod_max_s = Param(3.0, 's', 'Longest wait before the gap', min=0.1, max=30.0)
    response_window_s = Param(1.0, 's', 'Time from the gap to respond', min=0.1, max=10.0)
    timeout_s = Param(3.0, 's', 'Timeout after a false alarm or an early poke', min=0.0, max=60.0)
    iti_s = Param(0.5, 's', 'Pause after a hit, miss or correct rejection', min=0.0, max=60.0)
    noise_amplitude = Param(0.05, '', 'Background noise amplitude, fraction of full scale', min=0.0, max=1.0)

    # Hardware: role = default device on the rig
    port = Input('poke_left', description='The response port (its water valve is valve_left)')
    valve = Output('valve_left', kind='valve', description='Water at the response port')
    speaker = Sound('Continuous noise with gaps')

    # Trial data: each trial starts with the defaults
    gap_ms = Field(float, 'ms', 'The gap cut into the noise; 0 on a catch trial')
    foreperiod_s = Field(float, 's', 'Wait from the trial start to the gap')
    responded = Field(bool, '', 'A poke in the response window', default=False)
    outcome = Field(str, '', 'hit, miss, false_alarm, correct_reject, early, or aborted (the gap did not play)',
                    default='')
    correct = Field(bool, '', 'Hit or correct rejection', default=False)
    rt_ms = Field(float, 'ms', 'Gap onset -> poke, stamps; NaN without a response', default=math.nan)
    gap_onset_ms = Field(float, 'ms', 'Trial start -> gap onset, stamps; NaN on catch trials', default=math.nan)
    reward_given_ul = Field(float, 'uL', 'Water given', default=0.0)

    # Per-trial state, not recorded
    started_ns = Var(None, 'When the trial started (the clock)')
    cue_ns = Var(None, 'When the response window opened: the gap onset, or the foreperiod end on a catch trial')
    gap_id = Var('', "The gap sound's id")
    gap_play = Var(-1, "The gap's play id, to know its onset")

    stages = ('foreperiod', 'respond', 'timeout', 'iti')

    plot = Plot(
        Points('outcome', y={'miss': 0, 'hit': 1, 'correct_reject': 0.25, 'false_alarm': 0.75, 'early': 0.5},
               color_by='correct'),
        RollingMean('correct', window=20),
        Psychometric('gap_ms', choice='responded', positive=True),
        title='Gap in noise',
    )

    @classmethod
    def check_params(cls, values: dict) -> str | None:
        try:
            parse_gaps(values['gaps_ms'])
        except ValueError as exc:
            return f'gaps_ms {values["gaps_ms"]!r}: {exc}'
        if values['foreperiod_min_s'] > values['foreperiod_max_s']:
            return 'foreperiod_min_s is longer than foreperiod_max_s'
        return None

    def setup(self) -> None:
        self.noise_play: int | None = None
        self.loaded: Any = None

    def outputs_reset(self) -> None:
        self.noise_play = None  # the runner stopped every sound: the noise starts again with the next trial

    def load_sounds(self) -> None:
        """The noise, a gap sound per duration and the manager that draws them (again after update_params)."""
        gaps = {'groups': {
            'gap': [{'id': f'gap_{ms:g}ms'.replace('.', '_'), 'kind': 'gap', 'duration_ms': ms,
                     'ramp_ms': min(self.gap_ramp_ms, ms / 2), 'level': ms} for ms in parse_gaps(self.gaps_ms)],
            'catch': [{'id': 'catch', 'kind': 'gap', 'duration_ms': 1.0, 'level': 0.0}]},
            'proportions': {'gap': 1.0 - self.catch_fraction, 'catch': self.catch_fraction}}
        noise = dict(kind='noise', duration_ms=10_000.0, amplitude=self.noise_amplitude, seed=7, loop=True)
        if (gaps, noise) != self.loaded:
            for gap in StimulusSet.from_dict(gaps).stimuli():
                if gap.group == 'gap':
                    self.speaker.load(gap.id, **gap.spec)
            self.speaker.load('noise', **noise)
            if self.noise_play is not None:  # a new noise: the old one stops, the new one starts below
                self.speaker.stop(self.noise_play)
                self.noise_play = None
            self.loaded = (gaps, noise)
        self.gaps = StimulusManager(StimulusSet.from_dict(gaps), self.random)

    def start_trial(self) -> None:
        self.load_sounds()
        if self.noise_play is None:
            self.noise_play = self.speaker.play('noise')
        draw = self.gaps.next(self.history)
        self.gap_ms = draw.stimulus.level or 0.0
        self.gap_id = draw.stimulus.id
        self.foreperiod_s = self.random.uniform(self.foreperiod_min_s, self.foreperiod_max_s)

    def foreperiod(self, event: Event) -> None:
        if event == 'entry':
            self.started_ns = event.stamp_ns
            self.set_timer('cue', self.foreperiod_s)
        elif event == 'cue':
            if self.gap_ms > 0:
                self.gap_play = self.speaker.play(self.gap_id)  # the window opens at its onset
                self.set_timer('no_onset', ONSET_WAIT_S)
            else:
                self.cue_ns = event.stamp_ns
                self.goto('respond')
        elif event == 'sound_onset' and self.gap_ms > 0 and event.data['play_id'] == self.gap_play:
            self.cancel_timer('no_onset')
            if not event.data['ok']:
                self.log(f'gap {self.gap_id} did not play: trial aborted')
                self.outcome = 'aborted'
                self.goto('iti')
                return
            self.cue_ns = event.stamp_ns
            self.gap_onset_ms = ms_between(self.started_ns, event.stamp_ns)
            self.goto('respond')
        elif event == 'no_onset':  # the sound server never said the gap played (restarted, overloaded)
            self.log(f'no onset of gap {self.gap_id} within {ONSET_WAIT_S:g} s: trial aborted')
            self.outcome = 'aborted'
            self.goto('iti')
        elif event == 'port_in':
            self.outcome = 'early'
            self.cancel_timer('cue')
            self.cancel_timer('no_onset')
            self.goto('timeout')

    def respond(self, event: Event) -> None:
        if event == 'entry':
            # Unless a poke comes: a miss after a gap, a correct rejection on a catch trial.
            self.outcome, self.correct = ('miss', False) if self.gap_ms > 0 else ('correct_reject', True)
            self.goto('iti', after_s=self.response_window_s)
        elif event == 'port_in':
            self.responded = True
            self.rt_ms = ms_between(self.cue_ns, event.stamp_ns)
            if self.gap_ms > 0:
                self.outcome, self.correct = 'hit', True
                self.valve.reward(self.reward_ul)
                self.reward_given_ul = self.reward_ul
                self.goto('iti')
            else:
                self.outcome, self.correct = 'false_alarm', False
                self.goto('timeout')

    def timeout(self, event: Event) -> None:
        if event == 'entry':
            self.end_trial(after_s=self.timeout_s)

    def iti(self, event: Event) -> None:
        if event == 'entry':
            self.end_trial(after_s=self.iti_s)
