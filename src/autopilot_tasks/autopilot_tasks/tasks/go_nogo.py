"""Go/no-go: one tone says "respond", another says "hold back".

A trial: the centre LED lights; a centre poke plays the trial's sound, drawn from the ``stimuli`` set (groups
``go`` and ``nogo`` with their proportions: a 5 kHz and a 12 kHz tone, equally often, by default; a protocol
gives its own set, any number of sounds per group) and opens the response window (``response_window_s``). A poke at the response port in the window
is a response: after the go tone a **hit** (water), after the no-go tone a **false alarm** (punishment noise and
a timeout). No response is a **miss** after go and a **correct rejection** after no-go; both move on to the
inter-trial interval. ``correct`` is hit or correct rejection.

Response time ``rt_ms``: centre poke out -> response poke in, both from GPIO hardware ticks. The stimulus is
drawn by the stimulus manager (:mod:`autopilot_tasks.stimuli`): ``correction_p`` repeats a no-go tone after a
false alarm (and a go tone after a miss) with that probability. Sensitivity is d' = z(hit rate) - z(false alarm
rate), rates with the log-linear correction (+0.5 / +1), so all-hits or no false alarms stay finite.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

from autopilot_tasks.task import (
    Event,
    Field,
    Input,
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
    Task,
    Var,
    ms_between,
)

RAMP_MS = 5.0
#: The default go/no-go set: a 5 kHz go and a 12 kHz no-go tone, equally often (wheel_gonogo's too).
TONES = {
    'groups': {'go': [{'id': 'go', 'kind': 'tone', 'frequency_hz': 5000.0, 'duration_ms': 200.0, 'amplitude': 0.1,
                       'ramp_ms': RAMP_MS}],
               'nogo': [{'id': 'nogo', 'kind': 'tone', 'frequency_hz': 12000.0, 'duration_ms': 200.0,
                         'amplitude': 0.1, 'ramp_ms': RAMP_MS}]},
    'proportions': {'go': 1.0, 'nogo': 1.0}}


def go_nogo_groups(values: dict) -> str | None:
    """What is wrong with a go/no-go stimulus set's groups (they must be go and nogo), or None."""
    groups = set(values['stimuli']['groups'])
    if groups != {'go', 'nogo'}:
        return f'stimuli: groups {", ".join(sorted(groups))}; a go/no-go set has the groups go and nogo'
    return None


