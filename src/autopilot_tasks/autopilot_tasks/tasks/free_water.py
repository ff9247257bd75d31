"""Free water: each trial one side port is active, and a poke there gives a drop of water.

Shaping before the two-port tasks. The active port is drawn at the start of each trial (``mode``):
at random, alternating, or always the same side. While it is active the centre LED is on ("water is
available"). The sim rig (launch/params/rig_sim.yaml) has no LED per side port, so this task does not
require one: the animal finds the active side by trying, and pokes at the other side are counted,
never rewarded. With ``max_wait_s`` > 0 a trial without a poke at the active port ends unrewarded.

``latency_ms``: from the moment the port became active (the clock when the LED command went out) to
the poke's GPIO stamp, which the gpio node maps from the hardware tick (no network delay in it).
"""

from __future__ import annotations

import math

from autopilot_tasks.task import (
    Event,
    Field,
    Input,
    Line,
    Output,
    Param,
    Plot,
    Points,
    Task,
    TrialTimes,
    Var,
    ms_between,
)


class FreeWater(Task):
    """Free water: a drop at the active side port whenever the animal pokes it."""

    # Parameters
    reward_ul = Param(5.0, 'uL', 'Water per rewarded poke', min=0.5, max=50.0)
    mode = Param('random', '', 'Which side is active: random, alternate, left or right',
                 choices=('random', 'alternate', 'left', 'right'))
    iti_s = Param(1.0, 's', 'Pause after a reward before the next trial', min=0.0, max=60.0)
    max_wait_s = Param(0.0, 's', 'End a trial unrewarded after this long; 0 waits for ever', min=0.0, max=3600.0)

    # Hardware: role = default device on the rig
    left = Input('poke_left', description='Left nose poke (events left_in, left_out)')
    right = Input('poke_right', description='Right nose poke (events right_in, right_out)')
    left_valve = Output('valve_left', kind='valve', description='Left water valve')
    right_valve = Output('valve_right', kind='valve', description='Right water valve')
    light = Output('led_center', kind='led', description='On while water is available')

    # Trial data: each trial starts with the defaults
    port = Field(str, '', 'Active port: left or right')
    rewarded = Field(bool, '', 'The animal poked the active port (in time)', default=False)
    latency_ms = Field(float, 'ms', 'Port active -> poke at it; NaN if none', default=math.nan)
    wrong_pokes = Field(int, '', 'Pokes at the other port during the trial', default=0)

    # Per-trial state, not recorded
    active_ns = Var(None, 'When the port became active (ROS time, ns)')

    score_field = None
    stages = ('available', 'drinking')

    plot = Plot(Points('port', y={'left': 0, 'right': 1}, color_by='rewarded'), Line('latency_ms'),
                Line('wrong_pokes'), TrialTimes(), title='Free water')

    def start_trial(self) -> None:
        if self.mode in ('left', 'right'):
            self.port = self.mode
        elif self.mode == 'alternate' and self.history:
            self.port = 'right' if self.history[-1]['port'] == 'left' else 'left'
        else:
            self.port = self.random.choice(('left', 'right'))

    def available(self, event: Event) -> None:
        if event == 'entry':
            self.light.on()
            self.active_ns = event.stamp_ns
            if self.max_wait_s > 0:
                self.end_trial(after_s=self.max_wait_s)  # unrewarded
        elif event == self.port + '_in':
            getattr(self, self.port + '_valve').reward(self.reward_ul)
            self.rewarded = True
            self.latency_ms = ms_between(self.active_ns, event.stamp_ns)
            self.goto('drinking')
        elif event in ('left_in', 'right_in'):
            self.wrong_pokes += 1
        elif event == 'exit':
            self.light.off()

    def drinking(self, event: Event) -> None:
        if event == 'entry':
            self.end_trial(after_s=self.iti_s)
