"""Go/no-go on a running wheel: run after the go tone, keep still after the no-go tone (Autopilot's wheel child).

The wheel is a child device: a USB mouse under the wheel, on another Pi or on this one, publishes the wheel's
speed on ``wheel/velocity`` (:mod:`autopilot_hardware.wheel`), which the task reads as a stream role.

A trial: the animal keeps the wheel still (under ``run_threshold_cm_s``) for ``quiet_s``; running restarts
that wait (``restarts`` counts how often). Then the trial's tone plays, drawn from the ``stimuli`` set (groups
``go`` and ``nogo``, with their proportions). Running past the threshold within ``response_window_s`` is a
response: after go a **hit** (water), after no-go a **false alarm** (noise and a timeout). No response is a
**miss** after go and a **correct rejection** after no-go. ``correct`` is hit or correct rejection.

``rt_ms``: the tone's onset -> the first wheel sample past the threshold, from their stamps (the wheel's are
taken on the child's clock: keep it synced to the terminal's; ``autopilot setup`` configures chrony).
"""

from __future__ import annotations

import math

from autopilot_tasks.task import (
    Event,
    Field,
    Line,
    Output,
    Param,
    Plot,
    Points,
    RollingMean,
    Sound,
    Stimuli,
    StimulusManager,
    StimulusSet,
    Stream,
    Task,
    Var,
    ms_between,
)
from autopilot_tasks.tasks.go_nogo import RAMP_MS, TONES, go_nogo_groups


class WheelGoNogo(Task):
    """Go/no-go on a running wheel: run after the go tone, keep still after the no-go tone."""

    # Parameters
    run_threshold_cm_s = Param(10.0, 'cm/s', 'Wheel speed that counts as running', min=0.5, max=200.0)
    quiet_s = Param(1.0, 's', 'Stillness needed before the tone', min=0.0, max=60.0)
    response_window_s = Param(2.0, 's', 'Time after the tone to run', min=0.1, max=60.0)
    reward_ul = Param(5.0, 'uL', 'Water for a hit', min=0.5, max=50.0)
    punish_timeout_s = Param(3.0, 's', 'Timeout after a false alarm', min=0.0, max=60.0)
    iti_s = Param(1.0, 's', 'Pause after a hit, miss or correct rejection', min=0.0, max=60.0)
    stimuli = Stimuli(TONES, 'The go and no-go sounds (groups go and nogo) and how often each group comes')
    noise_ms = Param(500.0, 'ms', 'Punishment noise duration', min=20.0, max=5000.0)
    noise_amplitude = Param(0.1, '', 'Punishment noise amplitude, fraction of full scale', min=0.0, max=1.0)
    correction_p = Param(0.0, '', 'Probability of repeating the tone after an error', min=0.0, max=1.0)

    # Hardware: role = default device on the rig
    wheel = Stream('wheel/velocity', 'velocity_cm_s', 'autopilot_msgs/msg/WheelMotion', unit='cm/s',
                   limits=(-500.0, 500.0), description='The running wheel (a child device); 5 m/s is no mouse')
    valve = Output('valve_center', kind='valve', description='Water at the lick spout')
    speaker = Sound('The go and no-go tones; punishment noise')

    # Trial data: each trial starts with the defaults
    stim_group = Field(str, '', 'The tone: go or nogo')
    stim = Field(str, '', 'Sound id played')
    stim_reason = Field(str, '', 'Why the tone was drawn: random or correction')
    correction = Field(bool, '', 'Correction trial (the tone repeated after an error)')
    restarts = Field(int, '', 'Times running restarted the quiet wait', default=0)
    response = Field(str, '', 'run (in the window) or none', default='none')
    outcome = Field(str, '', 'hit, miss, false_alarm or correct_reject', default='')
    correct = Field(bool, '', 'Hit or correct rejection', default=False)
    rt_ms = Field(float, 'ms', 'Tone onset -> first sample past the threshold; NaN without response',
                  default=math.nan)
    reward_given_ul = Field(float, 'uL', 'Water given', default=0.0)

    # Per-trial state, not recorded
    onset = Var(None, "The tone's sound_onset event")

    score_excludes = ('correction',)
    stages = ('quiet', 'respond', 'punish', 'iti')

    plot = Plot(
        Points('outcome', y={'miss': 0, 'hit': 1, 'correct_reject': 0.25, 'false_alarm': 0.75}, color_by='correct'),
        RollingMean('correct', window=20, chance=0.5, skip='correction'),
        Line('rt_ms'),
        title='Wheel go/no-go',
    )

    @classmethod
    def check_params(cls, values: dict) -> str | None:
        return go_nogo_groups(values)

    def setup(self) -> None:
        for sound in StimulusSet.from_dict(self.stimuli).stimuli():
            self.speaker.load(sound.id, **sound.spec)
        self.speaker.load('noise', kind='noise', duration_ms=self.noise_ms, amplitude=self.noise_amplitude,
                          ramp_ms=RAMP_MS, seed=1)
        self.tones = StimulusManager(StimulusSet.from_dict(self.stimuli), self.random, correction_p=self.correction_p)

    def start_trial(self) -> None:
        draw = self.tones.next(self.history, response='outcome')
        self.stim_group, self.stim, self.stim_reason = draw.group, draw.stimulus.id, draw.reason
        self.correction = draw.correction

    def quiet(self, event: Event) -> None:
        if event == 'entry':
            self.wheel.threshold(self.run_threshold_cm_s)
            if not self.wheel.value >= self.run_threshold_cm_s:  # running now: wait for wheel_below
                self.set_timer('still', self.quiet_s)
        elif event == 'wheel_above':
            self.restarts += 1
            self.cancel_timer('still')
        elif event == 'wheel_below':
            self.set_timer('still', self.quiet_s)
        elif event == 'still':
            self.speaker.play(self.stim)
            self.goto('respond')

    def respond(self, event: Event) -> None:
        if event == 'entry':
            # Unless the animal runs: a miss after go, a correct rejection after no-go.
            self.outcome = 'miss' if self.stim_group == 'go' else 'correct_reject'
            self.correct = self.stim_group == 'nogo'
            self.goto('iti', after_s=self.response_window_s)
        elif event == 'sound_onset' and event.data.get('sound_id') == self.stim:
            self.onset = event
        elif event == 'wheel_above':
            self.response = 'run'
            if self.onset is not None:
                self.rt_ms = ms_between(self.onset.stamp_ns, event.stamp_ns)
            if self.stim_group == 'go':
                self.outcome, self.correct = 'hit', True
                self.valve.reward(self.reward_ul)
                self.reward_given_ul = self.reward_ul
                self.goto('iti')
            else:
                self.outcome, self.correct = 'false_alarm', False
                self.speaker.play('noise')
                self.goto('punish')

    def punish(self, event: Event) -> None:
        if event == 'entry':
            self.end_trial(after_s=self.punish_timeout_s)

    def iti(self, event: Event) -> None:
        if event == 'entry':
            self.end_trial(after_s=self.iti_s)
