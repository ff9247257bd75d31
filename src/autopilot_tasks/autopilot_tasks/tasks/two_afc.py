"""Two-alternative forced choice: which side does the tone say?

A trial: the centre LED lights; a centre poke plays the stimulus tone (``tone_left``: go left,
``tone_right``: go right) and opens the response window. A poke at the target side gives water; a poke
at the other side plays noise and starts a timeout; no side poke within the window is response 'none'
(no water, no noise). The trial ends after the inter-trial interval (or the timeout).

Response time ``rt_ms``: centre poke out -> side poke in, both from GPIO hardware ticks (``tick_us``), so
network and executor delays never enter. The stimulus onset has no tick (the sound server stamps it in
ROS time), so it is not the reference: ``onset_ms`` (centre in -> onset, from stamps) shows the sound
latency instead, and ``hold_ms`` (centre in -> out, ticks) the time spent in the centre port. A response
seen without a centre out edge (centre poke wired rising-only) has rt_ms NaN.

Correction trials (``correction_trials``): after a wrong response the next trial repeats the target,
until a correct response. They are flagged ``correction``, and left out of the bias estimate and of
accuracy (``score_excludes``). A no-response trial neither starts nor ends a run of correction trials.

Bias correction (``bias_correction``): the target is left with probability
``p_left`` = fraction of right responses in the last ``bias_window`` non-correction trials with a
response, clipped to [``bias_limit``, 1 - ``bias_limit``]; 0.5 before any response. An animal that goes
right too often gets more left targets. Off: p_left = 0.5. Correction trials record the p_left they
forced (1.0 or 0.0).
"""

from __future__ import annotations

import math
from typing import Any

from autopilot_tasks.task import (
    BiasCorrection,
    Event,
    Field,
    Input,
    Line,
    Output,
    Param,
    Plot,
    Points,
    RollingMean,
    Shade,
    Sound,
    StimulusManager,
    StimulusSet,
    Task,
    Var,
    ms_between,
)

RAMP_MS = 5.0  # on/off ramp of every sound, so onsets do not click


