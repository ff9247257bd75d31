"""N-alternative forced choice: which response port does the sound name? (Autopilot's ``Nafc``.)

A trial: the centre LED lights; a centre poke plays the trial's sound and, with ``request_reward_ul`` above
0, gives that much water at the centre (a request reward, for shaping). The sound comes from the
``stimuli`` set, whose groups are the response ports: every sound in group ``left`` means "go left", and
each port has as many sounds as the protocol gives it, with the groups' proportions. A poke at the port the
sound names gives water there; a poke at another port plays the punishment noise and starts a timeout; no
response within the window is response ``none`` (no water, no noise). The trial ends after the inter-trial
interval (or the timeout).

The stimulus manager (:mod:`autopilot_tasks.stimuli`) draws each trial's sound: ``correction_p`` repeats the
sound after a wrong response with that probability, until a correct one (correction trials are left out of
accuracy and of the bias estimate); ``bias_mode`` leans the groups' probabilities against the animal's
recent answers (``clipped``: 2AFC's rule, ``thresholded_linear``: Autopilot's). What was drawn and why is
recorded per trial (``stim``, ``stim_group``, ``stim_level``, ``stim_reason``, ``stim_p``, ``stim_params``).

Response time ``rt_ms``: centre poke out -> response poke in, from GPIO hardware ticks (see 2afc).

The ports are ``ports`` (left and right here): each is an input role ``<port>`` and a valve role
``<port>_valve``. More ports are a subclass that lists them and declares their roles, e.g. for four::

    class NAFC4(NAFC):
        ports = ('far_left', 'left', 'right', 'far_right')
        far_left = Input('poke_far_left')
        far_left_valve = Output('valve_far_left', kind='valve')
        ...  # and far_right's, plus a stimuli default with the four groups
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from autopilot_tasks.task import (
    BiasCorrection,
    Event,
    Field,
    Input,
    Output,
    Param,
    Plot,
    Points,
    RollingMean,
    Shade,
    Sound,
    Stimuli,
    StimulusManager,
    StimulusSet,
    Task,
    Var,
    ms_between,
)

RAMP_MS = 5.0


def tone(sound_id: str, hz: float) -> dict[str, Any]:
    return {'id': sound_id, 'kind': 'tone', 'frequency_hz': hz, 'duration_ms': 200.0, 'amplitude': 0.1,
            'ramp_ms': RAMP_MS}


class NAFC(Task):
    """N-AFC: a centre poke plays a sound from one port's set; that port pays water."""

    ports: ClassVar[tuple[str, ...]] = ('left', 'right')

    # Parameters
    stimuli = Stimuli({'groups': {'left': [tone('tone_left', 5000.0)], 'right': [tone('tone_right', 12000.0)]}},
                      'The sounds of each response port (one group per port, any number of sounds each), and '
                      'how often each port is the target (proportions)')
    reward_ul = Param(5.0, 'uL', 'Water for a correct response', min=0.5, max=50.0)
    request_reward_ul = Param(0.0, 'uL', 'Water at the centre when a centre poke starts the trial (0: none)',
                              min=0.0, max=20.0)
    response_window_s = Param(5.0, 's', 'Time from the centre poke to respond', min=0.1, max=60.0)
    punish_timeout_s = Param(3.0, 's', 'Timeout after a wrong response', min=0.0, max=60.0)
    iti_s = Param(1.0, 's', 'Pause after a correct or no response', min=0.0, max=60.0)
    noise_ms = Param(500.0, 'ms', 'Punishment noise duration', min=20.0, max=5000.0)
    noise_amplitude = Param(0.1, '', 'Punishment noise amplitude, fraction of full scale', min=0.0, max=1.0)
    correction_p = Param(0.5, '', 'Probability a wrong response starts correction trials (repeat the sound '
                         'until correct)', min=0.0, max=1.0)
    bias_mode = Param('clipped', '', 'Bias correction: none, clipped (p of a port = fraction of answers '
                      'elsewhere, clipped) or thresholded_linear (Autopilot)',
                      choices=('none', 'clipped', 'thresholded_linear'))
    bias_window = Param(20, 'trials', 'Recent non-correction responses the bias is measured over', min=1, max=1000)
    bias_limit = Param(0.2, '', 'clipped: no port below this probability', min=0.0, max=0.5)
    bias_threshold = Param(0.2, '', 'thresholded_linear: smallest bias corrected', min=0.0, max=1.0)

    # Hardware: role = default device on the rig
    center = Input('poke_center', description='Centre nose poke: starts a trial, plays the sound')
    left = Input('poke_left', description='Left response port')
    right = Input('poke_right', description='Right response port')
    left_valve = Output('valve_left', kind='valve', description='Water at the left port')
    right_valve = Output('valve_right', kind='valve', description='Water at the right port')
    center_valve = Output('valve_center', kind='valve', description='Request reward at the centre port')
    center_led = Output('led_center', kind='led', description='On while the rig waits for a centre poke')
    speaker = Sound('The stimuli; punishment noise')

    # Trial data: each trial starts with the defaults
    stim = Field(str, '', 'Sound id played')
    stim_group = Field(str, '', 'The port the sound names (the target)')
    stim_level = Field(float, '', "The sound's level in the stimuli set; NaN without one")
    stim_reason = Field(str, '', 'Why it was drawn: random, bias or correction')
    stim_p = Field(float, '', 'Probability its port had of being the target (1 on a correction trial)')
    stim_params = Field(str, '', "The sound's parameters (JSON)")
    response = Field(str, '', 'Port poked, or none', default='none')
    correct = Field(bool, '', 'Response == target', default=False)
    correction = Field(bool, '', 'Correction trial (the sound repeated after an error)')
    rt_ms = Field(float, 'ms', 'Centre out -> response in, GPIO ticks; NaN without response', default=math.nan)
    onset_ms = Field(float, 'ms', 'Centre in -> sound onset, stamps; NaN if it did not play', default=math.nan)
    request_given_ul = Field(float, 'uL', 'Request reward given at the centre', default=0.0)
    reward_given_ul = Field(float, 'uL', 'Water given for the response', default=0.0)

    # Per-trial state, not recorded
    center_in = Var(None, 'The centre poke that played the sound')
    center_out = Var(None, 'The first centre poke out after it')
    play_id = Var(-1, "The sound's play id, to know its onset")

    score_excludes = ('correction',)
    stages = ('wait_center', 'wait_response', 'punish', 'iti')

    # Live plot: responses by port (a subclass with more ports gives its own y positions), accuracy, corrections
    plot = Plot(
        Points('response', y={'left': 0, 'none': 0.5, 'right': 1}, color_by='correct'),
        RollingMean('correct', window=20, chance=0.5, skip='correction'),
        Shade('correction'),
        title='N-AFC',
    )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        roles = cls.hardware()
        for port in cls.ports:
            poke, valve = roles.get(port), roles.get(f'{port}_valve')
            if not isinstance(poke, Input) or not isinstance(valve, Output) or valve.kind != 'valve':
                raise TypeError(f"{cls.__name__}: port {port!r} needs an Input role {port!r} and an Output role "
                                f"'{port}_valve' of kind 'valve'")

    @classmethod
    def check_params(cls, values: dict) -> str | None:
        groups = set(values['stimuli']['groups'])
        if groups != set(cls.ports):
            return (f'stimuli: groups {", ".join(sorted(groups))}; this task needs one group per port: '
                    f'{", ".join(cls.ports)}')
        return None

    def setup(self) -> None:
        self.loaded: Any = None
        self.load_sounds()

    def load_sounds(self) -> None:
        """The stimuli, the noise and the manager that draws them (again when update_params changed them)."""
        stimuli = StimulusSet.from_dict(self.stimuli)
        noise = dict(kind='noise', duration_ms=self.noise_ms, amplitude=self.noise_amplitude, ramp_ms=RAMP_MS, seed=1)
        if (self.stimuli, noise) != self.loaded:
            for sound in stimuli.stimuli():
                self.speaker.load(sound.id, **sound.spec)
            self.speaker.load('noise', **noise)
            self.loaded = (self.stimuli, noise)
        bias = BiasCorrection(self.bias_mode, window=self.bias_window, limit=self.bias_limit,
                              threshold=self.bias_threshold)
        self.manager = StimulusManager(stimuli, self.random, correction_p=self.correction_p, bias=bias)

    def start_trial(self) -> None:
        self.load_sounds()
        draw = self.manager.next(self.history)
        for name, value in draw.fields().items():
            setattr(self, name, value)
        self.correction = draw.correction

    def wait_center(self, event: Event) -> None:
        if event == 'entry':
            self.center_led.on()
        elif event == 'center_in':
            self.center_in = event
            self.play_id = self.speaker.play(self.stim)
            if self.request_reward_ul > 0:
                self.center_valve.reward(self.request_reward_ul)
                self.request_given_ul = self.request_reward_ul
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
        elif event.endswith('_in') and event[:-3] in self.ports:
            self.response = event[:-3]
            self.correct = self.response == self.stim_group
            if self.center_out is not None:
                self.rt_ms = ms_between(self.center_out.tick_us, event.tick_us, 1e3)
            if self.correct:
                getattr(self, f'{self.response}_valve').reward(self.reward_ul)
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