class GoNoGo(Task):
    """Go/no-go: respond at the port after the go tone, hold back after the no-go tone."""

    # Parameters
    reward_ul = Param(5.0, 'uL', 'Water for a hit', min=0.5, max=50.0)
    response_window_s = Param(2.0, 's', 'Time from the centre poke to respond', min=0.1, max=60.0)
    punish_timeout_s = Param(3.0, 's', 'Timeout after a false alarm', min=0.0, max=60.0)
    iti_s = Param(1.0, 's', 'Pause after a hit, miss or correct rejection', min=0.0, max=60.0)
    stimuli = Stimuli(TONES, 'The go and no-go sounds (groups go and nogo, any number of sounds each) and how often each group comes')
    noise_ms = Param(500.0, 'ms', 'Punishment noise duration', min=20.0, max=5000.0)
    noise_amplitude = Param(0.1, '', 'Punishment noise amplitude, fraction of full scale', min=0.0, max=1.0)
    correction_p = Param(0.0, '', 'Probability of repeating the tone after an error', min=0.0, max=1.0)

    # Hardware: role = default device on the rig
    center = Input('poke_center', description='Centre nose poke: starts a trial, plays the tone')
    port = Input('poke_right', description='The response port (a poke or lick there is "go")')
    valve = Output('valve_right', kind='valve', description='Water at the response port')
    center_led = Output('led_center', kind='led', description='On while the rig waits for a centre poke')
    speaker = Sound('The go and no-go sounds; punishment noise')

    # Trial data: each trial starts with the defaults
    stim_group = Field(str, '', 'The tone: go or nogo')
    stim = Field(str, '', 'Sound id played')
    stim_reason = Field(str, '', 'Why the tone was drawn: random or correction')
    response = Field(str, '', 'go (responded in the window) or none', default='none')
    outcome = Field(str, '', 'hit, miss, false_alarm or correct_reject', default='')
    correct = Field(bool, '', 'Hit or correct rejection', default=False)
    correction = Field(bool, '', 'Correction trial (the tone repeated after an error)')
    rt_ms = Field(float, 'ms', 'Centre out -> response in, GPIO ticks; NaN without response', default=math.nan)
    reward_given_ul = Field(float, 'uL', 'Water given', default=0.0)

    # Per-trial state, not recorded
    center_out = Var(None, 'The first centre poke out after the tone')

    score_excludes = ('correction',)
    stages = ('wait_center', 'respond', 'punish', 'iti')

    plot = Plot(
        Points('outcome', y={'miss': 0, 'hit': 1, 'correct_reject': 0.25, 'false_alarm': 0.75}, color_by='correct'),
        RollingMean('correct', window=20, chance=0.5, skip='correction'),
        Line('rt_ms'),
        title='Go/no-go',
    )

    @classmethod
    def check_params(cls, values: dict) -> str | None:
        return go_nogo_groups(values)

    def setup(self) -> None:
        self.loaded: Any = None
        self.load_sounds()

    def load_sounds(self) -> None:
        """The stimuli and the noise; again when update_params changed them."""
        noise = dict(kind='noise', duration_ms=self.noise_ms, amplitude=self.noise_amplitude, ramp_ms=RAMP_MS, seed=1)
        if (self.stimuli, noise) != self.loaded:
            for sound in StimulusSet.from_dict(self.stimuli).stimuli():
                self.speaker.load(sound.id, **sound.spec)
            self.speaker.load('noise', **noise)
            self.loaded = (self.stimuli, noise)
        self.tones = StimulusManager(StimulusSet.from_dict(self.stimuli), self.random, correction_p=self.correction_p)

    def start_trial(self) -> None:
        self.load_sounds()
        # Every trial has an outcome (a miss is an error too), so the manager reads outcomes as the answers.
        draw = self.tones.next(self.history, response='outcome')
        self.stim_group, self.stim, self.stim_reason = draw.group, draw.stimulus.id, draw.reason
        self.correction = draw.correction

    def wait_center(self, event: Event) -> None:
        if event == 'entry':
            self.center_led.on()
        elif event == 'center_in':
            self.speaker.play(self.stim)
            self.goto('respond')
        elif event == 'exit':
            self.center_led.off()

    def respond(self, event: Event) -> None:
        if event == 'entry':
            # Unless a response comes: a miss after go, a correct rejection after no-go.
            self.outcome = 'miss' if self.stim_group == 'go' else 'correct_reject'
            self.correct = self.stim_group == 'nogo'
            self.goto('iti', after_s=self.response_window_s)
        elif event == 'center_out' and self.center_out is None:
            self.center_out = event
        elif event == 'port_in':
            self.response = 'go'
            if self.center_out is not None:
                self.rt_ms = ms_between(self.center_out.tick_us, event.tick_us, 1e3)
            self.outcome, self.correct = ('hit', True) if self.stim_group == 'go' else ('false_alarm', False)
            if self.correct:
                self.valve.reward(self.reward_ul)
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


def d_prime(trials: list[dict[str, Any]]) -> float:
    """d' of go/no-go trials (their ``outcome`` fields; correction trials left out): z(hit rate) - z(false
    alarm rate), each rate (count + 0.5) / (trials + 1); NaN without both go and no-go trials."""
    counted = [t for t in trials if not t.get('correction')]
    go = [t['outcome'] for t in counted if t.get('stim_group') == 'go' and t.get('outcome') in ('hit', 'miss')]
    nogo = [t['outcome'] for t in counted
            if t.get('stim_group') == 'nogo' and t.get('outcome') in ('false_alarm', 'correct_reject')]
    if not go or not nogo:
        return math.nan
    z = NormalDist().inv_cdf
    hit = (go.count('hit') + 0.5) / (len(go) + 1)
    fa = (nogo.count('false_alarm') + 0.5) / (len(nogo) + 1)
    return z(hit) - z(fa)