class TwoAFC(Task):
    """2AFC sound discrimination: centre poke plays a tone, the tone says which side pays water."""

    # Parameters
    reward_ul = Param(5.0, 'uL', 'Water for a correct response', min=0.5, max=50.0)
    response_window_s = Param(5.0, 's', 'Time from the centre poke to respond', min=0.1, max=60.0)
    punish_timeout_s = Param(3.0, 's', 'Timeout after a wrong response', min=0.0, max=60.0)
    iti_s = Param(1.0, 's', 'Pause after a correct or no response', min=0.0, max=60.0)
    left_tone_hz = Param(5000.0, 'Hz', 'Tone that means "go left"', min=100.0, max=20000.0)
    right_tone_hz = Param(12000.0, 'Hz', 'Tone that means "go right"', min=100.0, max=20000.0)
    tone_ms = Param(200.0, 'ms', 'Tone duration', min=20.0, max=5000.0)
    tone_amplitude = Param(0.1, '', 'Tone amplitude, fraction of full scale', min=0.0, max=1.0)
    noise_ms = Param(500.0, 'ms', 'Punishment noise duration', min=20.0, max=5000.0)
    noise_amplitude = Param(0.1, '', 'Noise amplitude, fraction of full scale', min=0.0, max=1.0)
    correction_trials = Param(True, '', 'Repeat the target after a wrong response')
    bias_correction = Param(True, '', 'Draw the target against the recent response bias')
    bias_window = Param(20, 'trials', 'Non-correction responses the bias is measured over', min=1, max=1000)
    bias_limit = Param(0.2, '', 'p_left is kept in [bias_limit, 1 - bias_limit]', min=0.0, max=0.5)

    # Hardware: role = default device on the rig
    center = Input('poke_center', description='Centre nose poke: starts a trial')
    left = Input('poke_left', description='Left response poke')
    right = Input('poke_right', description='Right response poke')
    left_valve = Output('valve_left', kind='valve', description='Left water valve')
    right_valve = Output('valve_right', kind='valve', description='Right water valve')
    center_led = Output('led_center', kind='led', description='On while the rig waits for a centre poke')
    speaker = Sound('Tones tone_left, tone_right; punishment noise')

    # Trial data: each trial starts with the defaults
    target = Field(str, '', 'Correct side: left or right')
    response = Field(str, '', 'Side poked: left, right or none', default='none')
    correct = Field(bool, '', 'Response == target', default=False)
    correction = Field(bool, '', 'Correction trial (target repeated after an error)')
    rt_ms = Field(float, 'ms', 'Centre out -> side in, GPIO ticks; NaN without response', default=math.nan)
    hold_ms = Field(float, 'ms', 'Centre in -> centre out, GPIO ticks', default=math.nan)
    onset_ms = Field(float, 'ms', 'Centre in -> sound onset, stamps; NaN if it did not play', default=math.nan)
    stim = Field(str, '', 'Sound id played')
    p_left = Field(float, '', 'Probability the target was left')
    reward_given_ul = Field(float, 'uL', 'Water given', default=0.0)

    # Per-trial state, not recorded
    center_in = Var(None, 'The centre poke that played the stimulus')
    center_out = Var(None, 'The first centre poke out after it')
    play_id = Var(-1, "The stimulus' play id, to know its onset")

    score_excludes = ('correction',)
    stages = ('wait_center', 'wait_response', 'punish', 'iti')

    # Live plot: responses by side, accuracy as graduation counts it, correction trials shaded
    plot = Plot(
        Points('response', y={'left': 0, 'none': 0.5, 'right': 1}, color_by='correct'),
        RollingMean('correct', window=20, chance=0.5, skip='correction'),
        Shade('correction'),
        Line('rt_ms'),
        title='2AFC',
    )

    @classmethod
    def check_params(cls, values: dict) -> str | None:
        if values['left_tone_hz'] == values['right_tone_hz']:
            return f"left_tone_hz and right_tone_hz are both {values['left_tone_hz']} Hz; the tones must differ"
        return None

    def setup(self) -> None:
        self.loaded: tuple[StimulusSet, dict[str, Any]] | None = None
        self.load_sounds()

    def tone_set(self) -> StimulusSet:
        """The tones by the side they call for: one each here (psychometric_2afc grades them)."""
        return StimulusSet.from_dict({'groups': {
            side: [{'id': f'tone_{side}', 'kind': 'tone', 'frequency_hz': hz, 'duration_ms': self.tone_ms,
                    'amplitude': self.tone_amplitude, 'ramp_ms': RAMP_MS}]
            for side, hz in (('left', self.left_tone_hz), ('right', self.right_tone_hz))}})

    def load_sounds(self) -> None:
        """The tones and the noise, and the manager that draws the tones (again when update_params changed them)."""
        tones = self.tone_set()
        noise = dict(kind='noise', duration_ms=self.noise_ms, amplitude=self.noise_amplitude, ramp_ms=RAMP_MS, seed=1)
        if (tones, noise) != self.loaded:
            for tone in tones.stimuli():
                self.speaker.load(tone.id, **tone.spec)
            self.speaker.load('noise', **noise)
            self.loaded = (tones, noise)
        bias = BiasCorrection('clipped', window=self.bias_window, limit=self.bias_limit) if self.bias_correction \
            else None
        self.tones = StimulusManager(tones, self.random, correction_p=1.0 if self.correction_trials else 0.0,
                                     bias=bias)

    def start_trial(self) -> None:
        self.load_sounds()
        draw = self.tones.next(self.history, group='target')
        self.target, self.stim, self.correction = draw.group, draw.stimulus.id, draw.correction
        self.p_left = draw.p if self.target == 'left' else 1.0 - draw.p

    def wait_center(self, event: Event) -> None:
        if event == 'entry':
            self.center_led.on()
        elif event == 'center_in':
            self.center_in = event
            self.play_id = self.speaker.play(self.stim)
            self.goto('wait_response')
        elif event == 'exit':
            self.center_led.off()

    def wait_response(self, event: Event) -> None:
        if event == 'entry':
            self.goto('iti', after_s=self.response_window_s)  # no response: response stays 'none'
        elif event == 'sound_onset' and event.data['play_id'] == self.play_id:
            if event.data['ok']:
                self.onset_ms = ms_between(self.center_in.stamp_ns, event.stamp_ns)
            else:
                self.log(f"sound {event.data['sound_id']} did not play")
        elif event == 'center_out' and self.center_out is None:
            self.center_out = event
            self.hold_ms = ms_between(self.center_in.tick_us, event.tick_us, 1e3)
        elif event in ('left_in', 'right_in'):
            self.response = event[:-3]
            self.correct = self.response == self.target
            if self.center_out is not None:
                self.rt_ms = ms_between(self.center_out.tick_us, event.tick_us, 1e3)
            if self.correct:
                getattr(self, self.response + '_valve').reward(self.reward_ul)
                self.reward_given_ul = self.reward_ul
                self.goto('iti')
            else:
                self.speaker.play('noise')
                self.goto('punish')

    def punish(self, event: Event) -> None:
        if event == 'entry':
            self.end_trial(after_s=self.punish_timeout_s)

    def iti(self, event: Event) -> None:
        if event == 'entry':
            self.end_trial(after_s=self.iti_s)
